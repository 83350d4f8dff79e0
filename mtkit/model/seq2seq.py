"""Seq2Seq ties an encoder to a decoder; build_model is the one place that reads ModelConfig."""

from __future__ import annotations

from torch import Tensor, nn

from mtkit.config import ModelConfig, check_model
from mtkit.model.attention import attention_kind, make_attention
from mtkit.model.decoder import BahdanauDecoder, Decoder, DecoderState, LuongDecoder, Memory
from mtkit.model.encoder import Encoder


class Seq2Seq(nn.Module):
    """An encoder-decoder translation model; search calls `encode` then `decoder.step`."""

    def __init__(self, encoder: Encoder, decoder: Decoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    @property
    def has_attention(self) -> bool:
        """Whether the decoder attends (False for the RNNencdec baseline)."""
        return self.decoder.attention is not None

    def encode(self, src: Tensor, src_len: Tensor) -> tuple[DecoderState, Memory]:
        """Return the decoder's initial state and the per-batch memory for src (B, S), src_len (B,)."""
        return self.decoder.init_state(self.encoder(src, src_len))

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> tuple[Tensor, Tensor | None]:
        """Return teacher-forced logits (B, T, V) and attention (B, T, S) or None for tgt_in (B, T)."""
        state, memory = self.encode(src, src_len)
        return self.decoder(tgt_in, state, memory)


def build_model(cfg: ModelConfig, src_vocab: int, tgt_vocab: int, pad_id: int = 0) -> Seq2Seq:
    """Return a freshly initialised Seq2Seq built from cfg (the `model` section) and vocabulary sizes."""
    check_model(cfg)  # a ModelConfig built in Python skipped load_config's checks
    encoder = Encoder(src_vocab, cfg.emb_dim, cfg.hidden_dim, cfg.enc_layers, cfg.bidirectional,
                      cfg.cell, cfg.dropout, pad_id)
    attention = make_attention(cfg.attention.kind, query_dim=cfg.dec_hidden_dim,
                               key_dim=encoder.out_dim, dim=cfg.attention.dim)
    shared = dict(num_layers=cfg.dec_layers, cell=cfg.cell, init=cfg.init, out_dim=cfg.out_dim,
                  dropout=cfg.dropout, pad_id=pad_id, tie_embeddings=cfg.tie_embeddings)
    decoder: Decoder
    if cfg.decoder == "bahdanau":
        decoder = BahdanauDecoder(tgt_vocab, cfg.emb_dim, cfg.dec_hidden_dim, encoder.out_dim,
                                  attention, maxout=cfg.maxout, **shared)
    else:
        decoder = LuongDecoder(tgt_vocab, cfg.emb_dim, cfg.dec_hidden_dim, encoder.out_dim,
                               attention, input_feeding=cfg.input_feeding, **shared)
    return Seq2Seq(encoder, decoder)


def count_parameters(model: nn.Module) -> int:
    """Return the number of trainable parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _human(n: int) -> str:
    """Return n as 12.3M / 45.6K / 789."""
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 1_000:
        return f"{n / 1_000:.1f}K"
    return str(n)


def describe(model: Seq2Seq) -> str:
    """Return a one-line description with the parameter count.

    e.g. "RNNsearch(gru, bi 2x256 → 512, additive attention, bahdanau) 12.3M params".
    """
    enc, dec = model.encoder, model.decoder
    kind = attention_kind(dec.attention)
    if kind == "none":
        name, attention = "RNNencdec", "no attention"
    else:
        name = "RNNsearch" if dec.wiring == "bahdanau" else "Luong"
        attention = f"{kind} attention"
    enc_part = f"{'bi' if enc.bidirectional else 'uni'} {enc.num_dirs}x{enc.hidden_dim}"
    if enc.num_layers > 1:
        enc_part = f"{enc.num_layers}-layer {enc_part}"
    dec_part = str(dec.hidden_dim) if dec.num_layers == 1 else f"{dec.num_layers}-layer {dec.hidden_dim}"
    extras = [] if kind == "none" else [dec.wiring]
    if isinstance(dec, LuongDecoder) and dec.input_feeding:
        extras.append("input feeding")
    if isinstance(dec, BahdanauDecoder) and dec.maxout:
        extras.append("maxout")
    if dec.out.weight is dec.embed.weight:
        extras.append("tied")
    parts = [enc.cell, f"{enc_part} → {dec_part}", attention, *extras]
    return f"{name}({', '.join(parts)}) {_human(count_parameters(model))} params"
