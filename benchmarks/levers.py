"""Each speed lever of mtkit timed against its alternative, on the config's model.

Both sides of every lever run mtkit's own functions, reached through its public interface; the
benchmark holds no copy of mtkit's code, only torch's cross-entropy over (B, T, V) logits, the loss
that the fused one replaced:

* length-bucketed batches (`batch_indices`) against random ones of the same token budget, both
  through `mtkit.train.train_step`;
* the fused vocabulary projection and loss (`mtkit.loss.target_loss`) against the (B, T, V) logits
  of `Decoder.logits` and torch's cross-entropy, both on `mtkit.train.forward_features`;
* attention keys projected once per sentence (`Memory.projected`) against a `Memory` without them,
  with which `Attention.forward` projects them at every call (its `projected=None`); RNNs only:
  a Transformer's record says why it is skipped;
* the whole-sequence decoder (`Decoder.forward`) against its reference loop over `step`
  (`Decoder.unroll`), on the config's model if it has that path, else on the variants that do
  (a Transformer's: every target position in one causal pass, against cached steps);
* mtkit's fused kernels against their plain-torch references (`mtkit.kernels.use`, the one switch
  MTKIT_KERNELS sets): the recurrences as one autograd node each, `native.c`'s loops, the hashed
  dropout, the additive score and the chunked loss, for a training step and for greedy decoding;
* the fused loss 256 target positions at a time (the default) against 1,024;
* Adam as one fused kernel (`mtkit.train.make_optimizer`) against torch's default, op by op;
* one thread against all cores (`mtkit.device.set_threads`), for a training step and for greedy decoding.

Every lever is timed in the process as the `mtkit` command runs: `python -m benchmarks` applies
`mtkit.runtime.tune_process` first (OpenMP's spin, malloc's thresholds), the function `main()`
calls, and no lever changes those settings; the record's environment says what was in force.

The Transformer's own levers, how its attention is built, are `benchmarks.transformer_levers`.

Levers whose alternative mtkit no longer has (torch's packed encoder, search without
`torch.inference_mode`) were measured at an earlier commit; docs/records/benchmarks/levers_reference_model.json is their record.

Both sides run alternately, the first swapped each round (ABBA...), so that a shared machine's
changing load falls on both alike; each record holds the median seconds of each side.
"""

from __future__ import annotations

import logging
import os
import random
import statistics
import time
from dataclasses import replace
from typing import Any, Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mtkit import kernels
from mtkit.config import Config
from mtkit.data.batching import Batch, batch_indices, collate, padding_fraction
from mtkit.data.tokenizer import PAD
from mtkit.device import set_threads
from mtkit.loss import target_loss
from mtkit.model import Memory, Seq2Seq, build_model, describe
from mtkit.model.transformer import TransformerDecoder
from mtkit.prepare import EncodedSplit
from mtkit.search import decode
from mtkit.train import forward_features

from benchmarks.timing import StepFn, load_average, training_step

log = logging.getLogger(__name__)

KEYS_ALWAYS_ONCE = ("a Transformer projects its cross-attention keys and values once per sentence "
                    "(TransformerDecoder.init_state) and has no per-step path to time against")

Run = Callable[[int], Any]  # one side of a lever, run for round i


class Timing(NamedTuple):
    """Median seconds of a lever and of its alternative, and the mean load while they ran."""

    lever: float
    baseline: float
    load: float


class LeverBench(NamedTuple):
    """What the levers run on."""

    cfg: Config
    model: Seq2Seq
    step: StepFn  # mtkit.train.train_step on the model
    batches: Sequence[Batch]  # training batches; round i uses batches[i % len]
    src_sample: list[list[int]]  # test sentences for the decoding levers
    rounds: int

    def batch(self, i: int) -> Batch:
        return self.batches[i % len(self.batches)]

    def greedy(self, _: int = 0) -> None:
        decode(self.model, self.src_sample, replace(self.cfg.decode, beam=1))

    def train(self, i: int) -> Any:
        return self.step(self.batch(i))


def with_setting(apply: Callable[[Any], Any], value: Any, restore: Any, fn: Run) -> Run:
    """Return fn run with apply(value) in force, and apply(restore) after it, whatever happens."""
    def run(i: int) -> Any:
        apply(value)
        try:
            return fn(i)
        finally:
            apply(restore)
    return run


