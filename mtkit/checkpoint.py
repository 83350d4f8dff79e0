"""Checkpoints that describe themselves: state dicts + config + tokenizer + training state.

Files are written atomically (temporary file, then rename), so a run killed at any moment leaves
the previous checkpoint intact. Loading uses `weights_only=True`: a tampered file cannot run code,
on a torch that keeps that promise (`TORCH_FLOOR` and later; `load_checkpoint` refuses an older one).
"""

from __future__ import annotations

import os
import pickle
import random
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

import torch

from mtkit.config import Config, config_from_dict, config_to_dict
from mtkit.data.tokenizer import Tokenizer
from mtkit.errors import MtkitError
from mtkit.model import Seq2Seq, build_model


# Below 2.6 `weights_only=True` can be bypassed to run code (CVE-2025-32434), below 2.10 too (CVE-2026-24747).
# pyproject.toml asks for the same floor; this refuses an older torch that was installed anyway.
TORCH_FLOOR = (2, 10)


def require_safe_torch(version: str | None = None) -> None:
    """Raise MtkitError (one line) when `version` (default: the installed torch) is below `TORCH_FLOOR`."""
    version = torch.__version__ if version is None else version
    match = re.match(r"(\d+)\.(\d+)", str(version))
    if match is None or (int(match[1]), int(match[2])) < TORCH_FLOOR:
        floor = ".".join(map(str, TORCH_FLOOR))
        raise MtkitError(f"torch {version} is installed, but mtkit needs torch>={floor}: older versions can run code "
                         f"hidden in a checkpoint even with weights_only=True (CVE-2025-32434, CVE-2026-24747); "
                         f"upgrade it (make install, or pip install 'torch>={floor}')")


@dataclass
class TrainState:
    """Everything about a run's progress that must survive a restart."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already trained on
    tokens: int = 0  # target tokens trained on
    seconds: float = 0.0  # training wall time, summed over restarts
    cpu_seconds: float = 0.0  # CPU time of the training process (all threads), summed over restarts
    best_metric: float | None = None
    best_step: int = 0
    bad_validations: int = 0  # validations since the best one
    validated_step: int = -1  # step of the latest validation
    finished: bool = False
    stop_reason: str = ""


class Checkpoint(NamedTuple):
    """What `load_checkpoint` returns."""

    model: Seq2Seq
    config: Config
    tokenizer: Tokenizer
    state: TrainState
    raw: dict[str, Any]  # optimizer / scheduler / RNG states, for resuming


def rng_states() -> dict[str, Any]:
    """Return the states of every random generator training uses."""
    states = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore the generators saved by `rng_states`."""
    random.setstate(states["python"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(
    path: Path,
    model: Seq2Seq,
    cfg: Config,
    tokenizer: Tokenizer,
    state: TrainState,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
) -> None:
    """Write a checkpoint to `path` atomically."""
    payload = {
        "model": model.state_dict(),
        "config": config_to_dict(cfg),
        "state": asdict(state),
        "src_spm": tokenizer.src_proto,
        "tgt_spm": tokenizer.tgt_proto,
        "rng": rng_states(),
    }
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        payload["scheduler"] = scheduler.state_dict()
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # atomic on POSIX: readers see the old or the new file, never half of one


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> Checkpoint:
    """Return the model (rebuilt from the stored config), config, tokenizer and state in `path`.

    Refuses to read anything on a torch below `TORCH_FLOOR`, whose `weights_only=True` does not hold.
    """
    require_safe_torch()
    if not path.is_file():
        raise MtkitError(f"{path}: checkpoint not found")
    try:
        raw = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise MtkitError(f"{path}: not a readable mtkit checkpoint ({str(err).splitlines()[0]})") from None
    missing = {"model", "config", "state", "src_spm", "tgt_spm"} - set(raw)
    if missing:
        raise MtkitError(f"{path}: not an mtkit checkpoint (missing {', '.join(sorted(missing))})")
    cfg = config_from_dict(raw["config"])
    tokenizer = Tokenizer(raw["src_spm"], raw["tgt_spm"])
    model = build_model(cfg.model, tokenizer.src_vocab, tokenizer.tgt_vocab)
    model.load_state_dict(raw["model"])
    model.to(device)
    known = {f.name for f in fields(TrainState)}
    state = TrainState(**{k: v for k, v in raw["state"].items() if k in known})
    return Checkpoint(model, cfg, tokenizer, state, raw)
