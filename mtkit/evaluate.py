"""Corpus BLEU and chrF, and BLEU by sentence length with bootstrap confidence intervals.

Everything here takes lists of strings and returns plain records; no models are involved (running
models over a test set is `mtkit.compare`). Scores come from sacrebleu and carry its signature so a
number can be reproduced. The only file access is in the writers and `load_json`. Defaults come
from `Config` (`length_edges`, `eval`).
"""

from __future__ import annotations

import csv
import json
import logging
import typing
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Literal, NamedTuple, Sequence

import numpy as np
from sacrebleu.metrics import BLEU, CHRF

from mtkit.buckets import LengthBuckets
from mtkit.config import Config, EvalConfig
from mtkit.errors import MtkitError

log = logging.getLogger(__name__)

DEFAULTS = EvalConfig()
DEFAULT_EDGES = Config().length_edges
LENGTH_OF_CHOICES = typing.get_args(typing.get_type_hints(EvalConfig)["length_of"])  # ("src", "ref")
JSON_FORMAT = "mtkit-evaluation"
JSON_VERSION = 1


@dataclass(frozen=True)
class BucketScore:
    """Scores of the sentences whose word count falls in [low, high] (high None: no upper bound)."""

    label: str
    low: int
    high: int | None
    count: int
    bleu: float | None  # None when the bucket is empty
    ci_low: float | None  # 95% bootstrap interval, None when empty or not computed
    ci_high: float | None
    chrf: float | None
    ratio: float | None = None  # output / reference length (sacrebleu's tokens): below 1 the brevity penalty bites


@dataclass(frozen=True)
class SystemScore:
    """Corpus scores of one system plus its BLEU by length buckets."""

    name: str
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    count: int
    buckets: list[BucketScore]
    length_of: str = DEFAULTS.length_of  # which side's word count chose the buckets
    n_boot: int = DEFAULTS.bootstrap
    seed: int = DEFAULTS.bootstrap_seed
    edges: tuple[int, ...] = DEFAULT_EDGES
    by_k: list[BucketScore] = field(default_factory=list)  # passages: one bucket per number of verses joined
    paired: list["PairedRatio"] = field(default_factory=list)  # passages: each k against k = 1, window-paired
    windows: int = 0  # passages: how many windows the paired bootstrap resamples


@dataclass(frozen=True)
class PairedRatio:
    """The same verses translated in groups of k against alone: BLEU_k / BLEU_1, with a paired window interval.

    The interval resamples whole windows (every input of a drawn window, at every k, comes along), scores k and
    k = 1 on the same resample and takes the 2.5th and 97.5th percentiles of their ratio.
    """

    k: int
    inputs: int  # inputs of k verses
    mean_src_words: float  # whitespace words per input
    bleu: float
    ratio: float | None  # BLEU_k / BLEU_1; None when BLEU_1 is 0
    ci_low: float | None  # None when not computed (no bootstrap) or BLEU_1 is 0 in a resample
    ci_high: float | None
    bleu_ci_low: float | None  # BLEU_k's own interval over the same window resamples
    bleu_ci_high: float | None
    chrf_ratio: float | None  # chrF_k / chrF_1 (point value)


class CorpusScores(NamedTuple):
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str


def corpus_scores(hyps: Sequence[str], refs: Sequence[str]) -> CorpusScores:
    """Return corpus BLEU and chrF of `hyps` against one reference each, with sacrebleu signatures."""
    bleu_metric, chrf_metric = BLEU(), CHRF()
    bleu = bleu_metric.corpus_score(list(hyps), [list(refs)])
    chrf = chrf_metric.corpus_score(list(hyps), [list(refs)])
    return CorpusScores(bleu.score, chrf.score,
                        bleu_metric.get_signature().format(), chrf_metric.get_signature().format())


def _sentence_stats(metric: BLEU | CHRF, hyps: list[str], refs: list[str]) -> np.ndarray:
    """Per-sentence sufficient statistics (N, K): corpus scores are computed from their column sums."""
    # Private sacrebleu API (present since 2.0); it is what corpus_score itself sums.
    stats = metric._extract_corpus_statistics(hyps, [refs])
    return np.asarray(stats, dtype=np.int64).reshape(len(hyps), -1)  # (N, K)


