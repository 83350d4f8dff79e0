"""Cleaning and splitting of (src, tgt) sentence pairs: normalisation, filters, deduplication, (stratified) splits,
and inputs joined from consecutive pairs (passage windows, joined training inputs).

Plain functions on lists of pairs; nothing here knows tokenizers or models. Lengths are whitespace words.
"""

from __future__ import annotations

import logging
import math
import random
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from mtkit.buckets import LengthBuckets
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
# Splits


def split(pairs: Sequence[Pair], dev_size: int, test_size: int, seed: int,
          stratify: LengthBuckets | None = None) -> Splits:
    """Return train / dev / test splits of `pairs`, the same for the same seed.

    Pairs that share a source sentence always land in the same split, so no test or dev source is trained on.
    Without `stratify` test and dev are drawn at random. With buckets, test is stratified by source length:
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
    if stratify is None:
        test, rest = _take(groups, test_size)
    else:
        test, rest = _take_stratified(groups, test_size, stratify, [len(p[0].split()) for p in pairs])
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


def _take_stratified(groups: list[list[int]], size: int, buckets: LengthBuckets,
                     src_lens: list[int]) -> tuple[list[list[int]], list[list[int]]]:
    n_buckets = len(buckets)
    by_bucket: list[list[list[int]]] = [[] for _ in range(n_buckets)]
    for group in groups:  # all pairs of a group share the source, hence the length
        by_bucket[buckets.index(src_lens[group[0]])].append(group)
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


def length_report(splits: Splits | Mapping[str, Sequence[Pair]], buckets: LengthBuckets) -> str:
    """Return a table of pair counts per split and source-length bucket (whitespace words)."""
    named = {"train": splits.train, "dev": splits.dev, "test": splits.test} if isinstance(splits, Splits) \
        else dict(splits)
    labels = buckets.labels
    counts = {name: [0] * len(labels) for name in named}
    for name, pairs in named.items():
        for src, _ in pairs:
            counts[name][buckets.index_of(src)] += 1
    width = max(7, *(len(name) for name in named))
    lines = [f"{'src words':<10}" + "".join(f"{name:>{width}}" for name in named)]
    for b, label in enumerate(labels):
        lines.append(f"{label:<10}" + "".join(f"{counts[name][b]:>{width}}" for name in named))
    lines.append(f"{'total':<10}" + "".join(f"{len(pairs):>{width}}" for pairs in named.values()))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# References, neighbours and passages of consecutive pairs
#
# Every pair carries a reference: "Gen 1:1" for a Bible verse, the line number for a text or TSV corpus (or a
# TSV column the config names). A reference ends in a number; two pairs are neighbours when they stand next to
# each other in corpus order, their references read the same up to that number, and the numbers differ by one.
# So verses are consecutive only within one book and chapter ("Gen 1:31" and "Gen 2:1" are not), and a pair
# dropped by cleaning ("Gen 1:2" missing) breaks the run; in a text corpus neighbouring lines are consecutive.
# The input built from several pairs joins their sides with spaces, and its reference joins theirs with "+".

REF_JOIN = "+"
_REF = re.compile(r"(.*?)(\d+)", re.S)


class Passage(NamedTuple):
    src: str
    tgt: str
    ref: str  # the references of its k pairs joined by "+"
    window: int  # which window (0, 1, … in corpus order)
    k: int  # pairs joined
    group: int  # place among the window's groups of k (0, 1, …)


class Joined(NamedTuple):
    pairs: list[Pair]
    refs: list[str]
    k: list[int]  # pairs joined in each
    too_long: int  # groups left out because a side had more than max_len words


def ref_key(ref: str) -> tuple[str, int] | None:
    """Return (what comes before the final number, the number) of a reference, or None if it ends in no number."""
    match = _REF.fullmatch(ref)
    return (match.group(1), int(match.group(2))) if match else None


def consecutive_runs(refs: Sequence[str]) -> list[range]:
    """Return the maximal runs of consecutive positions, in order: each pair is the neighbour of the one before."""
    keys = [ref_key(ref) for ref in refs]
    runs, start = [], 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or not _follows(keys[i - 1], keys[i]):
            runs.append(range(start, i))
            start = i
    return runs


def _follows(before: tuple[str, int] | None, after: tuple[str, int] | None) -> bool:
    return before is not None and after is not None and before[0] == after[0] and before[1] + 1 == after[1]


def join_group(pairs: Sequence[Pair], refs: Sequence[str]) -> tuple[Pair, str]:
    """Return the pair that joins `pairs` side by side (words separated by a space) and its reference."""
    return (" ".join(s for s, _ in pairs), " ".join(t for _, t in pairs)), REF_JOIN.join(refs)


def window_size(max_k: int) -> int:
    """Return the verses in a passage window: lcm(1, …, max_k), the least that splits into groups of every k."""
    if max_k < 1:
        raise MtkitError(f"data.passage_max_k ({max_k}) must be at least 1")
    return math.lcm(*range(1, max_k + 1))


def _fits(pairs: Sequence[Pair], max_len: int) -> bool:
    return sum(len(s.split()) for s, _ in pairs) <= max_len and sum(len(t.split()) for _, t in pairs) <= max_len


def draw_windows(pairs: Sequence[Pair], refs: Sequence[str], n_windows: int, max_k: int, max_len: int,
                 seed: int) -> list[list[int]]:
    """Return `n_windows` windows of window_size(max_k) consecutive positions, the same for the same seed.

    A window may start at any position where that many consecutive pairs follow (see `consecutive_runs`) and
    every input `passage_inputs` would build from it has at most max_len words a side; starts are taken in a
    seeded random order, skipping those that overlap a window already taken. Lengths decide only whether a window
    is possible, never which one is drawn. Windows come back in corpus order, each as ascending positions.
    """
    if len(pairs) != len(refs):
        raise MtkitError(f"{len(pairs)} pairs but {len(refs)} references; give one reference per pair")
    size = window_size(max_k)
    starts = [start for run in consecutive_runs(refs) for start in range(run.start, run.stop - size + 1)]
    starts = [start for start in starts
              if all(_fits(pairs[start + g:start + g + k], max_len) for k in range(1, max_k + 1)
                     for g in range(0, size, k))]
    random.Random(seed).shuffle(starts)
    taken = bytearray(len(pairs))
    chosen: list[int] = []
    for start in starts:
        if len(chosen) == n_windows:
            break
        if not any(taken[start:start + size]):
            taken[start:start + size] = b"\x01" * size
            chosen.append(start)
    if len(chosen) < n_windows:
        raise MtkitError(f"data.passage_windows ({n_windows}) is more than the corpus holds: only {len(chosen)} "
                         f"windows of {size} consecutive pairs (data.passage_max_k {max_k}) with inputs of at most "
                         f"data.max_len ({max_len}) words fit; lower data.passage_windows or data.passage_max_k")
    return [list(range(start, start + size)) for start in sorted(chosen)]


def passage_inputs(pairs: Sequence[Pair], refs: Sequence[str], windows: Sequence[Sequence[int]],
                   max_k: int) -> list[Passage]:
    """Return the inputs of k = 1…max_k consecutive pairs that cover each window, ordered by k, window, group.

    Each window is cut into len(window) // k groups of k, so every k covers exactly the same pairs.
    """
    inputs = []
    for k in range(1, max_k + 1):
        for w, window in enumerate(windows):
            if len(window) % k:
                raise MtkitError(f"a window of {len(window)} pairs does not split into groups of {k}")
            for g in range(len(window) // k):
                group = window[g * k:(g + 1) * k]
                (src, tgt), ref = join_group([pairs[i] for i in group], [refs[i] for i in group])
                inputs.append(Passage(src, tgt, ref, w, k, g))
    return inputs


def join_consecutive(pairs: Sequence[Pair], refs: Sequence[str], max_k: int, max_len: int, seed: int) -> Joined:
    """Return inputs of 2…max_k consecutive pairs joined, each pair in at most one, the same for the same seed.

    Each run of consecutive pairs (see `consecutive_runs`) is cut from its start into groups whose sizes are
    drawn at random from 2…max_k (the last group takes what is left if that is at least 2); a group with more
    than max_len words on either side is left out and counted in `too_long`.
    """
    if len(pairs) != len(refs):
        raise MtkitError(f"{len(pairs)} pairs but {len(refs)} references; give one reference per pair")
    rng = random.Random(seed)
    joined: list[Pair] = []
    joined_refs: list[str] = []
    sizes: list[int] = []
    too_long = 0
    for run in consecutive_runs(refs) if max_k >= 2 else []:
        start = run.start
        while run.stop - start >= 2:
            size = min(rng.randint(2, max_k), run.stop - start)
            group = range(start, start + size)
            start += size
            if not _fits([pairs[i] for i in group], max_len):
                too_long += 1
                continue
            pair, ref = join_group([pairs[i] for i in group], [refs[i] for i in group])
            joined.append(pair)
            joined_refs.append(ref)
            sizes.append(size)
    return Joined(joined, joined_refs, sizes, too_long)
