"""mtkit.kernels: every fused kernel equals its plain-torch reference, forward and backward, NaN and inf included,
on one thread and on two; the switch; the C library's build, cache and fallback.

The references are the model files' own plain paths (run under `kernels.using("reference")`), torch's
F.cross_entropy and F.dropout. "C loops" runs a fused kernel with `native.c` (where it builds), "torch ops"
runs the same fused kernel with its inner loops in torch ops (`native.usable` off).
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import mtkit.kernels as kernels
from mtkit.errors import MtkitError
from mtkit.kernels import native
from mtkit.model.attention import make_attention
from mtkit.model.decoder import BahdanauDecoder, Decoder, DecoderSettings, LuongDecoder
from mtkit.model.encoder import Encoder, EncoderOutput
from conftest import on_threads

B, S, T, V, E, H, K, A, O = 5, 7, 9, 30, 8, 12, 10, 6, 11
NAN = float("nan")


@pytest.fixture(params=[1, 2], ids=["1 thread", "2 threads"])
def threads(request: pytest.FixtureRequest) -> int:
    """Run a test on one torch (and native.c) thread, then on two."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.fixture(params=["C loops", "torch ops"])
def inner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a fused kernel with native.c's loops (where they build) and with its loops in torch ops."""
    if request.param == "C loops" and native.load() is None:
        pytest.skip("native.c does not build here (no C compiler, or not Linux): only the torch ops run")
    if request.param == "torch ops":
        monkeypatch.setattr(native, "usable", lambda *tensors: False)
    return request.param


def same_nan(got: Tensor, want: Tensor, name: str = "") -> None:
    """Assert NaN where the reference has NaN and nowhere else, and the same infinities."""
    assert torch.equal(got.isnan(), want.isnan()), f"{name}: NaN in other places"
    assert torch.equal(got.isposinf(), want.isposinf()) and torch.equal(got.isneginf(), want.isneginf()), name


# ---- the switch --------------------------------------------------------------------------------------


def test_fused_is_the_default_and_the_environment_or_use_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MTKIT_KERNELS", raising=False)
    assert kernels.mode() == "fused" and kernels.fused()
    monkeypatch.setenv("MTKIT_KERNELS", "reference")
    assert kernels.mode() == "reference" and not kernels.fused() and not kernels.compiled(torch.ones(1))
    with kernels.using("fused"):
        assert kernels.mode() == "fused"
    assert kernels.mode() == "reference"
    monkeypatch.setenv("MTKIT_KERNELS", "fast")
    with pytest.raises(MtkitError, match="MTKIT_KERNELS='fast': choose one of reference, fused"):
        kernels.mode()
    with pytest.raises(ValueError, match="choose one of reference, fused"):
        kernels.use("fast")


