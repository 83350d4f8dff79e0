"""Write the length study's summary (markdown) from the evaluated runs.

Usage: python scripts/summarize.py RESULTS_DIR RUN [RUN ...] [--seconds TOTAL]
Reads RESULTS_DIR/scores.json (from `mtkit eval --by-length --out RESULTS_DIR`), and
RESULTS_DIR/passages_scores.json when present (from `mtkit eval --passages --by-length`), and each
run's metrics, environment and cached translations; draws RESULTS_DIR/length_study.png (the two
panels) and prints markdown to stdout, with the long/short ratio of each panel and the verdict on
the criteria the study states before it runs (see `verdict`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mtkit.checkpoint import load_checkpoint
from mtkit.compare import run_passage_outputs, run_test_outputs
from mtkit.evaluate import BucketScore, bleu_by_length, load_json
from mtkit.model import describe

# The study's headline buckets: short inputs, and long ones (41-60 words), each pooled for a tight interval.
PANEL_EDGES = (10, 40, 60)
SHORT, LONG = "1-10", "41-60"


def verdict(encdec: dict[str, BucketScore], search: dict[str, BucketScore],
            every_bucket: list[tuple[BucketScore, BucketScore]]) -> list[str]:
    """Return one line per criterion of the passage panel, each PASS or MISS with its numbers.

    Stated before the run (issue 14): RNNencdec's BLEU on 41-60-word inputs at most 0.6x its BLEU on
    the shortest bucket, with non-overlapping 95% intervals; RNNsearch's at least 0.85x; RNNsearch
    above RNNencdec in every bucket. `encdec` and `search` map SHORT and LONG to pooled buckets;
    `every_bucket` pairs the two models' buckets of the 10-word table.
    """
    def ratio(b: dict[str, BucketScore]) -> float:
        return b[LONG].bleu / b[SHORT].bleu if b[SHORT].bleu else float("nan")

    apart = encdec[LONG].ci_high is not None and encdec[LONG].ci_high < encdec[SHORT].ci_low
    behind = [f"{e.label} ({s.bleu:.1f} vs {e.bleu:.1f})" for e, s in every_bucket
              if e.bleu is not None and s.bleu is not None and s.bleu <= e.bleu]
    return [
        f"- RNNencdec, long/short ≤ 0.6 with intervals apart: {ratio(encdec):.2f} "
        f"({encdec[LONG].bleu:.1f} [{encdec[LONG].ci_low:.1f}, {encdec[LONG].ci_high:.1f}] vs "
        f"{encdec[SHORT].bleu:.1f} [{encdec[SHORT].ci_low:.1f}, {encdec[SHORT].ci_high:.1f}]) — "
        f"{'PASS' if ratio(encdec) <= 0.6 and apart else 'MISS'}",
        f"- RNNsearch, long/short ≥ 0.85: {ratio(search):.2f} ({search[LONG].bleu:.1f} vs {search[SHORT].bleu:.1f}) — "
        f"{'PASS' if ratio(search) >= 0.85 else 'MISS'}",
        f"- RNNsearch above RNNencdec in every bucket — "
        f"{'PASS' if not behind else 'MISS: not in ' + ', '.join(behind)}",
    ]


def pooled(srcs: list[str], hyps: list[str], refs: list[str]) -> dict[str, BucketScore]:
    """Return the SHORT and LONG buckets (with 95% intervals) of one system's outputs."""
    return {b.label: b for b in bleu_by_length(srcs, hyps, refs, edges=PANEL_EDGES, n_boot=1000)}


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

    passages_file = args.results / "passages_scores.json"
    if passages_file.is_file():
        lines += passage_section(args.results, args.runs, scores, load_json(passages_file))

    lines += ["", f"BLEU signature: `{first.bleu_signature}`", "",
              f"Hardware: {env['platform']}, {env['threads']} thread(s) per run, torch {env['torch']}, "
              f"device {env['device']}."]
    if args.seconds is not None:
        lines.append(f"Whole pipeline: {args.seconds / 60:.1f} min wall time.")
    print("\n".join(lines))


def passage_section(results: Path, runs: list[Path], verses: list, passages: list) -> list[str]:
    """Return the summary's lines on the controlled curve, after drawing the two-panel figure."""
    from mtkit.plots import plot_length_study

    plot_length_study(verses, passages, results / "length_study.png")
    lines = ["", "## The controlled curve: the same verses alone and in passages", "",
             "![two panels](length_study.png)", "",
             "BLEU of the same verses translated alone (k=1) and inside passages of k consecutive verses:", "",
             "| model | " + " | ".join(b.label for b in passages[0].by_k) + " |", "|---|" + "---|" * len(passages[0].by_k)]
    for s in passages:
        lines.append(f"| {s.name} | " + " | ".join(f"{b.bleu:.1f} (chrF {b.chrf:.1f}, len {b.ratio:.2f})"
                                                   for b in s.by_k) + " |")
    lines += ["", f"Long against short inputs (BLEU on {LONG} words ÷ BLEU on {SHORT} words, 95% intervals):", ""]
    panels = {}
    for run, verse_system, passage_system in zip(runs, verses, passages):
        verse = pooled(*run_test_outputs(run))
        out = run_passage_outputs(run)
        passage = pooled(out.srcs, out.hyps, out.refs)
        panels[run] = passage
        for panel, b in (("(a) verses", verse), ("(b) passages", passage)):
            lines.append(f"- {verse_system.name}, {panel}: {b[LONG].bleu:.1f} [{b[LONG].ci_low:.1f}, "
                         f"{b[LONG].ci_high:.1f}] vs {b[SHORT].bleu:.1f} [{b[SHORT].ci_low:.1f}, "
                         f"{b[SHORT].ci_high:.1f}]: ×{b[LONG].bleu / b[SHORT].bleu:.2f}")
    attends = {run: load_checkpoint(run / "best.pt").model.has_attention for run in runs}
    encdec = [r for r in runs if not attends[r]]
    search = [r for r in runs if attends[r]]
    if len(encdec) == 1 and len(search) == 1:
        e, s = runs.index(encdec[0]), runs.index(search[0])
        lines += ["", "Criteria stated before the run (README), on panel (b):", ""]
        lines += verdict(panels[encdec[0]], panels[search[0]], list(zip(passages[e].buckets, passages[s].buckets)))
    return lines


if __name__ == "__main__":
    main()
