"""Analysis worker processes: untrusted media never touches the server process.

FFmpeg and libsndfile are C code parsing hostile bytes. Every upload's whole
analysis (decode + features + score) runs in a separate worker process that has
loaded the model once: only the bytes go in and the small result comes back.
Each worker has an address-space limit (``RLIMIT_AS``) and each analysis a hard
timeout. A worker that crashes (a segfault, ``abort()``, the memory limit) or
hangs is killed and replaced; only the request it was serving fails. Processes
also take the CPU-bound work off the server's GIL.

Why not :class:`concurrent.futures.ProcessPoolExecutor` or loky: when one of their
workers dies, every task in flight on the pool fails (``BrokenProcessPool`` /
``TerminatedWorkerError``); here each worker is its own pipe, so a death is
attributed to exactly one request.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

from ..exceptions import InputError
from .admission import AnalysisTimeout

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
        data, file_type, references = job
        try:
            if config.faults:
                faults.inject(data[:256])
            conn.send(("ok", detector.analyze(data, file_type=file_type,
                                              references=references or None)))
        except InputError as exc:
            conn.send(("input", exc))
        except MemoryError:
            conn.send(("memory", f"the analysis needed more than {config.memory_mb} MB"
                                 " (DEEPFAKE_AUDIO_WORKER_MEMORY_MB / --worker-memory-mb)"))
        except Exception as exc:  # a decoder bug: this request fails, the worker lives on
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class _Worker:
    def __init__(self, process: BaseProcess, conn: multiprocessing.connection.Connection) -> None:
        self.process = process
        self.conn = conn

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()

    def stop(self) -> None:
        """Ask an idle worker to exit, then make sure it has."""
        try:
            self.conn.send(None)
            self.process.join(2)
        except OSError:
            pass
        self.kill()


class _Job:
    """One analysis: queued until a worker's dispatcher takes it, then answered."""

    __slots__ = ("answered", "outcome", "payload", "started", "taken")

    def __init__(self, payload: tuple[bytes, str | None, list[bytes | str] | None]) -> None:
        self.payload = payload
        self.taken = False  # set under the pool's lock: by a dispatcher, or by a caller giving up
        self.started = threading.Event()
        self.answered = threading.Event()
        self.outcome: tuple[str, Any] = ("error", "no answer")


