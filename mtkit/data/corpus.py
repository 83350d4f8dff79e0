"""Cleaning and splitting of (src, tgt) sentence pairs: normalisation, filters, deduplication, (stratified) splits.

Plain functions on lists of pairs; nothing here knows tokenizers or models. Lengths are whitespace words.
"""

from __future__ import annotations

import logging
import random
import unicodedata
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from mtkit.errors import MtkitError

log = logging.getLogger(__name__)

Pair = tuple[str, str]

DROP_REASONS = ("empty", "too_short", "too_long", "ratio", "duplicate")


class Cleaned(NamedTuple):
    pairs: list[Pair]
    kept_indices: list[int]  # index in the input of each kept pair, to keep e.g. Bible refs aligned
    dropped: dict[str, int]  # reason → count, every reason of DROP_REASONS present


class Splits(NamedTuple):
    train: list[Pair]
    dev: list[Pair]
    test: list[Pair]
    train_idx: list[int]  # indices into the pairs given to `split`, ascending
    dev_idx: list[int]
    test_idx: list[int]


def normalize(text: str) -> str:
    """Return `text` in NFC with runs of whitespace collapsed to one space and the ends stripped."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def clean(pairs: Sequence[Pair], min_len: int = 1, max_len: int = 80, max_ratio: float = 3.0) -> Cleaned:
    """Return the normalised pairs that pass the filters, their input indices, and counts of dropped pairs by reason.

    Reasons, checked in this order: "empty" (either side), "too_short" / "too_long" (either side has fewer than
    min_len or more than max_len words), "ratio" (longer side / shorter side in words > max_ratio), "duplicate"
    (the same (src, tgt) pair was kept before). Order is kept otherwise.
    """
    if min_len < 1 or max_len < min_len:
        raise MtkitError(f"data.min_len ({min_len}) must be at least 1 and at most data.max_len ({max_len})")
    if max_ratio < 1:
        raise MtkitError(f"data.max_ratio ({max_ratio}) must be at least 1 (it divides the longer side by the shorter)")
    dropped = dict.fromkeys(DROP_REASONS, 0)
    kept: list[Pair] = []
    kept_indices: list[int] = []
    seen: set[Pair] = set()
    for index, (src, tgt) in enumerate(pairs):
        pair = (normalize(src), normalize(tgt))
        reason = _drop_reason(pair, min_len, max_len, max_ratio) or ("duplicate" if pair in seen else None)
        if reason:
            dropped[reason] += 1
            continue
        seen.add(pair)
        kept.append(pair)
        kept_indices.append(index)
    log.info("kept %d of %d pairs (dropped: %s)", len(kept), len(pairs), format_dropped(dropped))
    return Cleaned(kept, kept_indices, dropped)


def _drop_reason(pair: Pair, min_len: int, max_len: int, max_ratio: float) -> str | None:
    if not pair[0] or not pair[1]:
        return "empty"
    src_len, tgt_len = len(pair[0].split()), len(pair[1].split())
    if min(src_len, tgt_len) < min_len:
        return "too_short"
    if max(src_len, tgt_len) > max_len:
        return "too_long"
    if max(src_len, tgt_len) / min(src_len, tgt_len) > max_ratio:
        return "ratio"
    return None


def format_dropped(dropped: Mapping[str, int]) -> str:
    """Return a one-line summary such as "empty 3, duplicate 12 (15 in all)"; reasons with no pairs are left out."""
    parts = [f"{reason} {count}" for reason, count in dropped.items() if count]
    if not parts:
        return "none"
    return f"{', '.join(parts)} ({sum(dropped.values())} in all)"


# ---------------------------------------------------------------------------------------------------------------
# Length buckets


def _check_edges(edges: Sequence[int]) -> None:
    if not edges or any(e < 1 for e in edges) or any(a >= b for a, b in zip(edges, edges[1:])):
        raise MtkitError(f"length edges {list(edges)} must be positive and strictly increasing, e.g. [10, 20, 30]")


def bucket_index(n_words: int, edges: Sequence[int]) -> int:
    """Return the bucket of a length: 0 for n ≤ edges[0], i for edges[i-1] < n ≤ edges[i], len(edges) above."""
    for i, edge in enumerate(edges):
        if n_words <= edge:
            return i
    return len(edges)


def bucket_label(n_words: int, edges: Sequence[int]) -> str:
    """Return the label of the bucket holding a length: "1-10", "11-20", …, "61+" for edges (10, 20, …, 60)."""
    return bucket_labels(edges)[bucket_index(n_words, edges)]


def bucket_labels(edges: Sequence[int]) -> list[str]:
    """Return the labels of all len(edges) + 1 buckets, shortest first."""
    _check_edges(edges)
    lows = [1] + [e + 1 for e in edges]
    return [f"{low}-{high}" if low < high else f"{high}" for low, high in zip(lows, edges)] + [f"{edges[-1] + 1}+"]


# ---------------------------------------------------------------------------------------------------------------
# Splits


def split(pairs: Sequence[Pair], dev_size: int, test_size: int, seed: int,
          stratify_edges: Sequence[int] | None = None) -> Splits:
    """Return train / dev / test splits of `pairs`, the same for the same seed.

    Pairs that share a source sentence always land in the same split, so no test or dev source is trained on.
    Without `stratify_edges` test and dev are drawn at random. With them, test is stratified by source length:
    each bucket gets test_size // n_buckets, a bucket too small for that gives at most half its pairs (the rest
    stay for training) and the shortfall is spread over the other buckets; dev is then drawn at random.
    """
    if dev_size < 0 or test_size < 0:
        raise MtkitError(f"data.dev_size ({dev_size}) and data.test_size ({test_size}) must not be negative")
    if dev_size + test_size >= len(pairs):
        raise MtkitError(f"{len(pairs)} pairs are too few for data.dev_size ({dev_size}) + data.test_size "
                         f"({test_size}) plus a training split; lower the sizes or add data")
    rng = random.Random(seed)
    groups = _source_groups(pairs)
    rng.shuffle(groups)
    if stratify_edges is None:
        test, rest = _take(groups, test_size)
    else:
        test, rest = _take_stratified(groups, test_size, stratify_edges, [len(p[0].split()) for p in pairs])
    rng.shuffle(rest)  # test took the first groups of each bucket: the front of `rest` is skewed by length
    dev, train = _take(rest, dev_size)
    train_idx, dev_idx, test_idx = (sorted(i for group in part for i in group) for part in (train, dev, test))
    return Splits([pairs[i] for i in train_idx], [pairs[i] for i in dev_idx], [pairs[i] for i in test_idx],
                  train_idx, dev_idx, test_idx)


def _source_groups(pairs: Sequence[Pair]) -> list[list[int]]:
    """Return the indices of the pairs grouped by source sentence, groups in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for index, (src, _) in enumerate(pairs):
        groups.setdefault(src, []).append(index)
    return list(groups.values())


