"""Figures from evaluation results and attention weights.

Functions here take numbers (SystemScore records, (T, S) weight matrices), never a model,
and write PNG files. `text_grid` draws the same attention matrix in the terminal.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mtkit.errors import MtkitError
from mtkit.evaluate import PositionLoss, SystemScore

WORD_START = "\u2581"  # SentencePiece's "▁" marks a piece that begins a word
DPI = 150
SHADES = " ░▒▓█"
Weights = np.ndarray | Sequence[Sequence[float]]


def _as_matrix(weights: Weights, num_tgt: int, num_src: int) -> np.ndarray:
    matrix = np.asarray(weights, dtype=np.float64)
    if matrix.shape != (num_tgt, num_src):
        raise ValueError(f"attention weights have shape {matrix.shape}, expected (T, S) = "
                         f"({num_tgt}, {num_src}) from {num_tgt} target and {num_src} source tokens")
    return matrix  # (T, S)


def _figure(**kwargs) -> Figure:
    # A Figure of its own, not pyplot's: it needs no backend, so importing or calling this module leaves the
    # process's matplotlib backend (a notebook's inline plots) as it was, and nothing is kept open afterwards.
    return Figure(layout="constrained", **kwargs)


def _save(fig: Figure, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # No bbox_inches="tight": the PNG keeps the figure size, so callers know its pixel size.
    fig.savefig(out, dpi=DPI)
    return out


def plot_bleu_by_length(systems: Sequence[SystemScore], out: Path,
                        title: str = "BLEU by source sentence length") -> Path:
    """Return `out` after drawing BLEU per length bucket, one line with a 95% CI band per system.

    The bucket's sentence count is printed under each x tick label; empty buckets leave a gap.
    """
    fig = _figure(figsize=(8, 5))
    ax = fig.subplots()
    _draw_bleu_by_length(ax, systems, title)
    return _save(fig, out)


class Curve(NamedTuple):
    """One run's validations against wall-clock time."""

    name: str
    minutes: Sequence[float]
    dev_bleu: Sequence[float]  # greedy BLEU on the first train.valid_bleu_sentences dev sentences
    dev_loss: Sequence[float]  # per target token


def plot_training_curves(curves: Sequence[Curve], out: Path) -> Path:
    """Return `out` after drawing dev BLEU and dev loss against training minutes, one line per run."""
    if not curves:
        raise ValueError("plotting training curves needs at least one run")
    fig = _figure(figsize=(12, 4.5))
    left, right = fig.subplots(1, 2)
    for curve in curves:
        (line,) = left.plot(curve.minutes, curve.dev_bleu, marker=".", label=curve.name)
        right.plot(curve.minutes, curve.dev_loss, marker=".", color=line.get_color(), label=curve.name)
    for ax, what in ((left, "dev BLEU (greedy)"), (right, "dev loss per target token")):
        ax.set_xlabel("training wall-clock minutes (validation time included)")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
        ax.legend()
    left.set_ylim(bottom=0)
    left.set_title("quality per minute")
    right.set_title("dev cross-entropy (unsmoothed, whatever the training loss)")
    return _save(fig, out)


def plot_length_study(verses: Sequence[SystemScore], passages: Sequence[SystemScore], out: Path) -> Path:
    """Return `out` after drawing the study's two panels side by side, on one BLEU scale.

    (a) BLEU by source length on single verses (different verses in each bucket); (b) the paired curve:
    BLEU of the same verses translated alone and inside passages of k verses, at the mean input length of
    each k, with the paired band BLEU_1 × [the 95% window-bootstrap interval of BLEU_k / BLEU_1].
    """
    fig = _figure(figsize=(14, 5))
    left, right = fig.subplots(1, 2, sharey=True)
    _draw_bleu_by_length(left, verses, "(a) single verses: BLEU by source length (other verses in each bucket)")
    _draw_paired(right, passages)
    return _save(fig, out)


def _draw_paired(ax: Axes, systems: Sequence[SystemScore]) -> None:
    if not systems or not systems[0].paired:
        raise MtkitError("the paired panel needs passage scores with paired ratios (mtkit eval --passages)")
    for system in systems:
        x = np.array([p.mean_src_words for p in system.paired])
        bleu = np.array([p.bleu for p in system.paired])
        base = system.paired[0].bleu  # k = 1
        nan = float("nan")
        low = np.array([nan if p.ci_low is None else base * p.ci_low for p in system.paired])
        high = np.array([nan if p.ci_high is None else base * p.ci_high for p in system.paired])
        (line,) = ax.plot(x, bleu, marker="o", label=system.name)
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    first = systems[0].paired
    ax.set_xticks([p.mean_src_words for p in first],
                  [f"k={p.k}\n{p.mean_src_words:.0f} words" for p in first])
    ax.set_xlabel(f"verses per input (mean source words); the same {first[0].inputs} verses of "
                  f"{systems[0].windows} windows at every k")
    ax.set_ylabel("BLEU")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="shaded: BLEU(k=1) × 95% paired interval of BLEU(k)/BLEU(k=1)")
    ax.set_title("(b) the same verses alone and inside passages of k consecutive verses")


