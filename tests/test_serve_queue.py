"""serve/queue.py on its own: a model's queue is bounded (one more is refused at once, saying when to come back),
runs its work one at a time on its own thread, and drops work whose request has gone (timed out or disconnected)
before it starts, freeing its place; work that has started ends normally."""

from __future__ import annotations

import asyncio
import threading

import pytest

from mtkit.serve.queue import Gone, ModelQueue, QueueFull, TimedOut, run_queued


class Gate:
    """Work that blocks until opened, and records which jobs ran, on which thread, and how many at once."""

    def __init__(self) -> None:
        self.open, self.ran, self.threads, self.inside, self.most = threading.Event(), [], set(), 0, 0
        self.lock = threading.Lock()

    def job(self, name: str):
        def work():
            with self.lock:
                self.inside += 1
                self.most = max(self.most, self.inside)
            self.threads.add(threading.current_thread().name)
            self.open.wait(10)
            with self.lock:
                self.inside -= 1
                self.ran.append(name)
            return name
        return work


async def settle() -> None:
    await asyncio.sleep(0.05)


async def held_queue(timeout: float):
    """Return a queue of 3 whose thread runs a job named "running" until gate.open, the gate and that job's task."""
    queue, gate = ModelQueue("att", size=3), Gate()
    running = asyncio.create_task(run_queued([(queue, gate.job("running"))], timeout=timeout))
    await settle()
    return queue, gate, running


def test_a_full_queue_refuses_at_once_and_says_when_to_come_back():
    async def scenario():
        queue, gate = ModelQueue("att", size=2), Gate()
        first = asyncio.create_task(run_queued([(queue, gate.job("a"))], timeout=10))
        second = asyncio.create_task(run_queued([(queue, gate.job("b"))], timeout=10))
        await settle()
        assert queue.held == 2
        with pytest.raises(QueueFull, match="model att is busy: 2 requests") as err:
            await run_queued([(queue, gate.job("c"))], timeout=10)
        assert err.value.retry_after >= 1
        gate.open.set()
        assert [await first, await second] == [["a"], ["b"]]
        assert queue.held == 0 and gate.ran == ["a", "b"] and gate.most == 1 and len(gate.threads) == 1
        queue.close()
    asyncio.run(scenario())


def test_a_request_needs_room_in_every_queue_it_asks_or_takes_none():
    async def scenario():
        busy, free, gate = ModelQueue("busy", size=1), ModelQueue("free", size=1), Gate()
        holder = asyncio.create_task(run_queued([(busy, gate.job("a"))], timeout=10))
        await settle()
        with pytest.raises(QueueFull):
            await run_queued([(free, gate.job("b")), (busy, gate.job("c"))], timeout=10)
        assert free.held == 0  # the place taken in `free` was given back
        gate.open.set()
        await holder
        assert gate.ran == ["a"]
    asyncio.run(scenario())


def test_different_models_work_side_by_side():
    async def scenario():
        gate = Gate()
        queues = [ModelQueue(name, size=1) for name in ("a", "b")]
        task = asyncio.create_task(run_queued([(q, gate.job(q.name)) for q in queues], timeout=10))
        await settle()
        assert gate.inside == 2
        gate.open.set()
        assert await task == ["a", "b"]
    asyncio.run(scenario())


def test_past_the_time_limit_waiting_work_is_dropped_and_running_work_ends():
    async def scenario():
        queue, gate, running = await held_queue(timeout=0.2)
        with pytest.raises(TimedOut, match="no answer within 0.2 s") as err:
            await run_queued([(queue, gate.job("waiting"))], timeout=0.2)
        assert err.value.retry_after >= 1
        with pytest.raises(TimedOut):
            await running
        assert queue.held == 1  # the running work keeps its place until it ends; the waiting one freed its place
        gate.open.set()
        await asyncio.sleep(0.3)
        assert gate.ran == ["running"] and queue.held == 0
    asyncio.run(scenario())


def test_work_of_a_request_whose_client_went_away_is_dropped_before_it_starts():
    async def scenario():
        queue, gate, running = await held_queue(timeout=10)
        left = asyncio.Event()
        waiting = asyncio.create_task(run_queued([(queue, gate.job("gone"))], timeout=10, gone=left.wait))
        await settle()
        assert queue.held == 2
        left.set()
        with pytest.raises(Gone):
            await waiting
        assert queue.held == 1
        gate.open.set()
        assert await running == ["running"]
        await asyncio.sleep(0.1)
        assert gate.ran == ["running"] and queue.held == 0
    asyncio.run(scenario())


def test_an_error_in_the_work_reaches_the_caller_and_frees_the_place():
    async def scenario():
        queue = ModelQueue("att", size=1)

        def fails():
            raise ValueError("bad")
        with pytest.raises(ValueError, match="bad"):
            await run_queued([(queue, fails)], timeout=10)
        assert queue.held == 0
    asyncio.run(scenario())
