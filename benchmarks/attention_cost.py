"""The cost of attention, measured: time per sentence against source length m and target length t.

Two models: the config's (with its attention) and the same one without attention (RNNencdec:
bahdanau wiring, attention none). A Transformer has no attention-free form: its grid times the
config's model alone, and the record says why the second model is missing. Inputs are random word ids, so every sentence has exactly the
length of its grid point. Decoding is `mtkit.search.greedy` on a copy of the model whose eos can
never win, so every sentence runs exactly t steps; training is `mtkit.train.train_step`. The grid
is visited in a shuffled order and both models run on the same batch one after the other, so that
a shared machine's load changes touch both models alike and do not line up with either length.
Times are CPU seconds (median of a few repeats, wall seconds kept beside them): with one thread
they do not count the time other programs hold the core.

Each model's times are fitted with a + b·m + c·t + d·m·t: with attention every target step reads
every source position, so d > 0 (O(m·t)); without, the encoder reads m tokens and the decoder runs
t steps from one fixed vector, so d ≈ 0 (O(m + t)). A Transformer's fit adds e·m² + f·t²: its
encoder's self-attention reads every pair of source positions, and its decoder's every earlier
target position (cross-attention is the m·t term).
"""

from __future__ import annotations

import copy
import logging
import random
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import torch

from mtkit.config import Config, ModelConfig
from mtkit.data.batching import Batch, collate
from mtkit.data.tokenizer import EOS
from mtkit.model import Seq2Seq, build_model, describe
from mtkit.search import greedy

from benchmarks.timing import load_average, median_seconds, training_step

log = logging.getLogger(__name__)

FIRST_WORD = EOS + 1  # the ids below are pad, unk, bos, eos


NO_TRANSFORMER_WITHOUT_ATTENTION = ("a Transformer has no attention-free form (its encoder and decoder are "
                                    "attention layers); the RNNencdec baseline is an RNN config's grid")


def cost_model_configs(model: ModelConfig) -> dict[str, ModelConfig]:
    """Return the models compared: "attention" (the config's kind, additive if none) and "none" (RNNencdec).

    A Transformer is "attention" alone (see NO_TRANSFORMER_WITHOUT_ATTENTION).
    """
    if model.arch == "transformer":
        return {"attention": replace(model, dropout=0.0)}
    kind = model.attention.kind if model.attention.kind != "none" else "additive"
    with_attention = replace(model, attention=replace(model.attention, kind=kind), dropout=0.0)
    without = replace(with_attention, attention=replace(with_attention.attention, kind="none"), decoder="bahdanau",
                      maxout=False)
    return {"attention": with_attention, "none": without}


def random_batch(size: int, src_len: int, tgt_len: int, src_vocab: int, tgt_vocab: int, rng: random.Random) -> Batch:
    """Return a Batch of `size` pairs of random word ids: sources of src_len, tgt_in and tgt_out of tgt_len."""
    src = [[rng.randrange(FIRST_WORD, src_vocab) for _ in range(src_len)] for _ in range(size)]
    tgt = [[rng.randrange(FIRST_WORD, tgt_vocab) for _ in range(tgt_len - 1)] for _ in range(size)]  # + bos / eos
    return collate(src, tgt, range(size))


def never_ending(model: Seq2Seq) -> Seq2Seq:
    """Return a copy of `model`, in eval mode, that never scores eos: greedy search then runs to its length limit."""
    endless = copy.deepcopy(model).eval()
    with torch.no_grad():
        endless.decoder.out.bias[EOS] = float("-inf")
    return endless


def time_point(model: Seq2Seq, batch: Batch, tgt_len: int, cfg: Config, repeats: int,
               train_repeats: int) -> dict[str, float]:
    """Return CPU (and wall) seconds per sentence of greedy decoding tgt_len steps, and of a training step.

    train_repeats 0 skips training.
    """
    size = batch.src.size(0)
    endless, limit = never_ending(model), torch.full((size,), tgt_len)
    cpu, wall = median_seconds(lambda: greedy(endless, batch.src, batch.src_len, limit), repeats)
    row = {"m": batch.src.size(1), "t": tgt_len, "load": load_average(), "decode": cpu / size, "decode_wall": wall / size}
    if train_repeats:
        step = training_step(model, cfg.train)
        cpu, wall = median_seconds(lambda: step(batch), train_repeats)
        row.update(train=cpu / size, train_wall=wall / size)
    return row


def attention_label(model: ModelConfig) -> str:
    """Return the attention the grid measures: the RNN's score kind, or the Transformer's "multi-head"."""
    return "multi-head" if model.arch == "transformer" else cost_model_configs(model)["attention"].attention.kind


def attention_cost(cfg: Config, src_vocab: int, tgt_vocab: int,
                   lengths: Sequence[int] = (10, 40, 80, 120, 160), batch: int = 16,
                   repeats: int = 5, train_repeats: int = 2, seed: int = 0) -> dict[str, Any]:
    """Return seconds per sentence of decoding and training on a grid of source × target lengths, and their fits.

    See the module docstring; train_repeats 0 times decoding only.
    """
    models = {}
    for name, model_cfg in cost_model_configs(cfg.model).items():
        torch.manual_seed(seed)
        models[name] = build_model(model_cfg, src_vocab, tgt_vocab)
    rng = random.Random(seed)
    grid = [(m, t) for m in lengths for t in lengths]
    rng.shuffle(grid)
    points: dict[str, list[dict[str, float]]] = {name: [] for name in models}
    for m, t in grid:
        pairs = random_batch(batch, m, t, src_vocab, tgt_vocab, rng)
        for name, model in models.items():
            points[name].append(time_point(model, pairs, t, cfg, repeats, train_repeats))
            log.info("attention cost %s m=%d t=%d: %s", name, m, t, points[name][-1])
    whats = ("decode", "train") if train_repeats else ("decode",)
    squares = cfg.model.arch == "transformer"
    record = {"batch": batch, "lengths": list(lengths), "attention": attention_label(cfg.model),
              "seconds": "CPU seconds per sentence", "threads": torch.get_num_threads(),
              "models": {name: describe(model) for name, model in models.items()}, "points": points,
              "fits": {name: {what: bilinear_fit(rows, what, squares) for what in whats}
                       for name, rows in points.items()}}
    return {**record, "skipped": {"none": NO_TRANSFORMER_WITHOUT_ATTENTION}} if squares else record