def test_autocast_keeps_the_recurrences_on_the_reference() -> None:
    x = torch.ones(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not kernels.fused(x) and kernels.fused()
    assert kernels.fused(x)


# ---- the C library: flags, cache, fallback -----------------------------------------------------------


def test_built_once_into_the_user_cache_with_one_log_line(tmp_path, monkeypatch, caplog, compiled) -> None:
    monkeypatch.delenv("MTKIT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert native.cache_dir() == tmp_path / "mtkit" / "kernels"
    compiler = native.find_compiler()
    with caplog.at_level(logging.INFO, logger="mtkit.kernels.native"):
        first = native.build(compiler, native.FLAGS)
        again = native.build(compiler, native.FLAGS)
    assert first == again and first.parent == tmp_path / "mtkit" / "kernels"
    assert [r.getMessage() for r in caplog.records] == [f"built mtkit's C kernels ({compiler}) into {first}"]
    other = native.build(compiler, native.FLAGS + ("-DMTK_OTHER",))  # other flags: another build beside it
    assert other != first and sorted(p.name for p in first.parent.iterdir()) == sorted([first.name, other.name])


def test_no_compiler_falls_back_with_one_line_and_training_still_runs(monkeypatch, caplog) -> None:
    monkeypatch.setenv("CC", "/nonexistent/bin/cc")
    native.load.cache_clear()
    try:
        with caplog.at_level(logging.INFO, logger="mtkit.kernels.native"):
            assert native.load() is None and not kernels.compiled(torch.ones(1))
        assert [r.getMessage() for r in caplog.records] == [
            "no C compiler found (CC=/nonexistent/bin/cc): the fused kernels run their loops in torch ops and "
            "dropout is torch's (same numbers, slower)"]
        decoder, enc, tgt_in = decoder_and_inputs(torch.float32)
        logits, _ = decoder(tgt_in, *decoder.init_state(enc))  # the fused recurrence, its loops in torch ops
        logits.sum().backward()
        assert torch.isfinite(logits).all()
    finally:
        monkeypatch.delenv("CC")
        native.load.cache_clear()


def test_fast_math_would_hide_a_nan_that_the_shipped_flags_keep(tmp_path, monkeypatch, compiled) -> None:
    """What -ffast-math changes: it lets the compiler fold x · 0 to 0, so dropout's dropped NaNs became zeros."""
    x = torch.full((64, 100), NAN)

    def dropped(lib: ctypes.CDLL) -> Tensor:
        monkeypatch.setattr(native, "load", lambda: lib)
        out = torch.empty_like(x)
        native.dropout(x, 0.5, 1234, out)
        return out

    shipped = dropped(native.open_library(native.build(native.find_compiler(), native.FLAGS, tmp_path)))
    fast = dropped(native.open_library(native.build(native.find_compiler(), native.FLAGS + ("-ffast-math",),
                                                    tmp_path)))
    assert shipped.isnan().all()  # as torch's F.dropout: NaN · 0 is NaN
    assert (fast == 0).float().mean() > 0.4  # the dropped half: zeros


def test_the_flags_keep_nan_and_infinity_semantics() -> None:
    assert not any("fast-math" in f or "finite-math" in f for f in native.FLAGS)


# ---- the recurrences (encoder GRU layer, RNNsearch's and Luong's decoders) --------------------------


def decoder_and_inputs(dtype: torch.dtype, seed: int = 0,
                       wiring: str = "bahdanau") -> tuple[Decoder, EncoderOutput, Tensor]:
    torch.manual_seed(seed)
    attention = make_attention("additive", H, K, A)
    if wiring == "bahdanau":
        decoder = BahdanauDecoder(V, E, H, K, attention).to(dtype)
    else:  # Luong with input feeding: the reference model's decoder
        decoder = LuongDecoder(V, E, H, K, attention, DecoderSettings(out_dim=O), input_feeding=True).to(dtype)
    lengths = torch.tensor([7, 3, 5, 1, 7])
    mask = torch.arange(S)[None] < lengths[:, None]
    states = torch.randn(B, S, K, dtype=dtype).masked_fill(~mask.unsqueeze(2), 0).requires_grad_()
    final = torch.randn(B, K, dtype=dtype, requires_grad=True)
    tgt_in = torch.randint(1, V, (B, T))
    return decoder, EncoderOutput(states, mask, final, final), tgt_in


def outputs_and_grads(decoder: Decoder, enc: EncoderOutput, tgt_in: Tensor, mode: str,
                      weigh_attention: bool = False) -> tuple[list[Tensor], dict[str, Tensor]]:
    """Return [logits, attention] and the gradients of a random-weighted sum of them, in kernels mode `mode`.

    The reference is `unroll`, the plain loop over `step`, in reference mode.
    """
    decoder.zero_grad()
    for x in (enc.states, enc.final):
        x.grad = None
    with kernels.using(mode):
        state, memory = decoder.init_state(enc)
        if mode == "fused":
            logits, attention = decoder(tgt_in, state, memory)
        else:
            logits, attention = decoder.unroll(tgt_in, state, memory)
        generator = torch.Generator().manual_seed(1)
        loss = (logits * torch.randn(logits.shape, generator=generator, dtype=logits.dtype)).sum()
        if weigh_attention:  # a loss may read the weights too (none of mtkit's does)
            loss = loss + (attention * torch.randn(attention.shape, generator=generator, dtype=logits.dtype)).sum()
        loss.backward()
    grads = {name: p.grad.clone() for name, p in decoder.named_parameters() if p.grad is not None}
    grads["encoder states"] = enc.states.grad.clone()
    grads["encoder final"] = enc.final.grad.clone()
    return [logits.detach(), attention.detach()], grads


def test_the_study_decoders_have_a_fused_recurrence() -> None:
    decoder, _, _ = decoder_and_inputs(torch.float32)
    assert decoder.fused_recurrence
    assert not BahdanauDecoder(V, E, H, K, make_attention("general", H, K, A)).fused_recurrence
    assert not BahdanauDecoder(V, E, H, K, make_attention("additive", H, K, A), DecoderSettings(cell="lstm")).fused_recurrence
    assert not BahdanauDecoder(V, E, H, K, make_attention("additive", H, K, A), DecoderSettings(num_layers=2)).fused_recurrence
    assert LuongDecoder(V, E, H, K, make_attention("additive", H, K, A), input_feeding=True).fused_recurrence
    assert not LuongDecoder(V, E, H, K, make_attention("general", H, K, A), input_feeding=True).fused_recurrence


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("weigh_attention", [False, True])
@pytest.mark.parametrize("wiring", ["bahdanau", "luong"])
def test_decoder_recurrence_equals_the_reference(dtype: torch.dtype, tolerance: float, weigh_attention: bool,
                                                 wiring: str, inner: str, threads: int) -> None:
    decoder, enc, tgt_in = decoder_and_inputs(dtype, wiring=wiring)
    fused_out, fused_grads = outputs_and_grads(decoder, enc, tgt_in, "fused", weigh_attention)
    ref_out, ref_grads = outputs_and_grads(decoder, enc, tgt_in, "reference", weigh_attention)
    for got, want in zip(fused_out, ref_out):
        torch.testing.assert_close(got, want, atol=tolerance, rtol=tolerance)
    assert fused_grads.keys() == ref_grads.keys()
    for name, want in ref_grads.items():
        assert want.abs().max() > 0, name  # every gradient is really exercised
        torch.testing.assert_close(fused_grads[name], want, atol=tolerance, rtol=tolerance, msg=name)


@pytest.mark.parametrize("wiring", ["bahdanau", "luong"])
def test_decoder_recurrence_carries_nan_and_inf_where_the_reference_does(wiring: str, inner: str,
                                                                       threads: int) -> None:
    decoder, enc, tgt_in = decoder_and_inputs(torch.float32, wiring=wiring)
    with torch.no_grad():
        enc.states[0, 2, 3] = NAN  # a real position of sentence 0
        enc.states[2, 1, 0] = float("inf")  # and an infinity in sentence 2
    fused_out, fused_grads = outputs_and_grads(decoder, enc, tgt_in, "fused", weigh_attention=True)
    ref_out, ref_grads = outputs_and_grads(decoder, enc, tgt_in, "reference", weigh_attention=True)
    assert fused_out[0][0].isnan().all() and fused_out[0][1].isfinite().all()  # sentence 0 only
    for got, want in zip(fused_out, ref_out):
        same_nan(got, want)
    for name, want in ref_grads.items():
        same_nan(fused_grads[name], want, name)


@pytest.mark.parametrize("wiring", ["bahdanau", "luong"])
def test_padding_gets_no_weight_and_no_gradient(wiring: str, threads: int) -> None:
    decoder, enc, tgt_in = decoder_and_inputs(torch.float64, wiring=wiring)
    (_, attention), grads = outputs_and_grads(decoder, enc, tgt_in, "fused")
    padding = ~enc.mask
    assert torch.all(attention.masked_select(padding.unsqueeze(1)) == 0)
    torch.testing.assert_close(attention.sum(-1), torch.ones(B, T, dtype=torch.float64))
    assert torch.all(grads["encoder states"][padding] == 0)


def test_without_autograd_the_same_numbers() -> None:
    """Validation's dev loss runs the recurrence without autograd: the same numbers as training's pass."""
    decoder, enc, tgt_in = decoder_and_inputs(torch.float32)
    state, memory = decoder.init_state(enc)
    with torch.no_grad():
        logits, attention = decoder(tgt_in, state, memory)
    with_grad_logits, with_grad_attention = decoder(tgt_in, state, memory)
    torch.testing.assert_close(logits, with_grad_logits.detach(), atol=0, rtol=0)
    torch.testing.assert_close(attention, with_grad_attention.detach(), atol=0, rtol=0)
    assert with_grad_logits.requires_grad and not logits.requires_grad


def encoder_outputs(encoder: Encoder, src: Tensor, src_len: Tensor, mode: str) -> tuple[list[Tensor], dict[str, Tensor]]:
    """Return the encoder's states and final states, and its gradients of a random-weighted sum, in mode `mode`."""
    encoder.zero_grad()
    with kernels.using(mode):
        out = encoder(src, src_len)
        generator = torch.Generator().manual_seed(1)
        loss = sum((x * torch.randn(x.shape, generator=generator, dtype=x.dtype)).sum() for x in (out.states, out.final))
        loss.backward()
    return [out.states.detach(), out.final.detach()], {n: p.grad.clone() for n, p in encoder.named_parameters()}


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("layers, bidirectional", [(1, True), (2, False)])
def test_encoder_gru_layer_equals_the_reference(dtype: torch.dtype, tolerance: float, layers: int,
                                               bidirectional: bool, inner: str, threads: int) -> None:
    """The encoder's fused GRU layer (`GRULayerRecurrence`): states, final states and every gradient."""
    torch.manual_seed(0)
    encoder = Encoder(V, E, H, layers, bidirectional, "gru").to(dtype)
    src, src_len = torch.randint(1, V, (B, S)), torch.tensor([7, 3, 5, 1, 7])
    got, got_grads = encoder_outputs(encoder, src, src_len, "fused")
    want, want_grads = encoder_outputs(encoder, src, src_len, "reference")
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=tolerance, rtol=tolerance)
    for name, w in want_grads.items():
        assert w.abs().max() > 0, name
        torch.testing.assert_close(got_grads[name], w, atol=tolerance, rtol=tolerance, msg=name)


def test_encoder_gru_layer_carries_nan_where_the_reference_does(inner: str, threads: int) -> None:
    torch.manual_seed(0)
    encoder = Encoder(V, E, H, 1, True, "gru")
    src, src_len = torch.randint(2, V, (B, S)), torch.tensor([7, 3, 5, 1, 7])
    src[0, 1] = 1  # a word no other sentence has
    src[1:][src[1:] == 1] = 2
    with torch.no_grad():
        encoder.embed.weight[1, 0] = NAN
    got, got_grads = encoder_outputs(encoder, src, src_len, "fused")
    want, want_grads = encoder_outputs(encoder, src, src_len, "reference")
    assert got[0][0].isnan().any() and got[0][1:].isfinite().all()
    for g, w in zip(got, want):
        same_nan(g, w)
    for name, w in want_grads.items():
        same_nan(got_grads[name], w, name)


# ---- additive attention: the score, and a search step ----------------------------------------------


def score_inputs(poison: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    torch.manual_seed(0)
    q, keys, v = torch.randn(B, T, A), torch.randn(B, S, A), torch.randn(A)
    if poison:
        q[1, 2, 0], keys[3, 4, 1] = NAN, float("inf")
    return q.requires_grad_(), keys.requires_grad_(), v.requires_grad_()


def reference_score(q: Tensor, keys: Tensor, v: Tensor) -> Tensor:
    """`AdditiveAttention.score`'s plain path: v_aᵀ tanh(q_t + k_s)."""
    return torch.tanh(q.unsqueeze(2) + keys.unsqueeze(1)) @ v  # (B, T, S)


@pytest.mark.parametrize("poison", [False, True], ids=["finite", "NaN and inf"])
def test_additive_score_equals_the_reference(poison: bool, threads: int) -> None:
    q, keys, v = score_inputs(poison)
    grad = torch.randn(B, T, S)
    got, want = kernels.additive_score(q, keys, v), reference_score(q, keys, v)
    got_grads = torch.autograd.grad(got, [q, keys, v], grad)
    want_grads = torch.autograd.grad(want, [q, keys, v], grad)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6, equal_nan=True)
    same_nan(got, want)
    for name, g, w in zip(["q", "keys", "v"], got_grads, want_grads):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5, equal_nan=True, msg=name)
        same_nan(g, w, name)
    with torch.no_grad():  # search's faster tanh
        torch.testing.assert_close(kernels.additive_score(q, keys, v), want, atol=2e-6, rtol=1e-5, equal_nan=True)


