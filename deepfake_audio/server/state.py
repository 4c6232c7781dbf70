"""Per-app state shared by the routers (``app.state.service``) and the analysis runner."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fastapi.requests import HTTPConnection
from starlette.datastructures import UploadFile

from ..detector import AnalysisResult, Detector
from .admission import Admission, ServerBusy
from .faults import FaultHook
from .messages import decode_message
from .metrics import Metrics
from .settings import Settings
from .workers import Job, WorkerConfig, WorkerPool


@dataclass
class ServiceState:
    """Mutable state shared by the routes of one app instance."""

    settings: Settings
    detector: Detector | None = None
    admission: Admission | None = None
    metrics: Metrics = field(default_factory=Metrics)
    warmed: bool = False
    draining: bool = False
    warm_up_error: str | None = None
    #: Open ``/ws`` and ``/ws/stream`` connections, against ``settings.max_ws_connections``.
    websocket_connections: int = 0
    started: float = field(default_factory=time.monotonic)
    #: Test-only fault injection (``DEEPFAKE_AUDIO_TEST_FAULTS=1``), see :mod:`.faults`.
    fault_hook: FaultHook | None = None
    #: Analysis worker processes (``isolate``); ``None``: uploads are analysed in threads.
    workers: WorkerPool | None = None

    @property
    def ready(self) -> bool:
        return self.detector is not None and self.warmed and not self.draining

    @property
    def status(self) -> str:
        if self.draining:
            return "shutting down"
        if self.warm_up_error:
            return "warm-up failed"
        return "ready" if self.ready else "starting"

    @property
    def loaded_detector(self) -> Detector:
        """The detector; routes only run after the lifespan loaded it."""
        assert self.detector is not None
        return self.detector

    def mark_draining(self) -> None:
        self.draining = True

    @contextlib.contextmanager
    def websocket_slot(self) -> Iterator[bool]:
        """Hold one of the ``max_ws_connections`` places while the block runs.

        Yields False (and holds nothing) when every place is taken. Only touched
        from the event loop thread, so a plain counter is race-free.
        """
        if self.websocket_connections >= self.settings.max_ws_connections:
            self.metrics.rejected.inc("ws_connections")
            yield False
            return
        self.websocket_connections += 1
        try:
            yield True
        finally:
            self.websocket_connections -= 1

    async def analyze_upload(self, source: str, upload: UploadFile,
                             references: list[UploadFile | Path]) -> AnalysisResult:
        """Analyse an uploaded file under admission control: in a worker process when
        isolated, else in a thread. ``references`` (uploads, or paths of saved profiles)
        add the speaker check. The uploads are read only once admitted, so a queued one
        stays spooled (on disk when large), not in memory.

        Raises
        ------
        ServerBusy, AnalysisTimeout
            From :class:`~.admission.Admission`.
        InputError
            The audio cannot be analysed.
        WorkerCrashed, WorkerTimeout
            The worker died or hung (it has been replaced).
        """
        if self.workers is not None:
            async def job() -> Job:
                refs = [str(r) if isinstance(r, Path) else await r.read() for r in references]
                await upload.seek(0)
                # The content decides the format; a browser blob's name ("blob") says nothing.
                return Job(await upload.read(), None, refs)

            return await self._isolated(source, job)

        def read_and_analyze() -> AnalysisResult:
            refs: list[bytes | str] = [str(r) if isinstance(r, Path) else r.file.read()
                                       for r in references]
            upload.file.seek(0)
            return self._in_process(upload.file.read(), None, refs)

        return await self.run_analysis(source, read_and_analyze)

    async def analyze_message(self, text: str, max_bytes: int) -> AnalysisResult:
        """Decode and analyse a ``/ws`` message, waiting for a slot however long the queue
        (one analysis in flight per connection bounds the backlog).

        Raises
        ------
        MessageError
            Not a valid ``/ws`` request.
        AnalysisTimeout, InputError, WorkerCrashed, WorkerTimeout
            As :meth:`analyze_upload`.
        """
        if self.workers is not None:
            async def job() -> Job:
                return Job(text, message_limit=max_bytes)

            return await self._isolated("ws", job, wait=True)

        def decode_and_analyze() -> AnalysisResult:
            # JSON parsing and base64 decoding of a 30 MB message are CPU work too.
            data, file_type = decode_message(text, max_bytes)
            return self._in_process(data, file_type, None)

        return await self.run_analysis("ws", decode_and_analyze, wait=True)

    def _in_process(self, data: bytes, file_type: str | None,
                    references: list[bytes | str] | None) -> AnalysisResult:
        if self.fault_hook is not None:
            self.fault_hook(data[:256])
        if references:
            return self.loaded_detector.analyze(data, file_type=file_type, references=references)
        return self.loaded_detector.analyze(data, file_type=file_type)

    async def run_analysis(self, source: str, func: Callable[[], AnalysisResult], *,
                           wait: bool = False) -> AnalysisResult:
        """Run the blocking ``func`` in a thread under admission control; time it and
        count the outcome.

        ``wait=True`` (WebSocket messages, one in flight per connection) waits for a
        slot however long the queue, instead of :class:`~.admission.ServerBusy`.

        Raises
        ------
        ServerBusy, AnalysisTimeout
            From :class:`~.admission.Admission`; anything ``func`` raises passes through.
        """
        assert self.admission is not None
        admission = self.admission
        return await self._counted(
            source, lambda: admission.run(self._timed, source, func, wait=wait))

    async def _isolated(self, source: str, make_job: Callable[[], Awaitable[Job]], *,
                        wait: bool = False) -> AnalysisResult:
        assert self.admission is not None and self.workers is not None
        admission, workers = self.admission, self.workers

        def observe(seconds: float) -> None:
            self.metrics.analysis_seconds.observe(seconds, source)

        async def analyze() -> AnalysisResult:
            result: AnalysisResult = await workers.analyze(await make_job(), observe)
            return result

        return await self._counted(source, lambda: admission.run_async(analyze, wait=wait))

    async def _counted(self, source: str,
                       admitted: Callable[[], Awaitable[AnalysisResult]]) -> AnalysisResult:
        try:
            result = await admitted()
        except ServerBusy:
            self.metrics.rejected.inc("busy")
            self.metrics.analyses.inc(source, "rejected")
            raise
        except Exception:  # bad input, timeout, or a bug (rendered as 500 by the caller)
            self.metrics.analyses.inc(source, "error")
            raise
        self.metrics.analyses.inc(source, result.classification)
        return result

    def _timed(self, source: str, func: Callable[[], AnalysisResult]) -> AnalysisResult:
        started = time.perf_counter()
        try:
            return func()
        finally:
            self.metrics.analysis_seconds.observe(time.perf_counter() - started, source)


def service(connection: HTTPConnection) -> ServiceState:
    """The :class:`ServiceState` of the app serving ``connection`` (request or WebSocket)."""
    state: ServiceState = connection.app.state.service
    return state


def load_detector(settings: Settings) -> Detector:
    """Load the configured model (blocking; call from a thread or before serving)."""
    return Detector(settings.model, max_duration_s=settings.max_duration_s,
                    allow_unverified=settings.allow_unverified_model, channels=settings.channels)


def launch_workers(settings: Settings, faults: bool) -> WorkerPool:
    """Start one analysis process per analysis slot; they load the model in the
    background (:meth:`WorkerPool.wait_ready` waits for them)."""
    pool = WorkerPool(
        WorkerConfig(model=settings.model, max_duration_s=settings.max_duration_s,
                     allow_unverified=settings.allow_unverified_model,
                     channels=settings.channels, memory_mb=settings.worker_memory_mb,
                     faults=faults),
        size=settings.concurrency, timeout_s=settings.analysis_timeout_s)
    pool.launch()
    return pool
