import random

import pytest

from mtkit.buckets import LengthBuckets
from mtkit.data.corpus import (Splits, clean, consecutive_runs, draw_windows,
                               format_dropped, join_consecutive, length_report, normalize, passage_inputs, ref_key,
                               split, window_size)
from mtkit.errors import MtkitError

EDGES = LengthBuckets((10, 20, 30, 40, 50, 60))


def sentence(n_words: int, tag: str) -> str:
    return " ".join([tag] + [f"w{i}" for i in range(n_words - 1)])


def corpus_with_lengths(counts: dict[int, int]) -> list[tuple[str, str]]:
    """Pairs with unique sources: counts[n] sentences of n words."""
    return [(sentence(n, f"s{n}_{k}"), sentence(n, f"t{n}_{k}")) for n, count in counts.items() for k in range(count)]


# --- normalize and clean ---------------------------------------------------------------------------------------

def test_normalize_nfc_and_whitespace():
    assert normalize("  Jehova\u0301\t dijo \u00a0 hola \n") == "Jehová dijo hola"


def test_clean_drops_by_reason_and_keeps_order():
    pairs = [
        ("uno dos", "one two"),               # kept
        ("  ", "nothing"),                     # empty
        ("a b c d e f", "x"),                  # ratio 6 > 3
        (" ".join(["w"] * 81), "long " * 81),  # too_long
        ("uno  dos", "one two"),               # duplicate after normalising
        ("tres", "three"),                     # kept
    ]
    cleaned = clean(pairs)
    assert cleaned.pairs == [("uno dos", "one two"), ("tres", "three")]
    assert cleaned.kept_indices == [0, 5]
    assert cleaned.dropped == {"empty": 1, "too_short": 0, "too_long": 1, "ratio": 1, "duplicate": 1}


def test_clean_min_len_and_ratio_bounds():
    pairs = [("a", "b"), ("a b", "c d"), ("a b c", "x")]
    cleaned = clean(pairs, min_len=2, max_ratio=3.0)
    assert cleaned.pairs == [("a b", "c d")] and cleaned.dropped["too_short"] == 2
    assert clean([("a b c", "x")], max_ratio=3.0).pairs == [("a b c", "x")]  # exactly 3 is allowed


def test_clean_keeps_same_source_with_other_target():
    cleaned = clean([("hola", "hello"), ("hola", "hi"), ("hola", "hello")])
    assert cleaned.pairs == [("hola", "hello"), ("hola", "hi")] and cleaned.dropped["duplicate"] == 1


def test_clean_rejects_bad_limits():
    with pytest.raises(MtkitError, match="min_len"):
        clean([("a", "b")], min_len=5, max_len=2)


def test_format_dropped():
    assert format_dropped({"empty": 2, "ratio": 0, "duplicate": 3}) == "empty 2, duplicate 3 (5 in all)"
    assert format_dropped({"empty": 0}) == "none"


# --- buckets ---------------------------------------------------------------------------------------------------

# --- split -----------------------------------------------------------------------------------------------------

def split_sources(splits: Splits) -> list[set[str]]:
    return [{s for s, _ in part} for part in (splits.train, splits.dev, splits.test)]


def test_split_sizes_partition_and_indices():
    pairs = corpus_with_lengths({5: 100})
    s = split(pairs, dev_size=10, test_size=20, seed=0)
    assert (len(s.train), len(s.dev), len(s.test)) == (70, 10, 20)
    assert sorted(s.train_idx + s.dev_idx + s.test_idx) == list(range(100))
    assert s.test == [pairs[i] for i in s.test_idx]


@pytest.mark.parametrize("edges", [None, EDGES])
def test_split_is_deterministic_under_a_seed(edges):
    pairs = corpus_with_lengths({5: 60, 15: 60, 25: 60})
    assert split(pairs, 10, 30, seed=1, stratify=edges) == split(pairs, 10, 30, seed=1, stratify=edges)
    assert split(pairs, 10, 30, seed=1, stratify=edges).test != \
        split(pairs, 10, 30, seed=2, stratify=edges).test


@pytest.mark.parametrize("edges", [None, EDGES])
def test_a_source_never_lands_in_two_splits(edges):
    rng = random.Random(0)
    pairs = corpus_with_lengths({5: 40, 15: 40})
    # Same source with several targets: all must go to one split.
    pairs += [(pairs[rng.randrange(80)][0], f"other target {k}") for k in range(30)]
    rng.shuffle(pairs)
    for seed in range(5):
        s = split(pairs, dev_size=10, test_size=20, seed=seed, stratify=edges)
        train, dev, test = split_sources(s)
        assert not (train & dev) and not (train & test) and not (dev & test)
        assert len(s.train) + len(s.dev) + len(s.test) == len(pairs)


