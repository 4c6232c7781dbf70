"""Scan an archive: one record per file, on a Dask cluster or on local processes.

>>> from distributed import Client                       # doctest: +SKIP
>>> from deepfake_audio.batch import scan
>>> with Client("tcp://scheduler:8786") as client:        # doctest: +SKIP
...     for record in scan(["s3://calls/2026/"], client=client):
...         print(record.source, record.status, record.result)

What travels over the wire is the *name* of each file (a path the workers can
see, or an fsspec URL such as ``s3://``, ``gs://``, ``http(s)://``, ``file://``);
the workers read the bytes themselves, so the client never downloads audio.
Folders and bucket prefixes are listed lazily, on the client, as tasks are
submitted.

Efficiency: the model is loaded once per worker process (a per-process cache
keyed by the detector options), files are grouped into tasks sized to about
``target_task_s`` seconds of work from the measured time per file, and only a
bounded number of tasks is in flight, so client memory does not grow with the
archive (apart from one entry per input in the exactly-once bookkeeping).

Exactly once: only the client turns task results into records, each task's
result is taken once, and each input name is submitted once per scan. A worker
that dies mid-task (``kill -9``) makes Dask reschedule the task elsewhere; a
task that keeps killing workers is retried file by file, and the file that
still fails becomes a ``failed`` record. With ``resume`` the workers still read
and hash each input but skip the analysis when the content hash and the model
id match what an earlier run recorded (a ``skipped`` record).

Record status:

``ok``
    analysed; the :class:`~deepfake_audio.detector.AnalysisResult` fields are in ``result``.
``error``
    the input cannot be analysed (a :class:`~deepfake_audio.exceptions.InputError`:
    not audio, too short, silent...); the same bytes give the same error again.
``failed``
    not the input's fault (unreadable, network error, worker died, internal
    error); retried by a resumed run.
``skipped``
    already in the output of an earlier run (never written to an output).

Scanning on a cluster or from URLs needs the ``[dask]`` extra
(``pip install "deepfake-audio[dask]"``); local paths on local processes do not.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import typing
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, fields, replace
from pathlib import PurePosixPath
from typing import Any, Protocol

from .audio import DEFAULT_MAX_DURATION_S, SUPPORTED_EXTENSIONS
from .detector import AnalysisResult, Detector
from .exceptions import DeepfakeAudioError, InputError
from .sources import DASK_HINT, iter_sources, read_source
from .speaker import SpeakerResult

logger = logging.getLogger("deepfake_audio")


OK = "ok"
ERROR = "error"
FAILED = "failed"
SKIPPED = "skipped"

#: Result columns: every :class:`AnalysisResult` field but the timeline (and the
#: model, which every record carries anyway).
RESULT_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(AnalysisResult) if f.name not in ("timeline", "model")
)
#: Columns of :meth:`ScanRecord.to_dict`, in output order.
RECORD_FIELDS: tuple[str, ...] = (
    "source", "status", "size", "sha256", "model", *RESULT_FIELDS, "error", "error_type",
)
_SCALARS = (str, int, float, bool)


def _column_type(hint: Any) -> type:
    """A result field's column type: its scalar type (``None`` allowed), else ``str``
    holding JSON (band, segments, channels, speaker...), so every output stays flat."""
    options = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
    return options[0] if len(options) == 1 and options[0] in _SCALARS else str


# SpeakerResult is imported by detector.py for type checking only.
_RESULT_HINTS = typing.get_type_hints(AnalysisResult, localns={"SpeakerResult": SpeakerResult})
_RESULT_TYPES = {name: _column_type(hint) for name, hint in _RESULT_HINTS.items()}
#: Fields stored as JSON text.
JSON_FIELDS = frozenset(
    name for name, hint in _RESULT_HINTS.items()
    if name in RESULT_FIELDS and _RESULT_TYPES[name] is str and hint is not str
)
#: Python type of each column (values may also be ``None``).
FIELD_TYPES: dict[str, type] = {
    "size": int,
    **{name: _RESULT_TYPES[name] for name in RESULT_FIELDS},
    **{name: str for name in RECORD_FIELDS if name not in RESULT_FIELDS and name != "size"},
}


@dataclass(frozen=True)
class ScanRecord:
    """What a scan learnt about one input.

    Attributes
    ----------
    source : str
        Absolute local path or URL, as the workers read it.
    status : {"ok", "error", "failed", "skipped"}
        See the module docstring.
    size : int or None
        Bytes read (``None`` when the input could not be read).
    sha256 : str or None
        SHA-256 of the bytes read, hex.
    model : str or None
        Id of the model that scored (or would have scored) the input.
    result : mapping or None
        ``AnalysisResult.to_dict(timeline=False)`` for ``ok`` records.
    error, error_type : str or None
        One-line message and exception class name for ``error``/``failed`` records.
    """

    source: str
    status: str
    size: int | None = None
    sha256: str | None = None
    model: str | None = None
    result: Mapping[str, Any] | None = field(default=None, hash=False)
    error: str | None = None
    error_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Flat row with the :data:`RECORD_FIELDS` keys (missing values are ``None``)."""
        result = self.result or {}
        return {
            "source": self.source, "status": self.status, "size": self.size,
            "sha256": self.sha256, "model": self.model,
            **{name: (json.dumps(result[name]) if name in JSON_FIELDS and name in result
                      else result.get(name)) for name in RESULT_FIELDS},
            "error": self.error, "error_type": self.error_type,
        }


