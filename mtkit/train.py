"""`mtkit train`: the training loop, validation, budgets, early stopping and checkpoints.

The loop reads top to bottom. Everything a restart needs is in `TrainState` (saved with the
model, optimizer, scheduler and RNG states), and the batch order of an epoch is a function of the
seed and the epoch number, so a resumed run replays exactly the steps an uninterrupted one takes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import platform
import shutil
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import sacrebleu
import torch
from tqdm import tqdm

from mtkit import __version__, distributed
from mtkit.checkpoint import TrainState, load_checkpoint, save_checkpoint, set_rng_states
from mtkit.config import Config, save_config
from mtkit.data.batching import Batch, batch_indices, collate
from mtkit.distributed import World
from mtkit.errors import MtkitError
from mtkit.loss import target_loss
from mtkit.model import Seq2Seq, build_model, describe
from mtkit.prepare import EncodedSplit, Prepared, prepare
from mtkit.search import decode

log = logging.getLogger(__name__)

LATEST = Path("runs") / "latest"  # names the most recent run, for translate/eval without --run


class Validation(NamedTuple):
    """Dev-set scores at one step."""

    loss: float  # per target token
    ppl: float
    bleu: float
    sentences: int


def choose_device(name: str = "auto", world: World = World()) -> torch.device:
    """Return the device to use: CUDA when available (or asked for), else the CPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise MtkitError("train.device / --device is 'cuda' but no CUDA GPU is visible; use 'auto' or 'cpu'")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", world.local_rank % torch.cuda.device_count())
    return torch.device(name)


def set_threads(threads: int | None) -> None:
    """Use `threads` CPU threads for tensor work (all cores when None)."""
    if threads is not None:
        torch.set_num_threads(threads)


def write_latest(run_dir: Path) -> None:
    """Point `runs/latest` at `run_dir`."""
    LATEST.parent.mkdir(parents=True, exist_ok=True)
    LATEST.write_text(str(run_dir.resolve()) + "\n", encoding="utf-8")


def read_latest() -> Path:
    """Return the most recent run directory, or raise with what to do."""
    if not LATEST.is_file():
        raise MtkitError(f"no run given and {LATEST} does not exist; train one with `mtkit train CONFIG` or pass --run DIR")
    run_dir = Path(LATEST.read_text(encoding="utf-8").strip())
    if not run_dir.is_dir():
        raise MtkitError(f"{LATEST} names {run_dir}, which no longer exists; pass --run DIR")
    return run_dir


def make_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """Return the configured optimizer over the model's parameters."""
    t = cfg.train
    params = model.parameters()
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.Adadelta(params, lr=t.lr, weight_decay=t.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: Config) -> Any:
    """Return the learning-rate schedule (None for constant)."""
    t = cfg.train
    if t.schedule == "plateau":
        mode = "max" if t.early_stop_metric == "bleu" else "min"
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=t.plateau_factor,
                                                          patience=t.plateau_patience)
    if t.schedule == "inverse_sqrt":
        warmup = t.warmup_steps
        # Linear warm-up to lr, then decay with 1/sqrt(step) (Vaswani et al. 2017, eq. 3 shape).
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min((step + 1) / warmup, math.sqrt(warmup / (step + 1))))
    return None


def forward_features(model: Seq2Seq, batch: Batch, teacher_forcing: float = 1.0) -> torch.Tensor:
    """Return the decoder's features (B, T, O), what its vocabulary projection reads.

    Below 1.0 teacher forcing feeds back the model's own argmax at random steps.
    """
    state, memory = model.encode(batch.src, batch.src_len)
    if teacher_forcing >= 1.0:
        return model.decoder.features(batch.tgt_in, state, memory)[0]
    prev, features = batch.tgt_in[:, 0], []
    for t in range(batch.tgt_in.size(1)):
        out = model.decoder.step(prev, state, memory)
        state = out.state
        features.append(out.features)
        if t + 1 < batch.tgt_in.size(1):
            guess = model.decoder.logits(out.features).argmax(-1)  # (B,)
            use_ref = torch.rand(guess.shape, device=guess.device) < teacher_forcing
            prev = torch.where(use_ref, batch.tgt_in[:, t + 1], guess)
    return torch.stack(features, 1)


