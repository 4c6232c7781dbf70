"""Readiness during warm-up and the analysis timeout, on a real uvicorn server run in a
thread of the test process with an instrumented detector (a real model whose
``warm_up``/``analyze`` wait for the test's go-ahead)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from deepfake_audio import Detector
from deepfake_audio.server import Settings, create_app
from tests.helpers.audio import wav_bytes
from tests.helpers.server import free_port

pytestmark = [pytest.mark.server, pytest.mark.timeout(60)]


class GatedDetector(Detector):
    """A real detector whose warm-up and analyses block until released."""

    def __init__(self, *, fail_warm_up: bool = False) -> None:
        super().__init__()
        self.warm_gate = threading.Event()
        self.analyze_gate = threading.Event()
        self.analyze_gate.set()
        self.fail_warm_up = fail_warm_up

    def warm_up(self) -> Any:
        self.warm_gate.wait(20)
        if self.fail_warm_up:
            raise RuntimeError("broken BLAS")
        return super().warm_up()

    def analyze(self, source: Any, *, file_type: str | None = None) -> Any:
        self.analyze_gate.wait(20)
        return super().analyze(source, file_type=file_type)


class ThreadServer:
    def __init__(self, settings: Settings, detector: Detector) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings, detector), host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(20)


@pytest.fixture
def detector() -> Iterator[GatedDetector]:
    det = GatedDetector()
    yield det
    det.warm_gate.set()
    det.analyze_gate.set()


def test_ready_only_after_warm_up(detector: GatedDetector) -> None:
    with ThreadServer(Settings(), detector) as server:
        # Listening and alive, but not ready while the warm-up inference runs.
        assert httpx.get(server.url + "/health/live").status_code == 200
        starting = httpx.get(server.url + "/health/ready")
        assert starting.status_code == 503
        assert starting.json()["status"] == "starting" and starting.json()["error"] == "not ready"
        assert httpx.get(server.url + "/health").status_code == 503
        assert "deepfake_audio_ready 0" in httpx.get(server.url + "/metrics").text
        detector.warm_gate.set()
        deadline = time.monotonic() + 10
        while httpx.get(server.url + "/health/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert httpx.get(server.url + "/health").json()["status"] == "ready"


def test_failed_warm_up_keeps_readiness_503() -> None:
    det = GatedDetector(fail_warm_up=True)
    det.warm_gate.set()
    with ThreadServer(Settings(), det) as server:
        deadline = time.monotonic() + 10
        while "failed" not in httpx.get(server.url + "/health/ready").json()["status"]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        body = httpx.get(server.url + "/health/ready").json()
        assert body["detail"] == "RuntimeError: broken BLAS"


def test_analysis_timeout_is_503_and_keeps_the_slot(detector: GatedDetector) -> None:
    detector.warm_gate.set()
    detector.analyze_gate.clear()
    settings = Settings(max_concurrency=1, max_queue=1, analysis_timeout_s=0.3)
    files = {"file": ("a.wav", wav_bytes(1.0))}
    with ThreadServer(settings, detector) as server:
        response = httpx.post(server.url + "/analyze", files=files, timeout=10)
        assert response.status_code == 503
        assert response.json()["error"] == "analysis timed out"
        assert response.headers["retry-after"]
        # The stuck analysis still holds the only slot: the next one queues, times out too.
        assert httpx.post(server.url + "/analyze", files=files, timeout=10).status_code == 503
        detector.analyze_gate.set()
        deadline = time.monotonic() + 10
        while (response := httpx.post(server.url + "/analyze", files=files)).status_code != 200:
            assert time.monotonic() < deadline, response.text
            time.sleep(0.05)
        metrics = httpx.get(server.url + "/metrics").text
        assert "deepfake_audio_analysis_queue_depth 0" in metrics
