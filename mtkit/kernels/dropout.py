"""Dropout whose CPU masks come from `native.c`'s counter-based generator: one pass, no mask kept.

torch's dropout on the CPU (the reference) draws a Bernoulli mask element by element, keeps it for
the backward pass and multiplies twice. `Dropout` in fused mode draws one 64-bit seed from torch's
default generator per call instead, and `native.dropout` zeroes or scales every element in one pass
from a hash of (seed, element index); the backward pass rebuilds the same mask from the seed. The
masks have torch's distribution (each element dropped with probability p, independently, the rest
scaled by 1 / (1 − p)) but another stream, so a run's numbers differ from torch's dropout as one
seed's differ from another's. As in torch's, a dropped element is x · 0, so a NaN stays NaN.
Seeding stays torch's: `torch.manual_seed` and a restored generator state (an exact resume) give
the same masks again. Elsewhere (reference mode, a GPU, float64, no C compiler) it is `F.dropout`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import mtkit.kernels.native as native
from mtkit.kernels.switch import compiled


class _NativeDropout(torch.autograd.Function):
    """x ↦ native.dropout(x, p, seed); the gradient is the same mask, rebuilt from the seed, applied to it."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, p: float, seed: int) -> Tensor:
        ctx.p, ctx.seed = p, seed
        return _apply(x, p, seed)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        return _apply(grad, ctx.p, ctx.seed), None, None


def _apply(x: Tensor, p: float, seed: int) -> Tensor:
    """Return native.dropout of x (any shape): the mask follows x's logical (row-major) order, whatever its strides."""
    rows = x
    if not 1 <= x.dim() <= 3 or x.stride(-1) != 1:  # what native.dropout_layout cannot take: a contiguous copy
        rows = x.reshape(-1, x.size(-1)) if x.dim() else x.reshape(1)
        rows = rows.contiguous()
    out = torch.empty_like(rows)  # rows' strides where it is dense: a time-major (B, T, O) view stays time-major
    native.dropout(rows, p, seed, out)
    return out.view(x.shape)


class Dropout(nn.Module):
    """`nn.Dropout(p)`, with `native.c`'s masks for float32 CPU tensors in fused mode (see the module docstring)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0 or not compiled(x) or x.numel() == 0:
            return F.dropout(x, self.p, True)
        seed = int(torch.empty((), dtype=torch.int64).random_())  # from torch's default generator
        return _NativeDropout.apply(x, self.p, seed)

    def extra_repr(self) -> str:
        return f"p={self.p}"
