"""The Transformer: one step for training and search, causality, padding, weights, caches, config checks."""

from __future__ import annotations

import math

import pytest
import torch

from mtkit.config import ModelConfig, TransformerConfig, load_config
from mtkit.data.batching import pad_sequences
from mtkit.data.tokenizer import EOS
from mtkit.errors import MtkitError
from mtkit.model import build_model, describe
from mtkit.model.transformer import MultiHeadAttention, TransformerDecoder, sinusoids
from mtkit.search import beam_search, greedy, max_lengths

VOCAB = 23


def tiny(positions: str = "sinusoidal", **changes) -> torch.nn.Module:
    """Return a small random Transformer in eval mode (2+2 layers, d 16, 4 heads)."""
    torch.manual_seed(0)
    shape = TransformerConfig(d_model=16, heads=4, ff_dim=24, enc_layers=2, dec_layers=2, positions=positions,
                              max_positions=64)
    cfg = ModelConfig(arch="transformer", dropout=0.0, transformer=shape, **changes)
    return build_model(cfg, VOCAB, VOCAB).eval()


def batch(seed: int = 1):
    """Return src (3, 6) with two padded rows, src_len, and tgt_in (3, 5) starting with BOS."""
    g = torch.Generator().manual_seed(seed)
    src, src_len = pad_sequences([torch.randint(4, VOCAB, (n,), generator=g).tolist() for n in (6, 4, 1)])
    tgt = torch.randint(4, VOCAB, (3, 5), generator=g)
    tgt[:, 0] = 2  # BOS
    return src, src_len, tgt


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_step_by_step_gives_the_teacher_forced_numbers(positions):
    model = tiny(positions)
    src, src_len, tgt = batch()
    state, memory = model.encode(src, src_len)
    whole, whole_attn = model.decoder(tgt, state, memory)
    steps, steps_attn = model.decoder.unroll(tgt, state, memory)
    assert whole.shape == (3, 5, VOCAB) and whole_attn.shape == (3, 5, 6)
    assert torch.allclose(whole, steps, atol=1e-5)
    assert torch.allclose(whole_attn, steps_attn, atol=1e-5)


def test_no_position_reads_a_later_one():
    model = tiny()
    src, src_len, tgt = batch()
    state, memory = model.encode(src, src_len)
    before, _ = model.decoder(tgt, state, memory)
    changed = tgt.clone()
    changed[:, 3:] = torch.randint(4, VOCAB, (3, 2))
    after, _ = model.decoder(changed, state, memory)
    assert torch.allclose(before[:, :3], after[:, :3], atol=1e-6)
    assert not torch.allclose(before[:, 3:], after[:, 3:], atol=1e-3)  # the change is seen where it may be


def test_padding_changes_nothing():
    model = tiny()
    src, src_len, tgt = batch()
    state, memory = model.encode(src, src_len)
    padded, padded_attn = model.decoder(tgt, state, memory)
    alone_state, alone_memory = model.encode(src[2:, :1], src_len[2:])  # the one-token sentence, no padding
    alone, alone_attn = model.decoder(tgt[2:], alone_state, alone_memory)
    assert torch.allclose(padded[2:], alone, atol=1e-5)
    assert torch.allclose(padded_attn[2:, :, :1], alone_attn, atol=1e-6)
    # whatever the padding holds, and however much of it: the same numbers
    noisy = src.clone()
    noisy[src == 0] = 7
    wide = torch.cat([noisy, torch.full((3, 3), 9)], 1)
    state, memory = model.encode(wide, src_len)
    assert torch.allclose(model.decoder(tgt, state, memory)[0], padded, atol=1e-5)
    # target padding after the real tokens changes no real position (the loss ignores the padded ones)
    longer = torch.cat([tgt, torch.zeros(3, 4, dtype=torch.long)], 1)
    state, memory = model.encode(src, src_len)
    assert torch.allclose(model.decoder(longer, state, memory)[0][:, :5], padded, atol=1e-5)


@pytest.mark.parametrize("layer,head", [(None, None), (0, None), (1, 3), (None, 2)])
def test_weights_sum_to_one_and_padding_gets_none(layer, head):
    model = tiny()
    label = model.decoder.show(layer, head)
    assert ("mean of 2 layers" if layer is None else f"layer {layer + 1} of 2") in label
    assert ("mean of 4 heads" if head is None else f"head {head + 1} of 4") in label
    src, src_len, tgt = batch()
    state, memory = model.encode(src, src_len)
    _, weights = model.decoder(tgt, state, memory)
    assert torch.allclose(weights.sum(-1), torch.ones(3, 5), atol=1e-6)
    assert (weights[1, :, 4:] == 0).all() and (weights[2, :, 1:] == 0).all()


def test_shown_attention_is_that_layer_and_head():
    model = tiny()
    src, src_len, tgt = batch()
    state, memory = model.encode(src, src_len)
    model.decoder.show(1, 2)
    _, shown = model.decoder(tgt, state, memory)
    # recompute layer 2's cross-attention, head 3, by hand from its inputs
    dec = model.decoder
    x = dec.embed(tgt)
    x, _, _ = dec.layers[0](x, None, memory.projected[:, 0], memory.mask)
    layer = dec.layers[1]
    h = layer.self_norm(x)
    x = x + layer.self_attn(h, layer.self_attn.project(h), causal=True)[0]
    _, weights = layer.cross_attn(layer.cross_norm(x), memory.projected[:, 1], memory.mask, need_weights=True)
    assert torch.allclose(shown, weights[:, 2], atol=1e-6)
    with pytest.raises(ValueError, match="--layer 3: this model has 2 layers"):
        dec.show(2, None)
    with pytest.raises(ValueError, match="--head 5: this model has 4 heads"):
        dec.show(None, 4)


