"""Summarise the capacity runs of scripts/capacity.sh: how long an input each size d of the fixed vector holds.

Usage: python scripts/capacity.py RUN [RUN ...] [--plot PNG] [--seconds TOTAL]
Each RUN was trained by scripts/capacity.sh and scored by it (`mtkit eval --by-length --out RUN/eval`; on the
Bible also `--passages` and `--passages --forced` into RUN/eval/passages).

Synthetic task: L* is the source length at which a run's BLEU first falls to half its BLEU on the shortest
inputs, read by straight lines between bucket midpoints; "> longest" when it never does.
Bible task (runs with a passage set): the same verses alone and in passages of k verses, so content is held
fixed. L*_0.5 and L*_0.9 are the mean input lengths at which the paired ratio BLEU_k / BLEU_1 first falls to
0.5 and 0.9, read by straight lines between the k's (k = 1 is ratio 1); "> longest" when it never does. 0.5 is
the papers' size of the loss, 0.9 the study's direction threshold; both were stated before the runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import NamedTuple, Sequence

from mtkit.checkpoint import load_checkpoint
from mtkit.config import load_config
from mtkit.evaluate import BucketScore
from mtkit.results import load_json


class Capacity(NamedTuple):
    name: str
    d: int  # the fixed vector's size: encoder 2 × d/2, decoder d
    attention: str
    buckets: list[BucketScore]
    half_length: float | None  # L*; None: BLEU never halves within the longest bucket
    steps: int
    cpu_minutes: float
    stop_reason: str
    best_dev_loss: float
    wall_minutes: float


def midpoint(b: BucketScore, longest: int) -> float:
    """Return the middle of a bucket's lengths; the open last bucket ends at `longest`."""
    return (max(b.low, 1) + (b.high if b.high is not None else longest)) / 2


def half_length(buckets: Sequence[BucketScore], longest: int) -> float | None:
    """Return the length at which BLEU first reaches half the first non-empty bucket's (None: never)."""
    points = [(midpoint(b, longest), b.bleu) for b in buckets if b.bleu is not None]
    if not points:
        return None
    half = points[0][1] / 2
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if y1 <= half:
            return x0 + (x1 - x0) * (y0 - half) / (y0 - y1) if y0 != y1 else x1
    return None


def read_run(run: Path, longest: int) -> Capacity:
    """Return a finished capacity run's scores, L* and training facts."""
    cfg = load_config(run / "config.yaml")
    state = load_checkpoint(run / "last.pt").state
    system = load_json(run / "eval" / "scores.json")[0]
    return Capacity(run.name, cfg.model.dec_hidden_dim, cfg.model.attention.kind, system.buckets,
                    half_length(system.buckets, longest), state.step, state.cpu_seconds / 60, state.stop_reason,
                    state.best_metric or float("nan"), state.seconds / 60)


class Passages(NamedTuple):
    """A Bible capacity run's passage scores: the paired ratio at each k and the last verse's loss increase."""

    words: list[float]  # mean source words of the inputs at k = 1, 2, ...
    ratios: list[float | None]  # BLEU_k / BLEU_1 (1 at k = 1)
    ci: list[tuple[float | None, float | None]]
    first_increase: float | None  # teacher-forced loss over alone, first verse of the longest passages
    last_increase: float | None  # ... and last verse


def crossing(words: Sequence[float], ratios: Sequence[float | None], level: float) -> float | None:
    """Return the input length at which the paired ratio first falls to `level`, by straight lines (None: never)."""
    points = [(w, r) for w, r in zip(words, ratios) if r is not None]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if y1 <= level:
            return x0 + (x1 - x0) * (y0 - level) / (y0 - y1) if y0 != y1 else x1
    return None


def read_passages(run: Path) -> Passages | None:
    """Return a run's paired ratios and position losses (None: the run has no passage scores)."""
    scores = run / "eval" / "passages" / "passages_scores.json"
    if not scores.is_file():
        return None
    paired = sorted(load_json(scores)[0].paired, key=lambda p: p.k)
    increase: dict[str, float] = {}
    forced = run / "eval" / "passages" / "passages_forced.json"
    if forced.is_file():
        rows = json.loads(forced.read_text(encoding="utf-8"))["systems"][0]["losses"]
        longest_k = max(r["k"] for r in rows)
        increase = {r["position"]: r["increase"] for r in rows if r["k"] == longest_k}
    return Passages([p.mean_src_words for p in paired], [1.0 if p.k == 1 else p.ratio for p in paired],
                    [(p.ci_low, p.ci_high) for p in paired], increase.get("first"), increase.get("last"))


def passage_table(rows: Sequence[Capacity], passages: Sequence[Passages]) -> list[str]:
    """Return the markdown lines for the Bible task: paired ratio per k, L*_0.5, L*_0.9, position losses."""
    words = passages[0].words
    longest = f"> {words[-1]:.0f}"
    lines = ["| run | d | attention | " + " | ".join(f"k={k + 1} ({w:.0f} words)" for k, w in enumerate(words)) +
             " | L*_0.5 | L*_0.9 | loss first / last of k=" + str(len(words)) +
             " | steps | CPU min | wall min | best dev loss | stopped |",
             "|---|---|---|" + "---|" * len(words) + "---|---|---|---|---|---|---|---|"]
    for r, p in zip(rows, passages):
        cells = [("–" if ratio is None else f"{ratio:.3f}") +
                 (f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None and k > 0 else "")
                 for k, (ratio, (lo, hi)) in enumerate(zip(p.ratios, p.ci))]
        half, ninety = crossing(p.words, p.ratios, 0.5), crossing(p.words, p.ratios, 0.9)
        loss = "–" if p.last_increase is None else f"{p.first_increase:+.2f} / {p.last_increase:+.2f}"
        lines.append(f"| {r.name} | {r.d} | {r.attention} | " + " | ".join(cells) +
                     f" | {longest if half is None else f'{half:.0f}'} | {longest if ninety is None else f'{ninety:.0f}'}"
                     f" | {loss} | {r.steps} | {r.cpu_minutes:.1f} | {r.wall_minutes:.1f} | {r.best_dev_loss:.3f}"
                     f" | {r.stop_reason} |")
    return lines


