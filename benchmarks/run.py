"""The whole benchmark of a config's model on this machine, in one process and in this order:

1. the fp32 matrix-multiply peak (`flops.matmul_peak`): the best of a few n×n products, n = 2048;
2. translation of the first N test sentences through `mtkit.search.decode`, greedy and beam 5:
   sentences/s and output tokens/s (eos included);
3. steady-state training through `mtkit.train.train_step` on real prepared batches
   (`timing.time_training`);
4. peak resident memory of each phase and of the whole process (`memory`);
5. utilisation: useful FLOPs per target token (`flops.count_flops`) × tokens/s ÷ the matmul peak;

then, when asked for, a profile of a few training steps, the attention cost grid
(`attention_cost`) and the levers (`levers`; a Transformer's also `transformer_levers`).
Everything runs on the CPU.
"""

from __future__ import annotations

import logging
import os
import random
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from mtkit.checkpoint import load_checkpoint
from mtkit.config import Config
from mtkit.data.batching import Batch, padding_fraction
from mtkit.data.tokenizer import PAD
from mtkit.device import environment
from mtkit.model import Seq2Seq, build_model, describe
from mtkit.model.transformer import TransformerDecoder
from mtkit.prepare import EncodedSplit, Prepared, prepare
from mtkit.runs import resolve_checkpoint

from benchmarks.attention_cost import attention_cost, plot_attention_cost
from benchmarks.flops import FlopCount, MatmulPeak, count_flops, matmul_peak, training_flops_per_token
from benchmarks.levers import time_levers
from benchmarks.memory import phase_peak_bytes, start_phase_peak
from benchmarks.timing import (StepFn, profile_training, summarise_windows, time_training, time_translation,
                               training_batches, training_step)
from benchmarks.transformer_levers import time_transformer_levers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """What to measure, and how long. See `python -m benchmarks --help` for each."""

    steps: int = 30  # timed training steps, after `warmup`, in windows of `window`; 0 skips training
    warmup: int = 5
    window: int = 5
    sentences: int = 1500  # test sentences translated with each beam size; 0 skips translation
    beams: tuple[int, ...] = (1, 5)
    checkpoint: str | None = None  # best, last (of the config's run_dir) or a path; None: random weights
    attention_cost_png: Path | None = None  # also time the attention cost grid and draw it here
    attention_lengths: tuple[int, ...] = (10, 40, 80, 120, 160)
    levers: bool = False
    matmul_size: int = 2048
    profile_steps: int = 0
    seed: int = 0


def load_model(cfg: Config, prepared: Prepared, checkpoint: str | None) -> Seq2Seq:
    """Return cfg's model on the CPU: random weights, or those of `checkpoint` (best, last or a path)."""
    model = build_model(cfg.model, prepared.tokenizer.src_vocab, prepared.tokenizer.tgt_vocab)
    if checkpoint is not None:
        path = resolve_checkpoint(Path(cfg.run_dir), checkpoint)
        model.load_state_dict(load_checkpoint(path, torch.device("cpu")).model.state_dict())
    return model


def model_record(model: Seq2Seq, count: FlopCount, timed: Sequence[Batch], peak: MatmulPeak) -> dict[str, Any]:
    """Return the model's description, FLOP counts and the throughput bound they set, over the timed batches."""
    src_lens = [int(n) for b in timed for n in b.src_len]
    tgt_lens = [int(n) for b in timed for n in (b.tgt_out != PAD).sum(1)]
    flops_per_token = training_flops_per_token(count, src_lens, tgt_lens)
    return {
        "description": describe(model), "flops": count._asdict(),
        "train_flops_per_target_token": round(flops_per_token),
        "output_layer_share": round(3 * count.output_layer / flops_per_token, 3),
        "mean_src_len": round(statistics.mean(src_lens), 2), "mean_tgt_len": round(statistics.mean(tgt_lens), 2),
        "bound_tokens_per_s": round(peak.best * 1e9 / flops_per_token, 1),
    }


