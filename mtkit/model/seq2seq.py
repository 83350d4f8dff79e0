"""Seq2Seq ties an encoder to a decoder; build_model is the one place that reads ModelConfig."""

from __future__ import annotations

from torch import Tensor, nn

from mtkit.config import ModelConfig, check_model
from mtkit.model.attention import attention_kind, make_attention
from mtkit.model.decoder import BahdanauDecoder, Decoder, DecoderSettings, DecoderState, LuongDecoder, Memory
from mtkit.model.encoder import Encoder
from mtkit.model.transformer import TransformerDecoder, TransformerEncoder


class Seq2Seq(nn.Module):
    """An encoder-decoder translation model; search calls `encode` then `decoder.step`.

    An RNN (Encoder, a Decoder subclass) or a Transformer (TransformerEncoder, TransformerDecoder):
    both decoders take the same calls, so training and search do not ask which.
    """

    def __init__(self, encoder: Encoder | TransformerEncoder, decoder: Decoder | TransformerDecoder) -> None:
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
    if cfg.arch == "transformer":
        return _build_transformer(cfg, src_vocab, tgt_vocab, pad_id)
    encoder = Encoder(src_vocab, cfg.emb_dim, cfg.hidden_dim, cfg.enc_layers, cfg.bidirectional,
                      cfg.cell, cfg.dropout, pad_id)
    attention = make_attention(cfg.attention.kind, query_dim=cfg.dec_hidden_dim,
                               key_dim=encoder.out_dim, dim=cfg.attention.dim)
    settings = DecoderSettings(num_layers=cfg.dec_layers, cell=cfg.cell, init=cfg.init, out_dim=cfg.out_dim,
                               dropout=cfg.dropout, pad_id=pad_id, tie_embeddings=cfg.tie_embeddings)
    decoder: Decoder
    if cfg.decoder == "bahdanau":
        decoder = BahdanauDecoder(tgt_vocab, cfg.emb_dim, cfg.dec_hidden_dim, encoder.out_dim, attention, settings,
                                  maxout=cfg.maxout)
    else:
        decoder = LuongDecoder(tgt_vocab, cfg.emb_dim, cfg.dec_hidden_dim, encoder.out_dim, attention, settings,
                               input_feeding=cfg.input_feeding)
    return Seq2Seq(encoder, decoder)


def _build_transformer(cfg: ModelConfig, src_vocab: int, tgt_vocab: int, pad_id: int) -> Seq2Seq:
    t = cfg.transformer
    shape = dict(d_model=t.d_model, heads=t.heads, ff_dim=t.ff_dim, dropout=cfg.dropout,
                 attention_dropout=t.attention_dropout, positions=t.positions, max_positions=t.max_positions,
                 pad_id=pad_id)
    encoder = TransformerEncoder(src_vocab, layers=t.enc_layers, **shape)
    decoder = TransformerDecoder(tgt_vocab, layers=t.dec_layers, tie_embeddings=cfg.tie_embeddings, **shape)
    if t.share_embeddings:
        if src_vocab != tgt_vocab:
            raise ValueError(f"shared embeddings need one vocabulary, got {src_vocab} source and {tgt_vocab} "
                             "target pieces")
        decoder.embed.tokens.weight = encoder.embed.tokens.weight
        if cfg.tie_embeddings:  # the projection was tied to the decoder's own matrix, now replaced
            decoder.out.weight = encoder.embed.tokens.weight
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
    if isinstance(dec, TransformerDecoder):
        return _describe_transformer(model)
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


def attention_label(model: Seq2Seq) -> str:
    """Return what the attention weights of the model's steps are, in words.

    "additive attention" (an RNN's one attention, by kind), "no attention", or for a Transformer
    the cross-attention its decoder now shows, e.g. "cross-attention, mean of 3 layers, mean of 4 heads".
    """
    dec = model.decoder
    if isinstance(dec, TransformerDecoder):
        return dec.show(*dec.shown)  # the label of the current choice; choosing it again changes nothing
    kind = attention_kind(dec.attention)
    return "no attention" if kind == "none" else f"{kind} attention"


def _describe_transformer(model: Seq2Seq) -> str:
    """e.g. "Transformer(3+3 layers, d 128, 4 heads, ff 512, sinusoidal, tied) 2.4M params"."""
    enc, dec = model.encoder, model.decoder
    ff = dec.layers[0].ff[0].out_features
    extras = ["learned positions" if dec.embed.learned is not None else "sinusoidal"]
    if dec.embed.tokens.weight is enc.embed.tokens.weight:
        extras.append("shared")
    if dec.out.weight is dec.embed.tokens.weight:
        extras.append("tied")
    parts = [f"{enc.num_layers}+{dec.num_layers} layers", f"d {dec.out_dim}", f"{dec.heads} heads", f"ff {ff}", *extras]
    return f"Transformer({', '.join(parts)}) {_human(count_parameters(model))} params"
