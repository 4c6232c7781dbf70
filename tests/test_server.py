"""The HTTP + WebSocket API against a real uvicorn server on 127.0.0.1.

Contract: ``GET /``, ``POST /analyze`` (results and every error code), ``WS /ws``
(including the service spec's Python example, unchanged), ``WS /ws/stream``,
health, metrics, CORS and WebSocket ``Origin`` checks, the API key, upload caps,
request ids, the demo pages, and that secrets never reach the logs.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import re
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.helpers import ROOT, media
from tests.helpers.audio import (
    FAKE_CLIP,
    REAL_CLIP,
    SR,
    clip,
    encode,
    pcm16,
    speech,
    tone,
    wav_bytes,
)
from tests.helpers.server import ServerProcess, running_servers

pytestmark = [pytest.mark.server, pytest.mark.timeout(120)]

API_KEY = "s3cret-test-key-Zq9"
ALLOWED_ORIGIN = "http://allowed.example"
MAX_UPLOAD_MB = 2
MAX_DURATION_S = 30


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[ServerProcess, ServerProcess]]:
    base = {"DEEPFAKE_AUDIO_MAX_CONCURRENCY": "2", "DEEPFAKE_AUDIO_MAX_QUEUE": "64",
            "DEEPFAKE_AUDIO_MAX_UPLOAD_MB": str(MAX_UPLOAD_MB),
            "DEEPFAKE_AUDIO_MAX_DURATION": str(MAX_DURATION_S),
            "DEEPFAKE_AUDIO_CORS_ORIGINS": ALLOWED_ORIGIN}
    with running_servers(base, {**base, "DEEPFAKE_AUDIO_API_KEY": API_KEY}) as started:
        yield started[0], started[1]


@pytest.fixture(scope="module")
def server(servers: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    return servers[0]


@pytest.fixture(scope="module")
def secured(servers: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    return servers[1]


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def post_file(client: httpx.Client, data: bytes, name: str = "clip.wav",
              **kwargs: Any) -> httpx.Response:
    return client.post("/analyze", files={"file": (name, data, "application/octet-stream")},
                       **kwargs)


def assert_error(response: httpx.Response, status: int, *, error: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    if error is not None:
        assert error in body["error"], body
    return body


def ws_ask(ws: Any, payload: dict | str) -> dict:
    ws.send(payload if isinstance(payload, str) else json.dumps(payload))
    return json.loads(ws.recv(timeout=30))


# --------------------------------------------------------------------------- GET / and health


def test_root_describes_the_api(http: httpx.Client) -> None:
    body = http.get("/").json()
    from deepfake_audio import Detector, __version__

    assert body["name"] == "Deepfake Audio Detection API"
    assert body["version"] == __version__
    assert body["description"] == "API for real-time detection of deepfake audio"
    assert body["endpoints"]["POST /analyze"] == "Upload an audio file for deepfake detection"
    assert body["endpoints"]["WebSocket /ws"] == \
        "Stream audio data for real-time deepfake detection"
    assert body["model"] == Detector().model_id


def test_health_endpoints(http: httpx.Client) -> None:
    assert http.get("/health/live").status_code == 200
    ready = http.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready" and ready.json()["model"]
    alias = http.get("/health")
    assert alias.status_code == 200 and alias.json()["model"] == ready.json()["model"]


def test_request_id_is_echoed_or_generated(http: httpx.Client) -> None:
    assert http.get("/health/live", headers={"X-Request-ID": "abc-123"}).headers[
        "x-request-id"] == "abc-123"
    generated = http.get("/health/live").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    # Anything odd is replaced, never echoed into logs or headers.
    assert http.get("/health/live", headers={"X-Request-ID": "x" * 200}).headers[
        "x-request-id"] != "x" * 200


def test_unknown_route_and_wrong_method_are_json(http: httpx.Client) -> None:
    assert_error(http.get("/no/such/thing"), 404, error="not found")
    body = assert_error(http.get("/analyze"), 405, error="method not allowed")
    assert "GET" in body["detail"]


# --------------------------------------------------------------------------- POST /analyze


def test_analyze_wav(http: httpx.Client) -> None:
    response = post_file(http, wav_bytes(5.0))
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body)[:3] == ["classification", "confidence", "raw_score"]
    assert body["classification"] in ("real", "deepfake")
    assert 0.5 <= body["confidence"] <= 1.0
    assert math.isfinite(body["raw_score"])
    assert body["duration_s"] == pytest.approx(5.0)
    assert body["timeline"] and {"start_s", "end_s", "raw_score"} <= set(body["timeline"][0])


def test_analyze_matches_the_library(http: httpx.Client) -> None:
    from deepfake_audio import Detector

    data = wav_bytes(4.0, seed=3)
    expected = Detector().analyze(data).to_dict()
    got = post_file(http, data).json()
    assert got["classification"] == expected["classification"]
    # The server pins BLAS to one thread; threaded BLAS here may differ in the last bits.
    assert got["raw_score"] == pytest.approx(expected["raw_score"], abs=1e-6)


@pytest.mark.parametrize(("fmt", "subtype", "name"), [
    ("FLAC", None, "clip.flac"),
    ("OGG", "VORBIS", "clip.ogg"),
    ("MP3", "MPEG_LAYER_III", "clip.mp3"),
])
def test_analyze_other_formats(http: httpx.Client, fmt: str, subtype: str, name: str) -> None:
    import soundfile as sf

    if fmt not in sf.available_formats():
        pytest.skip(f"libsndfile here cannot write {fmt}")
    response = post_file(http, encode(speech(3.0), SR, fmt, subtype), name)
    assert response.status_code == 200, response.text
    assert response.json()["duration_s"] == pytest.approx(3.0, abs=0.1)


@pytest.mark.parametrize(("container", "codec", "video"), [
    ("ipod", "aac", None), ("webm", "libopus", None), ("amr", "libopencore_amrnb", None),
    ("mp4", "aac", "mpeg4"),
], ids=["m4a", "webm", "amr", "mp4-video"])
def test_analyze_media_containers(http: httpx.Client, container: str, codec: str,
                                  video: str | None) -> None:
    rate = 8000 if codec == "libopencore_amrnb" else 48_000
    data = media.encode(speech(4.0, rate), rate, container, codec, video=video)
    response = post_file(http, data, "upload")
    assert response.status_code == 200, response.text
    assert response.json()["duration_s"] == pytest.approx(4.0, abs=0.15)
    assert response.json()["channels"] == []


def _nan_wav() -> bytes:
    samples = tone(2.0)
    samples[100] = np.nan
    return encode(samples, SR, "WAV", "FLOAT")


@pytest.mark.parametrize(("data", "status", "error"), [
    (b"this is not audio at all" * 10, 400, "could not decode audio"),
    (b"", 400, None),
    (encode(np.zeros(SR * 2, dtype=np.float32), SR, "WAV", "PCM_16"), 400, "silent audio"),
    (encode(tone(0.1), SR, "WAV", "PCM_16"), 400, "audio too short"),
    (_nan_wav(), 400, "invalid audio"),
    (wav_bytes(5.0)[:60], 400, None),  # truncated header
    (encode(tone(3.0), SR, "WAV", "PCM_16"), 400, "no speech"),
    (media.encode(tone(2.0), SR, "mp4", "aac", video="mpeg4", audio=False), 400,
     "could not decode audio"),
    (encode(tone(MAX_DURATION_S + 5, sr=8000), 8000, "WAV", "PCM_U8"), 413, "audio too long"),
], ids=["garbage", "empty", "silent", "too-short", "nan", "truncated", "no-speech",
        "video-without-audio", "too-long"])
def test_analyze_input_errors(http: httpx.Client, data: bytes, status: int,
                              error: str | None) -> None:
    assert_error(post_file(http, data), status, error=error)


def test_analyze_without_file_field_is_422(http: httpx.Client) -> None:
    body = assert_error(http.post("/analyze", data={"other": "x"}), 422)
    assert "file" in body["error"]
    assert_error(http.post("/analyze"), 422)
    assert_error(http.post("/analyze", files={"wrong": ("a.wav", wav_bytes(1.0))}), 422)


def _raw_http(port: int, head: bytes, chunks: Iterator[bytes] | None = None) -> tuple[int, bytes]:
    """Send a request by hand; stop sending as soon as the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(head)
        for chunk in chunks or ():
            if select.select([sock], [], [], 0)[0]:
                break  # the answer is there: the server stopped reading
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        data = b""
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while b"\r\n\r\n" not in data or len(data) < data.find(b"\r\n\r\n") + 4 + _length(data):
                part = sock.recv(65536)
                if not part:
                    break
                data += part
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def _length(data: bytes) -> int:
    match = re.search(rb"(?i)content-length: *(\d+)", data)
    return int(match.group(1)) if match else 0


