"""FLOPs of a model counted from its weight shapes, and the fp32 matrix-multiply peak they are measured against.

Forward FLOPs, 2 per multiply-add:

    F(m, n) = m·F_src + n·F_tgt + m·n·F_pair + F_sent     one pair: m source, n target tokens (eos included)
    F_src   = Σ encoder RNN layers and directions 2(|W_ih| + |W_hh|) + 2|U_a|         (attention keys)
    F_tgt   = Σ decoder RNN layers 2(|W_ih| + |W_hh|) + 2|W_a| (attention query)
              + 2|deep output or W_c| + 2·O·V (vocabulary projection)
    F_pair  = 2A (v_a, additive) or 2d (a dot product) to score, + 2K to average the states
    F_sent  = 2|bridge| (initial state)

where |W| is the number of entries of a weight. For a Transformer (d = d_model, f = ff_dim, L_e and
L_d layers), self-attention adds terms in m² and n² (decoder: n(n+1)/2 pairs, the causal ones):

    F_src      = L_e (2·4d² + 2·2df)  + L_d 2·2d²         (encoder layers; each decoder layer's cross K, V)
    F_tgt      = L_d (2·4d² + 2·2d² + 2·2df) + 2dV         (self Q, K, V, O; cross Q, O; feed-forward; vocabulary)
    F_pair     = L_d 4d                                   (cross-attention score and average per (t, s))
    F_src_pair = L_e 4d,  F_tgt_pair = L_d 4d              (self-attention per (i, j) pair)

Training costs 3F: the backward pass computes, for
every product, one gradient for its input and one for its weight, each as large as the forward
product. Not counted, as they are O(size) next to the O(size²) products: embedding lookups,
biases, gate and attention nonlinearities, softmax and loss, the optimizer update. Padding is not
counted either: it is waste, not work.
"""

from __future__ import annotations

import statistics
import time
from typing import NamedTuple, Sequence

import torch
from torch import nn

from mtkit.model import Seq2Seq
from mtkit.model.attention import AdditiveAttention
from mtkit.model.transformer import TransformerDecoder


class FlopCount(NamedTuple):
    """Forward FLOPs of a model by what they scale with (see the module docstring)."""

    per_src_token: int  # F_src: encoder RNN and attention key projection
    per_tgt_token: int  # F_tgt: decoder RNN, query projection, output layers, vocabulary projection
    per_pair: int  # F_pair: attention score and average, per (target, source) position pair
    per_sentence: int  # F_sent: the bridge to the initial decoder state
    output_layer: int  # the vocabulary projection's share of per_tgt_token, 2·O·V
    per_src_pair: int = 0  # Transformer encoder self-attention, per (i, j) source pair
    per_tgt_pair: int = 0  # Transformer decoder self-attention, per causal (t, t') target pair


def product_flops(module: nn.Module) -> int:
    """Return the FLOPs of one input row through a Linear, or one token through an RNN (all layers and directions)."""
    if isinstance(module, nn.Linear):
        return 2 * module.in_features * module.out_features
    if isinstance(module, nn.RNNBase):
        return sum(2 * p.numel() for name, p in module.named_parameters() if name.startswith("weight_"))
    raise TypeError(f"no FLOP count for {type(module).__name__}; count nn.Linear or nn.RNN/GRU/LSTM")


def count_flops(model: Seq2Seq) -> FlopCount:
    """Return the model's forward FLOPs per source token, target token, position pair and sentence."""
    dec = model.decoder
    if isinstance(dec, TransformerDecoder):
        return _transformer_flops(model)
    per_src = product_flops(model.encoder.rnn)
    per_tgt = product_flops(dec.rnn)
    per_pair = per_sentence = 0
    if dec.bridge is not None:
        per_sentence += product_flops(dec.bridge)
    for name in ("deep_output", "combine"):  # Bahdanau's deep output, Luong's W_c
        if hasattr(dec, name):
            per_tgt += product_flops(getattr(dec, name))
    output_layer = product_flops(dec.out)  # counted even when its weight is tied to the embedding
    per_tgt += output_layer
    attention = dec.attention
    if attention is not None:
        score_dim = dec.key_dim  # dot: h_tᵀ h̄_s
        if hasattr(attention, "key_proj"):
            per_src += product_flops(attention.key_proj)
            score_dim = attention.key_proj.out_features  # general, scaled_dot, additive
        if hasattr(attention, "query_proj"):
            per_tgt += product_flops(attention.query_proj)
        if isinstance(attention, AdditiveAttention):
            per_pair += product_flops(attention.v)  # v_aᵀ tanh(...): 2A
        else:
            per_pair += 2 * score_dim
        per_pair += 2 * dec.key_dim  # the weighted average of the states
    return FlopCount(per_src, per_tgt, per_pair, per_sentence, output_layer)


def _transformer_flops(model: Seq2Seq) -> FlopCount:
    """Return a Transformer's FlopCount (see the module docstring), from its Linear layers."""
    enc, dec = model.encoder, model.decoder

    def linears(module: nn.Module) -> int:
        return sum(product_flops(m) for m in module.modules() if isinstance(m, nn.Linear))

    per_src = sum(linears(layer) for layer in enc.layers)
    per_tgt = output_layer = product_flops(dec.out)
    for layer in dec.layers:
        per_src += product_flops(layer.cross_attn.key_value)  # once per source token, kept in the memory
        per_tgt += linears(layer) - product_flops(layer.cross_attn.key_value)
    per_pair = 4 * dec.out_dim * dec.num_layers
    return FlopCount(per_src, per_tgt, per_pair, 0, output_layer,
                     per_src_pair=4 * enc.out_dim * enc.num_layers, per_tgt_pair=per_pair)


def pair_flops(count: FlopCount, src_len: int, tgt_len: int) -> int:
    """Return the forward FLOPs of one sentence pair: m·F_src + n·F_tgt + m·n·F_pair + F_sent
    (+ m²·F_src_pair + n(n+1)/2·F_tgt_pair for a Transformer)."""
    return (src_len * count.per_src_token + tgt_len * count.per_tgt_token
            + src_len * tgt_len * count.per_pair + count.per_sentence
            + src_len * src_len * count.per_src_pair + tgt_len * (tgt_len + 1) // 2 * count.per_tgt_pair)


def training_flops_per_token(count: FlopCount, src_lengths: Sequence[int], tgt_lengths: Sequence[int]) -> float:
    """Return training FLOPs (3 × forward) per target token over pairs of the given lengths (eos included in tgt)."""
    total = sum(pair_flops(count, m, n) for m, n in zip(src_lengths, tgt_lengths))
    return 3.0 * total / max(1, sum(tgt_lengths))


class MatmulPeak(NamedTuple):
    """fp32 matrix-multiply speed of this process, GFLOP/s."""

    best: float
    median: float
    size: int
    threads: int


def matmul_peak(size: int = 2048, repeats: int = 5) -> MatmulPeak:
    """Return the best and median GFLOP/s of `repeats` size×size fp32 products (after one warm-up)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        rates.append(2 * size**3 / (time.perf_counter() - start) / 1e9)
    return MatmulPeak(max(rates), statistics.median(rates), size, torch.get_num_threads())
