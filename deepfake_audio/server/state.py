"""Per-app state shared by the routers (``app.state.service``) and the analysis runner."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi.requests import HTTPConnection

from ..detector import AnalysisResult, Detector
from .admission import Admission, ServerBusy
from .faults import FaultHook
from .metrics import Metrics
from .settings import Settings


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
    started: float = field(default_factory=time.monotonic)
    #: Test-only fault injection (``DEEPFAKE_AUDIO_TEST_FAULTS=1``), see :mod:`.faults`.
    fault_hook: FaultHook | None = None

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

    async def run_analysis(self, source: str,
                           func: Callable[[], AnalysisResult]) -> AnalysisResult:
        """Run ``func`` through admission control; time it and count the outcome.

        Raises
        ------
        ServerBusy, AnalysisTimeout
            From :class:`~.admission.Admission`; anything ``func`` raises passes through.
        """
        assert self.admission is not None
        try:
            result = await self.admission.run(self._timed, source, func)
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
                    allow_unverified=settings.allow_unverified_model)
