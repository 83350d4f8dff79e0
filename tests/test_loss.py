"""loss: `target_loss` is the model's cross-entropy over real target tokens, fused or not.

The fused loss against torch's, kernel by kernel (values, gradients, NaN, threads), is in test_kernels.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mtkit.kernels as kernels
from mtkit.config import AttentionConfig, ModelConfig
from mtkit.data.tokenizer import PAD
from mtkit.loss import target_loss
from mtkit.model import build_model


@pytest.fixture(params=["fused", "reference"])
def loss_path(request: pytest.FixtureRequest) -> str:
    """Run a test with the kernels fused (the chunked loss) and as the reference (torch's cross-entropy)."""
    with kernels.using(request.param):
        yield request.param


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
