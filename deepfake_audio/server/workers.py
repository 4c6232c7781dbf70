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
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import ForkingPickler
from typing import Any, NamedTuple

from ..exceptions import InputError
from .admission import AnalysisTimeout
from .messages import MessageError, decode_message

logger = logging.getLogger("deepfake_audio")

_MB = 1024 * 1024
# A worker that cannot load the model within this long is treated as broken.
_START_TIMEOUT_S = 120.0


class WorkerCrashed(Exception):
    """The worker analysing this request died (crash, abort or memory limit)."""


class WorkerTimeout(AnalysisTimeout):
    """The analysis ran past the hard timeout; its worker was killed (HTTP 503 as any timeout)."""


@dataclass(frozen=True)
class WorkerConfig:
    """What each worker needs to build its :class:`~deepfake_audio.Detector`.

    Attributes
    ----------
    model : str or None
        Model folder (``None``: the bundled model).
    max_duration_s : float or None
        Longest audio accepted.
    allow_unverified : bool
        Load a legacy model folder without ``model.json``.
    channels : str
        ``auto``, ``mix`` or ``separate``.
    memory_mb : int
        Address space one analysis may add to its worker (beyond the loaded model), MiB;
        0 = no limit.
    faults : bool
        Obey the test-only fault commands (:mod:`.faults`).
    """

    model: str | None
    max_duration_s: float | None
    allow_unverified: bool = False
    channels: str = "auto"
    memory_mb: int = 0
    faults: bool = False


class Job(NamedTuple):
    """What a worker analyses: audio bytes, or a ``/ws`` message to decode first."""

    #: Audio bytes, or the text of a ``/ws`` message when ``message_limit`` is set.
    data: bytes | str
    file_type: str | None = None
    #: Speaker references: audio bytes, or paths of saved profiles.
    references: list[bytes | str] | None = None
    #: Largest audio a ``/ws`` message may carry (bytes); ``None``: ``data`` is audio.
    message_limit: int | None = None


