import csv
import random

import pytest
import sacrebleu

from mtkit.errors import MtkitError
from mtkit.buckets import LengthBuckets
from mtkit.evaluate import bleu_by_length, corpus_scores, evaluate_system
from mtkit.results import format_table, load_json, write_csv, write_json


def toy_corpus(n: int = 60, seed: int = 0, noise: float = 0.3):
    """Source lengths 1..75 words; hypotheses are references with some words replaced."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(50)]
    srcs, hyps, refs = [], [], []
    for i in range(n):
        length = 1 + (i * 7) % 75
        ref = [rng.choice(vocab) for _ in range(length)]
        srcs.append(" ".join(rng.choice(vocab) for _ in range(length)))
        refs.append(" ".join(ref))
        hyps.append(" ".join(w if rng.random() > noise else rng.choice(vocab) for w in ref))
    return srcs, hyps, refs


def test_bucket_labels_and_bounds_are_the_length_buckets():
    srcs = ["", "a", "a " * 10, "a " * 11, "a " * 61]
    buckets = bleu_by_length(srcs, ["x y"] * 5, ["x y"] * 5, n_boot=0)
    assert [(b.label, b.low, b.high) for b in buckets] == LengthBuckets((10, 20, 30, 40, 50, 60)).bounds()
    assert [b.count for b in buckets] == [3, 1, 0, 0, 0, 0, 1]  # the empty line is in 0-10, as its label says


def test_custom_edges_and_empty_buckets_are_kept():
    srcs = ["a", "a b c", "a b c d e f"]  # 1, 3 and 6 words
    buckets = bleu_by_length(srcs, ["x y", "x y", "x y"], ["x y", "x y", "x y"],
                             edges=(1, 2, 5), n_boot=0)
    assert [(b.label, b.low, b.high, b.count) for b in buckets] == \
        [("0-1", 0, 1, 1), ("2", 2, 2, 0), ("3-5", 3, 5, 1), ("6+", 6, None, 1)]
    assert buckets[1].bleu is None and buckets[1].ci_low is None and buckets[1].chrf is None


def test_buckets_by_reference_length():
    srcs = ["a"] * 3
    refs = ["x", "x y z", "x y z w"]
    buckets = bleu_by_length(srcs, refs, refs, edges=(2,), length_of="ref", n_boot=0)
    assert [b.count for b in buckets] == [1, 2]


@pytest.mark.parametrize("edges", [(), (10, 10), (20, 10), (0, 10)])
def test_bad_edges_are_rejected(edges):
    with pytest.raises(MtkitError, match="edges"):
        bleu_by_length(["a"], ["a"], ["a"], edges=edges, n_boot=0)


def test_unknown_length_side_names_choices():
    with pytest.raises(MtkitError, match="src"):
        bleu_by_length(["a"], ["a"], ["a"], length_of="tgt")


def test_bucket_bleu_equals_sacrebleu_on_subset():
    srcs, hyps, refs = toy_corpus()
    edges = (10, 20, 30, 40, 50, 60)
    buckets = bleu_by_length(srcs, hyps, refs, edges, n_boot=0)
    assert sum(b.count for b in buckets) == len(srcs)
    for i, b in enumerate(buckets):
        rows = [j for j, s in enumerate(srcs) if LengthBuckets(edges).index_of(s) == i]
        assert b.count == len(rows) > 0
        sub_hyps, sub_refs = [hyps[j] for j in rows], [refs[j] for j in rows]
        assert b.bleu == sacrebleu.corpus_bleu(sub_hyps, [sub_refs]).score
        assert b.chrf == pytest.approx(sacrebleu.corpus_chrf(sub_hyps, [sub_refs]).score)


def test_corpus_scores_match_sacrebleu_and_carry_signatures():
    _, hyps, refs = toy_corpus(20)
    scores = corpus_scores(hyps, refs)
    assert scores.bleu == sacrebleu.corpus_bleu(hyps, [refs]).score
    assert "nrefs:1" in scores.bleu_signature and "tok:13a" in scores.bleu_signature
    assert "nc:6" in scores.chrf_signature


def test_system_overall_equals_corpus_scores():
    srcs, hyps, refs = toy_corpus(30)
    system = evaluate_system("a", srcs, hyps, refs, n_boot=0)
    assert (system.bleu, system.chrf, system.bleu_signature, system.chrf_signature) == \
        tuple(corpus_scores(hyps, refs))
    assert system.count == 30


def test_bootstrap_is_seeded():
    srcs, hyps, refs = toy_corpus()
    first = bleu_by_length(srcs, hyps, refs, n_boot=200, seed=1)
    again = bleu_by_length(srcs, hyps, refs, n_boot=200, seed=1)
    other = bleu_by_length(srcs, hyps, refs, n_boot=200, seed=2)
    intervals = lambda buckets: [(b.ci_low, b.ci_high) for b in buckets]  # noqa: E731
    assert intervals(first) == intervals(again)
    assert intervals(first) != intervals(other)


def test_interval_contains_point_estimate():
    srcs, hyps, refs = toy_corpus(200, noise=0.2)
    for b in bleu_by_length(srcs, hyps, refs, edges=(30,), n_boot=300):
        assert b.ci_low < b.bleu < b.ci_high
        assert b.ci_high - b.ci_low < 20  # ~100 sentences per bucket: a usefully narrow interval


def test_mismatched_lengths_name_files_and_counts():
    with pytest.raises(MtkitError) as err:
        evaluate_system("base", ["a", "b"], ["a"], ["a", "b"],
                        paths={"src": "test.de", "hyp": "base.hyp", "ref": "test.en"})
    message = str(err.value)
    assert "base.hyp: 1 lines" in message and "test.de: 2 lines" in message


def test_empty_input_is_an_error():
    with pytest.raises(MtkitError, match="no lines"):
        evaluate_system("base", [], [], [])


@pytest.fixture(scope="module")
def systems():
    srcs, hyps, refs = toy_corpus()
    _, worse, _ = toy_corpus(noise=0.6)
    return [evaluate_system("attention", srcs, hyps, refs, n_boot=50),
            evaluate_system("no-attention", srcs, worse, refs, n_boot=50)]


def test_table_lists_systems_buckets_and_signature(systems):
    table = format_table(systems)
    assert "attention" in table and "no-attention" in table
    for b in systems[0].buckets:
        assert b.label in table
    first = systems[0].buckets[0]
    assert f"{first.bleu:.1f} [{first.ci_low:.1f}, {first.ci_high:.1f}]" in table
    assert systems[0].bleu_signature in table and systems[0].chrf_signature in table
    assert f"{systems[1].chrf:.1f}" in table


def test_json_round_trip(tmp_path, systems):
    path = write_json(systems, tmp_path / "scores.json")
    assert load_json(path) == systems


def test_csv_has_a_row_per_system_and_bucket(tmp_path, systems):
    path = write_csv(systems, tmp_path / "scores.csv")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(len(s.buckets) + 1 for s in systems)
    row = next(r for r in rows if r["system"] == "no-attention" and r["bucket"] == "11-20")
    bucket = systems[1].buckets[1]
    assert float(row["bleu"]) == bucket.bleu and int(row["count"]) == bucket.count


def test_load_json_rejects_other_files(tmp_path):
    with pytest.raises(MtkitError, match="does not exist"):
        load_json(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(MtkitError, match="not an mtkit evaluation file"):
        load_json(tmp_path / "other.json")



def test_passages_by_k_score_each_k_apart_with_length_ratios():
    from mtkit.evaluate import evaluate_passages

    verses = ["the cat sat on the mat", "a dog ran in the park", "birds sing at dawn", "fish swim in the sea"]
    joined = [" ".join(verses[:2]), " ".join(verses[2:])]
    refs = verses + joined
    hyps = verses + [" ".join(verses[0].split()[:3]), " ".join(verses[2].split()[:2])]  # k=2: short outputs
    system = evaluate_passages("m", refs, hyps, refs, [1, 1, 1, 1, 2, 2], [0, 0, 1, 1, 0, 1], edges=(5, 10), n_boot=20)
    k1, k2 = system.by_k
    assert (k1.label, k1.count, k2.label, k2.count) == ("k=1", 4, "k=2", 2)
    assert k1.bleu == pytest.approx(100.0) and k1.ratio == pytest.approx(1.0)
    assert k2.bleu < 10 and k2.ratio == pytest.approx(5 / 21)  # 3 + 2 output words for 12 + 9 reference words
    assert sum(b.count for b in system.buckets) == 6 and system.count == 6
    assert load_json(write_json([system], tmp_json())) == [system]  # by_k and paired survive the JSON round trip
    assert [p.k for p in system.paired] == [1, 2] and system.paired[1].ratio == pytest.approx(k2.bleu / 100)


# A passage set built in code: `n` windows of 12 made-up verses, cut at k = 1..4 as the study cuts them.
WORDS = [f"w{i}" for i in range(400)]


def passage_set(n: int, seed: int = 0):
    import random

    rng = random.Random(seed)
    srcs, ks, windows = [], [], []
    for w in range(n):
        verses = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20))) for _ in range(12)]
        for k in (1, 2, 3, 4):
            for g in range(12 // k):
                srcs.append(" ".join(verses[g * k:(g + 1) * k]))
                ks.append(k)
                windows.append(w)
    return srcs, ks, windows


def garble(line: str) -> str:
    """Keep every other word: an output that loses half its content."""
    return " ".join(line.split()[::2])


def test_identical_outputs_at_every_k_give_a_paired_ratio_of_exactly_one():
    from mtkit.evaluate import evaluate_passages

    srcs, ks, windows = passage_set(30)
    system = evaluate_passages("m", srcs, srcs, srcs, ks, windows, n_boot=200)
    assert system.windows == 30
    for p in system.paired:
        assert p.ratio == 1.0 and p.ci_low == 1.0 and p.ci_high == 1.0
    assert [p.inputs for p in system.paired] == [360, 180, 120, 90]
    assert system.paired[3].mean_src_words == pytest.approx(4 * system.paired[0].mean_src_words)


def test_a_fall_planted_in_half_the_windows_is_found_and_none_is_found_without_it():
    from mtkit.evaluate import evaluate_passages

    srcs, ks, windows = passage_set(60)
    # Outputs lose half their words at k = 4 in the even windows only; k = 1..3 are exact.
    hyps = [garble(s) if k == 4 and w % 2 == 0 else s for s, k, w in zip(srcs, ks, windows)]
    p1, p2, p3, p4 = evaluate_passages("m", srcs, hyps, srcs, ks, windows, n_boot=500).paired
    assert p2.ratio == p3.ratio == 1.0
    assert p4.ratio < 0.8 and p4.ci_high < 0.9 and p4.ci_low < p4.ratio < p4.ci_high
    # The same outputs with the garbled windows at k = 1 instead: the fall is at k = 1, so k = 4 rises.
    hyps = [garble(s) if k == 1 and w % 2 == 0 else s for s, k, w in zip(srcs, ks, windows)]
    assert evaluate_passages("m", srcs, hyps, srcs, ks, windows, n_boot=500).paired[3].ci_low > 1.0
    # The same fall in every window: the windows agree, so the interval is far narrower than with half.
    hyps = [garble(s) if k == 4 else s for s, k in zip(srcs, ks)]
    every = evaluate_passages("m", srcs, hyps, srcs, ks, windows, n_boot=500).paired[3]
    assert every.ratio < p4.ratio and (every.ci_high - every.ci_low) < (p4.ci_high - p4.ci_low) / 3


def test_the_window_bootstrap_never_splits_a_windows_inputs():
    import numpy as np

    from mtkit.evaluate import window_counts

    _, ks, windows = passage_set(25)
    counts = window_counts(windows, 300, np.random.default_rng(0))  # (300, N)
    assert counts.shape == (300, len(windows))
    windows = np.asarray(windows)
    for w in range(25):  # every input of a window (every k) is drawn as often as the window
        mine = counts[:, windows == w]
        assert (mine == mine[:, :1]).all()
    per_resample = np.array([[counts[b, windows == w][0] for w in range(25)] for b in range(300)])
    assert (per_resample.sum(axis=1) == 25).all()  # each resample draws 25 windows
    assert per_resample.max() > 1 and (per_resample == 0).any()  # with replacement


def test_paired_ratios_refuse_a_passage_set_that_is_not_paired():
    from mtkit.evaluate import evaluate_passages

    srcs, ks, windows = passage_set(3)
    with pytest.raises(MtkitError, match="no k = 1"):
        keep = [i for i, k in enumerate(ks) if k != 1]
        evaluate_passages("m", *[[srcs[i] for i in keep]] * 3, [ks[i] for i in keep], [windows[i] for i in keep])
    with pytest.raises(MtkitError, match=r"windows \[2\] have no inputs of k = 4"):
        keep = [i for i, (k, w) in enumerate(zip(ks, windows)) if not (k == 4 and w == 2)]
        evaluate_passages("m", *[[srcs[i] for i in keep]] * 3, [ks[i] for i in keep], [windows[i] for i in keep])


def tmp_json():
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp()) / "scores.json"


def test_a_file_written_before_the_label_fix_reads_with_today_s_labels(tmp_path):
    srcs, hyps, refs = toy_corpus(20)
    path = write_json([evaluate_system("a", srcs, hyps, refs, edges=(10, 20), n_boot=0)], tmp_path / "s.json")
    old = path.read_text(encoding="utf-8").replace('"label": "0-10"', '"label": "1-10"')
    assert '"1-10"' in old
    path.write_text(old, encoding="utf-8")
    assert [b.label for b in load_json(path)[0].buckets] == ["0-10", "11-20", "21+"]
