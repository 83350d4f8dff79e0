"""Shared fixtures: a tiny model trained on id-level sequence reversal (no tokenizer involved)."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from mtkit.config import AttentionConfig, ModelConfig
from mtkit.data.batching import collate
from mtkit.model import Seq2Seq, build_model

# Tiny models run fastest on one thread (and tests may run beside other work on 2 cores).
torch.set_num_threads(1)

FIRST_WORD = 4  # ids 0-3 are pad, unk, bos, eos


def reversal_data(n: int, vocab: int = 14, min_len: int = 3, max_len: int = 8, seed: int = 0):
    """Return (src_ids, tgt_ids): random id sequences and their reversals."""
    rng = random.Random(seed)
    src = [[rng.randrange(FIRST_WORD, vocab) for _ in range(rng.randint(min_len, max_len))] for _ in range(n)]
    return src, [s[::-1] for s in src]


def train_reversal(kind: str = "additive", steps: int = 300, seed: int = 0, **model) -> Seq2Seq:
    """Return a tiny model trained with Adam to reverse id sequences."""
    torch.manual_seed(seed)
    cfg = ModelConfig(emb_dim=24, hidden_dim=32, dec_hidden_dim=64, out_dim=32, dropout=0.0,
                      attention=AttentionConfig(kind=kind, dim=32), **model)
    net = build_model(cfg, 14, 14)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    src, tgt = reversal_data(4000, seed=seed)
    rng = random.Random(seed)
    for _ in range(steps):
        batch = collate(src, tgt, rng.sample(range(len(src)), 64))
        logits, _ = net(batch.src, batch.src_len, batch.tgt_in)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=0)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
    return net.eval()


@pytest.fixture(scope="session")
def reversal_model() -> Seq2Seq:
    return train_reversal()