@pytest.mark.parametrize("beams", [1, 3])
@pytest.mark.parametrize("poison", [False, True], ids=["finite", "NaN"])
def test_search_step_attention_equals_the_reference(beams: int, poison: bool, compiled, threads: int) -> None:
    """A search step's attention (g beams per sentence, no autograd) from native.c equals `Attention.forward`'s."""
    torch.manual_seed(0)
    attention = make_attention("additive", H, K, A)
    _, enc, _ = decoder_and_inputs(torch.float32)
    states, mask = enc.states.detach().clone(), enc.mask
    if poison:
        states[2, 1, 0] = NAN
    query = torch.randn(B * beams, H)
    with torch.inference_mode():
        projected = attention.precompute(states)
        context, weights = attention(query, states, mask, projected)
        with kernels.using("reference"):
            want_context, want_weights = attention(query, states, mask, projected)
    torch.testing.assert_close(context, want_context, atol=1e-6, rtol=1e-5, equal_nan=True)
    torch.testing.assert_close(weights, want_weights, atol=1e-6, rtol=1e-5, equal_nan=True)
    same_nan(context, want_context)
    same_nan(weights, want_weights)
    if not poison:
        assert torch.all(weights.view(B, beams, S).masked_select(~mask.unsqueeze(1)) == 0)


