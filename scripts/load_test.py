"""Load test of `mtkit serve` on this machine: CLIENTS threads × REQUESTS requests each while one more client polls
GET /; bounded, loopback only.

Usage:
    python scripts/load_test.py --run runs/bible_rnnsearch [--run runs/bible_rnnencdec] [--clients 8] [--requests 50]
    python scripts/load_test.py --url http://127.0.0.1:8000/
    # a crowd at one model: 40 clients, beam 20, while GET / is polled (the figures in docs/serve.md)
    python scripts/load_test.py --run RUN --clients 40 --requests 10 --beam 20 --model NAME

With --run it starts its own server (`mtkit serve --port 0`, a separate process) and stops it with
Ctrl-C's signal at the end; with --url it uses one already running on a loopback address (anything
else is refused). Each request is what the page sends: POST /api/translate with one test sentence
(taken from every length bucket of the served test split, in turn) and one run (the runs in turn,
or --model alone). A 503 (the model's queue is full, or the request ran out of time) is counted,
and its client waits the Retry-After it was given before the next request, as a polite client
does. Meanwhile one more client asks for GET / every --poll seconds: the page must not wait
behind translations.

Bounded: at most CLIENTS × REQUESTS requests, no new request after --max-seconds, and --timeout
per request. Prints requests, answers, 503s, other errors (5xx, dropped connections), wall time,
throughput and latency percentiles of translations and of GET /; --json FILE writes them. Exits 1
on any error other than a 503.
"""

from __future__ import annotations

import argparse
import http.client
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


def summary(ms: list[float]) -> dict[str, float]:
    return {"count": len(ms), "p50": round(percentile(ms, 50), 1), "p95": round(percentile(ms, 95), 1),
            "p99": round(percentile(ms, 99), 1), "max": round(max(ms, default=float("nan")), 1)}


def send(url: str, body: dict, timeout: float) -> tuple[str, float, str | None]:
    """Send one translate request; return (outcome, seconds, detail): outcome ok, busy (503), error or dropped."""
    start = time.perf_counter()
    try:
        result = post(url + "api/translate", body, timeout)["results"][0]
        outcome = ("ok", None) if result["run"] == body["runs"][0] else ("error", f"answer for {result['run']}")
    except urllib.error.HTTPError as err:
        detail = err.read()[:200]
        outcome = ("busy", err.headers.get("Retry-After")) if err.code == 503 else ("error", f"HTTP {err.code}: {detail!r}")
    except (OSError, http.client.HTTPException) as err:  # refused, reset, closed without an answer, timed out
        outcome = ("dropped", f"{type(err).__name__}: {err}")
    except (ValueError, KeyError) as err:
        outcome = ("error", f"{type(err).__name__}: {err}")
    return outcome[0], time.perf_counter() - start, outcome[1]


def poll_page(url: str, stop: threading.Event, every: float, timeout: float, out: dict[str, list]) -> None:
    """GET / every `every` seconds until `stop`; record each answer's milliseconds, or the failure."""
    while not stop.is_set():
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                response.read()
                ok = response.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
        (out["page_ms"] if ok else out["page_errors"]).append(1000 * (time.perf_counter() - start))
        stop.wait(every)


