"""The training loss's fast path: the vocabulary projection and cross-entropy a chunk of rows at a time.

The reference is `F.cross_entropy(F.linear(x, W, b), target, reduction="sum", label_smoothing=ε)`
(mtkit/loss.py uses it in reference mode): the same loss and gradients up to float rounding
(tests/test_kernels.py), without ever holding the (N, V) logits.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

import mtkit.kernels.native as native
from mtkit.kernels.switch import compiled as compiled_for


class _LinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of softmax(x Wᵀ + b) against targets, a chunk of rows at a time.

    The (N, V) logits are never held whole: each chunk's logits become its softmax in place, the
    softmax minus the (smoothed) one-hot target is the gradient of the logits, and the gradients of
    x, W and b are taken from it at once, while the chunk is in cache. Where `native.c` builds, the
    bias, the log-sum-exp and that gradient are one function taking each row three times while it
    sits in L1 (native.cross_entropy_rows); else the same in torch ops. Autograd would keep the
    logits, their log-softmax, and two more (N, V) tensors in backward: 4 × 128 MB for a 4k-token
    batch and an 8k vocabulary. The loss is the last node, so the gradients wait in ctx for the
    incoming scalar.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, target: Tensor, chunk: int,
                smoothing: float, grad_enabled: bool) -> Tensor:
        need_grad = grad_enabled and any(ctx.needs_input_grad[:3])  # needs_input_grad ignores no_grad
        grad_x = torch.empty_like(x) if need_grad else None  # (N, O)
        grad_w = torch.empty_like(weight) if need_grad else None  # (V, O), written by the first chunk
        grad_b = torch.zeros_like(bias) if need_grad else None  # (V,)
        total = x.new_zeros(())
        vocab = weight.size(0)
        compiled = compiled_for(x, weight, bias)
        nll_rows = x.new_empty(min(chunk, x.size(0))) if compiled else None
        # one (C, V) buffer for every chunk's logits: a fresh 8 MB tensor a chunk would cost page faults
        logits_buf = x.new_empty(min(chunk, x.size(0)), vocab) if compiled else None
        for start in range(0, x.size(0), chunk):
            xs, ys = x[start : start + chunk], target[start : start + chunk]  # (C, O), (C,)
            if compiled:  # native.c's three passes a row, while the row is in L1; else the same in torch ops
                logits = torch.mm(xs, weight.t(), out=logits_buf[: xs.size(0)])  # (C, V), the bias added there
                nll = nll_rows[: xs.size(0)]
                native.cross_entropy_rows(logits, bias, ys.contiguous(), smoothing, nll, grad_b)
                total = total + nll.sum()
                if need_grad:
                    torch.mm(logits, weight, out=grad_x[start : start + chunk])  # (C, O)
                    _add_product(grad_w, logits.t(), xs, start == 0)  # (V, O)
                continue
            logits = torch.addmm(bias, xs, weight.t())  # (C, V)
            # the log-sum-exp by hand, in place: torch.logsumexp makes two (C, V) temporaries and its
            # own exp, and the softmax below needs the same exp again; this takes one of each
            shifted = logits.sub_(logits.amax(-1, keepdim=True))  # (C, V) logits − max: exp cannot overflow
            picked = shifted.gather(1, ys.unsqueeze(1)).squeeze(1)  # (C,) the target's shifted logit
            mean = shifted.mean(-1) if smoothing else None  # (C,)
            probs = shifted.exp_()  # (C, V) unnormalised softmax, in place of the logits
            norm = probs.sum(-1)  # (C,)
            log_norm = norm.log()  # log-sum-exp − max
            nll = log_norm - picked  # −log p(y): the max cancels
            if smoothing:
                # the smoothed target puts ε/V on every word: loss (1−ε)·nll + ε·mean_v(lse − logit_v)
                nll = (1 - smoothing) * nll + smoothing * (log_norm - mean)
            total = total + nll.sum()
            if need_grad:
                probs.div_(norm.unsqueeze(1))  # (C, V) softmax
                if smoothing:
                    probs.sub_(smoothing / vocab)
                probs.scatter_add_(1, ys.unsqueeze(1), probs.new_full((ys.numel(), 1), smoothing - 1))
                torch.mm(probs, weight, out=grad_x[start : start + chunk])  # (C, O)
                _add_product(grad_w, probs.t(), xs, start == 0)  # (V, O)
                grad_b.add_(probs.sum(0))
        ctx.grads = (grad_x, grad_w, grad_b)
        return total

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        grad_x, grad_w, grad_b = ctx.grads
        del ctx.grads
        scale = lambda g, needed: g.mul_(grad) if needed and g is not None else None  # noqa: E731
        return (scale(grad_x, ctx.needs_input_grad[0]), scale(grad_w, ctx.needs_input_grad[1]),
                scale(grad_b, ctx.needs_input_grad[2]), None, None, None, None)


def _add_product(total: Tensor, a: Tensor, b: Tensor, first: bool) -> None:
    """total = a b on the first chunk, else total += a b: the first chunk writes the (V, O) gradient, no zeros first."""
    if first:
        torch.mm(a, b, out=total)
    else:
        total.addmm_(a, b)


def linear_cross_entropy(features: Tensor, weight: Tensor, bias: Tensor, target: Tensor,
                         label_smoothing: float = 0.0, chunk: int = 256) -> Tensor:
    """Return the summed cross-entropy of softmax(features Wᵀ + b) against target (N,), for features (N, O).

    The same number as F.cross_entropy(F.linear(features, weight, bias), target, reduction="sum",
    label_smoothing=...), the reference, without holding the (N, V) logits; see `_LinearCrossEntropy`.
    """
    return _LinearCrossEntropy.apply(features, weight, bias, target, chunk, label_smoothing, torch.is_grad_enabled())
