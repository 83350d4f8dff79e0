import re

import pytest
import torch
import torch.nn.functional as F

from mtkit.config import AttentionConfig, ModelConfig, TransformerConfig
from mtkit.errors import MtkitError
from mtkit.model import DecoderState, Memory, Seq2Seq, attention_label, build_model, describe
from mtkit.model.encoder import lengths_to_mask

@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors run fastest on one thread, and the CPU is shared; restore the setting after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


V = 12  # 4 specials (pad 0, unk 1, bos 2, eos 3) + 8 words

# every attention kind × wiring build_model accepts
VARIANTS = [(kind, "bahdanau") for kind in ["none", "additive", "dot", "general", "scaled_dot"]] + [
    (kind, "luong") for kind in ["additive", "dot", "general", "scaled_dot"]]


def tiny(kind="additive", decoder="bahdanau", **changes) -> ModelConfig:
    """A model small enough to train in a second; dec_hidden_dim = 2 × hidden_dim so dot fits."""
    fields = dict(emb_dim=16, hidden_dim=16, dec_hidden_dim=32, out_dim=16, dropout=0.0,
                  attention=AttentionConfig(kind=kind, dim=16), decoder=decoder)
    return ModelConfig(**{**fields, **changes})


def pairs(n=20, seed=0):
    """Random sentence pairs: src (n, 6), src_len (n,), tgt_in / tgt_out (n, 7) with BOS / EOS."""
    g = torch.Generator().manual_seed(seed)
    src_len = torch.randint(3, 7, (n,), generator=g)
    tgt_len = torch.randint(3, 7, (n,), generator=g)
    src = torch.randint(4, V, (n, 6), generator=g) * lengths_to_mask(src_len, 6)  # (n, 6)
    tgt = torch.zeros(n, 8, dtype=torch.long)
    for i, m in enumerate(tgt_len.tolist()):
        tgt[i, 0] = 2
        tgt[i, 1:m + 1] = torch.randint(4, V, (m,), generator=g)
        tgt[i, m + 1] = 3
    return src, src_len, tgt[:, :-1], tgt[:, 1:]


def loss_of(model, batch):
    src, src_len, tgt_in, tgt_out = batch
    logits, _ = model(src, src_len, tgt_in)  # (B, T, V)
    return F.cross_entropy(logits.reshape(-1, V), tgt_out.reshape(-1), ignore_index=0)


@pytest.mark.parametrize("kind,decoder", VARIANTS)
def test_forward_shapes_and_encode(kind, decoder):
    model = build_model(tiny(kind, decoder), V, V + 1)
    src, src_len, tgt_in, _ = pairs(4)
    logits, attention = model(src, src_len, tgt_in)
    assert logits.shape == (4, 7, V + 1)
    assert model.has_attention == (kind != "none")
    assert (attention is None) if kind == "none" else attention.shape == (4, 7, 6)
    state, memory = model.encode(src, src_len)
    assert isinstance(state, DecoderState) and isinstance(memory, Memory)