def test_fused_and_explicit_attention_agree():
    torch.manual_seed(0)
    attention = MultiHeadAttention(16, 4).eval()
    x, keys = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    mask = torch.tensor([[True] * 7, [True] * 3 + [False] * 4])
    kv = attention.project(keys)
    fused, none = attention(x, kv, mask)
    explicit, weights = attention(x, kv, mask, need_weights=True)
    assert none is None and torch.allclose(fused, explicit, atol=1e-5)
    self_kv = attention.project(x)
    fused, _ = attention(x, self_kv, causal=True)
    explicit, weights = attention(x, self_kv, causal=True, need_weights=True)
    assert torch.allclose(fused, explicit, atol=1e-5) and (weights[..., 0, 1:] == 0).all()


def test_sinusoids_follow_the_paper():
    pe = sinusoids(50, 8)
    assert torch.allclose(pe[7, 2], torch.tensor(math.sin(7 / 10000 ** (2 / 8))))
    assert torch.allclose(pe[7, 3], torch.tensor(math.cos(7 / 10000 ** (2 / 8))))
    assert torch.allclose(sinusoids(3, 8, offset=7)[0], pe[7])


@torch.no_grad()
def _sequence_log_prob(model, src, src_len, tokens: list[int]) -> float:
    """Return the teacher-forced log probability of tokens + eos for one sentence."""
    tgt_in = torch.tensor([[2, *tokens]])
    state, memory = model.encode(src, src_len)
    logits, _ = model.decoder(tgt_in, state, memory)
    log_probs = logits.log_softmax(-1)[0]
    return float(sum(log_probs[t, y] for t, y in enumerate([*tokens, EOS])))


def test_beam_search_reorders_the_caches():
    model = tiny()
    src, src_len, _ = batch()
    limits = max_lengths(src_len, 1.0, 3)
    nbest = beam_search(model, src, src_len, limits, beam=4, length_penalty=0.0, n_best=4)
    checked = 0
    for i, hyps in enumerate(nbest):
        for hyp in hyps:
            if len(hyp.tokens) < int(limits[i]):  # ended with eos: its score includes eos's probability
                one = (src[i : i + 1, : int(src_len[i])], src_len[i : i + 1])
                assert hyp.log_prob == pytest.approx(_sequence_log_prob(model, *one, hyp.tokens), abs=1e-4)
                checked += 1
    assert checked >= 3
    assert [h.tokens for h in greedy(model, src, src_len, limits)] == \
        [b[0].tokens for b in beam_search(model, src, src_len, limits, beam=1, length_penalty=0.0)]


def test_a_sentence_decodes_the_same_alone_and_in_a_batch():
    model = tiny()
    src, src_len, _ = batch()
    limits = max_lengths(src_len, 2.0, 4)
    together = beam_search(model, src, src_len, limits, beam=3, length_penalty=1.0)
    for i in range(3):
        alone = beam_search(model, src[i : i + 1, : int(src_len[i])], src_len[i : i + 1], limits[i : i + 1], 3, 1.0)
        assert alone[0][0].tokens == together[i][0].tokens
        assert torch.allclose(alone[0][0].attention, together[i][0].attention, atol=1e-5)


def test_embeddings_can_be_tied_and_shared():
    model = tiny(tie_embeddings=True)
    assert model.decoder.out.weight is model.decoder.embed.tokens.weight
    shape = TransformerConfig(d_model=16, heads=4, ff_dim=24, enc_layers=1, dec_layers=1, share_embeddings=True)
    shared = build_model(ModelConfig(arch="transformer", transformer=shape, tie_embeddings=True), VOCAB, VOCAB)
    assert shared.encoder.embed.tokens.weight is shared.decoder.embed.tokens.weight is shared.decoder.out.weight
    assert describe(shared).startswith("Transformer(1+1 layers, d 16, 4 heads, ff 24, sinusoidal, shared, tied)")
    with pytest.raises(ValueError, match="one vocabulary"):
        build_model(ModelConfig(arch="transformer", transformer=shape), VOCAB, VOCAB + 1)


def test_learned_positions_end_where_they_say():
    model = tiny("learned")
    with pytest.raises(ValueError, match="beyond model.transformer.max_positions"):
        model.encode(torch.full((1, 65), 5), torch.tensor([65]))


@pytest.mark.parametrize("overrides,message", [
    (["model.transformer.d_model=100", "model.transformer.heads=8"], r"`model.transformer.heads`: d_model \(100\)"),
    (["model.attention.kind=none"], r"`model.attention.kind`: none asks for no attention"),
    (["model.transformer.positions=learned", "model.transformer.max_positions=300"],
     r"`model.transformer.max_positions`: got 300, but search may read 510 positions"),
    (["model.transformer.share_embeddings=true", "tokenizer.joint=false"], r"`model.transformer.share_embeddings`"),
    (["model.transformer.positions=rotary"], r"`model.transformer.positions`"),
    (["model.transformer.heads=0"], r"`model.transformer.heads`: got 0"),
])
def test_bad_transformer_settings_are_named_by_key(overrides, message):
    with pytest.raises(MtkitError, match=message):
        load_config(None, ["model.arch=transformer", *overrides])


def test_the_rnn_stays_the_default():
    cfg = load_config(None, [])
    assert cfg.model.arch == "rnn"
    assert not isinstance(build_model(cfg.model, VOCAB, VOCAB).decoder, TransformerDecoder)