@dataclass(frozen=True)
class DetectorOptions:
    """How each worker builds its :class:`Detector` (also the per-process cache key)."""

    model_dir: str | None = None
    threshold: float | None = None
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S
    allow_unverified: bool = False


# --------------------------------------------------------------------------- worker side

_detectors: dict[DetectorOptions, Detector] = {}
_detectors_lock = threading.Lock()


def _detector(options: DetectorOptions) -> Detector:
    """This process's detector for ``options``: loaded on first use, then reused."""
    with _detectors_lock:
        detector = _detectors.get(options)
        if detector is None:
            detector = _detectors[options] = Detector(
                options.model_dir, threshold=options.threshold,
                max_duration_s=options.max_duration_s, allow_unverified=options.allow_unverified,
            )
        return detector


def _model_id(options: DetectorOptions) -> str:
    return _detector(options).model_id


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _scan_one(detector: Detector, source: str, expected: tuple[str, str] | None) -> ScanRecord:
    model = detector.model_id
    try:
        data = read_source(source)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return ScanRecord(source, ERROR, model=model, error=f"no such file: {source}",
                          error_type="AudioFileNotFoundError")
    except Exception as exc:  # network, permissions...: worth retrying later
        return ScanRecord(source, FAILED, model=model, error=f"cannot read: {_one_line(exc)}",
                          error_type=type(exc).__name__)
    digest = hashlib.sha256(data).hexdigest()
    read = ScanRecord(source, SKIPPED, size=len(data), sha256=digest, model=model)
    if expected == (digest, model):
        return read
    suffix = PurePosixPath(source.split("?", 1)[0]).suffix.lower()
    try:
        result = detector.analyze(data, file_type=suffix if suffix in SUPPORTED_EXTENSIONS
                                  else None)
    except InputError as exc:
        return replace(read, status=ERROR, error=_one_line(exc), error_type=type(exc).__name__)
    except DeepfakeAudioError as exc:
        return replace(read, status=FAILED, error=_one_line(exc), error_type=type(exc).__name__)
    except Exception as exc:  # a bug in us, not in the input: keep the scan going
        logger.debug("unexpected error on %s", source, exc_info=True)
        return replace(read, status=FAILED,
                       error=f"internal error: {type(exc).__name__}: {_one_line(exc)}",
                       error_type=type(exc).__name__)
    return replace(read, status=OK, result=result.to_dict(timeline=False))


_Item = tuple[str, "tuple[str, str] | None"]


