"""Suite 6: access control on a real server with an API key and one allowed origin.

- HTTP without / with a wrong key: 401, before the body is read;
- WebSocket without / with a wrong key: non-browser clients get HTTP 401 at the
  handshake; browsers (handshake with an allowed ``Origin``) get the connection
  closed at once with 1008 "invalid or missing API key", which a page can show;
- a disallowed ``Origin`` is refused at the handshake (403), key or not;
- "before any decoding" is proved three ways: the analyses counter of ``/metrics``
  does not move, a fault-injection payload that would crash the decoder is never
  reached (``DEEPFAKE_AUDIO_TEST_FAULTS=1``), and the refused upload body is not read;
- the key never appears in anything the server prints (debug logging, text and JSON).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from deepfake_audio.server.faults import MAGIC
from tests.helpers.audio import wav_bytes
from tests.helpers.server import ServerProcess, running_servers

from . import probes
from .servers import REPLY_HANG_GUARD_S

pytestmark = [pytest.mark.reliability, pytest.mark.server, pytest.mark.timeout(120)]

KEY = "rel-Key_7f3a9c2e-NEVER-LOG-ME"
WRONG_KEYS = ["", "wrong", KEY[:-1], KEY + "x", KEY.upper()]
ALLOWED = "http://allowed.example"
CRASH = MAGIC + b"crash"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[ServerProcess, ServerProcess]]:
    base = {"DEEPFAKE_AUDIO_API_KEY": KEY, "DEEPFAKE_AUDIO_CORS_ORIGINS": ALLOWED,
            "DEEPFAKE_AUDIO_LOG_LEVEL": "debug", "DEEPFAKE_AUDIO_TEST_FAULTS": "1",
            "DEEPFAKE_AUDIO_MAX_CONCURRENCY": "2"}
    with running_servers(base, {**base, "DEEPFAKE_AUDIO_LOG_FORMAT": "json"}) as started:
        yield started[0], started[1]


@pytest.fixture(scope="module")
def server(servers: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    return servers[0]


def analyses(server: ServerProcess) -> float:
    text = httpx.get(server.url + "/metrics", timeout=5).text
    return sum(float(m) for m in re.findall(r"^deepfake_audio_analyses_total\{[^}]*\} (\S+)$",
                                            text, re.M))


def _key_variants(key: str) -> list[tuple[dict[str, str], dict[str, str]]]:
    """(headers, params) pairs presenting ``key`` each possible way, or not at all."""
    if not key:
        return [({}, {})]
    return [({"X-API-Key": key}, {}), ({}, {"api_key": key})]


def test_http_without_or_with_a_wrong_key_is_401(server: ServerProcess) -> None:
    before = analyses(server)
    crash = {"file": ("x.wav", CRASH, "audio/wav")}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for key in WRONG_KEYS:
            for headers, params in _key_variants(key):
                response = client.post("/analyze", files=crash, headers=headers, params=params)
                assert response.status_code == 401, (key, response.text)
                assert response.json() == {"error": "invalid or missing API key"}
                assert response.headers["www-authenticate"].startswith("ApiKey")
        assert client.get("/openapi.json").status_code == 401
        assert client.get("/docs").status_code == 401
        # The right key goes through (the crash payload proves decoding really runs then).
        ok = client.post("/analyze", files={"file": ("a.wav", wav_bytes(1.0), "audio/wav")},
                         headers={"X-API-Key": KEY})
        assert ok.status_code == 200, ok.text
    assert analyses(server) == before + 1
    assert "injected decoder crash" not in server.log()


def test_http_401_comes_before_the_body_is_read(server: ServerProcess) -> None:
    head = (f"POST /analyze HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Content-Length: 209715200\r\nContent-Type: multipart/form-data; boundary=xyz"
            "\r\n\r\n").encode()
    answer = probes.offer_body(server.port, head, 200 * 1024 * 1024, chunked=False)
    assert answer.status == 401
    assert answer.seconds < REPLY_HANG_GUARD_S
    assert answer.sent_bytes < 50 * 1024 * 1024


def _ws_urls(server: ServerProcess, path: str) -> list[tuple[str, dict[str, str]]]:
    out = []
    for key in WRONG_KEYS:
        for headers, params in _key_variants(key):
            query = f"?api_key={params['api_key']}" if params else ""
            out.append((f"{server.ws_url}{path}{query}", headers))
    return out


@pytest.mark.parametrize("path", ["/ws", "/ws/stream"])
def test_ws_non_browser_client_gets_401_at_the_handshake(server: ServerProcess,
                                                         path: str) -> None:
    before = analyses(server)
    for url, headers in _ws_urls(server, path):
        with pytest.raises(InvalidStatus) as info:
            connect(url, additional_headers=headers, open_timeout=5)
        assert info.value.response.status_code == 401
        assert json.loads(info.value.response.body or b"{}") == {
            "error": "invalid or missing API key"}
    assert analyses(server) == before


@pytest.mark.parametrize("path", ["/ws", "/ws/stream"])
def test_ws_browser_gets_1008_with_the_reason(server: ServerProcess, path: str) -> None:
    before = analyses(server)
    for url, headers in _ws_urls(server, path):
        # Whatever the client manages to send is never read.
        with connect(url, additional_headers={**headers, "Origin": ALLOWED},
                     open_timeout=5) as ws, pytest.raises(ConnectionClosed):
            ws.send(probes.ws_message(CRASH))
            ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
            ws.recv(timeout=5)
        assert ws.close_code == 1008, (url, ws.close_code)
        assert ws.close_reason == "invalid or missing API key"
    assert analyses(server) == before
    time.sleep(0.2)
    assert "injected decoder crash" not in server.log()


def test_ws_with_the_key_works_from_an_allowed_origin(server: ServerProcess) -> None:
    for headers, query in (({"X-API-Key": KEY}, ""), ({}, f"?api_key={KEY}")):
        with connect(f"{server.ws_url}/ws{query}",
                     additional_headers={**headers, "Origin": ALLOWED}) as ws:
            ws.send(probes.ws_message(wav_bytes(1.0)))
            assert "classification" in json.loads(ws.recv(timeout=30))


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://allowed.example.evil",
                                    "https://allowed.example"])
def test_disallowed_origin_is_refused_even_with_the_key(server: ServerProcess,
                                                        origin: str) -> None:
    before = analyses(server)
    for path in ("/ws", "/ws/stream"):
        for headers in ({"Origin": origin}, {"Origin": origin, "X-API-Key": KEY}):
            with pytest.raises(InvalidStatus) as info:
                connect(server.ws_url + path, additional_headers=headers, open_timeout=5)
            assert info.value.response.status_code == 403
    assert analyses(server) == before


def test_the_key_never_reaches_the_logs(servers: tuple[ServerProcess, ServerProcess]) -> None:
    for server in servers:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            good = {"file": ("a.wav", wav_bytes(1.0), "audio/wav")}
            client.post("/analyze", files=good, params={"api_key": KEY})
            client.post("/analyze", files=good, headers={"X-API-Key": KEY})
            client.post("/analyze", files={"file": ("b.wav", b"junk", "audio/wav")},
                        params={"api_key": KEY}, headers={"X-Request-ID": "last-http"})
            client.get("/no/such/page", params={"api_key": KEY, "x": "1"})
            client.get("/", params={"api_key": KEY})
            client.post("/analyze", files=good, params={"api_key": KEY + "x"})
        with connect(f"{server.ws_url}/ws?api_key={KEY}",
                     additional_headers={"Origin": ALLOWED}) as ws:
            ws.send(probes.ws_message(wav_bytes(1.0)))
            ws.recv(timeout=30)
        with pytest.raises(InvalidStatus):
            connect(f"{server.ws_url}/ws?api_key={KEY}", additional_headers={
                "Origin": "http://evil.example"})
        deadline = time.monotonic() + 5
        while "last-http" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        log = server.log()
        assert "last-http" in log
        assert KEY not in log
        assert KEY[:12] not in log  # not even a recognisable prefix
