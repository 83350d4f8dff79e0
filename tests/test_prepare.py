"""prepare: text/TSV/Bible sources end to end, the fingerprinted cache, explicit dev/test files, errors."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from mtkit.config import load_config
from mtkit.data.synthetic import make_pairs, write_pairs
from mtkit.errors import MtkitError
from mtkit.prepare import SPLITS, data_fingerprint, load_prepared, prepare

SMALL = ["tokenizer.vocab_size=64", "data.dev_size=20", "data.test_size=20", "data.max_len=10"]
BASE = "length_edges: [3, 6]\ndata:\n"


def unique_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Return `n` distinct synthetic pairs of 2-6 words: lower-case source, upper-case target."""
    pairs = list(dict.fromkeys(make_pairs(3 * n, "substitute", 2, 6, vocab_size=12, seed=seed)))
    assert len(pairs) >= n
    return pairs[:n]


# The corpus of most tests: 200 good pairs plus lines each filter drops, with known counts.
GOOD = unique_pairs(200)
NOISE = [GOOD[0], GOOD[1], GOOD[2],  # duplicate ×3
         ("kalo mi", ""), ("", "MI KALO"),  # empty ×2
         (" ".join(["vu"] * 12), " ".join(["VU"] * 12)),  # too_long (data.max_len=10) ×1
         ("vu", "VU VU VU VU VU")]  # ratio 5 > 3 ×1
DROPPED = "dropped: empty 2, too_long 1, ratio 1, duplicate 3 (7 in all)"
CORPUS = GOOD + NOISE  # line n of c.src / c.tgt is CORPUS[n - 1]
RUNNING = ["data.max_len=20", "data.passage_windows=5", "data.passage_max_k=3", "data.join_train_max_k=3"]


