"""checkpoint.py's promise that no checkpoint runs code: it holds only on a torch at or above TORCH_FLOOR, so an
older torch is refused, by the loader and by the command, in one line."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

from mtkit.checkpoint import TORCH_FLOOR, load_checkpoint, require_safe_torch
from mtkit.errors import MtkitError

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("version", ["2.2.0", "2.5.1+cpu", "2.9.1", "1.13.1", "not-a-version"])
def test_a_torch_below_the_floor_is_refused_naming_the_floor_and_the_holes(version):
    with pytest.raises(MtkitError) as err:
        require_safe_torch(version)
    message = str(err.value)
    assert f"torch {version} is installed" in message and "torch>=2.10" in message
    assert "CVE-2025-32434" in message and "\n" not in message


@pytest.mark.parametrize("version", ["2.10.0", "2.10.0a0+git1234", "2.13.0+cpu", "3.0.0"])
def test_a_torch_at_or_above_the_floor_passes(version):
    require_safe_torch(version)


def test_the_installed_torch_passes_and_pyproject_asks_for_the_same_floor():
    require_safe_torch()
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    floor = re.search(r'"torch>=(\d+)\.(\d+)"', pyproject)
    assert floor is not None and (int(floor[1]), int(floor[2])) == TORCH_FLOOR


def test_loading_on_an_old_torch_stops_before_the_file_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    read = []
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: read.append(args))
    path = tmp_path / "best.pt"
    path.write_bytes(b"anything")
    with pytest.raises(MtkitError, match="torch 2.5.1 is installed"):
        load_checkpoint(path)
    assert read == []


def test_serve_on_an_old_torch_says_so_in_one_line(tiny_runs, monkeypatch, capsys):
    from mtkit.cli import main

    monkeypatch.setattr(torch, "__version__", "2.9.1")
    monkeypatch.setattr(sys, "argv", ["mtkit", "serve", "--run", str(tiny_runs / "runs" / "att"), "--port", "0"])
    with pytest.raises(SystemExit) as exit:
        main()
    err = capsys.readouterr().err.strip().splitlines()
    assert exit.value.code == 2 and err[-1].startswith("error: torch 2.9.1 is installed, but mtkit needs torch>=2.10")
    assert "Traceback" not in "\n".join(err)