def _take(groups: list[list[int]], size: int) -> tuple[list[list[int]], list[list[int]]]:
    """Return (taken, rest): groups taken in order while they fit into `size` pairs, and all the others."""
    taken, rest, count = [], [], 0
    for group in groups:
        if count + len(group) <= size:
            taken.append(group)
            count += len(group)
        else:
            rest.append(group)
    return taken, rest


def _take_stratified(groups: list[list[int]], size: int, edges: Sequence[int],
                     src_lens: list[int]) -> tuple[list[list[int]], list[list[int]]]:
    n_buckets = len(bucket_labels(edges))
    by_bucket: list[list[list[int]]] = [[] for _ in range(n_buckets)]
    for group in groups:  # all pairs of a group share the source, hence the length
        by_bucket[bucket_index(src_lens[group[0]], edges)].append(group)
    # Water-filling: equal shares, capped at half of each bucket so that it keeps pairs to train on.
    caps = [sum(len(g) for g in bucket) // 2 for bucket in by_bucket]
    if sum(caps) < size:
        raise MtkitError(f"data.test_size ({size}) is more than a stratified test split can take ({sum(caps)}: "
                         "half of each length bucket); lower data.test_size or set data.stratify to false")
    quotas = [0] * n_buckets
    left = size
    while left:
        open_buckets = [b for b in range(n_buckets) if quotas[b] < caps[b]]
        share, extra = divmod(left, len(open_buckets))
        if share == 0:  # fewer pairs left than open buckets: one more each for the largest
            for b in sorted(open_buckets, key=lambda b: -caps[b])[:extra]:
                quotas[b] += 1
            break
        for b in open_buckets:
            add = min(share, caps[b] - quotas[b])
            quotas[b] += add
            left -= add
    taken = [group for bucket, quota in zip(by_bucket, quotas) for group in _take(bucket, quota)[0]]
    chosen = {group[0] for group in taken}
    return taken, [group for group in groups if group[0] not in chosen]


# ---------------------------------------------------------------------------------------------------------------
# Reports


def length_report(splits: Splits | Mapping[str, Sequence[Pair]], edges: Sequence[int]) -> str:
    """Return a table of pair counts per split and source-length bucket (whitespace words)."""
    named = {"train": splits.train, "dev": splits.dev, "test": splits.test} if isinstance(splits, Splits) \
        else dict(splits)
    labels = bucket_labels(edges)
    counts = {name: [0] * len(labels) for name in named}
    for name, pairs in named.items():
        for src, _ in pairs:
            counts[name][bucket_index(len(src.split()), edges)] += 1
    width = max(7, *(len(name) for name in named))
    lines = [f"{'src words':<10}" + "".join(f"{name:>{width}}" for name in named)]
    for b, label in enumerate(labels):
        lines.append(f"{label:<10}" + "".join(f"{counts[name][b]:>{width}}" for name in named))
    lines.append(f"{'total':<10}" + "".join(f"{len(pairs):>{width}}" for pairs in named.values()))
    return "\n".join(lines)
