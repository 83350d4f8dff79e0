"""Are long test verses harder or easier? BLEU by length within bands of training-set overlap.

Usage: python scripts/overlap_by_length.py RUN [RUN ...] [--plot PNG]     (runs of one prepared corpus)

For each test verse, its overlap is the share of its reference's word 4-grams (lower-cased) that
also occur in the training targets: formulae ("and the LORD spake unto Moses, saying"), lists and
parallel passages score high, verses with new content low. The script prints, per source-length
bucket, the mean overlap and the verse count, then each run's BLEU by length within three overlap
bands, from the run's cached beam-search output (`mtkit eval` makes it). If the share of
high-overlap verses changes with length, a raw BLEU-by-length curve mixes the effect of length
with that of overlap; within a band, the mix is held roughly fixed. --plot draws the curves of the
high-overlap band (where both kinds of model score well above the floor), with 95% bootstrap bands.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from mtkit.buckets import LengthBuckets
from mtkit.errors import MtkitError
from mtkit.compare import run_test_outputs
from mtkit.evaluate import DEFAULT_EDGES, bleu_by_length, evaluate_system
from mtkit.plots import plot_bleu_by_length

BANDS = ((0.0, 0.3, "overlap < 0.3"), (0.3, 0.5, "0.3 ≤ overlap < 0.5"), (0.5, 1.01, "overlap ≥ 0.5"))
MIN_BUCKET = 20  # fewer verses than this in a bucket and band: no BLEU printed


def four_grams(text: str) -> list[tuple[str, ...]]:
    words = re.findall(r"\w+|[^\w\s]", text.lower())
    return [tuple(words[i : i + 4]) for i in range(len(words) - 3)]


def overlaps(refs: list[str], train_targets: list[str]) -> list[float]:
    """Return, for each reference, the share of its 4-grams found in the training targets (0 for none)."""
    seen = {gram for target in train_targets for gram in four_grams(target)}
    return [sum(g in seen for g in grams) / len(grams) if grams else 0.0 for grams in map(four_grams, refs)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="training runs of one prepared corpus")
    parser.add_argument("--plot", type=Path, metavar="PNG", help="draw BLEU by length of the high-overlap band here")
    args = parser.parse_args()
    try:
        report(args.runs, args.plot)
    except MtkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def report(runs: list[Path], plot: Path | None) -> None:
    """Print the overlap table of `runs` (and draw the high-overlap figure to `plot`)."""
    outputs = {run: run_test_outputs(run) for run in runs}  # (sources, hypotheses, references), cached
    srcs, _, refs = outputs[runs[0]]
    for run, (_, _, run_refs) in outputs.items():
        if run_refs != refs:
            raise MtkitError(f"{run}: its test split differs from {runs[0]}'s; compare runs of one prepared corpus")
    prepared = Path(json.loads((runs[0] / "data.json").read_text(encoding="utf-8"))["prepared"])
    share = overlaps(refs, (prepared / "train.tgt").read_text(encoding="utf-8").splitlines())
    buckets = [LengthBuckets(DEFAULT_EDGES).index_of(s) for s in srcs]
    labels = LengthBuckets(DEFAULT_EDGES).labels
    print(f"{'words':22}" + "".join(f"{label:>9}" for label in labels))
    mean = [sum(o for o, b in zip(share, buckets) if b == k) / max(1, buckets.count(k)) for k in range(len(labels))]
    print(f"{'mean overlap':22}" + "".join(f"{m:9.2f}" for m in mean))
    for low, high, name in BANDS:
        keep = [i for i, o in enumerate(share) if low <= o < high]
        counts = [sum(1 for i in keep if buckets[i] == k) for k in range(len(labels))]
        print(f"\n{name}\n  {'verses':20}" + "".join(f"{c:9d}" for c in counts))
        for run, (_, hyps, _) in outputs.items():
            scores = bleu_by_length([srcs[i] for i in keep], [hyps[i] for i in keep], [refs[i] for i in keep],
                                    n_boot=0)
            cells = [f"{s.bleu:9.1f}" if s.count >= MIN_BUCKET else f"{'-':>9}" for s in scores]
            print(f"  {run.name:20}" + "".join(cells))
    if plot:
        low, high, name = BANDS[-1]
        keep = [i for i, o in enumerate(share) if low <= o < high]
        systems = [evaluate_system(run.name.removeprefix("bible_"), [srcs[i] for i in keep],
                                   [hyps[i] for i in keep], [refs[i] for i in keep])
                   for run, (_, hyps, _) in outputs.items()]
        plot_bleu_by_length(systems, plot, title=f"BLEU by source length, test verses with {name}")
        print(f"\nwrote {plot}")


if __name__ == "__main__":
    sys.exit(main())