# ---- the loss ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_fused_loss_equals_torchs_in_value_and_gradients(smoothing: float, inner: str, threads: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(50, 8, requires_grad=True)
    weight, bias = torch.randn(13, 8, requires_grad=True), torch.randn(13, requires_grad=True)
    target = torch.randint(0, 13, (50,))
    ref = F.cross_entropy(F.linear(x, weight, bias), target, reduction="sum", label_smoothing=smoothing)
    ours = kernels.linear_cross_entropy(x, weight, bias, target, smoothing, chunk=16)  # 4 chunks, the last short
    assert torch.allclose(ours, ref, rtol=1e-5)
    for a, b in zip(torch.autograd.grad(0.5 * ref, [x, weight, bias]),
                    torch.autograd.grad(0.5 * ours, [x, weight, bias])):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_fused_loss_holds_far_apart_logits_and_a_large_vocabulary(smoothing: float, inner: str, threads: int) -> None:
    """Targets 150 below the row's best logit (their exp is 0 in float32) give a finite loss and torch's numbers."""
    torch.manual_seed(2)
    x = torch.randn(300, 16, requires_grad=True)
    weight, bias = torch.randn(4003, 16), torch.randn(4003)
    bias[7] = 150.0  # every row's best logit, far above every target's
    weight.requires_grad_(), bias.requires_grad_()
    target = torch.randint(8, 4003, (300,))
    ref = F.cross_entropy(F.linear(x, weight, bias), target, reduction="sum", label_smoothing=smoothing)
    ours = kernels.linear_cross_entropy(x, weight, bias, target, smoothing, chunk=128)
    assert torch.isfinite(ours) and torch.allclose(ours, ref, rtol=1e-5)
    for a, b in zip(torch.autograd.grad(ref, [x, weight, bias]), torch.autograd.grad(ours, [x, weight, bias])):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("bad", [NAN, float("inf")], ids=["NaN", "inf"])