def train_step(model: Seq2Seq, optimizer: torch.optim.Optimizer, batch: Batch, cfg: Config,
               autocast: Any, world: World = World()) -> tuple[float, int]:
    """Take one optimisation step on `batch` (and the other processes' batches); return (loss per token, tokens)."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    tokens = batch.num_tgt_tokens
    with autocast():
        features = forward_features(model, batch, cfg.train.teacher_forcing)
    loss_sum = target_loss(model.decoder, features, batch.tgt_out, cfg.train.label_smoothing)
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
    if cfg.train.clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip)
    optimizer.step()
    return value, tokens


@torch.inference_mode()
def validate(model: Seq2Seq, split: EncodedSplit, prepared: Prepared, cfg: Config, device: torch.device) -> Validation:
    """Return dev loss, perplexity and greedy BLEU (on the first `train.valid_bleu_sentences` sentences)."""
    model.eval()
    total, tokens = 0.0, 0
    for index in batch_indices([len(s) for s in split.src_ids], [len(t) for t in split.tgt_ids],
                               cfg.train.batch_tokens):
        batch = collate(split.src_ids, split.tgt_ids, index).to(device)
        features = forward_features(model, batch)
        total += float(target_loss(model.decoder, features, batch.tgt_out))
        tokens += batch.num_tgt_tokens
    loss = total / max(tokens, 1)
    n = min(cfg.train.valid_bleu_sentences, len(split.src_ids))
    bleu = 0.0
    if n:
        hyps = decode(model, split.src_ids[:n], beam=1, max_len_ratio=cfg.decode.max_len_ratio,
                      max_len_extra=cfg.decode.max_len_extra, batch_size=cfg.decode.batch_size, device=device)
        outputs = [prepared.tokenizer.decode_tgt(h[0].tokens) for h in hyps]
        bleu = sacrebleu.corpus_bleu(outputs, [split.tgt_text[:n]]).score
    return Validation(loss, math.exp(min(loss, 50.0)), bleu, n)


def _improved(state: TrainState, value: float, metric: str) -> bool:
    if state.best_metric is None:
        return True
    return value > state.best_metric if metric == "bleu" else value < state.best_metric


def _environment(cfg: Config, device: torch.device) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    import sentencepiece

    return {
        "seed": cfg.seed, "mtkit": __version__, "git_commit": commit, "python": platform.python_version(),
        "torch": torch.__version__, "sacrebleu": sacrebleu.__version__, "sentencepiece": sentencepiece.__version__,
        "device": str(device), "threads": torch.get_num_threads(), "platform": platform.platform(),
    }


def _prepare_run_dir(cfg: Config, resume: bool, overwrite: bool) -> Path:
    run_dir = Path(cfg.run_dir)
    occupied = run_dir.exists() and any(run_dir.iterdir())
    if occupied and not resume:
        if not overwrite:
            raise MtkitError(f"{run_dir} already holds a run; pass --resume to continue it or --overwrite to "
                             f"start again (its files are deleted), or change `run_dir`")
        shutil.rmtree(run_dir)
    if resume and not (run_dir / "last.pt").is_file():
        raise MtkitError(f"--resume: {run_dir / 'last.pt'} does not exist; start the run without --resume")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


class _StopSignal:
    """Turns SIGTERM / Ctrl-C into a flag the loop checks after each step, so `last` gets saved."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_StopSignal":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave the defaults alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


class _Metrics:
    """Appends records to metrics.jsonl, and mirrors numbers to TensorBoard where it is installed."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool) -> None:
        self.path, self.enabled, self.board = run_dir / "metrics.jsonl", enabled, None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # optional: `pip install tensorboard` turns it on
                SummaryWriter = None
            if SummaryWriter is not None:
                self.board = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.board is not None:
            for key, value in record.items():
                if key not in ("step", "epoch", "kind") and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.board.add_scalar(f"{record['kind']}/{key}", value, record["step"])

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop records after `step`: a resumed run writes them again."""
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        path.write_text("".join(line + "\n" for line in lines if json.loads(line)["step"] <= step), encoding="utf-8")