def _score(metric: BLEU | CHRF, summed: np.ndarray) -> float:
    # Plain ints, so the arithmetic is exactly what sacrebleu.corpus_score does.
    return float(metric._compute_score_from_stats([int(x) for x in summed]).score)


def _bootstrap_ci(metric: BLEU, stats: np.ndarray, n_boot: int,
                  rng: np.random.Generator) -> tuple[float, float]:
    """95% percentile interval of corpus BLEU over `n_boot` resamples (with replacement) of the rows."""
    # How often each sentence was drawn in each resample (each its own window); summing counts × stats is
    # summing the draws.
    counts = window_counts(np.arange(stats.shape[0]), n_boot, rng)          # (n_boot, N)
    totals = counts @ stats                                                 # (n_boot, K)
    scores = np.array([_score(metric, row) for row in totals])
    low, high = np.percentile(scores, [2.5, 97.5])
    return float(low), float(high)


def check_aligned(srcs: Sequence[str], hyps: Sequence[str], refs: Sequence[str],
                  paths: dict[str, str | Path] | None = None, name: str | None = None) -> None:
    """Raise MtkitError unless source, hypothesis and reference lines are non-empty and equally many.

    `paths` maps "src", "hyp", "ref" to the files the lines came from, to name them in the message.
    """
    paths = paths or {}
    sizes = {"src": len(srcs), "hyp": len(hyps), "ref": len(refs)}
    who = f"System {name!r}: " if name else ""

    def what(side: str) -> str:
        return f"{side} {paths[side]}" if side in paths else side

    if len(set(sizes.values())) > 1:
        listing = ", ".join(f"{what(side)}: {n} lines" for side, n in sizes.items())
        raise MtkitError(f"{who}line counts differ ({listing}); "
                         "source, hypothesis and reference files must be line-aligned.")
    if sizes["hyp"] == 0:
        listing = ", ".join(what(side) for side in sizes)
        raise MtkitError(f"{who}no lines to score ({listing} are empty); "
                         "give non-empty, line-aligned files.")


class _LineStats(NamedTuple):
    bleu_metric: BLEU
    chrf_metric: CHRF
    bleu: np.ndarray  # (N, 10) per-sentence BLEU statistics
    chrf: np.ndarray  # (N, 18) per-sentence chrF statistics


def _line_stats(hyps: Sequence[str], refs: Sequence[str]) -> _LineStats:
    # Extracting n-gram statistics is the slow part, so it happens once per system.
    bleu_metric, chrf_metric = BLEU(), CHRF()
    hyps, refs = list(hyps), list(refs)
    return _LineStats(bleu_metric, chrf_metric, _sentence_stats(bleu_metric, hyps, refs),
                      _sentence_stats(chrf_metric, hyps, refs))


def _bucket_scores(stats: _LineStats, lengths: Sequence[int], edges: Sequence[int],
                   n_boot: int, seed: int) -> list[BucketScore]:
    buckets = LengthBuckets(edges)
    which = np.array([buckets.index(n) for n in lengths], dtype=np.int64)  # (N,)
    return _group_scores(stats, which, buckets.bounds(), n_boot, seed)


def _group_scores(stats: _LineStats, which: np.ndarray, bounds: Sequence[tuple[str, int, int | None]],
                  n_boot: int, seed: int) -> list[BucketScore]:
    """Return one BucketScore per (label, low, high) of `bounds`, scoring the lines whose `which` is its index."""
    if n_boot < 0:
        raise MtkitError(f"n_boot={n_boot} must be 0 (no confidence interval) or a positive count.")
    buckets = []
    for i, (label, low, high) in enumerate(bounds):
        rows = np.flatnonzero(which == i)
        if rows.size == 0:
            buckets.append(BucketScore(label, low, high, 0, None, None, None, None))
            continue
        summed = stats.bleu[rows].sum(axis=0)  # sacrebleu's BLEU statistics start with output and reference length
        bleu = _score(stats.bleu_metric, summed)
        chrf = _score(stats.chrf_metric, stats.chrf[rows].sum(axis=0))
        ci_low = ci_high = None
        if n_boot > 0:
            # One generator per bucket, so a bucket's interval does not depend on the others.
            rng = np.random.default_rng([seed, i])
            ci_low, ci_high = _bootstrap_ci(stats.bleu_metric, stats.bleu[rows], n_boot, rng)
        ratio = float(summed[0] / summed[1]) if summed[1] else None
        buckets.append(BucketScore(label, low, high, int(rows.size), bleu, ci_low, ci_high, chrf, ratio))
    return buckets


