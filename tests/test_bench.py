"""benchmarks: FLOP counts against a hand count, the timing and fitting arithmetic, the equivalences the
levers rely on, and the benchmark end to end on a tiny corpus (no assertions on speed)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
import yaml

from benchmarks.__main__ import main
from benchmarks.attention_cost import attention_cost, bilinear_fit, never_ending, random_batch
from benchmarks.flops import FlopCount, count_flops, matmul_peak, pair_flops, product_flops, training_flops_per_token
from benchmarks.levers import LeverBench, one_thread, random_token_batches, time_levers, without_projected_keys
from benchmarks.run import load_model
from benchmarks.timing import Window, summarise_windows, time_training, training_batches, training_step
from benchmarks.transformer_levers import (RecomputingDecoder, self_attention_input, time_transformer_levers,
                                           torch_attention, torch_twin)
from mtkit.checkpoint import TrainState, save_checkpoint
from mtkit.config import AttentionConfig, ModelConfig, TransformerConfig, load_config
from mtkit.data.synthetic import make_pairs, write_pairs
from mtkit.data.tokenizer import EOS
from mtkit.model import Seq2Seq, build_model
from mtkit.prepare import prepare
from mtkit.search import greedy


def tiny(**changes) -> ModelConfig:
    """E=3, encoder 2×4 (K=8), decoder H=6, O=7, additive A=5."""
    base = dict(emb_dim=3, hidden_dim=4, dec_hidden_dim=6, out_dim=7, dropout=0.0,
                attention=AttentionConfig(kind="additive", dim=5), decoder="luong", input_feeding=True)
    return ModelConfig(**{**base, **changes})


def tiny_transformer(**changes) -> ModelConfig:
    """d = 8, 2 heads, ff 12, 2 encoder layers and 1 decoder layer."""
    shape = TransformerConfig(**{**dict(d_model=8, heads=2, ff_dim=12, enc_layers=2, dec_layers=1), **changes})
    return ModelConfig(arch="transformer", transformer=shape, dropout=0.0)


def tiny_batch(tgt_len: int):
    """Three pairs with source 4 and target tgt_len tokens (eos included), random words."""
    return random_batch(3, 4, tgt_len, 12, 12, random.Random(tgt_len))


# ---- FLOPs ---------------------------------------------------------------------------------------


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


def test_flops_of_a_tiny_transformer_match_the_formula():
    d, f, v, enc_layers, dec_layers = 8, 12, 11, 2, 1
    count = count_flops(build_model(tiny_transformer(), 10, v))
    # the flops.py docstring: encoder layers (Q, K, V, O and feed-forward), each decoder layer's cross K, V
    per_src = enc_layers * (2 * 4 * d * d + 2 * 2 * d * f) + dec_layers * 2 * 2 * d * d
    # self Q, K, V, O; cross Q, O; feed-forward; the vocabulary projection
    per_tgt = dec_layers * (2 * 4 * d * d + 2 * 2 * d * d + 2 * 2 * d * f) + 2 * d * v
    assert (per_src, per_tgt) == (2048, 1328)  # 2·(512 + 384) + 256; 512 + 256 + 384 + 176
    assert count == FlopCount(per_src, per_tgt, dec_layers * 4 * d, 0, 2 * d * v,
                              per_src_pair=enc_layers * 4 * d, per_tgt_pair=dec_layers * 4 * d)
    # m = 3, n = 2: 3·F_src + 2·F_tgt + 6 cross pairs·32 + 9 source pairs·64 + 3 causal target pairs·32
    assert pair_flops(count, 3, 2) == 3 * 2048 + 2 * 1328 + 6 * 32 + 9 * 64 + 3 * 32 == 9664
    assert training_flops_per_token(count, [3], [2]) == 3 * 9664 / 2


def test_product_flops_names_what_it_counts():
    with pytest.raises(TypeError, match="nn.Linear"):
        product_flops(torch.nn.Conv1d(2, 2, 1))


def test_matmul_peak_on_a_small_product():
    peak = matmul_peak(size=32, repeats=2)
    assert peak.best >= peak.median > 0 and peak.size == 32 and peak.threads == torch.get_num_threads()


# ---- timing and fitting arithmetic ---------------------------------------------------------------


def test_summarised_windows_take_medians_and_utilisation():
    windows = [Window(2, 100, 1.0, 2.0, 0.5), Window(2, 300, 1.0, 1.0, 1.5), Window(2, 200, 1.0, 4.0, 1.0)]
    summary = summarise_windows(windows, flops_per_token=1e6, peak_gflops=1.0)
    assert (summary["tokens_per_s"], summary["tokens_per_s_min"], summary["tokens_per_s_max"]) == (200, 100, 300)
    assert summary["tokens_per_cpu_s"] == 50  # of 50, 300, 50
    assert summary["utilisation"] == pytest.approx(1e6 * 200 / 1e9)
    assert summary["load"] == 1.0 and len(summary["windows"]) == 3


def test_time_training_skips_warmup_and_times_whole_windows():
    batches = [tiny_batch(n) for n in (2, 3, 4, 5, 6, 7, 8)]
    seen = []
    windows = time_training(lambda b: seen.append(b.num_tgt_tokens), batches, warmup=2, window=2)
    assert len(seen) == 2 + 2 * 2  # the last batch makes no whole window: not run
    assert [w.tokens for w in windows] == [3 * (4 + 5), 3 * (6 + 7)] and all(w.steps == 2 for w in windows)


def test_bilinear_fit_recovers_a_known_function():
    points = [{"m": m, "t": t, "y": 0.5 + 0.02 * m + 0.03 * t + 0.004 * m * t} for m in (2, 5, 9) for t in (1, 4, 8)]
    fit = bilinear_fit(points, "y")
    assert [fit[k] for k in ("const", "per_m", "per_t", "per_mt")] == pytest.approx([0.5, 0.02, 0.03, 0.004])
    assert fit["r2"] == 1.0


def test_fit_with_squares_recovers_a_known_function():
    points = [{"m": m, "t": t, "y": 0.5 + 0.02 * m + 0.03 * t + 0.004 * m * t + 0.001 * m * m + 0.002 * t * t}
              for m in (2, 5, 9) for t in (1, 4, 8)]
    fit = bilinear_fit(points, "y", squares=True)
    assert [fit[k] for k in ("const", "per_m", "per_t", "per_mt", "per_mm", "per_tt")] == pytest.approx(
        [0.5, 0.02, 0.03, 0.004, 0.001, 0.002])
    assert fit["r2"] == 1.0


def test_random_batches_respect_the_token_budget_and_cover_every_sentence():
    src, tgt = [3, 9, 4, 7, 2, 8], [4, 8, 3, 6, 2, 9]
    batches = random_token_batches(src, tgt, 20, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(6))
    for b in batches:
        assert len(b) == 1 or len(b) * max(max(src[i], tgt[i] + 1) for i in b) <= 20


# ---- what the levers and the attention cost rely on ----------------------------------------------


def test_keys_projected_at_every_step_give_the_same_features():
    torch.manual_seed(0)
    model = build_model(tiny(), 12, 12).eval()
    batch = tiny_batch(5)
    state, memory = model.encode(batch.src, batch.src_len)
    once, _ = model.decoder.features(batch.tgt_in, state, memory)
    per_step, _ = model.decoder.features(batch.tgt_in, state, without_projected_keys(memory))
    assert memory.projected is not None and torch.allclose(once, per_step, atol=1e-6)


def test_torch_twin_of_a_multi_head_attention_gives_its_numbers():
    torch.manual_seed(0)
    model = build_model(tiny_transformer(), 12, 12).eval()
    inp = self_attention_input(model, tiny_batch(5)._replace(src_mask=torch.tensor([[True] * 3 + [False]] * 3)), "src")
    attn = inp.attention
    ours = attn(inp.x, attn.project(inp.x), inp.mask)[0]
    assert torch.allclose(ours, torch_attention(torch_twin(attn).eval(), inp), atol=1e-6)


def test_recomputing_decoder_greedy_gives_the_cached_tokens():
    torch.manual_seed(0)
    model = build_model(tiny_transformer(), 12, 12).eval()
    batch, limit = tiny_batch(5), torch.full((3,), 7)
    recomputing = Seq2Seq(model.encoder, RecomputingDecoder(model.decoder))
    cached, recomputed = greedy(model, batch.src, batch.src_len, limit), greedy(recomputing, batch.src, batch.src_len, limit)
    assert [h.tokens for h in cached] == [h.tokens for h in recomputed]
    assert all(torch.allclose(a.attention, b.attention, atol=1e-6) for a, b in zip(cached, recomputed))


def test_a_never_ending_copy_decodes_exactly_to_the_limit():
    torch.manual_seed(0)
    model = build_model(tiny(), 12, 12)
    batch = tiny_batch(6)
    hyps = greedy(never_ending(model), batch.src, batch.src_len, torch.full((3,), 6))
    assert [len(h.tokens) for h in hyps] == [6, 6, 6] and all(EOS not in h.tokens for h in hyps)
    assert torch.isfinite(model.decoder.out.bias).all()  # the model itself is untouched


def test_random_batch_has_exact_lengths():
    batch = tiny_batch(5)
    assert batch.src.shape == (3, 4) and batch.tgt_in.shape == batch.tgt_out.shape == (3, 5)
    assert (batch.tgt_out[:, -1] == EOS).all() and bool(batch.src_mask.all())


# ---- on a tiny prepared corpus -------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A config file over a synthetic reversal corpus; every path in it is absolute."""
    root = tmp_path_factory.mktemp("bench")
    write_pairs(make_pairs(300, "reverse", 2, 6, vocab_size=12, seed=0), root / "c.src", root / "c.tgt")
    config = {"run_dir": str(root / "run"),
              "data": {"source": "text", "src_file": str(root / "c.src"), "tgt_file": str(root / "c.tgt"),
                       "dev_size": 20, "test_size": 20, "length_edges": [3, 6], "cache_dir": str(root / "cache")},
              "tokenizer": {"vocab_size": 40}, "train": {"batch_tokens": 200},
              "model": {"emb_dim": 8, "hidden_dim": 8, "dec_hidden_dim": 16, "out_dim": 8, "decoder": "luong",
                        "attention": {"dim": 8}}}
    (root / "c.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return root / "c.yaml"


@pytest.fixture(scope="module")
def transformer_corpus(corpus) -> Path:
    """The same corpus and data, with a tiny Transformer."""
    config = yaml.safe_load(corpus.read_text(encoding="utf-8"))
    config["model"] = {"arch": "transformer", "dropout": 0.0,
                       "transformer": {"d_model": 8, "heads": 2, "ff_dim": 16, "enc_layers": 1, "dec_layers": 1}}
    config["run_dir"] += "_transformer"
    path = corpus.with_name("transformer.yaml")
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_levers_run_on_a_tiny_config(corpus, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 1)  # the thread levers: below, on one thread
    cfg = load_config(corpus)
    prepared = prepare(cfg)
    split = prepared.splits["train"]
    model = build_model(cfg.model, prepared.tokenizer.src_vocab, prepared.tokenizer.tgt_vocab)
    batches = training_batches(cfg, split.src_ids, split.tgt_ids, 3)
    levers = time_levers(cfg, model, batches, split, prepared.splits["test"].src_ids, rounds=2, sentences=4)
    names = [lever["name"] for lever in levers]
    assert names[:3] == ["length-bucketed token batches", "fused vocabulary projection and loss",
                         "attention keys projected once per sentence"]
    # luong with input feeding has no whole-sequence path: timed on its variants that do
    assert {"fused whole-sequence decoder (attention)", "fused whole-sequence decoder (no attention)"} <= set(names)
    assert {"loss chunk", "fused Adam", "fused kernels (training)", "fused kernels (greedy)"} <= set(names)
    assert all(lever["speedup"] > 0 and lever["lever_seconds"] > 0 for lever in levers)
    bench = LeverBench(cfg, model, training_step(model, cfg.train), batches, prepared.splits["test"].src_ids[:4], 2)
    assert [lever["name"] for lever in one_thread(bench, 1)] == ["one thread", "one thread (greedy)"]


def test_transformer_levers_run_and_agree(transformer_corpus):
    cfg = load_config(transformer_corpus)
    prepared = prepare(cfg)
    split = prepared.splits["train"]
    torch.manual_seed(0)
    model = build_model(cfg.model, prepared.tokenizer.src_vocab, prepared.tokenizer.tgt_vocab)
    batches = training_batches(cfg, split.src_ids, split.tgt_ids, 2)
    levers = time_transformer_levers(cfg, model, batches, prepared.splits["test"].src_ids[:4], rounds=1)
    assert [lever["name"] for lever in levers] == [
        "fused self-attention, encoder", "fused self-attention, decoder (causal)", "MultiHeadAttention, training",
        "MultiHeadAttention, decoding", "Transformer step with key/value cache"]
    for lever in levers:
        assert math.isfinite(lever["lever_seconds"]) and math.isfinite(lever["baseline_seconds"])
        assert lever["lever_seconds"] > 0 and lever["baseline_seconds"] > 0 and lever["speedup"] > 0
    assert all(lever["agree"] and lever["max_abs_difference"] <= 1e-5 for lever in levers[:4])
    assert levers[4]["same_tokens"]


def test_attention_cost_times_every_grid_point_of_both_models(corpus):
    cost = attention_cost(load_config(corpus), 20, 20, lengths=(2, 4), batch=2, repeats=1, train_repeats=1)
    for name in ("attention", "none"):
        assert sorted((p["m"], p["t"]) for p in cost["points"][name]) == [(2, 2), (2, 4), (4, 2), (4, 4)]
        assert all(p["decode"] > 0 and p["train"] > 0 for p in cost["points"][name])
    assert set(cost["fits"]["none"]) == {"decode", "train"} and cost["attention"] == "additive"


def test_a_checkpoint_is_found_by_name_in_the_run_dir(corpus):
    cfg = load_config(corpus)
    prepared = prepare(cfg)
    saved = build_model(cfg.model, prepared.tokenizer.src_vocab, prepared.tokenizer.tgt_vocab)
    Path(cfg.run_dir).mkdir(exist_ok=True)
    save_checkpoint(Path(cfg.run_dir) / "best.pt", saved, cfg, prepared.tokenizer, TrainState())
    loaded = load_model(cfg, prepared, "best")
    assert all(torch.equal(a, b) for a, b in zip(saved.state_dict().values(), loaded.state_dict().values()))


def test_bench_runs_end_to_end_and_writes_json(corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 1)  # skips the thread levers: a second thread crawls on shared cores
    out = tmp_path / "bench.json"
    status = main([
        str(corpus), "--steps", "2", "--warmup", "1", "--window", "1", "--sentences", "6", "--beams", "1", "2",
        "--threads", "1", "--matmul-size", "64", "--attention-cost", str(tmp_path / "cost.png"),
        "--attention-lengths", "2", "4", "--levers", "--profile", "1", "--json", str(out)])
    assert status == 0
    result = json.loads(out.read_text())
    assert result["training"]["tokens_per_s"] > 0 and len(result["training"]["windows"]) == 2
    assert [t["beam"] for t in result["translation"]] == [1, 2]
    assert all(t["sentences"] == 6 and t["sentences_per_s"] > 0 for t in result["translation"])
    assert result["peak_rss_bytes"] >= result["training"]["peak_rss_bytes"] > 0
    assert 0 < result["training"]["utilisation"] and result["model"]["train_flops_per_target_token"] > 0
    assert {"git_commit", "torch", "load_average", "load_average_end"} <= set(result["environment"])
    assert (tmp_path / "cost.png").stat().st_size > 0 and set(result["attention_cost"]["fits"]) == {"attention", "none"}
    ops = result["profile"]["operators"]
    assert ops and all(0 < op["share"] <= 1 and op["calls"] > 0 for op in ops)
    assert sum(op["share"] for op in ops) <= 1.001  # the top operators of one ranking
    printed = capsys.readouterr().out
    assert "training, median" in printed and "by operator" in printed and "lever: packed" not in printed
    assert "lever: fused vocabulary projection and loss" in printed
    assert "timed as the mtkit command ships (mtkit.runtime.tune_process)" in printed


def test_bench_runs_a_transformer_and_says_what_it_skips(transformer_corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    out = tmp_path / "bench.json"
    status = main([
        str(transformer_corpus), "--steps", "1", "--warmup", "0", "--window", "1", "--sentences", "4", "--beams", "1",
        "--threads", "1", "--matmul-size", "64", "--attention-cost", str(tmp_path / "cost.png"),
        "--attention-lengths", "2", "4", "--levers", "--profile", "1", "--json", str(out)])
    assert status == 0
    result = json.loads(out.read_text())
    assert result["model"]["description"].startswith("Transformer") and result["profile"]["operators"]
    cost = result["attention_cost"]
    assert set(cost["fits"]) == {"attention"} and "per_tt" in cost["fits"]["attention"]["decode"]
    assert "no attention-free form" in cost["skipped"]["none"] and (tmp_path / "cost.png").stat().st_size > 0
    levers = {lever["name"]: lever for lever in result["levers"]}
    assert "Transformer" in levers["attention keys projected once per sentence"]["skipped"]
    assert levers["whole-sequence decoder (Transformer)"]["speedup"] > 0
    assert levers["Transformer step with key/value cache"]["same_tokens"]
    printed = capsys.readouterr().out
    assert "skipped" in printed and "lever: fused self-attention, encoder" in printed and "µs per t²" in printed


def test_bench_names_a_bad_option(corpus, capsys):
    assert main([str(corpus), "--steps", "2", "--window", "5"]) == 2
    assert "--window" in capsys.readouterr().err


def test_study_lever_compares_side_by_side_with_in_turn():
    from benchmarks.study import format_study, summarise

    def result(rate, threads=1):
        return {"training": {"tokens_per_s": rate, "utilisation": 0.3, "load": 1.0},
                "matmul": {"best": 170.0, "threads": threads}, "environment": {},
                "model": {"description": f"M{rate} model", "train_flops_per_target_token": 8e6},
                "profile": {"operators": [{"name": "aten::mm", "share": 0.2, "calls": 10}]}}

    # side by side 1000 and 500 tok/s: N tokens each take N/500; alone on 2 threads, 1500 and 800: N/1500 + N/800
    record = summarise([result(1000), result(500)], [result(1500, 2), result(800, 2)])
    assert record["side_by_side_speedup"] == pytest.approx((1 / 1500 + 1 / 800) / (1 / 500), abs=1e-3)
    assert [m["in_turn_tokens_per_s"] for m in record["models"]] == [1500, 800]
    text = format_study(record)
    assert "×0.96" in text and "aten::mm" in text
    assert "side_by_side_speedup" not in summarise([result(1000)], None)


def test_study_benchmark_runs_two_configs_side_by_side(corpus, transformer_corpus, tmp_path, capsys):
    from benchmarks.study import main as study_main

    out = tmp_path / "study.json"
    assert study_main([str(corpus), str(transformer_corpus), "--steps", "2", "--warmup", "1", "--window", "1",
                       "--profile", "1", "--in-turn",
                       "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert [m["model"].split("(")[0] for m in record["models"]] == ["Luong", "Transformer"]
    assert all(m["tokens_per_s"] > 0 and m["in_turn_tokens_per_s"] > 0 and m["profile"] for m in record["models"])
    assert record["side_by_side_speedup"] > 0 and "side by side" in capsys.readouterr().out


def test_the_benchmark_applies_what_the_mtkit_command_ships(monkeypatch, tmp_path):
    """`python -m benchmarks` tunes the process with the function `mtkit`'s main() calls, and has no setting of its own."""
    import benchmarks.memory
    import mtkit.cli
    import mtkit.runtime

    calls = []
    monkeypatch.setattr(mtkit.runtime, "tune_process", lambda: calls.append("tuned") or {"malloc_keeps_freed": True})
    assert main([str(tmp_path / "missing.yaml"), "--steps", "0", "--sentences", "0"]) == 2  # stops at the config
    assert calls == ["tuned"]
    monkeypatch.undo()
    assert mtkit.cli.tune_process is mtkit.runtime.tune_process  # the command's own
    assert not hasattr(benchmarks.memory, "keep_freed_memory") and not hasattr(benchmarks.memory, "_M_MMAP_MAX")
