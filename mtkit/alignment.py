"""`mtkit attention`: translate a sentence (or read a saved record) and draw its attention.

A record says which attention its weights are (an RNN's one attention, or a Transformer's
cross-attention of one decoder layer and head, or a mean), and the plots' titles repeat it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mtkit.data.textio import read_lines
from mtkit.errors import MtkitError

log = logging.getLogger(__name__)

UNNAMED = "attention (the record does not say which)"  # records written before they carried a label


class AttentionRecord(NamedTuple):
    """One sentence's attention: pieces (or words) and a (T, S) weight matrix."""

    source: list[str]
    target: list[str]
    weights: np.ndarray  # (T, S), each row sums to 1
    translation: str
    attention: str = UNNAMED  # which weights: "additive attention", "cross-attention, layer 2 of 3, head 1 of 4", …


def record_from_model(sentence: str, run: Path | None = None, checkpoint: str = "best", beam: int = 1,
                      layer: int | None = None, head: int | None = None) -> AttentionRecord:
    """Return the attention of the run's translation of `sentence`, labelled.

    `layer` and `head` (1-based) choose a Transformer's cross-attention; None averages (see
    `Translator.show_attention`).
    """
    from mtkit.translate import Translator

    translator = Translator.from_run(run, checkpoint)
    if not translator.has_attention:
        raise MtkitError("this model has no attention (model.attention.kind = none): its decoder sees the source only "
                         "through one fixed vector, so there are no weights to plot. Use a run with attention.")
    if not sentence.strip():
        raise MtkitError("the sentence to translate is empty")
    label = translator.show_attention(layer, head)
    result = translator.translate([sentence], beam=beam)[0]
    hyp = result.hypotheses[0]
    if hyp.attention is None or not hyp.tokens:
        raise MtkitError(f"the model produced an empty translation for {sentence!r}: nothing to plot")
    return AttentionRecord(result.src_pieces, translator.tokenizer.tgt_pieces(hyp.tokens),
                           hyp.attention.numpy(), result.text, label)


def sentence_from_file(path: Path, line: int = 1) -> str:
    """Return line `line` (1-based) of a text file, the sentence `mtkit attention --input F --line N` draws."""
    lines = read_lines(path, name=f"--input {path}")
    if line > len(lines):
        raise MtkitError(f"--input {path} has {len(lines)} lines; --line {line} is past the end")
    return lines[line - 1]


def record_from_json(path: Path, line: int = 1) -> AttentionRecord:
    """Return record number `line` (1-based) of a `mtkit translate --attention` JSON-lines file."""
    path = Path(path)
    if not path.is_file():
        raise MtkitError(f"{path}: no such attention file (write one with `mtkit translate --attention FILE`)")
    if line < 1:
        raise MtkitError(f"--line {line}: lines count from 1")
    count = 0
    with open(path, "rb") as handle:  # bytes: a bad line elsewhere in the file must not stop this one
        for count, raw in enumerate(handle, start=1):
            if count == line:
                return _parse_record(raw, f"{path} line {line}")
    raise MtkitError(f"{path} has {count} line(s); --line {line} is past the end")


def _parse_record(raw: bytes, where: str) -> AttentionRecord:
    """Return the record in one JSON line, checked: the weights must be a (T, S) matrix of the pieces."""
    how = "give a file written by `mtkit translate --attention FILE`"
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise MtkitError(f"{where}: not UTF-8 text; {how}") from None
    except json.JSONDecodeError as err:
        raise MtkitError(f"{where}: not an mtkit attention record ({err}); {how}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("source", "target", "weights")):
        raise MtkitError(f"{where}: not an mtkit attention record (it needs the lists \"source\", \"target\" and "
                         f"\"weights\"); {how}")
    source, target = [str(p) for p in data["source"]], [str(p) for p in data["target"]]
    if not target:
        raise MtkitError(f"{where}: the translation is empty, so there is no attention to plot")
    try:
        weights = np.asarray(data["weights"], dtype=float)  # (T, S)
    except (TypeError, ValueError):
        weights = None
    if weights is None or weights.shape != (len(target), len(source)):
        raise MtkitError(f"{where}: \"weights\" is not a {len(target)}×{len(source)} matrix (one row per target "
                         f"piece, one column per source piece); {how}")
    label = data.get("attention")
    return AttentionRecord(source, target, weights, str(data.get("translation", "")),
                           label if isinstance(label, str) and label else UNNAMED)


def to_words(record: AttentionRecord) -> AttentionRecord:
    """Return the record with SentencePiece pieces merged into words (see `plots.merge_subwords`)."""
    from mtkit.plots import merge_subwords

    src, tgt, weights = merge_subwords(record.source, record.target, record.weights)
    return record._replace(source=src, target=tgt, weights=weights)


def draw(record: AttentionRecord, out_dir: Path, stem: str = "attention", threshold: float = 0.05) -> list[Path]:
    """Write `<stem>_heatmap.png` and `<stem>_lines.png` into `out_dir`; return their paths.

    Each title gives the translation and, on a second line, which attention is drawn.
    """
    from mtkit.plots import plot_alignment_lines, plot_attention_heatmap

    if record.weights.size == 0:
        raise MtkitError("the record has no attention weights (empty translation?)")
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        plot_attention_heatmap(record.source, record.target, record.weights, out_dir / f"{stem}_heatmap.png",
                               title=f"Attention: {record.translation[:80]}\n{record.attention}"),
        plot_alignment_lines(record.source, record.target, record.weights, out_dir / f"{stem}_lines.png",
                             threshold=threshold, title=f"Alignment: {record.translation[:80]}\n{record.attention}"),
    ]
