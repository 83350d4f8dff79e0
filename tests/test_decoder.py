import pytest
import torch

from mtkit.model.attention import make_attention
from mtkit.model.decoder import (BahdanauDecoder, DecoderSettings, DecoderState, LuongDecoder, Memory,
                                 StepOutput, select)
from mtkit.model.encoder import Encoder, lengths_to_mask

V_SRC, V_TGT, E, H, O = 15, 13, 6, 4, 7
SRC_LEN = torch.tensor([5, 2, 4])

# (wiring, attention kind, options) — every wiring × attention combination the decoders accept
VARIANTS = [
    *[("bahdanau", kind, {}) for kind in ["none", "additive", "dot", "general", "scaled_dot"]],
    ("bahdanau", "additive", {"maxout": True}),
    *[("luong", kind, {"input_feeding": feed}) for kind in ["additive", "dot", "general", "scaled_dot"]
      for feed in [True, False]],
]
IDS = [f"{w}-{k}-{'-'.join(f'{a}={b}' for a, b in o.items())}" for w, k, o in VARIANTS]


def build(wiring, kind, options=None, cell="gru", bidirectional=True, init=None, layers=1,
          tie=False, out_dim=O):
    """Return (encoder, decoder) in eval mode, built from plain numbers."""
    torch.manual_seed(0)
    init = init or ("backward_first" if bidirectional else "last")
    enc = Encoder(V_SRC, E, H, layers, bidirectional, cell, dropout=0.1)
    dec_hidden = enc.out_dim  # equal sizes so that dot attention fits
    attention = make_attention(kind, dec_hidden, enc.out_dim, 5)
    cls = BahdanauDecoder if wiring == "bahdanau" else LuongDecoder
    settings = DecoderSettings(num_layers=layers, cell=cell, init=init, out_dim=out_dim, dropout=0.1,
                               tie_embeddings=tie)
    dec = cls(V_TGT, E, dec_hidden, enc.out_dim, attention, settings, **(options or {}))
    return enc.eval(), dec.eval()


def data(seed=1):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V_SRC, (3, 5), generator=g)  # (B, S)
    src[~lengths_to_mask(SRC_LEN, 5)] = 0
    tgt_in = torch.randint(4, V_TGT, (3, 6), generator=g)  # (B, T)
    tgt_in[:, 0] = 2  # BOS
    return src, SRC_LEN, tgt_in


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("wiring,kind,options", VARIANTS, ids=IDS)
def test_shapes(wiring, kind, options, cell, bidirectional):
    enc, dec = build(wiring, kind, options, cell, bidirectional)
    src, src_len, tgt_in = data()
    K = enc.out_dim
    state, memory = dec.init_state(enc(src, src_len))
    assert isinstance(state, DecoderState) and isinstance(memory, Memory)
    assert state.hidden.shape == (3, 1, K)
    assert (state.cell is None) == (cell != "lstm")
    assert (state.input_feed is None) == (not options.get("input_feeding", False))
    assert memory.states.shape == (3, 5, K) and memory.mask.shape == (3, 5)
    assert (memory.projected is None) == (kind == "none") and (memory.context is None) == (kind != "none")

    logits, attention = dec(tgt_in, state, memory)
    assert logits.shape == (3, 6, V_TGT)
    if kind == "none":
        assert attention is None
    else:
        assert attention.shape == (3, 6, 5)  # one row of weights for every target step
        assert torch.allclose(attention.sum(-1), torch.ones(3, 6))
        assert (attention[~memory.mask.unsqueeze(1).expand(-1, 6, -1)] == 0).all()

    out = dec.step(tgt_in[:, 0], state, memory)
    assert isinstance(out, StepOutput) and out.features.shape == (3, O)
    assert dec.logits(out.features).shape == (3, V_TGT)
    assert out.state.hidden.shape == (3, 1, K)
    if out.state.cell is not None:
        assert out.state.cell.shape == (3, 1, K)
    if out.state.input_feed is not None:
        assert out.state.input_feed.shape == (3, O)
    assert (out.attention is None) == (kind == "none")


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("wiring,kind,options", VARIANTS, ids=IDS)
def test_forward_equals_unrolled_steps(wiring, kind, options, cell):
    """Teacher forcing (fast path or hoisted output layers) gives the numbers `step` gives."""
    enc, dec = build(wiring, kind, options, cell, layers=2)
    src, src_len, tgt_in = data()
    state, memory = dec.init_state(enc(src, src_len))
    logits, attention = dec(tgt_in, state, memory)
    ref_logits, ref_attention = dec.unroll(tgt_in, state, memory)
    assert torch.allclose(logits, ref_logits, atol=1e-5)
    if kind == "none":
        assert attention is None and ref_attention is None
    else:
        assert torch.allclose(attention, ref_attention, atol=1e-5)


