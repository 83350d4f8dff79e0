"""Benchmark a config's model on this machine: training and translation speed, memory, utilisation.

`run_bench(cfg)` measures, in one process and in this order:

1. the fp32 matrix-multiply peak (`matmul_peak`): the best of a few n×n products, n = 2048;
2. translation of the first N test sentences through `mtkit.search.decode`, greedy and beam 5:
   sentences/s and output tokens/s (eos included);
3. steady-state training on real prepared batches, drawn as `mtkit train` draws them (length-bucketed,
   `train.batch_tokens` each, seeded order): warm-up steps are not timed, the rest are timed in
   windows of a few steps, and the result is the median over windows of target tokens/s;
4. peak resident memory of each phase (Linux's high-water mark, reset between phases after
   freed memory is handed back) and of the whole process (getrusage);
5. utilisation: useful FLOPs per target token (`count_flops`) × tokens/s ÷ the matmul peak.

The machine may be shared. Every measurement records the load average beside it, and CPU seconds
beside wall seconds: on one thread, CPU seconds barely move with the load, so tokens per CPU
second is the figure to compare across runs made at different loads.

FLOPs are counted from the modules' weight shapes, forward, 2 per multiply-add:

    F(m, n) = m·F_src + n·F_tgt + m·n·F_pair + F_sent     one pair: m source, n target tokens (eos included)
    F_src   = Σ encoder RNN layers and directions 2(|W_ih| + |W_hh|) + 2|U_a|         (attention keys)
    F_tgt   = Σ decoder RNN layers 2(|W_ih| + |W_hh|) + 2|W_a| (attention query)
              + 2|deep output or W_c| + 2·O·V (vocabulary projection)
    F_pair  = 2A (v_a, additive) or 2d (a dot product) to score, + 2K to average the states
    F_sent  = 2|bridge| (initial state)

where |W| is the number of entries of a weight. Training costs 3F: the backward pass computes, for
every product, one gradient for its input and one for its weight, each as large as the forward
product. Not counted, as they are O(size) next to the O(size²) products: embedding lookups,
biases, gate and attention nonlinearities, softmax and loss, the optimizer update. Padding is not
counted either: it is waste, not work.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import logging
import math
import os
import platform
import random
import resource
import statistics
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtkit.config import Config
from mtkit.data.batching import Batch, batch_indices, collate, padding_fraction
from mtkit.data.tokenizer import BOS, EOS, PAD
from mtkit.model import Seq2Seq, build_model, describe
from mtkit.model.attention import AdditiveAttention

log = logging.getLogger(__name__)

FIRST_WORD = 4  # ids below are pad, unk, bos, eos


# ---- FLOPs ---------------------------------------------------------------------------------------


class FlopCount(NamedTuple):
    """Forward FLOPs of a model by what they scale with (see the module docstring)."""

    per_src_token: int  # F_src: encoder RNN and attention key projection
    per_tgt_token: int  # F_tgt: decoder RNN, query projection, output layers, vocabulary projection
    per_pair: int  # F_pair: attention score and average, per (target, source) position pair
    per_sentence: int  # F_sent: the bridge to the initial decoder state
    output_layer: int  # the vocabulary projection's share of per_tgt_token, 2·O·V


def _product_flops(module: nn.Module) -> int:
    """Return the FLOPs of one input row through a Linear, or one token through an RNN (all layers and directions)."""
    if isinstance(module, nn.Linear):
        return 2 * module.in_features * module.out_features
    if isinstance(module, nn.RNNBase):
        return sum(2 * p.numel() for name, p in module.named_parameters() if name.startswith("weight_"))
    raise TypeError(f"no FLOP count for {type(module).__name__}")


def count_flops(model: Seq2Seq) -> FlopCount:
    """Return the model's forward FLOPs per source token, target token, position pair and sentence."""
    dec = model.decoder
    per_src = _product_flops(model.encoder.rnn)
    per_tgt = _product_flops(dec.rnn)
    per_pair = per_sentence = 0
    if dec.bridge is not None:
        per_sentence += _product_flops(dec.bridge)
    for name in ("deep_output", "combine"):  # Bahdanau's deep output, Luong's W_c
        if hasattr(dec, name):
            per_tgt += _product_flops(getattr(dec, name))
    output_layer = _product_flops(dec.out)  # counted even when its weight is tied to the embedding
    per_tgt += output_layer
    attention = dec.attention
    if attention is not None:
        score_dim = dec.key_dim  # dot: h_tᵀ h̄_s
        if hasattr(attention, "key_proj"):
            per_src += _product_flops(attention.key_proj)
            score_dim = attention.key_proj.out_features  # general, scaled_dot, additive
        if hasattr(attention, "query_proj"):
            per_tgt += _product_flops(attention.query_proj)
        if isinstance(attention, AdditiveAttention):
            per_pair += _product_flops(attention.v)  # v_aᵀ tanh(...): 2A
        else:
            per_pair += 2 * score_dim
        per_pair += 2 * dec.key_dim  # the weighted average of the states
    return FlopCount(per_src, per_tgt, per_pair, per_sentence, output_layer)