def table(rows: Sequence[Capacity], longest: int) -> list[str]:
    """Return the markdown lines: one row per run, BLEU per bucket, then L* and how the run ended."""
    labels = [b.label for b in rows[0].buckets]
    lines = ["| run | d | attention | " + " | ".join(labels) + " | L* (words) | steps | CPU min | wall min | best dev loss | stopped |",
             "|---|---|---|" + "---|" * len(labels) + "---|---|---|---|---|---|"]
    for r in rows:
        cells = ["–" if b.bleu is None else f"{b.bleu:.1f}" for b in r.buckets]
        star = f"> {longest}" if r.half_length is None else f"{r.half_length:.0f}"
        lines.append(f"| {r.name} | {r.d} | {r.attention} | " + " | ".join(cells) +
                     f" | {star} | {r.steps} | {r.cpu_minutes:.1f} | {r.wall_minutes:.1f} | {r.best_dev_loss:.3f}"
                     f" | {r.stop_reason} |")
    return lines


def plot(rows: Sequence[Capacity], curves: Sequence[tuple[list[float], list[float]]],
         stars: Sequence[float | None], longest: float, out: Path, bible: bool) -> Path:
    """Draw each run's curve by input length (left) and its L* against d (right); return `out`.

    `curves` hold BLEU by length (synthetic) or the paired ratio by mean input length (Bible) per run, `stars`
    each run's L* (None: beyond `longest`).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    for r, (xs, ys) in zip(rows, curves):
        left.plot(xs, ys, marker="o", linestyle="-" if r.attention == "none" else "--", label=f"{r.name}")
    if bible:
        left.axhline(0.5, color="grey", linewidth=0.8)
        left.set_xlabel("mean source words of the inputs (the same verses alone, then k at a time)")
        left.set_ylabel("BLEU_k / BLEU_1")
    else:
        left.set_xlabel("source length (words; bucket midpoints)")
        left.set_ylabel("BLEU")
    left.set_ylim(bottom=0)
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    left.set_title("Each model trained until its dev loss stopped improving")
    for kind, marker in (("none", "o"), ("additive", "s")):
        mine = [(r, star) for r, star in zip(rows, stars) if r.attention == kind]
        if not mine:
            continue
        ys = [longest if star is None else star for _, star in mine]
        right.plot([r.d for r, _ in mine], ys, marker=marker,
                   label="RNNencdec" if kind == "none" else "RNNsearch (control)")
        for (r, star), y in zip(mine, ys):
            if star is None:
                right.annotate("never halves", (r.d, y), textcoords="offset points", xytext=(4, -12), fontsize=8)
    right.set_xscale("log", base=2)
    right.set_xlabel("size d of the fixed vector (and the decoder state)")
    right.set_ylabel("L*: input length where the score halves (words)")
    right.set_ylim(0, longest + 5)
    right.grid(alpha=0.3)
    right.legend()
    right.set_title("L*(d)")
    fig.savefig(out, dpi=150)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=None, help="wall time of the whole script")
    args = parser.parse_args()
    longest = load_config(args.runs[0] / "config.yaml").data.max_len
    rows = [read_run(run, longest) for run in args.runs]
    passages = [read_passages(run) for run in args.runs]
    bible = all(p is not None for p in passages)
    if bible:
        lines = ["# The fixed vector's capacity on the study's data", "",
                 "The same verses alone and inside passages of k verses (beam search): the paired ratio BLEU_k / "
                 "BLEU_1 with its window-level interval, L*_0.5 and L*_0.9 (the mean input length where the ratio "
                 "falls to 0.5 and 0.9), and the teacher-forced loss increase over alone (nats per piece) of the "
                 "first and last verse of the longest passages:", "", *passage_table(rows, passages)]
        curves = [(p.words, [1.0 if r is None else r for r in p.ratios]) for p in passages]
        stars = [crossing(p.words, p.ratios, 0.5) for p in passages]
        longest = passages[0].words[-1]
    else:
        lines = ["# The fixed vector's capacity on incompressible sentences", "",
                 "BLEU by source length (test sentences, beam search) and L*, the length at which BLEU halves:", "",
                 *table(rows, longest)]
        curves = [([midpoint(b, longest) for b in r.buckets if b.bleu is not None],
                   [b.bleu for b in r.buckets if b.bleu is not None]) for r in rows]
        stars = [r.half_length for r in rows]
    if args.plot is not None:
        plot(rows, curves, stars, longest, args.plot, bible)
        lines += ["", f"![capacity]({args.plot.name})"]
    if args.seconds is not None:
        lines += ["", f"Whole script: {args.seconds / 60:.1f} min wall time."]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
