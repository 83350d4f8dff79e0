"""Each model's bounded queue of translate work, for `mtkit serve`.

A model translates one request at a time on a thread of its own (`ModelQueue`), so a crowd at one
model waits there: not on another model, and not on the web server's event loop, which keeps
answering the page, its files and /api/runs. At most `size` requests wait or run per model; one
more is refused at once (`QueueFull`; the app answers 503 with Retry-After). A request has
`timeout` seconds from its arrival to its answer (`TimedOut`, also 503). Work whose request is
gone, because its client disconnected or its time ran out, is dropped before it starts and frees
its place at once; work already running cannot be interrupted (a search step is one torch call
after another) and keeps its place until it ends.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Awaitable, Callable, Sequence

WAITING, RUNNING, DROPPED = "waiting", "running", "dropped"


class QueueFull(Exception):
    """A model's queue has no room: try again in `retry_after` seconds."""

    def __init__(self, name: str, size: int, retry_after: int) -> None:
        super().__init__(f"model {name} is busy: {size} requests are waiting or running, the most this server queues "
                         f"per model; try again in {retry_after} s")
        self.retry_after = retry_after


class TimedOut(Exception):
    """A request's time ran out before its answer was ready."""

    def __init__(self, timeout: float, retry_after: int) -> None:
        super().__init__(f"no answer within {timeout:g} s, the most this server spends on one request; it is busy, "
                         f"try again in {retry_after} s")
        self.retry_after = retry_after


class Gone(Exception):
    """The client went away before its answer was ready; nothing is left to answer."""


class Ticket:
    """One request's place in one model's queue: waiting, then running or dropped (each step happens once)."""

    def __init__(self, queue: "ModelQueue") -> None:
        self.queue, self.state = queue, WAITING


class ModelQueue:
    """One model's work: at most `size` requests waiting or running, run one at a time on the queue's own thread."""

    def __init__(self, name: str, size: int) -> None:
        if size < 1:
            raise ValueError(f"queue size {size}: must be at least 1")
        self.name, self.size = name, size
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"mtkit-serve-{name}")
        self._lock = threading.Lock()  # guards _held, the tickets' states and _seconds
        self._held = 0  # requests waiting or running
        self._seconds = 1.0  # a running mean of how long one request's work takes, for Retry-After

    @property
    def held(self) -> int:
        """Return how many requests are waiting or running."""
        return self._held

    def retry_after(self) -> int:
        """Return whole seconds until the queue has likely worked through what it holds now (at least 1)."""
        return max(1, math.ceil(self._held * self._seconds))

    def reserve(self) -> Ticket:
        """Return a place in the queue, or raise QueueFull."""
        with self._lock:
            if self._held >= self.size:
                raise QueueFull(self.name, self.size, self.retry_after())
            self._held += 1
            return Ticket(self)

    def start(self, ticket: Ticket, work: Callable[[], Any]) -> Future:
        """Return the future of `work`, run on the queue's thread in turn unless the ticket is dropped before then."""
        return self._executor.submit(self._run, ticket, work)

    def drop(self, ticket: Ticket) -> bool:
        """Drop a ticket whose work has not started, freeing its place; return whether it was dropped."""
        with self._lock:
            if ticket.state != WAITING:
                return False
            ticket.state = DROPPED
            self._held -= 1
            return True

    def _run(self, ticket: Ticket, work: Callable[[], Any]) -> Any:
        with self._lock:
            if ticket.state == DROPPED:
                return None  # its request is gone; the place was freed when it was dropped
            ticket.state = RUNNING
        start = time.perf_counter()
        try:
            return work()
        finally:
            with self._lock:
                self._held -= 1
                self._seconds = 0.8 * self._seconds + 0.2 * (time.perf_counter() - start)

    def close(self) -> None:
        """Stop taking work: drop what waits, let what runs finish."""
        self._executor.shutdown(wait=False, cancel_futures=True)


async def run_queued(jobs: Sequence[tuple[ModelQueue, Callable[[], Any]]], timeout: float,
                     gone: Callable[[], Awaitable[Any]] | None = None) -> list[Any]:
    """Return each job's result, in order, each run on its model's queue; all models' work runs side by side.

    Places are taken in every queue first, or none (QueueFull). Raises TimedOut when `timeout`
    seconds pass first, and Gone when `gone()` (waiting for the client's disconnect) returns first;
    either way, work not yet started is dropped.
    """
    tickets: list[Ticket] = []
    try:
        for queue, _ in jobs:
            tickets.append(queue.reserve())
    except QueueFull:
        for ticket in tickets:
            ticket.queue.drop(ticket)
        raise
    futures = [asyncio.wrap_future(queue.start(ticket, work)) for ticket, (queue, work) in zip(tickets, jobs)]
    watcher = asyncio.ensure_future(gone()) if gone is not None else None
    try:
        waiting = {*futures, *([watcher] if watcher else [])}
        deadline = asyncio.get_running_loop().time() + timeout
        while not all(f.done() for f in futures):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimedOut(timeout, max(t.queue.retry_after() for t in tickets))
            done, _ = await asyncio.wait(waiting, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            if watcher is not None and watcher in done:
                raise Gone()
            waiting -= done
        return [f.result() for f in futures]
    finally:
        for ticket in tickets:
            ticket.queue.drop(ticket)  # only those not started; a running one keeps its place until it ends
        if watcher is not None:
            watcher.cancel()
