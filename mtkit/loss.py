"""The training loss: cross-entropy of the vocabulary projection, on real target positions only.

`target_loss` is what `mtkit train` minimises and what validation reports: the summed
cross-entropy of `decoder.logits(features)` against the real target tokens,

    F.cross_entropy(F.linear(features, W, b), tgt_out, reduction="sum", label_smoothing=ε)

over the positions that hold a real token. In fused mode (`mtkit.kernels`) the projection and the
cross-entropy run together a chunk of positions at a time (`kernels.linear_cross_entropy`), so the
(B, T, V) logits of a batch never exist; the same loss and gradients up to float rounding.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from mtkit import kernels
from mtkit.data.tokenizer import PAD
from mtkit.model.decoder import Decoder


def linear_cross_entropy(features: Tensor, weight: Tensor, bias: Tensor, target: Tensor,
                         label_smoothing: float = 0.0) -> Tensor:
    """Return the summed cross-entropy of softmax(features Wᵀ + b) against target (N,), for features (N, O)."""
    if kernels.fused():  # features come here in float32, autocast or not
        return kernels.linear_cross_entropy(features, weight, bias, target, label_smoothing)
    return F.cross_entropy(F.linear(features, weight, bias), target, reduction="sum", label_smoothing=label_smoothing)


def target_loss(decoder: Decoder, features: Tensor, tgt_out: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Return the summed cross-entropy over real target tokens; features (B, T, O), tgt_out (B, T)."""
    real = tgt_out != PAD  # (B, T)
    out = decoder.out  # the one vocabulary projection, `decoder.logits`
    return linear_cross_entropy(features[real].float(), out.weight, out.bias, tgt_out[real], label_smoothing)