def _add_file_log(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("mtkit").addHandler(handler)
    return handler


def train(cfg: Config, resume: bool = False, overwrite: bool = False, device: str | None = None,
          nproc: int = 1) -> TrainState:
    """Train the model of `cfg` into `cfg.run_dir`; return the final TrainState.

    With `resume`, the run continues from its `last.pt` (model, optimizer, scheduler, RNG states and
    data position), so its losses match those of a run that was never interrupted. With `nproc` > 1
    (or under torchrun) the batches are shared out over data-parallel processes.
    """
    world = distributed.world_from_env()
    if nproc > 1 and world.size == 1:
        _prepare_run_dir(cfg, resume, overwrite)
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
            run_dir = _prepare_run_dir(cfg, resume, overwrite)
            prepare(cfg)
        if world.size > 1:
            torch.distributed.barrier()  # the run dir and the prepared data exist for everyone now
        return _train_logged(cfg, Path(cfg.run_dir), resume, dev, world)
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
        _train_logged(cfg, Path(cfg.run_dir), (Path(cfg.run_dir) / "last.pt").is_file(), dev, world)
    finally:
        distributed.shutdown(world)


def _train_logged(cfg: Config, run_dir: Path, resume: bool, device: torch.device, world: World) -> TrainState:
    handler = _add_file_log(run_dir) if world.is_main else None
    try:
        return _train(cfg, run_dir, resume, device, world)
    finally:
        if handler is not None:
            logging.getLogger("mtkit").removeHandler(handler)
            handler.close()


def _train(cfg: Config, run_dir: Path, resume: bool, device: torch.device, world: World) -> TrainState:
    set_threads(cfg.train.threads)
    torch.manual_seed(cfg.seed)  # the same initial weights in every process
    prepared = prepare(cfg)
    tokenizer, train_split, dev_split = prepared.tokenizer, prepared.splits["train"], prepared.splits["dev"]
    if cfg.train.max_len is not None:
        train_split = shorter_pairs(train_split, cfg.train.max_len)
    model = build_model(cfg.model, tokenizer.src_vocab, tokenizer.tgt_vocab).to(device)
    main = world.is_main
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    state = TrainState()
    metrics_path = run_dir / "metrics.jsonl"
    metrics = _Metrics(run_dir, world.is_main, cfg.train.tensorboard)
    if resume:
        saved = load_checkpoint(run_dir / "last.pt", device)
        model.load_state_dict(saved.model.state_dict())
        optimizer.load_state_dict(saved.raw["optimizer"])
        if scheduler is not None and "scheduler" in saved.raw:
            scheduler.load_state_dict(saved.raw["scheduler"])
        set_rng_states(saved.raw["rng"])
        state = replace(saved.state, finished=False, stop_reason="")
        if main:
            _truncate_metrics(metrics_path, state.step)
            log.info("resuming %s at step %d (epoch %d, batch %d)", run_dir, state.step, state.epoch,
                     state.batch_in_epoch)
    if world.size > 1:
        distributed.broadcast_parameters(model, world)
        torch.manual_seed(cfg.seed + 1000 * world.rank + state.step)  # each process its own dropout masks
    if main:
        save_config(cfg, run_dir / "config.yaml")
        tokenizer.save(run_dir)  # beside the checkpoints too, for other tools
        (run_dir / "data.json").write_text(json.dumps({"prepared": str(prepared.directory.resolve())}) + "\n")
        environment = {**_environment(cfg, device), "processes": world.size}
        (run_dir / "environment.json").write_text(json.dumps(environment, indent=2) + "\n")
        write_latest(run_dir)
        log.info("%s on %s%s; data %s", describe(model), device,
                 f" × {world.size} processes" if world.size > 1 else "", prepared.directory)
        log.info("\n%s", prepared.report)

    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else contextlib.nullcontext
    t = cfg.train
    src_lengths = [len(s) for s in train_split.src_ids]
    tgt_lengths = [len(s) for s in train_split.tgt_ids]
    started = time.perf_counter() - state.seconds
    window_tokens, window_start, window_loss, window_steps = 0, time.perf_counter(), 0.0, 0

    def elapsed() -> float:
        return time.perf_counter() - started

    def checkpoint(name: str) -> None:
        state.seconds = elapsed()
        if main:
            save_checkpoint(run_dir / name, model, cfg, tokenizer, state, optimizer, scheduler)

    def run_validation() -> bool:
        """Validate, log, save best/last; return True when early stopping says stop."""
        result = validate(model, dev_split, prepared, cfg, device)
        value = result.bleu if t.early_stop_metric == "bleu" else result.loss
        if scheduler is not None and t.schedule == "plateau":
            scheduler.step(value)
        state.validated_step = state.step
        better = _improved(state, value, t.early_stop_metric)
        if better:
            state.best_metric, state.best_step, state.bad_validations = value, state.step, 0
        else:
            state.bad_validations += 1
        record = {"step": state.step, "epoch": state.epoch, "kind": "valid", "dev_loss": round(result.loss, 6),
                  "dev_ppl": round(result.ppl, 4), "dev_bleu": round(result.bleu, 4),
                  "lr": optimizer.param_groups[0]["lr"], "seconds": round(elapsed(), 1), "best": better}
        metrics.write(record)
        if main:
            tqdm.write(f"{run_dir.name}  step {state.step:>6}  epoch {state.epoch}  dev loss {result.loss:.4f}  "
                       f"ppl {result.ppl:.2f}  "
                       f"BLEU {result.bleu:.2f}{'  (best)' if better else ''}")
            log.info("validation %s", record)
            _save_attention_samples(model, prepared, cfg, run_dir, state.step, device)
        stop = t.patience is not None and state.bad_validations >= t.patience
        if stop:
            state.finished, state.stop_reason = True, f"early stopping: no better dev {t.early_stop_metric} in {t.patience} validations"
        if better:
            checkpoint("best.pt")
        checkpoint("last.pt")
        return stop

    with _StopSignal() as stop_signal:
        while state.epoch < t.epochs and not state.finished:
            batches = _my_batches(batch_indices(src_lengths, tgt_lengths, t.batch_tokens, seed=cfg.seed + state.epoch),
                                  world)
            bar = tqdm(total=len(batches), initial=state.batch_in_epoch, desc=f"epoch {state.epoch}",
                       unit="batch", dynamic_ncols=True, leave=False, disable=None if main else True)
            for index in batches[state.batch_in_epoch :]:
                reason = _budget_spent(cfg, state, elapsed())
                if distributed.any_process(bool(reason), world, device):
                    # Checked before the step, so a resumed run that had finished stays finished.
                    state.finished, state.stop_reason = True, reason or "another process reached its budget"
                    break
                batch = collate(train_split.src_ids, train_split.tgt_ids, index).to(device)
                loss, tokens = train_step(model, optimizer, batch, cfg, autocast, world)
                if not math.isfinite(loss):
                    bar.close()
                    raise MtkitError(f"step {state.step + 1}: the training loss is {loss}; stopped, and the last good "
                                     f"checkpoint in {run_dir} is kept. Lower train.lr or set train.clip, then "
                                     f"`mtkit train --resume`")
                if scheduler is not None and t.schedule == "inverse_sqrt":
                    scheduler.step()
                state.step += 1
                state.batch_in_epoch += 1
                state.tokens += tokens
                window_tokens += tokens
                window_loss += loss
                window_steps += 1
                bar.update(1)
                if state.step % t.log_every == 0 and main:
                    speed = window_tokens / max(time.perf_counter() - window_start, 1e-9)
                    lr = optimizer.param_groups[0]["lr"]
                    bar.set_postfix(loss=f"{window_loss / window_steps:.3f}", tok_s=f"{speed:.0f}", lr=f"{lr:.2e}")
                    if bar.disable:  # no terminal (a log file, CI): progress as log lines instead
                        log.info("step %d  epoch %d  loss %.4f  %.0f target tok/s  lr %.2e", state.step,
                                 state.epoch, window_loss / window_steps, speed, lr)
                    metrics.write({"step": state.step, "epoch": state.epoch, "kind": "train",
                                                 "loss": round(window_loss / window_steps, 6),
                                                 "tokens_per_s": round(speed, 1), "lr": lr})
                    window_tokens, window_start, window_loss, window_steps = 0, time.perf_counter(), 0.0, 0
                if t.valid_every and state.step % t.valid_every == 0 and run_validation():
                    break
                if distributed.any_process(stop_signal.received is not None, world, device):
                    bar.close()
                    checkpoint("last.pt")
                    raise MtkitError(f"{stop_signal.received or 'a stop signal'} received at step {state.step}: saved "
                                     f"{run_dir / 'last.pt'}; continue with `mtkit train --resume`")
            bar.close()
            if state.finished:
                break
            state.epoch += 1
            state.batch_in_epoch = 0
            if not t.valid_every and run_validation():
                break
        if not state.finished:
            state.finished, state.stop_reason = True, f"reached train.epochs = {t.epochs}"
        # Final validation unless the last step was just validated.
        if state.validated_step != state.step:
            run_validation()
        state.finished = True
        checkpoint("last.pt")
    if world.size > 1:
        spread = distributed.parameter_spread(model, world)
        if main:
            metrics.write({"step": state.step, "kind": "sync", "processes": world.size, "max_param_diff": spread})
            log.info("parameters of the %d processes differ by at most %g", world.size, spread)
    metrics.close()
    if not main:
        return state
    log.info("finished after %d steps (%.0f s): %s; best dev %s %.4f at step %d", state.step, state.seconds,
             state.stop_reason, t.early_stop_metric, state.best_metric or 0.0, state.best_step)
    tqdm.write(f"done: {state.stop_reason}; best dev {t.early_stop_metric} {state.best_metric:.4f} at step "
               f"{state.best_step}; checkpoints in {run_dir}")
    return state


def shorter_pairs(split: EncodedSplit, max_len: int) -> EncodedSplit:
    """Return the pairs of `split` with at most `max_len` words on each side (Bahdanau et al.'s -30 and -50 models)."""
    keep = [i for i, (src, tgt) in enumerate(zip(split.src_text, split.tgt_text))
            if len(src.split()) <= max_len and len(tgt.split()) <= max_len]
    if not keep:
        raise MtkitError(f"`train.max_len` = {max_len} leaves no training pair; raise it or leave it unset")
    log.info("training on %d of %d pairs: at most %d words a side (train.max_len)", len(keep), len(split.src_text),
             max_len)
    return EncodedSplit(*([part[i] for i in keep] for part in split))


def _budget_spent(cfg: Config, state: TrainState, seconds: float) -> str:
    t = cfg.train
    if t.max_steps is not None and state.step >= t.max_steps:
        return f"reached train.max_steps = {t.max_steps}"
    if t.max_minutes is not None and seconds >= 60 * t.max_minutes:
        return f"reached train.max_minutes = {t.max_minutes}"
    return ""


def _my_batches(batches: list[list[int]], world: World) -> list[list[int]]:
    """Return this process's share of an epoch's batches: every `size`-th, the same count for all."""
    if world.size == 1:
        return batches
    usable = len(batches) - len(batches) % world.size  # equal shares keep the processes in step
    return batches[world.rank : usable : world.size]


def _save_attention_samples(model: Seq2Seq, prepared: Prepared, cfg: Config, run_dir: Path, step: int,
                            device: torch.device) -> None:
    """Plot the attention of a few fixed dev sentences, so alignment can be watched as it emerges."""
    n = min(cfg.train.attention_samples, len(prepared.splits["dev"].src_ids))
    if not n or not model.has_attention:
        return
    from mtkit.plots import plot_attention_heatmap  # matplotlib only when plots are wanted

    dev = prepared.splits["dev"]
    hyps = decode(model, dev.src_ids[:n], beam=1, device=device)
    out_dir = run_dir / "attention"
    out_dir.mkdir(exist_ok=True)
    for i, (src, nbest) in enumerate(zip(dev.src_ids[:n], hyps)):
        hyp = nbest[0]
        if hyp.attention is None or not hyp.tokens:
            continue
        plot_attention_heatmap(prepared.tokenizer.src_pieces(src), prepared.tokenizer.tgt_pieces(hyp.tokens),
                               hyp.attention.numpy(), out_dir / f"dev{i}_step{step:07d}.png",
                               title=f"dev sentence {i}, step {step}")
