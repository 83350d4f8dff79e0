"""The Transformer (Vaswani et al. 2017): attention everywhere, in the decoder interface the RNNs use.

Encoder: token embedding × √d plus positions (sinusoidal, section 3.5, or learned), then layers of
self-attention and a feed-forward block. Decoder: the same with causal self-attention, and
cross-attention over the encoder states in every layer. Blocks are pre-norm, x + F(LayerNorm(x))
(Wang et al. 2019; more stable than the paper's post-norm without a long warm-up), and each
stack ends in a LayerNorm. Dropout falls where the paper puts it (section 5.4): on the embeddings
plus positions and on each sub-layer's output; on the attention weights only with attention_dropout.

Attention is multi-head scaled dot-product attention (section 3.2.2): each head scores
q·k / √d_head with learned projections W_Q, W_K, W_V and averages the projected values; the heads
are concatenated and projected by W_O. Self-attention and the decoder's training pass call
`F.scaled_dot_product_attention` (one fused kernel; no weights come back); cross-attention computes
its weights itself, because they are what `mtkit attention` shows.

The decoder fits the RNN decoders' interface, so training, greedy and beam search need nothing
new: `init_state` gives an empty key/value cache and a `Memory` holding each decoder layer's
cross-attention keys and values, projected once per sentence; `step` reads one token, appends its
keys and values to the cache (`TransformerState`, batch first, so `select` reorders beams) and
attends over all tokens so far; `features` runs every target position at once under a causal mask.
Tests check that both give the same numbers. As in the RNNs, a step may run g·B state rows against
B memory rows: the g beams of a sentence query its memory as g positions.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtkit.kernels import Dropout
from mtkit.model.decoder import Memory, StepOutput, unroll_steps
from mtkit.model.encoder import EncoderOutput, lengths_to_mask

POSITIONS = ("sinusoidal", "learned")


class TransformerState(NamedTuple):
    """The decoder's self-attention cache after t tokens. The batch (or beam) is dim 0."""

    cache: Tensor  # (B, L, 2, heads, t, d_head) every layer's keys [:, :, 0] and values [:, :, 1]


def sinusoids(length: int, dim: int, offset: int = 0, device: torch.device | None = None) -> Tensor:
    """Return the sinusoidal position encodings of positions offset … offset+length−1: (length, dim).

    PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...)  (Vaswani et al. 2017, section 3.5).
    """
    position = torch.arange(offset, offset + length, dtype=torch.float32, device=device).unsqueeze(1)  # (T, 1)
    rates = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    angles = position * rates  # (T, ⌈d/2⌉)
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : dim // 2])
    return pe  # (T, d)


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention with learned Q, K, V and output projections.

    `project(x)` makes the keys and values (B, 2, heads, S, d_head) of x (B, S, d), so a caller can
    keep them (the decoder's cache, the cross-attention memory) and `attend` only projects queries.
    """

    def __init__(self, d_model: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads})")
        self.heads, self.d_head, self.dropout = heads, d_model // heads, dropout
        self.query = nn.Linear(d_model, d_model)  # W_Q
        self.key_value = nn.Linear(d_model, 2 * d_model)  # [W_K; W_V], one product for both
        self.out = nn.Linear(d_model, d_model)  # W_O

    def project(self, x: Tensor) -> Tensor:
        """Return the keys and values of x (B, S, d): (B, 2, heads, S, d_head)."""
        batch, length, _ = x.shape
        kv = self.key_value(x).view(batch, length, 2, self.heads, self.d_head)  # (B, S, 2, h, dh)
        return kv.permute(0, 2, 3, 1, 4)  # (B, 2, h, S, dh)

    def forward(self, x: Tensor, kv: Tensor, mask: Tensor | None = None, causal: bool = False,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """Return the attended output (B, T, d) and, with need_weights, the weights (B, heads, T, S).

        x (B, T, d) makes the queries; kv (B, 2, heads, S, d_head) is `project` of the keys' source;
        mask (B, S) is True on real keys (None: all real); causal lets position t see keys ≤ t only.
        """
        batch, length, _ = x.shape
        q = self.query(x).view(batch, length, self.heads, self.d_head).transpose(1, 2)  # (B, h, T, dh)
        k, v = kv.unbind(1)  # (B, h, S, dh) each
        attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, S)
        p = self.dropout if self.training else 0.0
        if not need_weights:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p, is_causal=causal)
            return self.out(out.transpose(1, 2).reshape(batch, length, -1)), None  # (B, T, d)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)  # (B, h, T, S)
        if causal:
            later = torch.ones(length, k.size(2), dtype=torch.bool, device=x.device).triu(1)  # (T, S)
            scores = scores.masked_fill(later, float("-inf"))
        if attn_mask is not None:
            # -inf before the softmax gives padding exactly zero weight
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        weights = scores.softmax(-1)  # (B, h, T, S)
        out = F.dropout(weights, p, self.training) @ v  # (B, h, T, dh)
        return self.out(out.transpose(1, 2).reshape(batch, length, -1)), weights


class FeedForward(nn.Sequential):
    """Position-wise feed-forward block, max(0, x W1 + b1) W2 + b2 (section 3.3).

    No dropout inside: the paper drops out each sub-layer's output and the embeddings only (section
    5.4), and a mask over the ff_dim-wide hidden layer would be the largest of a training step's
    dropout masks, its random numbers a large share of the step.
    """

    def __init__(self, d_model: int, ff_dim: int) -> None:
        super().__init__(nn.Linear(d_model, ff_dim), nn.ReLU(), nn.Linear(ff_dim, d_model))


class EncoderLayer(nn.Module):
    """Pre-norm self-attention then feed-forward, each with a residual connection."""

    def __init__(self, d_model: int, heads: int, ff_dim: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.self_norm, self.ff_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, heads, attention_dropout)
        self.ff = FeedForward(d_model, ff_dim)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Return the layer's output (B, S, d) for x (B, S, d) and mask (B, S), True on real tokens."""
        h = self.self_norm(x)
        x = x + self.dropout(self.self_attn(h, self.self_attn.project(h), mask)[0])
        return x + self.dropout(self.ff(self.ff_norm(x)))


