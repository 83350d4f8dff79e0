"""Write the length study's summary (markdown) from the evaluated runs.

Usage: python scripts/summarize.py RESULTS_DIR RUN [RUN ...] [--seconds TOTAL]
Reads RESULTS_DIR/scores.json (from `mtkit eval --by-length --out RESULTS_DIR`) and each run's
metrics, environment and cached test translations; prints markdown to stdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mtkit.checkpoint import load_checkpoint
from mtkit.compare import run_test_outputs
from mtkit.evaluate import bleu_by_length, load_json
from mtkit.model import describe


def training_facts(run: Path) -> dict:
    """Return steps, minutes, epochs and mean target tokens/s of a finished run."""
    state = load_checkpoint(run / "last.pt").state
    return {"steps": state.step, "minutes": state.seconds / 60, "epochs": state.epoch,
            "tokens_per_s": state.tokens / max(state.seconds, 1e-9), "best_step": state.best_step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--seconds", type=float, default=None, help="wall time of the whole pipeline")
    args = parser.parse_args()

    scores = load_json(args.results / "scores.json")  # one system per run, in the order of the runs
    systems = {run.resolve().name: score for run, score in zip(args.runs, scores)}
    env = json.loads((args.runs[0] / "environment.json").read_text())
    lines = ["# BLEU by sentence length: RNNencdec vs RNNsearch", ""]
    lines += ["| model | description | BLEU | chrF | steps (best) | full epochs | train time | target tok/s |",
              "|---|---|---|---|---|---|---|---|"]
    for run in args.runs:
        name = run.resolve().name
        facts = training_facts(run)
        model = describe(load_checkpoint(run / "best.pt").model)
        s = systems[name]
        lines.append(f"| {s.name} | {model} | {s.bleu:.2f} | {s.chrf:.2f} | {facts['steps']} ({facts['best_step']}) | "
                     f"{facts['epochs']} | {facts['minutes']:.1f} min | {facts['tokens_per_s']:.0f} |")
    first = systems[args.runs[0].resolve().name]
    lines += ["", "BLEU per source-length bucket (95% bootstrap interval), test sentences per bucket:", ""]
    header = "| words | n | " + " | ".join(s.name for s in scores) + " |"
    lines += [header, "|" + "---|" * (2 + len(args.runs))]
    for i, bucket in enumerate(first.buckets):
        cells = []
        for run in args.runs:
            b = systems[run.resolve().name].buckets[i]
            cells.append("–" if b.bleu is None else f"{b.bleu:.1f} [{b.ci_low:.1f}, {b.ci_high:.1f}]"
                         if b.ci_low is not None else f"{b.bleu:.1f}")
        lines.append(f"| {bucket.label} | {bucket.count} | " + " | ".join(cells) + " |")

    lines += ["", "Long against medium sentences (BLEU on 41–60 words ÷ BLEU on 11–20 words):", ""]
    for run in args.runs:
        srcs, hyps, refs = run_test_outputs(run)
        buckets = {b.label: b for b in bleu_by_length(srcs, hyps, refs, edges=(10, 20, 40, 60), n_boot=0)}
        mid, long = buckets["11-20"].bleu, buckets["41-60"].bleu
        change = f"{100 * (long / mid - 1):+.0f}%" if mid else "n/a"
        lines.append(f"- {systems[run.resolve().name].name}: {long:.1f} vs {mid:.1f} ({change})")

    lines += ["", f"BLEU signature: `{first.bleu_signature}`", "",
              f"Hardware: {env['platform']}, {env['threads']} thread(s) per run, torch {env['torch']}, "
              f"device {env['device']}."]
    if args.seconds is not None:
        lines.append(f"Whole pipeline: {args.seconds / 60:.1f} min wall time.")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
