"""How much does a run use its source? Greedy BLEU on the test split with real vs shuffled sources.

Usage: python scripts/source_blind.py RUN [RUN ...]

Three rows per run, each scored against the real references and bucketed by the real sources:
- real sources: the model's ordinary output;
- shuffled sources: every reference gets the translation of another, random test verse;
- shuffled within bucket: another verse of the same 10-word length bucket, so the output has the
  right length and style but the wrong content. Its BLEU is what fluent output with no knowledge of
  the source earns in that bucket: the floor a model's real-source BLEU should be read against.
A model that ignores its input (a target-side language model) scores about the same on all three.
"""

from __future__ import annotations

import random
import sys
from collections import defaultdict
from pathlib import Path

from mtkit.buckets import LengthBuckets
from mtkit.errors import MtkitError
from mtkit.compare import run_test_outputs
from mtkit.evaluate import DEFAULT_EDGES, bleu_by_length, corpus_scores


def shuffled_within_buckets(srcs: list[str], seed: int = 0) -> list[int]:
    """Return a permutation of the line numbers that only swaps lines of the same length bucket."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i, src in enumerate(srcs):
        groups[LengthBuckets(DEFAULT_EDGES).index_of(src)].append(i)
    order = list(range(len(srcs)))
    rng = random.Random(seed)
    for members in groups.values():
        moved = members[:]
        rng.shuffle(moved)
        for i, j in zip(members, moved):
            order[i] = j
    return order


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        for run in map(Path, sys.argv[1:]):
            report(run)
    except MtkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def report(run: Path) -> None:
    """Print greedy BLEU of `run` with real, shuffled and within-bucket shuffled sources."""
    srcs, hyps, refs = run_test_outputs(run, beam=1, length_penalty=1.0)  # greedy; cached in RUN/eval/
    anywhere = list(range(len(srcs)))
    random.Random(0).shuffle(anywhere)
    rows = (("real sources", hyps), ("shuffled sources", [hyps[j] for j in anywhere]),
            ("shuffled within bucket", [hyps[j] for j in shuffled_within_buckets(srcs)]))
    for name, outputs in rows:
        buckets = " / ".join(f"{b.bleu:.1f}" for b in bleu_by_length(srcs, outputs, refs, n_boot=0))
        print(f"{run.name}  {name:22}  BLEU {corpus_scores(outputs, refs).bleu:5.2f}  by length {buckets}")


if __name__ == "__main__":
    sys.exit(main())
