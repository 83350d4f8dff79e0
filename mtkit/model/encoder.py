"""Encoder: embed the source and run a (bi)directional RNN over the real tokens only.

Padding never reaches a result: each direction reads its sentence from the sentence's own first
token (the backward direction reads each sentence reversed in place, with the padding still after
it), so the RNN meets padding only after the last real token; the states there are set to zeros,
the final states are taken at each sentence's own end, and the mean runs over real positions only.
This gives the numbers packing (`pack_padded_sequence`) gives, faster: the input projection runs
once over all positions, and the backward pass avoids the per-step slices of packed sequences,
which write O(S²) gradient memory.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtkit import kernels

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


def rnn_cell(cell: str, input_gates: Tensor, hidden_gates: Tensor, hidden: Tensor,
             memory: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Return one RNN layer's next (hidden, LSTM memory or None) from its gate pre-activations.

    input_gates = W_ih x_t + b_ih and hidden_gates = W_hh h_{t-1} + b_hh, both (..., G), come from
    the caller, which can so compute the input part for all steps at once. The equations and the
    gate order are torch's (nn.RNN with tanh, nn.GRU, nn.LSTM): those modules' weights fit as they
    are and give the same numbers.
    """
    if cell == "gru":
        i_r, i_z, i_n = input_gates.chunk(3, -1)
        h_r, h_z, h_n = hidden_gates.chunk(3, -1)
        reset = torch.sigmoid(i_r + h_r)
        update = torch.sigmoid(i_z + h_z)
        new = torch.tanh(i_n + reset * h_n)
        return new + update * (hidden - new), None  # (1 - z) n + z h
    if cell == "lstm":
        i, f, g, o = (input_gates + hidden_gates).chunk(4, -1)
        memory = torch.sigmoid(f) * memory + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(memory), memory
    return torch.tanh(input_gates + hidden_gates), None


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
        self.dropout = kernels.Dropout(dropout)
        self.rnn = make_rnn(cell, emb_dim, hidden_dim, num_layers, dropout, bidirectional)

    def forward(self, src: Tensor, src_len: Tensor) -> EncoderOutput:
        """Return the encoder states, mask, final states and mean for src (B, S) and src_len (B,).

        Every src_len must be at least 1; tokens at positions >= src_len are never read.
        """
        batch, max_len = src.shape
        mask = lengths_to_mask(src_len, max_len)  # (B, S)
        positions = torch.arange(max_len, device=src.device)
        # position j of the backward direction reads token len-1-j; padding stays where it is
        reverse = torch.where(mask, src_len[:, None] - 1 - positions, positions)  # (B, S)
        states = self.dropout(self.embed(src))  # (B, S, E)
        for layer in range(self.num_layers):
            if layer:  # torch's RNN dropout between layers
                states = F.dropout(states, self.rnn.dropout, self.training)  # (B, S, K)
            states, final = self._layer(states, layer, mask, reverse, src_len - 1)
        mean = states.sum(1) / src_len.to(states.dtype)[:, None]  # (B, K)
        return EncoderOutput(states, mask, final, mean)

    def _layer(self, inputs: Tensor, layer: int, mask: Tensor, reverse: Tensor,
               last: Tensor) -> tuple[Tensor, Tensor]:
        """Run one layer over inputs (B, S, I); return its states (B, S, D*H), zeros at padding, and
        its final states (B, D*H) [→h_len; ←h_1] (index `last` (B,) is each sentence's last token)."""
        batch, max_len, _ = inputs.shape
        suffixes = ["", "_reverse"][: self.num_dirs]

        def weight(name: str, suffix: str) -> Tensor:
            return getattr(self.rnn, f"{name}_l{layer}{suffix}")

        # the input part of every gate, for all positions and both directions at once
        gates = torch.stack([F.linear(inputs if d == 0 else _reorder(inputs, reverse),
                                      weight("weight_ih", sfx), weight("bias_ih", sfx))
                             for d, sfx in enumerate(suffixes)])  # (D, B, S, G)
        gates = gates.permute(2, 0, 1, 3).contiguous()  # (S, D, B, G): one contiguous slice per step
        w_hh = torch.stack([weight("weight_hh", sfx).t() for sfx in suffixes])  # (D, H, G)
        b_hh = torch.stack([weight("bias_hh", sfx) for sfx in suffixes]).unsqueeze(1)  # (D, 1, G)
        if self.cell == "gru" and kernels.fused(inputs):  # the loop below as one autograd node
            out = kernels.GRULayerRecurrence.apply(gates, w_hh, b_hh).permute(1, 2, 0, 3)  # (D, B, S, H)
        else:
            hidden = inputs.new_zeros(self.num_dirs, batch, self.hidden_dim)  # (D, B, H)
            memory = torch.zeros_like(hidden) if self.cell == "lstm" else None
            outputs = []
            for gates_t in gates.unbind(0):  # (D, B, G); both directions advance together
                hidden, memory = rnn_cell(self.cell, gates_t, torch.baddbmm(b_hh, hidden, w_hh), hidden, memory)
                outputs.append(hidden)
            out = torch.stack(outputs, 2)  # (D, B, S, H), direction d's position j read d's j-th token
        final = out[:, torch.arange(batch, device=out.device), last]  # (D, B, H): after each sentence's end
        directions = [out[0]] if self.num_dirs == 1 else [out[0], _reorder(out[1], reverse)]  # token order
        states = torch.cat(directions, -1).masked_fill(~mask.unsqueeze(-1), 0.0)  # (B, S, D*H)
        return states, final.transpose(0, 1).reshape(batch, self.out_dim)  # (B, S, K), (B, K)


def _reorder(x: Tensor, index: Tensor) -> Tensor:
    """Return x (B, S, F) with positions reordered per sentence: out[b, j] = x[b, index[b, j]]."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))  # (B, S, F)