def _scan_task(options: DetectorOptions, items: tuple[_Item, ...]
               ) -> tuple[list[ScanRecord], float]:
    """One task: records for ``items`` and the seconds spent on them (model load excluded)."""
    detector = _detector(options)
    started = time.perf_counter()
    records = [_scan_one(detector, source, expected) for source, expected in items]
    return records, time.perf_counter() - started


# --------------------------------------------------------------------------- client side


class _Runner(Protocol):
    def capacity(self) -> int: ...
    def call(self, fn: Callable[..., Any], *args: Any) -> Any: ...
    def submit(self, fn: Callable[..., Any], *args: Any) -> Any: ...
    def next_done(self) -> Any: ...
    def close(self) -> None: ...


class _DaskRunner:
    """Tasks on a Dask cluster; completed futures in completion order."""

    def __init__(self, client: Any) -> None:
        from distributed import as_completed

        self.client = client
        self._done = as_completed(loop=client.loop)
        self._capacity = (0, 0.0)

    def capacity(self) -> int:
        # Workers may join or leave while a long scan runs: look again every few seconds.
        value, when = self._capacity
        if time.monotonic() - when > 5.0:
            value = max(1, sum(self.client.nthreads().values()))
            self._capacity = (value, time.monotonic())
        return value

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.client.submit(fn, *args, pure=False).result()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        future = self.client.submit(fn, *args, pure=False)
        self._done.add(future)
        return future

    def next_done(self) -> Any:
        return next(self._done)

    def close(self) -> None:
        self._done.clear()


