"""The written-out recurrence (`mtkit.model.recurrence`) against autograd through `step`: same numbers."""

from __future__ import annotations

import pytest
import torch

import mtkit.model.native as native
from mtkit.model.attention import make_attention
from mtkit.model.decoder import BahdanauDecoder, Decoder, LuongDecoder
from mtkit.model.encoder import Encoder, EncoderOutput

B, S, T, V, E, H, K, A, O = 5, 7, 9, 30, 8, 12, 10, 6, 11


def decoder_and_inputs(dtype: torch.dtype, seed: int = 0,
                       wiring: str = "bahdanau") -> tuple[Decoder, EncoderOutput, torch.Tensor]:
    torch.manual_seed(seed)
    attention = make_attention("additive", H, K, A)
    if wiring == "bahdanau":
        decoder = BahdanauDecoder(V, E, H, K, attention).to(dtype)
    else:  # Luong with input feeding: the reference model's decoder
        decoder = LuongDecoder(V, E, H, K, attention, input_feeding=True, out_dim=O).to(dtype)
    lengths = torch.tensor([7, 3, 5, 1, 7])
    mask = torch.arange(S)[None] < lengths[:, None]
    states = torch.randn(B, S, K, dtype=dtype).masked_fill(~mask.unsqueeze(2), 0).requires_grad_()
    final = torch.randn(B, K, dtype=dtype, requires_grad=True)
    tgt_in = torch.randint(1, V, (B, T))
    return decoder, EncoderOutput(states, mask, final, final), tgt_in


def outputs_and_grads(decoder: Decoder, enc: EncoderOutput, tgt_in: torch.Tensor, fused: bool,
                      weigh_attention: bool = False) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """Return [logits, attention] and the gradients of a random-weighted sum of them, fused or through `step`."""
    decoder.zero_grad()
    for x in (enc.states, enc.final):
        x.grad = None
    state, memory = decoder.init_state(enc)
    if fused:
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


def test_the_study_decoder_takes_the_written_out_recurrence() -> None:
    decoder, _, _ = decoder_and_inputs(torch.float32)
    assert decoder.fused_recurrence
    assert not BahdanauDecoder(V, E, H, K, make_attention("general", H, K, A)).fused_recurrence
    assert not BahdanauDecoder(V, E, H, K, make_attention("additive", H, K, A), cell="lstm").fused_recurrence
    assert not BahdanauDecoder(V, E, H, K, make_attention("additive", H, K, A), num_layers=2).fused_recurrence
    assert LuongDecoder(V, E, H, K, make_attention("additive", H, K, A), input_feeding=True).fused_recurrence
    assert not LuongDecoder(V, E, H, K, make_attention("general", H, K, A), input_feeding=True).fused_recurrence


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("weigh_attention", [False, True])
@pytest.mark.parametrize("wiring", ["bahdanau", "luong"])
def test_outputs_and_every_gradient_match_autograd(dtype: torch.dtype, tolerance: float,
                                                   weigh_attention: bool, wiring: str) -> None:
    decoder, enc, tgt_in = decoder_and_inputs(dtype, wiring=wiring)
    assert decoder.fused_recurrence
    fused_out, fused_grads = outputs_and_grads(decoder, enc, tgt_in, True, weigh_attention)
    ref_out, ref_grads = outputs_and_grads(decoder, enc, tgt_in, False, weigh_attention)
    for got, want in zip(fused_out, ref_out):
        torch.testing.assert_close(got, want, atol=tolerance, rtol=tolerance)
    assert fused_grads.keys() == ref_grads.keys()
    for name, want in ref_grads.items():
        assert want.abs().max() > 0, name  # every gradient is really exercised
        torch.testing.assert_close(fused_grads[name], want, atol=tolerance, rtol=tolerance, msg=name)


@pytest.mark.parametrize("wiring", ["bahdanau", "luong"])
def test_padding_gets_no_weight_and_no_gradient(wiring: str) -> None:
    decoder, enc, tgt_in = decoder_and_inputs(torch.float64, wiring=wiring)
    (_, attention), grads = outputs_and_grads(decoder, enc, tgt_in, True)
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


@pytest.mark.parametrize("wiring", ["bahdanau", "luong"])
def test_native_loops_and_torch_ops_agree(wiring: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """native.c's loops (where they build) and the same equations in torch ops: outputs and gradients to 1e-5."""
    if native.load() is None:
        pytest.skip("native.c does not build here (no C compiler, or not Linux): only the torch path runs")
    decoder, enc, tgt_in = decoder_and_inputs(torch.float32, wiring=wiring)
    compiled_out, compiled_grads = outputs_and_grads(decoder, enc, tgt_in, True, weigh_attention=True)
    monkeypatch.setattr(native, "usable", lambda *tensors: False)
    torch_out, torch_grads = outputs_and_grads(decoder, enc, tgt_in, True, weigh_attention=True)
    for got, want in zip(compiled_out, torch_out):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for name, want in torch_grads.items():
        torch.testing.assert_close(compiled_grads[name], want, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("beams", [1, 3])
def test_native_search_attention_matches_torch(beams: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A search step's attention (g beams per sentence, no autograd) from native.c equals `Attention.forward`'s."""
    if native.load() is None:
        pytest.skip("native.c does not build here (no C compiler, or not Linux)")
    torch.manual_seed(0)
    attention = make_attention("additive", H, K, A)
    _, enc, _ = decoder_and_inputs(torch.float32)
    states, mask = enc.states.detach(), enc.mask
    query = torch.randn(B * beams, H)
    with torch.inference_mode():
        projected = attention.precompute(states)
        context, weights = attention(query, states, mask, projected)
        monkeypatch.setattr(native, "usable", lambda *tensors: False)
        want_context, want_weights = attention(query, states, mask, projected)
    torch.testing.assert_close(context, want_context, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weights, want_weights, atol=1e-6, rtol=1e-5)
    assert torch.all(weights.view(B, beams, S).masked_select(~mask.unsqueeze(1)) == 0)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("layers, bidirectional", [(1, True), (2, False)])
def test_encoder_gru_layer_matches_autograd(dtype: torch.dtype, tolerance: float, layers: int,
                                            bidirectional: bool) -> None:
    """The encoder's written-out GRU layer (`GRULayerRecurrence`): states, final states and every gradient."""
    torch.manual_seed(0)
    encoder = Encoder(V, E, H, layers, bidirectional, "gru").to(dtype)
    src = torch.randint(1, V, (B, S))
    src_len = torch.tensor([7, 3, 5, 1, 7])

    def run(written_out: bool) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        encoder.written_out = written_out
        encoder.zero_grad()
        out = encoder(src, src_len)
        generator = torch.Generator().manual_seed(1)
        loss = sum((x * torch.randn(x.shape, generator=generator, dtype=dtype)).sum() for x in (out.states, out.final))
        loss.backward()
        return [out.states.detach(), out.final.detach()], {n: p.grad.clone() for n, p in encoder.named_parameters()}

    got, got_grads = run(True)
    want, want_grads = run(False)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=tolerance, rtol=tolerance)
    for name, w in want_grads.items():
        assert w.abs().max() > 0, name
        torch.testing.assert_close(got_grads[name], w, atol=tolerance, rtol=tolerance, msg=name)