def pair_flops(count: FlopCount, src_len: int, tgt_len: int) -> int:
    """Return the forward FLOPs of one sentence pair: m·F_src + n·F_tgt + m·n·F_pair + F_sent."""
    return (src_len * count.per_src_token + tgt_len * count.per_tgt_token
            + src_len * tgt_len * count.per_pair + count.per_sentence)


def training_flops_per_token(count: FlopCount, src_lengths: Sequence[int], tgt_lengths: Sequence[int]) -> float:
    """Return training FLOPs (3 × forward) per target token over pairs of the given lengths (eos included in tgt)."""
    total = sum(pair_flops(count, m, n) for m, n in zip(src_lengths, tgt_lengths))
    return 3.0 * total / max(1, sum(tgt_lengths))


# ---- the machine ---------------------------------------------------------------------------------


class MatmulPeak(NamedTuple):
    """fp32 matrix-multiply speed of this process, GFLOP/s."""

    best: float
    median: float
    size: int
    threads: int


def matmul_peak(size: int = 2048, repeats: int = 5) -> MatmulPeak:
    """Return the best and median GFLOP/s of `repeats` size×size fp32 products (after one warm-up)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        rates.append(2 * size**3 / (time.perf_counter() - start) / 1e9)
    return MatmulPeak(max(rates), statistics.median(rates), size, torch.get_num_threads())


def peak_rss_bytes() -> int:
    """Return the peak resident memory of this process (since the last `start_phase_peak`, on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def start_phase_peak() -> bool:
    """Start measuring the peak memory of a new phase; return False where this cannot be done.

    Freed heap memory goes back to the system first (malloc_trim), so that what an earlier
    phase left free is not counted; then Linux resets the process's high-water mark to its
    current resident size (`clear_refs` 5). `phase_peak_bytes` reads it.
    """
    name = ctypes.util.find_library("c")
    try:
        if name is not None:
            ctypes.CDLL(name).malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except (OSError, AttributeError):
        return False


def phase_peak_bytes() -> int:
    """Return the peak resident memory since `start_phase_peak` (VmHWM), or of the whole process."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return peak_rss_bytes()


def load_average() -> float:
    """Return the 1-minute load average (other programs on a shared machine included)."""
    return round(os.getloadavg()[0], 2)


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters (malloc.h)


def keep_freed_memory(keep: bool = True) -> bool:
    """Tell glibc malloc to keep freed memory for reuse (True) or to return it (False); return success.

    By default glibc serves a large block (a (B, T, V) logits tensor, a (B, S, A) attention
    buffer) with a fresh mmap and unmaps it when freed, so every batch pays page faults to zero
    the same memory again: a 128 MB tensor costs ~70 ms of faults before the first write. Keeping
    freed memory in the heap makes the next batch reuse it. Peak memory is unchanged; the process
    just does not give memory back between batches. Needs glibc; returns False elsewhere. A lever
    of `time_levers` only: measured ×1.00 per training step once the fused loss removed the logits.
    """
    name = ctypes.util.find_library("c")
    if platform.system() != "Linux" or name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mmap_max, trim = (0, 2**31 - 1) if keep else (65536, 128 * 1024)  # glibc's defaults when not kept
        return bool(libc.mallopt(_M_MMAP_MAX, mmap_max)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, trim))
    except (OSError, AttributeError):
        return False


class _Clock:
    """Wall and CPU seconds and the load average over a block."""

    def __enter__(self) -> "_Clock":
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


# ---- training ------------------------------------------------------------------------------------


StepFn = Callable[[Batch], float]


def project_train_step(model: Seq2Seq, optimizer: torch.optim.Optimizer, cfg: Config) -> StepFn:
    """Return a step function that runs `mtkit.train.train_step`, the step `mtkit train` takes."""
    from mtkit.train import train_step

    return lambda batch: train_step(model, optimizer, batch, cfg, contextlib.nullcontext)


def autograd_loss_step(model: Seq2Seq, optimizer: torch.optim.Optimizer, cfg: Config) -> StepFn:
    """Return the step `mtkit train` took before `mtkit.loss`: (B, T, V) logits and autograd's cross-entropy.

    The baseline of the "fused vocabulary projection and loss" lever; same loss and gradients.
    """
    t = cfg.train

    def step(batch: Batch) -> float:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        logits, _ = model(batch.src, batch.src_len, batch.tgt_in)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD,
                               label_smoothing=t.label_smoothing, reduction="sum") / batch.num_tgt_tokens
        loss.backward()
        if t.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip)
        optimizer.step()
        return loss.item()

    return step


def training_batches(cfg: Config, src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]],
                     count: int, seed: int | None = None) -> list[Batch]:
    """Return the first `count` training batches `mtkit train` would take in its first epoch."""
    order = batch_indices([len(s) for s in src_ids], [len(t) for t in tgt_ids], cfg.train.batch_tokens,
                          seed=cfg.seed if seed is None else seed)
    if not order:
        raise ValueError("no training batches: the training split is empty")
    order = [order[i % len(order)] for i in range(count)]  # wrap around a tiny corpus
    return [collate(src_ids, tgt_ids, index) for index in order]


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
        with _Clock() as clock:
            for batch in group:
                step(batch)
        windows.append(Window(len(group), sum(b.num_tgt_tokens for b in group), clock.wall, clock.cpu, clock.load))
    return windows


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


def summarise_windows(windows: Sequence[Window], flops_per_token: float, peak_gflops: float) -> dict[str, Any]:
    """Return median tokens/s (wall and CPU), its spread, and utilisation, over timed windows."""
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


# ---- translation ---------------------------------------------------------------------------------


def time_translation(model: Seq2Seq, src_ids: Sequence[Sequence[int]], beam: int, cfg: Config,
                     count: FlopCount) -> dict[str, Any]:
    """Translate src_ids with `mtkit.search.decode`; return sentences/s, output tokens/s and the load."""
    from mtkit.search import decode

    d = cfg.decode
    with _Clock() as clock:
        hyps = decode(model, list(src_ids), beam=beam, length_penalty=d.length_penalty,
                      max_len_ratio=d.max_len_ratio, max_len_extra=d.max_len_extra, batch_size=d.batch_size)
    out_lens = [len(h[0].tokens) + 1 for h in hyps]  # + eos
    flops = sum(pair_flops(count, len(s), n) for s, n in zip(src_ids, out_lens))  # the kept hypothesis only
    return {
        "beam": beam, "sentences": len(src_ids), "seconds": round(clock.wall, 2), "cpu_seconds": round(clock.cpu, 2),
        "sentences_per_s": round(len(src_ids) / clock.wall, 2), "tokens_per_s": round(sum(out_lens) / clock.wall, 1),
        "mean_output_tokens": round(sum(out_lens) / max(1, len(out_lens)), 2),
        "gflops_of_kept_hypotheses": round(flops / 1e9, 2), "load": clock.load,
    }


# ---- the whole benchmark -------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    """Return what the figures depend on besides the code: torch, threads, CPU, load."""
    return {
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "platform": platform.platform(),
        "python": platform.python_version(), "load_average": [round(x, 2) for x in os.getloadavg()],
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


def run_bench(cfg: Config, steps: int = 30, warmup: int = 5, window: int = 5, sentences: int = 1500,
              beams: Sequence[int] = (1, 5), checkpoint: Path | None = None,
              attention_cost_png: Path | None = None, attention_cost_options: dict[str, Any] | None = None,
              levers: bool = False, matmul_size: int = 2048, profile_steps: int = 0,
              seed: int = 0) -> dict[str, Any]:
    """Return the benchmark of cfg's model on cfg's data as a JSON-able dict (see the module docstring).

    steps: timed training steps (after `warmup`), in windows of `window`; sentences: test sentences
    translated with each beam size in `beams` (0 skips translation); the training step timed is
    `mtkit.train.train_step`, the one `mtkit train` takes; checkpoint: trained weights to load
    (a random model's greedy outputs run to the length limit). attention_cost_png: also time decoding
    and training against source and target length, with and without attention, and draw the figure.
    levers: also time each speed lever against its alternative (`time_levers`). matmul_size: n of
    the n×n products that measure the peak. profile_steps: also run that many training steps under
    the PyTorch profiler (`profile_training`).
    """
    from mtkit.prepare import prepare

    torch.manual_seed(seed)
    random.seed(seed)
    result: dict[str, Any] = {"environment": environment()}
    peak = matmul_peak(matmul_size)
    result["matmul"] = peak._asdict()
    log.info("matmul peak %.1f GFLOP/s (median %.1f) on %d threads", peak.best, peak.median, peak.threads)

    prepared = prepare(cfg)
    tokenizer = prepared.tokenizer
    model = build_model(cfg.model, tokenizer.src_vocab, tokenizer.tgt_vocab)
    if checkpoint is not None:
        from mtkit.checkpoint import load_checkpoint

        model.load_state_dict(load_checkpoint(checkpoint, torch.device("cpu")).model.state_dict())
    count = count_flops(model)
    train_split, test_split = prepared.splits["train"], prepared.splits["test"]
    batches = training_batches(cfg, train_split.src_ids, train_split.tgt_ids, max(warmup + steps, window))
    counted = batches[warmup:] if steps else batches  # the FLOPs of the timed batches
    src_lens = [int(n) for b in counted for n in b.src_len]
    tgt_lens = [int(n) for b in counted for n in (b.tgt_out != PAD).sum(1)]
    flops_per_token = training_flops_per_token(count, src_lens, tgt_lens)
    result["model"] = {
        "description": describe(model), "flops": count._asdict(),
        "train_flops_per_target_token": round(flops_per_token),
        "output_layer_share": round(3 * count.output_layer * sum(tgt_lens) / max(1, flops_per_token * sum(tgt_lens)), 3),
        "mean_src_len": round(statistics.mean(src_lens), 2), "mean_tgt_len": round(statistics.mean(tgt_lens), 2),
        "bound_tokens_per_s": round(peak.best * 1e9 / flops_per_token, 1),
    }
    result["rss_bytes_after_setup"] = phase_peak_bytes()

    translation = []
    test_src = test_split.src_ids[:sentences]
    for beam in beams if sentences else ():
        log.info("translating %d test sentences, beam %d", len(test_src), beam)
        start_phase_peak()
        record = time_translation(model, test_src, beam, cfg, count)
        record["peak_rss_bytes"] = phase_peak_bytes()
        translation.append(record)
    result["translation"] = translation

    if steps:
        optimizer = _make_optimizer(model, cfg)
        step_fn = project_train_step(model, optimizer, cfg)
        log.info("training: %d warm-up + %d timed steps", warmup, steps)
        start_phase_peak()
        windows = time_training(step_fn, batches, warmup, window)
        result["training"] = {"warmup": warmup, "window": window,
                              **summarise_windows(windows, flops_per_token, peak.best),
                              "padding": round(padding_fraction([len(s) for s in train_split.src_ids],
                                                                [len(t) for t in train_split.tgt_ids],
                                                                [b.index.tolist() for b in counted]), 4),
                              "peak_rss_bytes": phase_peak_bytes()}
        if profile_steps:
            log.info("profiling %d training steps", profile_steps)
            result["profile"] = profile_training(step_fn, batches[warmup : warmup + profile_steps] or batches)
    # the process's peak: resetting the high-water mark resets getrusage's figure too
    result["peak_rss_bytes"] = max([result["rss_bytes_after_setup"], *(t["peak_rss_bytes"] for t in translation),
                                    result.get("training", {}).get("peak_rss_bytes", 0)])

    if attention_cost_png is not None:
        result["attention_cost"] = attention_cost(cfg, tokenizer.src_vocab, tokenizer.tgt_vocab,
                                                  **(attention_cost_options or {}))
        plot_attention_cost(result["attention_cost"], attention_cost_png)
    if levers:
        result["levers"] = time_levers(cfg, model, batches[warmup:] or batches, test_split.src_ids)
    result["environment"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def _make_optimizer(model: Seq2Seq, cfg: Config) -> torch.optim.Optimizer:
    from mtkit.train import make_optimizer

    return make_optimizer(model, cfg)


def format_table(result: dict[str, Any]) -> str:
    """Return the benchmark result as a plain-text table."""
    gib = 1024**3
    lines = [result["model"]["description"],
             f"threads {result['environment']['threads']}, load average at start "
             f"{result['environment']['load_average'][0]}, at end {result['environment'].get('load_average_end', ['?'])[0]}",
             "", f"{'measurement':<46}{'value':>16}  {'load':>5}"]

    def row(name: str, value: str, load: Any = "") -> None:
        lines.append(f"{name:<46}{value:>16}  {load!s:>5}")

    m = result["matmul"]
    row("matmul peak (best / median)", f"{m['best']:.0f} / {m['median']:.0f} GF/s")
    row("train FLOPs per target token", f"{result['model']['train_flops_per_target_token'] / 1e6:.1f} M")
    row("  vocabulary projection share", f"{result['model']['output_layer_share']:.0%}")
    row("  bound at matmul peak", f"{result['model']['bound_tokens_per_s']:.0f} tok/s")
    for t in result["translation"]:
        name = "greedy" if t["beam"] == 1 else f"beam {t['beam']}"
        row(f"{name}: {t['sentences']} sentences", f"{t['seconds']:.1f} s", t["load"])
        row(f"  {name} sentences/s, tokens/s", f"{t['sentences_per_s']:.1f}, {t['tokens_per_s']:.0f}")
        row(f"  {name} mean output length", f"{t['mean_output_tokens']:.1f}")
    tr = result.get("training")
    if tr:
        row("training, median", f"{tr['tokens_per_s']:.0f} tok/s", tr["load"])
        row("  range over windows", f"{tr['tokens_per_s_min']:.0f}-{tr['tokens_per_s_max']:.0f}")
        row("  per CPU second", f"{tr['tokens_per_cpu_s']:.0f} tok/s")
        row("  utilisation of matmul peak", f"{tr['utilisation']:.1%}")
    for t in result["translation"]:
        name = "greedy" if t["beam"] == 1 else f"beam {t['beam']}"
        row(f"peak RSS, {name}", f"{t['peak_rss_bytes'] / gib:.2f} GiB")
    if tr:
        row("peak RSS, training", f"{tr['peak_rss_bytes'] / gib:.2f} GiB")
    row("peak RSS, whole process", f"{result['peak_rss_bytes'] / gib:.2f} GiB")
    if "attention_cost" in result:
        for kind, fits in result["attention_cost"]["fits"].items():
            for what, fit in fits.items():
                row(f"{what} {kind}: µs per m·t", f"{fit['per_mt'] * 1e6:.3f}")
    if "profile" in result:
        prof = result["profile"]
        lines.append(f"\nself CPU time of {prof['steps']} training steps ({prof['self_cpu_seconds']:.2f} s), by operator:")
        for op in prof["operators"]:
            lines.append(f"  {op['name']:<44}{op['share']:>7.1%}  {op['calls']:>7} calls")
    for lever in result.get("levers", []):
        row(f"lever: {lever['name']}", f"×{lever['speedup']:.2f}", lever["load"])
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: Path) -> None:
    """Write the benchmark result as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


# ---- the cost of attention -----------------------------------------------------------------------


def _random_batch(batch: int, src_len: int, tgt_len: int, src_vocab: int, tgt_vocab: int,
                  generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Return src (B, m), src_len (B,), tgt_in and tgt_out (B, n) of random word ids, no padding."""
    src = torch.randint(FIRST_WORD, src_vocab, (batch, src_len), generator=generator)
    tgt = torch.randint(FIRST_WORD, tgt_vocab, (batch, tgt_len + 1), generator=generator)
    tgt[:, 0] = BOS
    tgt[:, -1] = EOS
    return src, torch.full((batch,), src_len, dtype=torch.long), tgt[:, :-1], tgt[:, 1:]


@torch.inference_mode()
def forced_decode(model: Seq2Seq, src: Tensor, src_len: Tensor, steps: int) -> Tensor:
    """Return (B, steps) greedy tokens, decoding exactly `steps` steps (eos does not stop it).

    The work of `mtkit.search.greedy` per step (step, vocabulary projection, log-softmax, argmax),
    with the output length fixed so that timings can be taken against it.
    """
    state, memory = model.encode(src, src_len)
    prev = torch.full((src.size(0),), BOS, dtype=torch.long)
    out = []
    for _ in range(steps):
        step = model.decoder.step(prev, state, memory)
        state = step.state
        prev = model.decoder.logits(step.features).float().log_softmax(-1).argmax(-1)  # (B,)
        out.append(prev)
    return torch.stack(out, 1)


def _train_pass(model: Seq2Seq, src: Tensor, src_len: Tensor, tgt_in: Tensor, tgt_out: Tensor) -> None:
    """One teacher-forced forward and backward pass (no optimizer update)."""
    model.train()
    model.zero_grad(set_to_none=True)
    logits, _ = model(src, src_len, tgt_in)
    F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), reduction="sum").backward()


def _median_seconds(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Return the median (CPU seconds, wall seconds) of `repeats` calls of fn, after one untimed call."""
    fn()  # warm-up: allocator, first-call overheads
    cpu, wall = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return statistics.median(cpu), statistics.median(wall)


def _bilinear_fit(points: Sequence[dict[str, float]], key: str) -> dict[str, float]:
    """Return the least-squares fit key ≈ a + b·m + c·t + d·m·t over points {m, t, key}, and its R²."""
    import numpy as np

    x = np.array([[1.0, p["m"], p["t"], p["m"] * p["t"]] for p in points])
    y = np.array([p[key] for p in points])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    residual = y - x @ coef
    r2 = 1.0 - float(residual @ residual) / max(float(((y - y.mean()) ** 2).sum()), 1e-30)
    return {"const": float(coef[0]), "per_m": float(coef[1]), "per_t": float(coef[2]), "per_mt": float(coef[3]),
            "r2": round(r2, 4)}


def attention_cost(cfg: Config, src_vocab: int, tgt_vocab: int,
                   lengths: Sequence[int] = (10, 40, 80, 120, 160), batch: int = 16,
                   repeats: int = 5, train_repeats: int = 2, train: bool = True, seed: int = 0) -> dict[str, Any]:
    """Return seconds per sentence of decoding and training on a grid of source (m) × target (t) lengths.

    Two models: cfg's (with its attention) and the same one without attention (RNNencdec:
    bahdanau wiring, attention none). Inputs are random word ids, so every sentence has exactly the
    length of its grid point; the grid is visited in a shuffled order and both models run on the
    same batch one after the other, so that a shared machine's load changes touch both models
    alike and do not line up with either length. Times are CPU seconds (median of `repeats`,
    wall seconds kept beside them): with one thread they do not count the time other programs
    hold the core. Each model's times are fitted with a + b·m + c·t + d·m·t: with attention every
    target step reads every source position, so d > 0 (O(m·t)); without, the encoder reads m
    tokens and the decoder runs t steps from one fixed vector, so d ≈ 0 (O(m + t)).
    """
    attention_kind = cfg.model.attention.kind if cfg.model.attention.kind != "none" else "additive"
    with_attention = replace(cfg.model, attention=replace(cfg.model.attention, kind=attention_kind), dropout=0.0)
    without = replace(with_attention, attention=replace(with_attention.attention, kind="none"), decoder="bahdanau",
                      maxout=False)
    generator = torch.Generator().manual_seed(seed)
    models = {}
    for name, model_cfg in (("attention", with_attention), ("none", without)):
        torch.manual_seed(seed)
        models[name] = build_model(model_cfg, src_vocab, tgt_vocab)
    points: dict[str, list[dict[str, float]]] = {name: [] for name in models}
    grid = [(m, t) for m in lengths for t in lengths]
    random.Random(seed).shuffle(grid)
    for m, t in grid:
        src, src_len, tgt_in, tgt_out = _random_batch(batch, m, t, src_vocab, tgt_vocab, generator)
        for name, model in models.items():
            model.eval()
            cpu, wall = _median_seconds(lambda: forced_decode(model, src, src_len, t), repeats)
            row = {"m": m, "t": t, "load": load_average(), "decode": cpu / batch, "decode_wall": wall / batch}
            if train:
                cpu, wall = _median_seconds(lambda: _train_pass(model, src, src_len, tgt_in, tgt_out),
                                            train_repeats)
                row.update(train=cpu / batch, train_wall=wall / batch)
            points[name].append(row)
            log.info("attention cost %s m=%d t=%d: %s", name, m, t, row)
    fits = {name: {what: _bilinear_fit(rows, what) for what in (("decode", "train") if train else ("decode",))}
            for name, rows in points.items()}
    return {"batch": batch, "lengths": list(lengths), "attention": attention_kind, "seconds": "CPU seconds per sentence",
            "threads": torch.get_num_threads(),
            "models": {name: describe(model) for name, model in models.items()}, "points": points, "fits": fits}


def plot_attention_cost(cost: dict[str, Any], out: Path) -> None:
    """Draw seconds per sentence against source length (one line per target length), fitted lines, slopes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    whats = [w for w in ("decode", "train") if w in cost["fits"]["attention"]]
    lengths = cost["lengths"]
    shown_t = [lengths[0], lengths[len(lengths) // 2], lengths[-1]]
    colours = dict(zip(shown_t, ("tab:blue", "tab:orange", "tab:red")))
    fig, axes = plt.subplots(1, len(whats), figsize=(6.2 * len(whats), 4.8), squeeze=False)
    for ax, what in zip(axes[0], whats):
        for name, style, marker in (("attention", "-", "o"), ("none", "--", "s")):
            fit = cost["fits"][name][what]
            for t in shown_t:
                pts = sorted((p for p in cost["points"][name] if p["t"] == t), key=lambda p: p["m"])
                ms = [p["m"] for p in pts]
                ax.plot(ms, [1e3 * p[what] for p in pts], marker, color=colours[t], markersize=4,
                        fillstyle="full" if name == "attention" else "none")
                slope = fit["per_m"] + fit["per_mt"] * t  # d(seconds)/dm at this t
                ax.plot(ms, [1e3 * (fit["const"] + fit["per_t"] * t + slope * m) for m in ms], style,
                        color=colours[t], linewidth=1.2,
                        label=f"{name}, t={t}: {1e6 * slope:.1f} µs per source token")
        a, n = cost["fits"]["attention"][what], cost["fits"]["none"][what]
        ax.set_title(f"{'greedy decoding' if what == 'decode' else 'training step (forward + backward)'}\n"
                     f"fit a + b·m + c·t + d·m·t: d = {1e6 * a['per_mt']:.2f} µs (attention, R² {a['r2']:.3f}), "
                     f"{1e6 * n['per_mt']:.2f} µs (none, R² {n['r2']:.3f})", fontsize=9)
        ax.set_xlabel("source length m (tokens)")
        ax.set_ylabel("CPU milliseconds per sentence")
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    fig.suptitle(f"The cost of attention: {cost['attention']} attention is O(m·t), none is O(m + t); "
                 f"t target tokens (one colour each), batches of {cost['batch']}, {cost.get('threads', 1)} thread(s)\n"
                 f"{cost['models']['attention']} / {cost['models']['none']}", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


# ---- levers: each speed-up timed against its alternative -----------------------------------------


def _interleaved(a: Callable[[int], Any], b: Callable[[int], Any], rounds: int) -> tuple[float, float, float]:
    """Return the median seconds of a(i) and b(i) over rounds run as ABBA..., and the mean load.

    Alternating, and swapping which goes first, spreads a shared machine's changing load evenly.
    """
    times_a, times_b, loads = [], [], []
    for i in range(rounds):
        for fn, times in ((a, times_a), (b, times_b)) if i % 2 == 0 else ((b, times_b), (a, times_a)):
            loads.append(load_average())
            start = time.perf_counter()
            fn(i)
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b), round(statistics.mean(loads), 2)


def _lever(name: str, lever: str, baseline: str, seconds: tuple[float, float, float], unit: str,
           note: str = "") -> dict[str, Any]:
    t_lever, t_base, load = seconds
    record = {"name": name, "lever": lever, "baseline": baseline, "unit": unit, "lever_seconds": round(t_lever, 4),
              "baseline_seconds": round(t_base, 4), "speedup": round(t_base / t_lever, 3), "load": load}
    if note:
        record["note"] = note
    log.info("lever %s: %s %.3f s vs %s %.3f s (×%.2f, load %.2f)", name, lever, t_lever, baseline, t_base,
             t_base / t_lever, load)
    return record


def _fwd_bwd(model: Seq2Seq, batch: Batch, per_step_output: bool = False, keys_per_step: bool = False,
             unroll: bool = False) -> None:
    """A teacher-forced forward and backward pass of `batch`, optionally without one of the levers."""
    model.train()
    model.zero_grad(set_to_none=True)
    state, memory = model.encode(batch.src, batch.src_len)
    if keys_per_step:
        memory = memory._replace(keys=None)  # the attention projects the keys again at every step
    if unroll:
        logits, _ = model.decoder.unroll(batch.tgt_in, state, memory)  # (B, T, V), one step at a time
        loss = F.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD, reduction="sum")
    elif per_step_output:
        features, _ = model.decoder.features(batch.tgt_in, state, memory)  # (B, T, O)
        loss = sum(F.cross_entropy(model.decoder.logits(f), y, ignore_index=PAD, reduction="sum")
                   for f, y in zip(features.unbind(1), batch.tgt_out.unbind(1)))
    else:
        logits, _ = model.decoder(batch.tgt_in, state, memory)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD, reduction="sum")
    loss.backward()


def _encoder_pass(model: Seq2Seq, batch: Batch, how: str) -> None:
    """Forward and backward through the encoder alone.

    how: "mtkit" (the Encoder: padded run, backward direction over each sentence reversed in
    place), "packed" (torch's RNN over pack_padded_sequence: the same states), or "padded"
    (torch's RNN over the padded batch: the backward direction reads padding first, wrong states).
    """
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    model.train()
    model.zero_grad(set_to_none=True)
    enc = model.encoder
    if how == "mtkit":
        states = enc(batch.src, batch.src_len).states  # (B, S, K)
    else:
        emb = enc.dropout(enc.embed(batch.src))  # (B, S, E)
        if how == "packed":
            packed = pack_padded_sequence(emb, batch.src_len, batch_first=True, enforce_sorted=False)
            states = pad_packed_sequence(enc.rnn(packed)[0], batch_first=True)[0]  # (B, S, K)
        else:
            states = enc.rnn(emb)[0]  # (B, S, K)
    states.sum().backward()


def random_token_batches(src_lengths: Sequence[int], tgt_lengths: Sequence[int], batch_tokens: int,
                         seed: int = 0) -> list[list[int]]:
    """Return batches of at most `batch_tokens` padded tokens from sentences in random order (no bucketing)."""
    order = list(range(len(src_lengths)))
    random.Random(seed).shuffle(order)
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        size = max(width, tgt_lengths[i] + 1, src_lengths[i])
        if current and size * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, size = [], max(tgt_lengths[i] + 1, src_lengths[i])
        current.append(i)
        width = size
    if current:
        batches.append(current)
    return batches


def time_levers(cfg: Config, model: Seq2Seq, batches: Sequence[Batch], test_src: Sequence[Sequence[int]],
                rounds: int = 4, sentences: int = 128) -> list[dict[str, Any]]:
    """Return, for each speed lever, the median seconds with it and with its alternative, timed interleaved."""
    from mtkit import search
    from mtkit.data.batching import pad_sequences

    out = []
    batch = lambda i: batches[i % len(batches)]  # noqa: E731 - the batch of round i
    threads = torch.get_num_threads()
    src_sample = list(test_src[:sentences])

    # length-bucketed token batches against random ones of the same token budget
    from mtkit.prepare import prepare

    split = prepare(cfg).splits["train"]
    src_lens, tgt_lens = [len(s) for s in split.src_ids], [len(t) for t in split.tgt_ids]
    bucketed = batch_indices(src_lens, tgt_lens, cfg.train.batch_tokens, seed=cfg.seed)[:rounds]
    shuffled = random_token_batches(src_lens, tgt_lens, cfg.train.batch_tokens, seed=cfg.seed)[:rounds]
    optimizer = _make_optimizer(model, cfg)
    step = project_train_step(model, optimizer, cfg)
    per_token: dict[str, list[float]] = {"bucketed": [], "random": []}

    def timed_step(kind: str, index: list[int]) -> None:
        b = collate(split.src_ids, split.tgt_ids, index)
        start = time.perf_counter()
        step(b)
        per_token[kind].append((time.perf_counter() - start) / b.num_tgt_tokens)

    loads = [load_average()]
    for i in range(rounds):
        timed_step("bucketed", bucketed[i])
        timed_step("random", shuffled[i])
    loads.append(load_average())
    pad_b, pad_r = (padding_fraction(src_lens, tgt_lens, bs) for bs in (bucketed, shuffled))
    out.append(_lever("length-bucketed token batches", f"bucketed (padding {pad_b:.0%})", f"random order (padding {pad_r:.0%})",
                      (statistics.median(per_token["bucketed"]), statistics.median(per_token["random"]),
                       round(statistics.mean(loads), 2)), "seconds per target token (training step)"))

    out.append(_lever("fused vocabulary projection and loss", "mtkit.loss on real positions, in chunks",
                      "(B, T, V) logits and autograd's cross-entropy",
                      _interleaved(lambda i: step(batch(i)),
                                   lambda i: autograd_loss_step(model, optimizer, cfg)(batch(i)), rounds),
                      "seconds per training step"))
    out.append(_lever("one vocabulary projection and loss", "over all positions at once", "per target step",
                      _interleaved(lambda i: _fwd_bwd(model, batch(i)),
                                   lambda i: _fwd_bwd(model, batch(i), per_step_output=True), rounds),
                      "seconds per forward+backward"))
    if model.decoder.attention is not None:
        out.append(_lever("attention keys projected once per sentence", "once (Memory.keys)", "at every step",
                          _interleaved(lambda i: _fwd_bwd(model, batch(i)),
                                       lambda i: _fwd_bwd(model, batch(i), keys_per_step=True), rounds),
                          "seconds per forward+backward"))
    # the whole-sequence path, on the config's model if it has one, else on the variants that do:
    # no input feeding (Luong) and no attention (RNNencdec)
    variants = [model] if model.decoder.whole_sequence else [
        build_model(v, model.encoder.embed.num_embeddings, model.decoder.vocab)
        for v in ([replace(cfg.model, input_feeding=False)] if cfg.model.decoder == "luong" else [])
        + [replace(cfg.model, decoder="bahdanau", maxout=False, attention=replace(cfg.model.attention, kind="none"))]]
    for fused in variants:
        out.append(_lever(f"fused whole-sequence decoder ({'no attention' if fused.decoder.attention is None else 'attention'})",
                          "one RNN call over all positions", "one step at a time",
                          _interleaved(lambda i: _fwd_bwd(fused, batch(i)),
                                       lambda i: _fwd_bwd(fused, batch(i), unroll=True), rounds),
                          "seconds per forward+backward", f"on {describe(fused)}"))
    out.append(_lever("packed encoder", "torch packed sequence", "torch RNN over the padded batch", _interleaved(
        lambda i: _encoder_pass(model, batch(i), "packed"),
        lambda i: _encoder_pass(model, batch(i), "padded"), rounds),
        "seconds per encoder forward+backward",
        "packing skips padding, which bucketed batches have little of, and its backward writes per-step slices"))
    out.append(_lever("encoder: reversed backward direction", "mtkit Encoder (padded, reversed in place)",
                      "torch packed sequence", _interleaved(
                          lambda i: _encoder_pass(model, batch(i), "mtkit"),
                          lambda i: _encoder_pass(model, batch(i), "packed"), rounds),
                      "seconds per encoder forward+backward", "both give the same states"))

    model.eval()
    greedy_plain = search.greedy.__wrapped__  # greedy without its inference_mode decorator

    def decode_with_grad(_: int) -> None:
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # float() of a tensor that requires grad: the point here
            for start in range(0, len(src_sample), cfg.decode.batch_size):
                src, src_len = pad_sequences(src_sample[start : start + cfg.decode.batch_size])
                greedy_plain(model, src, src_len, search.max_lengths(src_len, cfg.decode.max_len_ratio,
                                                                     cfg.decode.max_len_extra))

    decode = lambda _: search.decode(model, src_sample, beam=1, batch_size=cfg.decode.batch_size)  # noqa: E731
    out.append(_lever("inference mode in search", "torch.inference_mode", "autograd recording",
                      _interleaved(decode, decode_with_grad, max(2, rounds // 2)),
                      f"seconds per greedy decoding of {len(src_sample)} sentences"))

    def with_threads(n: int, fn: Callable[[int], Any]) -> Callable[[int], Any]:
        def run(i: int) -> Any:
            torch.set_num_threads(n)
            try:
                return fn(i)
            finally:
                torch.set_num_threads(threads)
        return run

    if os.cpu_count() and os.cpu_count() > 1:
        cores = os.cpu_count() or 1
        out.append(_lever("one thread", "1 thread", f"{cores} threads",
                          _interleaved(with_threads(1, lambda i: step(batch(i))),
                                       with_threads(cores, lambda i: step(batch(i))), rounds),
                          "seconds per training step", "OpenMP threads wait on each other when the cores are shared"))
        out.append(_lever("one thread (greedy)", "1 thread", f"{cores} threads",
                          _interleaved(with_threads(1, decode), with_threads(cores, decode), max(2, rounds // 2)),
                          f"seconds per greedy decoding of {len(src_sample)} sentences"))

    def with_memory(keep: bool, fn: Callable[[int], Any]) -> Callable[[int], Any]:
        def run(i: int) -> Any:
            keep_freed_memory(keep)
            return fn(i)
        return run

    if keep_freed_memory(False):  # glibc is there: time both settings, then leave its defaults
        out.append(_lever("keep freed memory (mallopt)", "kept in the heap", "unmapped when freed",
                          _interleaved(with_memory(True, lambda i: step(batch(i))),
                                       with_memory(False, lambda i: step(batch(i))), rounds),
                          "seconds per training step"))
        keep_freed_memory(False)
    return out
