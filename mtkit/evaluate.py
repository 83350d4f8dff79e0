"""Corpus BLEU and chrF, and BLEU by sentence length with bootstrap confidence intervals.

Everything here takes lists of strings and returns plain records; no models are involved (running
models over a test set is `mtkit.compare`). Scores come from sacrebleu and carry its signature so a
number can be reproduced. Defaults come from `Config` (`length_edges`, `eval`). Turning the
records into terminal tables and files, and reading the files back, is `mtkit.results`.
"""

from __future__ import annotations

import logging
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, NamedTuple, Sequence

import numpy as np
from sacrebleu.metrics import BLEU, CHRF

from mtkit.buckets import LengthBuckets
from mtkit.config import Config, EvalConfig
from mtkit.errors import MtkitError

log = logging.getLogger(__name__)

DEFAULTS = EvalConfig()
DEFAULT_EDGES = Config().length_edges
LENGTH_OF_CHOICES = typing.get_args(typing.get_type_hints(EvalConfig)["length_of"])  # ("src", "ref")


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
