"""The study's workload as `make reproduce` runs it: its models trained side by side, one thread and one core each.

    python -m benchmarks.study configs/bible_rnnencdec.yaml configs/bible_rnnsearch.yaml \
        --profile 5 --in-turn --json results/bench_study.json

Starts `python -m benchmarks CONFIG --threads 1 --sentences 0` for every config at once, each
process on a core of its own where there are enough cores, so that what the models do to each
other (memory bandwidth, shared caches) is in their figures: training tokens/s, utilisation of the
one-thread matmul peak and, with --profile, where a step's time goes. With --in-turn it also times
each config alone on every core, one after the other: the lever "one model per core against all
threads per model in turn". Both are judged by the time to train every model for the same number
of target tokens: side by side that is the slowest model's 1/tokens-per-second, in turn the sum.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence


ROOT = Path(__file__).resolve().parents[1]  # where `python -m benchmarks` finds the package


def bench_command(config: Path, threads: int, timing: Sequence[int], profile: int, checkpoint: str | None,
                  out: Path) -> list[str]:
    """Return the `python -m benchmarks` command line that times one config's training into `out` (JSON).

    timing is (steps, warmup, window) as `python -m benchmarks` takes them.
    """
    steps, warmup, window = timing
    command = [sys.executable, "-m", "benchmarks", str(config.resolve()), "--threads", str(threads),
               "--sentences", "0", "--steps", str(steps), "--warmup", str(warmup), "--window", str(window),
               "--json", str(out)]
    if profile:
        command += ["--profile", str(profile)]
    if checkpoint:
        command += ["--checkpoint", checkpoint]
    return command


def run_together(commands: Sequence[list[str]], pin: bool) -> None:
    """Run every command at once (on core i for command i when `pin`); raise if one fails."""
    procs = []
    for core, command in enumerate(commands):
        pinned = (lambda c=core: os.sched_setaffinity(0, {c})) if pin else None
        procs.append(subprocess.Popen(command, cwd=ROOT, preexec_fn=pinned, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True))
    errors = [proc.communicate()[1] for proc in procs]
    for command, proc, err in zip(commands, procs, errors):
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{err[-2000:]}")


def summarise(side_by_side: Sequence[dict[str, Any]], in_turn: Sequence[dict[str, Any]] | None) -> dict[str, Any]:
    """Return each model's side-by-side (and in-turn) figures, and the in-turn lever as a speed-up.

    Side by side, N target tokens per model take max_i N / r_i; in turn, Σ_i N / r'_i.
    """
    models = []
    for i, result in enumerate(side_by_side):
        training = result["training"]
        row = {"model": result["model"]["description"], "tokens_per_s": training["tokens_per_s"],
               "utilisation": training["utilisation"], "peak_gflops": round(result["matmul"]["best"], 1),
               "train_flops_per_target_token": result["model"]["train_flops_per_target_token"],
               "load": training["load"], "profile": (result.get("profile") or {}).get("operators", [])[:8]}
        if in_turn is not None:
            row["in_turn_tokens_per_s"] = in_turn[i]["training"]["tokens_per_s"]
            row["in_turn_threads"] = in_turn[i]["matmul"]["threads"]
        models.append(row)
    record: dict[str, Any] = {"models": models, "environment": side_by_side[0]["environment"]}
    together = max(1.0 / m["tokens_per_s"] for m in models)
    record["seconds_per_token_each_side_by_side"] = together
    if in_turn is not None:
        one_after_another = sum(1.0 / m["in_turn_tokens_per_s"] for m in models)
        record["seconds_per_token_each_in_turn"] = one_after_another
        record["side_by_side_speedup"] = round(one_after_another / together, 3)
    return record


def format_study(record: dict[str, Any]) -> str:
    """Return the record as a plain-text table, a profile per model, and the lever's verdict."""
    lines = [f"{'model':<64} {'tok/s':>8} {'util.':>6} {'MFLOP/tok':>9}" +
             (f" {'alone, all threads':>19}" if "side_by_side_speedup" in record else "")]
    for m in record["models"]:
        line = (f"{m['model']:<64} {m['tokens_per_s']:>8.0f} {100 * m['utilisation']:>5.1f}% "
                f"{m['train_flops_per_target_token'] / 1e6:>9.1f}")
        if "in_turn_tokens_per_s" in m:
            line += f" {m['in_turn_tokens_per_s']:>10.0f} tok/s ({m['in_turn_threads']} thr.)"
        lines.append(line)
    if "side_by_side_speedup" in record:
        lines.append(f"one model per core, side by side, against all threads per model in turn: "
                     f"×{record['side_by_side_speedup']:.2f} (time to train every model for the same tokens)")
    for m in record["models"]:
        if m["profile"]:
            lines.append(f"\nwhere a training step of {m['model'].split(' ')[0]} goes (self CPU time):")
            lines += [f"  {op['name']:<50} {100 * op['share']:>5.1f}% {op['calls']:>7} calls" for op in m["profile"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the study benchmark the options ask for; print its table; return the exit status."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.study", description=__doc__.split("\n\n")[0])
    p.add_argument("configs", type=Path, nargs="+", help="the study's configs, trained side by side")
    p.add_argument("--steps", type=int, default=30, help="timed training steps per model")
    p.add_argument("--warmup", type=int, default=5, help="untimed training steps first")
    p.add_argument("--window", type=int, default=5, help="steps per timed window; the median window counts")
    p.add_argument("--profile", type=int, default=0, metavar="N", help="also profile N training steps per model")
    p.add_argument("--checkpoint", help="best, last or a path: time trained weights (default: random)")
    p.add_argument("--in-turn", action="store_true", help="also time each model alone on every core")
    p.add_argument("--json", type=Path, help="write the record here")
    args = p.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        outs = [Path(tmp) / f"side_{i}.json" for i in range(len(args.configs))]
        timing = (args.steps, args.warmup, args.window)
        run_together([bench_command(c, 1, timing, args.profile, args.checkpoint, o)
                      for c, o in zip(args.configs, outs)], pin=cores >= len(args.configs))
        side = [json.loads(o.read_text()) for o in outs]
        turn = None
        if args.in_turn:
            turn_outs = [Path(tmp) / f"turn_{i}.json" for i in range(len(args.configs))]
            for config, out in zip(args.configs, turn_outs):
                run_together([bench_command(config, cores, timing, 0, args.checkpoint, out)], pin=False)
            turn = [json.loads(o.read_text()) for o in turn_outs]
    record = summarise(side, turn)
    print(format_study(record))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
