"""How much does a run use its source? Greedy BLEU on the test split with real vs shuffled sources.

Usage: python scripts/source_blind.py RUN [RUN ...]
A model that ignores its input (a target-side language model) scores about the same either way.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from mtkit.evaluate import bleu_by_length, corpus_scores
from mtkit.translate import Translator


def main() -> None:
    for run in map(Path, sys.argv[1:]):
        translator = Translator.from_run(run)
        prepared = Path(json.loads((run / "data.json").read_text())["prepared"])
        srcs = (prepared / "test.src").read_text(encoding="utf-8").splitlines()
        refs = (prepared / "test.tgt").read_text(encoding="utf-8").splitlines()
        shuffled = srcs[:]
        random.Random(0).shuffle(shuffled)
        for name, inputs in (("real sources", srcs), ("shuffled sources", shuffled)):
            hyps = [t.text for t in translator.translate(inputs, beam=1)]
            buckets = " / ".join(f"{b.bleu:.1f}" for b in bleu_by_length(srcs, hyps, refs, n_boot=0))
            print(f"{run.name}  {name:16}  BLEU {corpus_scores(hyps, refs).bleu:5.2f}  by length {buckets}")


if __name__ == "__main__":
    main()
