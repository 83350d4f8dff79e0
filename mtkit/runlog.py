"""What a training run records as it goes, and how it hears it must stop: metrics.jsonl and TensorBoard,
the run's train.log, and SIGTERM / Ctrl-C turned into a flag the loop checks."""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path
from typing import Any


class StopSignal:
    """Turns SIGTERM / Ctrl-C into a flag the loop checks after each step, so `last` gets saved."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "StopSignal":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave the defaults alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


class Metrics:
    """Appends records to metrics.jsonl, and mirrors numbers to TensorBoard where it is installed."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool) -> None:
        self.path, self.enabled, self.board = run_dir / "metrics.jsonl", enabled, None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # optional: `pip install tensorboard` turns it on
                SummaryWriter = None
            if SummaryWriter is not None:
                self.board = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (a step's numbers; "kind" says which) to metrics.jsonl and TensorBoard."""
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.board is not None:
            for key, value in record.items():
                if key not in ("step", "epoch", "kind") and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.board.add_scalar(f"{record['kind']}/{key}", value, record["step"])

    def close(self) -> None:
        """Close the TensorBoard writer, if any."""
        if self.board is not None:
            self.board.close()


def truncate_metrics(path: Path, step: int) -> None:
    """Drop records after `step`: a resumed run writes them again."""
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        path.write_text("".join(line + "\n" for line in lines if json.loads(line)["step"] <= step), encoding="utf-8")


def add_file_log(run_dir: Path) -> logging.Handler:
    """Return the handler that now copies mtkit's log to run_dir/train.log (the caller removes it)."""
    handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("mtkit").addHandler(handler)
    return handler
