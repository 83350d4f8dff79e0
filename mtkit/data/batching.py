"""Token-count batches with length bucketing: little padding, seeded order."""

from __future__ import annotations

import random
from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from mtkit.data.tokenizer import BOS, EOS, PAD


class Batch(NamedTuple):
    """One padded batch. B batch, S source length, T target length (+1 for bos/eos)."""

    src: Tensor  # (B, S) long
    src_len: Tensor  # (B,) long
    src_mask: Tensor  # (B, S) bool, True on real tokens
    tgt_in: Tensor  # (B, T) long: bos y_1 .. y_n
    tgt_out: Tensor  # (B, T) long: y_1 .. y_n eos
    index: Tensor  # (B,) position of each sentence in the split

    @property
    def num_tgt_tokens(self) -> int:
        """Return the number of real target tokens (eos included)."""
        return int((self.tgt_out != PAD).sum())

    def to(self, device: torch.device | str) -> "Batch":
        """Return the batch on `device`."""
        return Batch(*(t.to(device, non_blocking=True) for t in self))


def pad_sequences(seqs: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """Return (padded (B, L) long, lengths (B,) long) of the given id sequences."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)  # (B,)
    out = torch.full((len(seqs), max([1, *map(len, seqs)])), PAD, dtype=torch.long)  # (B, L)
    for i, seq in enumerate(seqs):
        out[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out, lengths


def collate(src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]], index: Sequence[int]) -> Batch:
    """Return the Batch of the sentences at `index` (target gets bos/eos added)."""
    src, src_len = pad_sequences([src_ids[i] for i in index])
    tgt_in, _ = pad_sequences([[BOS, *tgt_ids[i]] for i in index])
    tgt_out, _ = pad_sequences([[*tgt_ids[i], EOS] for i in index])
    return Batch(src, src_len, src != PAD, tgt_in, tgt_out, torch.as_tensor(list(index), dtype=torch.long))


def batch_indices(
    src_lengths: Sequence[int],
    tgt_lengths: Sequence[int],
    batch_tokens: int,
    seed: int | None = None,
) -> list[list[int]]:
    """Return batches of sentence indices holding at most `batch_tokens` padded tokens each.

    Sentences are sorted by (target, source) length so a batch holds similar lengths and little
    padding; with a seed, ties are broken at random and the batch order is shuffled, both
    repeatably. A sentence longer than the budget gets a batch of its own.
    """
    rng = random.Random(seed)
    keys = [(t, s, rng.random() if seed is not None else 0.0, i)
            for i, (s, t) in enumerate(zip(src_lengths, tgt_lengths))]
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for t, s, _, i in sorted(keys):
        size = max(longest, t + 1, s)  # the padded width if this sentence joins
        if current and size * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, size = [], max(t + 1, s)
        current.append(i)
        longest = size
    if current:
        batches.append(current)
    if seed is not None:
        rng.shuffle(batches)
    return batches


def padding_fraction(src_lengths: Sequence[int], tgt_lengths: Sequence[int], batches: list[list[int]]) -> float:
    """Return the share of padded positions over source and target in the given batches."""
    real = padded = 0
    for batch in batches:
        src = [src_lengths[i] for i in batch]
        tgt = [tgt_lengths[i] + 1 for i in batch]
        real += sum(src) + sum(tgt)
        padded += len(batch) * (max(src) + max(tgt))
    return 1.0 - real / padded if padded else 0.0
