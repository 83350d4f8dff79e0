"""The main job at a tiny scale: `scripts/reproduce.sh` end to end on the real Bible modules (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HAVE_BIBLE = Path("/usr/share/sword/mods.d/spaRV1909eb.conf").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_BIBLE, reason="needs the Debian SWORD modules (make data)")
def test_reproduce_pipeline_at_tiny_scale(tmp_path):
    env = {**os.environ, "MTKIT": f"{sys.executable} -m mtkit.cli", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    tiny = ["--set", "train.max_steps=20", "--set", "train.valid_every=10", "--set", "data.test_size=140",
            "--set", "data.dev_size=50", "--set", "tokenizer.vocab_size=500", "--set", "train.valid_bleu_sentences=10",
            "--set", "decode.max_len_ratio=1.0"]
    done = subprocess.run(["bash", str(ROOT / "scripts/reproduce.sh"), *tiny], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    results = tmp_path / "results"
    scores = json.loads((results / "scores.json").read_text())
    assert [s["name"] for s in scores["systems"]] == ["rnnencdec", "rnnsearch"]
    assert (results / "bleu_by_length.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (results / "summary.md").read_text()
    assert "RNNencdec(gru" in summary and "RNNsearch(gru" in summary and "41–60" in summary
    overlap = (results / "overlap_by_length.txt").read_text().splitlines()
    assert overlap[1].startswith("mean overlap") and sum("bible_rnnencdec" in line for line in overlap) == 3
    assert (results / "bleu_by_length_high_overlap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    passages = json.loads((results / "passages_scores.json").read_text())["systems"]
    assert [[b["label"] for b in s["by_k"]] for s in passages] == [["k=1", "k=2", "k=3"]] * 2
    assert [b["count"] for b in passages[0]["by_k"]] == [1500, 750, 500]  # 250 windows of 6 verses
    assert (results / "length_study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "(b) passages" in summary and "Criteria stated before the run" in summary
    assert summary.count("PASS") + summary.count("MISS") == 3
    for run in ("bible_rnnencdec", "bible_rnnsearch"):
        assert (tmp_path / "runs" / run / "best.pt").is_file()
    # `make transformer`: the third line, trained alone and scored beside the two RNN runs just made
    done = subprocess.run(["bash", str(ROOT / "scripts/reproduce.sh"), *tiny], cwd=tmp_path,
                          env={**env, "STUDY": "transformer"}, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    results = tmp_path / "results" / "transformer"
    scores = json.loads((results / "scores.json").read_text())
    assert [s["name"] for s in scores["systems"]] == ["rnnencdec", "rnnsearch", "transformer"]
    summary = (results / "summary.md").read_text()
    assert summary.startswith("# BLEU by sentence length: RNNencdec vs RNNsearch vs Transformer")
    assert "Transformer(3+3 layers, d 128" in summary and "- Transformer, long/short ≥ 0.85" in summary
    assert summary.count("PASS") + summary.count("MISS") == 5
    assert (results / "length_study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (results / "training_curves.md").read_text().count("| bible_") == 3
    assert sum("bible_transformer" in line for line in (results / "overlap_by_length.txt").read_text().splitlines()) == 3