def fit_terms(m: float, t: float, squares: bool = False) -> dict[str, float]:
    """Return the fit's terms at (m, t) by coefficient name: 1, m, t, m·t, and with squares m², t²."""
    terms = {"const": 1.0, "per_m": m, "per_t": t, "per_mt": m * t}
    return {**terms, "per_mm": m * m, "per_tt": t * t} if squares else terms


def predict(fit: dict[str, float], m: float, t: float) -> float:
    """Return a fit's value at (m, t) (the squared terms count where the fit has them)."""
    return sum(fit.get(name, 0.0) * term for name, term in fit_terms(m, t, squares=True).items())


def bilinear_fit(points: Sequence[dict[str, float]], key: str, squares: bool = False) -> dict[str, float]:
    """Return the least-squares fit key ≈ a + b·m + c·t + d·m·t (+ e·m² + f·t² with squares) over points
    {m, t, key}, and its R²."""
    import numpy as np

    names = list(fit_terms(0, 0, squares))
    x = np.array([list(fit_terms(p["m"], p["t"], squares).values()) for p in points])
    y = np.array([p[key] for p in points])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    residual = y - x @ coef
    r2 = 1.0 - float(residual @ residual) / max(float(((y - y.mean()) ** 2).sum()), 1e-30)
    return {**{name: float(c) for name, c in zip(names, coef)}, "r2": round(r2, 4)}


# ---- the figure ----------------------------------------------------------------------------------


def _fit_title(cost: dict[str, Any], what: str) -> str:
    """Return a panel's title below its name: the fitted m·t cost of each model (and a Transformer's m², t²)."""
    fits = {name: cost["fits"][name][what] for name in ("attention", "none") if name in cost["fits"]}
    parts = [f"{1e6 * fit['per_mt']:.2f} µs ({name}, R² {fit['r2']:.3f})" for name, fit in fits.items()]
    if "per_mm" in fits["attention"]:
        a = fits["attention"]
        return (f"fit a + b·m + c·t + d·m·t + e·m² + f·t² (R² {a['r2']:.3f}):\n"
                f"d = {1e6 * a['per_mt']:.3f} µs, e = {1e6 * a['per_mm']:.3f} µs, f = {1e6 * a['per_tt']:.3f} µs")
    return f"fit a + b·m + c·t + d·m·t: d = {', '.join(parts)}"


def _panel(ax: Any, cost: dict[str, Any], what: str) -> None:
    """Draw one of decode / train: measured points and fitted lines for three target lengths, each model."""
    lengths = cost["lengths"]
    shown_t = [lengths[0], lengths[len(lengths) // 2], lengths[-1]]
    middle_m = lengths[len(lengths) // 2]
    colours = dict(zip(shown_t, ("tab:blue", "tab:orange", "tab:red")))
    for name, style, marker in (("attention", "-", "o"), ("none", "--", "s")):
        if name not in cost["fits"]:
            continue
        fit = cost["fits"][name][what]
        for t in shown_t:
            pts = sorted((p for p in cost["points"][name] if p["t"] == t), key=lambda p: p["m"])
            ms = [p["m"] for p in pts]
            ax.plot(ms, [1e3 * p[what] for p in pts], marker, color=colours[t], markersize=4,
                    fillstyle="full" if name == "attention" else "none")
            slope = fit["per_m"] + fit["per_mt"] * t + 2 * fit.get("per_mm", 0.0) * middle_m  # d(seconds)/dm
            at = f" at m={middle_m}" if "per_mm" in fit else ""  # with an m² term the slope grows with m
            ax.plot(ms, [1e3 * predict(fit, m, t) for m in ms], style, color=colours[t], linewidth=1.2,
                    label=f"{name}, t={t}: {1e6 * slope:.1f} µs per source token{at}")
    ax.set_title(f"{'greedy decoding' if what == 'decode' else 'training step'}\n{_fit_title(cost, what)}", fontsize=9)
    ax.set_xlabel("source length m (tokens)")
    ax.set_ylabel("CPU milliseconds per sentence")
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)


def plot_attention_cost(cost: dict[str, Any], out: Path) -> None:
    """Draw seconds per sentence against source length (one line per target length), fitted lines, slopes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    whats = [w for w in ("decode", "train") if w in cost["fits"]["attention"]]
    fig, axes = plt.subplots(1, len(whats), figsize=(6.2 * len(whats), 4.8), squeeze=False)
    for ax, what in zip(axes[0], whats):
        _panel(ax, cost, what)
    orders = ("cross-attention is O(m·t), self-attention O(m² + t²)" if "none" in cost.get("skipped", {})
              else f"{cost['attention']} attention is O(m·t), none is O(m + t)")
    fig.suptitle(f"The cost of attention: {orders}; "
                 f"t target tokens (one colour each), batches of {cost['batch']}, {cost.get('threads', 1)} thread(s)\n"
                 f"{' / '.join(cost['models'].values())}", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