def plot_position_losses(losses: dict[str, Sequence[PositionLoss]], out: Path) -> Path:
    """Return `out` after drawing each system's loss increase over "alone" per k and position, with 95% intervals."""
    names = list(losses)
    if not names or not losses[names[0]]:
        raise MtkitError("plotting position losses needs at least one system with passage losses")
    slots = [(p.k, p.position) for p in losses[names[0]]]
    x = np.arange(len(slots))
    fig = _figure(figsize=(max(6.0, 1.1 * len(slots) + 2), 4.5))
    ax = fig.subplots()
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        rows = losses[name]
        y = np.array([p.increase for p in rows])
        low = np.array([p.increase if p.ci_low is None else p.ci_low for p in rows])
        high = np.array([p.increase if p.ci_high is None else p.ci_high for p in rows])
        ax.errorbar(x + (i - (len(names) - 1) / 2) * width, y, yerr=[y - low, high - y], fmt="o", capsize=3,
                    label=name)
    ax.axhline(0.0, color="0.5", linewidth=0.8)
    ax.set_xticks(x, [f"k={k}\n{position}" for k, position in slots])
    ax.set_xlabel("verses per input, and where in the passage the verse stands")
    ax.set_ylabel("loss increase over the verse alone\n(nats per reference piece)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="bars: 95% paired window bootstrap")
    ax.set_title("Teacher-forced loss of the same verses inside passages, by position")
    return _save(fig, out)


def _draw_bleu_by_length(ax: Axes, systems: Sequence[SystemScore], title: str) -> None:
    if not systems:
        raise ValueError("plotting BLEU by length needs at least one SystemScore")
    labels = [b.label for b in systems[0].buckets]
    x = np.arange(len(labels))
    for system in systems:
        if [b.label for b in system.buckets] != labels:
            raise MtkitError(f"System {system.name!r} has length buckets "
                             f"{[b.label for b in system.buckets]} but {systems[0].name!r} has {labels}; "
                             "evaluate all systems with the same edges to plot them together.")
        nan = float("nan")  # None → NaN breaks the line and the band: a gap for an empty bucket
        bleu = np.array([nan if b.bleu is None else b.bleu for b in system.buckets])
        low = np.array([nan if b.ci_low is None else b.ci_low for b in system.buckets])
        high = np.array([nan if b.ci_high is None else b.ci_high for b in system.buckets])
        (line,) = ax.plot(x, bleu, marker="o", label=system.name)
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)

    counts = [{s.buckets[i].count for s in systems} for i in range(len(labels))]
    ax.set_xticks(x, [f"{label}\nn={'/'.join(map(str, sorted(c)))}" for label, c in zip(labels, counts)])
    side = "reference" if systems[0].length_of == "ref" else "source"
    ax.set_xlabel(f"{side} sentence length (words); n = sentences per bucket")
    ax.set_ylabel("BLEU")
    ax.set_ylim(bottom=0)
    ax.set_xlim(-0.5, len(labels) - 0.5)
    ax.grid(axis="y", alpha=0.3)
    has_ci = any(b.ci_low is not None for s in systems for b in s.buckets)
    ax.legend(title="shaded: 95% bootstrap CI" if has_ci else None)
    ax.set_title(title)


def _is_control(piece: str) -> bool:
    return len(piece) > 2 and piece.startswith("<") and piece.endswith(">")


def _word_groups(pieces: Sequence[str]) -> list[list[int]]:
    """Indices of the pieces in each word: "▁" starts a word, control pieces stand alone."""
    groups: list[list[int]] = []
    for i, piece in enumerate(pieces):
        if not groups or piece.startswith(WORD_START) or _is_control(piece) \
                or _is_control(pieces[i - 1]):
            groups.append([i])
        else:
            groups[-1].append(i)
    return groups


def _word(pieces: Sequence[str], group: list[int]) -> str:
    text = "".join(pieces[i] for i in group).replace(WORD_START, "")
    return text or WORD_START


