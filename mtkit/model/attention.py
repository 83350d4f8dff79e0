"""Attention: score a decoder query against the encoder states, then average the states.

Every variant shares one call:

    context, weights = attention(query, states, mask, projected=None)

with query (B, Q) for one decoder step, or (B, T, Q) for many steps at once; states (B, S, K) the
encoder states h, which the keys are made from and which are also the values that get averaged;
mask (B, S) True on real tokens.
A one-step query may have g·B rows: rows g·b … g·b + g − 1 all read sentence b (the beams of a
beam search), so the source is not copied once per beam.
The part of the score that depends on the states alone — the projected keys (W1 h, W_K h, ...) — is
`precompute(states)`, done once per source sentence and passed back in as `projected` at every step.

Padding is filled with -inf before the softmax, so it gets exactly zero weight and the weights of
each row sum to one. Every row needs at least one real token.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mtkit import kernels


class Attention(nn.Module):
    """Masking, softmax and weighted average shared by all score functions.

    Subclasses define `score`, and `precompute` when part of the score depends on the keys alone.
    """

    def precompute(self, states: Tensor) -> Tensor:
        """Return the projected keys, the query-independent part of the score, of states (B, S, K): (B, S, *).

        Identity here: dot attention scores the states themselves.
        """
        return states

    def score(self, query: Tensor, projected: Tensor) -> Tensor:
        """Return unnormalised scores (B, T, S) for queries (B, T, Q) and the projected keys precompute(states)."""
        raise NotImplementedError

    def forward(self, query: Tensor, states: Tensor, mask: Tensor,
                projected: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Return (context, weights): (N, K), (N, S) for query (N, Q); (B, T, K), (B, T, S) for (B, T, Q).

        states (B, S, K) are the encoder states; mask (B, S) is True on real tokens; projected is
        `precompute(states)` when the caller already has it. A one-step query has N = g·B rows, g
        consecutive rows per sentence (g = 1 but in beam search).
        """
        if projected is None:
            projected = self.precompute(states)
        one_step = query.dim() == 2
        if one_step:
            # the g queries of a sentence score its keys as if they were g target positions
            query = query.view(states.size(0), -1, query.size(-1))  # (B, g, Q)
        scores = self.score(query, projected)  # (B, T, S)
        # -inf before the softmax gives padding exactly zero weight
        weights = scores.masked_fill(~mask.unsqueeze(1), float("-inf")).softmax(-1)  # (B, T, S)
        context = torch.bmm(weights, states)  # (B, T, K)
        if one_step:
            return context.flatten(0, 1), weights.flatten(0, 1)  # (N, K), (N, S)
        return context, weights


