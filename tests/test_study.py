"""The length study in miniature: on sequence reversal, attention holds up on long inputs, RNNencdec does not."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from conftest import reversal_data
from mtkit.config import AttentionConfig, ModelConfig
from mtkit.data.batching import collate
from mtkit.model import build_model
from mtkit.search import decode


def train_same_budget(kind: str, steps: int = 200, max_len: int = 14, seed: int = 0):
    """Return a model trained with the same sizes, data and steps as its counterpart."""
    torch.manual_seed(seed)
    cfg = ModelConfig(emb_dim=32, hidden_dim=48, dec_hidden_dim=96, out_dim=48, dropout=0.0,
                      attention=AttentionConfig(kind=kind, dim=48))
    net = build_model(cfg, 14, 14)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.005)
    src, tgt = reversal_data(8000, min_len=2, max_len=max_len, seed=seed)
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


def token_accuracy(net, min_len: int, max_len: int) -> float:
    """Return the share of reference positions the greedy output gets right, on held-out inputs."""
    src, tgt = reversal_data(200, min_len=min_len, max_len=max_len, seed=123)
    hits = total = 0
    for nbest, ref in zip(decode(net, src, beam=1), tgt):
        hits += sum(a == b for a, b in zip(nbest[0].tokens, ref))
        total += len(ref)
    return hits / total


@pytest.fixture(scope="module")
def accuracies():
    return {kind: {"short": token_accuracy(net, 2, 6), "long": token_accuracy(net, 11, 14)}
            for kind, net in ((k, train_same_budget(k)) for k in ("additive", "none"))}


def test_attention_beats_no_attention_on_long_inputs(accuracies):
    assert accuracies["additive"]["long"] > 0.85, accuracies
    assert accuracies["additive"]["long"] - accuracies["none"]["long"] > 0.3, accuracies


def test_no_attention_degrades_with_length_and_attention_stays_flat(accuracies):
    none, attn = accuracies["none"], accuracies["additive"]
    assert none["short"] - none["long"] > 0.25, accuracies
    assert attn["short"] - attn["long"] < 0.1, accuracies