def merge_subwords(src_pieces: Sequence[str], tgt_pieces: Sequence[str], weights: Weights,
                   ) -> tuple[list[str], list[str], np.ndarray]:
    """Return (src_words, tgt_words, weights (T_words, S_words)) with SentencePiece pieces joined into words.

    A piece starting with "▁" begins a word; following pieces without it continue that word.
    Control pieces such as "</s>" or "<unk>" stay words of their own.

    Source columns are summed: each row is a distribution over source pieces, and the weight
    a target piece gives to a word is the total it gives to that word's pieces, so rows still
    sum to 1. Target rows are averaged: every piece of a target word is a separate
    distribution, and their mean is again a distribution (summing would give rows that add up
    to the number of pieces), treating each piece of the word as equally representative.
    """
    matrix = _as_matrix(weights, len(tgt_pieces), len(src_pieces))  # (T, S)
    src_groups, tgt_groups = _word_groups(src_pieces), _word_groups(tgt_pieces)
    by_src_word = np.stack([matrix[:, g].sum(axis=1) for g in src_groups], axis=1)      # (T, S_words)
    merged = np.stack([by_src_word[g].mean(axis=0) for g in tgt_groups], axis=0)        # (T_words, S_words)
    return ([_word(src_pieces, g) for g in src_groups],
            [_word(tgt_pieces, g) for g in tgt_groups], merged)


def _label_inches(labels: Sequence[str], fontsize: float) -> float:
    # About 0.6 em per character for DejaVu Sans; enough to size the figure around its labels.
    return max((len(t) for t in labels), default=1) * fontsize * 0.6 / 72


def _title_lines(title: str | None) -> int:
    """Return the number of lines `title` takes (0 for none), so that the figure makes room for each."""
    return title.count("\n") + 1 if title else 0


def _title_inches(title: str | None) -> float:
    """Return the width of the longest line of `title` (set in matplotlib's 12 pt), so that none is cut off."""
    return _label_inches(title.split("\n"), 12) + 0.4 if title else 0.0


def plot_attention_heatmap(src_tokens: Sequence[str], tgt_tokens: Sequence[str], weights: Weights,
                           out: Path, title: str | None = None) -> Path:
    """Return `out` after drawing the (T, S) weights: target tokens as rows, source tokens as columns.

    `title` may run to several lines (say, the sentence, then which attention it is).
    """
    matrix = _as_matrix(weights, len(tgt_tokens), len(src_tokens))  # (T, S)
    num_tgt, num_src = matrix.shape
    fontsize = 9
    cell = 0.3  # inches per token, keeps 9 pt labels from overlapping
    rotate = num_src > 8 or max((len(t) for t in src_tokens), default=0) > 3
    src_room = _label_inches(src_tokens, fontsize) if rotate else 0.25
    width = min(40.0, max(num_src * cell + _label_inches(tgt_tokens, fontsize) + 1.6,  # + colour bar
                          _title_inches(title)))
    height = min(40.0, num_tgt * cell + src_room + 0.5 + 0.4 * _title_lines(title))
    fig = _figure(figsize=(max(width, 3.5), max(height, 2.5)))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=1.0, aspect="equal",
                      interpolation="nearest")
    ax.set_xticks(np.arange(num_src), list(src_tokens), fontsize=fontsize,
                  rotation=90 if rotate else 0)
    ax.set_yticks(np.arange(num_tgt), list(tgt_tokens), fontsize=fontsize)
    # Source along the top reads like the sentence above its translation.
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    ax.set_xlabel("source")
    ax.xaxis.set_label_position("top")
    ax.set_ylabel("target")
    fig.colorbar(image, ax=ax, label="attention weight", shrink=min(1.0, 0.3 + 0.1 * num_tgt))
    if title:
        fig.suptitle(title)  # centred on the figure: a few source tokens make a narrower axes than the title
    return _save(fig, out)