def test_fused_loss_carries_nan_and_inf_as_torchs_does(bad: float, inner: str, threads: int) -> None:
    torch.manual_seed(3)
    x = torch.randn(40, 8)
    x[5, 2] = bad
    x.requires_grad_()
    weight, bias = torch.randn(13, 8, requires_grad=True), torch.randn(13, requires_grad=True)
    target = torch.randint(0, 13, (40,))
    ref = F.cross_entropy(F.linear(x, weight, bias), target, reduction="sum", label_smoothing=0.1)
    ours = kernels.linear_cross_entropy(x, weight, bias, target, 0.1, chunk=16)
    assert math.isnan(ours.item()) and math.isnan(ref.item())  # inf − inf in the log-sum-exp: NaN in both
    for name, a, b in zip(["x", "weight", "bias"], torch.autograd.grad(ours, [x, weight, bias]),
                          torch.autograd.grad(ref, [x, weight, bias])):
        assert not a.isfinite().all() and not b.isfinite().all(), name


def test_fused_loss_without_grad_only_scores(inner: str) -> None:
    x, weight, bias = torch.randn(7, 4), torch.randn(9, 4), torch.randn(9)
    target = torch.randint(0, 9, (7,))
    with torch.inference_mode():
        value = kernels.linear_cross_entropy(x, weight, bias, target)
    assert value.item() == pytest.approx(F.cross_entropy(F.linear(x, weight, bias), target, reduction="sum").item(),
                                         rel=1e-5)


