"""alignment: attention records from a model or a JSON-lines file, merged into words, drawn as two PNGs, each
saying which attention it holds (an RNN's one, or a Transformer's chosen cross-attention)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from conftest import cross_attention

from mtkit import plots
from mtkit.alignment import UNNAMED, AttentionRecord, draw, record_from_json, record_from_model, to_words
from mtkit.errors import MtkitError
from mtkit.translate import Translator

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tiny_runs):
    return tiny_runs


def record(source=("▁ka", "lo", "▁mi"), target=("▁A", "B", "▁C"), seed=0) -> AttentionRecord:
    weights = np.random.default_rng(seed).random((len(target), len(source)))
    return AttentionRecord(list(source), list(target), weights / weights.sum(1, keepdims=True), "AB C")


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def test_record_from_model_matches_the_pieces_and_rows_sum_to_one(runs):
    sentence = Path(runs, "c.src").read_text().splitlines()[0]
    rec = record_from_model(sentence, runs / "runs/att")
    assert rec.target and rec.translation
    assert rec.weights.shape == (len(rec.target), len(rec.source))
    assert np.allclose(rec.weights.sum(1), 1.0, atol=1e-5) and (rec.weights >= 0).all()
    assert "".join(rec.source).replace("▁", " ").strip() == sentence
    assert rec.attention == "additive attention"


@pytest.mark.parametrize("layer, head, label", [
    (None, None, "cross-attention, mean of 2 layers, mean of 2 heads"),
    (2, 1, "cross-attention, layer 2 of 2, head 1 of 2"),
])
def test_transformer_record_is_the_chosen_cross_attention_and_says_so(runs, tiny_transformer, layer, head, label):
    sentence = Path(runs, "c.src").read_text().splitlines()[1]
    rec = record_from_model(sentence, tiny_transformer, layer=layer, head=head)
    assert rec.attention == label
    translator = Translator.from_run(tiny_transformer)
    tokens = translator.translate([sentence], beam=1)[0].hypotheses[0].tokens
    every = cross_attention(translator.model, translator.tokenizer.encode_src([sentence])[0], tokens).numpy()
    expected = every.mean((0, 1)) if layer is None else every[layer - 1, head - 1]  # (T, S)
    assert rec.weights.shape == expected.shape and np.allclose(rec.weights, expected, atol=1e-5)
    assert np.allclose(rec.weights.sum(1), 1.0, atol=1e-5)


def test_layer_and_head_out_of_range_or_for_an_rnn_are_named(runs, tiny_transformer):
    with pytest.raises(MtkitError, match=r"--layer 3: this model has 2 layers \(1-2\)"):
        record_from_model("kafegi feno", tiny_transformer, layer=3)
    with pytest.raises(MtkitError, match=r"--head 1: .* this run is an RNN with one additive attention"):
        record_from_model("kafegi feno", runs / "runs/att", head=1)


def test_model_without_attention_gets_a_clear_message(runs):
    with pytest.raises(MtkitError, match=r"no attention \(model.attention.kind = none\).*no weights to plot"):
        record_from_model("kafegi feno", runs / "runs/none")


def test_empty_sentence_is_refused(runs):
    with pytest.raises(MtkitError, match="sentence to translate is empty"):
        record_from_model("   ", runs / "runs/att")


def test_record_from_json_reads_the_numbered_line(tmp_path):
    good = {"line": 2, "source": ["▁a", "b"], "target": ["▁X"], "weights": [[0.25, 0.75]], "translation": "X"}
    path = write_lines(tmp_path / "a.jsonl", [b"{}", json.dumps(good).encode(), b"\xff not utf-8"])
    rec = record_from_json(path, 2)  # a broken line elsewhere in the file does not matter
    assert rec.source == ["▁a", "b"] and rec.target == ["▁X"] and rec.translation == "X"
    assert rec.weights.shape == (1, 2) and rec.weights.dtype == float
    assert rec.attention == UNNAMED  # written before records named their attention: still read


def test_record_from_json_keeps_the_label_through_words(tmp_path):
    label = "cross-attention, layer 2 of 3, head 1 of 4"
    rec = {"source": ["▁a", "b"], "target": ["▁X"], "attention": label, "weights": [[0.25, 0.75]],
           "translation": "X"}
    path = write_lines(tmp_path / "a.jsonl", [json.dumps(rec).encode()])
    assert record_from_json(path).attention == label
    assert to_words(record_from_json(path)).attention == label


def test_record_from_json_missing_file_and_too_few_lines(tmp_path):
    with pytest.raises(MtkitError, match=r"nope.jsonl: no such attention file.*translate --attention"):
        record_from_json(tmp_path / "nope.jsonl")
    path = write_lines(tmp_path / "a.jsonl", [b"{}", b"{}"])
    with pytest.raises(MtkitError, match=r"a.jsonl has 2 line\(s\); --line 5 is past the end"):
        record_from_json(path, 5)
    with pytest.raises(MtkitError, match="--line 0: lines count from 1"):
        record_from_json(path, 0)


@pytest.mark.parametrize("line, message", [
    (b"not json", "line 1: not an mtkit attention record"),
    (b"[1, 2]", "line 1: not an mtkit attention record"),
    (b'{"source": ["a"], "target": ["b"]}', "line 1: not an mtkit attention record"),
    (b'{"source": "ab", "target": ["b"], "weights": [[1]]}', "line 1: not an mtkit attention record"),
    (b'{"source": ["a"], "target": ["b", "c"], "weights": [[1], [0.5, 0.5]]}', "not a 2×1 matrix"),
    (b'{"source": ["a", "b"], "target": ["c"], "weights": [[1]]}', "not a 1×2 matrix"),
    (b'{"source": ["a"], "target": ["c"], "weights": [["x"]]}', "not a 1×1 matrix"),
    (b'{"source": [], "target": [], "weights": []}', "translation is empty, so there is no attention to plot"),
    (b"\xff\xfe", "line 1: not UTF-8 text"),
])
def test_record_from_json_bad_records_are_named(tmp_path, line, message):
    path = write_lines(tmp_path / "bad.jsonl", [line])
    with pytest.raises(MtkitError, match=message):
        record_from_json(path, 1)


def test_to_words_merges_pieces_and_keeps_rows_summing_to_one():
    rec = record()
    words = to_words(rec)
    assert words.source == ["kalo", "mi"] and words.target == ["AB", "C"] and words.translation == rec.translation
    assert words.weights.shape == (2, 2)
    assert np.allclose(words.weights.sum(1), 1.0)
    by_word = np.stack([rec.weights[:, :2].sum(1), rec.weights[:, 2]], 1)  # (T, S_words): columns summed
    assert np.allclose(words.weights, [by_word[:2].mean(0), by_word[2]])  # target rows averaged


def test_draw_writes_two_valid_pngs(tmp_path):
    paths = draw(to_words(record()), tmp_path / "out" / "plots", stem="s1")
    assert [p.name for p in paths] == ["s1_heatmap.png", "s1_lines.png"]
    for path in paths:
        assert path.read_bytes()[:8] == PNG
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_draw_titles_say_which_attention(tmp_path, monkeypatch):
    titles = {}
    for name in ("plot_attention_heatmap", "plot_alignment_lines"):
        monkeypatch.setattr(plots, name, lambda *args, name=name, title=None, **kwargs: titles.setdefault(name, title))
    draw(record()._replace(attention="cross-attention, layer 1 of 2, mean of 2 heads"), tmp_path)
    assert titles == {"plot_attention_heatmap": "Attention: AB C\ncross-attention, layer 1 of 2, mean of 2 heads",
                      "plot_alignment_lines": "Alignment: AB C\ncross-attention, layer 1 of 2, mean of 2 heads"}


def test_draw_refuses_an_empty_record(tmp_path):
    with pytest.raises(MtkitError, match="no attention weights"):
        draw(AttentionRecord(["▁a"], [], np.zeros((0, 1)), ""), tmp_path)
    assert not list(tmp_path.iterdir())