def interleaved(lever: Run, baseline: Run, rounds: int) -> Timing:
    """Return the median seconds of lever(i) and baseline(i) over rounds run as ABBA..., and the mean load."""
    times: tuple[list[float], list[float]] = ([], [])
    loads = []
    for i in range(rounds):
        for side in ((0, 1) if i % 2 == 0 else (1, 0)):
            loads.append(load_average())
            start = time.perf_counter()
            (lever, baseline)[side](i)
            times[side].append(time.perf_counter() - start)
    return Timing(statistics.median(times[0]), statistics.median(times[1]), round(statistics.mean(loads), 2))


def lever_record(name: str, lever: str, baseline: str, timing: Timing, unit: str, note: str = "") -> dict[str, Any]:
    """Return a lever's JSON record: both sides named, their median seconds, the speed-up and the load."""
    record = {"name": name, "lever": lever, "baseline": baseline, "unit": unit,
              "lever_seconds": float(f"{timing.lever:.4g}"), "baseline_seconds": float(f"{timing.baseline:.4g}"),
              "speedup": round(timing.baseline / timing.lever, 3), "load": timing.load}
    if note:
        record["note"] = note
    log.info("lever %s: %s %.3f s vs %s %.3f s (×%.2f, load %.2f)", name, lever, timing.lever, baseline,
             timing.baseline, timing.baseline / timing.lever, timing.load)
    return record


def skipped_record(name: str, reason: str) -> dict[str, Any]:
    """Return the record of a lever that does not apply to this model, with the reason."""
    log.info("lever %s: skipped, %s", name, reason)
    return {"name": name, "skipped": reason}


def _backward(model: Seq2Seq, loss: Callable[[], Tensor]) -> None:
    """Run a forward pass (`loss`) and its backward pass, in training mode, from zero gradients."""
    model.train()
    model.zero_grad(set_to_none=True)
    loss().backward()


def logits_loss(logits: Tensor, tgt_out: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Return torch's summed cross-entropy of logits (B, T, V) against tgt_out (B, T), padding ignored."""
    return F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD,
                           label_smoothing=label_smoothing, reduction="sum")


def without_projected_keys(memory: Memory) -> Memory:
    """Return `memory` with no projected keys: attention then projects the states at every step."""
    return Memory(memory.states, None, memory.mask, memory.context)


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


# ---- the levers ----------------------------------------------------------------------------------


def bucketing(bench: LeverBench, split: EncodedSplit) -> dict[str, Any]:
    """Time training steps per target token on length-bucketed batches and on random ones of the same budget."""
    cfg = bench.cfg
    src_lens, tgt_lens = [len(s) for s in split.src_ids], [len(t) for t in split.tgt_ids]
    indices = {"bucketed": batch_indices(src_lens, tgt_lens, cfg.train.batch_tokens, seed=cfg.seed)[: bench.rounds],
               "random": random_token_batches(src_lens, tgt_lens, cfg.train.batch_tokens, seed=cfg.seed)[: bench.rounds]}
    batches = {kind: [collate(split.src_ids, split.tgt_ids, index) for index in chosen]
               for kind, chosen in indices.items()}
    per_token: dict[str, list[float]] = {kind: [] for kind in batches}

    def run(kind: str) -> Run:  # batches differ in size: time each step per target token
        def step(i: int) -> None:
            batch = batches[kind][i % len(batches[kind])]
            start = time.perf_counter()
            bench.step(batch)
            per_token[kind].append((time.perf_counter() - start) / batch.num_tgt_tokens)
        return step

    load = interleaved(run("bucketed"), run("random"), bench.rounds).load
    pad = {kind: padding_fraction(src_lens, tgt_lens, chosen) for kind, chosen in indices.items()}
    return lever_record("length-bucketed token batches", f"bucketed (padding {pad['bucketed']:.0%})",
                        f"random order (padding {pad['random']:.0%})",
                        Timing(statistics.median(per_token["bucketed"]), statistics.median(per_token["random"]), load),
                        "seconds per target token (training step)")