# ---- dropout -------------------------------------------------------------------------------------------


def kept(p: float, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return kernels.Dropout(p)(torch.ones(shape)) != 0


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_each_element_is_kept_with_probability_1_minus_p_and_scaled(compiled: None, p: float) -> None:
    torch.manual_seed(0)
    x = torch.randn(500, 2000)
    y = kernels.Dropout(p)(x)
    keep = y != 0
    n = keep.numel()
    assert abs(keep.float().mean().item() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)
    torch.testing.assert_close(y[keep], x[keep] / (1 - p))


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.flatten().float(), b.flatten().float()]))[0, 1].item()


def test_masks_show_no_correlation_between_neighbours_rows_or_calls(compiled: None) -> None:
    mask = kept(0.5, (1000, 1000))
    bound = 5 / math.sqrt(mask.numel())  # five standard errors of a correlation of independent coins
    assert abs(correlation(mask[:, :-1], mask[:, 1:])) < bound  # along a row
    assert abs(correlation(mask[:-1], mask[1:])) < bound  # between rows
    torch.manual_seed(0)
    dropout = kernels.Dropout(0.5)
    first, second = dropout(torch.ones(1000, 1000)) != 0, dropout(torch.ones(1000, 1000)) != 0
    assert abs(correlation(first, second)) < bound  # consecutive calls draw new seeds


def test_torch_seed_decides_the_mask(compiled: None) -> None:
    assert torch.equal(kept(0.3, (64, 100), seed=1), kept(0.3, (64, 100), seed=1))
    assert not torch.equal(kept(0.3, (64, 100), seed=1), kept(0.3, (64, 100), seed=2))


