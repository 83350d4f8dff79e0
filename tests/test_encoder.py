import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mtkit.model.encoder import Encoder, EncoderOutput, lengths_to_mask, make_rnn, rnn_cell

SRC_LEN = torch.tensor([5, 2, 4])


def batch(vocab: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    src = torch.randint(4, vocab, (3, 5))  # (B, S)
    src[lengths_to_mask(SRC_LEN, 5).logical_not()] = 0  # pad
    return src, SRC_LEN


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_shapes_final_and_mean(cell, bidirectional, num_layers):
    enc = Encoder(20, 6, 4, num_layers, bidirectional, cell).eval()
    src, src_len = batch()
    out = enc(src, src_len)
    dirs = 2 if bidirectional else 1
    assert isinstance(out, EncoderOutput) and enc.out_dim == dirs * 4
    assert out.states.shape == (3, 5, dirs * 4) and out.final.shape == (3, dirs * 4)
    assert out.mean.shape == (3, dirs * 4)
    assert out.mask.dtype == torch.bool and out.mask.tolist()[1] == [True, True, False, False, False]
    assert (out.states[~out.mask] == 0).all()
    for b, n in enumerate(src_len.tolist()):
        # forward direction: state at the last real token; backward direction: state at token 1
        assert torch.allclose(out.final[b, :4], out.states[b, n - 1, :4], atol=1e-6)
        if bidirectional:
            assert torch.allclose(out.final[b, 4:], out.states[b, 0, 4:], atol=1e-6)
        assert torch.allclose(out.mean[b], out.states[b, :n].mean(0), atol=1e-6)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_padding_values_change_nothing(cell):
    enc = Encoder(20, 6, 4, 2, True, cell).eval()
    src, src_len = batch()
    other = src.clone()
    other[~lengths_to_mask(src_len, 5)] = 7  # garbage after each sentence's end
    a, b = enc(src, src_len), enc(other, src_len)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_longer_padding_changes_nothing():
    enc = Encoder(20, 6, 4, 1, True, "gru").eval()
    src, src_len = batch()
    padded = torch.cat([src, torch.zeros(3, 3, dtype=torch.long)], 1)  # (B, S+3)
    a, b = enc(src, src_len), enc(padded, src_len)
    assert torch.allclose(a.states, b.states[:, :5], atol=1e-6) and (b.states[:, 5:] == 0).all()
    assert torch.allclose(a.final, b.final, atol=1e-6) and torch.allclose(a.mean, b.mean, atol=1e-6)


def test_unknown_cell_names_choices():
    with pytest.raises(ValueError, match="rnn, gru, lstm"):
        make_rnn("transformer", 4, 4, 1, 0.0)


# The encoder and decoder step their RNNs with rnn_cell instead of torch's packed RNN and its
# one-step module call; these keep both honest against torch itself.

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
    src, src_len = batch()
    out = enc(src, src_len)
    packed = pack_padded_sequence(enc.embed(src), src_len, batch_first=True, enforce_sorted=False)
    ref_out, h_n = enc.rnn(packed)
    ref_states, _ = pad_packed_sequence(ref_out, batch_first=True, total_length=5)  # (B, S, K)
    h_n = h_n[0] if cell == "lstm" else h_n
    ref_final = h_n[-enc.num_dirs:].transpose(0, 1).reshape(3, -1)  # (B, K): last layer, both directions
    assert torch.allclose(out.states, ref_states, atol=1e-6)
    assert torch.allclose(out.final, ref_final, atol=1e-6)
