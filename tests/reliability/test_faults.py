"""Suite 5: faults on a real server.

- A decode that hangs (fault injection, ``DEEPFAKE_AUDIO_TEST_FAULTS=1``) fails only
  its own request, with 503 / ``{"error": "analysis timed out"}`` within the analysis
  timeout, while other requests keep being served; once the stuck thread returns, its
  slot is free again.
- A decode that crashes fails only its own request (500 with a request id on HTTP,
  ``{"error": "internal server error"}`` on ``/ws``, the connection stays open).
- SIGTERM with 10 HTTP and 10 WebSocket requests in flight: readiness turns 503 at
  once, every HTTP request completes with its verdict, every WebSocket client gets its
  verdict or a 1001/1012 close, and the process exits cleanly.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from deepfake_audio.server.faults import MAGIC
from tests.helpers.audio import wav_bytes
from tests.helpers.server import ServerProcess

from . import probes, runs
from .servers import InspectableServer, start_inspectable

pytestmark = [pytest.mark.reliability, pytest.mark.server, pytest.mark.timeout(120)]

TIMEOUT_S = 1.0
HANG_S = 4.0


def hang(seconds: float = HANG_S) -> bytes:
    return MAGIC + f"hang={seconds}".encode()


CRASH = MAGIC + b"crash"


def gauge(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics", timeout=5).text
    match = re.search(rf"^deepfake_audio_{name} ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not reached within {timeout} s"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InspectableServer]:
    (started,) = start_inspectable(tmp_path_factory, {
        "DEEPFAKE_AUDIO_TEST_FAULTS": "1", "DEEPFAKE_AUDIO_ANALYSIS_TIMEOUT": str(TIMEOUT_S),
        "DEEPFAKE_AUDIO_MAX_CONCURRENCY": "2", "DEEPFAKE_AUDIO_MAX_QUEUE": "16"})
    with started:
        yield started


def post(url: str, data: bytes) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = httpx.post(url + "/analyze", files={"file": ("a.wav", data, "audio/wav")},
                          timeout=30)
    return response, time.perf_counter() - started


def test_fault_injection_is_off_unless_enabled() -> None:
    from deepfake_audio.server import faults

    assert faults.hook_from_env({}) is None
    assert faults.hook_from_env({faults.ENV_VAR: "0"}) is None
    assert faults.hook_from_env({faults.ENV_VAR: "1"}) is faults.inject
    faults.inject(b"RIFF....WAVE")  # ordinary audio: untouched
    with pytest.raises(faults.InjectedCrash):
        faults.inject(CRASH)


def test_the_leak_check_sees_a_spooled_upload(server: InspectableServer) -> None:
    """Self-test of the temp-file check the other suites rely on: an upload over 1 MB is
    spooled to an unlinked temp file in the server's TMPDIR, visible among its open
    descriptors while the analysis runs, and gone once the request is over."""
    payload = hang(1.5) + b"\n" + b"\0" * (2 * 1024 * 1024)
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(post, server.url, payload)
        wait_until(lambda: probes.temp_fds(server.pid, server.tmpdir), 5, "spooled upload")
        assert any(str(server.tmpdir) in t for t in probes.temp_fds(server.pid, server.tmpdir))
        assert job.result()[0].status_code == 503
    assert server.leftovers() == []
    wait_until(lambda: gauge(server.url, "analysis_queue_depth") == 0, 10, "slot freed")


def test_hanging_decode_fails_only_its_own_request(server: ServerProcess) -> None:
    good = wav_bytes(2.0)
    with ThreadPoolExecutor(1) as pool:
        stuck = pool.submit(post, server.url, hang())
        wait_until(lambda: gauge(server.url, "analysis_queue_depth") >= 1, 5, "hang admitted")
        # Meanwhile the other slot keeps serving HTTP and WebSocket requests.
        for _ in range(5):
            response, seconds = post(server.url, good)
            assert response.status_code == 200, response.text
        with connect(server.ws_url + "/ws") as ws:
            ws.send(probes.ws_message(good))
            assert "classification" in json.loads(ws.recv(timeout=10))
        response, seconds = stuck.result()
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "analysis timed out"
    assert response.headers["retry-after"] == "5"
    # Answered by the timeout, not by the stuck decode returning.
    assert TIMEOUT_S <= seconds < HANG_S, seconds
    # The stuck thread keeps its slot until it returns, then everything is back to normal.
    wait_until(lambda: gauge(server.url, "analysis_queue_depth") == 0, HANG_S + 5, "slot freed")
    assert post(server.url, good)[0].status_code == 200


def test_hanging_decode_on_ws_answers_timeout_and_keeps_the_connection(
        server: ServerProcess) -> None:
    with connect(server.ws_url + "/ws") as ws:
        started = time.perf_counter()
        ws.send(probes.ws_message(hang()))
        reply = json.loads(ws.recv(timeout=10))
        assert reply == {"error": "analysis timed out"}
        assert time.perf_counter() - started < HANG_S
        ws.send(probes.ws_message(wav_bytes(2.0)))
        assert "classification" in json.loads(ws.recv(timeout=10))
    wait_until(lambda: gauge(server.url, "analysis_queue_depth") == 0, 10, "slot freed")


def test_every_slot_stuck_then_recovery(server: ServerProcess) -> None:
    """Both slots hung: queued requests time out too (503, never a pile-up), probes stay
    up, and the server serves normally as soon as the stuck threads return."""
    with ThreadPoolExecutor(4) as pool:
        stuck = [pool.submit(post, server.url, hang()) for _ in range(2)]
        wait_until(lambda: gauge(server.url, "analysis_queue_depth") >= 2, 5, "hangs admitted")
        queued, seconds = post(server.url, wav_bytes(1.0))
        assert queued.status_code == 503 and seconds < HANG_S  # before a stuck slot freed
        assert httpx.get(server.url + "/health/live", timeout=2).status_code == 200
        assert [f.result()[0].status_code for f in stuck] == [503, 503]
    wait_until(lambda: gauge(server.url, "analysis_queue_depth") == 0, 10, "slots freed")
    assert post(server.url, wav_bytes(1.0))[0].status_code == 200


def test_crashing_decode_fails_only_its_own_request(server: ServerProcess) -> None:
    good = wav_bytes(2.0)
    with ThreadPoolExecutor(3) as pool:
        crashes = [pool.submit(post, server.url, CRASH) for _ in range(3)]
        oks = [post(server.url, good)[0] for _ in range(3)]
    for future in crashes:
        response, _ = future.result()
        assert response.status_code == 500
        body = response.json()
        assert body["error"] == "internal server error"
        assert response.headers["x-request-id"] in body["detail"]
    assert all(r.status_code == 200 for r in oks)
    with connect(server.ws_url + "/ws") as ws:
        ws.send(probes.ws_message(CRASH))
        assert json.loads(ws.recv(timeout=10)) == {"error": "internal server error"}
        ws.send(probes.ws_message(good))
        assert "classification" in json.loads(ws.recv(timeout=10))
    assert httpx.get(server.url + "/health/ready").status_code == 200
    metrics = httpx.get(server.url + "/metrics").text
    assert re.search(r'deepfake_audio_analyses_total\{source="http",outcome="error"\} [1-9]',
                     metrics)
    # A crash is a bug: it is logged with its traceback (the request id ties it together).
    assert "InjectedCrash" in server.log()


# --------------------------------------------------------------------------- SIGTERM


def test_sigterm_with_http_and_ws_in_flight() -> None:
    server = ServerProcess(runs.SIGTERM_SERVER_ENV)
    with server:
        server.wait_ready()
        # One slot, held by a decode hanging for 10 s (time for 20 uploads to be admitted on
        # a loaded machine): all 20 requests are queued when the signal comes; the listener
        # closes after the 1 s drain, then the queue is worked off.
        outcome = runs.sigterm_in_flight(server, wav_bytes(60.0), http=10, ws=10, blocker_s=10.0)
    assert outcome.in_flight_at_signal == 21
    # Before the 1 s drain closes the listener (SIGTERM_SERVER_ENV), not a speed figure.
    assert outcome.ready_503_after_s < 1.0, outcome.ready_503_after_s
    assert outcome.http_statuses == [200] * 10, outcome.http_statuses
    assert all(o in ("result", "close 1001", "close 1012") for o in outcome.ws_outcomes), \
        outcome.ws_outcomes
    # uvicorn re-raises the signal once it has shut down cleanly.
    assert outcome.returncode in (0, -signal.SIGTERM), outcome.log[-3000:]
    assert outcome.exit_after_s < 30
    assert "readiness is now 503" in outcome.log and "Finished server process" in outcome.log
    assert "Traceback" not in outcome.log, outcome.log[-3000:]