def verses(refs: list[str]) -> list[str]:
    """Return the references of the single pairs inside `refs` (a joined input's reference is theirs joined by +)."""
    return [ref for joined in refs for ref in joined.split("+")]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory holding the corpus as c.src/c.tgt and as c.tsv (with a header)."""
    monkeypatch.chdir(tmp_path)
    pairs = GOOD + NOISE
    write_pairs(pairs, tmp_path / "c.src", tmp_path / "c.tgt")
    (tmp_path / "c.tsv").write_text("id\ten\tes\n" + "".join(f"{i}\t{t}\t{s}\n" for i, (s, t) in enumerate(pairs)),
                                    encoding="utf-8")
    (tmp_path / "text.yaml").write_text(BASE + "  source: text\n  src_file: c.src\n  tgt_file: c.tgt\n")
    (tmp_path / "tsv.yaml").write_text(BASE + "  source: tsv\n  tsv_file: c.tsv\n  tsv_header: true\n"
                                       "  src_column: es\n  tgt_column: en\n")
    return tmp_path


def config(name: str = "text", *overrides: str):
    return load_config(Path(f"{name}.yaml"), [*SMALL, *overrides])


def mtimes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in directory.iterdir()}


def test_text_source_end_to_end(workdir):
    prepared = prepare(config())
    assert not prepared.reused
    assert prepared.directory == Path("runs/cache") / prepared.fingerprint[:16]
    sizes = {name: len(split.src_ids) for name, split in prepared.splits.items()}
    assert sizes == {"train": 160, "dev": 20, "test": 20}
    for split in prepared.splits.values():
        assert len(split.src_text) == len(split.tgt_text) == len(split.src_ids) == len(split.tgt_ids)
        assert all(ids and min(ids) > 3 for ids in split.src_ids + split.tgt_ids)  # no pad/unk/bos/eos inside
        for src, tgt in zip(split.src_text, split.tgt_text):
            assert (src, tgt) in GOOD  # only clean pairs survive, never mixed up
    kept = [p for split in prepared.splits.values() for p in zip(split.src_text, split.tgt_text)]
    assert sorted(kept) == sorted(GOOD)
    assert DROPPED in prepared.report
    assert "source: text; 207 pairs read" in prepared.report
    assert "training batches:" in prepared.report and "padding" in prepared.report
    meta = json.loads((prepared.directory / "meta.json").read_text())
    assert meta["dropped"] == {"empty": 2, "too_short": 0, "too_long": 1, "ratio": 1, "duplicate": 3}
    assert meta["counts"] == sizes and meta["fingerprint"] == prepared.fingerprint
    # References are line numbers that survive cleaning and splitting; by default no passages, nothing joined.
    for name, split in prepared.splits.items():
        assert [CORPUS[int(ref) - 1] for ref in prepared.refs[name]] == list(zip(split.src_text, split.tgt_text))
    assert prepared.passages is None and meta["joined_train"] == 0 and "passages:" not in prepared.report
    for name in ("spm.model", "report.txt", "train.pt", "dev.src", "test.tgt"):
        assert (prepared.directory / name).is_file(), name


def test_tsv_source_reads_named_columns(workdir):
    prepared = prepare(config("tsv"))
    assert "source: tsv; 207 pairs read" in prepared.report and DROPPED in prepared.report
    train = prepared.splits["train"]
    assert len(train.src_text) == 160
    # es (source) holds the lower-case words, en (target) the upper-case ones.
    assert all(s.islower() and t.isupper() for s, t in zip(train.src_text, train.tgt_text))
    assert sorted(zip(train.src_text, train.tgt_text)) == sorted(set(zip(train.src_text, train.tgt_text)))


def test_tsv_references_come_from_the_named_column_or_the_line_numbers(workdir):
    by_id = prepare(config("tsv", "data.ref_column=id"))
    by_line = prepare(config("tsv"))
    for prepared, to_index in ((by_id, int), (by_line, lambda ref: int(ref) - 2)):  # line 1 is the header
        train = prepared.splits["train"]
        pairs = [CORPUS[to_index(ref)] for ref in prepared.refs["train"]]
        assert pairs == list(zip(train.src_text, train.tgt_text))
    with pytest.raises(MtkitError, match="`data.ref_column` names a TSV column"):
        config("text", "data.ref_column=id")


def test_passages_cover_the_same_verses_at_every_k_and_touch_no_split(workdir):
    prepared = prepare(config("text", *RUNNING))
    passages = prepared.passages
    assert [passages.k.count(k) for k in (1, 2, 3)] == [30, 15, 10]
    assert len(passages.split.src_text) == len(passages.refs) == len(passages.window) == len(passages.group) == 55
    for w in range(5):
        covered = []
        for k in (1, 2, 3):
            rows = sorted((passages.group[i], i) for i in range(55) if passages.window[i] == w and passages.k[i] == k)
            assert [g for g, _ in rows] == list(range(6 // k))
            covered.append(verses([passages.refs[i] for _, i in rows]))
            for _, i in rows:  # each input is its k lines joined, in order
                lines = [CORPUS[int(ref) - 1] for ref in passages.refs[i].split("+")]
                assert len(lines) == k
                assert passages.split.src_text[i] == " ".join(s for s, _ in lines)
                assert passages.split.tgt_text[i] == " ".join(t for _, t in lines)
        assert covered[0] == covered[1] == covered[2]  # the same 6 consecutive lines at every k
        assert [int(ref) for ref in covered[0]] == list(range(int(covered[0][0]), int(covered[0][0]) + 6))
    held = set(verses(passages.refs))
    held_sources = {CORPUS[int(ref) - 1][0] for ref in held}
    for name, split in prepared.splits.items():
        assert not held & set(verses(prepared.refs[name])), name
        assert not held_sources & set(split.src_text), name  # also no other line with a passage verse's source
    assert "passages: 5 windows of 6 consecutive pairs" in prepared.report and "k=3" in prepared.report
    assert sum(len(split.src_text) for name, split in prepared.splits.items() if name != "train") == 40


def test_a_line_sharing_its_source_with_a_passage_verse_is_held_out_too(workdir):
    sources = [s for s, _ in unique_pairs(100, seed=5)]
    pairs = [(s, "A B") for s in sources] + [(s, "C D") for s in sources]  # line n and n + 100: one source
    write_pairs(pairs, workdir / "c.src", workdir / "c.tgt")
    prepared = prepare(config("text", *RUNNING))
    lines = {int(ref) for ref in verses(prepared.passages.refs)}
    held = {pairs[n - 1][0] for n in lines}
    shared = [n for n in range(1, 201) if n not in lines and pairs[n - 1][0] in held]
    assert len(lines) == 30 and shared
    for name, split in prepared.splits.items():
        assert not held & set(split.src_text), name
    assert f"{len(shared)} more left out as they share a source" in prepared.report
    assert sum(len(s.src_text) for name, s in prepared.splits.items() if name != "train") == 40


def test_passage_windows_are_the_same_whatever_the_split_sizes(workdir):
    first = prepare(config("text", *RUNNING))
    second = prepare(config("text", *RUNNING, "data.dev_size=30", "data.join_train_max_k=1"))
    assert second.directory != first.directory and second.passages.refs == first.passages.refs


def test_joined_training_inputs_are_consecutive_training_lines_within_max_len(workdir):
    prepared = prepare(config("text", *RUNNING, "data.max_len=10", "data.passage_windows=3"))
    train, refs = prepared.splits["train"], prepared.refs["train"]
    joined = [i for i, ref in enumerate(refs) if "+" in ref]
    assert joined and "running text: " in prepared.report and f"{len(joined)} joined training inputs" in prepared.report
    single = {ref for ref in refs if "+" not in ref}
    for i in joined:
        parts = refs[i].split("+")
        assert 2 <= len(parts) <= 3 and set(parts) <= single  # only training lines, never dev/test/passage lines
        assert [int(ref) for ref in parts] == list(range(int(parts[0]), int(parts[0]) + len(parts)))
        assert train.src_text[i] == " ".join(CORPUS[int(ref) - 1][0] for ref in parts)
    assert all(len(s.split()) <= 10 and len(t.split()) <= 10 for s, t in zip(train.src_text, train.tgt_text))
    assert len(verses([refs[i] for i in joined])) == len(set(verses([refs[i] for i in joined])))
    meta = json.loads((prepared.directory / "meta.json").read_text())
    assert meta["joined_train"] == len(joined) and meta["counts"]["train"] == len(refs)


def test_references_and_passages_survive_the_cache(workdir):
    prepared = prepare(config("text", *RUNNING))
    for loaded in (load_prepared(prepared.directory), prepare(config("text", *RUNNING))):
        assert loaded.refs == prepared.refs and loaded.passages == prepared.passages
        assert loaded.splits == prepared.splits
    assert prepare(config("text", *RUNNING)).reused


def test_too_many_passage_windows_names_the_key(workdir):
    with pytest.raises(MtkitError, match=r"data.passage_windows \(40\) is more than the corpus holds"):
        prepare(config("text", *RUNNING, "data.passage_windows=40"))


def test_second_call_reuses_the_cache_without_writing(workdir):
    first = prepare(config())
    before = mtimes(first.directory)
    time.sleep(0.01)
    second = prepare(config())
    assert second.reused and second.directory == first.directory and second.fingerprint == first.fingerprint
    assert mtimes(first.directory) == before
    assert second.report == first.report
    for name in ("train", "dev", "test"):
        assert second.splits[name] == first.splits[name]


def test_batch_tokens_shares_the_cache_but_the_report_follows_it(workdir):
    first = prepare(config())
    second = prepare(config("text", "train.batch_tokens=50"))
    assert second.reused and second.directory == first.directory
    assert "of ≤50 tokens" in second.report and "of ≤4000 tokens" in first.report


@pytest.mark.parametrize("change", ["tokenizer.vocab_size=72", "tokenizer.model_type=unigram", "data.max_len=9",
                                    "data.dev_size=21", "seed=7", "data.stratify=false", "data.join_train_max_k=2"])
def test_changed_setting_gives_a_new_fingerprint_and_directory(workdir, change):
    first = prepare(config())
    changed = prepare(config("text", change))
    assert not changed.reused
    assert changed.fingerprint != first.fingerprint and changed.directory != first.directory
    assert (first.directory / "meta.json").is_file()  # the old cache stays for configs that still use it


def test_cache_dir_and_language_labels_are_not_part_of_the_fingerprint(workdir):
    first = data_fingerprint(config())
    assert first == data_fingerprint(config("text", "data.cache_dir=elsewhere"))
    assert first == data_fingerprint(config("text", "data.src_lang=es", "data.tgt_lang=en"))


def test_changed_input_file_gives_a_new_fingerprint(workdir):
    first = prepare(config())
    lines = (workdir / "c.tgt").read_text().splitlines()
    lines[5] = lines[5].lower()  # same length and file size, other bytes
    (workdir / "c.tgt").write_text("".join(line + "\n" for line in lines))
    changed = prepare(config())
    assert not changed.reused and changed.fingerprint != first.fingerprint
    assert any(t == lines[5] for split in changed.splits.values() for t in split.tgt_text)


def test_load_prepared_round_trips_the_encoded_splits(workdir):
    prepared = prepare(config())
    loaded = load_prepared(prepared.directory)
    assert loaded.fingerprint == prepared.fingerprint and not loaded.reused
    assert loaded.tokenizer.src_proto == prepared.tokenizer.src_proto
    for name in ("train", "dev", "test"):
        assert loaded.splits[name] == prepared.splits[name], name
        split = loaded.splits[name]
        assert split.src_ids == loaded.tokenizer.encode_src(split.src_text)
        assert split.tgt_ids == loaded.tokenizer.encode_tgt(split.tgt_text)
    with pytest.raises(MtkitError, match="no prepared data here"):
        load_prepared(workdir / "runs")


def test_split_sizes_zero_round_trip(workdir):
    prepared = prepare(config("text", "data.dev_size=0", "data.test_size=0"))
    loaded = load_prepared(prepared.directory)
    assert len(loaded.splits["train"].src_ids) == 200
    assert loaded.splits["dev"] == loaded.splits["test"] == ([], [], [], [])


def test_no_dev_or_test_source_is_trained_on(workdir):
    # Each source appears with three different targets: a random pair-level split would leak.
    sources = [s for s, _ in unique_pairs(60, seed=3)]
    pairs = [(s, f"{t} {'X' * k}") for s in sources for k, t in enumerate(["A B", "C D", "E F"], start=1)]
    write_pairs(pairs, workdir / "c.src", workdir / "c.tgt")
    prepared = prepare(config("text", "data.dev_size=30", "data.test_size=30"))
    train = set(prepared.splits["train"].src_text)
    for name in ("dev", "test"):
        held_out = prepared.splits[name].src_text
        assert held_out and not train & set(held_out), name
    assert not set(prepared.splits["dev"].src_text) & set(prepared.splits["test"].src_text)


def test_explicit_dev_and_test_files_replace_the_split_and_leave_train(workdir):
    dev, test = unique_pairs(8, seed=11), GOOD[10:22]  # test sources are also in the corpus
    write_pairs(dev, workdir / "dev.src", workdir / "dev.tgt")
    # Extra spaces: held-out sources are compared after the same normalisation as the corpus.
    write_pairs([(s.replace(" ", "  ") + " ", t) for s, t in test], workdir / "test.src", workdir / "test.tgt")
    prepared = prepare(config("text", "data.dev_src=dev.src", "data.dev_tgt=dev.tgt",
                              "data.test_src=test.src", "data.test_tgt=test.tgt"))
    splits = prepared.splits
    assert list(zip(splits["dev"].src_text, splits["dev"].tgt_text)) == dev
    assert list(zip(splits["test"].src_text, splits["test"].tgt_text)) == test
    held_out = {s for s, _ in dev + test}
    assert not held_out & set(splits["train"].src_text)
    assert len(splits["train"].src_text) == len([p for p in GOOD if p[0] not in held_out])


def test_explicit_dev_file_alone_is_used_and_test_is_drawn(workdir):
    dev = GOOD[:8]
    write_pairs(dev, workdir / "dev.src", workdir / "dev.tgt")
    prepared = prepare(config("text", "data.dev_src=dev.src", "data.dev_tgt=dev.tgt"))
    splits = prepared.splits
    assert list(zip(splits["dev"].src_text, splits["dev"].tgt_text)) == dev
    assert len(splits["test"].src_text) == 20
    assert len(splits["train"].src_text) == 200 - 8 - 20
    assert not {s for s, _ in dev} & set(splits["train"].src_text + splits["test"].src_text)


def test_corpus_too_small_for_dev_and_test(workdir):
    write_pairs(GOOD[:40], workdir / "c.src", workdir / "c.tgt")
    with pytest.raises(MtkitError, match=r"40 pairs after cleaning, too few for data.dev_size \(20\) \+ "
                                         r"data.test_size \(20\)"):
        prepare(config())


def test_nothing_left_after_cleaning(workdir):
    with pytest.raises(MtkitError, match="no sentence pairs left after cleaning.*data.min_len"):
        prepare(config("text", "data.min_len=7"))


@pytest.mark.parametrize("key", ["data.src_file", "data.tsv_file", "data.test_src"])
def test_missing_input_file_is_named(workdir, key):
    name = "tsv" if key == "data.tsv_file" else "text"
    extra = ["data.test_tgt=c.tgt"] if key == "data.test_src" else []
    with pytest.raises(MtkitError, match="no-such-file.txt: input file not found"):
        prepare(config(name, f"{key}=no-such-file.txt", *extra))


SWORD = Path("/usr/share/sword/mods.d")


@pytest.mark.slow  # about 20 s: the whole of both Bibles is read, cleaned and tokenized
@pytest.mark.skipif(not (SWORD / "spaRV1909eb.conf").is_file() or not (SWORD / "engKJV2006eb.conf").is_file(),
                    reason="SWORD modules spaRV1909eb / engKJV2006eb not installed (make data)")
def test_bible_source_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bible.yaml").write_text("data:\n  source: bible\n")
    cfg = load_config(tmp_path / "bible.yaml", ["tokenizer.vocab_size=2000"])
    prepared = prepare(cfg)
    sizes = {name: len(split.src_ids) for name, split in prepared.splits.items()}
    assert sizes["dev"] == 500 and sizes["test"] == 1500 and sizes["train"] > 28_000
    meta = json.loads((prepared.directory / "meta.json").read_text())
    assert meta["dropped"]["misaligned_chapter"] > 0 and meta["dropped"]["duplicate"] > 0
    assert "source: bible" in prepared.report and "misaligned_chapter" in prepared.report
    assert not set(prepared.splits["test"].src_text) & set(prepared.splits["train"].src_text)
    before = mtimes(prepared.directory)
    again = prepare(cfg)
    assert again.reused and mtimes(prepared.directory) == before


@pytest.mark.slow  # about 15 s: the study's data, passages and joined training inputs from both whole Bibles
@pytest.mark.skipif(not (SWORD / "spaRV1909eb.conf").is_file() or not (SWORD / "engKJV2006eb.conf").is_file(),
                    reason="SWORD modules spaRV1909eb / engKJV2006eb not installed (make data)")
def test_bible_passages_of_the_study(tmp_path):
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs/bible_rnnsearch.yaml",
                      [f"data.cache_dir={tmp_path}"])
    prepared = prepare(cfg)
    passages = prepared.passages
    words = [len(src.split()) for src in passages.split.src_text]
    assert sum(41 <= n <= 50 for n in words) >= 200 and sum(51 <= n <= 60 for n in words) >= 200
    held = verses(passages.refs)
    assert len(held) == 3 * len(set(held)) == 3 * 6 * cfg.data.passage_windows  # each verse once at every k
    for name in SPLITS:
        assert not set(held) & set(verses(prepared.refs[name])), name
    for w in range(cfg.data.passage_windows):
        by_k = [verses([r for r, win, kk in zip(passages.refs, passages.window, passages.k) if win == w and kk == k])
                for k in (1, 2, 3)]
        assert by_k[0] == by_k[1] == by_k[2] and len(by_k[0]) == 6
        chapter, first = by_k[0][0].rsplit(":", 1)
        assert by_k[0] == [f"{chapter}:{int(first) + i}" for i in range(6)]  # one chapter, consecutive verses
    train = prepared.splits["train"]
    assert sum("+" in ref for ref in prepared.refs["train"]) > 5000
    assert max(max(len(s.split()), len(t.split())) for s, t in zip(train.src_text, train.tgt_text)) <= cfg.data.max_len
