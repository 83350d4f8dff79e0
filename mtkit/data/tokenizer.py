"""SentencePiece subword models: train on the training split, load, text ⇄ ids.

The ids of the special pieces are the same everywhere in mtkit (data, model, search):
pad 0, unk 1, bos 2, eos 3.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal

import sentencepiece as spm

from mtkit.errors import MtkitError

PAD, UNK, BOS, EOS = 0, 1, 2, 3
WORD_START = "▁"  # SentencePiece's mark for a piece that begins a word

log = logging.getLogger(__name__)


@dataclass
class Tokenizer:
    """Source and target SentencePiece models (the same one when joint), held as serialized bytes."""

    src_proto: bytes
    tgt_proto: bytes
    _src: spm.SentencePieceProcessor = field(init=False, repr=False)
    _tgt: spm.SentencePieceProcessor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._src = spm.SentencePieceProcessor(model_proto=self.src_proto)
        self._tgt = (
            self._src if self.tgt_proto == self.src_proto
            else spm.SentencePieceProcessor(model_proto=self.tgt_proto)
        )
        for side in (self._src, self._tgt):
            if (side.pad_id(), side.unk_id(), side.bos_id(), side.eos_id()) != (PAD, UNK, BOS, EOS):
                raise MtkitError("SentencePiece model has unexpected special ids; retrain it with `mtkit prepare`")

    @property
    def joint(self) -> bool:
        """True when source and target share one model."""
        return self._src is self._tgt

    @property
    def src_vocab(self) -> int:
        """Return the source vocabulary size."""
        return self._src.get_piece_size()

    @property
    def tgt_vocab(self) -> int:
        """Return the target vocabulary size."""
        return self._tgt.get_piece_size()

    def encode_src(self, texts: list[str]) -> list[list[int]]:
        """Return source piece ids for each text (no bos/eos)."""
        return self._src.encode(texts)

    def encode_tgt(self, texts: list[str]) -> list[list[int]]:
        """Return target piece ids for each text (no bos/eos)."""
        return self._tgt.encode(texts)

    def decode_tgt(self, ids: list[int]) -> str:
        """Return the detokenized text of target ids (special ids dropped)."""
        return self._tgt.decode([i for i in ids if i > EOS])

    def src_pieces(self, ids: list[int]) -> list[str]:
        """Return the source pieces of ids, for display."""
        return [self._src.id_to_piece(i) for i in ids]

    def tgt_pieces(self, ids: list[int]) -> list[str]:
        """Return the target pieces of ids, for display."""
        return [self._tgt.id_to_piece(i) for i in ids]

    def save(self, directory: Path) -> None:
        """Write the model(s) as `spm.model` (joint) or `src.model` and `tgt.model`."""
        directory.mkdir(parents=True, exist_ok=True)
        if self.joint:
            (directory / "spm.model").write_bytes(self.src_proto)
        else:
            (directory / "src.model").write_bytes(self.src_proto)
            (directory / "tgt.model").write_bytes(self.tgt_proto)

    @classmethod
    def load(cls, directory: Path) -> "Tokenizer":
        """Return the tokenizer saved in `directory` by `save`."""
        joint = directory / "spm.model"
        if joint.is_file():
            proto = joint.read_bytes()
            return cls(proto, proto)
        src, tgt = directory / "src.model", directory / "tgt.model"
        if not (src.is_file() and tgt.is_file()):
            raise MtkitError(f"{directory}: no SentencePiece model (spm.model or src.model/tgt.model); run `mtkit prepare`")
        return cls(src.read_bytes(), tgt.read_bytes())


def train_sentencepiece(
    texts: Iterable[str],
    vocab_size: int,
    model_type: Literal["bpe", "unigram"] = "bpe",
    character_coverage: float = 1.0,
    max_sentences: int = 200_000,
    seed: int = 0,
) -> bytes:
    """Return a serialized SentencePiece model trained on `texts`.

    The vocabulary size is a soft limit, so a small corpus gives a smaller vocabulary instead of
    failing; the size reached is logged.
    """
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise MtkitError("cannot train a tokenizer on an empty training split")
    buffer = io.BytesIO()
    spm.set_random_generator_seed(seed)  # sentence sampling is then repeatable
    try:
        _train(texts, buffer, vocab_size, model_type, character_coverage, max_sentences)
    except RuntimeError as err:  # SentencePiece reports a too-small vocabulary as a RuntimeError
        raise MtkitError(f"tokenizer.vocab_size = {vocab_size}: SentencePiece could not train "
                         f"({str(err).splitlines()[0]}); raise tokenizer.vocab_size") from None
    return buffer.getvalue()


def _train(texts: list[str], buffer: io.BytesIO, vocab_size: int, model_type: str, character_coverage: float,
           max_sentences: int) -> None:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=buffer,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        input_sentence_size=max_sentences,
        shuffle_input_sentence=True,
        hard_vocab_limit=False,
        pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS,
        num_threads=2,
        minloglevel=2,
    )


def train_tokenizer(
    src_texts: list[str],
    tgt_texts: list[str],
    vocab_size: int,
    model_type: Literal["bpe", "unigram"] = "bpe",
    joint: bool = True,
    character_coverage: float = 1.0,
    max_sentences: int = 200_000,
    seed: int = 0,
) -> Tokenizer:
    """Return a Tokenizer trained on the training texts: one joint model or one per side."""
    kwargs = dict(model_type=model_type, character_coverage=character_coverage, seed=seed)
    if joint:
        proto = train_sentencepiece(src_texts + tgt_texts, vocab_size, max_sentences=2 * max_sentences, **kwargs)
        tokenizer = Tokenizer(proto, proto)
    else:
        tokenizer = Tokenizer(
            train_sentencepiece(src_texts, vocab_size, max_sentences=max_sentences, **kwargs),
            train_sentencepiece(tgt_texts, vocab_size, max_sentences=max_sentences, **kwargs),
        )
    log.info("tokenizer: %s %s, vocabulary %d / %d", "joint" if joint else "separate", model_type,
             tokenizer.src_vocab, tokenizer.tgt_vocab)
    return tokenizer
