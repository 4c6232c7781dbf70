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

import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
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


class WorkerPool:
    """``size`` analysis processes, each serving one request at a time.

    Parameters
    ----------
    config : WorkerConfig
        How each worker loads its detector.
    size : int
        Number of worker processes (the server's analysis concurrency).
    timeout_s : float
        Hard limit on one analysis; the worker is killed past it.
    """

    def __init__(self, config: WorkerConfig, size: int, timeout_s: float) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.config = config
        self.size = size
        self.timeout_s = timeout_s
        # spawn, not fork: the server process has threads (event loop, anyio pool).
        self._context = multiprocessing.get_context("spawn")
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._closed = False
        self._replacing = 0
        self._launching: list[tuple[BaseProcess, multiprocessing.connection.Connection]] = []
        self._lock = threading.Lock()
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
        try:
            for process, conn in launching:
                self._idle.put(self._await_ready(process, conn))
        except RuntimeError:
            self._launching = launching
            self.close()
            raise

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

    def _replace(self, worker: _Worker) -> None:
        """Kill ``worker`` and start its successor in the background."""
        worker.kill()
        with self._lock:
            self.replaced += 1
            self._replacing += 1

        def start_successor() -> None:
            try:
                if not self._closed:
                    fresh = self._await_ready(*self._spawn())
                    if self._closed:
                        fresh.kill()
                    else:
                        self._idle.put(fresh)
            except RuntimeError:
                logger.exception("could not replace an analysis worker")
            finally:
                with self._lock:
                    self._replacing -= 1

        threading.Thread(target=start_successor, name="worker-replacer", daemon=True).start()

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
            Past ``timeout_s``; the worker was killed and replaced.
        RuntimeError
            Anything else the analysis raised (a bug), with its message.
        """
        try:  # none idle: all busy or being replaced; the request's own timeout applies
            worker = self._idle.get(timeout=self.timeout_s)
        except queue.Empty:
            raise WorkerTimeout(f"no analysis worker free within {self.timeout_s:g} s") from None
        try:
            worker.conn.send((bytes(data), file_type, references))
            if not worker.conn.poll(self.timeout_s):
                self._replace(worker)
                raise WorkerTimeout(f"analysis exceeded {self.timeout_s:g} s")
            kind, payload = worker.conn.recv()
        except (EOFError, OSError):
            worker.process.join(2)  # the pipe closes a moment before the process is reaped
            code = worker.process.exitcode
            self._replace(worker)
            raise WorkerCrashed(_death(code)) from None
        if kind == "memory":
            self._replace(worker)  # its heap may be fragmented beyond use: start afresh
            raise WorkerCrashed(payload)
        self._idle.put(worker)
        if kind == "ok":
            return payload
        if kind == "input":
            raise payload
        raise RuntimeError(payload)

    @property
    def alive(self) -> int:
        """Workers ready or busy (not counting those being replaced)."""
        with self._lock:
            return self.size - self._replacing

    def pids(self) -> list[int]:
        """Process ids of the idle workers (for tests and diagnostics)."""
        return [w.process.pid for w in list(self._idle.queue) if w.process.pid is not None]

    def close(self) -> None:
        """Stop every worker (idle ones at once; busy ones are killed by their caller)."""
        self._closed = True
        launching, self._launching = self._launching, []
        for process, conn in launching:
            _Worker(process, conn).kill()
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                return
            try:
                worker.conn.send(None)
                worker.process.join(2)
            except OSError:
                pass
            worker.kill()


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"the analysis worker died ({name}) while decoding this input"
    return f"the analysis worker died (exit code {exitcode}) while decoding this input"

