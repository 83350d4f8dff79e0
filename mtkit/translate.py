"""Text in, text out: the run's own tokenizer around `search.decode`, safe line for line.

`Translator` holds a trained model, its tokenizer and its decoding settings; `translate_file`
is what `mtkit translate` runs: lines in, one output line per input line out (or n-best lines),
and optionally one JSON record of attention weights per line, labelled with what those weights are
(`Translator.show_attention`: an RNN's one attention, or a Transformer's cross-attention of one
layer and head, or a mean over them).
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import BinaryIO, Iterator, NamedTuple, TextIO

import numpy as np
import torch
from tqdm import tqdm

from mtkit.checkpoint import load_checkpoint
from mtkit.config import Config, DecodeConfig, update
from mtkit.data.textio import read_lines
from mtkit.data.tokenizer import Tokenizer
from mtkit.device import choose_device
from mtkit.errors import MtkitError
from mtkit.model import Seq2Seq, attention_label
from mtkit.model.transformer import TransformerDecoder
from mtkit.runs import resolve_checkpoint
from mtkit.search import Hypothesis, decode

log = logging.getLogger(__name__)

WEIGHT_DIGITS = 5  # attention weights are written rounded to this many decimals (rows still sum to 1 within 1e-4)


class Translation(NamedTuple):
    """One translated line."""

    text: str  # best hypothesis, detokenized
    hypotheses: list[Hypothesis]  # n-best, best first
    src_pieces: list[str]  # the source pieces the model saw (after any truncation)
    truncated: bool


class Translator:
    """A trained model with its tokenizer and decoding settings."""

    def __init__(self, model: Seq2Seq, tokenizer: Tokenizer, cfg: Config, device: torch.device) -> None:
        self.model, self.tokenizer, self.cfg, self.device = model.eval(), tokenizer, cfg, device

    @classmethod
    def from_checkpoint(cls, path: Path, device: str | None = None) -> "Translator":
        """Return a Translator for the checkpoint file `path`."""
        dev = choose_device(device or "auto")
        ckpt = load_checkpoint(Path(path), dev)
        return cls(ckpt.model, ckpt.tokenizer, ckpt.config, dev)

    @classmethod
    def from_run(cls, run: Path | None = None, checkpoint: str = "best", device: str | None = None) -> "Translator":
        """Return a Translator for a run directory (the latest run when None) and best|last|PATH."""
        return cls.from_checkpoint(resolve_checkpoint(run, checkpoint), device)

    @property
    def has_attention(self) -> bool:
        """True when the model computes attention weights."""
        return self.model.has_attention

    @property
    def attention_shape(self) -> tuple[int, int] | None:
        """Return the (decoder layers, heads) whose cross-attention `show_attention` chooses from; None for an RNN."""
        decoder = self.model.decoder
        if isinstance(decoder, TransformerDecoder):
            return decoder.num_layers, decoder.heads
        return None

    def show_attention(self, layer: int | None = None, head: int | None = None) -> str:
        """Return a label naming the attention weights that translations carry from now on, chosen here.

        A Transformer reports the cross-attention of decoder layer `layer` and head `head`, both
        counted from 1; None averages over all layers (heads), so the default is the mean of every
        head of every layer. An RNN has one attention (or none) and no layers or heads to choose.
        The choice changes only the weights reported, never the translation.
        """
        decoder = self.model.decoder
        if not isinstance(decoder, TransformerDecoder):
            label = attention_label(self.model)
            given = [f"--{name} {value}" for name, value in (("layer", layer), ("head", head)) if value is not None]
            if given:
                what = label if label == "no attention" else f"one {label}"
                raise MtkitError(f"{given[0]}: --layer and --head choose among a Transformer's cross-attentions, but "
                                 f"this run is an RNN with {what}; leave them out")
            return label
        try:
            return decoder.show(None if layer is None else layer - 1, None if head is None else head - 1)
        except ValueError as err:  # "--layer 4: this model has 3 layers (1-3)"
            raise MtkitError(str(err)) from None

    def settings(self, beam: int | None = None, length_penalty: float | None = None,
                 max_len_ratio: float | None = None, batch_size: int | None = None) -> DecodeConfig:
        """Return the run's `decode` settings with the given ones changed (None keeps the run's), checked by key."""
        changes = {"beam": beam, "length_penalty": length_penalty, "max_len_ratio": max_len_ratio,
                   "batch_size": batch_size}
        return update(self.cfg, {f"decode.{key}": value for key, value in changes.items()}).decode

    def translate(self, sentences: list[str], beam: int | None = None, length_penalty: float | None = None,
                  n_best: int = 1, max_len_ratio: float | None = None,
                  batch_size: int | None = None) -> list[Translation]:
        """Return one Translation per sentence, in order (settings left None come from the run's `decode` config)."""
        settings = self.settings(beam, length_penalty, max_len_ratio, batch_size)
        if not 1 <= n_best <= settings.beam:
            raise MtkitError(f"give --n-best between 1 and the beam size (got n-best {n_best}, beam {settings.beam})")
        src_ids = self.tokenizer.encode_src([s.strip() for s in sentences])
        truncated = [len(ids) > settings.max_src_len for ids in src_ids]
        src_ids = [ids[: settings.max_src_len] for ids in src_ids]
        results = decode(self.model, src_ids, settings, n_best=n_best, device=self.device)
        return [
            Translation(self.tokenizer.decode_tgt(hyps[0].tokens), hyps, self.tokenizer.src_pieces(ids), cut)
            for ids, hyps, cut in zip(src_ids, results, truncated)
        ]


def translate_lines(translator: Translator, lines: list[str], *, beam: int | None = None,
                    length_penalty: float | None = None, n_best: int = 1, batch_size: int | None = None,
                    chunk: int = 512) -> Iterator[Translation]:
    """Yield one Translation per line, translating `chunk` lines at a time so output streams.

    An empty or whitespace-only line gives an empty translation; a line longer than
    `decode.max_src_len` pieces is truncated, with a warning that names it.
    """
    limit = translator.cfg.decode.max_src_len
    with tqdm(total=len(lines), desc="translate", unit="line", disable=None, leave=False) as progress:
        for start in range(0, len(lines), chunk):
            batch = lines[start : start + chunk]
            results = translator.translate(batch, beam=beam, length_penalty=length_penalty, n_best=n_best,
                                           batch_size=batch_size)
            for offset, result in enumerate(results):
                if result.truncated:
                    log.warning("line %d: longer than decode.max_src_len = %d pieces; translated its first %d pieces",
                                start + offset + 1, limit, limit)
                yield result
            progress.update(len(batch))


def translate_file(translator: Translator, source: Path | BinaryIO, output: Path | TextIO,
                   attention: Path | None = None, *, layer: int | None = None, head: int | None = None,
                   beam: int | None = None, length_penalty: float | None = None, n_best: int = 1,
                   batch_size: int | None = None) -> int:
    """Translate every line of `source` into `output`; return the number of lines.

    `source` is a file path or a byte stream (stdin): invalid UTF-8 is replaced, never dropped, so
    output line N is always the translation of input line N. With `n_best` > 1 each input line gives
    `n_best` lines 'LINE ||| TEXT ||| LOG_PROB ||| SCORE'. With `attention`, one JSON record per line
    (source and target pieces, the (T, S) weights of the best hypothesis and the label of those
    weights) goes to that file; `layer` and `head` choose a Transformer's weights (see
    `Translator.show_attention`).
    """
    if attention is None and (layer is not None or head is not None):
        raise MtkitError("--layer and --head choose the attention weights that --attention writes; "
                         "add --attention FILE or leave them out")
    if attention is not None and not translator.has_attention:
        raise MtkitError("this model has no attention (model.attention.kind = none), so it has no weights to write; "
                         "drop --attention")
    label = translator.show_attention(layer, head)
    if isinstance(source, Path):
        lines = read_lines(source, name=f"--input {source}", errors="replace")
    else:
        lines = read_lines(source, errors="replace")
    with contextlib.ExitStack() as files:
        out = files.enter_context(_open_for_writing(output, "--output")) if isinstance(output, Path) else output
        attn = files.enter_context(_open_for_writing(attention, "--attention")) if attention is not None else None
        results = translate_lines(translator, lines, beam=beam, length_penalty=length_penalty, n_best=n_best,
                                  batch_size=batch_size)
        for number, result in enumerate(results, start=1):
            out.write(_output_lines(translator, number, result, n_best))
            if attn is not None:
                attn.write(attention_record(translator, number, result, label) + "\n")
        out.flush()
    return len(lines)


def _output_lines(translator: Translator, number: int, result: Translation, n_best: int) -> str:
    if n_best == 1:
        return result.text + "\n"
    return "".join(f"{number} ||| {translator.tokenizer.decode_tgt(hyp.tokens)} ||| {hyp.log_prob:.4f} ||| "
                   f"{hyp.score:.4f}\n" for hyp in result.hypotheses)


def attention_record(translator: Translator, line: int, result: Translation, attention: str) -> str:
    """Return one JSON line: source and target pieces, the (T, S) weights of the best hypothesis, and
    `attention`, the label saying which weights they are (from `Translator.show_attention`)."""
    hyp = result.hypotheses[0]
    weights = rounded_weights(hyp.attention) if hyp.attention is not None else []
    return json.dumps({
        "line": line, "source": result.src_pieces, "target": translator.tokenizer.tgt_pieces(hyp.tokens),
        "attention": attention, "weights": weights,
        "translation": result.text,
    }, ensure_ascii=False)


def rounded_weights(weights: torch.Tensor | np.ndarray) -> list[list[float]]:
    """Return a (T, S) weight matrix as nested lists, rounded to `WEIGHT_DIGITS` decimals in one vectorised step."""
    matrix = weights.detach().float().cpu().numpy() if isinstance(weights, torch.Tensor) else np.asarray(weights)
    return np.round(matrix.astype(np.float64), WEIGHT_DIGITS).tolist()  # (T, S)


def _open_for_writing(path: Path, option: str) -> TextIO:
    """Return `path` opened for UTF-8 text output, its directory made if needed; a failure names the option."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w", encoding="utf-8")
    except OSError as err:
        raise MtkitError(f"{option} {path}: cannot write the file ({err.strerror})") from None