def plot_alignment_lines(src_tokens: Sequence[str], tgt_tokens: Sequence[str], weights: Weights,
                         out: Path, threshold: float = 0.05, title: str | None = None) -> Path:
    """Return `out` after drawing source tokens above target tokens, joined where weight ≥ threshold.

    Line width and opacity grow with the weight, so crossing lines show reordering. `title` may run
    to several lines.
    """
    matrix = _as_matrix(weights, len(tgt_tokens), len(src_tokens))  # (T, S)
    fontsize = 9
    longest = max(len(src_tokens), len(tgt_tokens))
    rotate = longest > 10 or max(len(t) for t in [*src_tokens, *tgt_tokens, "x"]) > 6
    # Inches of label above the source row and below the target row.
    src_room = _label_inches(src_tokens, fontsize) if rotate else 0.2
    tgt_room = _label_inches(tgt_tokens, fontsize) if rotate else 0.2
    width = min(40.0, max(4.0, (0.45 if rotate else 0.75) * longest + 1.0, _title_inches(title)))
    span = max(2.2, width / 5)  # inches between the two rows: wide plots need taller to show angles
    height = span + src_room + tgt_room + 0.3 + 0.4 * _title_lines(title)
    fig = _figure(figsize=(width, height))
    ax = fig.subplots()

    def positions(n: int) -> np.ndarray:
        # Both sides span the same width, so a monotone alignment never crosses itself.
        return np.linspace(0.0, 1.0, n) if n > 1 else np.array([0.5])

    src_x, tgt_x = positions(len(src_tokens)), positions(len(tgt_tokens))
    cmap = matplotlib.colormaps["viridis"]
    for t, s in sorted(zip(*np.nonzero(matrix >= threshold)), key=lambda ts: matrix[ts]):
        w = float(np.clip(matrix[t, s], 0.0, 1.0))  # strongest lines drawn last, on top
        ax.plot([tgt_x[t], src_x[s]], [0.0, 1.0], color=cmap(0.15 + 0.75 * w),
                linewidth=0.5 + 4.0 * w, alpha=0.25 + 0.75 * w, solid_capstyle="round")
    ax.scatter(src_x, np.ones_like(src_x), s=12, color="black", zorder=3)
    ax.scatter(tgt_x, np.zeros_like(tgt_x), s=12, color="black", zorder=3)
    rotation = 90 if rotate else 0
    pad = 0.12 / span  # 0.12 in between a dot and its label
    for x, token in zip(src_x, src_tokens):
        ax.text(x, 1.0 + pad, token, ha="center", va="bottom", rotation=rotation, fontsize=fontsize)
    for x, token in zip(tgt_x, tgt_tokens):
        ax.text(x, -pad, token, ha="center", va="top", rotation=rotation, fontsize=fontsize)
    ax.text(-0.04, 1.0, "source", ha="right", va="center", fontsize=fontsize, style="italic")
    ax.text(-0.04, 0.0, "target", ha="right", va="center", fontsize=fontsize, style="italic")
    # Room for the labels inside the axes, in data units (the rows are 1 apart, `span` inches).
    ax.set_ylim(-(tgt_room + 0.3) / span, 1.0 + (src_room + 0.3) / span)
    ax.set_xlim(-0.12, 1.05)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return _save(fig, out)


def _shade(weight: float) -> str:
    level = int(round(float(np.clip(weight, 0.0, 1.0)) * (len(SHADES) - 1)))
    return SHADES[level]


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def text_grid(src_tokens: Sequence[str], tgt_tokens: Sequence[str], weights: Weights,
              max_label: int = 12) -> str:
    """Return the (T, S) weights as shaded blocks, one line per target token, source labels written downwards.

    Each cell is " ░▒▓█" by weight (rounded to quarters). Labels longer than `max_label`
    characters are cut with "…". Cells are two characters wide up to 40 source tokens and one
    beyond, so a 40-token sentence fits in about 100 columns.
    """
    matrix = _as_matrix(weights, len(tgt_tokens), len(src_tokens))  # (T, S)
    cell = 2 if len(src_tokens) <= 40 else 1
    src_labels = [_clip(t, max_label) for t in src_tokens]
    tgt_labels = [_clip(t, max_label) for t in tgt_tokens]
    indent = max((len(t) for t in tgt_labels), default=0) + 1
    lines = []
    # Source labels run top to bottom, one character per line, above their column.
    for depth in range(max((len(t) for t in src_labels), default=0)):
        chars = [t[depth] if depth < len(t) else " " for t in src_labels]
        lines.append((" " * (indent + 1) + "".join(c.ljust(cell) for c in chars)).rstrip())
    lines.append(" " * indent + "┌" + "─" * (cell * len(src_tokens)))
    for label, row in zip(tgt_labels, matrix):
        lines.append(label.rjust(indent - 1) + " │" + "".join(_shade(w) * cell for w in row))
    lines.append("shades: " + "  ".join(f"{SHADES[i]}≈{i / (len(SHADES) - 1):.2f}"
                                       for i in range(1, len(SHADES))))
    return "\n".join(lines)


class AttentionSample(NamedTuple):
    """One sentence's attention as a training run draws it: its pieces and (T, S) weights."""

    src_pieces: list[str]
    tgt_pieces: list[str]
    weights: np.ndarray  # (T, S)


def plot_attention_samples(samples: Sequence[AttentionSample | None], out_dir: Path, step: int,
                           label: str) -> list[Path]:
    """Return the heatmaps drawn of dev sentences' attention at one training step, dev{i}_step{step}.png each.

    A None sample (no attention, or an empty output) draws nothing; `label` names the attention drawn.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(exist_ok=True)
    return [plot_attention_heatmap(s.src_pieces, s.tgt_pieces, s.weights, out_dir / f"dev{i}_step{step:07d}.png",
                                   title=f"dev sentence {i}, step {step}\n{label}")
            for i, s in enumerate(samples) if s is not None]
