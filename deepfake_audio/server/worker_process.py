"""What runs inside an analysis worker process (:mod:`.workers` runs the pool).

A worker loads the model once, then answers the jobs that arrive on its pipe one at
a time, in order, until it reads ``None``.
"""

from __future__ import annotations

import multiprocessing.connection
import os
import signal
from dataclasses import dataclass
from typing import NamedTuple

from ..exceptions import InputError
from .messages import MessageError, decode_message

_MB = 1024 * 1024


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


def worker_main(conn: multiprocessing.connection.Connection, config: WorkerConfig) -> None:
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
