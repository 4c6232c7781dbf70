"""Prometheus metrics, written by hand in the text exposition format (version 0.0.4).

Why not ``prometheus-client``: the handful of series below needs ~100 lines, no
extra dependency, and no multiprocess-mode setup. With ``--workers > 1`` every
worker keeps its own counters, so a scrape reaches one worker at a time —
scrape per pod / per process, or run one worker per container (the usual layout).
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable

LabelValues = tuple[str, ...]

#: Seconds; covers a 5 ms analysis up to a slow 10-minute upload.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: LabelValues, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = labels
        # Updated from the event loop and from analysis threads.
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError


class Counter(_Metric):
    """Monotonic counter with labels."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[LabelValues, float] = defaultdict(float)

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] += amount

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [*self.header(), *(f"{self.name}{_labels(self.label_names, k)} {_number(v)}"
                                  for k, v in items)]


class Gauge(_Metric):
    """Value that goes up and down, or is read from a callback at scrape time."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = (),
                 callback: Callable[[], Iterable[tuple[LabelValues, float]]] | None = None) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[LabelValues, float] = defaultdict(float)
        self._callback = callback

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] += amount

    def dec(self, *labels: str, amount: float = 1.0) -> None:
        self.inc(*labels, amount=-amount)

    def render(self) -> list[str]:
        if self._callback is not None:
            items = sorted(self._callback())
        else:
            with self._lock:
                items = sorted(self._values.items())
        return [*self.header(), *(f"{self.name}{_labels(self.label_names, k)} {_number(v)}"
                                  for k, v in items)]


class Histogram(_Metric):
    """Cumulative-bucket histogram with labels."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = (),
                 buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        super().__init__(name, help_text, labels)
        self.buckets = tuple(sorted(buckets))
        self._counts: dict[LabelValues, list[int]] = {}
        self._sums: dict[LabelValues, float] = defaultdict(float)

    def observe(self, value: float, *labels: str) -> None:
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            counts = self._counts.get(labels)
            if counts is None:
                counts = self._counts[labels] = [0] * (len(self.buckets) + 1)
            counts[index] += 1
            self._sums[labels] += value

    def render(self) -> list[str]:
        lines = self.header()
        with self._lock:
            snapshot = sorted((k, list(v), self._sums[k]) for k, v in self._counts.items())
        for key, counts, total in snapshot:
            running = 0
            for bound, count in zip((*self.buckets, float("inf")), counts, strict=True):
                running += count
                le = 'le="' + _number(bound) + '"'
                lines.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {running}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {_number(total)}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {running}")
        return lines


class Metrics:
    """The server's metric families."""

    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        p = "deepfake_audio_"
        self.requests = Counter(p + "http_requests_total",
                                "HTTP requests by route, method and status.",
                                ("route", "method", "status"))
        self.latency = Histogram(p + "http_request_duration_seconds",
                                 "HTTP request latency by route (seconds).", ("route", "method"))
        self.in_flight = Gauge(p + "http_requests_in_flight", "HTTP requests being served now.")
        self.websockets = Gauge(p + "websocket_connections", "Open WebSocket connections by route.",
                                ("route",))
        self.analyses = Counter(p + "analyses_total",
                                "Analyses by source (http, ws, stream) and outcome"
                                " (real, deepfake, rejected, error).", ("source", "outcome"))
        self.analysis_seconds = Histogram(p + "analysis_duration_seconds",
                                          "CPU-side analysis time (decode + features + SVM).",
                                          ("source",))
        self.rejected = Counter(p + "rejected_total",
                                "Requests refused before analysis, by reason.", ("reason",))
        self._gauges: list[_Metric] = []

    def add_gauge(self, name: str, help_text: str,
                  callback: Callable[[], Iterable[tuple[LabelValues, float]]],
                  labels: tuple[str, ...] = ()) -> None:
        """Register a gauge read at scrape time (queue depth, readiness…)."""
        self._gauges.append(Gauge("deepfake_audio_" + name, help_text, labels, callback))

    def render(self) -> str:
        families: list[_Metric] = [self.requests, self.latency, self.in_flight, self.websockets,
                                   self.analyses, self.analysis_seconds, self.rejected,
                                   *self._gauges]
        lines: list[str] = []
        for family in families:
            lines.extend(family.render())
        return "\n".join(lines) + "\n"
