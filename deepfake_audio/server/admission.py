"""Admission control: a bounded number of analyses in flight plus a bounded queue.

CPU-bound analyses never run on the event loop: in threads (:meth:`Admission.run`) or
in the worker processes, awaited by a coroutine (:meth:`Admission.run_async`), behind
an anyio :class:`~anyio.CapacityLimiter` of ``concurrency`` tokens; at most ``queue``
more may wait for a token. Anything beyond is refused at once with
:class:`ServerBusy` (HTTP 429), which keeps latency bounded under overload
instead of letting a backlog grow without limit.

WebSocket messages are the exception: a connection has at most one analysis in
flight (it reads its next message only after answering), so their backlog is
bounded by the connection cap, and they wait their turn (``wait=True``) instead
of being refused. Their waiting still counts in :attr:`Admission.pending`, so
``POST /analyze`` sees a WebSocket backlog and answers 429 meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")


class ServerBusy(Exception):
    """Every analysis slot and every queue place is taken."""


class AnalysisTimeout(Exception):
    """An analysis (queueing included) took longer than the configured timeout."""


class _Job:
    __slots__ = ("started",)

    def __init__(self) -> None:
        self.started = False


class Admission:
    """Run blocking callables in threads with bounded concurrency and queue.

    Parameters
    ----------
    concurrency : int
        Callables running at once (threads busy).
    queue : int
        Callables allowed to wait for a free thread before :class:`ServerBusy`.
    timeout_s : float
        Longest :meth:`run` waits for a result before :class:`AnalysisTimeout`.
    ahead : int
        More callables that may run at once, beyond ``concurrency``, for callers that
        bound the CPU work themselves: with the worker processes, jobs admitted this way
        wait at the pool, which sends the next one the moment a worker answers.

    Notes
    -----
    Create it inside the running event loop (anyio limiters bind to it). A job
    that has started in its thread is never abandoned early: on timeout or client
    disconnect the caller gets its answer at once, but the slot stays taken until
    the thread is done, so ``concurrency`` is a true bound on CPU work.
    """

    def __init__(self, concurrency: int, queue: int, timeout_s: float, ahead: int = 0) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.concurrency = concurrency
        self.queue = queue
        self.timeout_s = timeout_s
        self._slots = anyio.CapacityLimiter(concurrency + ahead)
        # A second limiter for to_thread itself: always free while we hold a slot, but it
        # keeps our threads off anyio's default 40-token limiter shared with Starlette.
        self._threads = anyio.CapacityLimiter(concurrency)
        self._pending = 0  # running + waiting; touched only from the event loop thread

    @property
    def pending(self) -> int:
        """Analyses admitted and not finished (running or queued)."""
        return self._pending

    @property
    def running(self) -> int:
        return int(self._slots.borrowed_tokens)

    @property
    def waiting(self) -> int:
        return max(0, self._pending - self.running)

    def full(self) -> bool:
        """True when a new job would be refused."""
        return self._pending >= self.concurrency + self.queue

    async def run(self, func: Callable[..., T], *args: Any, wait: bool = False) -> T:
        """Run ``func(*args)`` in a worker thread once a slot is free.

        Parameters
        ----------
        func, *args
            The blocking callable and its arguments.
        wait : bool
            Wait for a slot even beyond ``queue`` (for callers that bound their own
            backlog, such as one analysis per WebSocket connection).

        Raises
        ------
        ServerBusy
            No slot and no queue place is free (never with ``wait=True``).
        AnalysisTimeout
            No result within ``timeout_s`` (queueing included).
        """
        return await self._admit(
            lambda: anyio.to_thread.run_sync(func, *args, limiter=self._threads), wait)

    async def run_async(self, func: Callable[[], Awaitable[T]], *, wait: bool = False) -> T:
        """As :meth:`run`, for a coroutine function whose CPU work runs elsewhere (the
        worker processes): it holds a slot but no thread."""
        return await self._admit(func, wait)

    async def _admit(self, start: Callable[[], Awaitable[T]], wait: bool) -> T:
        if not wait and self.full():
            raise ServerBusy
        self._pending += 1
        job = _Job()
        task = asyncio.ensure_future(self._execute(job, start))
        task.add_done_callback(_consume)
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.timeout_s)
        except asyncio.TimeoutError:
            self._abandon(job, task)
            raise AnalysisTimeout from None
        except asyncio.CancelledError:
            self._abandon(job, task)
            raise

    @staticmethod
    def _abandon(job: _Job, task: asyncio.Future[Any]) -> None:
        # Still queued: give the place back. Already running: let the thread finish
        # while still holding its slot (a thread cannot be interrupted).
        if not job.started:
            task.cancel()

    async def _execute(self, job: _Job, start: Callable[[], Awaitable[T]]) -> T:
        try:
            async with self._slots:
                job.started = True  # set with no await after acquiring: race-free
                return await start()
        finally:
            self._pending -= 1


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned task's outcome so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        with contextlib.suppress(BaseException):
            task.exception()