def translation_phase(cfg: Config, model: Seq2Seq, src_ids: Sequence[Sequence[int]], beam: int,
                      count: FlopCount) -> dict[str, Any]:
    """Return the translation timing of one beam size, with the phase's peak memory."""
    log.info("translating %d test sentences, beam %d", len(src_ids), beam)
    start_phase_peak()
    record = time_translation(model, src_ids, cfg.decode, beam, count)
    return {**record, "peak_rss_bytes": phase_peak_bytes()}


def training_phase(step: StepFn, split: EncodedSplit, batches: Sequence[Batch],
                   flops_per_token: float, peak: MatmulPeak, settings: Settings) -> dict[str, Any]:
    """Return the training throughput of `step` (after its warm-up steps), the padding and the phase's peak memory."""
    log.info("training: %d warm-up + %d timed steps", settings.warmup, settings.steps)
    start_phase_peak()
    windows = time_training(step, batches, settings.warmup, settings.window)
    padding = padding_fraction([len(s) for s in split.src_ids], [len(t) for t in split.tgt_ids],
                               [b.index.tolist() for b in batches[settings.warmup:]])
    return {"warmup": settings.warmup, "window": settings.window,
            **summarise_windows(windows, flops_per_token, peak.best), "padding": round(padding, 4),
            "peak_rss_bytes": phase_peak_bytes()}


def run_bench(cfg: Config, settings: Settings = Settings()) -> dict[str, Any]:
    """Return the benchmark of cfg's model on cfg's data as a JSON-able dict (see the module docstring)."""
    torch.manual_seed(settings.seed)
    random.seed(settings.seed)
    result: dict[str, Any] = {"environment": environment("cpu")}
    peak = matmul_peak(settings.matmul_size)
    result["matmul"] = peak._asdict()
    log.info("matmul peak %.1f GFLOP/s (median %.1f) on %d threads", peak.best, peak.median, peak.threads)

    prepared = prepare(cfg)
    model = load_model(cfg, prepared, settings.checkpoint)
    count = count_flops(model)
    train_split, test_split = prepared.splits["train"], prepared.splits["test"]
    batches = training_batches(cfg, train_split.src_ids, train_split.tgt_ids,
                               max(settings.warmup + settings.steps, settings.window))
    timed = batches[settings.warmup:] or batches  # the FLOPs of the timed batches
    result["model"] = model_record(model, count, timed, peak)
    result["rss_bytes_after_setup"] = phase_peak_bytes()

    test_src = test_split.src_ids[: settings.sentences]
    result["translation"] = [translation_phase(cfg, model, test_src, beam, count)
                             for beam in (settings.beams if settings.sentences else ())]
    if settings.steps:
        step = training_step(model, cfg.train)
        flops_per_token = result["model"]["train_flops_per_target_token"]
        result["training"] = training_phase(step, train_split, batches, flops_per_token, peak, settings)
        if settings.profile_steps:
            log.info("profiling %d training steps", settings.profile_steps)
            result["profile"] = profile_training(step, timed[: settings.profile_steps])
    # the process's peak: resetting the high-water mark resets getrusage's figure too
    result["peak_rss_bytes"] = max([result["rss_bytes_after_setup"], *(t["peak_rss_bytes"] for t in result["translation"]),
                                    result.get("training", {}).get("peak_rss_bytes", 0)])
    if settings.attention_cost_png is not None:
        result["attention_cost"] = attention_cost(cfg, prepared.tokenizer.src_vocab, prepared.tokenizer.tgt_vocab,
                                                  lengths=settings.attention_lengths, seed=settings.seed)
        plot_attention_cost(result["attention_cost"], settings.attention_cost_png)
    if settings.levers:
        result["levers"] = time_levers(cfg, model, timed, train_split, test_split.src_ids)
        if isinstance(model.decoder, TransformerDecoder):
            result["levers"] += time_transformer_levers(cfg, model, timed, test_split.src_ids)
    result["environment"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return result