def load(url: str, clients: int, requests: int, beam: int | None, max_seconds: float, timeout: float,
         model: str | None = None, poll: float = 0.05) -> dict:
    """Run the load: each client sends its requests one after another while GET / is polled; return the figures."""
    info = get(url + "api/runs", timeout)
    runs = [r["name"] for r in info["runs"]]
    if model is not None and model not in runs:
        sys.exit(f"error: --model {model}: the server has {runs}")
    targets = [model] if model else runs
    texts = sentences(url, 20, timeout)
    record: dict[str, list] = {"ok": [], "busy": [], "error": [], "dropped": [], "page_ms": [], "page_errors": []}
    lock = threading.Lock()
    deadline = time.monotonic() + max_seconds

    def client(number: int) -> None:
        for i in range(requests):
            if time.monotonic() > deadline:
                return
            k = number * requests + i
            body = {"text": texts[k % len(texts)], "runs": [targets[k % len(targets)]]}
            if beam is not None:
                body["beam"] = beam
            outcome, seconds, detail = send(url, body, timeout)
            with lock:
                record[outcome].append((body["runs"][0], seconds, detail))
            if outcome == "busy":  # wait as told, within the time left
                time.sleep(max(0.0, min(float(detail or 1), deadline - time.monotonic())))

    stop = threading.Event()
    poller = threading.Thread(target=poll_page, args=(url, stop, poll, timeout, record))
    start = time.perf_counter()
    poller.start()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    poller.join()
    wall = time.perf_counter() - start
    done = sum(len(record[k]) for k in ("ok", "busy", "error", "dropped"))
    return {
        "url": url, "clients": clients, "requests_per_client": requests, "beam": beam, "runs": targets,
        "sentences": len(texts), "requests": done, "planned": clients * requests, "answered": len(record["ok"]),
        "busy_503": len(record["busy"]), "errors": len(record["error"]), "dropped": len(record["dropped"]),
        "error_examples": [d for _, _, d in (record["error"] + record["dropped"])[:5]],
        "wall_s": round(wall, 2), "answers_per_s": round(len(record["ok"]) / wall, 2),
        "translate_ms": summary([1000 * s for _, s, _ in record["ok"]]),
        "translate_ms_by_run": {run: summary([1000 * s for r, s, _ in record["ok"] if r == run]) for run in targets},
        "busy_ms": summary([1000 * s for _, s, _ in record["busy"]]),
        "page_ms": summary(record["page_ms"]), "page_errors": len(record["page_errors"]),
        "server_limits": info.get("limits"), "cpu_count": os.cpu_count(),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", action="append", help="run directory to serve (repeatable); starts its own server")
    where.add_argument("--url", help="a running mtkit serve on a loopback address, e.g. http://127.0.0.1:8000/")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--requests", type=int, default=50, help="requests per client (default 50)")
    parser.add_argument("--beam", type=int, default=None, help="beam size (default: each run's decode.beam)")
    parser.add_argument("--model", default=None, help="send every request to this run (default: the runs in turn)")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between GET / polls (default 0.05)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the server it starts")
    parser.add_argument("--max-seconds", type=float, default=900, help="no new request after this (default 900)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per request before it counts as dropped")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not (1 <= args.clients <= 64 and 1 <= args.requests <= 1000 and args.poll >= 0.01):
        sys.exit("error: keep it bounded: --clients 1..64, --requests 1..1000, --poll at least 0.01")
    proc = None
    if args.run:
        proc, url = start_server(args.run, args.threads)
    else:
        url = check_loopback(args.url)
    try:
        results = load(url, args.clients, args.requests, args.beam, args.max_seconds, args.timeout, args.model,
                       args.poll)
    finally:
        if proc is not None:
            stop_server(proc)
    tr, page = results["translate_ms"], results["page_ms"]
    print(f"{results['requests']} of {results['planned']} requests ({results['clients']} clients, beam "
          f"{results['beam'] or 'each run’s'}): {results['answered']} answered, {results['busy_503']} × 503 "
          f"(queue full or out of time), {results['errors']} other errors, {results['dropped']} dropped; "
          f"{results['wall_s']} s, {results['answers_per_s']} answers/s")
    print(f"translate ms: p50 {tr['p50']}  p95 {tr['p95']}  p99 {tr['p99']}  max {tr['max']}")
    for run, v in results["translate_ms_by_run"].items():
        print(f"  {run}: p50 {v['p50']}  p95 {v['p95']}")
    print(f"503 answered in ms: p50 {results['busy_ms']['p50']}  p95 {results['busy_ms']['p95']}")
    print(f"GET / ms ({page['count']} polls, {results['page_errors']} failed): p50 {page['p50']}  p95 {page['p95']}  "
          f"max {page['max']}")
    for example in results["error_examples"]:
        print(f"  error: {example}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    failed = results["errors"] or results["dropped"] or results["page_errors"]
    sys.exit(1 if failed or results["requests"] < results["planned"] else 0)


if __name__ == "__main__":
    main()
