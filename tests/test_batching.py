import random

import torch

from mtkit.data.batching import batch_indices, collate, pad_sequences, padding_fraction
from mtkit.data.tokenizer import BOS, EOS, PAD


def test_collate_adds_bos_eos_and_masks():
    batch = collate([[5, 6, 7], [8]], [[9, 10], [11, 12, 13]], [0, 1])
    assert batch.src.tolist() == [[5, 6, 7], [8, PAD, PAD]]
    assert batch.src_len.tolist() == [3, 1]
    assert batch.src_mask.tolist() == [[True, True, True], [True, False, False]]
    assert batch.tgt_in.tolist() == [[BOS, 9, 10, PAD], [BOS, 11, 12, 13]]
    assert batch.tgt_out.tolist() == [[9, 10, EOS, PAD], [11, 12, 13, EOS]]
    assert batch.num_tgt_tokens == 7


def test_batches_respect_token_budget_and_cover_every_sentence_once():
    rng = random.Random(0)
    src = [rng.randint(1, 40) for _ in range(500)]
    tgt = [rng.randint(1, 40) for _ in range(500)]
    batches = batch_indices(src, tgt, batch_tokens=400, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for b in batches:
        width = max(max(src[i] for i in b), max(tgt[i] + 1 for i in b))
        assert width * len(b) <= 400 or len(b) == 1


def test_bucketing_keeps_padding_small_and_order_is_seeded():
    rng = random.Random(0)
    src = [rng.randint(1, 60) for _ in range(2000)]
    tgt = [max(1, s + rng.randint(-3, 3)) for s in src]
    bucketed = batch_indices(src, tgt, batch_tokens=1000, seed=3)
    assert padding_fraction(src, tgt, bucketed) < 0.1
    shuffled = list(range(2000))
    rng.shuffle(shuffled)
    naive = [shuffled[i : i + 20] for i in range(0, 2000, 20)]
    assert padding_fraction(src, tgt, naive) > 0.3
    assert bucketed == batch_indices(src, tgt, batch_tokens=1000, seed=3)
    assert bucketed != batch_indices(src, tgt, batch_tokens=1000, seed=4)


def test_pad_sequences_handles_empty_input_rows():
    padded, lengths = pad_sequences([[], [1, 2]])
    assert padded.shape == (2, 2) and lengths.tolist() == [0, 2] and padded.dtype == torch.long
