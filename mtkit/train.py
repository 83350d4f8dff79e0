"""`mtkit train`: the training loop, validation, budgets, early stopping and checkpoints.

The loop reads top to bottom: `_start` builds (or resumes) the model, optimizer, scheduler and
state; `_train_epoch` runs the steps of one epoch; `_validate` scores the dev set and saves. Every
function returns a new `TrainState` rather than changing one it was given. Everything a restart
needs is in `TrainState` (saved with the model, optimizer, scheduler and RNG states), and the batch
order of an epoch is a function of the seed and the epoch number, so a resumed run replays exactly
the steps an uninterrupted one takes.

The loop's helpers live beside it by job: the optimizer and schedule in `optim`, what a run records
(metrics, TensorBoard, train.log, the stop signal) in `runlog`, the train.max_len filter in
`prepare`, and the attention drawings in `plots`. What stays here (a little over 400 lines) is the
loop and the steps it takes, train_step and validate, so that it reads top to bottom in one file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, ContextManager, NamedTuple

import sacrebleu
import torch
from tqdm import tqdm

from mtkit import distributed
from mtkit.checkpoint import TrainState, load_checkpoint, save_checkpoint, set_rng_states
from mtkit.config import Config, DecodeConfig, TrainConfig, save_config
from mtkit.data.batching import Batch, batch_indices, collate
from mtkit.data.tokenizer import Tokenizer
from mtkit.device import autocast as autocast_for, choose_device, environment, set_threads
from mtkit.distributed import World
from mtkit.errors import MtkitError
from mtkit.loss import target_loss
from mtkit.model import Seq2Seq, attention_label, build_model, describe, unroll_steps
from mtkit.optim import fused_adam_fits, make_optimizer, make_scheduler  # noqa: F401 (fused_adam_fits: API)
from mtkit.prepare import EncodedSplit, Prepared, prepare, shorter_pairs
from mtkit.runlog import Metrics, StopSignal, add_file_log, truncate_metrics
from mtkit.runs import prepare_run_dir, write_data_info, write_latest
from mtkit.search import decode

log = logging.getLogger(__name__)


class Validation(NamedTuple):
    """Dev-set scores at one step."""

    loss: float  # per target token
    ppl: float
    bleu: float
    sentences: int


def forward_features(model: Seq2Seq, batch: Batch, teacher_forcing: float = 1.0) -> torch.Tensor:
    """Return the decoder's features (B, T, O), what its vocabulary projection reads.

    Below 1.0 teacher forcing feeds back the model's own argmax at random steps.
    """
    state, memory = model.encode(batch.src, batch.src_len)
    if teacher_forcing >= 1.0:
        return model.decoder.features(batch.tgt_in, state, memory)[0]
    return unroll_steps(model.decoder, batch.tgt_in, state, memory, teacher_forcing)[0]


def train_step(model: Seq2Seq, optimizer: torch.optim.Optimizer, batch: Batch, *, clip: float,
               label_smoothing: float = 0.0, teacher_forcing: float = 1.0,
               autocast: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
               world: World = World()) -> tuple[float, int]:
    """Take one optimisation step on `batch` (and the other processes' batches); return (loss per token, tokens).

    clip > 0 clips the gradient norm; a loss that is not finite takes no step (the caller stops).
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    tokens = batch.num_tgt_tokens
    with autocast():
        features = forward_features(model, batch, teacher_forcing)
    loss_sum = target_loss(model.decoder, features, batch.tgt_out, label_smoothing)
    if world.size > 1:
        loss_sum.backward()
        value, tokens = distributed.reduce_step(list(model.parameters()), loss_sum, tokens, world)
    else:
        loss = loss_sum / tokens
        value = loss.item()
        if math.isfinite(value):
            loss.backward()
    if not math.isfinite(value):
        return value, tokens  # the caller stops the run; no update from a broken loss
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return value, tokens


@torch.inference_mode()
def validate(model: Seq2Seq, split: EncodedSplit, tokenizer: Tokenizer, *, batch_tokens: int, bleu_sentences: int,
             settings: DecodeConfig, device: torch.device) -> Validation:
    """Return dev loss, perplexity and greedy BLEU (on the first `bleu_sentences` sentences, decoded with `settings`)."""
    model.eval()
    total, tokens = 0.0, 0
    for index in batch_indices([len(s) for s in split.src_ids], [len(t) for t in split.tgt_ids], batch_tokens):
        batch = collate(split.src_ids, split.tgt_ids, index).to(device)
        features = forward_features(model, batch)
        total += float(target_loss(model.decoder, features, batch.tgt_out))
        tokens += batch.num_tgt_tokens
    loss = total / max(tokens, 1)
    n = min(bleu_sentences, len(split.src_ids))
    bleu = 0.0
    if n:
        hyps = decode(model, split.src_ids[:n], replace(settings, beam=1), device=device)
        outputs = [tokenizer.decode_tgt(h[0].tokens) for h in hyps]
        bleu = sacrebleu.corpus_bleu(outputs, [split.tgt_text[:n]]).score
    return Validation(loss, math.exp(min(loss, 50.0)), bleu, n)


def record_validation(state: TrainState, value: float, t: TrainConfig) -> tuple[TrainState, bool]:
    """Return the state after a validation that scored `value` on `t.early_stop_metric`, and whether it is the best.

    Counts validations without improvement, and finishes the run when they reach `t.patience`.
    """
    better = (state.best_metric is None
              or (value > state.best_metric if t.early_stop_metric == "bleu" else value < state.best_metric))
    if better:
        state = replace(state, best_metric=value, best_step=state.step, bad_validations=0)
    else:
        state = replace(state, bad_validations=state.bad_validations + 1)
    state = replace(state, validated_step=state.step)
    if t.patience is not None and state.bad_validations >= t.patience:
        state = replace(state, finished=True,
                        stop_reason=f"early stopping: no better dev {t.early_stop_metric} in {t.patience} validations")
    return state, better


class Window(NamedTuple):
    """The steps since the last progress line: when they began, how many, their summed loss and target tokens."""

    start: float
    steps: int = 0
    loss: float = 0.0
    tokens: int = 0

    def add(self, loss: float, tokens: int) -> "Window":
        """Return the window with one more step."""
        return Window(self.start, self.steps + 1, self.loss + loss, self.tokens + tokens)


class _Run(NamedTuple):
    """What stays fixed while a run trains (the changing part is the TrainState)."""

    cfg: Config
    run_dir: Path
    prepared: Prepared
    train_split: EncodedSplit
    model: Seq2Seq
    optimizer: torch.optim.Optimizer
    scheduler: Any
    device: torch.device
    world: World
    metrics: Metrics
    started: float  # perf_counter() at which the run's summed training time would have begun
    cpu_started: float  # process_time() likewise, for the CPU-time budget

    def elapsed(self) -> float:
        """Return the run's training wall time so far, summed over restarts."""
        return time.perf_counter() - self.started

    def cpu_elapsed(self) -> float:
        """Return the CPU time this process (all its threads) has spent on the run, summed over restarts."""
        return time.process_time() - self.cpu_started


def train(cfg: Config, resume: bool = False, overwrite: bool = False, device: str | None = None,
          nproc: int = 1) -> TrainState:
    """Train the model of `cfg` into `cfg.run_dir`; return the final TrainState.

    With `resume`, the run continues from its `last.pt` (model, optimizer, scheduler, RNG states and
    data position), so its losses match those of a run that was never interrupted. With `nproc` > 1
    (or under torchrun) the batches are shared out over data-parallel processes.
    """
    world = distributed.world_from_env()
    if nproc > 1 and world.size == 1:
        prepare_run_dir(Path(cfg.run_dir), resume, overwrite)
        prepare(cfg)  # once, before the workers start, so they find the cache
        try:
            distributed.launch(nproc, _train_worker, cfg, device)
        except Exception as err:  # a worker's MtkitError arrives wrapped; keep its message
            raise MtkitError(str(err).strip().splitlines()[-1].removeprefix("mtkit.errors.MtkitError: ")) from None
        return load_checkpoint(Path(cfg.run_dir) / "last.pt").state
    dev = choose_device(device or cfg.train.device, world)
    distributed.init(world, dev)
    try:
        if world.is_main:
            prepare_run_dir(Path(cfg.run_dir), resume, overwrite)
            prepared = prepare(cfg)
        if world.size > 1:
            torch.distributed.barrier()  # the run dir and the prepared data exist for everyone now
            if not world.is_main:
                prepared = prepare(cfg)  # reads the cache the main process wrote
        state = _train_logged(cfg, prepared, resume, dev, world)
        distributed.finish(world)
        return state
    finally:
        distributed.shutdown(world)


def _train_worker(cfg: Config, device: str | None) -> None:
    """One process of `train(..., nproc=N)`: the run dir is ready, so every process resumes or starts it."""
    world = distributed.world_from_env()
    dev = choose_device(device or cfg.train.device, world)
    if cfg.train.threads is None:
        set_threads(max(1, (os.cpu_count() or 1) // world.size))
    distributed.init(world, dev)
    try:
        _train_logged(cfg, prepare(cfg), (Path(cfg.run_dir) / "last.pt").is_file(), dev, world)
        distributed.finish(world)
    finally:
        distributed.shutdown(world)


def _train_logged(cfg: Config, prepared: Prepared, resume: bool, device: torch.device, world: World) -> TrainState:
    handler = add_file_log(Path(cfg.run_dir)) if world.is_main else None
    try:
        return _train(cfg, prepared, resume, device, world)
    finally:
        if handler is not None:
            logging.getLogger("mtkit").removeHandler(handler)
            handler.close()


def _train(cfg: Config, prepared: Prepared, resume: bool, device: torch.device, world: World) -> TrainState:
    """Train until an epoch limit, a budget, early stopping or a signal ends the run; return the final state."""
    t = cfg.train
    run, state = _start(cfg, prepared, resume, device, world)
    window = Window(time.perf_counter())
    with StopSignal() as stop_signal:
        while state.epoch < t.epochs and not state.finished:
            state, window = _train_epoch(run, state, window, stop_signal)
            if state.finished:
                break
            state = replace(state, epoch=state.epoch + 1, batch_in_epoch=0)
            if not t.valid_every:
                state = _validate(run, state)
        if not state.finished:
            state = replace(state, finished=True, stop_reason=f"reached train.epochs = {t.epochs}")
        if state.validated_step != state.step:  # a final validation unless the last step was just validated
            state = _validate(run, state)
        state = _save(run, replace(state, finished=True), "last.pt")
    _finish(run, state)
    return state


def _start(cfg: Config, prepared: Prepared, resume: bool, device: torch.device,
           world: World) -> tuple[_Run, TrainState]:
    """Return the run's fixed parts (model, optimizer, scheduler, data, ...) and its state: new, or from last.pt."""
    set_threads(cfg.train.threads)
    torch.manual_seed(training_seed(cfg))  # the same initial weights in every process
    run_dir = Path(cfg.run_dir)
    train_split = prepared.splits["train"]
    if cfg.train.max_len is not None:
        train_split = shorter_pairs(train_split, cfg.train.max_len)
    model = build_model(cfg.model, prepared.tokenizer.src_vocab, prepared.tokenizer.tgt_vocab).to(device)
    optimizer = make_optimizer(model, cfg.train)
    scheduler = make_scheduler(optimizer, cfg.train)
    state = TrainState()
    if resume:
        saved = load_checkpoint(run_dir / "last.pt", device)
        model.load_state_dict(saved.model.state_dict())
        optimizer.load_state_dict(saved.raw["optimizer"])
        if scheduler is not None and "scheduler" in saved.raw:
            scheduler.load_state_dict(saved.raw["scheduler"])
        set_rng_states(saved.raw["rng"])
        state = replace(saved.state, finished=False, stop_reason="")
        if world.is_main:
            truncate_metrics(run_dir / "metrics.jsonl", state.step)
            log.info("resuming %s at step %d (epoch %d, batch %d)", run_dir, state.step, state.epoch,
                     state.batch_in_epoch)
    if world.size > 1:
        distributed.broadcast_parameters(model, world)
        torch.manual_seed(training_seed(cfg) + 1000 * world.rank + state.step)  # each process its own dropout masks
    if world.is_main:
        _write_run_files(cfg, prepared, model, device, world)
    metrics = Metrics(run_dir, world.is_main, cfg.train.tensorboard)
    run = _Run(cfg, run_dir, prepared, train_split, model, optimizer, scheduler, device, world, metrics,
               time.perf_counter() - state.seconds, time.process_time() - state.cpu_seconds)
    return run, state


def _write_run_files(cfg: Config, prepared: Prepared, model: Seq2Seq, device: torch.device, world: World) -> None:
    """Write what other tools read beside the checkpoints (config, tokenizer, data and machine), and point `latest` here."""
    run_dir = Path(cfg.run_dir)
    save_config(cfg, run_dir / "config.yaml")
    prepared.tokenizer.save(run_dir)
    write_data_info(run_dir, prepared.directory)
    record = {"seed": cfg.seed, "train_seed": training_seed(cfg), **environment(device), "processes": world.size}
    (run_dir / "environment.json").write_text(json.dumps(record, indent=2) + "\n")
    write_latest(run_dir)
    log.info("%s on %s%s; data %s", describe(model), device,
             f" × {world.size} processes" if world.size > 1 else "", prepared.directory)
    log.info("\n%s", prepared.report)


def _train_epoch(run: _Run, state: TrainState, window: Window,
                 stop_signal: StopSignal) -> tuple[TrainState, Window]:
    """Return the state after the rest of epoch `state.epoch` (or the step at which the run must stop), and the
    progress window, which runs on into the next epoch."""
    t, world, main = run.cfg.train, run.world, run.world.is_main
    split = run.train_split
    batches = _my_batches(batch_indices([len(s) for s in split.src_ids], [len(s) for s in split.tgt_ids],
                                        t.batch_tokens, seed=training_seed(run.cfg) + state.epoch), world)
    autocast = autocast_for(run.device)
    with tqdm(total=len(batches), initial=state.batch_in_epoch, desc=f"epoch {state.epoch}", unit="batch",
              dynamic_ncols=True, leave=False, disable=None if main else True) as bar:
        for index in batches[state.batch_in_epoch :]:
            reason = _budget_spent(t, state, run.elapsed(), run.cpu_elapsed())
            if distributed.any_process(bool(reason), world, run.device):
                # Checked before the step, so a resumed run that had finished stays finished.
                return replace(state, finished=True, stop_reason=reason or "another process reached its budget"), window
            batch = collate(split.src_ids, split.tgt_ids, index).to(run.device)
            loss, tokens = train_step(run.model, run.optimizer, batch, clip=t.clip, label_smoothing=t.label_smoothing,
                                      teacher_forcing=t.teacher_forcing, autocast=autocast, world=world)
            if not math.isfinite(loss):
                raise MtkitError(f"step {state.step + 1}: the training loss is {loss}; stopped, and the last good "
                                 f"checkpoint in {run.run_dir} is kept. Lower train.lr or set train.clip, then "
                                 f"`mtkit train --resume`")
            if run.scheduler is not None and t.schedule == "inverse_sqrt":
                run.scheduler.step()
            state = replace(state, step=state.step + 1, batch_in_epoch=state.batch_in_epoch + 1,
                            tokens=state.tokens + tokens)
            window = window.add(loss, tokens)
            bar.update(1)
            if state.step % t.log_every == 0 and main:
                _log_progress(run, state, window, bar)
                window = Window(time.perf_counter())
            if t.valid_every and state.step % t.valid_every == 0:
                state = _validate(run, state)
                if state.finished:
                    return state, window
            if distributed.any_process(stop_signal.received is not None, world, run.device):
                _save(run, state, "last.pt")
                raise MtkitError(f"{stop_signal.received or 'a stop signal'} received at step {state.step}: saved "
                                 f"{run.run_dir / 'last.pt'}; continue with `mtkit train --resume`")
    return state, window


def _log_progress(run: _Run, state: TrainState, window: Window, bar: tqdm) -> None:
    """Show the window's mean loss and speed on the progress bar (or as a log line) and in metrics.jsonl."""
    speed = window.tokens / max(time.perf_counter() - window.start, 1e-9)
    loss = window.loss / window.steps
    lr = run.optimizer.param_groups[0]["lr"]
    bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{speed:.0f}", lr=f"{lr:.2e}")
    if bar.disable:  # no terminal (a log file, CI): progress as log lines instead
        log.info("step %d  epoch %d  loss %.4f  %.0f target tok/s  lr %.2e", state.step, state.epoch, loss, speed, lr)
    run.metrics.write({"step": state.step, "epoch": state.epoch, "kind": "train", "loss": round(loss, 6),
                       "tokens_per_s": round(speed, 1), "lr": lr})


def _validate(run: _Run, state: TrainState) -> TrainState:
    """Validate, log, step a plateau schedule, save best.pt (when better) and last.pt; return the new state."""
    t = run.cfg.train
    result = validate(run.model, run.prepared.splits["dev"], run.prepared.tokenizer, batch_tokens=t.batch_tokens,
                      bleu_sentences=t.valid_bleu_sentences, settings=run.cfg.decode, device=run.device)
    value = result.bleu if t.early_stop_metric == "bleu" else result.loss
    if run.scheduler is not None and t.schedule == "plateau":
        run.scheduler.step(value)
    state, better = record_validation(state, value, t)
    record = {"step": state.step, "epoch": state.epoch, "kind": "valid", "dev_loss": round(result.loss, 6),
              "dev_ppl": round(result.ppl, 4), "dev_bleu": round(result.bleu, 4),
              "lr": run.optimizer.param_groups[0]["lr"], "seconds": round(run.elapsed(), 1),
              "cpu_seconds": round(run.cpu_elapsed(), 1), "best": better}
    run.metrics.write(record)
    if run.world.is_main:
        tqdm.write(f"{run.run_dir.name}  step {state.step:>6}  epoch {state.epoch}  dev loss {result.loss:.4f}  "
                   f"ppl {result.ppl:.2f}  BLEU {result.bleu:.2f}{'  (best)' if better else ''}")
        log.info("validation %s", record)
        _save_attention_samples(run, state.step)
    if better:
        state = _save(run, state, "best.pt")
    return _save(run, state, "last.pt")


def _save(run: _Run, state: TrainState, name: str) -> TrainState:
    """Return the state with its training time brought up to now, after saving it in `run_dir/name` (main process)."""
    state = replace(state, seconds=run.elapsed(), cpu_seconds=run.cpu_elapsed())
    if run.world.is_main:
        save_checkpoint(run.run_dir / name, run.model, run.cfg, run.prepared.tokenizer, state, run.optimizer,
                        run.scheduler)
    return state


def _finish(run: _Run, state: TrainState) -> None:
    """Check the processes agree, close the metrics, and say how the run ended."""
    t, world = run.cfg.train, run.world
    if world.size > 1:
        spread = distributed.parameter_spread(run.model, world)
        if world.is_main:
            run.metrics.write({"step": state.step, "kind": "sync", "processes": world.size, "max_param_diff": spread})
            log.info("parameters of the %d processes differ by at most %g", world.size, spread)
    run.metrics.close()
    if not world.is_main:
        return
    log.info("finished after %d steps (%.0f s): %s; best dev %s %.4f at step %d", state.step, state.seconds,
             state.stop_reason, t.early_stop_metric, state.best_metric or 0.0, state.best_step)
    tqdm.write(f"done: {state.stop_reason}; best dev {t.early_stop_metric} {state.best_metric:.4f} at step "
               f"{state.best_step}; checkpoints in {run.run_dir}")


def training_seed(cfg: Config) -> int:
    """Return the seed of the weights, dropout and batch order: `train.seed`, else the top-level `seed`."""
    return cfg.seed if cfg.train.seed is None else cfg.train.seed


def _budget_spent(t: TrainConfig, state: TrainState, seconds: float, cpu_seconds: float) -> str:
    if t.max_steps is not None and state.step >= t.max_steps:
        return f"reached train.max_steps = {t.max_steps}"
    if t.max_minutes is not None and seconds >= 60 * t.max_minutes:
        return f"reached train.max_minutes = {t.max_minutes}"
    if t.max_cpu_minutes is not None and cpu_seconds >= 60 * t.max_cpu_minutes:
        return f"reached train.max_cpu_minutes = {t.max_cpu_minutes}"
    return ""


def _my_batches(batches: list[list[int]], world: World) -> list[list[int]]:
    """Return this process's share of an epoch's batches: every `size`-th, the same count for all."""
    if world.size == 1:
        return batches
    usable = len(batches) - len(batches) % world.size  # equal shares keep the processes in step
    return batches[world.rank : usable : world.size]


def _save_attention_samples(run: _Run, step: int) -> None:
    """Plot the attention of a few fixed dev sentences, so alignment can be watched as it emerges.

    Each title names the attention drawn: a Transformer's is the mean cross-attention of all its layers and heads.
    """
    model, prepared, cfg, run_dir = run.model, run.prepared, run.cfg, run.run_dir
    n = min(cfg.train.attention_samples, len(prepared.splits["dev"].src_ids))
    if not n or not model.has_attention:
        return
    from mtkit.plots import AttentionSample, plot_attention_samples  # matplotlib only when plots are wanted

    dev = prepared.splits["dev"]
    hyps = decode(model, dev.src_ids[:n], replace(cfg.decode, beam=1), device=run.device)
    samples = [AttentionSample(prepared.tokenizer.src_pieces(src), prepared.tokenizer.tgt_pieces(nbest[0].tokens),
                               nbest[0].attention.numpy())
               if nbest[0].attention is not None and nbest[0].tokens else None
               for src, nbest in zip(dev.src_ids[:n], hyps)]
    plot_attention_samples(samples, run_dir / "attention", step, attention_label(model))
