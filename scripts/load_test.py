"""Load test of `mtkit serve` on this machine: CLIENTS threads × REQUESTS requests each, bounded, loopback only.

Usage:
    python scripts/load_test.py --run runs/bible_rnnsearch [--run runs/bible_rnnencdec] [--clients 8] [--requests 50]
    python scripts/load_test.py --url http://127.0.0.1:8000/

With --run it starts its own server (`mtkit serve --port 0`, a separate process) and stops it with
Ctrl-C's signal at the end; with --url it uses one already running on a loopback address (anything
else is refused). Each request is what the page sends: POST /api/translate with one test sentence
(taken from every length bucket of the served test split, in turn) and one run (the runs in turn).
Bounded: at most CLIENTS × REQUESTS requests, no new request after --max-seconds, and --timeout
per request. Prints requests, errors, wall time, throughput and latency percentiles; --json FILE
writes them.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlparse

ROOT = Path(__file__).resolve().parent.parent


def get(url: str, timeout: float) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def post(url: str, body: dict, timeout: float) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def check_loopback(url: str) -> str:
    """Return `url` with a trailing slash, or exit when it is not http:// on a loopback address."""
    parts = urlparse(url)
    try:
        loopback = parts.scheme == "http" and ipaddress.ip_address(socket.gethostbyname(parts.hostname)).is_loopback
    except (OSError, TypeError, ValueError):
        loopback = False
    if not loopback:
        sys.exit(f"error: --url {url}: give an http:// address on this machine's loopback (127.0.0.1, localhost)")
    return url if url.endswith("/") else url + "/"


def start_server(runs: list[str], threads: int | None) -> tuple[subprocess.Popen, str]:
    """Start `mtkit serve` on a free loopback port; return the process and its URL."""
    command = [sys.executable, "-m", "mtkit.cli", "serve", "--port", "0", "--host", "127.0.0.1"]
    for run in runs:
        command += ["--run", run]
    if threads:
        command += ["--threads", str(threads)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    line = proc.stdout.readline()
    if " at http://" not in line:
        proc.kill()
        sys.exit(f"error: the server did not start (said {line.strip()!r}); run `mtkit serve` by hand to see why")
    return proc, line.split(" at ")[1].split()[0]


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def sentences(url: str, per_bucket: int, timeout: float) -> list[str]:
    """Return up to `per_bucket` test sentences of each length bucket, interleaved (short and long in turn)."""
    info = get(url + "api/runs", timeout)
    groups = []
    for bucket in info["buckets"]:
        if bucket["count"]:
            query = f"api/examples?bucket={quote(bucket['label'])}&count={per_bucket}&outputs=false"
            groups.append([ex["source"] for ex in get(url + query, timeout)["examples"]])
    mixed = [group[i] for i in range(per_bucket) for group in groups if i < len(group)]
    if not mixed:
        sys.exit("error: the served runs have no test split to take sentences from")
    return mixed


def percentile(values: list[float], q: float) -> float:
    """Return the q-th percentile (0-100) by linear interpolation between the two nearest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def load(url: str, clients: int, requests: int, beam: int | None, max_seconds: float, timeout: float) -> dict:
    """Run the load: each client sends its requests one after another; return the measurements."""
    runs = [r["name"] for r in get(url + "api/runs", timeout)["runs"]]
    texts = sentences(url, 20, timeout)
    latencies: list[tuple[str, float]] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + max_seconds

    def client(number: int) -> None:
        for i in range(requests):
            if time.monotonic() > deadline:
                return
            k = number * requests + i
            body = {"text": texts[k % len(texts)], "runs": [runs[k % len(runs)]]}
            if beam is not None:
                body["beam"] = beam
            start = time.perf_counter()
            try:
                result = post(url + "api/translate", body, timeout)["results"][0]
                problem = None if result["run"] == body["runs"][0] else f"answer for {result['run']}"
            except urllib.error.HTTPError as err:
                problem = f"HTTP {err.code}: {err.read()[:200]!r}"
            except (OSError, ValueError, KeyError) as err:
                problem = f"{type(err).__name__}: {err}"
            elapsed = time.perf_counter() - start
            with lock:
                if problem is None:
                    latencies.append((body["runs"][0], elapsed))
                else:
                    errors.append(problem)

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    done = len(latencies) + len(errors)
    ms = [1000 * s for _, s in latencies]
    per_run = {run: [1000 * s for r, s in latencies if r == run] for run in runs}
    return {
        "url": url, "clients": clients, "requests_per_client": requests, "beam": beam, "runs": runs,
        "sentences": len(texts), "requests": done, "planned": clients * requests, "errors": len(errors),
        "error_examples": errors[:5], "wall_s": round(wall, 2), "requests_per_s": round(done / wall, 2),
        "latency_ms": {"p50": round(percentile(ms, 50), 1), "p95": round(percentile(ms, 95), 1),
                       "p99": round(percentile(ms, 99), 1), "max": round(max(ms, default=float("nan")), 1)},
        "latency_ms_by_run": {run: {"p50": round(percentile(v, 50), 1), "p95": round(percentile(v, 95), 1)}
                              for run, v in per_run.items()},
        "cpu_count": os.cpu_count(), "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", action="append", help="run directory to serve (repeatable); starts its own server")
    where.add_argument("--url", help="a running mtkit serve on a loopback address, e.g. http://127.0.0.1:8000/")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--requests", type=int, default=50, help="requests per client (default 50)")
    parser.add_argument("--beam", type=int, default=None, help="beam size (default: each run's decode.beam)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the server it starts")
    parser.add_argument("--max-seconds", type=float, default=900, help="no new request after this (default 900)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per request before it counts as an error")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not (1 <= args.clients <= 64 and 1 <= args.requests <= 1000):
        sys.exit("error: keep it bounded: --clients 1..64, --requests 1..1000")
    proc = None
    if args.run:
        proc, url = start_server(args.run, args.threads)
    else:
        url = check_loopback(args.url)
    try:
        results = load(url, args.clients, args.requests, args.beam, args.max_seconds, args.timeout)
    finally:
        if proc is not None:
            stop_server(proc)
    lat = results["latency_ms"]
    print(f"{results['requests']} of {results['planned']} requests ({results['clients']} clients), "
          f"{results['errors']} errors, {results['wall_s']} s, {results['requests_per_s']} requests/s")
    print(f"latency ms: p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}  max {lat['max']}")
    for run, v in results["latency_ms_by_run"].items():
        print(f"  {run}: p50 {v['p50']}  p95 {v['p95']}")
    for example in results["error_examples"]:
        print(f"  error: {example}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    sys.exit(1 if results["errors"] or results["requests"] < results["planned"] else 0)


if __name__ == "__main__":
    main()
