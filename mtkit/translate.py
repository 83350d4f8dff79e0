"""Text in, text out: the run's own tokenizer around `search.decode`, safe line for line."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import BinaryIO, Iterator, NamedTuple, TextIO

import torch
from tqdm import tqdm

from mtkit.checkpoint import load_checkpoint
from mtkit.config import Config
from mtkit.data.tokenizer import Tokenizer
from mtkit.errors import MtkitError
from mtkit.model import Seq2Seq
from mtkit.search import Hypothesis, decode
from mtkit.train import choose_device, read_latest

log = logging.getLogger(__name__)


class Translation(NamedTuple):
    """One translated line."""

    text: str  # best hypothesis, detokenized
    hypotheses: list[Hypothesis]  # n-best, best first
    src_pieces: list[str]  # the source pieces the model saw (after any truncation)
    truncated: bool


def resolve_checkpoint(run: Path | None, checkpoint: str = "best") -> Path:
    """Return the checkpoint file named by a run directory (latest when None) and best|last|PATH."""
    if checkpoint not in ("best", "last"):
        path = Path(checkpoint)
        if not path.is_file():
            raise MtkitError(f"--checkpoint {checkpoint}: no such file (use best, last or a path to a .pt file)")
        return path
    run_dir = run if run is not None else read_latest()
    if run is None:
        log.info("using the latest run, %s", run_dir)
    path = run_dir / f"{checkpoint}.pt"
    if not path.is_file():
        raise MtkitError(f"{path} does not exist; has the run in {run_dir} saved a checkpoint yet?")
    return path


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

    def translate(
        self,
        sentences: list[str],
        beam: int | None = None,
        length_penalty: float | None = None,
        n_best: int = 1,
        max_len_ratio: float | None = None,
        batch_size: int | None = None,
    ) -> list[Translation]:
        """Return one Translation per sentence, in order (settings default to the run's `decode` config)."""
        d = self.cfg.decode
        beam = d.beam if beam is None else beam
        batch_size = d.batch_size if batch_size is None else batch_size
        if beam < 1 or n_best < 1 or n_best > beam:
            raise MtkitError(f"--beam must be ≥ 1 and --n-best between 1 and the beam size (got beam {beam}, n-best {n_best})")
        if batch_size < 1:  # decode() would skip every batch and return empty translations
            raise MtkitError(f"--batch-size must be ≥ 1 (got {batch_size})")
        src_ids = self.tokenizer.encode_src([s.strip() for s in sentences])
        truncated = [len(ids) > d.max_src_len for ids in src_ids]
        src_ids = [ids[: d.max_src_len] for ids in src_ids]
        results = decode(
            self.model, src_ids, beam=beam, n_best=n_best,
            length_penalty=d.length_penalty if length_penalty is None else length_penalty,
            max_len_ratio=d.max_len_ratio if max_len_ratio is None else max_len_ratio,
            max_len_extra=d.max_len_extra, batch_size=batch_size, device=self.device,
        )
        return [
            Translation(self.tokenizer.decode_tgt(hyps[0].tokens), hyps, self.tokenizer.src_pieces(ids), cut)
            for ids, hyps, cut in zip(src_ids, results, truncated)
        ]


def read_lines(stream: BinaryIO, name: str = "<stdin>") -> list[str]:
    """Return the lines of a byte stream as text: CRLF and a BOM handled, invalid UTF-8 replaced with a warning."""
    lines = []
    bad = []
    for number, raw in enumerate(stream, start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
            bad.append(number)
        lines.append(text.rstrip("\r\n"))
    if bad:
        shown = ", ".join(map(str, bad[:20])) + (" ..." if len(bad) > 20 else "")
        log.warning("%s: invalid UTF-8 replaced with U+FFFD on %d line(s): %s", name, len(bad), shown)
    return lines


def translate_lines(
    translator: Translator,
    lines: list[str],
    chunk: int = 512,
    **options: object,
) -> Iterator[Translation]:
    """Yield one Translation per line, translating `chunk` lines at a time so output streams.

    An empty or whitespace-only line gives an empty translation; a line longer than
    `decode.max_src_len` pieces is truncated, with a warning that names it.
    """
    with tqdm(total=len(lines), desc="translate", unit="line", disable=None, leave=False) as progress:
        for start in range(0, len(lines), chunk):
            batch = lines[start : start + chunk]
            for offset, result in enumerate(translator.translate(batch, **options)):  # type: ignore[arg-type]
                if result.truncated:
                    log.warning("line %d: longer than decode.max_src_len = %d pieces; translated its first %d pieces",
                                start + offset + 1, translator.cfg.decode.max_src_len,
                                translator.cfg.decode.max_src_len)
                yield result
            progress.update(len(batch))


def write_attention(handle: TextIO, line: int, translator: Translator, result: Translation) -> None:
    """Append one JSON line: source and target pieces and the (T, S) weight matrix of the best hypothesis."""
    hyp = result.hypotheses[0]
    weights = hyp.attention.tolist() if hyp.attention is not None else []
    handle.write(json.dumps({
        "line": line, "source": result.src_pieces, "target": translator.tokenizer.tgt_pieces(hyp.tokens),
        "weights": [[round(w, 5) for w in row] for row in weights], "translation": result.text,
    }, ensure_ascii=False) + "\n")