def test_mask_follows_logical_order_not_memory_layout(compiled: None) -> None:
    base = torch.randn(30, 20, 16)
    for x in (base.transpose(0, 1), base.transpose(1, 2), base[:, ::2], base.view(5, 6, 20, 16)):
        torch.manual_seed(4)
        got = kernels.Dropout(0.4)(x)
        torch.manual_seed(4)
        want = kernels.Dropout(0.4)(x.contiguous())
        assert got.shape == x.shape
        assert torch.equal(got, want)


def test_gradient_is_the_forward_mask_scaled(compiled: None) -> None:
    x = torch.randn(20, 30, 16).transpose(0, 1).requires_grad_()  # time-major, as the decoder's features are
    torch.manual_seed(5)
    y = kernels.Dropout(0.25)(x)
    grad = torch.randn(30, 16, 20).permute(0, 2, 1)  # a gradient in yet another layout
    y.backward(grad)
    keep = y != 0
    assert torch.equal(x.grad != 0, keep)  # the same mask (no gradient element here is exactly 0)
    torch.testing.assert_close(x.grad, grad * keep / 0.75)
    assert 0.65 < keep.float().mean() < 0.85


def test_same_bits_on_any_thread_count(compiled: None) -> None:
    x = torch.randn(64, 50, 128)

    def drop() -> list[torch.Tensor]:
        torch.manual_seed(6)
        return [kernels.Dropout(0.2)(x)]

    want = on_threads(1, drop)[0]
    assert all(torch.equal(on_threads(threads, drop)[0], want) for threads in (2, 3))


def test_eval_mode_zero_and_one() -> None:
    x = torch.randn(8, 10)
    dropout = kernels.Dropout(0.3).eval()
    assert dropout(x) is x
    assert kernels.Dropout(0.0)(x) is x
    assert torch.equal(kernels.Dropout(1.0)(x), torch.zeros_like(x))
    with pytest.raises(ValueError, match="between 0 and 1"):
        kernels.Dropout(1.5)


def test_reference_is_torchs_dropout() -> None:
    with kernels.using("reference"):
        torch.manual_seed(7)
        got = kernels.Dropout(0.3)(torch.ones(50, 40))
    torch.manual_seed(7)
    want = F.dropout(torch.ones(50, 40), 0.3, True)
    assert torch.equal(got, want)


@pytest.mark.parametrize("mode", ["fused", "reference"])
def test_dropout_carries_nan_and_inf_in_kept_and_dropped_places_as_torchs_does(mode: str, threads: int) -> None:
    """x · mask, as torch's: a NaN stays NaN, a kept inf stays inf and a dropped one is inf · 0 = NaN."""
    x = torch.randn(64, 50)
    x[::3, ::7] = NAN
    x[1::5, ::4] = float("inf")
    with kernels.using(mode):
        y = kernels.Dropout(0.5)(x)
    assert torch.equal(y.isfinite(), x.isfinite()) and (y == 0).any()
    assert y[x.isnan()].isnan().all()
    assert (y[x.isinf()].isnan() | y[x.isinf()].isposinf()).all() and y[x.isinf()].isnan().any()


# ---- native.c's loops: the same bits on any thread count -------------------------------------------------


# sizes large enough that the calls are split: NB·NS·(NA + NK) and 32·NH·16 are above MTK_SPLIT_MIN
NB, NS, NA, NK, NH = 16, 40, 32, 24, 64


def assert_same_bits_on(fn: Callable[[], list[Tensor]]) -> None:
    one = on_threads(1, fn)
    for threads in (2, 3):
        for i, (got, want) in enumerate(zip(on_threads(threads, fn), one)):
            assert torch.equal(got, want), f"output {i} differs on {threads} threads"


def attention_inputs(beams: int = 1) -> tuple[Tensor, ...]:
    torch.manual_seed(0)
    lengths = torch.randint(1, NS + 1, (NB,))
    mask = (torch.arange(NS)[None] < lengths[:, None]).contiguous()
    return (torch.randn(NB * beams, NA), torch.randn(NB, NS, NA), torch.randn(NA), mask, torch.randn(NB, NS, NK))


