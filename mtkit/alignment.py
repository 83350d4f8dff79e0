"""`mtkit attention`: translate a sentence (or read a saved record) and draw its attention."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mtkit.errors import MtkitError

log = logging.getLogger(__name__)


class AttentionRecord(NamedTuple):
    """One sentence's attention: pieces (or words) and a (T, S) weight matrix."""

    source: list[str]
    target: list[str]
    weights: np.ndarray  # (T, S), each row sums to 1
    translation: str


def record_from_model(sentence: str, run: Path | None = None, checkpoint: str = "best", beam: int = 1) -> AttentionRecord:
    """Return the attention of the run's translation of `sentence`."""
    from mtkit.translate import Translator

    translator = Translator.from_run(run, checkpoint)
    if not translator.has_attention:
        raise MtkitError("this model has no attention (model.attention.kind = none): its decoder sees the source only "
                         "through one fixed vector, so there are no weights to plot. Use a run with attention.")
    if not sentence.strip():
        raise MtkitError("the sentence to translate is empty")
    result = translator.translate([sentence], beam=beam)[0]
    hyp = result.hypotheses[0]
    if hyp.attention is None or not hyp.tokens:
        raise MtkitError(f"the model produced an empty translation for {sentence!r}: nothing to plot")
    return AttentionRecord(result.src_pieces, translator.tokenizer.tgt_pieces(hyp.tokens),
                           hyp.attention.numpy(), result.text)


def record_from_json(path: Path, line: int = 1) -> AttentionRecord:
    """Return record number `line` (1-based) of a `mtkit translate --attention` JSON-lines file."""
    if not Path(path).is_file():
        raise MtkitError(f"{path}: no such attention file (write one with `mtkit translate --attention FILE`)")
    with open(path, encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if number == line:
                try:
                    data = json.loads(text)
                    return AttentionRecord(data["source"], data["target"], np.asarray(data["weights"], dtype=float),
                                           data.get("translation", ""))
                except (json.JSONDecodeError, KeyError) as err:
                    raise MtkitError(f"{path} line {line}: not an mtkit attention record ({err})") from None
    raise MtkitError(f"{path} has fewer than {line} lines (--line {line})")


def to_words(record: AttentionRecord) -> AttentionRecord:
    """Return the record with SentencePiece pieces merged into words (see `plots.merge_subwords`)."""
    from mtkit.plots import merge_subwords

    src, tgt, weights = merge_subwords(record.source, record.target, record.weights)
    return AttentionRecord(src, tgt, weights, record.translation)


def draw(record: AttentionRecord, out_dir: Path, stem: str = "attention", threshold: float = 0.05) -> list[Path]:
    """Write `<stem>_heatmap.png` and `<stem>_lines.png` into `out_dir`; return their paths."""
    from mtkit.plots import plot_alignment_lines, plot_attention_heatmap

    if record.weights.size == 0:
        raise MtkitError("the record has no attention weights (empty translation?)")
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        plot_attention_heatmap(record.source, record.target, record.weights, out_dir / f"{stem}_heatmap.png",
                               title=f"Attention: {record.translation[:80]}"),
        plot_alignment_lines(record.source, record.target, record.weights, out_dir / f"{stem}_lines.png",
                             threshold=threshold, title=f"Alignment: {record.translation[:80]}"),
    ]