def fused_loss(bench: LeverBench) -> dict[str, Any]:
    """Time forward+backward with `mtkit.loss.target_loss` and with (B, T, V) logits and torch's cross-entropy."""
    model, smoothing = bench.model, bench.cfg.train.label_smoothing

    def fused(i: int) -> None:
        b = bench.batch(i)
        _backward(model, lambda: target_loss(model.decoder, forward_features(model, b), b.tgt_out, smoothing))

    def plain(i: int) -> None:
        b = bench.batch(i)
        _backward(model, lambda: logits_loss(model.decoder.logits(forward_features(model, b)), b.tgt_out, smoothing))

    return lever_record("fused vocabulary projection and loss", "mtkit.loss on real positions, in chunks",
                        "(B, T, V) logits and torch's cross-entropy", interleaved(fused, plain, bench.rounds),
                        "seconds per forward+backward")


def keys_projected_once(bench: LeverBench) -> dict[str, Any]:
    """Time forward+backward with the keys projected once per sentence and with them projected at every step."""
    model = bench.model

    def run(per_step: bool) -> Run:
        def loss(b: Batch) -> Tensor:
            state, memory = model.encode(b.src, b.src_len)
            memory = without_projected_keys(memory) if per_step else memory
            features, _ = model.decoder.features(b.tgt_in, state, memory)  # (B, T, O)
            return target_loss(model.decoder, features, b.tgt_out)
        return lambda i: _backward(model, lambda: loss(bench.batch(i)))

    return lever_record("attention keys projected once per sentence", "once (Memory.projected)", "at every step",
                        interleaved(run(False), run(True), bench.rounds), "seconds per forward+backward")


def whole_sequence_models(cfg: Config, model: Seq2Seq) -> list[Seq2Seq]:
    """Return the model if its decoder has the whole-sequence path, else the variants that do.

    The variants: no input feeding (Luong), and no attention (RNNencdec), at the config's sizes.
    """
    if model.decoder.whole_sequence:
        return [model]
    variants = [replace(cfg.model, input_feeding=False)] if cfg.model.decoder == "luong" else []
    variants.append(replace(cfg.model, decoder="bahdanau", maxout=False,
                            attention=replace(cfg.model.attention, kind="none")))
    return [build_model(v, model.encoder.embed.num_embeddings, model.decoder.vocab) for v in variants]


def whole_sequence(bench: LeverBench, model: Seq2Seq) -> dict[str, Any]:
    """Time forward+backward through `Decoder.forward` (one RNN call, or one causal pass) and `Decoder.unroll`
    (one step at a time)."""
    def run(unroll: bool) -> Run:
        def loss(b: Batch) -> Tensor:
            state, memory = model.encode(b.src, b.src_len)
            logits, _ = (model.decoder.unroll if unroll else model.decoder)(b.tgt_in, state, memory)  # (B, T, V)
            return logits_loss(logits, b.tgt_out)
        return lambda i: _backward(model, lambda: loss(bench.batch(i)))

    if isinstance(model.decoder, TransformerDecoder):
        name, lever = "whole-sequence decoder (Transformer)", "all positions in one causal pass"
    else:
        name = f"fused whole-sequence decoder ({'no attention' if model.decoder.attention is None else 'attention'})"
        lever = "one RNN call over all positions"
    return lever_record(name, lever, "one step at a time", interleaved(run(False), run(True), bench.rounds),
                        "seconds per forward+backward", f"on {describe(model)}")