def _lengths(srcs: Sequence[str], refs: Sequence[str], length_of: str) -> list[int]:
    if length_of not in LENGTH_OF_CHOICES:
        raise MtkitError(f"length_of={length_of!r} is unknown: choose one of {list(LENGTH_OF_CHOICES)}.")
    return [len(line.split()) for line in (srcs if length_of == "src" else refs)]


def bleu_by_length(srcs: Sequence[str], hyps: Sequence[str], refs: Sequence[str],
                   edges: Sequence[int] = DEFAULT_EDGES,
                   length_of: Literal["src", "ref"] = DEFAULTS.length_of,
                   n_boot: int = DEFAULTS.bootstrap, seed: int = DEFAULTS.bootstrap_seed) -> list[BucketScore]:
    """Return one BucketScore per length bucket (empty ones included), with a seeded 95% bootstrap CI.

    Lines are bucketed by the whitespace word count of the source (or the reference with
    length_of="ref"); bucket edges are upper-inclusive. Each bucket's BLEU is corpus BLEU of
    that subset alone. n_boot=0 skips the bootstrap (CI left None).
    """
    check_aligned(srcs, hyps, refs)
    lengths = _lengths(srcs, refs, length_of)
    return _bucket_scores(_line_stats(hyps, refs), lengths, edges, n_boot, seed)


def evaluate_system(name: str, srcs: Sequence[str], hyps: Sequence[str], refs: Sequence[str],
                    edges: Sequence[int] = DEFAULT_EDGES,
                    length_of: Literal["src", "ref"] = DEFAULTS.length_of,
                    n_boot: int = DEFAULTS.bootstrap, seed: int = DEFAULTS.bootstrap_seed,
                    paths: dict[str, str | Path] | None = None) -> SystemScore:
    """Return corpus BLEU/chrF and BLEU by length of one system's hypotheses.

    `paths` maps "src", "hyp", "ref" to the files the lines came from; they only serve
    to name the files in error messages.
    """
    check_aligned(srcs, hyps, refs, paths, name)
    lengths = _lengths(srcs, refs, length_of)
    stats = _line_stats(hyps, refs)
    buckets = _bucket_scores(stats, lengths, edges, n_boot, seed)
    # Summed sentence statistics give exactly sacrebleu's corpus_score (see corpus_scores).
    bleu = _score(stats.bleu_metric, stats.bleu.sum(axis=0))
    chrf = _score(stats.chrf_metric, stats.chrf.sum(axis=0))
    log.info("%s: BLEU %.2f chrF %.2f on %d lines", name, bleu, chrf, len(hyps))
    return SystemScore(name, bleu, chrf, stats.bleu_metric.get_signature().format(),
                       stats.chrf_metric.get_signature().format(), len(hyps), buckets,
                       length_of, n_boot, seed, tuple(int(e) for e in edges))


def evaluate_passages(name: str, srcs: Sequence[str], hyps: Sequence[str], refs: Sequence[str], ks: Sequence[int],
                      windows: Sequence[int], edges: Sequence[int] = DEFAULT_EDGES,
                      length_of: Literal["src", "ref"] = DEFAULTS.length_of,
                      n_boot: int = DEFAULTS.bootstrap, seed: int = DEFAULTS.bootstrap_seed) -> SystemScore:
    """Return `evaluate_system`'s scores of passage inputs, plus `by_k` and `paired`.

    `ks[i]` is how many verses input i joins and `windows[i]` the window it was cut from. Every k covers
    the same verses of every window, so `by_k` scores the same content alone (k = 1) and inside longer
    passages, and `paired` gives each k's BLEU over k = 1's with an interval that resamples windows
    (see `paired_ratios`): the view of length with content held fixed.
    """
    system = evaluate_system(name, srcs, hyps, refs, edges, length_of, n_boot, seed)
    if not len(ks) == len(windows) == len(hyps):
        raise MtkitError(f"System {name!r}: {len(ks)} passage sizes and {len(windows)} window numbers "
                         f"for {len(hyps)} lines")
    values = sorted(set(ks))
    which = np.array([values.index(k) for k in ks], dtype=np.int64)  # (N,)
    bounds = [(f"k={k}", k, k) for k in values]
    stats = _line_stats(hyps, refs)
    by_k = _group_scores(stats, which, bounds, n_boot, seed + 1)
    src_words = [len(s.split()) for s in srcs]
    paired = paired_ratios(stats, ks, windows, src_words, n_boot, seed + 2)
    return replace(system, by_k=by_k, paired=paired, windows=len(set(windows)))