def test_upload_over_the_cap_by_content_length(server: ServerProcess) -> None:
    # Only the headers are sent: the server must answer without waiting for the body.
    declared = (MAX_UPLOAD_MB + 1) * 1024 * 1024
    head = (f"POST /analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {declared}\r\n"
            "Content-Type: multipart/form-data; boundary=xyz\r\n\r\n").encode()
    status, body = _raw_http(server.port, head)
    assert status == 413
    assert json.loads(body)["error"] == "upload too large"


def test_upload_over_the_cap_chunked(server: ServerProcess) -> None:
    head = (b"POST /analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=xyz\r\n\r\n")
    part_head = (b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
                 b"Content-Type: audio/wav\r\n\r\n")
    block = b"\0" * 65536

    def chunks() -> Iterator[bytes]:
        yield b"%x\r\n%s\r\n" % (len(part_head), part_head)
        for _ in range(200):  # 12.5 MB, far over the 2 MB cap
            yield b"%x\r\n%s\r\n" % (len(block), block)

    status, body = _raw_http(server.port, head, chunks())
    assert status == 413
    assert json.loads(body)["error"] == "upload too large"
    # The server is still fine afterwards.
    assert httpx.get(server.url + "/health/live").status_code == 200


def test_upload_just_under_the_cap_is_analysed(http: httpx.Client) -> None:
    # 48 kHz stereo 16-bit: the file nearly fills the byte cap while staying under 30 s.
    seconds = (MAX_UPLOAD_MB * 1024 * 1024 - 1000) / (4 * 48_000)
    mono = speech(seconds, sr=48_000)
    data = encode(np.stack([mono, mono], axis=1), 48_000, "WAV", "PCM_16")
    assert MAX_UPLOAD_MB * 1024 * 1024 - 2000 < len(data) <= MAX_UPLOAD_MB * 1024 * 1024
    response = post_file(http, data)
    assert response.status_code == 200, response.text


