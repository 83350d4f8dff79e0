"""The length study's diagnostic scripts: overlap with the training targets, shuffling within buckets."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mtkit.buckets import LengthBuckets
from mtkit.evaluate import DEFAULT_EDGES

ROOT = Path(__file__).resolve().parent.parent


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_overlap_is_the_share_of_reference_4grams_seen_in_training():
    overlap = script("overlap_by_length")
    train = ["And the LORD spake unto Moses, saying", "In the beginning God created"]
    refs = ["and the lord spake unto Aaron",  # 4-grams: and the lord spake (seen), the lord spake unto
            # (seen), lord spake unto aaron (new) → 2 of 3
            "a wholly new verse here",  # 2 new 4-grams
            "too short"]  # no 4-gram at all
    assert overlap.overlaps(refs, train) == pytest.approx([2 / 3, 0.0, 0.0])
    assert overlap.four_grams("A b, c d") == [("a", "b", ",", "c"), ("b", ",", "c", "d")]


def test_overlap_script_names_a_directory_that_is_not_a_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["overlap_by_length.py", str(tmp_path)])
    assert script("overlap_by_length").main() == 2
    assert "not a training run" in capsys.readouterr().err


def test_within_bucket_shuffle_is_a_permutation_that_keeps_every_line_in_its_bucket():
    blind = script("source_blind")
    srcs = [" ".join(["w"] * n) for n in (3, 5, 8, 12, 15, 19, 25, 33, 47, 61, 64, 2)]
    order = blind.shuffled_within_buckets(srcs, seed=1)
    assert sorted(order) == list(range(len(srcs)))
    assert order != list(range(len(srcs)))  # something moved
    bucket = [LengthBuckets(DEFAULT_EDGES).index_of(s) for s in srcs]
    assert all(bucket[i] == bucket[j] for i, j in enumerate(order))


def test_paired_verdict_passes_and_misses_on_the_stated_thresholds():
    from mtkit.evaluate import PairedRatio

    summarize = script("summarize")

    def p(ratio, low, high):
        return PairedRatio(4, 450, 90.0, 10.0, ratio, low, high, None, None, None)

    lines = summarize.paired_verdict({"encdec": p(0.55, 0.50, 0.60), "search": p(0.97, 0.93, 1.01),
                                      "transformer": p(0.93, 0.90, 0.95)})
    assert [line.split(":")[0] for line in lines] == ["- direction", "- direction", "- direction", "- size"]
    assert [line.rsplit("— ", 1)[1] for line in lines] == ["PASS", "PASS", "PASS", "PASS"]
    # The interval's upper end decides direction, the point value decides size; no interval cannot pass.
    lines = summarize.paired_verdict({"encdec": p(0.76, 0.71, 0.9), "search": p(0.9, 0.85, 0.949),
                                      "transformer": p(0.9, None, None)})
    assert [line.rsplit("— ", 1)[1] for line in lines] == ["MISS", "MISS", "MISS", "MISS"]
    assert "0.760 [0.710, 0.900]" in lines[0] and "no interval" in lines[2]


def test_verdict_passes_and_misses_on_the_stated_thresholds():
    from mtkit.evaluate import BucketScore

    summarize = script("summarize")

    def b(label, bleu, low, high):
        return BucketScore(label, 0, None, 100, bleu, low, high, None)

    short, long = summarize.SHORT, summarize.LONG
    encdec = {short: b(short, 20.0, 18.0, 22.0), long: b(long, 11.0, 10.0, 12.0)}  # 0.55, intervals apart
    search = {short: b(short, 30.0, 28.0, 32.0), long: b(long, 27.0, 25.0, 29.0)}  # 0.90
    lines = summarize.bucket_verdict({"encdec": encdec, "search": search},
                              {"encdec": [encdec[short], encdec[long]], "search": [search[short], search[long]]})
    assert [line.rsplit("— ", 1)[1] for line in lines] == ["PASS", "PASS", "PASS"]
    near = {short: encdec[short], long: b(long, 11.0, 10.0, 18.5)}  # 0.55 but the intervals overlap
    weak = {short: search[short], long: b(long, 25.0, 23.0, 27.0)}  # 0.83
    lines = summarize.bucket_verdict({"encdec": near, "search": weak},
                              {"encdec": [near[long]], "search": [b(long, 10.0, 9.0, 11.0)]})
    assert lines[0].endswith("MISS") and lines[1].endswith("MISS") and "MISS: not in 41-60" in lines[2]
    # a Transformer is judged by the same two bars as RNNsearch, beside it
    flat = {short: b(short, 25.0, 23.0, 27.0), long: b(long, 24.0, 22.0, 26.0)}  # 0.96
    lines = summarize.bucket_verdict({"encdec": encdec, "search": search, "transformer": flat},
                              {"encdec": [encdec[long]], "search": [search[long]], "transformer": [flat[long]]})
    assert [line.split(",")[0].split(" above")[0] for line in lines] == \
        ["- RNNencdec", "- RNNsearch", "- RNNsearch", "- Transformer", "- Transformer"]
    assert lines[3].endswith("PASS") and lines[4].endswith("PASS")


def test_training_curves_report_the_best_bleu_by_each_minute(tmp_path, capsys, monkeypatch):
    import json

    curves = script("training_curves")
    run = tmp_path / "run"
    run.mkdir()
    records = [{"kind": "train", "seconds": 30}, {"kind": "valid", "seconds": 300, "dev_bleu": 5.0, "dev_loss": 4.0},
               {"kind": "valid", "seconds": 900, "dev_bleu": 9.0, "dev_loss": 3.0},
               {"kind": "valid", "seconds": 1500, "dev_bleu": 8.0, "dev_loss": 3.1}]
    (run / "metrics.jsonl").write_text("\n".join(map(json.dumps, records)) + "\n")
    curve = curves.read_curve(run, "r")
    assert curve.minutes == [5.0, 15.0, 25.0]
    assert [curves.best_by(curve, m) for m in (10, 20, 30)] == [5.0, 9.0, None]  # None: the run ended at 25
    monkeypatch.setattr("sys.argv", ["training_curves.py", str(run), "--plot", str(tmp_path / "c.png")])
    assert curves.main() == 0
    assert "| run | 5.0 | 9.0 | – | – | 9.0 (25.0 min) |" in capsys.readouterr().out
    monkeypatch.setattr("sys.argv", ["training_curves.py", str(tmp_path), "--plot", str(tmp_path / "c.png")])
    assert curves.main() == 2


def test_capacity_half_length_is_read_between_bucket_midpoints():
    from mtkit.evaluate import BucketScore

    capacity = script("capacity")

    def buckets(*bleus):
        edges = [(0, 10), (11, 20), (21, 30), (31, None)]
        return [BucketScore(f"{lo}-{hi}", lo, hi, 10, b, None, None, None) for (lo, hi), b in zip(edges, bleus)]

    # midpoints 5.5, 15.5, 25.5, 35.5 (the open bucket ends at 40); 80 → half is 40, reached between 15.5 and 25.5
    assert capacity.half_length(buckets(80.0, 60.0, 20.0, 10.0), 40) == pytest.approx(15.5 + 10 * (60 - 40) / (60 - 20))
    assert capacity.half_length(buckets(80.0, 79.0, 70.0, 41.0), 40) is None  # never halves
    assert capacity.half_length(buckets(None, 50.0, 25.0, 0.0), 40) == pytest.approx(25.5)  # from the first scored


def test_seed_spread_reads_a_results_directory_or_a_scores_file(tmp_path):
    record = ROOT / "docs" / "length_study_passages_scores.json"  # the main run's record
    (tmp_path / "seed1").mkdir()
    (tmp_path / "seed1" / "passages_scores.json").write_text(record.read_text())
    lines = script("seed_spread").spread([record, tmp_path / "seed1"])
    rows = [line for line in lines if line.startswith("| rnnencdec | 4 |")]
    assert len(rows) == 1
    cells = rows[0].split("|")[3:-1]
    assert cells[0] == cells[1] and float(cells[-3]) == 0.0  # the same record twice: no spread
    assert float(cells[0]) < 0.9  # the main run's RNNencdec k4/k1 (0.816)


def test_capacity_crossing_is_read_between_the_ks_from_ratio_one_at_k1():
    capacity = script("capacity")
    words = [23.0, 46.0, 69.0, 92.0]
    assert capacity.crossing(words, [1.0, 0.8, 0.6, 0.4], 0.5) == pytest.approx(69 + 23 * 0.1 / 0.2)
    assert capacity.crossing(words, [1.0, 0.95, 0.85, 0.8], 0.9) == pytest.approx(46 + 23 * 0.05 / 0.1)
    assert capacity.crossing(words, [1.0, 0.95, 0.92, 0.91], 0.9) is None  # never reaches it
    assert capacity.crossing(words, [1.0, None, 0.4, 0.3], 0.5) == pytest.approx(23 + 46 * 0.5 / 0.6)  # skips a None


def test_capacity_reads_a_runs_paired_ratios_and_position_losses(tmp_path):
    capacity = script("capacity")
    run = tmp_path / "encdec_d256"
    (run / "eval" / "passages").mkdir(parents=True)
    docs = ROOT / "docs"
    (run / "eval" / "passages" / "passages_scores.json").write_text((docs / "length_study_passages_scores.json").read_text())
    (run / "eval" / "passages" / "passages_forced.json").write_text((docs / "position_loss.json").read_text())
    p = capacity.read_passages(run)  # the first system of each record: the main run's RNNencdec
    assert p.ratios[0] == 1.0 and len(p.words) == 4 and 80 < p.words[-1] < 100
    assert p.ratios[-1] == pytest.approx(0.816, abs=0.001) and p.ci[-1][1] < 0.9
    assert p.first_increase == pytest.approx(0.19, abs=0.01) and p.last_increase == pytest.approx(0.34, abs=0.01)
    row = capacity.Capacity("encdec_d256", 256, "none", [], None, 3328, 30.0, "budget", 2.9, 31.0)
    line = capacity.passage_table([row], [p])[-1]
    assert "| > 92 |" in line and "0.816 [0.78, 0.85]" in line and "+0.19 / +0.34" in line
    assert capacity.read_passages(tmp_path) is None  # no passage scores: the synthetic task's table


def test_seeds_read_the_main_runs_steps_from_its_record():
    record = (ROOT / "docs" / "length_study.md").read_text()
    steps = script("record_steps").recorded_steps(record, ["rnnencdec", "rnnsearch", "transformer"])
    assert steps == [3328, 2653, 1770]  # the main run's model table
    with pytest.raises(SystemExit, match="no steps for lstm"):
        script("record_steps").recorded_steps(record, ["rnnencdec", "lstm"])
