"""Print the spread of each model's paired ratios (BLEU_k / BLEU_1) over several runs of the study (markdown).

Usage: python scripts/seed_spread.py RESULTS [RESULTS ...]
Each RESULTS is a directory holding passages_scores.json from `mtkit eval --passages` (as `make reproduce` and
`scripts/seeds.sh` write it), or such a JSON file itself (docs/length_study_passages_scores.json is the main
run's record); systems are matched by name.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from mtkit.results import load_json


def spread(results: list[Path]) -> list[str]:
    """Return the markdown lines: per model and k, the ratio in each run, then mean, sd, min and max."""
    runs = [{s.name: s for s in load_json(r if r.is_file() else r / "passages_scores.json")} for r in results]
    names = [name for name in runs[0] if all(name in run for run in runs)]
    ks = [p.k for p in runs[0][names[0]].paired if p.k > 1] if names else []
    header = "| model | k | " + " | ".join(r.as_posix() for r in results) + " | mean | sd | min | max |"
    lines = [header, "|---|---|" + "---|" * (len(results) + 4)]
    for name in names:
        for k in ks:
            ratios = [next(p.ratio for p in run[name].paired if p.k == k) for run in runs]
            cells = [f"{r:.3f}" for r in ratios]
            sd = statistics.stdev(ratios) if len(ratios) > 1 else float("nan")
            lines.append(f"| {name} | {k} | " + " | ".join(cells) +
                         f" | {statistics.mean(ratios):.3f} | {sd:.3f} | {min(ratios):.3f} | {max(ratios):.3f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+")
    args = parser.parse_args()
    print("\n".join(["# The paired ratio BLEU_k / BLEU_1 over runs with other training seeds", "", *spread(args.results)]))


if __name__ == "__main__":
    main()
