import math

import pytest
import torch

from mtkit.model.attention import (ATTENTIONS, AdditiveAttention, DotAttention, ScaledDotAttention,
                                   attention_kind, make_attention)

KINDS = list(ATTENTIONS)
MASK = torch.tensor([[True, True, False, False], [True, True, True, True], [True, False, False, False]])


def build(kind: str, query_dim: int = 6, key_dim: int = 6, dim: int = 5):
    torch.manual_seed(0)
    return make_attention(kind, query_dim, key_dim, dim)


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_sum_to_one_and_padding_gets_zero(kind):
    att = build(kind)
    context, weights = att(torch.randn(3, 6), torch.randn(3, 4, 6), MASK)
    assert context.shape == (3, 6) and weights.shape == (3, 4)
    assert torch.allclose(weights.sum(-1), torch.ones(3))
    assert (weights[~MASK] == 0).all() and (weights[MASK] > 0).all()


@pytest.mark.parametrize("kind", KINDS)
def test_padded_keys_change_nothing(kind):
    att = build(kind)
    query, keys = torch.randn(3, 6), torch.randn(3, 4, 6)
    other = keys.clone()
    other[~MASK] = 100.0
    for x, y in zip(att(query, keys, MASK), att(query, other, MASK)):
        assert torch.allclose(x, y)


@pytest.mark.parametrize("kind", KINDS)
def test_precomputed_keys_and_many_queries_agree(kind):
    att = build(kind, query_dim=6, key_dim=6)
    query, keys = torch.randn(3, 2, 6), torch.randn(3, 4, 6)  # (B, T, Q), (B, S, K)
    projected = att.precompute(keys)
    context, weights = att(query, keys, MASK, projected)
    assert context.shape == (3, 2, 6) and weights.shape == (3, 2, 4)
    for t in range(2):
        c, w = att(query[:, t], keys, MASK)  # one step, projecting keys itself
        assert torch.allclose(c, context[:, t], atol=1e-6) and torch.allclose(w, weights[:, t], atol=1e-6)


@pytest.mark.parametrize("kind", ["additive", "general", "scaled_dot"])
def test_query_and_key_sizes_may_differ(kind):
    att = build(kind, query_dim=7, key_dim=6)
    context, weights = att(torch.randn(3, 7), torch.randn(3, 4, 6), MASK)
    assert context.shape == (3, 6) and weights.shape == (3, 4)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_every_parameter(kind):
    att = build(kind)
    keys = torch.randn(3, 4, 6, requires_grad=True)
    context, _ = att(torch.randn(3, 6), keys, MASK)
    context.pow(2).sum().backward()
    for name, p in att.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert keys.grad.abs().sum() > 0


def test_additive_matches_bahdanau_formula():
    att: AdditiveAttention = build("additive")
    query, keys = torch.randn(3, 6), torch.randn(3, 4, 6)
    _, weights = att(query, keys, MASK)
    for b in range(3):
        n = int(MASK[b].sum())
        e = torch.stack([att.v.weight[0] @ torch.tanh(att.query_proj.weight @ query[b]
                                                      + att.key_proj.weight @ keys[b, j]) for j in range(n)])
        assert torch.allclose(weights[b, :n], e.softmax(0), atol=1e-6)


def test_dot_and_scaled_dot_match_formulas():
    query, keys = torch.randn(3, 6), torch.randn(3, 4, 6)
    dot: DotAttention = build("dot")
    assert dot.precompute(keys) is keys  # nothing to precompute
    _, w = dot(query, keys, MASK)
    assert torch.allclose(w[1], (keys[1] @ query[1]).softmax(0), atol=1e-6)
    sdot: ScaledDotAttention = build("scaled_dot", dim=5)
    _, w = sdot(query, keys, MASK)
    k, q = keys[1] @ sdot.key_proj.weight.T, sdot.query_proj.weight @ query[1]
    assert torch.allclose(w[1], (k @ q / math.sqrt(5)).softmax(0), atol=1e-6)


def test_make_attention_choices_and_errors():
    assert make_attention("none", 4, 4, 4) is None
    assert attention_kind(None) == "none"
    for kind in KINDS:
        assert attention_kind(build(kind)) == kind
    with pytest.raises(ValueError, match="none, additive, dot, general, scaled_dot"):
        make_attention("multihead", 4, 4, 4)
    with pytest.raises(ValueError, match="query_dim == key_dim"):
        make_attention("dot", 4, 8, 4)