@pytest.mark.parametrize("beams", [1, 4])
def test_additive_forward_does_not_depend_on_threads(beams: int, compiled) -> None:
    q, keys, v, mask, states = attention_inputs(beams)

    def run() -> list[Tensor]:
        alpha, context = torch.full((NB * beams, NS), float("nan")), torch.full((NB * beams, NK), float("nan"))
        native.additive_forward(q, keys, v, mask, states, alpha, context)
        return [alpha, context]

    assert_same_bits_on(run)
    alpha, _ = run()
    torch.testing.assert_close(alpha.sum(1), torch.ones(NB * beams))
    assert torch.all(alpha.view(NB, beams, NS).masked_select(~mask.unsqueeze(1)) == 0)


def test_additive_backward_does_not_depend_on_threads(compiled) -> None:
    q, keys, v, mask, states = attention_inputs()
    alpha, context = torch.empty(NB, NS), torch.empty(NB, NK)
    native.additive_forward(q, keys, v, mask, states, alpha, context)
    d_context, d_alpha = torch.randn(NB, NK), torch.randn(NB, NS)

    def run() -> list[Tensor]:
        d_q, d_v, de_sum, de_tanh2 = torch.empty(NB, NA), torch.zeros(NB, NA), torch.zeros(NB, NS), torch.zeros(NB, NS, NA)
        for _ in range(3):  # three steps add into the same sums, as a recurrence's backward does
            native.additive_backward(q, keys, v, mask, states, alpha, d_context, d_alpha, d_q, d_v, de_sum, de_tanh2)
        return [d_q, d_v, de_sum, de_tanh2]

    assert_same_bits_on(run)
    assert run()[1].abs().sum() > 0


def test_gru_cell_does_not_depend_on_threads(compiled) -> None:
    torch.manual_seed(0)
    rows = 32
    gi, gh, s_prev, d_s = torch.randn(rows, 3 * NH), torch.randn(rows, 3 * NH), torch.randn(rows, NH), torch.randn(rows, NH)

    def run() -> list[Tensor]:
        rz, n, ghn, s = torch.empty(rows, 2 * NH), torch.empty(rows, NH), torch.empty(rows, NH), torch.empty(rows, NH)
        native.gru_forward(gi, gh, s_prev, rz, n, ghn, s)
        d_gi, d_gh, d_prev = torch.empty(rows, 3 * NH), torch.empty(rows, 3 * NH), torch.empty(rows, NH)
        native.gru_backward(d_s, s_prev, rz, n, ghn, d_gi, d_gh, d_prev)
        return [rz, n, ghn, s, d_gi, d_gh, d_prev]

    assert_same_bits_on(run)


@pytest.mark.parametrize("grad", [True, False])
def test_cross_entropy_rows_do_not_depend_on_threads(grad: bool, compiled) -> None:
    torch.manual_seed(0)
    rows, vocab = 20, 3000  # not a multiple of the 256-column blocks grad_b is summed in
    logits, bias, target = torch.randn(rows, vocab) * 3, torch.randn(vocab), torch.randint(0, vocab, (rows,))

    def run() -> list[Tensor]:
        out, nll = logits.clone(), torch.empty(rows)
        grad_b = torch.full((vocab,), 0.5) if grad else None  # it adds to what is there
        native.cross_entropy_rows(out, bias, target, 0.1, nll, grad_b)
        return [out, nll] + ([grad_b] if grad else [])

    assert_same_bits_on(run)
    out, nll, *rest = run()
    want = torch.nn.functional.cross_entropy(logits + bias, target, reduction="none", label_smoothing=0.1)
    torch.testing.assert_close(nll, want, atol=1e-5, rtol=1e-5)
    if grad:
        torch.testing.assert_close(rest[0], 0.5 + out.sum(0), atol=1e-5, rtol=1e-5)
