"""Write the length study's summary (markdown) from the evaluated runs.

Usage: python scripts/summarize.py RESULTS_DIR RUN [RUN ...] [--seconds TOTAL]
Reads RESULTS_DIR/scores.json (from `mtkit eval --by-length --out RESULTS_DIR`), and
RESULTS_DIR/passages_scores.json when present (from `mtkit eval --passages --by-length`), and each
run's metrics, environment and cached translations; draws RESULTS_DIR/length_study.png (the two
panels) and prints markdown to stdout: the paired measure with the verdict on the criteria the study
states before it runs (see `paired_verdict`), then the length-bucket view (see `bucket_verdict`).
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

from mtkit.checkpoint import load_checkpoint
from mtkit.compare import run_passage_outputs, run_test_outputs
from mtkit.evaluate import BucketScore, PairedRatio, bleu_by_length
from mtkit.results import load_json
from mtkit.model import describe
from mtkit.model.transformer import TransformerDecoder

# The secondary view: length buckets of the passage inputs, short against long (41-60 words), each pooled.
# Its content differs between buckets, so it is reported beside the paired criteria, not as the headline.
PANEL_EDGES = (10, 40, 60)
SHORT, LONG = "1-10", "41-60"


def long_over_short(b: dict[str, BucketScore]) -> float:
    """Return BLEU on LONG inputs ÷ BLEU on SHORT ones (nan when the short BLEU is 0: an untrained model)."""
    return b[LONG].bleu / b[SHORT].bleu if b[SHORT].bleu else float("nan")


NAMES = {"encdec": "RNNencdec", "search": "RNNsearch", "transformer": "Transformer"}

# The criteria on the paired measure, stated before the run that reports them (issue 25): the ratio is BLEU of
# the windows' verses translated k_max at a time over BLEU of the same verses alone, with its 95% interval from
# resampled windows. Direction: RNNencdec's interval lies wholly below DIRECTION_ENCDEC, each attention model's
# interval reaches DIRECTION_ATTENTION or above. Size: RNNencdec's ratio at most SIZE_ENCDEC, the size of the
# fall Cho et al. (2014) and Bahdanau et al. (2015) report for long sentences.
DIRECTION_ENCDEC, DIRECTION_ATTENTION, SIZE_ENCDEC = 0.9, 0.95, 0.6


def _cell(p: PairedRatio) -> str:
    interval = "no interval" if p.ci_low is None else f"[{p.ci_low:.3f}, {p.ci_high:.3f}]"
    return f"{p.ratio:.3f} {interval}" if p.ratio is not None else "n/a"


def paired_verdict(paired: dict[str, PairedRatio]) -> list[str]:
    """Return one line per paired criterion, each PASS or MISS with its numbers.

    `paired` maps a model family (encdec, search, transformer; any may be missing) to its ratio at k_max.
    A ratio without an interval (no bootstrap) cannot pass a direction criterion.
    """
    lines = []
    if "encdec" in paired:
        e = paired["encdec"]
        below = e.ci_high is not None and e.ci_high < DIRECTION_ENCDEC
        lines.append(f"- direction: RNNencdec k={e.k}/k=1 interval wholly below {DIRECTION_ENCDEC}: {_cell(e)} — "
                     f"{'PASS' if below else 'MISS'}")
    for kind in ("search", "transformer"):
        if kind in paired:
            p = paired[kind]
            holds = p.ci_high is not None and p.ci_high >= DIRECTION_ATTENTION
            lines.append(f"- direction: {NAMES[kind]} k={p.k}/k=1 interval reaches {DIRECTION_ATTENTION}: {_cell(p)} — "
                         f"{'PASS' if holds else 'MISS'}")
    if "encdec" in paired:
        e = paired["encdec"]
        small = e.ratio is not None and e.ratio <= SIZE_ENCDEC
        lines.append(f"- size: RNNencdec k={e.k}/k=1 ≤ {SIZE_ENCDEC}: {_cell(e)} — {'PASS' if small else 'MISS'}")
    return lines


def bucket_verdict(panels: dict[str, dict[str, BucketScore]], buckets: dict[str, list[BucketScore]]) -> list[str]:
    """Return one line per criterion of the secondary (length-bucket) view, each PASS or MISS with its numbers.

    Stated before earlier runs (issues 14 and 16) and kept as they were: RNNencdec's BLEU on 41-60-word
    passage inputs at most 0.6x its BLEU on the 1-10-word ones, with non-overlapping 95% intervals; each
    attention model's at least 0.85x, and above RNNencdec in every bucket. `panels` maps a model family to
    its pooled SHORT and LONG buckets, `buckets` to its buckets of the 10-word passage table.
    """
    lines = []
    if "encdec" in panels:
        e = panels["encdec"]
        apart = e[LONG].ci_high is not None and e[LONG].ci_high < e[SHORT].ci_low
        lines.append(f"- RNNencdec, long/short ≤ 0.6 with intervals apart: {long_over_short(e):.2f} "
                     f"({e[LONG].bleu:.1f} [{e[LONG].ci_low:.1f}, {e[LONG].ci_high:.1f}] vs "
                     f"{e[SHORT].bleu:.1f} [{e[SHORT].ci_low:.1f}, {e[SHORT].ci_high:.1f}]) — "
                     f"{'PASS' if long_over_short(e) <= 0.6 and apart else 'MISS'}")
    for kind in ("search", "transformer"):
        if kind not in panels:
            continue
        p, name = panels[kind], NAMES[kind]
        lines.append(f"- {name}, long/short ≥ 0.85: {long_over_short(p):.2f} ({p[LONG].bleu:.1f} vs {p[SHORT].bleu:.1f}) — "
                     f"{'PASS' if long_over_short(p) >= 0.85 else 'MISS'}")
        if "encdec" in panels:
            behind = [f"{e.label} ({m.bleu:.1f} vs {e.bleu:.1f})" for e, m in zip(buckets["encdec"], buckets[kind])
                      if e.bleu is not None and m.bleu is not None and m.bleu <= e.bleu]
            lines.append(f"- {name} above RNNencdec in every bucket — "
                         f"{'PASS' if not behind else 'MISS: not in ' + ', '.join(behind)}")
    return lines


def family(run: Path) -> str:
    """Return the run's model family: encdec (no attention), search (an RNN that attends) or transformer."""
    model = load_checkpoint(run / "best.pt").model
    if isinstance(model.decoder, TransformerDecoder):
        return "transformer"
    return "search" if model.has_attention else "encdec"


