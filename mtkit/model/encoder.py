"""Encoder: embed the source and run a (bi)directional RNN over the real tokens only.

Sequences are packed (`pack_padded_sequence`), so the values at padded positions never reach a
result: the states there are zeros, the final states are taken at each sentence's own end, and the
mean runs over real positions only.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

RNNS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class EncoderOutput(NamedTuple):
    """What the decoder may read of the source. D = 2 if bidirectional else 1."""

    states: Tensor  # (B, S, D*H) top-layer annotations h_j = [→h_j; ←h_j], zeros at padding
    mask: Tensor  # (B, S) bool, True on real tokens
    final: Tensor  # (B, D*H) top layer [→h_{len}; ←h_1]: each direction's state after the whole sentence
    mean: Tensor  # (B, D*H) mean of `states` over real positions


def make_rnn(cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float,
             bidirectional: bool = False) -> nn.RNNBase:
    """Return a batch-first torch RNN of the named cell type (rnn, gru or lstm)."""
    if cell not in RNNS:
        raise ValueError(f"unknown RNN cell {cell!r}; choose one of: {', '.join(RNNS)}")
    # torch applies RNN dropout between layers only, and warns when there is just one layer
    return RNNS[cell](input_size, hidden_size, num_layers, batch_first=True,
                      dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional)


def lengths_to_mask(lengths: Tensor, max_len: int) -> Tensor:
    """Return a (B, max_len) bool mask, True on the first lengths[b] positions of row b."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]  # (B, S)


class Encoder(nn.Module):
    """Source embedding followed by a multi-layer, optionally bidirectional RNN.

    Bahdanau et al. (2015), section 3.2: the annotation of word j is the concatenation of the
    forward and backward states, h_j = [→h_j; ←h_j].
    """

    def __init__(self, vocab: int, emb_dim: int, hidden_dim: int, num_layers: int = 1,
                 bidirectional: bool = True, cell: str = "gru", dropout: float = 0.0,
                 pad_id: int = 0) -> None:
        super().__init__()
        self.cell = cell
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.num_dirs = 2 if bidirectional else 1
        self.out_dim = self.num_dirs * hidden_dim  # K, the size of every state and of `final`
        self.embed = nn.Embedding(vocab, emb_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        self.rnn = make_rnn(cell, emb_dim, hidden_dim, num_layers, dropout, bidirectional)

    def forward(self, src: Tensor, src_len: Tensor) -> EncoderOutput:
        """Return the encoder states, mask, final states and mean for src (B, S) and src_len (B,).

        Every src_len must be at least 1; tokens at positions >= src_len are never read.
        """
        batch, max_len = src.shape
        mask = lengths_to_mask(src_len, max_len)  # (B, S)
        emb = self.dropout(self.embed(src))  # (B, S, E)
        # lengths must live on the CPU for packing, whatever the device of the batch
        packed = pack_padded_sequence(emb, src_len.cpu(), batch_first=True, enforce_sorted=False)
        packed_out, h_n = self.rnn(packed)
        if isinstance(h_n, tuple):  # LSTM returns (h_n, c_n); the decoder is initialised from h
            h_n = h_n[0]
        states, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=max_len)  # (B, S, K)
        # h_n is (L*D, B, H), layer-major; its last D rows are the top layer: the forward state at
        # the last real token, then the backward state at the first token (←h_1).
        final = h_n[-self.num_dirs:].transpose(0, 1).reshape(batch, self.out_dim)  # (B, K)
        mean = states.sum(1) / src_len.to(states.dtype)[:, None]  # (B, K)
        return EncoderOutput(states, mask, final, mean)
