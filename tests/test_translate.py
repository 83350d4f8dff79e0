"""translate: one output per input line whatever the bytes, truncation warnings, runs, n-best, attention JSON
(labelled with which attention it holds: an RNN's one, or a Transformer's chosen layer and head)."""

from __future__ import annotations

import builtins
import io
import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import cross_attention

from mtkit.alignment import record_from_json
from mtkit.errors import MtkitError
from mtkit.data.textio import read_lines
from mtkit.runs import resolve_checkpoint
from mtkit.translate import Translator, rounded_weights, translate_file, translate_lines

@pytest.fixture(scope="module")
def root(tiny_runs):
    return tiny_runs


@pytest.fixture(scope="module")
def translator(root) -> Translator:
    return Translator.from_run(root / "runs/att")


@pytest.fixture(scope="module")
def sentences(root) -> list[str]:
    return Path(root, "c.src").read_text().splitlines()[:6]


def test_every_input_line_gives_one_output(translator, sentences, caplog):
    first, second = sentences[0], sentences[1]
    raw = (b"\xef\xbb\xbf" + first.encode() + b"\r\n"  # BOM and CRLF
           + b"\n"  # empty
           + b"  \t \r\n"  # whitespace only
           + second.encode() + b" \xff\xfe\n"  # invalid UTF-8
           + b"\xc3\n"  # a cut multi-byte character
           + first.encode())  # no final newline
    with caplog.at_level(logging.WARNING, logger="mtkit"):
        lines = read_lines(io.BytesIO(raw), "in.txt", errors="replace")
    assert lines == [first, "", "  \t ", second + " \ufffd\ufffd", "\ufffd", first]
    assert "in.txt: invalid UTF-8 replaced with U+FFFD on 2 line(s): 4, 5" in caplog.text
    results = list(translate_lines(translator, lines))
    assert len(results) == len(lines)
    assert results[1].text == results[2].text == "" and results[1].src_pieces == results[2].src_pieces == []
    assert results[0].text == results[5].text == translator.translate([first])[0].text  # BOM, CRLF: no trace
    assert results[0].text  # the trained model says something
    assert all("\n" not in r.text and "\r" not in r.text for r in results)


def test_empty_input_gives_no_output(translator):
    assert read_lines(io.BytesIO(b"")) == []
    assert list(translate_lines(translator, [])) == []


def test_long_line_is_truncated_with_a_warning_naming_it(translator, sentences, caplog):
    short = Translator(translator.model, translator.tokenizer,
                       replace(translator.cfg, decode=replace(translator.cfg.decode, max_src_len=6)), translator.device)
    long_line = " ".join(sentences[:3])
    assert len(translator.tokenizer.encode_src([long_line])[0]) > 6
    lines = ["", sentences[3][:4], long_line, "", long_line]
    with caplog.at_level(logging.WARNING, logger="mtkit"):
        results = list(translate_lines(short, lines, chunk=2))  # line 5 is in the third chunk
    assert len(results) == 5
    assert [r.truncated for r in results] == [False, False, True, False, True]
    assert len(results[2].src_pieces) == 6
    assert results[2].src_pieces == translator.tokenizer.src_pieces(translator.tokenizer.encode_src([long_line])[0][:6])
    warned = [r.getMessage() for r in caplog.records if "max_src_len" in r.getMessage()]
    assert [w.split(":")[0] for w in warned] == ["line 3", "line 5"]
    assert "longer than decode.max_src_len = 6 pieces" in warned[0]


def test_from_run_latest_last_and_path(root, translator, sentences, monkeypatch):
    expected = [t.text for t in translator.translate(sentences)]
    monkeypatch.chdir(root)
    assert [t.text for t in Translator.from_run().translate(sentences)] == expected  # runs/latest is `att`
    last = Translator.from_run(root / "runs/att", checkpoint="last")
    assert [t.text for t in last.translate(sentences)] == expected  # valid_every=0: the last step is the best
    by_path = Translator.from_run(checkpoint=str(root / "runs/att/best.pt"))
    assert [t.text for t in by_path.translate(sentences)] == expected
    assert resolve_checkpoint(None) == Path(root / "runs/att/best.pt").resolve()


def test_missing_runs_and_checkpoints_are_named(root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MtkitError, match="no run given and runs/latest does not exist"):
        Translator.from_run()
    with pytest.raises(MtkitError, match="nowhere/best.pt does not exist"):
        Translator.from_run(tmp_path / "nowhere")
    with pytest.raises(MtkitError, match="--checkpoint x.pt: no such file"):
        Translator.from_run(root / "runs/att", checkpoint="x.pt")


def test_batches_and_beam_settings_keep_the_order(translator, sentences):
    lines = sentences + ["", sentences[0]]
    one_by_one = [translator.translate([s], beam=1)[0].text for s in lines]
    assert [t.text for t in translator.translate(lines, beam=1, batch_size=3)] == one_by_one
    for bad in (0, -1):  # -1 used to skip every batch and give empty translations
        with pytest.raises(MtkitError, match=f"`decode.batch_size`: got {bad}; must be at least 1"):
            translator.translate(lines, batch_size=bad)


def test_n_best_is_sorted_and_the_best_is_the_text(translator, sentences):
    for result in translator.translate(sentences, beam=4, n_best=3):
        scores = [h.score for h in result.hypotheses]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        assert result.text == translator.tokenizer.decode_tgt(result.hypotheses[0].tokens)
    with pytest.raises(MtkitError, match="--n-best between 1 and the beam size"):
        translator.translate(sentences, beam=2, n_best=3)