def _limit_memory(memory_mb: int) -> None:
    """Cap the address space at what is mapped now plus ``memory_mb``."""
    if memory_mb <= 0:
        return
    import re
    import resource

    with open("/proc/self/status", encoding="ascii") as status:
        mapped_kb = int(re.search(r"VmSize:\s+(\d+)", status.read()).group(1))  # type: ignore[union-attr]
    limit = mapped_kb * 1024 + memory_mb * _MB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _worker_main(conn: multiprocessing.connection.Connection, config: WorkerConfig) -> None:
    """Body of a worker process: load once, then analyse what arrives until ``None``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    from threadpoolctl import threadpool_limits

    from ..detector import Detector
    from . import faults

    threadpool_limits(1)  # one analysis per worker per CPU: no BLAS fan-out
    detector = Detector(config.model, max_duration_s=config.max_duration_s,
                        allow_unverified=config.allow_unverified, channels=config.channels)
    detector.warm_up()
    _limit_memory(config.memory_mb)  # after the model: the limit is for what a request adds
    conn.send(("ready", os.getpid()))
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            data, file_type = job.data, job.file_type
            if job.message_limit is not None:  # a /ws message: decoding is CPU work too
                data, file_type = decode_message(str(data), job.message_limit)
            if config.faults:
                faults.inject(bytes(data[:256]))
            conn.send(("ok", detector.analyze(data, file_type=file_type,
                                              references=job.references or None)))
        except MessageError as exc:
            conn.send(("message", str(exc)))
        except InputError as exc:
            conn.send(("input", exc))
        except MemoryError:
            conn.send(("memory", f"the analysis needed more than {config.memory_mb} MB"
                                 " (DEEPFAKE_AUDIO_WORKER_MEMORY_MB / --worker-memory-mb)"))
        except Exception as exc:  # a decoder bug: this request fails, the worker lives on
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class _Worker:
    """A ready worker process and the event loop's stream over its pipe."""

    def __init__(self, process: BaseProcess, conn: multiprocessing.connection.Connection,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.process = process
        self.conn = conn  # kept open: the streams use its socket
        self.reader = reader
        self.writer = writer

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
    return ForkingPickler.loads(await reader.readexactly(size))


class WorkerPool:
    """``size`` analysis processes, each serving one request at a time.

    The event loop talks to the workers itself, over non-blocking streams on their
    pipes: an analysis costs the server no thread and no thread switch, and a freed
    worker gets the next waiting upload on the loop's next turn.

    Parameters
    ----------
    config : WorkerConfig
        How each worker loads its detector.
    size : int
        Number of worker processes (the server's analysis concurrency).
    timeout_s : float
        Hard limit on one analysis; the worker is killed past it. Waiting longer than
        this for a free worker fails too.
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
        self._idle: list[_Worker] = []
        # Jobs waiting for a worker, oldest first: the future gets the worker, which has
        # been sent the job's frame already.
        self._waiters: collections.deque[tuple[asyncio.Future[_Worker], bytes]] = (
            collections.deque())
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
            self._release(await _attach(process, conn))

    async def start(self) -> None:
        """:meth:`launch`, :meth:`wait_ready` (in a thread) and :meth:`open` in one."""
        self.launch()
        await asyncio.get_running_loop().run_in_executor(None, self.wait_ready)
        await self.open()

    def _spawn(self) -> tuple[BaseProcess, multiprocessing.connection.Connection]:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_worker_main, args=(child, self.config),
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

    def _replace(self, worker: _Worker) -> None:
        """Kill ``worker`` and start its successor in the background."""
        worker.kill()
        self.replaced += 1
        self._replacing += 1
        self._background(self._start_successor(worker))

    def _background(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start_successor(self, dead: _Worker) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, dead.reap, 5.0)
            if self._closed:
                return
            process, conn = await loop.run_in_executor(None, self._spawn)
            await loop.run_in_executor(None, self._await_ready, process, conn)
            fresh = await _attach(process, conn)
            if self._closed:
                fresh.kill()
                await loop.run_in_executor(None, fresh.reap, 5.0)
            else:
                self._release(fresh)
        except RuntimeError:
            logger.exception("could not replace an analysis worker")
        finally:
            self._replacing -= 1

    async def analyze(self, job: Job, observe: Callable[[float], None] | None = None) -> Any:
        """Analyse ``job`` in a worker process (a coroutine of the server's event loop).

        ``observe`` is given the seconds from sending the job to its answer (the analysis
        itself, not the wait for a free worker).

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
            Past ``timeout_s``; the worker was killed and replaced. Or no worker was free
            within ``timeout_s``.
        RuntimeError
            Anything else the analysis raised (a bug), with its message.
        """
        if not self._opened or self._closed:
            raise WorkerCrashed("the analysis workers are not running")
        frame = _frame(job)
        if self._idle:
            worker = self._idle.pop()
            worker.writer.write(frame)
        else:  # all busy or being replaced: the first one freed takes it (_release)
            entry = (asyncio.get_running_loop().create_future(), frame)
            self._waiters.append(entry)
            try:
                worker = await asyncio.wait_for(entry[0], self.timeout_s)
            except TimeoutError:
                with contextlib.suppress(ValueError):  # _release may have dropped it
                    self._waiters.remove(entry)
                raise WorkerTimeout(
                    f"no analysis worker free within {self.timeout_s:g} s") from None
        sent = time.perf_counter()  # (sent at this turn of the loop, or by _release)
        try:
            kind, payload = await asyncio.wait_for(self._answer(worker), self.timeout_s)
        except TimeoutError:
            self._replace(worker)
            raise WorkerTimeout(f"analysis exceeded {self.timeout_s:g} s") from None
        except (asyncio.IncompleteReadError, OSError):
            # The pipe closes a moment before the process is reaped.
            code = await asyncio.get_running_loop().run_in_executor(None, worker.reap, 2.0)
            self._replace(worker)
            raise WorkerCrashed(_death(code)) from None
        except BaseException:  # cancelled mid-analysis: its answer would go to the next job
            self._replace(worker)
            raise
        finally:
            if observe is not None:
                observe(time.perf_counter() - sent)
        if kind == "memory":
            self._replace(worker)  # its heap may be fragmented beyond use: start afresh
            raise WorkerCrashed(payload)
        self._release(worker)
        if kind == "ok":
            return payload
        if kind == "input":
            raise payload
        if kind == "message":
            raise MessageError(payload)
        raise RuntimeError(payload)

    def _release(self, worker: _Worker) -> None:
        """Send ``worker`` the oldest waiting job now, in the same turn of the event loop
        that read its last answer (it never idles while a job waits); else keep it idle."""
        if self._closed:  # it was busy when the pool closed
            worker.kill()
            self._background(asyncio.get_running_loop().run_in_executor(None, worker.reap, 5.0))
            return
        while self._waiters:
            waiter, frame = self._waiters.popleft()
            if not waiter.done():  # done: its caller gave up waiting
                worker.writer.write(frame)
                waiter.set_result(worker)
                return
        self._idle.append(worker)

    @staticmethod
    async def _answer(worker: _Worker) -> tuple[str, Any]:
        await worker.writer.drain()
        answer: tuple[str, Any] = await _read_frame(worker.reader)
        return answer

    @property
    def alive(self) -> int:
        """Workers ready or busy (not counting those being replaced)."""
        return self.size - self._replacing

    async def close(self) -> None:
        """Stop every worker: idle ones at once; busy ones are killed by their caller."""
        self._closed = True
        loop = asyncio.get_running_loop()
        for process, conn in self._launching + self._started:
            _kill_now(process, conn)
        self._launching, self._started = [], []
        idle, self._idle = self._idle, []
        while self._waiters:
            waiter, _ = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(WorkerCrashed("the server is shutting down"))
        for worker in idle:
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

