"""Suite 3: size caps on a real server started with ``MAX_UPLOAD_MB=1``.

- an upload 1 KB under the cap gets past the size check (and is analysed);
- 1 KB over it is 413;
- a 200 MB body, declared by ``Content-Length`` or streamed chunked without one, is
  413 before a quarter of it is read, and the server's memory grows by less than 50 MB
  (scripts/reliability_report.py prints the 413 latency);
- a WebSocket frame over the frame limit closes that connection with 1009 while
  another open connection keeps working.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.helpers.audio import wav_bytes, wav_of_size

from . import probes
from .servers import (
    CAP,
    CAP_MB,
    REPLY_HANG_GUARD_S,
    RSS_BUDGET_MB,
    InspectableServer,
    start_inspectable,
)

pytestmark = [pytest.mark.reliability, pytest.mark.server, pytest.mark.timeout(120)]

BIG = 200 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InspectableServer]:
    (started,) = start_inspectable(tmp_path_factory, {
        "DEEPFAKE_AUDIO_MAX_UPLOAD_MB": str(CAP_MB), "DEEPFAKE_AUDIO_MAX_CONCURRENCY": "2"})
    with started:
        yield started


def _post(server: InspectableServer, data: bytes) -> httpx.Response:
    return httpx.post(server.url + "/analyze", files={"file": ("a.wav", data, "audio/wav")},
                      timeout=30)


def test_one_kb_under_the_cap_is_analysed(server: InspectableServer) -> None:
    response = _post(server, wav_of_size(CAP - 1024))
    assert response.status_code == 200, response.text
    assert response.json()["classification"] in ("real", "deepfake")


def test_one_kb_over_the_cap_is_413(server: InspectableServer) -> None:
    response = _post(server, wav_of_size(CAP + 1024))
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "upload too large"
    assert "1 MB" in response.json()["detail"]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_200_mb_body_is_413_before_it_is_read(server: InspectableServer, chunked: bool) -> None:
    rss_before = server.rss_mb()
    answer = probes.oversized_upload(server.port, BIG, chunked=chunked)
    rss_after = server.rss_mb()
    assert answer.status == 413, answer.body[:300]
    assert answer.json()["error"] == "upload too large"
    assert answer.seconds < REPLY_HANG_GUARD_S, f"413 after {answer.seconds:.2f} s"
    # The server stopped reading long before the end of the 200 MB.
    assert answer.sent_bytes < BIG // 4, answer.sent_bytes
    assert rss_after - rss_before < RSS_BUDGET_MB, (rss_before, rss_after)
    assert httpx.get(server.url + "/health/ready").status_code == 200


def test_ws_frame_over_the_limit_closes_only_that_connection(server: InspectableServer) -> None:
    good = probes.ws_message(wav_bytes(2.0))
    with connect(server.ws_url + "/ws", max_size=None) as bystander:
        bystander.send(good)
        assert "classification" in json.loads(bystander.recv(timeout=30))
        with connect(server.ws_url + "/ws", max_size=None) as offender:
            offender.send("x" * (2 * CAP + 1024))  # over the ~1.4 MB frame limit
            with pytest.raises(ConnectionClosed) as info:
                offender.recv(timeout=10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009, info.value
        # The other connection never noticed.
        for _ in range(3):
            bystander.send(good)
            assert "classification" in json.loads(bystander.recv(timeout=30))


def test_ws_payload_over_the_upload_cap_is_an_error_reply(server: InspectableServer) -> None:
    """Under the frame limit but over the upload cap once decoded: ``{"error"}``, and the
    connection stays usable."""
    with connect(server.ws_url + "/ws", max_size=None) as ws:
        ws.send(probes.ws_message(b"\0" * (CAP + 1024)))
        reply = json.loads(ws.recv(timeout=30))
        assert "larger than the 1 MB limit" in reply["error"]
        ws.send(probes.ws_message(wav_bytes(1.0)))
        assert "classification" in json.loads(ws.recv(timeout=30))


def test_nothing_left_behind(server: InspectableServer) -> None:
    assert server.leftovers() == []
    log = server.log()
    assert probes.server_errors(log) == [], log[-3000:]
