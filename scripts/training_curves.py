"""Draw dev BLEU and dev loss against wall-clock minutes for finished or running training runs.

Usage: python scripts/training_curves.py RUN [RUN ...] --plot PNG [--names NAME ...]

Reads each run's metrics.jsonl (the validation records `mtkit train` writes: step, seconds since
the start of the run, dev_loss, dev_bleu) and prints one markdown table row per run with the best dev
BLEU reached by 10, 20, 30 and 40 minutes and at its last validation, then draws the curves.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mtkit.errors import MtkitError
from mtkit.plots import Curve, plot_training_curves

MARKS = (10, 20, 30, 40)


def read_curve(run: Path, name: str) -> Curve:
    """Return the validations of run/metrics.jsonl as a Curve (minutes since the run began)."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise MtkitError(f"{run}: no metrics.jsonl; is it a training run?")
    valid = [r for r in map(json.loads, path.read_text().splitlines()) if r.get("kind") == "valid"]
    return Curve(name, [r["seconds"] / 60 for r in valid], [r["dev_bleu"] for r in valid],
                 [r["dev_loss"] for r in valid])


def best_by(curve: Curve, minutes: float) -> float | None:
    """Return the best dev BLEU validated by `minutes`, or None if none was or the run stopped earlier."""
    if not curve.minutes or curve.minutes[-1] < minutes:
        return None
    seen = [b for m, b in zip(curve.minutes, curve.dev_bleu) if m <= minutes]
    return max(seen) if seen else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--names", nargs="+", help="one legend name per run (default: the run directory's name)")
    parser.add_argument("--plot", type=Path, required=True)
    args = parser.parse_args()
    names = args.names or [run.resolve().name for run in args.runs]
    if len(names) != len(args.runs):
        print(f"error: {len(names)} --names for {len(args.runs)} runs", file=sys.stderr)
        return 2
    try:
        curves = [read_curve(run, name) for run, name in zip(args.runs, names)]
    except MtkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("| run | " + " | ".join(f"by {m} min" for m in MARKS) + " | at the end |")
    print("|---|" + "---|" * (len(MARKS) + 1))
    for curve in curves:
        cells = " | ".join("–" if c is None else f"{c:.1f}" for c in (best_by(curve, m) for m in MARKS))
        end = f"{max(curve.dev_bleu):.1f} ({curve.minutes[-1]:.1f} min)" if curve.minutes else "–"
        print(f"| {curve.name} | {cells} | {end} |")
    plot_training_curves(curves, args.plot)
    print(f"wrote {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
