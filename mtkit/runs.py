"""Run directories: making one, the `runs/latest` pointer, checkpoint names, and what a run was trained on.

A run directory holds config.yaml, the tokenizer, best.pt / last.pt, metrics.jsonl, train.log,
environment.json and data.json (the prepared data it read, so its test split can be found again).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from mtkit.errors import MtkitError

log = logging.getLogger(__name__)

LATEST = Path("runs") / "latest"  # names the most recent run, for translate/eval without --run
CHECKPOINTS = ("best", "last")


def prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> Path:
    """Return `run_dir`, made and empty for a new run (after `overwrite`) or holding last.pt for `resume`."""
    run_dir = Path(run_dir)
    occupied = run_dir.exists() and any(run_dir.iterdir())
    if occupied and not resume:
        if not overwrite:
            raise MtkitError(f"{run_dir} already holds a run; pass --resume to continue it or --overwrite to "
                             f"start again (its files are deleted), or change `run_dir`")
        shutil.rmtree(run_dir)
    if resume and not (run_dir / "last.pt").is_file():
        raise MtkitError(f"--resume: {run_dir / 'last.pt'} does not exist; start the run without --resume")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def write_latest(run_dir: Path) -> None:
    """Point `runs/latest` at `run_dir`."""
    LATEST.parent.mkdir(parents=True, exist_ok=True)
    LATEST.write_text(str(Path(run_dir).resolve()) + "\n", encoding="utf-8")


def read_latest() -> Path:
    """Return the most recent run directory, or raise with what to do."""
    if not LATEST.is_file():
        raise MtkitError(f"no run given and {LATEST} does not exist; train one with `mtkit train CONFIG` or pass --run DIR")
    run_dir = Path(LATEST.read_text(encoding="utf-8").strip())
    if not run_dir.is_dir():
        raise MtkitError(f"{LATEST} names {run_dir}, which no longer exists; pass --run DIR")
    return run_dir


def resolve_checkpoint(run: Path | None, checkpoint: str = "best") -> Path:
    """Return the checkpoint file named by a run directory (latest when None) and best|last|PATH."""
    if checkpoint not in CHECKPOINTS:
        path = Path(checkpoint)
        if not path.is_file():
            raise MtkitError(f"--checkpoint {checkpoint}: no such file (use best, last or a path to a .pt file)")
        return path
    run_dir = run if run is not None else read_latest()
    if run is None:
        log.info("using the latest run, %s", run_dir)
    path = Path(run_dir) / f"{checkpoint}.pt"
    if not path.is_file():
        raise MtkitError(f"{path} does not exist; has the run in {run_dir} saved a checkpoint yet?")
    return path


def write_data_info(run_dir: Path, prepared_dir: Path) -> None:
    """Record in `run_dir/data.json` which prepared data the run trains on."""
    (Path(run_dir) / "data.json").write_text(json.dumps({"prepared": str(Path(prepared_dir).resolve())}) + "\n",
                                              encoding="utf-8")


def prepared_dir(run_dir: Path) -> Path:
    """Return the prepared-data directory the run in `run_dir` was trained on."""
    info = Path(run_dir) / "data.json"
    if not info.is_file():
        raise MtkitError(f"{run_dir}: not a training run (no data.json); pass --run DIR of a run made by `mtkit train`")
    return Path(json.loads(info.read_text(encoding="utf-8"))["prepared"])