def test_attention_json_has_one_row_per_target_piece(translator, sentences, tmp_path):
    lines = [sentences[0], "", sentences[1]]
    results = list(translate_lines(translator, lines, beam=3))
    source, output, path = tmp_path / "in.txt", tmp_path / "out" / "out.txt", tmp_path / "att.jsonl"
    source.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    assert translate_file(translator, source, output, path, beam=3) == 3
    assert output.read_text(encoding="utf-8").splitlines() == [r.text for r in results]
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3]
    for rec, line, result in zip(records, lines, results):
        assert rec["translation"] == result.text
        assert rec["source"] == translator.tokenizer.src_pieces(translator.tokenizer.encode_src([line])[0])
        assert len(rec["weights"]) == len(rec["target"]) == len(result.hypotheses[0].tokens)
        for row in rec["weights"]:
            assert len(row) == len(rec["source"]) and abs(sum(row) - 1.0) < 1e-3 and min(row) >= 0
    assert records[1]["weights"] == records[1]["target"] == records[1]["source"] == []
    assert records[0]["weights"]
    assert [r["attention"] for r in records] == ["additive attention"] * 3
    again = record_from_json(path, 3)  # what `mtkit attention --from-json` reads
    assert again.weights.shape == (len(records[2]["target"]), len(records[2]["source"]))


def test_model_without_attention(root, sentences):
    plain = Translator.from_run(root / "runs/none")
    assert not plain.has_attention
    results = plain.translate(sentences[:2], beam=2, n_best=2)
    assert len(results) == 2 and all(h.attention is None for r in results for h in r.hypotheses)


@pytest.fixture(scope="module")
def transformer(tiny_transformer) -> Translator:
    return Translator.from_run(tiny_transformer)


@pytest.mark.parametrize("layer, head, label", [
    (None, None, "cross-attention, mean of 2 layers, mean of 2 heads"),
    (2, None, "cross-attention, layer 2 of 2, mean of 2 heads"),
    (1, 2, "cross-attention, layer 1 of 2, head 2 of 2"),
    (None, 1, "cross-attention, mean of 2 layers, head 1 of 2"),
])
def test_transformer_attention_json_is_the_chosen_layer_and_head_and_says_so(transformer, sentences, tmp_path,
                                                                             layer, head, label):
    source, path = tmp_path / "in.txt", tmp_path / "att.jsonl"
    source.write_text("".join(line + "\n" for line in sentences[:3]), encoding="utf-8")
    assert translate_file(transformer, source, tmp_path / "out.txt", path, layer=layer, head=head) == 3
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for rec, line in zip(records, sentences):
        assert rec["attention"] == label
        src_ids = transformer.tokenizer.encode_src([line])[0]
        tokens = transformer.translate([line])[0].hypotheses[0].tokens
        every = cross_attention(transformer.model, src_ids, tokens)  # (L, heads, T, S)
        assert not torch.allclose(every[0], every[1], atol=1e-3)  # the layers differ, so the choice shows
        chosen = every[slice(None) if layer is None else slice(layer - 1, layer),
                       slice(None) if head is None else slice(head - 1, head)].mean((0, 1))  # (T, S)
        weights = torch.tensor(rec["weights"])
        assert weights.shape == chosen.shape and torch.allclose(weights, chosen, atol=1e-4)
        assert torch.allclose(weights.sum(1), torch.ones(len(tokens)), atol=1e-3)
    assert [r["translation"] for r in records] == [t.text for t in transformer.translate(sentences[:3])]


def test_transformer_layer_or_head_out_of_range_is_named(transformer, tmp_path):
    for layer, head, message in [(3, None, "--layer 3: this model has 2 layers (1-2)"),
                                 (0, None, "--layer 0: this model has 2 layers (1-2)"),
                                 (None, 5, "--head 5: this model has 2 heads (1-2)")]:
        with pytest.raises(MtkitError, match=message.replace("(", r"\(").replace(")", r"\)")):
            translate_file(transformer, io.BytesIO(b"kafegi\n"), tmp_path / "out.txt", tmp_path / "a.jsonl",
                           layer=layer, head=head)
    with pytest.raises(MtkitError, match="--layer and --head choose the attention weights that --attention writes"):
        translate_file(transformer, io.BytesIO(b"kafegi\n"), tmp_path / "out.txt", layer=1)
    assert not (tmp_path / "out.txt").exists()  # refused before anything was written


def test_an_rnn_has_one_attention_and_no_layers_or_heads(translator, root):
    assert translator.attention_shape is None and translator.show_attention() == "additive attention"
    with pytest.raises(MtkitError, match="--layer 1: --layer and --head choose among a Transformer's "
                                         "cross-attentions, but this run is an RNN with one additive attention"):
        translator.show_attention(layer=1)
    with pytest.raises(MtkitError, match="--head 2: .* RNN with one additive attention"):
        translator.show_attention(head=2)
    plain = Translator.from_run(root / "runs/none")
    assert plain.show_attention() == "no attention"
    with pytest.raises(MtkitError, match="RNN with no attention"):
        plain.show_attention(layer=1)


def test_weights_are_rounded_like_python_rounds_them_but_in_one_numpy_step(monkeypatch):
    weights = torch.rand(40, 30).softmax(-1)  # (T, S)
    expected = [[round(w, 5) for w in row] for row in weights.tolist()]
    monkeypatch.setattr(builtins, "round", lambda *args: pytest.fail("a weight was rounded on its own, in Python"))
    assert rounded_weights(weights) == expected and rounded_weights(weights.numpy()) == expected