def test_fast_path_is_used_where_the_math_allows():
    assert build("bahdanau", "none")[1].whole_sequence
    assert build("luong", "dot", {"input_feeding": False})[1].whole_sequence
    assert not build("luong", "dot", {"input_feeding": True})[1].whole_sequence
    assert not build("bahdanau", "additive")[1].whole_sequence


@pytest.mark.parametrize("init", ["backward_first", "last", "zero"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_without_attention_only_the_fixed_vector_reaches_the_decoder(init, cell):
    enc, dec = build("bahdanau", "none", cell=cell, init=init)
    src, src_len, tgt_in = data()
    out = enc(src, src_len)
    reference, _ = dec(tgt_in, *dec.init_state(out))
    torch.manual_seed(5)
    for states in (torch.randn_like(out.states), out.states.flip(1), out.states[[2, 0, 1]]):
        changed = dec.init_state(out._replace(states=states))
        assert torch.equal(dec(tgt_in, *changed)[0], reference)  # whole-sequence path
        assert torch.allclose(dec.unroll(tgt_in, *changed)[0], reference, atol=1e-5)  # step, as search runs it
    # ...while the final states c is made from do matter
    logits, _ = dec(tgt_in, *dec.init_state(out._replace(final=out.final.flip(1))))
    assert not torch.allclose(logits, reference)


def test_with_attention_the_states_do_reach_the_decoder():
    """Guards the test above: the same change must matter once the decoder attends."""
    enc, dec = build("bahdanau", "additive")
    src, src_len, tgt_in = data()
    out = enc(src, src_len)
    reference, _ = dec(tgt_in, *dec.init_state(out))
    logits, _ = dec(tgt_in, *dec.init_state(out._replace(states=out.states.flip(1))))
    assert not torch.allclose(logits, reference)


@pytest.mark.parametrize("wiring,kind,options",
                         [("luong", "general", {"input_feeding": True}), ("bahdanau", "none", {})])
def test_select_reorders_and_expands_beams(wiring, kind, options):
    enc, dec = build(wiring, kind, options, cell="lstm", layers=2)
    src, src_len, tgt_in = data()
    state, memory = dec.init_state(enc(src, src_len))
    state = dec.step(tgt_in[:, 0], state, memory).state  # a non-trivial state
    full = dec.step(tgt_in[:, 1], state, memory)

    beams = torch.arange(3).repeat_interleave(2)  # expand: (B*2,)
    expanded = dec.step(tgt_in[beams, 1], select(state, beams), select(memory, beams))
    assert torch.allclose(expanded.features, full.features[beams], atol=1e-6)

    idx = torch.tensor([2, 0, 0, 1])  # reorder and duplicate
    picked = dec.step(tgt_in[idx, 1], select(state, idx), select(memory, idx))
    assert torch.allclose(picked.features, full.features[idx], atol=1e-6)
    for a, b in zip(picked.state, select(full.state, idx)):
        assert (a is None and b is None) or torch.allclose(a, b, atol=1e-6)
    if kind != "none":
        assert torch.allclose(picked.attention, full.attention[idx], atol=1e-6)
    else:
        assert select(memory, idx).projected is None and select(state, idx).input_feed is None


def test_tied_embeddings_share_one_matrix():
    _, dec = build("luong", "dot", {"input_feeding": True}, tie=True, out_dim=E)
    assert dec.out.weight is dec.embed.weight
    with pytest.raises(ValueError, match="out_dim == emb_dim"):
        build("bahdanau", "additive", tie=True, out_dim=E + 1)


def test_luong_wiring_needs_attention():
    with pytest.raises(ValueError, match="needs attention"):
        build("luong", "none")


def test_unknown_init_names_choices():
    with pytest.raises(ValueError, match="backward_first, mean, last, zero"):
        build("bahdanau", "additive", init="random")
