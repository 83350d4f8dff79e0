"""loss: the fused vocabulary projection and cross-entropy give torch's numbers and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mtkit.model.native as native
from mtkit.config import AttentionConfig, ModelConfig
from mtkit.data.tokenizer import PAD
from mtkit.loss import linear_cross_entropy, target_loss
from mtkit.model import build_model


@pytest.fixture(params=["native", "torch ops"])
def loss_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test through native.c's cross-entropy rows (where they build) and through torch ops."""
    if request.param == "native" and native.load() is None:
        pytest.skip("native.c does not build here (no C compiler, or not Linux): only the torch path runs")
    if request.param == "torch ops":
        monkeypatch.setattr(native, "usable", lambda *tensors: False)
    return request.param


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_fused_loss_matches_torch_in_value_and_gradients(smoothing, loss_path):
    torch.manual_seed(0)
    x = torch.randn(50, 8, requires_grad=True)
    weight, bias = torch.randn(13, 8, requires_grad=True), torch.randn(13, requires_grad=True)
    target = torch.randint(0, 13, (50,))
    ref = F.cross_entropy(F.linear(x, weight, bias), target, reduction="sum", label_smoothing=smoothing)
    ours = linear_cross_entropy(x, weight, bias, target, smoothing, chunk=16)  # 4 chunks, the last short
    assert torch.allclose(ours, ref, rtol=1e-5)
    for a, b in zip(torch.autograd.grad(0.5 * ref, [x, weight, bias]),
                    torch.autograd.grad(0.5 * ours, [x, weight, bias])):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_fused_loss_holds_far_apart_logits_and_a_large_vocabulary(smoothing, loss_path):
    """Targets 150 below the row's best logit (their exp is 0 in float32) give a finite loss and torch's numbers."""
    torch.manual_seed(2)
    x = torch.randn(300, 16, requires_grad=True)
    weight, bias = torch.randn(4003, 16), torch.randn(4003)
    bias[7] = 150.0  # every row's best logit, far above every target's
    weight.requires_grad_(), bias.requires_grad_()
    target = torch.randint(8, 4003, (300,))
    ref = F.cross_entropy(F.linear(x, weight, bias), target, reduction="sum", label_smoothing=smoothing)
    ours = linear_cross_entropy(x, weight, bias, target, smoothing, chunk=128)
    assert torch.isfinite(ours) and torch.allclose(ours, ref, rtol=1e-5)
    for a, b in zip(torch.autograd.grad(ref, [x, weight, bias]), torch.autograd.grad(ours, [x, weight, bias])):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-5)


def test_fused_loss_without_grad_only_scores(loss_path):
    x, weight, bias = torch.randn(7, 4), torch.randn(9, 4), torch.randn(9)
    target = torch.randint(0, 9, (7,))
    with torch.inference_mode():
        value = linear_cross_entropy(x, weight, bias, target)
    assert value.item() == pytest.approx(F.cross_entropy(F.linear(x, weight, bias), target, reduction="sum").item(),
                                         rel=1e-5)


@pytest.mark.parametrize("tie", [False, True])
def test_target_loss_is_the_models_cross_entropy_ignoring_padding(tie, loss_path):
    torch.manual_seed(1)
    cfg = ModelConfig(emb_dim=6, hidden_dim=5, dec_hidden_dim=7, out_dim=6, tie_embeddings=tie,
                      attention=AttentionConfig(kind="additive", dim=4))
    model = build_model(cfg, 11, 12)
    src = torch.randint(4, 11, (3, 5))
    src_len = torch.tensor([5, 3, 2])
    tgt_in = torch.randint(4, 12, (3, 6))
    tgt_out = torch.randint(4, 12, (3, 6))
    tgt_out[1, 4:] = PAD
    tgt_out[2, 2:] = PAD
    state, memory = model.encode(src, src_len)
    features, _ = model.decoder.features(tgt_in, state, memory)
    logits = model.decoder.logits(features)
    ref = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD, reduction="sum")
    ours = target_loss(model.decoder, features, tgt_out)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    params = [p for p in model.parameters()]
    for a, b in zip(torch.autograd.grad(ref, params, retain_graph=True, allow_unused=True),
                    torch.autograd.grad(ours, params, allow_unused=True)):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-5)