def test_dedup_happens_before_split():
    pairs = corpus_with_lengths({5: 50}) * 3  # every pair three times
    cleaned = clean(pairs)
    assert len(cleaned.pairs) == 50 and cleaned.dropped["duplicate"] == 100
    s = split(cleaned.pairs, dev_size=5, test_size=10, seed=0)
    train, dev, test = split_sources(s)
    assert not (train & test) and len(s.test) == 10


def test_stratified_test_gives_each_bucket_its_share():
    # Buckets 1-10 … 61+: the two longest are small, as in the Bible corpus.
    pairs = corpus_with_lengths({5: 400, 15: 400, 25: 400, 35: 400, 45: 400, 55: 30, 65: 6})
    s = split(pairs, dev_size=50, test_size=140, seed=3, stratify=EDGES)
    per_bucket = [0] * 7
    for src, _ in s.test:
        per_bucket[EDGES.index_of(src)] += 1
    assert per_bucket[5] == 15 and per_bucket[6] == 3  # small buckets: half, the rest kept for training
    assert sorted(per_bucket[:5]) == [24, 24, 24, 25, 25]  # 20 each, then the 22 left over spread
    assert sum(per_bucket) == 140
    random_test = split(pairs, dev_size=50, test_size=140, seed=3).test
    assert sum(len(src.split()) > 50 for src, _ in random_test) < per_bucket[5] + per_bucket[6]


def test_stratified_dev_is_drawn_from_all_lengths():
    # Test takes half of the small long bucket; dev must still be a random draw from what is left.
    pairs = corpus_with_lengths({5: 600, 45: 60})
    long_in_dev = 0
    for seed in range(5):
        s = split(pairs, dev_size=90, test_size=60, seed=seed, stratify=EDGES)
        long_in_dev += sum(len(src.split()) == 45 for src, _ in s.dev)
    assert 8 <= long_in_dev <= 40  # expected 5 × 90 × 30/630 ≈ 21


def test_split_errors_name_the_sizes():
    pairs = corpus_with_lengths({5: 10})
    with pytest.raises(MtkitError, match="dev_size"):
        split(pairs, dev_size=5, test_size=5, seed=0)
    with pytest.raises(MtkitError, match="half of each length bucket"):
        split(corpus_with_lengths({5: 10, 15: 10}), dev_size=0, test_size=12, seed=0, stratify=EDGES)


# --- report ----------------------------------------------------------------------------------------------------

def test_length_report_counts_per_split_and_bucket():
    s = split(corpus_with_lengths({5: 20, 65: 10}), dev_size=4, test_size=6, seed=0)
    table = length_report(s, EDGES)
    rows = {line.split()[0]: [int(x) for x in line.split()[1:]] for line in table.splitlines()[1:]}
    assert sum(rows["0-10"]) == 20 and sum(rows["61+"]) == 10 and rows["11-20"] == [0, 0, 0]
    assert rows["total"] == [20, 4, 6]
    as_dict = length_report({"train": s.train, "dev": s.dev, "test": s.test}, EDGES)
    assert as_dict == table


# --- references, passages, joined inputs -----------------------------------------------------------------------

def chapters(lengths: dict[str, int], words: int = 4) -> tuple[list[tuple[str, str]], list[str]]:
    """Verses "B c:v" of `words` words a side, lengths[chapter] verses per chapter, in order."""
    refs = [f"{chapter}:{v}" for chapter, n in lengths.items() for v in range(1, n + 1)]
    tags = [r.replace(" ", "_") for r in refs]
    return [(sentence(words, f"s{tag}"), sentence(words, f"t{tag}")) for tag in tags], refs


def test_ref_key_and_consecutive_runs():
    assert ref_key("Gen 1:12") == ("Gen 1:", 12) and ref_key("17") == ("", 17) and ref_key("intro") is None
    refs = ["Gen 1:30", "Gen 1:31", "Gen 2:1", "Gen 2:2", "Gen 2:4", "Exod 2:5", "intro", "7", "8"]
    # A new chapter, a verse missing (2:3), another book and a reference without a number all end a run.
    assert consecutive_runs(refs) == [range(0, 2), range(2, 4), range(4, 5), range(5, 6), range(6, 7), range(7, 9)]
    assert consecutive_runs(["3", "2"]) == [range(0, 1), range(1, 2)]  # neighbours also in corpus order
    assert consecutive_runs([]) == []


