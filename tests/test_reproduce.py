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
    names = ["rnnencdec", "rnnsearch", "transformer"]
    scores = json.loads((results / "scores.json").read_text())
    assert [s["name"] for s in scores["systems"]] == names
    assert (results / "bleu_by_length.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (results / "summary.md").read_text()
    assert summary.startswith("# BLEU by sentence length: RNNencdec vs RNNsearch vs Transformer")
    assert "RNNencdec(gru" in summary and "RNNsearch(gru" in summary and "Transformer(3+3 layers, d 128" in summary
    overlap = (results / "overlap_by_length.txt").read_text().splitlines()
    assert overlap[1].startswith("mean overlap")
    assert all(sum(f"bible_{name}" in line for line in overlap) == 3 for name in names)
    assert (results / "bleu_by_length_high_overlap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (results / "training_curves.md").read_text().count("| bible_") == 3
    passages = json.loads((results / "passages_scores.json").read_text())["systems"]
    assert [[b["label"] for b in s["by_k"]] for s in passages] == [["k=1", "k=2", "k=3", "k=4"]] * 3
    assert [b["count"] for b in passages[0]["by_k"]] == [1800, 900, 600, 450]  # 150 windows of 12 verses
    assert [[p["k"] for p in s["paired"]] for s in passages] == [[1, 2, 3, 4]] * 3 and passages[0]["windows"] == 150
    words = [p["mean_src_words"] for p in passages[0]["paired"]]
    assert words[3] == pytest.approx(4 * words[0]) and 80 < words[3] < 100
    assert "k=1" in (results / "passages_table.txt").read_text().splitlines()[2]
    assert (results / "length_study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## The headline: the same verses alone and inside passages" in summary
    assert "Criteria stated before the run" in summary and "Secondary view" in summary
    verdicts = [line for line in summary.splitlines() if line.endswith(("PASS", "MISS")) or "— MISS:" in line]
    assert [line.split(":")[0] for line in verdicts[:4]] == ["- direction"] * 3 + ["- size"]
    assert len(verdicts) == 4 + 5  # the paired criteria, then the earlier bucket criteria
    for name in names:
        assert (tmp_path / "runs" / f"bible_{name}" / "best.pt").is_file()
    # The seeds' spread reads any results directories; the same run twice has no spread.
    spread = subprocess.run([sys.executable, str(ROOT / "scripts/seed_spread.py"), str(results), str(results)],
                            capture_output=True, text=True, check=True).stdout
    assert spread.count("| rnnencdec |") == 3 and "| 0.000 |" in spread
