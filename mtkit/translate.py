"""Text in, text out: the run's own tokenizer around `search.decode`, safe line for line.

`Translator` holds a trained model, its tokenizer and its decoding settings; `translate_file`
is what `mtkit translate` runs: lines in, one output line per input line out (or n-best lines),
and optionally one JSON record of attention weights per line.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import BinaryIO, Iterator, NamedTuple, TextIO

import torch
from tqdm import tqdm

from mtkit.checkpoint import load_checkpoint
from mtkit.config import Config, DecodeConfig, update
from mtkit.data.textio import read_lines
from mtkit.data.tokenizer import Tokenizer
from mtkit.device import choose_device
from mtkit.errors import MtkitError
from mtkit.model import Seq2Seq
from mtkit.runs import resolve_checkpoint
from mtkit.search import Hypothesis, decode

log = logging.getLogger(__name__)


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
                   attention: Path | None = None, *, beam: int | None = None, length_penalty: float | None = None,
                   n_best: int = 1, batch_size: int | None = None) -> int:
    """Translate every line of `source` into `output`; return the number of lines.

    `source` is a file path or a byte stream (stdin): invalid UTF-8 is replaced, never dropped, so
    output line N is always the translation of input line N. With `n_best` > 1 each input line gives
    `n_best` lines 'LINE ||| TEXT ||| LOG_PROB ||| SCORE'. With `attention`, one JSON record per line
    (source and target pieces, the (T, S) weights of the best hypothesis) goes to that file.
    """
    if attention is not None and not translator.has_attention:
        raise MtkitError("this model has no attention (model.attention.kind = none), so it has no weights to write; "
                         "drop --attention")
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
                attn.write(attention_record(translator, number, result) + "\n")
        out.flush()
    return len(lines)


def _output_lines(translator: Translator, number: int, result: Translation, n_best: int) -> str:
    if n_best == 1:
        return result.text + "\n"
    return "".join(f"{number} ||| {translator.tokenizer.decode_tgt(hyp.tokens)} ||| {hyp.log_prob:.4f} ||| "
                   f"{hyp.score:.4f}\n" for hyp in result.hypotheses)


def attention_record(translator: Translator, line: int, result: Translation) -> str:
    """Return one JSON line: source and target pieces and the (T, S) weight matrix of the best hypothesis."""
    hyp = result.hypotheses[0]
    weights = hyp.attention.tolist() if hyp.attention is not None else []
    return json.dumps({
        "line": line, "source": result.src_pieces, "target": translator.tokenizer.tgt_pieces(hyp.tokens),
        "weights": [[round(w, 5) for w in row] for row in weights], "translation": result.text,
    }, ensure_ascii=False)


def _open_for_writing(path: Path, option: str) -> TextIO:
    """Return `path` opened for UTF-8 text output, its directory made if needed; a failure names the option."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w", encoding="utf-8")
    except OSError as err:
        raise MtkitError(f"{option} {path}: cannot write the file ({err.strerror})") from None
