"""Synthetic parallel corpora with a known right answer, for tests and quick demonstrations.

`reverse` asks for the source words in reverse order: every target word depends on a source word
far away, so a model without attention must squeeze the whole sentence into one vector.
`substitute` maps each word into a made-up vocabulary and swaps neighbouring pairs (local
reordering, like adjective-noun order between Spanish and English).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

SYLLABLES = ["ka", "lo", "mi", "ru", "te", "sa", "no", "pi", "de", "vu", "ba", "zo", "fe", "gi", "hu", "ja"]


def make_vocabulary(size: int, seed: int = 0) -> list[str]:
    """Return `size` distinct made-up words of two or three syllables."""
    rng = random.Random(seed)
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))))
    return sorted(words)


def make_pairs(
    n: int,
    task: Literal["reverse", "substitute"] = "reverse",
    min_len: int = 3,
    max_len: int = 10,
    vocab_size: int = 20,
    seed: int = 0,
) -> list[tuple[str, str]]:
    """Return `n` (source, target) pairs of the task with source lengths drawn uniformly in [min_len, max_len]."""
    rng = random.Random(seed)
    src_vocab = make_vocabulary(vocab_size, seed=1)
    tgt_vocab = [w.upper() for w in make_vocabulary(vocab_size, seed=2)]
    mapping = dict(zip(src_vocab, tgt_vocab))
    pairs = []
    for _ in range(n):
        words = [rng.choice(src_vocab) for _ in range(rng.randint(min_len, max_len))]
        if task == "reverse":
            target = words[::-1]
        elif task == "substitute":
            target = [mapping[w] for w in words]
            for i in range(0, len(target) - 1, 2):  # swap each neighbouring pair
                target[i], target[i + 1] = target[i + 1], target[i]
        else:
            raise ValueError(f"unknown synthetic task {task!r}; choose reverse or substitute")
        pairs.append((" ".join(words), " ".join(target)))
    return pairs


def write_pairs(pairs: list[tuple[str, str]], src_path: Path, tgt_path: Path) -> None:
    """Write pairs as two aligned text files, one sentence a line."""
    src_path.parent.mkdir(parents=True, exist_ok=True)
    src_path.write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    tgt_path.write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
