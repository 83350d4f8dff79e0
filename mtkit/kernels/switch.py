"""The one switch between the fast paths and the plain-torch references: MTKIT_KERNELS=reference|fused."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor

from mtkit.errors import MtkitError
import mtkit.kernels.native as native

MODES = ("reference", "fused")
ENV = "MTKIT_KERNELS"

_chosen: str | None = None  # the mode use() set; None: the environment's, read at each call


def mode() -> str:
    """Return the kernels' mode: `use`'s choice, else MTKIT_KERNELS, else "fused"; an unknown one raises MtkitError."""
    chosen = _chosen or os.environ.get(ENV) or "fused"
    if chosen not in MODES:
        raise MtkitError(f"{ENV}={chosen!r}: choose one of {', '.join(MODES)}")
    return chosen


def use(chosen: str | None) -> None:
    """Run the fast paths ("fused") or the plain-torch references ("reference"); None: back to the environment's."""
    global _chosen
    if chosen is not None and chosen not in MODES:
        raise ValueError(f"unknown kernels mode {chosen!r}; choose one of {', '.join(MODES)}")
    _chosen = chosen


@contextmanager
def using(chosen: str) -> Iterator[None]:
    """Run the block in mode `chosen`, then restore the mode before it."""
    before = _chosen
    use(chosen)
    try:
        yield
    finally:
        use(before)


def fused(*tensors: Tensor) -> bool:
    """Whether a fast path runs: the mode is fused and, for the tensors given, no autocast is on for their device.

    Pass the tensors of a path that autocast must not reach: autocast (bfloat16 on a GPU) mixes precisions
    that the recurrences' preallocated buffers would not take.
    """
    return mode() == "fused" and not any(torch.is_autocast_enabled(t.device.type) for t in tensors)


def compiled(*tensors: Tensor) -> bool:
    """Whether `native.c`'s loops take these tensors: fused mode, the library builds, float32 on the CPU."""
    return mode() == "fused" and native.usable(*tensors)