class DecoderLayer(nn.Module):
    """Pre-norm causal self-attention, cross-attention over the source, feed-forward."""

    def __init__(self, d_model: int, heads: int, ff_dim: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.self_norm, self.cross_norm, self.ff_norm = (nn.LayerNorm(d_model) for _ in range(3))
        self.self_attn = MultiHeadAttention(d_model, heads, attention_dropout)
        self.cross_attn = MultiHeadAttention(d_model, heads, attention_dropout)
        self.ff = FeedForward(d_model, ff_dim)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, cache: Tensor | None, cross_kv: Tensor, src_mask: Tensor,
                g: int = 1) -> tuple[Tensor, Tensor, Tensor]:
        """Return the output (N, T, d), the cross-attention weights (N, heads, T, S) and the self-attention keys
        and values (N, 2, heads, T', dh).

        cache None: training, x (B, T, d) is the whole target and self-attention is causal. Otherwise
        x (N, 1, d) is one new position per row and cache (N, 2, h, t, dh) holds the earlier ones; the new
        keys and values are appended, and every cached key is earlier, so no mask is needed.
        cross_kv (B, 2, h, S, dh) is the memory's share of this layer, read by g consecutive rows of x
        (the beams of a sentence, as g query positions).
        """
        h = self.self_norm(x)
        kv = self.self_attn.project(h)  # (N, 2, h, T, dh)
        if cache is not None:
            kv = torch.cat([cache, kv], 3)  # (N, 2, h, t+1, dh)
        x = x + self.dropout(self.self_attn(h, kv, causal=cache is None)[0])
        rows, length, dim = x.shape
        query = self.cross_norm(x).reshape(rows // g, g * length, dim)  # (B, g·T, d)
        out, weights = self.cross_attn(query, cross_kv, src_mask, need_weights=True)  # (B, g·T, d), (B, h, g·T, S)
        x = x + self.dropout(out.view(rows, length, dim))
        heads, src = weights.size(1), weights.size(-1)
        weights = weights.view(rows // g, heads, g, length, src).transpose(1, 2).reshape(rows, heads, length, src)
        return x + self.dropout(self.ff(self.ff_norm(x))), weights, kv


class Embedding(nn.Module):
    """Token embedding × √d plus positions (sinusoidal, or learned up to max_positions), then dropout."""

    def __init__(self, vocab: int, d_model: int, positions: str, max_positions: int, dropout: float,
                 pad_id: int) -> None:
        super().__init__()
        if positions not in POSITIONS:
            raise ValueError(f"unknown positions {positions!r}; choose one of: {', '.join(POSITIONS)}")
        self.d_model, self.max_positions = d_model, max_positions
        self.tokens = nn.Embedding(vocab, d_model, padding_idx=pad_id)
        nn.init.normal_(self.tokens.weight, 0.0, d_model ** -0.5)  # × √d gives unit variance
        with torch.no_grad():
            self.tokens.weight[pad_id].zero_()
        self.learned = nn.Embedding(max_positions, d_model) if positions == "learned" else None
        self.dropout = Dropout(dropout)

    def forward(self, tokens: Tensor, offset: int = 0) -> Tensor:
        """Return embedded tokens (B, T, d) for ids (B, T) at positions offset … offset+T−1."""
        length = tokens.size(1)
        if self.learned is None:
            pos = sinusoids(length, self.d_model, offset, tokens.device)  # (T, d), any length
        elif offset + length > self.max_positions:
            raise ValueError(f"position {offset + length - 1} is beyond model.transformer.max_positions "
                             f"({self.max_positions}), the last learned position; raise it or shorten the input")
        else:
            pos = self.learned.weight[offset : offset + length]  # (T, d)
        return self.dropout(self.tokens(tokens) * math.sqrt(self.d_model) + pos)  # (B, T, d)


class TransformerEncoder(nn.Module):
    """Embedding, `layers` encoder layers and a final LayerNorm; returns the RNN encoder's record."""

    def __init__(self, vocab: int, d_model: int, heads: int, ff_dim: int, layers: int, dropout: float,
                 attention_dropout: float = 0.0, positions: str = "sinusoidal", max_positions: int = 512,
                 pad_id: int = 0) -> None:
        super().__init__()
        self.out_dim = d_model
        self.num_layers = layers
        self.embed = Embedding(vocab, d_model, positions, max_positions, dropout, pad_id)
        self.layers = nn.ModuleList(EncoderLayer(d_model, heads, ff_dim, dropout, attention_dropout)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, src: Tensor, src_len: Tensor) -> EncoderOutput:
        """Return the states (zeros at padding) and mask for src (B, S), src_len (B,).

        A Transformer has no final state; `final` and `mean` are both the mean over real positions.
        """
        mask = lengths_to_mask(src_len, src.size(1))  # (B, S)
        x = self.embed(src)  # (B, S, d)
        for layer in self.layers:
            x = layer(x, mask)
        states = self.norm(x).masked_fill(~mask.unsqueeze(-1), 0.0)  # (B, S, d)
        mean = states.sum(1) / src_len.to(states.dtype)[:, None]  # (B, d)
        return EncoderOutput(states, mask, mean, mean)


class TransformerDecoder(nn.Module):
    """Embedding, `layers` decoder layers, a final LayerNorm and the vocabulary projection.

    The attention a step reports (B, S) is the cross-attention of `shown`: (layer, head), each an
    index or None for the mean over all of them; (None, None), the default, averages every head of
    every layer. `show` sets it for translation and plots; training never reads it.
    """

    wiring = "transformer"
    whole_sequence = True  # teacher forcing runs every target position in one pass

    def __init__(self, vocab: int, d_model: int, heads: int, ff_dim: int, layers: int, dropout: float,
                 attention_dropout: float = 0.0, positions: str = "sinusoidal", max_positions: int = 512,
                 pad_id: int = 0, tie_embeddings: bool = False) -> None:
        super().__init__()
        self.vocab, self.out_dim, self.num_layers, self.heads = vocab, d_model, layers, heads
        self.embed = Embedding(vocab, d_model, positions, max_positions, dropout, pad_id)
        self.layers = nn.ModuleList(DecoderLayer(d_model, heads, ff_dim, dropout, attention_dropout)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, vocab)  # the one vocabulary projection
        if tie_embeddings:
            self.out.weight = self.embed.tokens.weight  # Press & Wolf (2017)
        self.shown: tuple[int | None, int | None] = (None, None)

    @property
    def attention(self) -> MultiHeadAttention:
        """The last layer's cross-attention (the decoder always attends; `Seq2Seq.has_attention`)."""
        return self.layers[-1].cross_attn

    def show(self, layer: int | None = None, head: int | None = None) -> str:
        """Choose the cross-attention that steps report (0-based; None averages); return a label for it."""
        for name, value, count in (("layer", layer, self.num_layers), ("head", head, self.heads)):
            if value is not None and not 0 <= value < count:
                raise ValueError(f"--{name} {value + 1}: this model has {count} {name}s (1-{count})")
        self.shown = (layer, head)
        where = f"layer {layer + 1} of {self.num_layers}" if layer is not None else f"mean of {self.num_layers} layers"
        which = f"head {head + 1} of {self.heads}" if head is not None else f"mean of {self.heads} heads"
        return f"cross-attention, {where}, {which}"

    def _shown_weights(self, weights: list[Tensor]) -> Tensor:
        """Return the shown cross-attention (B, T, S) from every layer's weights [(B, heads, T, S)]."""
        layer, head = self.shown
        stacked = torch.stack(weights if layer is None else [weights[layer]], 1)  # (B, L', h, T, S)
        if head is not None:
            stacked = stacked[:, :, head : head + 1]
        return stacked.mean((1, 2))  # (B, T, S); a mean of distributions still sums to one

    # ---- per batch -------------------------------------------------------------------------

    def init_state(self, enc: EncoderOutput) -> tuple[TransformerState, Memory]:
        """Return an empty self-attention cache and the memory: every layer's cross keys and values."""
        batch = enc.states.size(0)
        cross = torch.stack([layer.cross_attn.project(enc.states) for layer in self.layers], 1)  # (B, L, 2, h, S, dh)
        empty = enc.states.new_zeros(batch, self.num_layers, 2, self.heads, 0, self.out_dim // self.heads)
        return TransformerState(empty), Memory(enc.states, cross, enc.mask, None)

    # ---- per step --------------------------------------------------------------------------

    def step(self, prev_tokens: Tensor, state: TransformerState, memory: Memory) -> StepOutput:
        """Return the features, the cache with this token appended, and the shown cross-attention.

        prev_tokens (N,) with N = g·B: g consecutive rows read one sentence of the memory.
        """
        rows, sentences = prev_tokens.size(0), memory.mask.size(0)
        g = rows // sentences
        x = self.embed(prev_tokens.unsqueeze(1), offset=state.cache.size(4))  # (N, 1, d)
        caches, weights = [], []
        for i, layer in enumerate(self.layers):
            x, w, cache = layer(x, state.cache[:, i], memory.projected[:, i], memory.mask, g)
            caches.append(cache)  # (N, 2, h, t+1, dh)
            weights.append(w)  # (N, h, 1, S)
        features = self.norm(x).squeeze(1)  # (N, d)
        attention = self._shown_weights(weights).squeeze(1)  # (N, S)
        return StepOutput(features, TransformerState(torch.stack(caches, 1)), attention)

    def logits(self, features: Tensor) -> Tensor:
        """Return unnormalised vocabulary scores (..., V) for features (..., d)."""
        return self.out(features)

    # ---- whole target sequence -------------------------------------------------------------

    def forward(self, tgt_in: Tensor, state: TransformerState, memory: Memory) -> tuple[Tensor, Tensor]:
        """Return teacher-forced logits (B, T, V) and the shown cross-attention (B, T, S)."""
        features, attention = self.features(tgt_in, state, memory)
        return self.logits(features), attention

    def features(self, tgt_in: Tensor, state: TransformerState, memory: Memory) -> tuple[Tensor, Tensor]:
        """Return features (B, T, d) for every target position at once, and the shown cross-attention (B, T, S).

        Causal self-attention: position t reads positions ≤ t only, so padding after the last real
        token changes no real position. `state` is the empty cache of `init_state`.
        """
        x = self.embed(tgt_in, offset=state.cache.size(4))  # (B, T, d)
        weights = []
        for i, layer in enumerate(self.layers):
            x, w, _ = layer(x, None, memory.projected[:, i], memory.mask)
            weights.append(w)  # (B, h, T, S)
        return self.norm(x), self._shown_weights(weights)

    def unroll(self, tgt_in: Tensor, state: TransformerState, memory: Memory) -> tuple[Tensor, Tensor]:
        """Return the same as `forward`, computed by calling `step` once per position (the reference)."""
        features, attention = unroll_steps(self, tgt_in, state, memory)  # (B, T, d), (B, T, S)
        return self.logits(features), attention  # (B, T, V), (B, T, S)
