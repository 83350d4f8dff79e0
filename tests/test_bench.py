"""bench: the FLOP count against a hand count, the equivalences the
speed changes rely on, and the benchmark end to end on a tiny corpus (no timing assertions)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mtkit.bench import (FlopCount, count_flops, pair_flops, random_token_batches,
                         training_flops_per_token)
from mtkit.config import AttentionConfig, ModelConfig
from mtkit.data.synthetic import make_pairs, write_pairs
from mtkit.model import build_model
from mtkit.model.encoder import Encoder, lengths_to_mask, rnn_cell

ROOT = Path(__file__).resolve().parent.parent


def tiny(**changes) -> ModelConfig:
    """E=3, encoder 2×4 (K=8), decoder H=6, O=7, additive A=5."""
    base = dict(emb_dim=3, hidden_dim=4, dec_hidden_dim=6, out_dim=7, dropout=0.0,
                attention=AttentionConfig(kind="additive", dim=5), decoder="luong", input_feeding=True)
    return ModelConfig(**{**base, **changes})


def test_flops_of_a_tiny_luong_model_match_a_hand_count():
    count = count_flops(build_model(tiny(), 10, 11))
    # encoder GRU per direction: W_ih 12×3 + W_hh 12×4 = 84 weights, two directions; U_a: 8 → 5
    per_src = 2 * (2 * 84) + 2 * 8 * 5
    # decoder GRU reads [emb; h̃]: W_ih 18×(3+7) + W_hh 18×6; W_a: 6 → 5; W_c: 8+6 → 7; output: 7 → 11
    per_tgt = 2 * (18 * 10 + 18 * 6) + 2 * 6 * 5 + 2 * 14 * 7 + 2 * 7 * 11
    per_pair = 2 * 5 + 2 * 8  # v_a, then the average of the K=8 states
    per_sentence = 2 * 4 * 6  # bridge from ←h_1 (K/2 = 4) to H = 6
    assert count == FlopCount(per_src, per_tgt, per_pair, per_sentence, 2 * 7 * 11)
    assert pair_flops(count, 3, 2) == 3 * per_src + 2 * per_tgt + 6 * per_pair + per_sentence == 3424
    assert training_flops_per_token(count, [3, 5], [2, 4]) == pytest.approx(
        3 * (pair_flops(count, 3, 2) + pair_flops(count, 5, 4)) / 6)


def test_flops_without_attention_have_no_pair_term():
    count = count_flops(build_model(tiny(decoder="bahdanau", attention=AttentionConfig(kind="none")), 10, 11))
    # RNN reads [emb; c] (3+8), deep output reads [s; c; emb] (6+8+3 → 7)
    assert count.per_src_token == 2 * (2 * 84)
    assert count.per_tgt_token == 2 * (18 * 11 + 18 * 6) + 2 * 17 * 7 + 2 * 7 * 11
    assert count.per_pair == 0


# The speed changes in mtkit.model replaced torch's packed RNN and its one-step module call with
# rnn_cell; these keep them honest against torch itself.

@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_rnn_cell_is_one_step_of_torchs_module(cell):
    torch.manual_seed(0)
    rnn = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell](5, 4, batch_first=True)
    x, h = torch.randn(3, 5), torch.randn(3, 4)
    c = torch.randn(3, 4) if cell == "lstm" else None
    out, new = rnn(x.unsqueeze(1), (h[None], c[None]) if c is not None else h[None])
    hidden, memory = rnn_cell(cell, F.linear(x, rnn.weight_ih_l0, rnn.bias_ih_l0),
                              F.linear(h, rnn.weight_hh_l0, rnn.bias_hh_l0), h, c)
    assert torch.allclose(hidden, out[:, 0], atol=1e-6)
    if cell == "lstm":
        assert torch.allclose(memory, new[1][0], atol=1e-6)


@pytest.mark.parametrize("cell,layers,bidirectional", [("gru", 2, True), ("lstm", 1, True), ("rnn", 2, False)])
def test_encoder_gives_what_a_packed_torch_rnn_gives(cell, layers, bidirectional):
    torch.manual_seed(0)
    enc = Encoder(20, 6, 4, layers, bidirectional, cell).eval()
    src_len = torch.tensor([5, 2, 4, 1])
    src = torch.randint(4, 20, (4, 5))
    src[~lengths_to_mask(src_len, 5)] = 0
    out = enc(src, src_len)
    packed = pack_padded_sequence(enc.embed(src), src_len, batch_first=True, enforce_sorted=False)
    ref_out, h_n = enc.rnn(packed)
    ref_states, _ = pad_packed_sequence(ref_out, batch_first=True, total_length=5)
    h_n = h_n[0] if cell == "lstm" else h_n
    ref_final = h_n[-enc.num_dirs:].transpose(0, 1).reshape(4, -1)
    assert torch.allclose(out.states, ref_states, atol=1e-6)
    assert torch.allclose(out.final, ref_final, atol=1e-6)


def test_random_batches_respect_the_token_budget_and_cover_every_sentence():
    src, tgt = [3, 9, 4, 7, 2, 8], [4, 8, 3, 6, 2, 9]
    batches = random_token_batches(src, tgt, 20, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(6))
    for b in batches:
        assert len(b) == 1 or len(b) * max(max(src[i], tgt[i] + 1) for i in b) <= 20


def load_script():
    spec = importlib.util.spec_from_file_location("bench_script", ROOT / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_pairs(make_pairs(300, "reverse", 2, 6, vocab_size=12, seed=0), tmp_path / "c.src", tmp_path / "c.tgt")
    (tmp_path / "c.yaml").write_text(
        "data:\n  source: text\n  src_file: c.src\n  tgt_file: c.tgt\n  dev_size: 20\n  test_size: 20\n"
        "  length_edges: [3, 6]\ntokenizer:\n  vocab_size: 40\n"
        "model:\n  emb_dim: 8\n  hidden_dim: 8\n  dec_hidden_dim: 16\n  out_dim: 8\n  decoder: luong\n"
        "  attention:\n    dim: 8\ntrain:\n  batch_tokens: 200\n", encoding="utf-8")
    return tmp_path


def test_bench_runs_end_to_end_and_writes_json(workdir, capsys, monkeypatch):
    # one core: skips the thread-count levers, whose second thread crawls when tests share the cores
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    out = workdir / "bench.json"
    status = load_script().main([
        "c.yaml", "--steps", "2", "--warmup", "1", "--window", "1", "--sentences", "6", "--beams", "1", "2",
        "--threads", "1", "--matmul-size", "128",
        "--attention-cost", "cost.png", "--attention-lengths", "2", "4", "--levers", "--profile", "1", "--json", str(out)])
    assert status == 0
    result = json.loads(out.read_text())
    assert result["training"]["tokens_per_s"] > 0 and len(result["training"]["windows"]) == 2
    assert [t["beam"] for t in result["translation"]] == [1, 2]
    assert all(t["sentences"] == 6 and t["sentences_per_s"] > 0 for t in result["translation"])
    assert result["peak_rss_bytes"] >= result["training"]["peak_rss_bytes"] > 0
    assert 0 < result["training"]["utilisation"]
    assert result["model"]["train_flops_per_target_token"] > 0
    fits = result["attention_cost"]["fits"]
    assert set(fits) == {"attention", "none"} and set(fits["attention"]) == {"decode", "train"}
    assert (workdir / "cost.png").stat().st_size > 0
    assert {lever["name"] for lever in result["levers"]} >= {"fused vocabulary projection and loss", "packed encoder"}
    ops = result["profile"]["operators"]
    assert ops and all(0 < op["share"] <= 1 and op["calls"] > 0 for op in ops)
    assert sum(op["share"] for op in ops) <= 1.001  # the top operators of one ranking
    printed = capsys.readouterr().out
    assert "training, median" in printed and "by operator" in printed


def test_bench_names_a_bad_option(workdir, capsys):
    assert load_script().main(["c.yaml", "--steps", "2", "--window", "5"]) == 2
    assert "--window" in capsys.readouterr().err
