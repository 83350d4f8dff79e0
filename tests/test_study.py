"""The length study in miniature: on sequence reversal, attention holds up on long inputs, RNNencdec does not."""

from __future__ import annotations

import pytest

from conftest import reversal_data, train_reversal
from mtkit.config import DecodeConfig
from mtkit.search import decode


def token_accuracy(net, min_len: int, max_len: int) -> float:
    """Return the share of reference positions the greedy output gets right, on held-out inputs."""
    src, tgt = reversal_data(200, min_len=min_len, max_len=max_len, seed=123)
    hits = total = 0
    for nbest, ref in zip(decode(net, src, DecodeConfig(beam=1)), tgt):
        hits += sum(a == b for a, b in zip(nbest[0].tokens, ref))
        total += len(ref)
    return hits / total


def same_budget(kind: str):
    """Return a model trained with the same sizes, data and steps as its counterpart."""
    # 250 steps: at 200 attention's long-input accuracy sat near the 0.85 line for seed 0 (0.97 with -ffast-math,
    # 0.96 in reference mode, 0.85 with the C kernels' flags of issue 28: the rounding of the last digits alone);
    # at 250 it is 0.94 with those flags
    return train_reversal(kind, steps=250, size=48, lr=0.005, min_len=2, max_len=14, n=8000)


@pytest.fixture(scope="module")
def accuracies():
    return {kind: {"short": token_accuracy(net, 2, 6), "long": token_accuracy(net, 11, 14)}
            for kind, net in ((k, same_budget(k)) for k in ("additive", "none"))}


def test_attention_beats_no_attention_on_long_inputs(accuracies):
    assert accuracies["additive"]["long"] > 0.85, accuracies
    assert accuracies["additive"]["long"] - accuracies["none"]["long"] > 0.3, accuracies


def test_no_attention_degrades_with_length_and_attention_stays_flat(accuracies):
    none, attn = accuracies["none"], accuracies["additive"]
    assert none["short"] - none["long"] > 0.25, accuracies
    assert attn["short"] - attn["long"] < 0.1, accuracies