class WorkerPool:
    """``size`` analysis processes, each serving one request at a time.

    Each worker has a dispatcher thread in this process that takes the next queued
    job the moment its worker answers: handing work over costs no trip through the
    event loop, and a job only ever goes to a worker that is free (no job waits
    behind another's long analysis).

    Parameters
    ----------
    config : WorkerConfig
        How each worker loads its detector.
    size : int
        Number of worker processes (the server's analysis concurrency).
    timeout_s : float
        Hard limit on one analysis; the worker is killed past it. A job that no
        worker takes within this long fails too.
    """

    def __init__(self, config: WorkerConfig, size: int, timeout_s: float) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.config = config
        self.size = size
        self.timeout_s = timeout_s
        # spawn, not fork: the server process has threads (event loop, anyio pool).
        self._context = multiprocessing.get_context("spawn")
        self._jobs: collections.deque[_Job] = collections.deque()
        self._cond = threading.Condition()
        self._idle: dict[int, _Worker] = {}
        self._closed = False
        self._ready = 0
        self._launching: list[tuple[BaseProcess, multiprocessing.connection.Connection]] = []
        self._dispatchers: list[threading.Thread] = []
        self.replaced = 0

    def start(self) -> None:
        """Start every worker and wait until each has loaded the model.

        Raises
        ------
        RuntimeError
            A worker could not load the model.
        """
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the worker processes without waiting (they load the model meanwhile)."""
        self._launching = [self._spawn() for _ in range(self.size)]

    def wait_ready(self) -> None:
        """Wait for the workers :meth:`launch` started (see :meth:`start`)."""
        launching, self._launching = self._launching, []
        workers = []
        try:
            for process, conn in launching:
                workers.append(self._await_ready(process, conn))
        except RuntimeError:
            for worker in workers:
                worker.kill()
            self._launching = launching[len(workers) + 1:]
            self.close()
            raise
        for worker in workers:
            self._dispatch(worker)

    def _spawn(self) -> tuple[BaseProcess, multiprocessing.connection.Connection]:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_worker_main, args=(child, self.config),
                                        name="deepfake-audio-worker", daemon=True)
        process.start()
        child.close()
        return process, parent

    def _await_ready(self, process: BaseProcess,
                     conn: multiprocessing.connection.Connection) -> _Worker:
        worker = _Worker(process, conn)
        try:
            if conn.poll(_START_TIMEOUT_S):
                kind, _ = conn.recv()
                if kind == "ready":
                    return worker
        except (EOFError, OSError):
            pass
        worker.kill()
        raise RuntimeError(f"an analysis worker failed to start (exit code {process.exitcode});"
                           " see the log above")

    def _dispatch(self, worker: _Worker) -> None:
        with self._cond:
            self._ready += 1
        thread = threading.Thread(target=self._serve, args=(worker,), daemon=True,
                                  name="worker-dispatcher")
        self._dispatchers.append(thread)
        thread.start()

    def _next_job(self, worker: _Worker) -> _Job | None:
        """Wait until a job is queued (None: the pool is closing)."""
        with self._cond:
            self._idle[id(worker)] = worker
            while not self._jobs and not self._closed:
                self._cond.wait()
            del self._idle[id(worker)]
            if self._closed:
                return None
            job = self._jobs.popleft()
            job.taken = True
        job.started.set()
        return job

    def _serve(self, worker: _Worker) -> None:
        """Dispatcher thread of one worker slot: feed it jobs, replace it when it fails."""
        while (job := self._next_job(worker)) is not None:
            failed = True
            try:
                worker.conn.send(job.payload)
                if worker.conn.poll(self.timeout_s):
                    kind, payload = worker.conn.recv()
                    # Its heap may be fragmented beyond use after a MemoryError: start afresh.
                    failed = kind == "memory"
                    job.outcome = ("crashed", payload) if failed else (kind, payload)
                else:
                    job.outcome = ("timeout", f"analysis exceeded {self.timeout_s:g} s")
            except (EOFError, OSError):
                worker.process.join(2)  # the pipe closes a moment before the process is reaped
                job.outcome = ("crashed", _death(worker.process.exitcode))
            if failed:  # counted before the caller hears of it, as /metrics will show
                worker.kill()
                with self._cond:
                    self.replaced += 1
                    self._ready -= 1
            job.answered.set()
            if failed:
                fresh = self._successor()
                if fresh is None:
                    return
                worker = fresh
        worker.stop()

    def _successor(self) -> _Worker | None:
        """Start a replacement worker (None: closing, or it failed to start)."""
        if self._closed:
            return None
        try:
            fresh = self._await_ready(*self._spawn())
        except RuntimeError:
            logger.exception("could not replace an analysis worker")
            return None
        if self._closed:
            fresh.kill()
            return None
        with self._cond:
            self._ready += 1
        return fresh

    def analyze(self, data: bytes, file_type: str | None = None,
                references: list[bytes | str] | None = None) -> Any:
        """Analyse ``data`` in a worker (blocking: call from a thread); ``references``
        (bytes, or paths of saved profiles) add the speaker check.

        Returns
        -------
        AnalysisResult

        Raises
        ------
        InputError
            The audio cannot be analysed (as from :meth:`Detector.analyze`).
        WorkerCrashed
            The worker died or ran out of memory; it has been replaced.
        WorkerTimeout
            Past ``timeout_s``; the worker was killed and replaced. Or no worker was free
            within ``timeout_s``.
        RuntimeError
            Anything else the analysis raised (a bug), with its message.
        """
        job = _Job((bytes(data), file_type, references))
        with self._cond:
            if self._closed:
                raise WorkerCrashed("the server is shutting down")
            self._jobs.append(job)
            self._cond.notify()
        if not job.started.wait(self.timeout_s):
            with self._cond:
                if not job.taken:  # none free: all busy or being replaced
                    self._jobs.remove(job)
                    raise WorkerTimeout(f"no analysis worker free within {self.timeout_s:g} s")
        job.answered.wait()  # the dispatcher answers within timeout_s (it kills a hung worker)
        kind, payload = job.outcome
        if kind == "ok":
            return payload
        if kind == "input":
            raise payload
        if kind == "crashed":
            raise WorkerCrashed(payload)
        if kind == "timeout":
            raise WorkerTimeout(payload)
        raise RuntimeError(payload)

    @property
    def alive(self) -> int:
        """Workers ready or busy (not counting those being replaced)."""
        with self._cond:
            return self._ready

    def pids(self) -> list[int]:
        """Process ids of the idle workers (for tests and diagnostics)."""
        with self._cond:
            return [w.process.pid for w in self._idle.values() if w.process.pid is not None]

    def close(self) -> None:
        """Stop every worker: idle ones at once, busy ones once their analysis is answered."""
        with self._cond:
            self._closed = True
            for job in self._jobs:  # never started: fail now rather than never
                job.taken = True
                job.outcome = ("crashed", "the server is shutting down")
                job.started.set()
                job.answered.set()
            self._jobs.clear()
            self._cond.notify_all()
        launching, self._launching = self._launching, []
        for process, conn in launching:
            _Worker(process, conn).kill()
        for thread in self._dispatchers:
            if thread is not threading.current_thread():
                thread.join(0.5)


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"the analysis worker died ({name}) while decoding this input"
    return f"the analysis worker died (exit code {exitcode}) while decoding this input"

