"""The optimiser and the learning-rate schedule a training run uses, built from `train` settings."""

from __future__ import annotations

import math
from typing import Any

import torch

from mtkit.config import TrainConfig


def make_optimizer(model: torch.nn.Module, t: TrainConfig) -> torch.optim.Optimizer:
    """Return the configured optimizer over the model's parameters."""
    params = list(model.parameters())
    if t.optimizer in ("adam", "adamw"):
        adam = torch.optim.Adam if t.optimizer == "adam" else torch.optim.AdamW
        return adam(params, lr=t.lr, weight_decay=t.weight_decay, fused=fused_adam_fits(params))
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.Adadelta(params, lr=t.lr, weight_decay=t.weight_decay)


def fused_adam_fits(params: list[torch.Tensor]) -> bool:
    """Whether torch's fused Adam kernel takes these parameters: float tensors on the CPU or CUDA.

    It updates every element in one pass where the default walks the parameter list op by op, giving
    the same numbers to float rounding and, being element-wise, the same on any thread count; its
    speed is timed by benchmarks/levers.py (figures in docs/, with the run they came from).
    """
    return bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


def make_scheduler(optimizer: torch.optim.Optimizer, t: TrainConfig) -> Any:
    """Return the learning-rate schedule (None for constant)."""
    if t.schedule == "plateau":
        mode = "max" if t.early_stop_metric == "bleu" else "min"
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=t.plateau_factor,
                                                          patience=t.plateau_patience)
    if t.schedule == "inverse_sqrt":
        warmup = t.warmup_steps
        # Linear warm-up to lr, then decay with 1/sqrt(step) (Vaswani et al. 2017, eq. 3 shape).
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min((step + 1) / warmup, math.sqrt(warmup / (step + 1))))
    return None