# --------------------------------------------------------------------------- WS /ws

SPEC_PYTHON_EXAMPLE = '''
import asyncio
import websockets
import json
import base64

async def analyze_audio(audio_file_path):
    # Read and encode audio file
    with open(audio_file_path, 'rb') as f:
        audio_data = base64.b64encode(f.read()).decode('utf-8')
    
    # Connect to WebSocket
    async with websockets.connect('ws://your-server:8000/ws') as websocket:
        # Send audio data
        await websocket.send(json.dumps({
            'audio_data': audio_data,
            'file_type': '.wav' if audio_file_path.endswith('.wav') else '.mp3'
        }))
        
        # Receive and parse result
        result = json.loads(await websocket.recv())
        return result

# Example usage
if __name__ == "__main__":
    result = asyncio.run(analyze_audio('path/to/audio.wav'))
    print(f"Classification: {result['classification']}")
    print(f"Confidence: {result['confidence']}")
'''  # noqa: W293 - copied verbatim from the service spec, trailing spaces included


def test_spec_python_example_runs_unchanged(server: ServerProcess, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    audio = tmp_path / "audio.wav"
    audio.write_bytes(wav_bytes(3.0))
    code = (SPEC_PYTHON_EXAMPLE.replace("ws://your-server:8000", server.ws_url)
            .replace("path/to/audio.wav", str(audio)))
    exec(compile(code, "python_client_example.py", "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    assert re.search(r"^Classification: (real|deepfake)$", out, re.M), out
    assert re.search(r"^Confidence: 0\.\d+", out, re.M), out


def test_ws_result_matches_http(server: ServerProcess, http: httpx.Client) -> None:
    data = wav_bytes(4.0, seed=7)
    with connect(server.ws_url + "/ws") as ws:
        got = ws_ask(ws, {"audio_data": base64.b64encode(data).decode(), "file_type": ".wav"})
    expected = post_file(http, data).json()
    assert got["classification"] == expected["classification"]
    assert got["raw_score"] == pytest.approx(expected["raw_score"], abs=1e-9)
    assert got["timeline"] == expected["timeline"]


def test_replies_conform_to_the_documented_schema(server: ServerProcess,
                                                  http: httpx.Client) -> None:
    """HTTP and /ws replies validate against the OpenAPI models, verdict and segments too."""
    from deepfake_audio.server.schemas import AnalysisResponse

    for data in (wav_bytes(6.0, seed=11), clip(FAKE_CLIP).read_bytes(),
                 clip(REAL_CLIP).read_bytes()):
        reply = post_file(http, data).json()
        with connect(server.ws_url + "/ws") as ws:
            ws_reply = ws_ask(ws, {"audio_data": base64.b64encode(data).decode(),
                                   "file_type": None})
        assert ws_reply == reply
        model = AnalysisResponse.model_validate(reply)
        assert model.verdict in ("real", "deepfake", "inconclusive")
        # The binary field keeps the service contract's meaning whatever the verdict.
        assert model.classification == ("deepfake" if model.raw_score > model.threshold
                                        else "real")
        low, high = model.band
        assert low <= model.threshold <= high
        flagged = [w for w in model.timeline if w.classification == "deepfake"]
        for segment in model.segments:  # each one spans flagged windows only
            inside = [w for w in model.timeline
                      if segment.start_s <= w.start_s and w.end_s <= segment.end_s]
            assert inside and all(w in flagged for w in inside), (segment, model.timeline)


def test_ws_accepts_data_url_prefix(server: ServerProcess) -> None:
    data = base64.b64encode(wav_bytes(2.0)).decode()
    with connect(server.ws_url + "/ws") as ws:
        body = ws_ask(ws, {"audio_data": "data:audio/wav;base64," + data, "file_type": ".wav"})
        assert body["classification"] in ("real", "deepfake"), body
        # MIME types as file_type and line-wrapped base64 work too.
        wrapped = "\n".join(data[i:i + 76] for i in range(0, len(data), 76))
        body = ws_ask(ws, {"audio_data": wrapped, "file_type": "audio/wav"})
        assert body["classification"] in ("real", "deepfake"), body


def test_ws_bad_messages_keep_the_socket_open(server: ServerProcess) -> None:
    good = {"audio_data": base64.b64encode(wav_bytes(2.0)).decode(), "file_type": ".wav"}
    bad: list[dict | str] = [
        "this is not json",
        "[1, 2, 3]",
        {"file_type": ".wav"},
        {"audio_data": good["audio_data"]},
        {"audio_data": "!!!not base64!!!", "file_type": ".wav"},
        {"audio_data": "data:audio/wav,plain", "file_type": ".wav"},
        {"audio_data": base64.b64encode(b"garbage" * 50).decode(), "file_type": ".wav"},
        {"audio_data": good["audio_data"], "file_type": ".docx"},
        {"audio_data": 42, "file_type": ".wav"},
    ]
    with connect(server.ws_url + "/ws") as ws:
        for message in bad:
            body = ws_ask(ws, message)
            assert isinstance(body.get("error"), str) and body["error"], (message, body)
            assert "classification" not in body
        ws.send(b"\x00\x01binary")
        assert "error" in json.loads(ws.recv(timeout=10))
        # Still open, still working, many times over.
        for _ in range(3):
            assert ws_ask(ws, good)["classification"] in ("real", "deepfake")


def test_ws_input_errors_are_specific(server: ServerProcess) -> None:
    silent = encode(np.zeros(SR, dtype=np.float32), SR, "WAV", "PCM_16")
    with connect(server.ws_url + "/ws") as ws:
        body = ws_ask(ws, {"audio_data": base64.b64encode(silent).decode(), "file_type": ".wav"})
    assert body["error"] == "silent audio" and body["detail"]


def test_ws_refuses_audio_over_the_upload_cap(server: ServerProcess) -> None:
    big = base64.b64encode(b"\0" * (MAX_UPLOAD_MB * 1024 * 1024 + 10)).decode()
    with connect(server.ws_url + "/ws", max_size=None) as ws:
        body = ws_ask(ws, {"audio_data": big, "file_type": ".wav"})
        assert "larger than" in body["error"]
        good = base64.b64encode(wav_bytes(1.0)).decode()
        assert "classification" in ws_ask(ws, {"audio_data": good, "file_type": ".wav"})


def test_ws_message_size_limit_is_enforced_by_the_server(server: ServerProcess) -> None:
    # Far beyond the explicit ws_max_size: the server closes with 1009 (message too big).
    with connect(server.ws_url + "/ws", max_size=None) as ws:
        ws.send("x" * (8 * 1024 * 1024))
        with pytest.raises(Exception) as info:
            ws.recv(timeout=10)
    assert "1009" in str(info.value)


# --------------------------------------------------------------------------- WS /ws/stream


def _stream(ws: Any, samples: np.ndarray, *, frame_s: float = 0.25, sr: int = SR,
            start: dict | None = None, payload: Any = pcm16) -> tuple[list[dict], dict]:
    ws.send(json.dumps(start or {"type": "start", "sample_rate": sr, "encoding": "pcm_s16le",
                                 "channels": 1}))
    raw = payload(samples)
    step = int(frame_s * sr) * (len(raw) // len(samples))
    for i in range(0, len(raw), step):
        ws.send(raw[i:i + step])
    ws.send(json.dumps({"type": "end"}))
    windows: list[dict] = []
    while True:
        message = json.loads(ws.recv(timeout=30))
        if message["type"] == "summary":
            return windows, message
        assert message["type"] == "window", message
        windows.append(message)


def test_stream_windows_and_summary(server: ServerProcess, detector: Any) -> None:
    with connect(server.ws_url + "/ws/stream") as ws:
        windows, summary = _stream(ws, speech(5.0))
    assert [(w["start_s"], w["end_s"]) for w in windows] == [
        (0.0, 1.0), (0.0, 2.0), (0.0, 3.0), (1.0, 4.0), (2.0, 5.0)]
    for i, window in enumerate(windows, 1):
        assert window["classification"] in ("real", "deepfake")
        assert 0.5 <= window["confidence"] <= 1 and 0 <= window["probability_deepfake"] <= 1
        assert window["overall"]["windows"] == i
        assert set(window["overall"]) >= {"classification", "confidence", "raw_score", "windows"}
    mean = float(np.mean([w["raw_score"] for w in windows]))
    assert summary["raw_score"] == pytest.approx(mean)
    assert summary["windows"] == 5 and summary["duration_s"] == pytest.approx(5.0)
    assert summary["classification"] == windows[-1]["overall"]["classification"]
    # The running verdict is the library's rule applied to the mean window score.
    verdict = detector.verdict(summary["raw_score"]).to_dict()
    assert {k: summary[k] for k in verdict} == pytest.approx(verdict)


def test_stream_window_matches_library(server: ServerProcess) -> None:
    from deepfake_audio import Detector

    samples = speech(3.0, seed=5)
    with connect(server.ws_url + "/ws/stream") as ws:
        windows, _ = _stream(ws, samples, frame_s=0.1)
    pcm = np.frombuffer(pcm16(samples), dtype="<i2").astype(np.float32) / 32768.0
    expected = Detector().analyze((pcm, SR))
    assert windows[2]["raw_score"] == pytest.approx(expected.raw_score, abs=1e-6)


def test_stream_float32_stereo_48k(server: ServerProcess) -> None:
    sr = 48_000
    mono = speech(2.0, sr=sr)
    stereo = np.stack([mono, mono], axis=1)
    with connect(server.ws_url + "/ws/stream") as ws:
        windows, summary = _stream(
            ws, stereo, sr=sr, payload=lambda s: s.astype("<f4").tobytes(),
            start={"type": "start", "sample_rate": sr, "encoding": "float32_le", "channels": 2})
    assert [(w["start_s"], w["end_s"]) for w in windows] == [(0.0, 1.0), (0.0, 2.0)]
    assert summary["duration_s"] == pytest.approx(2.0)


def test_stream_short_and_protocol_errors(server: ServerProcess) -> None:
    with connect(server.ws_url + "/ws/stream") as ws:
        ws.send(b"\0\0" * 100)
        assert json.loads(ws.recv(timeout=10))["type"] == "error"
        for bad in ({"type": "start", "sample_rate": "fast"},
                    {"type": "start", "sample_rate": 16000, "encoding": "mulaw"},
                    {"type": "start", "sample_rate": 16000, "channels": 0},
                    {"type": "dance"}, {"type": "end"}):
            message = json.loads(ws_ask_raw(ws, bad))
            assert message["type"] == "error" and message["error"], (bad, message)
        ws.send("not json")
        assert json.loads(ws.recv(timeout=10))["type"] == "error"
        ws.send(json.dumps({"type": "start", "sample_rate": SR}))
        ws.send(b"\0" * (1024 * 1024 + 2))  # over the 1 MiB frame cap
        assert "at most" in json.loads(ws.recv(timeout=10))["error"]
        # A stream shorter than the first hop is scored whole at "end".
        windows, summary = _stream(ws, speech(0.6))
        assert len(windows) == 1 and summary["windows"] == 1
        # Silence: the window is reported as an error, the stream goes on.
        ws.send(json.dumps({"type": "start", "sample_rate": SR}))
        ws.send(pcm16(np.zeros(SR, dtype=np.float32)))
        message = json.loads(ws.recv(timeout=10))
        assert message["type"] == "error" and "silent" in message["error"]
        ws.send(json.dumps({"type": "end"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "error"  # nothing scored


def test_stream_windows_without_speech_are_shown_unscored(server: ServerProcess) -> None:
    """A tone between two stretches of speech: its windows say "no-speech", carry no score
    and stay out of the running verdict; a stream of tone alone gets no verdict."""
    audio = np.concatenate([speech(3.0, seed=2), tone(4.0), speech(3.0, seed=3)])
    with connect(server.ws_url + "/ws/stream") as ws:
        windows, summary = _stream(ws, audio)
        quiet = [w for w in windows if w["classification"] == "no-speech"]
        scored = [w for w in windows if w["classification"] != "no-speech"]
        assert quiet and scored
        assert all(w["raw_score"] is None and w["probability_deepfake"] is None for w in quiet)
        assert all(w["start_s"] > 2.0 and w["end_s"] <= 8.0 for w in quiet)
        assert summary["windows"] == len(scored)
        assert summary["raw_score"] == pytest.approx(
            float(np.mean([w["raw_score"] for w in scored])), abs=1e-9)
        ws.send(json.dumps({"type": "start", "sample_rate": SR}))
        ws.send(pcm16(tone(2.5)))
        ws.send(json.dumps({"type": "end"}))
        messages = [json.loads(ws.recv(timeout=30)) for _ in range(3)]
        assert [m["type"] for m in messages] == ["window", "window", "error"], messages
        assert "no speech" in messages[-1]["error"]


def ws_ask_raw(ws: Any, payload: dict) -> str:
    ws.send(json.dumps(payload))
    return str(ws.recv(timeout=10))


# --------------------------------------------------------------------------- verdicts on real clips


@pytest.mark.parametrize(("path", "expected"), [(REAL_CLIP, "real"), (FAKE_CLIP, "deepfake")],
                         ids=["real", "fake"])
def test_verdicts_on_real_clips(server: ServerProcess, http: httpx.Client, path: Path,
                                expected: str) -> None:
    data = clip(path).read_bytes()
    assert post_file(http, data, path.name).json()["classification"] == expected
    with connect(server.ws_url + "/ws") as ws:
        body = ws_ask(ws, {"audio_data": base64.b64encode(data).decode(),
                           "file_type": path.suffix})
    assert body["classification"] == expected


def test_stream_verdict_on_real_clip(server: ServerProcess) -> None:
    import soundfile as sf

    samples, sr = sf.read(clip(FAKE_CLIP), dtype="float32")
    with connect(server.ws_url + "/ws/stream") as ws:
        _, summary = _stream(ws, samples, sr=sr)
    assert summary["classification"] == "deepfake"


# --------------------------------------------------------------------------- CORS and Origin


def test_cors_headers(http: httpx.Client) -> None:
    allowed = http.get("/", headers={"Origin": ALLOWED_ORIGIN})
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "x-request-id" in allowed.headers["access-control-expose-headers"].lower()
    other = http.get("/", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    preflight = http.options("/analyze", headers={
        "Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key"})
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "x-api-key" in preflight.headers["access-control-allow-headers"].lower()
    refused = http.options("/analyze", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert refused.status_code == 400


@pytest.mark.parametrize("path", ["/ws", "/ws/stream"])
def test_ws_origin_check(server: ServerProcess, path: str) -> None:
    with pytest.raises(InvalidStatus) as info:
        connect(server.ws_url + path, origin="http://evil.example")  # type: ignore[arg-type]
    assert info.value.response.status_code == 403
    assert json.loads(info.value.response.body or b"{}")["error"] == "origin not allowed"
    for origin in (ALLOWED_ORIGIN, server.url, None):  # allow-listed, same origin, no browser
        with connect(server.ws_url + path, origin=origin) as ws:  # type: ignore[arg-type]
            ws.ping().wait(5)


def test_cors_wildcard_only_when_configured(server: ServerProcess) -> None:
    # The module's server lists one origin: "*" must not appear anywhere.
    response = httpx.get(server.url + "/", headers={"Origin": "http://evil.example"})
    assert response.headers.get("access-control-allow-origin") != "*"


# --------------------------------------------------------------------------- API key


def test_api_key_http(secured: ServerProcess) -> None:
    data = wav_bytes(1.5)
    with httpx.Client(base_url=secured.url, timeout=30) as client:
        assert_error(post_file(client, data), 401, error="invalid or missing API key")
        assert_error(post_file(client, data, headers={"X-API-Key": "wrong"}), 401)
        assert_error(post_file(client, data, params={"api_key": API_KEY[:-1]}), 401)
        assert post_file(client, data, headers={"X-API-Key": API_KEY}).status_code == 200
        assert post_file(client, data, params={"api_key": API_KEY}).status_code == 200
        # Probes, metrics, the info page and demo pages need no key.
        for path in ("/health/live", "/health/ready", "/health", "/metrics", "/",
                     "/demo/client_example.html"):
            assert client.get(path).status_code == 200, path


def test_api_key_websocket(secured: ServerProcess) -> None:
    for path in ("/ws", "/ws/stream"):
        for url in (secured.ws_url + path, secured.ws_url + path + "?api_key=nope"):
            with pytest.raises(InvalidStatus) as info:
                connect(url)
            assert info.value.response.status_code == 401
    message = {"audio_data": base64.b64encode(wav_bytes(1.5)).decode(), "file_type": ".wav"}
    with connect(f"{secured.ws_url}/ws?api_key={API_KEY}") as ws:
        assert "classification" in ws_ask(ws, message)
    with connect(secured.ws_url + "/ws", additional_headers={"X-API-Key": API_KEY}) as ws:
        assert "classification" in ws_ask(ws, message)


def test_logs_have_request_lines_without_secrets(secured: ServerProcess) -> None:
    with httpx.Client(base_url=secured.url) as client:
        client.get("/", params={"api_key": API_KEY}, headers={"X-Request-ID": "log-probe-1"})
        post_file(client, wav_bytes(1.0), headers={"X-API-Key": API_KEY,
                                                   "X-Request-ID": "log-probe-2"})
    with connect(f"{secured.ws_url}/ws?api_key={API_KEY}") as ws:
        ws.ping().wait(5)
    log = _wait_for(secured, "log-probe-2")
    line = next(x for x in log.splitlines() if "request_id=log-probe-2" in x)
    for field in ("method=POST", "path=/analyze", "status=200", "duration_ms="):
        assert field in line, line
    assert API_KEY not in log
    assert "api_key=***" in log or "api_key=" not in log


def _wait_for(server: ServerProcess, needle: str, timeout: float = 5.0) -> str:
    import time

    deadline = time.monotonic() + timeout
    while needle not in (log := server.log()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return log


# --------------------------------------------------------------------------- metrics, demo, misc


def test_metrics(http: httpx.Client) -> None:
    post_file(http, wav_bytes(1.0))
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    for family, kind in (("deepfake_audio_http_requests_total", "counter"),
                         ("deepfake_audio_http_request_duration_seconds", "histogram"),
                         ("deepfake_audio_http_requests_in_flight", "gauge"),
                         ("deepfake_audio_analyses_total", "counter")):
        assert f"# TYPE {family} {kind}" in text
    assert re.search(r'deepfake_audio_http_requests_total\{route="/analyze",method="POST",'
                     r'status="200"\} [1-9]', text)
    assert re.search(r'deepfake_audio_http_request_duration_seconds_bucket\{route="/analyze",'
                     r'method="POST",le="\+Inf"\} [1-9]', text)
    assert re.search(r'deepfake_audio_analyses_total\{source="http",outcome="(real|deepfake)"\}',
                     text)
    assert "deepfake_audio_ready 1" in text
    # Every sample line parses as `name{labels} number`.
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r'[a-z_]+(\{[^}]*\})? [-+0-9.eInf]+', line), line


def test_demo_pages_are_served(http: httpx.Client) -> None:
    for page in ("client_example.html", "realtime_client.html"):
        response = http.get("/demo/" + page)
        assert response.status_code == 200
        assert "text/html" in response.headers["content-type"]
    assert http.get("/demo/../app.py").status_code == 404


def test_openapi_documents_analyze(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    body = spec["paths"]["/analyze"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert body["schema"]["required"] == ["file"]


def test_missing_server_extra_gives_install_hint() -> None:
    code = ("import sys; sys.modules['fastapi'] = None\n"
            "try:\n    import deepfake_audio.server\n"
            "except ImportError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=ROOT).stdout
    assert 'pip install "deepfake-audio[server]"' in out


def test_app_module_is_lazy_and_factory_works() -> None:
    code = ("import sys, deepfake_audio.server.app as m\n"
            "assert m._lazy_app is None\n"
            "from fastapi import FastAPI\n"
            "assert isinstance(m.app, FastAPI) and m.app is m.app\n"
            "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.stdout.strip() == "ok", result.stderr


def test_uvicorn_factory_form(tmp_path: Path) -> None:
    """``uvicorn --factory deepfake_audio.server.app:create_app`` serves with env settings."""
    import os

    from tests.helpers.server import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPFAKE_AUDIO_")}
    env["DEEPFAKE_AUDIO_API_KEY"] = "factory-key"
    log = (tmp_path / "log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory",
                             "deepfake_audio.server.app:create_app", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        import time

        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health/ready").status_code == 200:
                    break
            time.sleep(0.05)
        assert httpx.get(url + "/health/ready").status_code == 200
        assert httpx.post(url + "/analyze").status_code == 401  # the env key applies
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def test_settings_precedence() -> None:
    from deepfake_audio.server.settings import Settings

    env = {"DEEPFAKE_AUDIO_PORT": "9001", "DEEPFAKE_AUDIO_MAX_QUEUE": "3",
           "DEEPFAKE_AUDIO_CORS_ORIGINS": "http://a.example/, http://b.example",
           "DEEPFAKE_AUDIO_WS_MAX_MESSAGE_MB": "4", "DEEPFAKE_AUDIO_ANALYSIS_TIMEOUT": "7.5",
           "DEEPFAKE_AUDIO_API_KEY": "topsecret-value"}
    settings = Settings.from_env(env)
    assert settings.port == 9001 and settings.max_queue == 3
    assert settings.cors_origins == ("http://a.example", "http://b.example")
    assert settings.ws_max_message_bytes == 4 * 1024 * 1024
    assert settings.analysis_timeout_s == 7.5
    assert settings.api_key == "topsecret-value"
    assert "topsecret" not in repr(settings)  # the key is never printed
    flags = {"port": "9002", "max_queue": "5", "cors_origins": "*", "api_key": None}
    merged = Settings.resolve(flags, env)
    assert (merged.port, merged.max_queue, merged.cors_origins) == (9002, 5, ("*",))
    assert merged.api_key == "topsecret-value"  # a flag not given leaves the variable
    assert merged.analysis_timeout_s == 7.5
    assert Settings.from_env(merged.to_env()) == merged
    with pytest.raises(ValueError, match="'eighty' for DEEPFAKE_AUDIO_PORT / --port"):
        Settings.from_env({"DEEPFAKE_AUDIO_PORT": "eighty"})
    with pytest.raises(ValueError, match="--allow-unverified-model: not a yes/no value"):
        Settings.resolve({"allow_unverified_model": "maybe"}, {})
    with pytest.raises(ValueError):
        Settings(max_upload_mb=0)
    with pytest.raises(ValueError, match="max_ws_connections must be >= 1"):
        Settings.from_env({"DEEPFAKE_AUDIO_MAX_WS_CONNECTIONS": "0"})
    assert Settings().concurrency >= 1
    assert Settings(max_upload_mb=3).ws_max_message_bytes > 4 * 1024 * 1024


def test_every_setting_has_help_and_one_converter_per_type() -> None:
    import dataclasses

    from deepfake_audio.server.settings import Settings

    fields = dataclasses.fields(Settings)
    assert all(f.metadata["help"] and f.metadata["env"].isupper() for f in fields)
    assert len({f.metadata["env"] for f in fields}) == len(fields)
    # Every field round-trips through its string form (what flags and variables carry).
    custom = Settings(model="m", allow_unverified_model=True, api_key="k",
                      cors_origins=("http://a",), ws_max_message_mb=2.5, log_format="json")
    env = custom.to_env()
    strings = {f.name: env["DEEPFAKE_AUDIO_" + f.metadata["env"]] for f in fields}
    assert Settings.from_strings(strings) == custom
    assert Settings.from_strings({"ws_max_message_mb": "auto", "port": " "}) == Settings()
    with pytest.raises(ValueError, match="DEEPFAKE_AUDIO_MAX_DURATION / --max-duration"):
        Settings.from_strings({"max_duration_s": "inf"})
    with pytest.raises(ValueError, match="max_duration must be > 0"):  # range: __post_init__
        Settings.from_strings({"max_duration_s": "0"})
    with pytest.raises(ValueError, match="unknown server setting"):
        Settings.from_strings({"colour": "blue"})


def test_fault_switch_reads_yes_no_values() -> None:
    from deepfake_audio.server import faults

    assert faults.hook_from_env({faults.ENV_VAR: ""}) is None
    assert faults.hook_from_env({faults.ENV_VAR: "off"}) is None
    assert faults.hook_from_env({faults.ENV_VAR: " Yes "}) is faults.inject
    with pytest.raises(ValueError, match=faults.ENV_VAR):
        faults.enabled({faults.ENV_VAR: "maybe"})
