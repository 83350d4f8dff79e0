"""Training throughput and translation speed, timed through mtkit's own functions.

Training runs `mtkit.train.train_step` on the batches `mtkit train` would draw (length-bucketed,
`train.batch_tokens` each, seeded order): warm-up steps are not timed, the rest are timed in windows
of a few steps, and the figure is the median over windows of target tokens/s. Translation runs
`mtkit.search.decode` with the config's decode settings.

The machine may be shared. Every measurement records the load average beside it, and CPU seconds
beside wall seconds: on one thread, CPU seconds barely move with the load, so tokens per CPU
second is the figure to compare across runs made at different loads.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import replace
from typing import Any, Callable, NamedTuple, Sequence

from mtkit.config import Config, DecodeConfig, TrainConfig
from mtkit.data.batching import Batch, batch_indices, collate
from mtkit.model import Seq2Seq
from mtkit.search import decode
from mtkit.train import make_optimizer, train_step

from benchmarks.flops import FlopCount, pair_flops

StepFn = Callable[[Batch], Any]


def load_average() -> float:
    """Return the 1-minute load average (other programs on a shared machine included)."""
    return round(os.getloadavg()[0], 2)


class Clock:
    """Wall and CPU seconds and the mean load average over a `with` block."""

    def __enter__(self) -> "Clock":
        self.load_before = load_average()
        self.cpu = time.process_time()
        self.wall = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.load_after = load_average()

    @property
    def load(self) -> float:
        return round((self.load_before + self.load_after) / 2, 2)


def median_seconds(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Return the median (CPU seconds, wall seconds) of `repeats` calls of fn, after one untimed call."""
    fn()  # warm-up: allocator, first-call overheads
    cpu, wall = [], []
    for _ in range(repeats):
        with Clock() as clock:
            fn()
        cpu.append(clock.cpu)
        wall.append(clock.wall)
    return statistics.median(cpu), statistics.median(wall)


# ---- training ------------------------------------------------------------------------------------


def training_step(model: Seq2Seq, train: TrainConfig) -> StepFn:
    """Return a function of a batch that takes `mtkit.train.train_step` with `train`'s optimizer and settings."""
    optimizer = make_optimizer(model, train)
    return lambda batch: train_step(model, optimizer, batch, clip=train.clip, label_smoothing=train.label_smoothing,
                                    teacher_forcing=train.teacher_forcing)


def training_batches(cfg: Config, src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]],
                     count: int) -> list[Batch]:
    """Return the first `count` training batches `mtkit train` would take in its first epoch (wrapping around)."""
    order = batch_indices([len(s) for s in src_ids], [len(t) for t in tgt_ids], cfg.train.batch_tokens, seed=cfg.seed)
    if not order:
        raise ValueError("no training batches: the training split is empty")
    return [collate(src_ids, tgt_ids, order[i % len(order)]) for i in range(count)]


class Window(NamedTuple):
    """A few timed training steps."""

    steps: int
    tokens: int  # real target tokens, eos included
    seconds: float
    cpu_seconds: float
    load: float


def time_training(step: StepFn, batches: Sequence[Batch], warmup: int, window: int) -> list[Window]:
    """Run `step` on every batch; return the timed windows of `window` steps after the first `warmup` steps."""
    for batch in batches[:warmup]:
        step(batch)
    windows = []
    timed = batches[warmup:]
    for start in range(0, len(timed) - window + 1, window):
        group = timed[start : start + window]
        with Clock() as clock:
            for batch in group:
                step(batch)
        windows.append(Window(len(group), sum(b.num_tgt_tokens for b in group), clock.wall, clock.cpu, clock.load))
    return windows


def summarise_windows(windows: Sequence[Window], flops_per_token: float, peak_gflops: float) -> dict[str, Any]:
    """Return median tokens/s (wall and CPU), its spread, and utilisation of the matmul peak, over timed windows."""
    rates = [w.tokens / w.seconds for w in windows]
    cpu_rates = [w.tokens / w.cpu_seconds for w in windows]
    median = statistics.median(rates)
    return {
        "tokens_per_s": round(median, 1),
        "tokens_per_s_min": round(min(rates), 1),
        "tokens_per_s_max": round(max(rates), 1),
        "tokens_per_cpu_s": round(statistics.median(cpu_rates), 1),
        "utilisation": round(flops_per_token * median / (peak_gflops * 1e9), 4),
        "load": round(statistics.median(w.load for w in windows), 2),
        "windows": [w._asdict() for w in windows],
    }


def profile_training(step: StepFn, batches: Sequence[Batch], top: int = 15) -> dict[str, Any]:
    """Run `step` on `batches` under the PyTorch profiler; return where the CPU time went.

    Operators are grouped by name and ranked by self CPU time (time in the operator itself, not
    in the operators it calls), the view that says which kernels bound a step.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches:
            step(batch)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)
    return {"steps": len(batches), "self_cpu_seconds": round(total / 1e6, 3), "operators": [
        {"name": e.key, "calls": e.count, "self_cpu_seconds": round(e.self_cpu_time_total / 1e6, 4),
         "share": round(e.self_cpu_time_total / total, 4)} for e in ranked[:top]]}


# ---- translation ---------------------------------------------------------------------------------


def time_translation(model: Seq2Seq, src_ids: Sequence[Sequence[int]], settings: DecodeConfig, beam: int,
                     count: FlopCount) -> dict[str, Any]:
    """Translate src_ids with `mtkit.search.decode` at `beam`; return sentences/s, output tokens/s and the load."""
    with Clock() as clock:
        hyps = decode(model, list(src_ids), replace(settings, beam=beam))
    out_lens = [len(h[0].tokens) + 1 for h in hyps]  # + eos
    flops = sum(pair_flops(count, len(s), n) for s, n in zip(src_ids, out_lens))  # the kept hypothesis only
    return {
        "beam": beam, "sentences": len(src_ids), "seconds": round(clock.wall, 2), "cpu_seconds": round(clock.cpu, 2),
        "sentences_per_s": round(len(src_ids) / clock.wall, 2), "tokens_per_s": round(sum(out_lens) / clock.wall, 1),
        "mean_output_tokens": round(sum(out_lens) / max(1, len(out_lens)), 2),
        "gflops_of_kept_hypotheses": round(flops / 1e9, 2), "load": clock.load,
    }