class AdditiveAttention(Attention):
    """Bahdanau et al. (2015), eq. 6 and appendix A.1.2: e_ij = v_aᵀ tanh(W_a s_{i-1} + U_a h_j).

    U_a h_j is precomputed once per sentence; W_a, U_a and v_a are all trained. In fused mode the
    score is `kernels.additive_score`, which keeps no (B, T, S, A) tensor for the backward pass, and a
    search step is `kernels.additive_attention_step`, one C loop.
    """

    def __init__(self, query_dim: int, key_dim: int, dim: int) -> None:
        super().__init__()
        self.query_proj = nn.Linear(query_dim, dim, bias=False)  # W_a
        self.key_proj = nn.Linear(key_dim, dim, bias=False)  # U_a
        self.v = nn.Linear(dim, 1, bias=False)  # v_a

    def precompute(self, states: Tensor) -> Tensor:
        """Return U_a h_j: (B, S, A)."""
        return self.key_proj(states)  # (B, S, A)

    def forward(self, query: Tensor, states: Tensor, mask: Tensor,
                projected: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """`Attention.forward`; in fused mode a search step (one query per row, no autograd) is one C loop."""
        if query.dim() == 2 and projected is not None and not torch.is_grad_enabled() and kernels.compiled(query, states):
            return kernels.additive_attention_step(self.query_proj(query), projected, self.v.weight.view(-1), mask,
                                                   states)  # (N, K), (N, S)
        return super().forward(query, states, mask, projected)

    def score(self, query: Tensor, projected: Tensor) -> Tensor:
        """Return v_aᵀ tanh(W_a s + U_a h): (B, T, S)."""
        q = self.query_proj(query)  # (B, T, A)
        v = self.v.weight.view(-1)  # (A,)
        if kernels.fused():
            return kernels.additive_score(q, projected, v)  # (B, T, S), the same numbers
        return torch.tanh(q.unsqueeze(2) + projected.unsqueeze(1)) @ v  # (B, T, S, A) → (B, T, S)


class DotAttention(Attention):
    """Luong et al. (2015), eq. 8, 'dot': score(h_t, h̄_s) = h_tᵀ h̄_s. Needs query_dim == key_dim."""

    def __init__(self, query_dim: int, key_dim: int, dim: int = 0) -> None:
        super().__init__()
        if query_dim != key_dim:
            raise ValueError(f"dot attention needs query_dim == key_dim, got {query_dim} and {key_dim}; "
                             "use general, scaled_dot or additive attention for different sizes")

    def score(self, query: Tensor, projected: Tensor) -> Tensor:
        """Return h_tᵀ h̄_s: (B, T, S)."""
        return torch.bmm(query, projected.transpose(1, 2))  # (B, T, S)


class GeneralAttention(Attention):
    """Luong et al. (2015), eq. 8, 'general': score(h_t, h̄_s) = h_tᵀ W_a h̄_s.

    W_a h̄_s is precomputed once per sentence.
    """

    def __init__(self, query_dim: int, key_dim: int, dim: int = 0) -> None:
        super().__init__()
        self.key_proj = nn.Linear(key_dim, query_dim, bias=False)  # W_a

    def precompute(self, states: Tensor) -> Tensor:
        """Return W_a h̄_s: (B, S, Q)."""
        return self.key_proj(states)  # (B, S, Q)

    def score(self, query: Tensor, projected: Tensor) -> Tensor:
        """Return h_tᵀ (W_a h̄_s): (B, T, S)."""
        return torch.bmm(query, projected.transpose(1, 2))  # (B, T, S)


class ScaledDotAttention(Attention):
    """Vaswani et al. (2017), eq. 1, one head: k = W_K h, q = W_Q s, score = kᵀq / √d.

    The keys k are precomputed once per sentence; the values are the unprojected states h.
    """

    def __init__(self, query_dim: int, key_dim: int, dim: int) -> None:
        super().__init__()
        self.query_proj = nn.Linear(query_dim, dim, bias=False)  # W_Q
        self.key_proj = nn.Linear(key_dim, dim, bias=False)  # W_K
        self.scale = 1.0 / math.sqrt(dim)  # keeps the dot products' variance near one

    def precompute(self, states: Tensor) -> Tensor:
        """Return k = W_K h: (B, S, d)."""
        return self.key_proj(states)  # (B, S, d)

    def score(self, query: Tensor, projected: Tensor) -> Tensor:
        """Return kᵀq / √d: (B, T, S)."""
        q = self.query_proj(query)  # (B, T, d)
        return torch.bmm(q, projected.transpose(1, 2)) * self.scale  # (B, T, S)


ATTENTIONS: dict[str, type[Attention]] = {
    "additive": AdditiveAttention,
    "dot": DotAttention,
    "general": GeneralAttention,
    "scaled_dot": ScaledDotAttention,
}
KINDS = ("none", *ATTENTIONS)


def make_attention(kind: str, query_dim: int, key_dim: int, dim: int = 256) -> Attention | None:
    """Return the attention module named by kind, or None for "none" (the RNNencdec baseline).

    query_dim is the decoder state size, key_dim the encoder state size, dim the hidden size of
    additive scoring or the key/query size of scaled_dot (ignored by dot and general).
    """
    if kind == "none":
        return None
    if kind not in ATTENTIONS:
        raise ValueError(f"unknown attention kind {kind!r}; choose one of: {', '.join(KINDS)}")
    return ATTENTIONS[kind](query_dim, key_dim, dim)


def attention_kind(attention: Attention | None) -> str:
    """Return the name make_attention knows this module by ("none" for None)."""
    if attention is None:
        return "none"
    return next(name for name, cls in ATTENTIONS.items() if type(attention) is cls)
