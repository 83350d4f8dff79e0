"""Where tensors run: the device, CPU threads, mixed precision, and a record of the machine."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Callable, ContextManager

import torch

from mtkit import __version__
from mtkit.distributed import World
from mtkit.errors import MtkitError


def choose_device(name: str = "auto", world: World = World()) -> torch.device:
    """Return the device to use: CUDA when available (or asked for), else the CPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise MtkitError("train.device / --device is 'cuda' but no CUDA GPU is visible; use 'auto' or 'cpu'")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", world.local_rank % torch.cuda.device_count())
    return torch.device(name)


def set_threads(threads: int | None) -> None:
    """Use `threads` CPU threads for tensor work (all cores when None)."""
    if threads is not None:
        torch.set_num_threads(threads)


def autocast(device: torch.device) -> Callable[[], ContextManager[Any]]:
    """Return a factory of the mixed-precision context for `device`: bfloat16 on CUDA, none on the CPU."""
    if device.type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def environment(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Return what a run's numbers depend on besides its config: code, library versions, machine and load."""
    import sacrebleu
    import sentencepiece

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "mtkit": __version__, "git_commit": commit, "python": platform.python_version(),
        "torch": torch.__version__, "sacrebleu": sacrebleu.__version__, "sentencepiece": sentencepiece.__version__,
        "device": str(device), "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
    }
