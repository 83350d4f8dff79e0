"""Print the training steps of named models from a study summary's model table (as scripts/summarize.py writes it).

Usage: python scripts/record_steps.py SUMMARY_MD NAME [NAME ...]   → e.g. "3328 2653 1770"
`scripts/seeds.sh` reads the main run's record (docs/length_study.md) with it, so seeds train as many steps.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def recorded_steps(text: str, names: list[str]) -> list[int]:
    """Return each named model's steps from the first table whose header has a "steps" column."""
    steps: dict[str, int] = {}
    column = None
    for line in text.splitlines():
        if column is not None and not line.startswith("|"):
            break  # the end of that table
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if column is None and "model" in cells and any(c.startswith("steps") for c in cells):
            column = next(i for i, c in enumerate(cells) if c.startswith("steps"))
        elif column is not None and len(cells) > column and cells[0] in names:
            steps[cells[0]] = int(cells[column].split()[0])
    missing = [n for n in names if n not in steps]
    if missing:
        raise SystemExit(f"record_steps: no steps for {', '.join(missing)} in the summary's model table")
    return [steps[n] for n in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summary", type=Path)
    parser.add_argument("names", nargs="+")
    args = parser.parse_args()
    print(" ".join(map(str, recorded_steps(args.summary.read_text(encoding="utf-8"), args.names))))


if __name__ == "__main__":
    sys.exit(main())