class _PoolRunner:
    """The same tasks on local processes (no scheduler)."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._pool = ProcessPoolExecutor(processes)
        self._pending: set[Future[Any]] = set()

    def capacity(self) -> int:
        return self.processes

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._pool.submit(fn, *args).result()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            future = self._pool.submit(fn, *args)
        except BrokenProcessPool:  # a process died: its tasks are retried on a fresh pool
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = ProcessPoolExecutor(self.processes)
            future = self._pool.submit(fn, *args)
        self._pending.add(future)
        return future

    def next_done(self) -> Any:
        done, _ = wait(self._pending, return_when=FIRST_COMPLETED)
        future = done.pop()
        self._pending.discard(future)
        return future

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def connect(address: str, *, timeout: float = 30.0) -> Any:
    """A :class:`distributed.Client` for the scheduler at ``address`` (``tcp://host:8786``)."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise ImportError(f"a Dask scheduler {DASK_HINT}") from exc
    return Client(address, timeout=timeout, set_as_default=False)


def dashboard_link(client: Any, *, timeout: float = 2.0) -> str | None:
    """The scheduler's dashboard URL, or ``None`` when it runs without one.

    The scheduler's HTTP service also runs without the dashboard (health,
    metrics), so the page itself is asked for.
    """
    if "dashboard" not in client.scheduler_info().get("services", {}):
        return None
    link = str(client.dashboard_link)
    try:
        with urllib.request.urlopen(link, timeout=timeout):
            return link
    except (OSError, ValueError):
        return None


def scan(
    sources: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    client: Any = None,
    model_dir: str | os.PathLike[str] | None = None,
    threshold: float | None = None,
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
    allow_unverified: bool = False,
    resume: Mapping[str, tuple[str, str]] | None = None,
    processes: int | None = None,
    files_per_task: int | None = None,
    target_task_s: float = 1.0,
    max_files_per_task: int = 256,
    tasks_per_slot: int = 2,
) -> Iterator[ScanRecord]:
    """Analyse every input once; yield one record per input as tasks finish.

    Parameters
    ----------
    sources : path, URL, or iterable of them
        Files, folders, bucket prefixes (``s3://bucket/calls/``) or HTTP index
        pages ending in ``/``; expanded lazily by :func:`iter_sources`.
    client : distributed.Client or str, optional
        Run on this Dask cluster (a scheduler address connects and disconnects
        here). Without it, the tasks run on ``processes`` local processes.
    model_dir, threshold, max_duration_s, allow_unverified
        As for :class:`~deepfake_audio.detector.Detector`; ``model_dir`` must be
        readable by the workers (default: the bundled model).
    resume : mapping, optional
        ``source -> (sha256, model_id)`` of inputs an earlier run settled (e.g.
        :attr:`deepfake_audio.batch_output.ResultSink.completed`): an input whose
        bytes and model still match yields a ``skipped`` record without analysis.
    processes : int, optional
        Local processes when there is no client (default: one per CPU).
    files_per_task : int, optional
        Fixed files per task; by default tasks are sized to ``target_task_s``
        seconds from the measured time per file (at most ``max_files_per_task``).
    tasks_per_slot : int
        Tasks in flight per worker thread: enough to keep workers busy, few
        enough to bound client memory.

    Yields
    ------
    ScanRecord
        In completion order, one per distinct input.

    Raises
    ------
    ModelLoadError
        The workers cannot load the model (raised before any file is read).
    ImportError
        A client or URL was given without the ``[dask]`` extra installed.
    """
    options = DetectorOptions(
        model_dir=None if model_dir is None else os.fspath(model_dir), threshold=threshold,
        max_duration_s=max_duration_s, allow_unverified=allow_unverified,
    )
    own_client = isinstance(client, str)
    runner: _Runner
    if client is None:
        runner = _PoolRunner(processes or os.cpu_count() or 1)
    else:
        client = connect(client) if own_client else client
        runner = _DaskRunner(client)
    try:
        runner.call(_model_id, options)  # a model that cannot load fails here, once
        yield from _drive(runner, options, iter_sources(sources), resume or {},
                          files_per_task, target_task_s, max_files_per_task, tasks_per_slot)
    finally:
        runner.close()
        if own_client:
            client.close()


def _drive(runner: _Runner, options: DetectorOptions, listing: Iterator[str],
           resume: Mapping[str, tuple[str, str]], files_per_task: int | None,
           target_task_s: float, max_files_per_task: int, tasks_per_slot: int
           ) -> Iterator[ScanRecord]:
    submitted: set[str] = set()  # each input name goes out once per scan
    pending: dict[Any, tuple[_Item, ...]] = {}
    seconds_per_file: float | None = None
    listing_done = False

    def batch_size() -> int:
        if files_per_task:
            return files_per_task
        if seconds_per_file is None:  # a small first wave measures the time per file
            return 4
        return max(1, min(max_files_per_task, round(target_task_s / seconds_per_file)))

    def refill() -> None:
        nonlocal listing_done
        while not listing_done and len(pending) < tasks_per_slot * runner.capacity():
            items: list[_Item] = []
            wanted = batch_size()
            while len(items) < wanted:
                source = next(listing, None)
                if source is None:
                    listing_done = True
                    break
                if source not in submitted:
                    submitted.add(source)
                    items.append((source, resume.get(source)))
            if items:
                batch = tuple(items)
                pending[runner.submit(_scan_task, options, batch)] = batch

    refill()
    while pending:
        future = runner.next_done()
        batch = pending.pop(future)
        try:
            records, seconds = future.result()
        except Exception as exc:  # the task's worker died (repeatedly) or the task broke
            if len(batch) > 1:
                logger.warning("a task of %d files failed (%s); retrying them one by one",
                               len(batch), type(exc).__name__)
                for item in batch:
                    pending[runner.submit(_scan_task, options, (item,))] = (item,)
                continue
            records = [ScanRecord(batch[0][0], FAILED, error=f"task failed: {_one_line(exc)}",
                                  error_type=type(exc).__name__)]
        else:
            analysed = sum(record.status != SKIPPED for record in records)
            if analysed:
                per_file = seconds / analysed
                seconds_per_file = per_file if seconds_per_file is None else (
                    0.7 * seconds_per_file + 0.3 * per_file)
        del future
        yield from records
        refill()


__all__ = [
    "DASK_HINT",
    "ERROR",
    "FAILED",
    "FIELD_TYPES",
    "OK",
    "RECORD_FIELDS",
    "RESULT_FIELDS",
    "SKIPPED",
    "DetectorOptions",
    "ScanRecord",
    "connect",
    "dashboard_link",
    "iter_sources",
    "scan",
]
