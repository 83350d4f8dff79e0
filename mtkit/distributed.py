"""Data-parallel training over several processes with torch.distributed (gloo on CPU, NCCL on GPU).

Each process trains on its own share of every epoch's batches; after each backward pass the
summed gradients, loss and token counts of all processes travel in one all-reduce, so every
process takes the same optimizer step as one process would on the union of the batches.
Processes start with `torchrun` (which sets RANK / WORLD_SIZE / LOCAL_RANK) or `mtkit train --nproc N`.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Callable, NamedTuple

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


class World(NamedTuple):
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True for the process that writes files and logs."""
        return self.rank == 0


def world_from_env() -> World:
    """Return the World described by torchrun's environment variables (one process when unset)."""
    if "WORLD_SIZE" not in os.environ:
        return World()
    return World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))


def init(world: World, device: torch.device) -> None:
    """Join the process group (no-op for a single process)."""
    if world.size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank, world_size=world.size)


def finish(world: World) -> None:
    """Wait until every process is done (no-op for a single process), so that none leaves the group early.

    After the last step the main process still writes checkpoints; a process that tore the group
    down meanwhile could abort the main one's own teardown in gloo ("terminate called without an
    active exception"). Call it only when the run ended normally: after an error the others may never come.
    """
    if world.size > 1 and dist.is_initialized():
        dist.barrier()


def shutdown(world: World) -> None:
    """Leave the process group."""
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_parameters(model: torch.nn.Module, world: World) -> None:
    """Give every process rank 0's parameters."""
    if world.size > 1:
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)


def reduce_step(params: list[torch.nn.Parameter], loss_sum: torch.Tensor, tokens: int, world: World) -> tuple[float, int]:
    """Turn the summed-loss gradients into per-token gradients of the whole step; return (loss per token, tokens).

    One all-reduce carries every gradient, the loss and the token count, so the result equals a
    single process training on all processes' batches at once.
    """
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    extra = torch.stack([loss_sum.detach().float(), torch.tensor(float(tokens), device=loss_sum.device)])
    flat = torch.cat([g.reshape(-1).float() for g in grads] + [extra])  # (P + 2,)
    if world.size > 1:
        dist.all_reduce(flat)
    total_tokens = float(flat[-1])
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = (flat[offset : offset + n] / total_tokens).view_as(p).to(p.dtype)
        offset += n
    return float(flat[-2]) / total_tokens, int(total_tokens)


def any_process(flag: bool, world: World, device: torch.device) -> bool:
    """Return True on every process when `flag` is True on any of them (keeps stopping decisions in step)."""
    if world.size == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def parameter_spread(model: torch.nn.Module, world: World) -> float:
    """Return the largest difference of any parameter between processes (0.0 when they are in sync)."""
    if world.size == 1:
        return 0.0
    flat = torch.cat([p.detach().reshape(-1).float() for p in model.parameters()])
    high, low = flat.clone(), flat.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return float((high - low).abs().max())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, size: int, port: int, fn: Callable[..., Any], args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(size),
                      LOCAL_RANK=str(rank))
    fn(*args)


def launch(nproc: int, fn: Callable[..., Any], *args: Any) -> None:
    """Run `fn(*args)` in `nproc` processes on this machine, as torchrun would."""
    mp.start_processes(_worker, args=(nproc, _free_port(), fn, args), nprocs=nproc, start_method="spawn")
