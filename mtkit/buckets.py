"""Sentence-length buckets: the one definition the data split, evaluation, the serve page and the plots share.

A length is a whitespace word count. The config's `length_edges` are upper-inclusive: edges (10, 20)
make the buckets 0-10, 11-20 and 21+. The first bucket starts at 0 words, and its label says so: an
empty line (prepared data holds none, but an output file may) is counted with the shortest sentences.
"""

from __future__ import annotations

import bisect
import numbers
from dataclasses import dataclass
from typing import Sequence

from mtkit.errors import MtkitError


@dataclass(frozen=True)
class LengthBuckets:
    """Buckets of sentence length cut at upper-inclusive `edges` (whole words, positive, strictly increasing)."""

    edges: tuple[int, ...]

    def __init__(self, edges: Sequence[int]) -> None:
        if any(isinstance(e, bool) or not isinstance(e, numbers.Integral) for e in edges):
            raise MtkitError(f"length edges {list(edges)} must be whole numbers of words, e.g. [10, 20, 30]")
        edges = tuple(int(e) for e in edges)
        if not edges or edges[0] < 1 or any(a >= b for a, b in zip(edges, edges[1:])):
            raise MtkitError(f"length edges {list(edges)} must be positive and strictly increasing, e.g. [10, 20, 30]")
        object.__setattr__(self, "edges", edges)

    def __len__(self) -> int:
        """Return the number of buckets: one more than the edges."""
        return len(self.edges) + 1

    def index(self, n_words: int) -> int:
        """Return the bucket of a length: 0 for n ≤ edges[0], i for edges[i-1] < n ≤ edges[i], len(edges) above."""
        return bisect.bisect_left(self.edges, n_words)

    def index_of(self, line: str) -> int:
        """Return the bucket of a line by its whitespace word count."""
        return self.index(len(line.split()))

    @property
    def lows(self) -> list[int]:
        """Return each bucket's shortest length: 0, then one past each edge."""
        return [0] + [e + 1 for e in self.edges]

    @property
    def highs(self) -> list[int | None]:
        """Return each bucket's longest length; None for the open last bucket."""
        return [*self.edges, None]

    @property
    def labels(self) -> list[str]:
        """Return each bucket's label, shortest first: "0-10", "11-20", …, "61+" for edges (10, 20, …, 60)."""
        return [f"{low}+" if high is None else f"{low}" if low == high else f"{low}-{high}"
                for low, high in zip(self.lows, self.highs)]

    def bounds(self) -> list[tuple[str, int, int | None]]:
        """Return (label, low, high) per bucket, shortest first."""
        return list(zip(self.labels, self.lows, self.highs))