def test_window_size_splits_evenly_for_every_k():
    assert [window_size(k) for k in (1, 2, 3, 4)] == [1, 2, 6, 12]
    with pytest.raises(MtkitError, match="passage_max_k"):
        window_size(0)


def test_windows_are_consecutive_disjoint_and_seeded():
    pairs, refs = chapters({"A 1": 40, "A 2": 5, "B 1": 40, "B 2": 13})
    windows = draw_windows(pairs, refs, n_windows=10, max_k=3, max_len=80, seed=0)
    assert len(windows) == 10 and all(len(w) == 6 for w in windows)
    positions = [i for w in windows for i in w]
    assert len(set(positions)) == len(positions) and positions == sorted(positions)
    for window in windows:  # one run: no chapter boundary inside, so never in "A 2" (5 verses)
        assert len({ref_key(refs[i])[0] for i in window}) == 1
        assert consecutive_runs([refs[i] for i in window]) == [range(6)]
    assert draw_windows(pairs, refs, 10, 3, 80, seed=0) == windows
    assert draw_windows(pairs, refs, 10, 3, 80, seed=1) != windows
    with pytest.raises(MtkitError, match=r"data.passage_windows \(30\).*only \d+ windows"):
        draw_windows(pairs, refs, 30, 3, 80, seed=0)


def test_windows_keep_every_input_within_max_len():
    pairs, refs = chapters({"A 1": 60})
    pairs[20] = (sentence(9, "long"), sentence(2, "short"))  # 9 + 4 + 4 = 17 words in any group of 3 around it
    for seed in range(5):
        for window in draw_windows(pairs, refs, 4, max_k=3, max_len=16, seed=seed):
            assert 20 not in window
    pairs, refs = chapters({"A 1": 6})
    pairs[2] = (sentence(9, "long"), sentence(2, "short"))
    with pytest.raises(MtkitError, match="only 0 windows"):
        draw_windows(pairs, refs, 1, max_k=3, max_len=16, seed=0)
    assert draw_windows(pairs, refs, 1, max_k=3, max_len=17, seed=0) == [list(range(6))]


def test_passages_cover_the_same_verses_at_every_k():
    pairs, refs = chapters({"A 1": 30, "B 7": 30})
    windows = draw_windows(pairs, refs, 5, max_k=3, max_len=80, seed=2)
    inputs = passage_inputs(pairs, refs, windows, max_k=3)
    assert [sum(p.k == k for p in inputs) for k in (1, 2, 3)] == [30, 15, 10]
    for w, window in enumerate(windows):
        text = " ".join(pairs[i][0] for i in window), " ".join(pairs[i][1] for i in window)
        verses = "+".join(refs[i] for i in window)
        for k in (1, 2, 3):
            groups = sorted((p for p in inputs if p.window == w and p.k == k), key=lambda p: p.group)
            assert [p.group for p in groups] == list(range(6 // k))
            assert all(len(p.ref.split("+")) == k for p in groups)
            assert "+".join(p.ref for p in groups) == verses  # the same verses, in order, at every k
            assert (" ".join(p.src for p in groups), " ".join(p.tgt for p in groups)) == text


def test_joined_inputs_stay_inside_runs_and_within_max_len():
    pairs, refs = chapters({"A 1": 30, "A 2": 1, "B 1": 30}, words=3)
    del pairs[10], refs[10]  # A 1:11 left out (e.g. a dev verse): 1:10 and 1:12 are not consecutive
    pairs[40] = (sentence(8, "long"), sentence(3, "x"))
    joined = join_consecutive(pairs, refs, max_k=3, max_len=10, seed=0)
    assert joined.pairs and len(joined.pairs) == len(joined.refs) and joined.too_long >= 1
    used = []
    for (src, tgt), ref in zip(joined.pairs, joined.refs):
        parts = ref.split("+")
        assert 2 <= len(parts) <= 3 and consecutive_runs(parts) == [range(len(parts))]
        assert len(src.split()) <= 10 and len(tgt.split()) <= 10
        assert (src, tgt) == (" ".join(pairs[refs.index(r)][0] for r in parts),
                              " ".join(pairs[refs.index(r)][1] for r in parts))
        used += parts
    assert len(used) == len(set(used)) and "A 2:1" not in used and refs[40] not in used
    assert join_consecutive(pairs, refs, 3, 10, seed=0) == joined
    assert join_consecutive(pairs, refs, 3, 10, seed=1) != joined
    assert join_consecutive(pairs, refs, max_k=1, max_len=10, seed=0) == ([], [], [], 0)