def window_counts(windows: Sequence[int], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Return (n_boot, N): how often each input is drawn when whole windows are resampled with replacement.

    Every input of one window gets that window's count, so a window's groups are never split.
    """
    ids, index = np.unique(np.asarray(windows), return_inverse=True)  # index: (N,) window of each input
    drawn = rng.integers(0, len(ids), size=(n_boot, len(ids)))       # (n_boot, W)
    offsets = drawn + np.arange(n_boot)[:, None] * len(ids)
    per_window = np.bincount(offsets.ravel(), minlength=n_boot * len(ids)).reshape(n_boot, len(ids))
    return per_window[:, index]                                      # (n_boot, N)


def paired_ratios(stats: _LineStats, ks: Sequence[int], windows: Sequence[int], src_words: Sequence[int],
                  n_boot: int, seed: int) -> list[PairedRatio]:
    """Return one PairedRatio per k: BLEU of the k-verse inputs over BLEU of the single verses.

    Every window must hold inputs at every k (the passage set's design); n_boot = 0 leaves the intervals None.
    """
    ks, windows = np.asarray(ks), np.asarray(windows)
    values = sorted(set(ks.tolist()))
    if 1 not in values:
        raise MtkitError(f"passage sizes {values} have no k = 1: the paired ratio needs the verses alone")
    for k in values:
        missing = set(windows.tolist()) - set(windows[ks == k].tolist())
        if missing:
            raise MtkitError(f"windows {sorted(missing)[:5]} have no inputs of k = {k}: every window must be cut "
                             "at every k for a paired comparison")
    rows = {k: np.flatnonzero(ks == k) for k in values}
    bleu = {k: _score(stats.bleu_metric, stats.bleu[r].sum(axis=0)) for k, r in rows.items()}
    chrf = {k: _score(stats.chrf_metric, stats.chrf[r].sum(axis=0)) for k, r in rows.items()}
    boot: dict[int, np.ndarray] = {}
    if n_boot > 0:
        counts = window_counts(windows, n_boot, np.random.default_rng(seed))  # (n_boot, N), shared by every k
        for k, r in rows.items():
            totals = counts[:, r] @ stats.bleu[r]                              # (n_boot, 10)
            boot[k] = np.array([_score(stats.bleu_metric, row) for row in totals])
    out = []
    for k, r in rows.items():
        ratio = bleu[k] / bleu[1] if bleu[1] else None
        low = high = b_low = b_high = None
        if boot:
            b_low, b_high = (float(x) for x in np.percentile(boot[k], [2.5, 97.5]))
            if np.all(boot[1] > 0):
                low, high = (float(x) for x in np.percentile(boot[k] / boot[1], [2.5, 97.5]))
        out.append(PairedRatio(k, int(r.size), float(np.mean(np.asarray(src_words)[r])), bleu[k], ratio, low, high,
                               b_low, b_high, chrf[k] / chrf[1] if chrf[1] else None))
    return out


@dataclass(frozen=True)
class PositionLoss:
    """The same verses' teacher-forced loss alone and at one position of a k-verse passage, paired by window.

    Losses are nats per reference piece (eos excluded), pooled over the verses: summed NLL ÷ summed pieces.
    The interval of `increase` resamples whole windows, both losses on the same resample.
    """

    k: int
    position: str  # "first", "middle" or "last"
    verses: int
    alone: float
    loss: float
    increase: float  # loss - alone
    ci_low: float | None
    ci_high: float | None


POSITIONS = ("first", "middle", "last")


def position_losses(records: Sequence, n_boot: int = DEFAULTS.bootstrap,
                    seed: int = DEFAULTS.bootstrap_seed) -> list[PositionLoss]:
    """Return one PositionLoss per k > 1 and position, from per-verse records (window, verse, k, position, nll, tokens).

    `records` are `mtkit.forced.VerseLoss` or anything with those fields; every verse must be there alone (k = 1).
    """
    alone = {(r.window, r.verse): r for r in records if r.k == 1}
    windows = sorted({r.window for r in records})
    rank = {w: i for i, w in enumerate(windows)}
    counts = window_counts(windows, n_boot, np.random.default_rng(seed)) if n_boot > 0 else None  # (n_boot, W)
    out = []
    for k in sorted({r.k for r in records} - {1}):
        for position in POSITIONS:
            rows = [r for r in records if r.k == k and r.position == position]
            if not rows:
                continue
            missing = [(r.window, r.verse) for r in rows if (r.window, r.verse) not in alone]
            if missing:
                raise MtkitError(f"verses {missing[:3]} have no loss alone (k=1): every verse must be read alone too")
            base = [alone[(r.window, r.verse)] for r in rows]
            # (4, N): this position's NLL and pieces, the same verses' alone; summed per window below
            sums = np.array([[r.nll for r in rows], [r.tokens for r in rows],
                             [b.nll for b in base], [b.tokens for b in base]], dtype=np.float64)
            which = np.array([rank[r.window] for r in rows])
            per_window = np.zeros((4, len(windows)))
            np.add.at(per_window, (slice(None), which), sums)                      # (4, W)
            total = per_window.sum(axis=1)
            loss, base_loss = total[0] / total[1], total[2] / total[3]
            low = high = None
            if counts is not None:
                drawn = counts @ per_window.T                                      # (n_boot, 4)
                diffs = drawn[:, 0] / drawn[:, 1] - drawn[:, 2] / drawn[:, 3]
                low, high = (float(x) for x in np.percentile(diffs, [2.5, 97.5]))
            out.append(PositionLoss(k, position, len(rows), float(base_loss), float(loss), float(loss - base_loss),
                                    low, high))
    return out


def format_position_table(losses: dict[str, list[PositionLoss]]) -> str:
    """Return a terminal table: per k and position, each system's loss increase over alone [95% paired CI]."""
    names = list(losses)
    if not names or not losses[names[0]]:
        return "(no passage losses)"
    header = ["k", "position", "verses"] + [f"{name} alone → here (+increase [95% CI])" for name in names]
    rows = []
    for i, p in enumerate(losses[names[0]]):
        row = [str(p.k), p.position, str(p.verses)]
        for name in names:
            q = losses[name][i]
            cell = f"{q.alone:.3f} → {q.loss:.3f} ({q.increase:+.3f}"
            cell += ")" if q.ci_low is None else f" [{q.ci_low:+.3f}, {q.ci_high:+.3f}])"
            row.append(cell)
        rows.append(row)
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    lines = ["  ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in [header, *rows]]
    return "\n".join(["Teacher-forced loss of the same verses alone and inside passages (nats per reference piece)",
                      "", *lines, "", "95% CI: paired bootstrap over windows"])


def write_position_json(losses: dict[str, list[PositionLoss]], path: Path) -> Path:
    """Write each system's position losses as JSON; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": "mtkit-position-losses", "version": 1,
            "systems": [{"name": name, "losses": [asdict(p) for p in rows]} for name, rows in losses.items()]}
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def _bleu_cell(b: BucketScore) -> str:
    if b.bleu is None:
        return "-"
    if b.ci_low is None:
        return f"{b.bleu:.1f}"
    return f"{b.bleu:.1f} [{b.ci_low:.1f}, {b.ci_high:.1f}]"


def format_table(systems: Sequence[SystemScore]) -> str:
    """Return a terminal table: one row per length bucket, per system BLEU [95% CI] and line count.

    Below the buckets come overall BLEU and chrF per system, then the sacrebleu signatures.
    """
    if not systems:
        return "(no systems)"
    labels = [b.label for b in systems[0].buckets]
    if any([b.label for b in s.buckets] != labels for s in systems):
        raise MtkitError("Systems were bucketed with different length edges "
                         f"({', '.join(f'{s.name}: {list(s.edges)}' for s in systems)}); "
                         "evaluate them with the same edges to tabulate them together.")
    same_counts = all([b.count for b in s.buckets] == [b.count for b in systems[0].buckets]
                      for s in systems)
    side = "src" if systems[0].length_of == "src" else "ref"

    header = [f"{side} words"] + (["n"] if same_counts else [])
    for s in systems:
        header += [f"{s.name} BLEU [95% CI]"] + ([] if same_counts else ["n"])
    rows = []
    for i, label in enumerate(labels):
        row = [label] + ([str(systems[0].buckets[i].count)] if same_counts else [])
        for s in systems:
            row += [_bleu_cell(s.buckets[i])] + ([] if same_counts else [str(s.buckets[i].count)])
        rows.append(row)
    totals = [["all"] + ([str(systems[0].count)] if same_counts else []),
              ["chrF"] + ([""] if same_counts else [])]
    for s in systems:
        totals[0] += [f"{s.bleu:.1f}"] + ([] if same_counts else [str(s.count)])
        totals[1] += [f"{s.chrf:.1f}"] + ([] if same_counts else [""])

    widths = [max(len(r[c]) for r in [header, *rows, *totals]) for c in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]).rstrip()

    rule = "-" * len(line(header))
    out = [line(header), rule, *map(line, rows), rule, *map(line, totals), ""]
    bleu_sigs = {s.bleu_signature for s in systems}
    chrf_sigs = {s.chrf_signature for s in systems}
    if len(bleu_sigs) == 1 and len(chrf_sigs) == 1:
        out += [f"BLEU: {systems[0].bleu_signature}", f"chrF: {systems[0].chrf_signature}"]
    else:
        for s in systems:
            out += [f"{s.name} BLEU: {s.bleu_signature}", f"{s.name} chrF: {s.chrf_signature}"]
    boot = {(s.n_boot, s.seed) for s in systems}
    if len(boot) == 1 and systems[0].n_boot > 0:
        out.append(f"95% CI: percentile bootstrap, {systems[0].n_boot} resamples, seed {systems[0].seed}")
    return "\n".join(out)


def format_passage_table(systems: Sequence[SystemScore]) -> str:
    """Return the passage tables: by number of verses joined (the same verses in every row), then by input length.

    Each system gets BLEU [95% CI], chrF and the output/reference length ratio per row: on long
    inputs BLEU alone is swayed by the brevity penalty, which chrF and the ratio show apart.
    """
    if not systems:
        return "(no systems)"
    side = "src" if systems[0].length_of == "src" else "ref"
    out = ["Passages of k consecutive verses: every k covers the same verses", ""]
    out += _score_rows(systems, lambda s: s.by_k, "verses")
    out += ["", f"Passages by input length ({side} words)", ""]
    out += _score_rows(systems, lambda s: s.buckets, f"{side} words")
    return "\n".join(out)


def format_paired_table(systems: Sequence[SystemScore]) -> str:
    """Return the paired table: per k, input length, then per system BLEU and BLEU_k / BLEU_1 [95% paired CI].

    This is the study's headline: the same verses at every k, the interval from resampled windows.
    """
    if not systems or not systems[0].paired:
        return "(no passage scores)"
    header = ["k", "inputs", "src words"] + [f"{s.name} {col}" for s in systems for col in ("BLEU", "×k=1 [95% CI]")]
    rows = []
    for i, p in enumerate(systems[0].paired):
        row = [str(p.k), str(p.inputs), f"{p.mean_src_words:.1f}"]
        for s in systems:
            q = s.paired[i]
            ratio = "-" if q.ratio is None else f"{q.ratio:.3f}"
            if q.ci_low is not None:
                ratio += f" [{q.ci_low:.3f}, {q.ci_high:.3f}]"
            row += [f"{q.bleu:.1f}", ratio]
        rows.append(row)
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    first = systems[0]
    how = (f"95% CI: paired bootstrap over the {first.windows} windows, {first.n_boot} resamples (seed {first.seed + 2})"
           if first.n_boot else "no intervals (bootstrap 0)")
    return "\n".join(["The same verses alone (k=1) and inside passages of k verses: BLEU, and BLEU ÷ BLEU at k=1", "",
                      *lines, "", how])


def _score_rows(systems: Sequence[SystemScore], buckets_of: Callable[[SystemScore], list[BucketScore]],
                first: str) -> list[str]:
    header = [first, "n"] + [f"{s.name} {col}" for s in systems for col in ("BLEU [95% CI]", "chrF", "len")]
    rows = []
    for i, bucket in enumerate(buckets_of(systems[0])):
        row = [bucket.label, str(bucket.count)]
        for s in systems:
            b = buckets_of(s)[i]
            row += [_bleu_cell(b), "-" if b.chrf is None else f"{b.chrf:.1f}",
                    "-" if b.ratio is None else f"{b.ratio:.2f}"]
        rows.append(row)
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    return ["  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]).rstrip()
            for r in [header, *rows]]


CSV_COLUMNS = ["system", "bucket", "low", "high", "count", "bleu", "ci_low", "ci_high", "chrf", "ratio",
               "to_k1", "to_k1_ci_low", "to_k1_ci_high", "length_of", "bleu_signature", "chrf_signature"]


def write_csv(systems: Sequence[SystemScore], path: Path) -> Path:
    """Write one row per system and bucket, plus an "all" row per system; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for s in systems:
            common = {"system": s.name, "length_of": s.length_of,
                      "bleu_signature": s.bleu_signature, "chrf_signature": s.chrf_signature}
            paired = {p.k: p for p in s.paired}
            for b in s.buckets + s.by_k:  # by_k rows are labelled k=1, k=2, ... and carry the paired ratio
                p = paired.get(b.low) if b.label.startswith("k=") else None
                writer.writerow({**common, "bucket": b.label, "low": b.low, "high": b.high,
                                 "count": b.count, "bleu": b.bleu, "ci_low": b.ci_low,
                                 "ci_high": b.ci_high, "chrf": b.chrf, "ratio": b.ratio,
                                 **({"to_k1": p.ratio, "to_k1_ci_low": p.ci_low, "to_k1_ci_high": p.ci_high}
                                    if p else {})})
            writer.writerow({**common, "bucket": "all", "low": "", "high": "", "count": s.count,
                             "bleu": s.bleu, "ci_low": "", "ci_high": "", "chrf": s.chrf})
    return path


def write_json(systems: Sequence[SystemScore], path: Path) -> Path:
    """Write all scores, signatures, edges and bootstrap settings as JSON; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": JSON_FORMAT, "version": JSON_VERSION,
            "systems": [{**asdict(s), "edges": list(s.edges)} for s in systems]}
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load_json(path: Path) -> list[SystemScore]:
    """Return the systems stored by `write_json`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MtkitError(f"Evaluation file {path} does not exist; write it with write_json "
                         "(mtkit evaluate ... --json) first.") from None
    except json.JSONDecodeError as e:
        raise MtkitError(f"Evaluation file {path} is not valid JSON ({e}); "
                         "rewrite it with write_json.") from None
    if not isinstance(data, dict) or data.get("format") != JSON_FORMAT:
        raise MtkitError(f"{path} is not an mtkit evaluation file (no \"format\": \"{JSON_FORMAT}\"); "
                         "give a file written by write_json.")
    if data.get("version") != JSON_VERSION:
        raise MtkitError(f"{path} has evaluation file version {data.get('version')!r}; "
                         f"this mtkit reads version {JSON_VERSION}. Re-run the evaluation.")
    try:
        return [SystemScore(**{**s, "edges": tuple(s["edges"]),
                               "buckets": _labelled([BucketScore(**b) for b in s["buckets"]], s["edges"]),
                               "by_k": [BucketScore(**b) for b in s.get("by_k", [])],
                               "paired": [PairedRatio(**p) for p in s.get("paired", [])]})
                for s in data["systems"]]
    except (KeyError, TypeError) as e:
        raise MtkitError(f"{path} has a malformed system entry ({e}); rewrite it with write_json.") from None


def _labelled(buckets: list[BucketScore], edges: Sequence[int]) -> list[BucketScore]:
    """Return length buckets with today's labels: files written before the first bucket's label said 0 read "1-…"."""
    labels = LengthBuckets(edges).labels
    if len(labels) != len(buckets):
        raise TypeError(f"{len(buckets)} buckets for edges {list(edges)}")
    return [replace(b, label=label) for b, label in zip(buckets, labels)]


def format_summary(systems: Sequence[SystemScore]) -> str:
    """Return one line per system with corpus BLEU and chrF, then the signatures."""
    width = max(len(s.name) for s in systems)
    lines = [f"{s.name.ljust(width)}  BLEU {s.bleu:5.2f}  chrF {s.chrf:5.2f}  ({s.count} lines)" for s in systems]
    return "\n".join(lines + [f"BLEU: {systems[0].bleu_signature}", f"chrF: {systems[0].chrf_signature}"])