@pytest.mark.parametrize("kind,decoder", VARIANTS)
def test_values_after_src_len_change_no_output(kind, decoder):
    model = build_model(tiny(kind, decoder, dropout=0.3), V, V).eval()
    src, src_len, tgt_in, _ = pairs(5)
    other = src.clone()
    other[~lengths_to_mask(src_len, 6)] = 5  # real-looking tokens where padding was
    a_logits, a_att = model(src, src_len, tgt_in)
    b_logits, b_att = model(other, src_len, tgt_in)
    assert torch.equal(a_logits, b_logits)
    if kind != "none":
        assert torch.equal(a_att, b_att)
        assert (a_att[~lengths_to_mask(src_len, 6).unsqueeze(1).expand(-1, 7, -1)] == 0).all()


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("kind,decoder", VARIANTS)
def test_gradients_reach_every_parameter(kind, decoder, cell):
    """No parameter is left out of the graph (the pad embedding rows alone get zero gradient)."""
    torch.manual_seed(0)
    cfg = tiny(kind, decoder, cell=cell, enc_layers=2, dec_layers=2, dropout=0.1,
               maxout=decoder == "bahdanau")
    model = build_model(cfg, V, V)
    loss_of(model, pairs(6)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("init", ["backward_first", "mean", "last", "zero"])
def test_gradients_reach_every_parameter_for_each_init(init):
    model = build_model(tiny("none", init=init, tie_embeddings=True), V, V)
    loss_of(model, pairs(6)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert (model.decoder.bridge is None) == (init == "zero")


def overfit(cfg: ModelConfig, steps: int = 250) -> float:
    """Return the loss after fitting 20 random pairs for at most `steps` full-batch Adam steps."""
    torch.manual_seed(0)
    model = build_model(cfg, V, V)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    batch = pairs()
    for _ in range(steps):
        loss = loss_of(model, batch)
        if loss.item() < 0.02:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.item()


@pytest.mark.parametrize("kind,decoder", VARIANTS)
def test_each_variant_memorises_twenty_pairs(kind, decoder):
    assert overfit(tiny(kind, decoder)) < 0.05


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["rnn", "lstm"])
@pytest.mark.parametrize("kind,decoder", VARIANTS)
@pytest.mark.parametrize("extra", [{}, {"bidirectional": False, "init": "last", "hidden_dim": 32},
                                   {"init": "mean", "enc_layers": 2, "dec_layers": 2}])
def test_every_cell_and_shape_memorises_twenty_pairs(kind, decoder, cell, extra):
    assert overfit(tiny(kind, decoder, cell=cell, input_feeding=cell == "rnn", **extra)) < 0.05


@pytest.mark.parametrize("changes,keys", [
    ({"init": "backward_first", "bidirectional": False}, ["model.init", "model.bidirectional"]),
    ({"attention": AttentionConfig(kind="dot"), "dec_hidden_dim": 24}, ["model.dec_hidden_dim", "model.hidden_dim"]),
    ({"attention": AttentionConfig(kind="none"), "decoder": "luong"}, ["model.decoder", "model.attention.kind"]),
    ({"tie_embeddings": True, "out_dim": 8}, ["model.out_dim", "model.emb_dim"]),
    ({"maxout": True, "decoder": "luong"}, ["model.maxout"]),
    ({"cell": "transformer"}, ["model.cell", "'rnn', 'gru', 'lstm'"]),
    ({"attention": AttentionConfig(kind="multihead")}, ["model.attention.kind", "scaled_dot"]),
    ({"decoder": "pointer"}, ["model.decoder", "'bahdanau', 'luong'"]),
    ({"init": "random"}, ["model.init", "'backward_first', 'mean', 'last', 'zero'"]),
    ({"dropout": 1.0}, ["model.dropout"]),
    ({"hidden_dim": 0}, ["model.hidden_dim"]),
])
def test_build_model_rejects_bad_combinations_by_key(changes, keys):
    with pytest.raises(MtkitError) as info:
        build_model(tiny(**changes), V, V)
    for key in keys:
        assert key in str(info.value)


def test_defaults_build_and_describe():
    model = build_model(ModelConfig(), 100, 120)
    assert isinstance(model, Seq2Seq)
    text = describe(model)
    assert text.startswith("RNNsearch(gru, bi 2x256 → 512, additive attention, bahdanau) ")
    count = sum(p.numel() for p in model.parameters())
    assert re.fullmatch(r".* (\d+\.\d)M params", text).group(1) == f"{count / 1e6:.1f}"


@pytest.mark.parametrize("kind, decoder", VARIANTS)
def test_attention_label_names_an_rnns_one_attention(kind, decoder):
    label = attention_label(build_model(tiny(kind, decoder), V, V))
    assert label == ("no attention" if kind == "none" else f"{kind} attention")


def test_attention_label_names_the_cross_attention_a_transformer_shows():
    model = build_model(ModelConfig(arch="transformer", transformer=TransformerConfig(
        d_model=16, heads=2, ff_dim=32, enc_layers=1, dec_layers=3)), V, V)
    assert attention_label(model) == "cross-attention, mean of 3 layers, mean of 2 heads"
    model.decoder.show(1, 0)
    assert attention_label(model) == "cross-attention, layer 2 of 3, head 1 of 2"
    assert model.decoder.shown == (1, 0)  # reading the label leaves the choice alone


def test_describe_names_each_family():
    assert describe(build_model(tiny("none"), V, V)).startswith("RNNencdec(gru, bi 2x16 → 32, no attention)")
    text = describe(build_model(tiny("general", "luong", cell="lstm", enc_layers=2,
                                     bidirectional=False, init="zero", hidden_dim=32), V, V))
    assert text.startswith("Luong(lstm, 2-layer uni 1x32 → 32, general attention, luong, input feeding)")
    assert text.endswith("K params")
