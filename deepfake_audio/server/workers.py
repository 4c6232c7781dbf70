"""Analysis worker processes: untrusted media never touches the server process.

FFmpeg and libsndfile are C code parsing hostile bytes. Every upload's whole
analysis (decode + features + score) runs in a separate worker process that has
loaded the model once: only the bytes go in and the small result comes back.
Each worker has an address-space limit (``RLIMIT_AS``) and each analysis a hard
timeout. A worker that crashes (a segfault, ``abort()``, the memory limit) or
hangs is killed and replaced; only the request it was serving fails. Processes
also take the CPU-bound work off the server's GIL, and the server's event loop
reads and writes their pipes itself (:class:`WorkerPool`), so an analysis costs the
server no thread.

Why not :class:`concurrent.futures.ProcessPoolExecutor` or loky: when one of their
workers dies, every task in flight on the pool fails (``BrokenProcessPool`` /
``TerminatedWorkerError``); here each worker is its own pipe, so a death is
attributed to exactly one request.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import ForkingPickler
from typing import Any

from .admission import AnalysisTimeout
from .messages import MessageError
from .worker_process import Job, WorkerConfig, worker_main

logger = logging.getLogger("deepfake_audio")

# A worker that cannot load the model within this long is treated as broken.
_START_TIMEOUT_S = 120.0
# Only jobs this small are queued behind a running one, and only behind one this small
# that has run for less than this long.
_QUEUE_BEHIND_BYTES = 2 * 1024 * 1024
_QUEUE_BEHIND_S = 0.5


class WorkerCrashed(Exception):
    """The worker analysing this request died (crash, abort or memory limit)."""


class WorkerTimeout(AnalysisTimeout):
    """The analysis ran past the hard timeout; its worker was killed (HTTP 503 as any timeout)."""


class _Pending:
    """One job from submission to answer."""

    __slots__ = ("answer", "finished", "frame", "started")

    def __init__(self, frame: bytes, answer: asyncio.Future[tuple[str, Any]]) -> None:
        self.frame = frame
        self.answer = answer
        self.started: float | None = None  # when its worker began it (perf_counter)
        self.finished: float | None = None


class _Worker:
    """A ready worker process, the event loop's stream over its pipe, and its jobs."""

    def __init__(self, process: BaseProcess, conn: multiprocessing.connection.Connection,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.process = process
        self.conn = conn  # kept open: the streams use its socket
        self.reader = reader
        self.writer = writer
        # Sent and not answered, in the order the worker takes them: the first one runs.
        self.jobs: collections.deque[_Pending] = collections.deque()
        self.retired = False

    def send(self, job: _Pending) -> None:
        self.writer.write(job.frame)
        self.jobs.append(job)
        if len(self.jobs) == 1:
            job.started = time.perf_counter()

    def kill(self) -> None:
        """Kill the process without waiting for it (:meth:`reap` waits)."""
        self.writer.close()
        if self.process.is_alive():
            self.process.kill()

    def reap(self, wait_s: float) -> int | None:
        """Wait for the process to end (blocking) and return its exit code."""
        self.process.join(wait_s)
        self.conn.close()
        return self.process.exitcode


def _frame(obj: object) -> bytes:
    """``obj`` pickled and framed as :class:`multiprocessing.connection.Connection` expects."""
    buffer = ForkingPickler.dumps(obj)  # a view of the pickler's buffer: copied once, below
    size = len(buffer)
    head = struct.pack("!i", size) if size <= 0x7FFFFFFF else struct.pack("!iQ", -1, size)
    return b"".join((head, buffer))


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    (size,) = struct.unpack("!i", await reader.readexactly(4))
    if size == -1:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    payload = await reader.readexactly(size)
    try:
        return ForkingPickler.loads(payload)
    except Exception as exc:  # fails this job only; the worker and its queue go on
        return ("error", f"unreadable answer from the worker: {type(exc).__name__}: {exc}")


class WorkerPool:
    """``size`` analysis processes, each analysing one job at a time.

    The event loop talks to the workers itself, over non-blocking streams on their
    pipes: an analysis costs the server no thread and no thread switch. When every
    worker is busy, a small job is queued in the pipe of a worker running a small job,
    so that worker starts it the moment it sends its answer instead of waiting for the
    event loop to read the answer and send more (on a loaded machine the loop is often
    not on a CPU at that moment). Answers come back in order, so each is matched to its
    job; a worker that dies fails the job it was running, and the jobs queued behind it
    go to another worker.

    Parameters
    ----------
    config : WorkerConfig
        How each worker loads its detector.
    size : int
        Number of worker processes (the server's analysis concurrency).
    timeout_s : float
        Hard limit on one analysis; the worker is killed past it. Waiting longer than
        this for a worker to start the job fails too.
    """

    def __init__(self, config: WorkerConfig, size: int, timeout_s: float) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.config = config
        self.size = size
        self.timeout_s = timeout_s
        # spawn, not fork: the server process has threads (event loop, anyio pool).
        self._context = multiprocessing.get_context("spawn")
        self._launching: list[tuple[BaseProcess, multiprocessing.connection.Connection]] = []
        self._started: list[tuple[BaseProcess, multiprocessing.connection.Connection]] = []
        self._opened = False
        self._workers: list[_Worker] = []
        self._waiting: collections.deque[_Pending] = collections.deque()  # oldest first
        self._closed = False
        self._replacing = 0
        self._tasks: set[asyncio.Future[Any]] = set()
        self.replaced = 0

    def launch(self) -> None:
        """Start the worker processes without waiting (they load the model meanwhile)."""
        self._launching = [self._spawn() for _ in range(self.size)]

    def wait_ready(self) -> None:
        """Wait (blocking) until the workers :meth:`launch` started have loaded the model.

        Raises
        ------
        RuntimeError
            A worker could not load the model; every worker has been stopped.
        """
        launching, self._launching = self._launching, []
        for index, (process, conn) in enumerate(launching):
            try:
                self._await_ready(process, conn)
            except RuntimeError:
                for other, other_conn in self._started + launching[index + 1:]:
                    _kill_now(other, other_conn)
                self._started = []
                raise
            self._started.append((process, conn))

    async def open(self) -> None:
        """Attach the ready workers to the running event loop (after :meth:`wait_ready`)."""
        self._opened = True
        started, self._started = self._started, []
        for process, conn in started:
            self._adopt(await _attach(process, conn))

    async def start(self) -> None:
        """:meth:`launch`, :meth:`wait_ready` (in a thread) and :meth:`open` in one."""
        self.launch()
        await asyncio.get_running_loop().run_in_executor(None, self.wait_ready)
        await self.open()

    def _spawn(self) -> tuple[BaseProcess, multiprocessing.connection.Connection]:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=worker_main, args=(child, self.config),
                                        name="deepfake-audio-worker", daemon=True)
        process.start()
        child.close()
        return process, parent

    @staticmethod
    def _await_ready(process: BaseProcess, conn: multiprocessing.connection.Connection) -> None:
        try:
            if conn.poll(_START_TIMEOUT_S):
                kind, _ = conn.recv()
                if kind == "ready":
                    return
        except (EOFError, OSError):
            pass
        _kill_now(process, conn)
        raise RuntimeError(f"an analysis worker failed to start (exit code {process.exitcode});"
                           " see the log above")

    def _adopt(self, worker: _Worker) -> None:
        """Put a freshly attached worker to work."""
        if self._closed:
            self._retire(worker, None)
            return
        self._workers.append(worker)
        self._background(self._read_answers(worker))
        self._dispatch()

    def _background(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_answers(self, worker: _Worker) -> None:
        """Match the worker's answers to its jobs, in order, until it ends."""
        try:
            while True:
                answer: tuple[str, Any] = await _read_frame(worker.reader)
                job = worker.jobs.popleft()
                job.finished = time.perf_counter()
                if worker.jobs:  # the worker went straight on to the next one
                    worker.jobs[0].started = job.finished
                if not job.answer.done():  # done: its caller gave up
                    job.answer.set_result(answer)
                if answer[0] == "memory" or self._closed:
                    # memory: its heap may be fragmented beyond use; start afresh
                    self._retire(worker, None)
                    return
                self._dispatch()
        except (asyncio.IncompleteReadError, OSError):
            if worker.retired:  # killed on purpose
                return
            worker.retired = True  # no more jobs for it
            for _ in range(200):  # the pipe closes a moment before the process ends
                if worker.process.exitcode is not None:
                    break
                await asyncio.sleep(0.01)
            self._release(worker, WorkerCrashed(_death(worker.process.exitcode)))

    def _dispatch(self) -> None:
        """Send waiting jobs, oldest first, to idle workers, else into the pipe of a
        worker running a small job (in the same turn of the event loop that freed it)."""
        while self._waiting and not self._closed:
            job = self._waiting[0]
            if job.answer.done():  # its caller gave up waiting
                self._waiting.popleft()
                continue
            worker = self._pick(job)
            if worker is None:
                return
            self._waiting.popleft()
            worker.send(job)

    def _pick(self, job: _Pending) -> _Worker | None:
        workers = [w for w in self._workers if not w.retired]
        for worker in workers:
            if not worker.jobs:
                return worker
        if len(job.frame) > _QUEUE_BEHIND_BYTES:
            return None
        # Behind the small job that started first (it ends first), unless it has run for
        # long already: a hang must not hold up a job another worker would take soon.
        now = time.perf_counter()
        return min((w for w in workers if len(w.jobs) == 1
                    and len(w.jobs[0].frame) <= _QUEUE_BEHIND_BYTES
                    and now - (w.jobs[0].started or now) < _QUEUE_BEHIND_S),
                   key=lambda w: w.jobs[0].started or now, default=None)

    def _retire(self, worker: _Worker, failure: Exception | None) -> None:
        """Kill ``worker`` (and start its successor unless the pool is closed).

        ``failure`` is the answer of the job it was running; without one, that job goes
        back to the queue as do the jobs waiting in its pipe.
        """
        if not worker.retired:
            worker.retired = True
            worker.kill()
            self._release(worker, failure)

    def _release(self, worker: _Worker, failure: Exception | None) -> None:
        """Settle the jobs of a worker that is dead or killed, then replace it."""
        worker.writer.close()
        with contextlib.suppress(ValueError):
            self._workers.remove(worker)
        jobs, worker.jobs = list(worker.jobs), collections.deque()
        if jobs and failure is not None:
            running = jobs.pop(0)
            if not running.answer.done():
                running.answer.set_exception(failure)
        for job in reversed(jobs):
            job.started = None
            if self._closed:
                if not job.answer.done():
                    job.answer.set_exception(WorkerCrashed("the server is shutting down"))
            else:
                self._waiting.appendleft(job)
        if self._closed:
            self._background(asyncio.get_running_loop().run_in_executor(None, worker.reap, 5.0))
            return
        self.replaced += 1
        self._replacing += 1
        self._background(self._start_successor(worker))
        self._dispatch()

    async def _start_successor(self, dead: _Worker) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, dead.reap, 5.0)
            if self._closed:
                return
            process, conn = await loop.run_in_executor(None, self._spawn)
            await loop.run_in_executor(None, self._await_ready, process, conn)
            self._adopt(await _attach(process, conn))
        except RuntimeError:
            logger.exception("could not replace an analysis worker")
        finally:
            self._replacing -= 1

    async def analyze(self, job: Job, observe: Callable[[float], None] | None = None) -> Any:
        """Analyse ``job`` in a worker process (a coroutine of the server's event loop).

        ``observe`` is given the seconds from the worker starting the job to its answer
        (the analysis itself, not the wait for a worker).

        Returns
        -------
        AnalysisResult

        Raises
        ------
        InputError
            The audio cannot be analysed (as from :meth:`Detector.analyze`).
        MessageError
            ``job`` is a ``/ws`` message that is not a valid request.
        WorkerCrashed
            The worker died or ran out of memory; it has been replaced.
        WorkerTimeout
            Past ``timeout_s``; the worker was killed and replaced. Or no worker started
            the job within ``timeout_s``.
        RuntimeError
            Anything else the analysis raised (a bug), with its message.
        """
        if not self._opened or self._closed:
            raise WorkerCrashed("the analysis workers are not running")
        pending = _Pending(_frame(job), asyncio.get_running_loop().create_future())
        submitted = time.perf_counter()
        self._waiting.append(pending)
        self._dispatch()
        try:
            kind, payload = await self._outcome(pending, submitted)
        except BaseException:  # cancelled: a running analysis would go on for nobody
            if not pending.answer.done():
                pending.answer.cancel()
                self._withdraw(pending)
            raise
        finally:
            if observe is not None and pending.started is not None:
                observe((pending.finished or time.perf_counter()) - pending.started)
        if kind == "ok":
            return payload
        if kind == "input":
            raise payload
        if kind == "message":
            raise MessageError(payload)
        if kind == "memory":
            raise WorkerCrashed(payload)
        raise RuntimeError(payload)

    async def _outcome(self, pending: _Pending, submitted: float) -> tuple[str, Any]:
        """The answer to ``pending``, enforcing the wait and analysis time limits."""
        while True:
            started = pending.started
            limit = (submitted if started is None else started) + self.timeout_s
            with contextlib.suppress(asyncio.TimeoutError):
                return await asyncio.wait_for(asyncio.shield(pending.answer),
                                              max(0.0, limit - time.perf_counter()))
            if pending.started != started:  # it started while we waited: a new limit
                continue
            worker = self._holder(pending)
            if started is not None and worker is not None:
                if worker.retired:  # it died: its answer comes within a moment
                    return await asyncio.shield(pending.answer)
                self._retire(worker, WorkerTimeout(f"analysis exceeded {self.timeout_s:g} s"))
                continue  # the answer is that failure now
            pending.answer.cancel()
            self._withdraw(pending)
            raise WorkerTimeout(f"no analysis worker free within {self.timeout_s:g} s")

    def _holder(self, pending: _Pending) -> _Worker | None:
        return next((w for w in self._workers if pending in w.jobs), None)

    def _withdraw(self, pending: _Pending) -> None:
        """Forget a job its caller gave up on; kill its worker if it is running it."""
        with contextlib.suppress(ValueError):
            self._waiting.remove(pending)
        worker = self._holder(pending)
        if worker is not None and worker.jobs[0] is pending:
            self._retire(worker, None)  # a job queued behind it is sent elsewhere
        # Queued in a pipe but not started: it runs, and its answer is dropped.

    @property
    def alive(self) -> int:
        """Workers ready or busy (not counting those being replaced)."""
        return self.size - self._replacing

    async def close(self) -> None:
        """Stop every worker: idle ones at once, busy ones when their running job answers
        (jobs not started yet fail, as do jobs waiting for a worker)."""
        self._closed = True
        loop = asyncio.get_running_loop()
        for process, conn in self._launching + self._started:
            _kill_now(process, conn)
        self._launching, self._started = [], []
        shutting_down = WorkerCrashed("the server is shutting down")
        queued = list(self._waiting)
        self._waiting.clear()
        idle = []
        for worker in self._workers:
            if worker.jobs:
                queued.extend(list(worker.jobs)[1:])
                while len(worker.jobs) > 1:
                    worker.jobs.pop()
            else:
                idle.append(worker)
        for pending in queued:
            if not pending.answer.done():
                pending.answer.set_exception(shutting_down)
        for worker in idle:
            worker.retired = True
            worker.writer.write(_frame(None))
        for worker in idle:
            with contextlib.suppress(ConnectionError):
                await worker.writer.drain()
            await loop.run_in_executor(None, worker.reap, 2.0)
            worker.kill()


async def _attach(process: BaseProcess, conn: multiprocessing.connection.Connection) -> _Worker:
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=2**16)
    return _Worker(process, conn, reader, writer)


def _kill_now(process: BaseProcess, conn: multiprocessing.connection.Connection) -> None:
    if process.is_alive():
        process.kill()
    process.join(5)
    conn.close()


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"the analysis worker died ({name}) while decoding this input"
    return f"the analysis worker died (exit code {exitcode}) while decoding this input"

