"""Additive attention's fast paths: the score without its (B, T, S, A) tensor, and a search step in one C loop.

The reference is `AdditiveAttention` in mtkit/model/attention.py: e_ts = v_aᵀ tanh(q_t + k_s),
softmax over the real positions s, context = Σ_s α_ts h_s.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

import mtkit.kernels.native as native


def _tanh_of_sums(q: Tensor, keys: Tensor, exact: bool = True) -> Tensor:
    """Return tanh(q_t + k_s) for every pair: (B, T, S, A) from q (B, T, A) and keys (B, S, A).

    exact=False computes 2σ(2x) − 1 instead: on the CPU torch's float tanh costs more than its sigmoid,
    and search spends much of its time here. The two agree to 2e-7 (torch.tanh is within 3e-8 of the
    true value). Training keeps torch.tanh: its trajectory, compared across versions, would part from
    the first changed bit.
    """
    x = q.unsqueeze(2) + keys.unsqueeze(1)  # (B, T, S, A); then in place: one buffer, not two
    return x.tanh_() if exact else x.mul_(2).sigmoid_().mul_(2).sub_(1)


class _AdditiveScore(torch.autograd.Function):
    """v_aᵀ tanh(q_t + k_s) for every (t, s): (B, T, S), from q (B, T, A), keys (B, S, A), v (A,).

    Autograd would keep tanh(q + k), B·T·S·A floats per call: with input feeding, one call per
    target step, that is most of a training step's memory for long sentences. This keeps only the
    inputs and recomputes tanh(q + k) in backward, one more tanh per call. grad_enabled: whether
    autograd records the call (inside forward it never does), which chooses the exact tanh.
    """

    @staticmethod
    def forward(ctx: Any, q: Tensor, keys: Tensor, v: Tensor, grad_enabled: bool) -> Tensor:
        ctx.save_for_backward(q, keys, v)
        return _tanh_of_sums(q, keys, exact=grad_enabled) @ v  # (B, T, S)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        q, keys, v = ctx.saved_tensors
        hidden = _tanh_of_sums(q, keys)  # (B, T, S, A), recomputed
        grad_v = None
        if ctx.needs_input_grad[2]:
            grad_v = (hidden.flatten(0, 2).t() @ grad.flatten().to(hidden.dtype)).to(v.dtype)  # (A,)
        # d score / d(q + k) = v (1 − tanh²), scaled by the incoming gradient; in place
        hidden.mul_(hidden).neg_().add_(1).mul_(v).mul_(grad.unsqueeze(-1))  # (B, T, S, A)
        grad_q = hidden.sum(2) if ctx.needs_input_grad[0] else None  # (B, T, A)
        grad_keys = None
        if ctx.needs_input_grad[1]:
            grad_keys = hidden.squeeze(1) if hidden.size(1) == 1 else hidden.sum(1)  # (B, S, A)
        return grad_q, grad_keys, grad_v, None


def additive_score(q: Tensor, keys: Tensor, v: Tensor) -> Tensor:
    """Return v_aᵀ tanh(q_t + k_s): (B, T, S) for projected queries q (B, T, A), keys (B, S, A) and v (A,).

    Without autograd (search, validation) it takes the faster tanh (`_tanh_of_sums`).
    """
    return _AdditiveScore.apply(q, keys, v, torch.is_grad_enabled())


def additive_attention_step(q: Tensor, keys: Tensor, v: Tensor, mask: Tensor, states: Tensor) -> tuple[Tensor, Tensor]:
    """Return (context (N, K), weights (N, S)) of one search step from `native.c`'s one loop.

    q (N, A) are the projected queries, N = g·B with g consecutive rows per sentence; keys (B, S, A),
    v (A,), mask (B, S) True on real tokens, states (B, S, K). Only where `compiled(q, states)`.
    """
    weights = q.new_empty(q.size(0), states.size(1))  # (N, S)
    context = q.new_empty(q.size(0), states.size(2))  # (N, K)
    native.additive_forward(q.contiguous(), keys.contiguous(), v, mask.contiguous(), states.contiguous(), weights,
                            context)
    return context, weights