def pooled(srcs: list[str], hyps: list[str], refs: list[str]) -> dict[str, BucketScore]:
    """Return the SHORT and LONG buckets (with 95% intervals) of one system's outputs."""
    return {b.label: b for b in bleu_by_length(srcs, hyps, refs, edges=PANEL_EDGES, n_boot=1000)}


def training_facts(run: Path) -> dict:
    """Return steps, minutes, epochs and mean target tokens/s of a finished run."""
    state = load_checkpoint(run / "last.pt").state
    return {"steps": state.step, "minutes": state.seconds / 60, "cpu_minutes": state.cpu_seconds / 60,
            "epochs": state.epoch,
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
    lines = [f"# BLEU by sentence length: {' vs '.join(NAMES[family(run)] for run in args.runs)}", ""]
    trained = datetime.fromtimestamp((args.runs[0] / "last.pt").stat().st_mtime, timezone.utc)
    lines += [f"Run: commit {(env.get('git_commit') or 'unknown')[:7]}, trained {trained:%Y-%m-%d}.", ""]
    lines += ["| model | description | BLEU | chrF | steps (best) | full epochs | train CPU time (wall) | target tok/s |",
              "|---|---|---|---|---|---|---|---|"]
    for run in args.runs:
        name = run.resolve().name
        facts = training_facts(run)
        model = describe(load_checkpoint(run / "best.pt").model)
        s = systems[name]
        lines.append(f"| {s.name} | {model} | {s.bleu:.2f} | {s.chrf:.2f} | {facts['steps']} ({facts['best_step']}) | "
                     f"{facts['epochs']} | {facts['cpu_minutes']:.1f} min ({facts['minutes']:.1f}) | "
                     f"{facts['tokens_per_s']:.0f} |")
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
    """Return the summary's lines on the paired measure and its criteria, after drawing the two-panel figure."""
    from mtkit.plots import plot_length_study

    plot_length_study(verses, passages, results / "length_study.png")
    first = passages[0]
    lines = ["", "## The headline: the same verses alone and inside passages", "",
             "![two panels](length_study.png)", "",
             f"BLEU of the same {first.paired[0].inputs} verses ({first.windows} windows of "
             f"{first.paired[0].inputs // first.windows} consecutive verses) translated alone (k=1) and inside "
             "passages of k verses; ×k=1 is BLEU ÷ BLEU at k=1 with its 95% interval from resampling whole windows "
             f"({first.n_boot} resamples, k and k=1 scored on the same resample):", "",
             "| model | " + " | ".join(f"k={p.k} ({p.mean_src_words:.1f} words)" for p in first.paired) + " |",
             "|---|" + "---|" * len(first.paired)]
    for s in passages:
        lines.append(f"| {s.name} | " + " | ".join(
            f"{p.bleu:.1f}" + ("" if p.k == 1 else f", ×{_cell(p)}") for p in s.paired) + " |")
    lines += ["", "chrF and output/reference length of the same inputs:", "",
              "| model | " + " | ".join(b.label for b in first.by_k) + " |", "|---|" + "---|" * len(first.by_k)]
    for s in passages:
        lines.append(f"| {s.name} | " + " | ".join(f"chrF {b.chrf:.1f}, len {b.ratio:.2f}" for b in s.by_k) + " |")
    families = {family(run): i for i, run in enumerate(runs)}
    if len(families) == len(runs):
        lines += ["", "Criteria stated before the run (README, `scripts/summarize.py`), on the paired measure at "
                  f"k={first.paired[-1].k}:", ""]
        lines += paired_verdict({f: passages[i].paired[-1] for f, i in families.items()})
    lines += ["", f"Secondary view, content not held fixed: passage inputs by length, BLEU on {LONG} words ÷ BLEU "
              f"on {SHORT} words (95% intervals over inputs):", ""]
    panels = {}
    for run, verse_system in zip(runs, verses):
        verse = pooled(*run_test_outputs(run))
        out = run_passage_outputs(run)
        passage = pooled(out.srcs, out.hyps, out.refs)
        panels[run] = passage
        for panel, b in (("single verses", verse), ("passage inputs", passage)):
            lines.append(f"- {verse_system.name}, {panel}: {b[LONG].bleu:.1f} [{b[LONG].ci_low:.1f}, "
                         f"{b[LONG].ci_high:.1f}] vs {b[SHORT].bleu:.1f} [{b[SHORT].ci_low:.1f}, "
                         f"{b[SHORT].ci_high:.1f}]: ×{long_over_short(b):.2f}")
    if len(families) == len(runs) and ("search" in families or "transformer" in families):
        lines += ["", "The earlier length-bucket criteria (issues 14 and 16), on the passage inputs:", ""]
        lines += bucket_verdict({f: panels[runs[i]] for f, i in families.items()},
                                {f: passages[i].buckets for f, i in families.items()})
    return lines


if __name__ == "__main__":
    main()