def fused_kernels(bench: LeverBench) -> list[dict[str, Any]]:
    """Time a training step and greedy decoding with mtkit's fused kernels and with their plain-torch references."""
    def on(chosen: str, fn: Run) -> Run:
        return with_setting(kernels.use, chosen, None, fn)

    trained = interleaved(on("fused", bench.train), on("reference", bench.train), bench.rounds)
    decoded = interleaved(on("fused", bench.greedy), on("reference", bench.greedy), max(2, bench.rounds // 2))
    compiled = "with native.c" if kernels.native.load() is not None else "native.c does not build: torch ops"
    note = f"recurrences, additive score, hashed dropout, chunked loss ({compiled}); MTKIT_KERNELS=fused|reference"
    return [lever_record("fused kernels (training)", "fused", "reference", trained, "seconds per training step",
                         note),
            lever_record("fused kernels (greedy)", "fused", "reference", decoded,
                         f"seconds per greedy decoding of {len(bench.src_sample)} sentences", note)]


def loss_chunk(bench: LeverBench, chunk: int = 256, baseline: int = 1024) -> dict[str, Any]:
    """Time the fused loss's forward+backward with `chunk` target positions at a time and with `baseline`."""
    model = bench.model
    with torch.no_grad():
        features = [forward_features(model, bench.batch(i)) for i in range(bench.rounds)]
    out = model.decoder.out

    def run(rows: int) -> Run:
        def loss(i: int) -> None:
            b, x = bench.batch(i), features[i].detach().requires_grad_()
            real = b.tgt_out != PAD
            kernels.linear_cross_entropy(x[real], out.weight, out.bias, b.tgt_out[real], chunk=rows).backward()
        return loss

    return lever_record("loss chunk", f"{chunk} positions at a time", f"{baseline} at a time",
                        interleaved(run(chunk), run(baseline), bench.rounds), "seconds per forward+backward",
                        f"vocabulary {out.weight.size(0)}: a chunk's logits are chunk × V floats")


def fused_adam(bench: LeverBench) -> dict[str, Any]:
    """Time an Adam step over the model's parameters as `make_optimizer` builds it (fused) and op by op (foreach)."""
    params = [p for p in bench.model.parameters() if p.requires_grad]
    grads = [torch.randn_like(p) for p in params]
    saved = [p.detach().clone() for p in params]

    def run(fused: bool) -> Run:
        optimizer = torch.optim.Adam(params, lr=bench.cfg.train.lr, fused=fused, foreach=None if fused else True)

        def step(_: int) -> None:
            for p, g in zip(params, grads):
                p.grad = g
            optimizer.step()
        return step

    timing = interleaved(run(True), run(False), max(bench.rounds, 10))
    with torch.no_grad():
        for p, w in zip(params, saved):
            p.copy_(w)
            p.grad = None
    return lever_record("fused Adam", "one fused kernel (make_optimizer)", "torch's default, op by op (foreach)",
                        timing, "seconds per optimizer step", f"{sum(p.numel() for p in params):,} parameters")


def one_thread(bench: LeverBench, cores: int) -> list[dict[str, Any]]:
    """Time a training step and greedy decoding on one thread and on `cores` threads."""
    threads = torch.get_num_threads()

    def on(n: int, fn: Run) -> Run:
        return with_setting(set_threads, n, threads, fn)

    trained = interleaved(on(1, bench.train), on(cores, bench.train), bench.rounds)
    decoded = interleaved(on(1, bench.greedy), on(cores, bench.greedy), max(2, bench.rounds // 2))
    return [lever_record("one thread", "1 thread", f"{cores} threads", trained, "seconds per training step",
                         "OpenMP threads wait on each other when the cores are shared"),
            lever_record("one thread (greedy)", "1 thread", f"{cores} threads", decoded,
                         f"seconds per greedy decoding of {len(bench.src_sample)} sentences")]


def time_levers(cfg: Config, model: Seq2Seq, batches: Sequence[Batch], split: EncodedSplit,
                test_src: Sequence[Sequence[int]], rounds: int = 4, sentences: int = 128) -> list[dict[str, Any]]:
    """Return, for each speed lever, the median seconds with it and with its alternative, timed interleaved.

    batches: training batches to time steps on; split: the training split, for the bucketing lever;
    test_src: source sentences for the decoding levers, the first `sentences` of them.
    """
    bench = LeverBench(cfg, model, training_step(model, cfg.train), batches, list(test_src[:sentences]), rounds)
    out = [bucketing(bench, split), fused_loss(bench)]
    if isinstance(model.decoder, TransformerDecoder):
        out.append(skipped_record("attention keys projected once per sentence", KEYS_ALWAYS_ONCE))
    elif model.decoder.attention is not None:
        out.append(keys_projected_once(bench))
    out.append(loss_chunk(bench))
    out.append(fused_adam(bench))
    out += fused_kernels(bench)
    out += [whole_sequence(bench, m) for m in whole_sequence_models(cfg, model)]
    cores = os.cpu_count() or 1
    if cores > 1:
        out += one_thread(bench, cores)
    return out
