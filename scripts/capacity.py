"""Summarise the synthetic capacity runs: BLEU by source length per model, and L*(d), where BLEU halves.

Usage: python scripts/capacity.py RUN [RUN ...] [--plot PNG] [--seconds TOTAL]
Each RUN was trained by scripts/capacity_synthetic.sh and scored with `mtkit eval --by-length --out RUN/eval`.
L* is the source length at which a run's BLEU first falls to half its BLEU on the shortest inputs, read by
straight lines between bucket midpoints; "> longest" when it never does.
"""

from __future__ import annotations

import argparse
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
                    state.best_metric or float("nan"))


def table(rows: Sequence[Capacity], longest: int) -> list[str]:
    """Return the markdown lines: one row per run, BLEU per bucket, then L* and how the run ended."""
    labels = [b.label for b in rows[0].buckets]
    lines = ["| run | d | attention | " + " | ".join(labels) + " | L* (words) | steps | CPU min | best dev loss | stopped |",
             "|---|---|---|" + "---|" * len(labels) + "---|---|---|---|---|"]
    for r in rows:
        cells = ["–" if b.bleu is None else f"{b.bleu:.1f}" for b in r.buckets]
        star = f"> {longest}" if r.half_length is None else f"{r.half_length:.0f}"
        lines.append(f"| {r.name} | {r.d} | {r.attention} | " + " | ".join(cells) +
                     f" | {star} | {r.steps} | {r.cpu_minutes:.1f} | {r.best_dev_loss:.3f} | {r.stop_reason} |")
    return lines


def plot(rows: Sequence[Capacity], longest: int, out: Path) -> Path:
    """Draw BLEU by length per run (left) and L*(d) against d (right); return `out`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    for r in rows:
        xs = [midpoint(b, longest) for b in r.buckets if b.bleu is not None]
        ys = [b.bleu for b in r.buckets if b.bleu is not None]
        left.plot(xs, ys, marker="o", linestyle="-" if r.attention == "none" else "--", label=f"{r.name}")
    left.set_xlabel("source length (words; bucket midpoints)")
    left.set_ylabel("BLEU")
    left.set_ylim(bottom=0)
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    left.set_title("BLEU by length, each model trained until its dev loss stopped improving")
    for kind, marker in (("none", "o"), ("additive", "s")):
        mine = [r for r in rows if r.attention == kind]
        if not mine:
            continue
        ds = [r.d for r in mine]
        ls = [longest if r.half_length is None else r.half_length for r in mine]
        right.plot(ds, ls, marker=marker, label="RNNencdec" if kind == "none" else "RNNsearch (control)")
        for r, y in zip(mine, ls):
            if r.half_length is None:
                right.annotate("never halves", (r.d, y), textcoords="offset points", xytext=(4, -12), fontsize=8)
    right.set_xscale("log", base=2)
    right.set_xlabel("size d of the fixed vector (and the decoder state)")
    right.set_ylabel("L*: length where BLEU halves (words)")
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
    lines = ["# The fixed vector's capacity on incompressible sentences", "",
             "BLEU by source length (test sentences, beam search) and L*, the length at which BLEU halves:", "",
             *table(rows, longest)]
    if args.plot is not None:
        plot(rows, longest, args.plot)
        lines += ["", f"![capacity]({args.plot.name})"]
    if args.seconds is not None:
        lines += ["", f"Whole script: {args.seconds / 60:.1f} min wall time."]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
