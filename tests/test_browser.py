"""End-to-end tests of the demo pages in ``deepfake_audio/server/static/`` in headless Chromium.

Real ``deepfake-audio serve`` processes are started on free ports (one plain, one with
``--api-key`` and ``--cors-origins '*'``) and the pages are loaded from their ``/demo/`` mount
or from disk (``file://``). Chromium's fake capture device plays a looped copy of
``tests/data/fake_espeak.wav`` as the microphone. Needs the Playwright Python package and
Debian's ``/usr/bin/chromium`` (``playwright install`` is never used); the module is skipped
without them.

Environment (all optional): ``DEEPFAKE_AUDIO_CHROMIUM`` another Chromium binary;
``DEEPFAKE_AUDIO_TEST_SERVER_URL`` / ``DEEPFAKE_AUDIO_TEST_KEYED_SERVER_URL`` test already
running servers (the keyed one must use ``API_KEY`` below and allow any origin);
``DEEPFAKE_AUDIO_BROWSER_DATA`` another folder holding the two clips.

Screenshots go to ``build/screenshots/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("DEEPFAKE_AUDIO_CHROMIUM", "/usr/bin/chromium")
if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
    pytest.skip(
        f"no Chromium binary at {CHROMIUM} (apt-get install chromium)", allow_module_level=True
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright Python package is not installed"
)

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DEEPFAKE_AUDIO_BROWSER_DATA", ROOT / "tests" / "data"))
REAL_CLIP = DATA / "real_librispeech.flac"
FAKE_CLIP = DATA / "fake_espeak.wav"
SCREENSHOTS = ROOT / "build" / "screenshots"
READY_TIMEOUT_S = 60.0
API_KEY = "browser-test-key-123"
BASE_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
]
MEDIA_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


def _require(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"test clip {path} is missing")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 2.0) -> int:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return int(resp.status)


# --------------------------------------------------------------------------- fixtures


@contextlib.contextmanager
def _run_server(*extra_args: str) -> Iterator[str]:
    """Run ``python -m deepfake_audio serve`` on a free port until the block ends."""
    port = _free_port()
    # nothing from the caller's DEEPFAKE_AUDIO_* settings leaks in; no readiness drain on
    # SIGTERM (nothing balances load in front of a test server)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPFAKE_AUDIO_")}
    env.update(PYTHONUNBUFFERED="1", DEEPFAKE_AUDIO_SHUTDOWN_DRAIN="0")
    cmd = [sys.executable, "-m", "deepfake_audio", "serve", "--host", "127.0.0.1",
           "--port", str(port), *extra_args]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)

        def server_log() -> str:
            log.seek(0)
            return log.read().decode("utf-8", "replace")[-4000:]

        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"server exited with code {proc.returncode}:\n{server_log()}")
                try:
                    if _get(url + "/health/ready") == 200:
                        break
                except (OSError, urllib.error.URLError):
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"server not ready after {READY_TIMEOUT_S:.0f} s:\n{server_log()}")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """Base URL of a real server: started here, or taken from the environment."""
    external = os.environ.get("DEEPFAKE_AUDIO_TEST_SERVER_URL")
    if external:
        yield external.rstrip("/")
        return
    with _run_server() as url:
        yield url


@pytest.fixture(scope="module")
def keyed_server_url() -> Iterator[str]:
    """A second server that requires ``API_KEY`` and allows any origin (pages opened from disk)."""
    external = os.environ.get("DEEPFAKE_AUDIO_TEST_KEYED_SERVER_URL")
    if external:
        yield external.rstrip("/")
        return
    if os.environ.get("DEEPFAKE_AUDIO_TEST_SERVER_URL"):
        pytest.skip("testing an external server; set DEEPFAKE_AUDIO_TEST_KEYED_SERVER_URL too")
    with _run_server("--api-key", API_KEY, "--cors-origins", "*") as url:
        yield url


@pytest.fixture(scope="module")
def pw() -> Iterator[Any]:
    manager = sync_api.sync_playwright().start()
    try:
        yield manager
    finally:
        manager.stop()


def _launch(pw: Any, extra_args: list[str] | None = None) -> Any:
    try:
        return pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=BASE_ARGS + (extra_args or [])
        )
    except sync_api.Error as exc:  # pragma: no cover - environment problem
        pytest.skip(f"cannot launch {CHROMIUM}: {exc}")


@pytest.fixture(scope="module")
def browser(pw: Any) -> Iterator[Any]:
    b = _launch(pw)
    try:
        yield b
    finally:
        b.close()


class PageErrors:
    """Collect uncaught page exceptions and console errors of one page."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on(
            "console",
            lambda msg: self.errors.append(f"console.{msg.type}: {msg.text}")
            if msg.type == "error" else None,
        )

    def unexpected(self, *allowed: str) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in allowed)]


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    try:
        yield pg
    finally:
        context.close()


def _screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _post_analyze(server_url: str, path: Path, filename: str | None = None) -> tuple[int, dict]:
    """What ``POST /analyze`` answers for ``path`` (the oracle for the page)."""
    boundary = uuid.uuid4().hex
    name = filename or path.name
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(
        server_url + "/analyze", data=body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read() or b"{}")


# --------------------------------------------------------------------------- upload page


@pytest.mark.parametrize(
    ("clip", "expected"), [(REAL_CLIP, "real"), (FAKE_CLIP, "deepfake")], ids=["real", "fake"]
)
def test_upload_page_http_and_ws(page: Any, server_url: str, clip: Path, expected: str) -> None:
    _require(clip)
    status, oracle = _post_analyze(server_url, clip)
    assert status == 200, oracle
    assert oracle["classification"] == expected, f"server calls {clip.name} {oracle}"

    errors = PageErrors(page)
    page.goto(server_url + "/demo/client_example.html")
    assert page.input_value("#server-url") == server_url
    assert page.is_disabled("#analyze-http")
    page.set_input_files("#file", str(clip))

    result = page.locator("#result")
    page.click("#analyze-http")
    page.wait_for_selector("#result[data-source=http]", state="visible")
    assert result.get_attribute("data-classification") == oracle["classification"]
    assert float(result.get_attribute("data-confidence")) == pytest.approx(oracle["confidence"])
    assert float(result.get_attribute("data-raw-score")) == pytest.approx(oracle["raw_score"])
    # The three-way verdict when the server sends one (the binary class from older servers).
    verdict = oracle.get("verdict", oracle["classification"])
    assert result.get_attribute("data-verdict") == verdict
    assert page.text_content("#verdict") == verdict
    assert page.text_content("#classification") == expected
    shown = page.locator("#segments > li").all_text_contents()
    assert shown == [f"flagged {s['start_s']:.1f}–{s['end_s']:.1f} s, P(deepfake) "
                     f"{100 * s['probability_deepfake']:.1f} %" for s in oracle.get("segments", [])]
    assert page.locator(".segment-shade").count() == len(shown)
    assert page.text_content("#confidence") == f"{100 * oracle['confidence']:.1f} %"
    assert page.locator("#timeline > li").count() == len(oracle.get("timeline", []))
    assert page.text_content("#error") == ""
    assert "HTTP" in page.text_content("#status")

    page.click("#analyze-ws")
    page.wait_for_selector("#result[data-source=ws]", state="visible")
    assert result.get_attribute("data-classification") == oracle["classification"]
    assert float(result.get_attribute("data-confidence")) == pytest.approx(oracle["confidence"])
    assert page.text_content("#error") == ""
    assert "WebSocket" in page.text_content("#status")

    _screenshot(page, f"client_example_{expected}")
    assert errors.unexpected() == []


#: A reply as a server with the three-way verdict sends it: a real-leaning mean, 6 s flagged.
STUB_REPLY: dict[str, Any] = {
    "classification": "real", "confidence": 0.58, "raw_score": 0.1, "probability_deepfake": 0.42,
    "verdict": "inconclusive", "threshold": 0.334, "band": [-0.2, 0.8], "duration_s": 10.0,
    "sample_rate": 16000, "model": "stub", "calibrated": True,
    "segments": [{"start_s": 3.0, "end_s": 9.0, "raw_score": 1.9, "probability_deepfake": 0.97}],
    "timeline": [{"start_s": float(i), "end_s": float(i + 1),
                  "raw_score": 1.9 if 3 <= i < 9 else -2.0,
                  "probability_deepfake": 0.97 if 3 <= i < 9 else 0.05,
                  "classification": "deepfake" if 3 <= i < 9 else "real"} for i in range(10)],
}
AMBER, GREEN, RED = "rgb(138, 90, 0)", "rgb(27, 127, 59)", "rgb(179, 38, 30)"


def _stub_analyze(page: Any, reply: dict[str, Any]) -> None:
    page.route("**/analyze", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(reply)))


def _badge_colour(page: Any) -> str:
    return str(page.eval_on_selector("#verdict", "e => getComputedStyle(e).color"))


def test_upload_page_shows_inconclusive_in_amber_with_segments(page: Any, server_url: str) -> None:
    errors = PageErrors(page)
    _stub_analyze(page, STUB_REPLY)
    page.goto(server_url + "/demo/client_example.html")
    page.set_input_files("#file", files=[{"name": "x.wav", "mimeType": "audio/wav",
                                          "buffer": b"RIFF"}])
    page.click("#analyze-http")
    page.wait_for_selector("#result[data-source=http]", state="visible")
    assert page.get_attribute("#result", "data-verdict") == "inconclusive"
    assert page.get_attribute("#result", "data-classification") == "real"
    assert page.text_content("#verdict") == "inconclusive"
    assert _badge_colour(page) == AMBER
    assert "Inconclusive" in page.text_content("#verdict-text")
    assert page.text_content("#classification") == "real"
    assert page.text_content("#band") == "(-0.200, 0.800]"
    assert page.locator("#segments > li").all_text_contents() == [
        "flagged 3.0–9.0 s, P(deepfake) 97.0 %"]
    # The shade covers exactly the flagged bars (windows 3-8 of 10).
    shade = page.locator(".segment-shade").bounding_box()
    bars = [page.locator(f"#timeline > li:nth-child({i + 1})").bounding_box() for i in range(10)]
    centres = [b["x"] + b["width"] / 2 for b in bars]
    covered = [i for i, x in enumerate(centres) if shade["x"] <= x <= shade["x"] + shade["width"]]
    assert covered == list(range(3, 9)), (shade, bars)
    _screenshot(page, "client_example_inconclusive")

    # An older server's reply (no verdict, no segments): the binary class is the verdict.
    older = {k: v for k, v in STUB_REPLY.items() if k not in ("verdict", "band", "segments")}
    page.unroute("**/analyze")
    _stub_analyze(page, {**older, "classification": "deepfake"})
    page.click("#analyze-http")
    page.wait_for_selector("#result[data-verdict=deepfake]", state="visible")
    assert page.text_content("#verdict") == "deepfake" and _badge_colour(page) == RED
    assert page.locator("#segments > li").count() == 0
    assert page.locator(".segment-shade").count() == 0
    assert page.text_content("#band") == "–"
    _stub_analyze(page, {**older, "classification": "real"})
    page.click("#analyze-http")
    page.wait_for_selector("#result[data-verdict=real]", state="visible")
    assert _badge_colour(page) == GREEN
    assert errors.unexpected() == []


def test_upload_page_shows_server_errors(page: Any, server_url: str, tmp_path: Path) -> None:
    bogus = tmp_path / "not_audio.wav"
    bogus.write_text("this is plain text, not a RIFF/WAVE file\n" * 20)
    status, oracle = _post_analyze(server_url, bogus)
    assert 400 <= status < 500 and oracle.get("error"), (status, oracle)

    # the browser logs the failed fetch (4xx) as a console error: that one is expected
    errors = PageErrors(page)
    page.goto(server_url + "/demo/client_example.html")
    page.set_input_files("#file", str(bogus))

    page.click("#analyze-http")
    page.wait_for_function("document.getElementById('error').textContent.length > 0")
    shown = page.text_content("#error")
    assert oracle["error"] in shown
    if isinstance(oracle.get("detail"), str):
        assert oracle["detail"] in shown
    assert f"HTTP {status}" in shown
    assert page.is_hidden("#result")
    assert page.is_enabled("#analyze-http")
    assert "failed" in page.text_content("#status").lower()

    page.click("#analyze-ws")
    page.wait_for_function(
        "document.getElementById('error').textContent.startsWith('Server error:')"
    )
    assert page.is_hidden("#result")
    assert page.text_content("#error").strip() != "Server error:"
    _screenshot(page, "client_example_error")

    # the page (and the server's socket) survive: a good file still works over the same socket
    if FAKE_CLIP.is_file():
        page.set_input_files("#file", str(FAKE_CLIP))
        page.click("#analyze-ws")
        page.wait_for_selector("#result[data-source=ws]", state="visible")
        assert page.get_attribute("#result", "data-classification") == "deepfake"
        assert page.text_content("#error") == ""
    assert errors.unexpected("Failed to load resource") == []


def test_upload_page_reports_unreachable_server(page: Any, server_url: str) -> None:
    errors = PageErrors(page)
    page.goto(server_url + "/demo/client_example.html")
    page.fill("#server-url", f"http://127.0.0.1:{_free_port()}")
    page.set_input_files(
        "#file", files=[{"name": "x.wav", "mimeType": "audio/wav", "buffer": b"RIFF"}]
    )
    page.click("#analyze-http")
    page.wait_for_function("document.getElementById('error').textContent.length > 0")
    assert "Could not reach the server" in page.text_content("#error")
    page.click("#analyze-ws")
    page.wait_for_function(
        "document.getElementById('error').textContent.includes('Could not connect')"
    )
    assert page.is_enabled("#analyze-ws")
    assert errors.unexpected("ERR_CONNECTION_REFUSED", "WebSocket connection") == []


# --------------------------------------------------------------------------- realtime page


def _looped_pcm16(src: Path, dst: Path, min_seconds: float = 8.0) -> Path:
    """Chromium's fake capture device needs 16-bit PCM WAV; loop the clip to ``min_seconds``."""
    import numpy as np
    import soundfile as sf

    samples, rate = sf.read(str(src), dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    reps = max(1, int(np.ceil(min_seconds * rate / max(1, len(mono)))))
    sf.write(str(dst), np.tile(mono, reps), rate, subtype="PCM_16", format="WAV")
    return dst


@pytest.fixture(scope="module")
def fake_mic_browser(pw: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A browser whose (fake) microphone plays the synthetic clip in a loop."""
    wav = _looped_pcm16(_require(FAKE_CLIP), tmp_path_factory.mktemp("mic") / "fake_mic.wav")
    b = _launch(pw, [*MEDIA_ARGS, f"--use-file-for-fake-audio-capture={wav}"])
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def mic_page(fake_mic_browser: Any, server_url: str) -> Iterator[Any]:
    context = fake_mic_browser.new_context(viewport={"width": 1000, "height": 1100})
    context.grant_permissions(["microphone"], origin=server_url)
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    try:
        yield pg
    finally:
        context.close()


def test_realtime_page_streams_microphone(mic_page: Any, server_url: str) -> None:
    page = mic_page
    errors = PageErrors(page)
    page.goto(server_url + "/demo/realtime_client.html")
    assert page.is_disabled("#stop")
    page.click("#start")
    page.wait_for_selector("#windows > li:nth-child(3)", timeout=30_000)
    assert page.text_content("#error") == ""
    assert "Recording" in page.text_content("#status")
    classes = page.eval_on_selector_all(
        "#windows > li", "els => els.map(e => e.dataset.classification)"
    )
    assert len(classes) >= 3
    assert set(classes) <= {"real", "deepfake"}, classes
    assert page.get_attribute("#overall", "data-classification") in {"real", "deepfake"}
    level = float(page.eval_on_selector("#level", "e => e.value"))
    assert level > -60, "the level meter never moved: no audio reached the page"
    _screenshot(page, "realtime_client_recording")

    page.click("#stop")
    page.wait_for_selector("#summary", state="visible", timeout=20_000)
    assert page.get_attribute("#summary", "data-classification") == "deepfake"
    assert page.get_attribute("#overall", "data-classification") == "deepfake"
    # Above the threshold the three-way verdict is deepfake, or inconclusive inside the band.
    verdict = page.get_attribute("#summary", "data-verdict")
    assert verdict in {"deepfake", "inconclusive"}
    assert page.text_content("#summary-value") == verdict
    assert int(page.text_content("#summary-windows")) >= 3
    assert page.text_content("#error") == ""
    assert page.is_enabled("#start") and page.is_disabled("#stop")
    _screenshot(page, "realtime_client_summary")
    assert errors.unexpected() == []


def _stub_stream(page: Any, overall_verdict: str | None, summary_segments: bool) -> None:
    """Answer /ws/stream from the page itself: windows 1-5, windows 2-4 flagged."""
    flagged = {2, 3, 4}

    def window(i: int) -> dict[str, Any]:
        fake = i in flagged
        msg: dict[str, Any] = {
            "type": "window", "start_s": float(max(0, i - 2)), "end_s": float(i + 1),
            "classification": "deepfake" if fake else "real", "confidence": 0.9,
            "raw_score": 1.5 if fake else -1.5, "probability_deepfake": 0.9 if fake else 0.1,
            "overall": {"classification": "real", "confidence": 0.6, "raw_score": 0.0,
                        "probability_deepfake": 0.4, "windows": i}}
        if overall_verdict is not None:
            msg["overall"]["verdict"] = overall_verdict
        return msg

    def handler(ws: Any) -> None:
        sent = {"windows": False}

        def on_message(message: Any) -> None:
            if isinstance(message, bytes):
                if not sent["windows"]:
                    sent["windows"] = True
                    for i in range(1, 6):
                        ws.send(json.dumps(window(i)))
                return
            if json.loads(message).get("type") == "end":
                summary = {**window(5)["overall"], "type": "summary", "duration_s": 6.0}
                if summary_segments:
                    summary["segments"] = [{"start_s": 0.0, "end_s": 5.0, "raw_score": 1.5,
                                            "probability_deepfake": 0.95}]
                ws.send(json.dumps(summary))

        ws.on_message(on_message)

    page.route_web_socket("**/ws/stream", handler)


@pytest.mark.parametrize("summary_segments", [False, True], ids=["page-merges", "server-sends"])
def test_realtime_page_shows_inconclusive_and_segments(mic_page: Any, server_url: str,
                                                       summary_segments: bool) -> None:
    page = mic_page
    errors = PageErrors(page)
    _stub_stream(page, "inconclusive", summary_segments)
    page.goto(server_url + "/demo/realtime_client.html")
    page.click("#start")
    page.wait_for_selector("#windows > li:nth-child(5)", timeout=30_000)
    assert page.get_attribute("#overall", "data-verdict") == "inconclusive"
    assert page.get_attribute("#overall", "data-classification") == "real"
    assert page.text_content("#overall-value") == "inconclusive"
    assert page.eval_on_selector("#overall-value", "e => getComputedStyle(e).color") == AMBER
    # Windows 2-4 (0.0-3.0, 1.0-4.0, 2.0-5.0 s) merge into one segment.
    assert page.locator("#segments > li").all_text_contents() == [
        "flagged 0.0–5.0 s, P(deepfake) 90.0 %"]
    page.click("#stop")
    page.wait_for_selector("#summary", state="visible", timeout=20_000)
    assert page.get_attribute("#summary", "data-verdict") == "inconclusive"
    assert page.text_content("#summary-value") == "inconclusive"
    expected = "95.0 %" if summary_segments else "90.0 %"
    assert page.locator("#segments > li").all_text_contents() == [
        f"flagged 0.0–5.0 s, P(deepfake) {expected}"]
    _screenshot(page, f"realtime_client_inconclusive_{summary_segments}")
    assert errors.unexpected() == []


def test_realtime_page_falls_back_to_classification(mic_page: Any, server_url: str) -> None:
    page = mic_page
    _stub_stream(page, None, False)  # an older server: no verdict anywhere
    page.goto(server_url + "/demo/realtime_client.html")
    page.click("#start")
    page.wait_for_selector("#windows > li:nth-child(5)", timeout=30_000)
    assert page.get_attribute("#overall", "data-verdict") == "real"
    assert page.text_content("#overall-value") == "real"
    assert page.eval_on_selector("#overall-value", "e => getComputedStyle(e).color") == GREEN
    verdicts = page.eval_on_selector_all("#windows > li", "els => els.map(e => e.dataset.verdict)")
    assert verdicts == ["real", "deepfake", "deepfake", "deepfake", "real"]
    page.click("#stop")


def test_realtime_page_reports_unreachable_server(mic_page: Any, server_url: str) -> None:
    page = mic_page
    errors = PageErrors(page)
    page.goto(server_url + "/demo/realtime_client.html")
    page.fill("#server-url", f"http://127.0.0.1:{_free_port()}")
    page.click("#start")
    page.wait_for_function("document.getElementById('error').textContent.length > 0")
    assert "Could not connect" in page.text_content("#error")
    assert page.is_enabled("#start") and page.is_disabled("#stop")
    assert errors.unexpected("WebSocket connection") == []


def test_realtime_downsampler(page: Any, server_url: str) -> None:
    """The in-page 48 kHz → 16 kHz resampler keeps speech-band tones and removes aliases."""
    page.goto(server_url + "/demo/realtime_client.html")
    result = page.evaluate(
        """() => {
        const { Downsampler, toInt16 } = window.DeepfakeRealtime;
        const rms = (a) => Math.sqrt(a.reduce((s, x) => s + x * x, 0) / a.length);
        function run(freq, inRate) {
          const d = new Downsampler(inRate, 16000);
          const out = [];
          let k = 0;
          for (let c = 0; c < 20; c++) {            // 2 s in uneven chunks
            const n = c % 2 ? 1000 : Math.round(inRate / 10) * 2 - 1000;
            const x = new Float32Array(n);
            for (let i = 0; i < n; i++, k++) x[i] = 0.5 * Math.sin(2 * Math.PI * freq * k / inRate);
            out.push(...d.process(x));
          }
          const steady = out.slice(1000);
          return { n: out.length, rms: rms(steady) };
        }
        const i16 = toInt16(new Float32Array([1, -1, 0, 2, -2]));
        return { pass: run(440, 48000), alias: run(11000, 48000), cd: run(1000, 44100),
                 i16: Array.from(i16) };
    }"""
    )
    assert abs(result["pass"]["n"] - 32000) <= 2
    assert abs(result["cd"]["n"] - 32000) <= 2
    assert result["pass"]["rms"] == pytest.approx(0.5 / 2**0.5, rel=0.03)
    assert result["cd"]["rms"] == pytest.approx(0.5 / 2**0.5, rel=0.03)
    assert result["alias"]["rms"] < 0.01  # 11 kHz would alias to 5 kHz without the low-pass
    assert result["i16"] == [32767, -32768, 0, 32767, -32768]


def test_pages_work_offline_without_external_resources(page: Any, server_url: str) -> None:
    """No CDN, fonts or other third-party requests: everything is in the two HTML files."""
    requested: list[str] = []
    page.on("request", lambda req: requested.append(req.url))
    for name in ("client_example.html", "realtime_client.html"):
        page.goto(server_url + "/demo/" + name)
        page.wait_for_load_state("networkidle")
    outside = [u for u in requested if not u.startswith(server_url)]
    assert outside == [], outside
    # every form control has an accessible name
    for name in ("client_example.html", "realtime_client.html"):
        page.goto(server_url + "/demo/" + name)
        unnamed = page.evaluate(
            """() => Array.from(document.querySelectorAll('input, button, select, textarea'))
                 .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                               && !el.textContent.trim()).map(el => el.id || el.outerHTML)"""
        )
        assert unnamed == [], (name, unnamed)


def _block_non_loopback(page: Any) -> list[str]:
    """Abort every request that would leave the machine; return the list of those URLs."""
    blocked: list[str] = []

    def handle(route: Any) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:")) or \
                urllib.parse.urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1"):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    page.context.route("**/*", handle)
    return blocked


def _openapi_paths(server_url: str) -> dict[str, dict[str, Any]]:
    with urllib.request.urlopen(server_url + "/openapi.json", timeout=10) as resp:
        paths: dict[str, dict[str, Any]] = json.loads(resp.read())["paths"]
    return paths


def test_swagger_ui_lists_the_endpoints_offline(page: Any, server_url: str) -> None:
    paths = _openapi_paths(server_url)
    blocked = _block_non_loopback(page)
    errors = PageErrors(page)
    page.goto(server_url + "/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    shown = page.eval_on_selector_all(
        ".opblock", "els => els.map(e => [e.querySelector('.opblock-summary-method').textContent,"
        " e.querySelector('.opblock-summary-path').dataset.path])")
    expected = sorted([m.upper(), p] for p, ops in paths.items() for m in ops)
    assert sorted(shown) == expected
    assert page.locator(".swagger-ui .info .title").inner_text().startswith(
        "Deepfake Audio Detection API")
    _screenshot(page, "docs_swagger_ui")
    assert blocked == [] and errors.unexpected() == []


def test_redoc_lists_the_endpoints_offline(page: Any, server_url: str) -> None:
    paths = _openapi_paths(server_url)
    blocked = _block_non_loopback(page)
    errors = PageErrors(page)
    page.goto(server_url + "/redoc")
    page.wait_for_selector("[data-section-id^='operation/']", timeout=30_000)
    summaries = [op["summary"] for ops in paths.values() for op in ops.values()]
    menu = page.locator("[role=menuitem], .menu-content li").all_inner_texts()
    for summary in summaries:
        assert any(summary in item for item in menu), (summary, menu)
    text = page.inner_text("body")
    for path in paths:
        assert path in text, path
    _screenshot(page, "docs_redoc")
    # ReDoc's hard-wired CDN logo is stopped by the page's Content-Security-Policy.
    assert blocked == [] and errors.unexpected("logo-mini.svg") == []


def test_client_example_works_from_file_url(
    page: Any, keyed_server_url: str, tmp_path: Path
) -> None:
    """Opened from disk the page defaults to localhost:8000; pointed at a CORS-enabled server
    it works over HTTP (preflighted: X-API-Key) and WebSocket."""
    clip = _require(FAKE_CLIP)
    src = ROOT / "deepfake_audio" / "server" / "static" / "client_example.html"
    copy = tmp_path / "client_example.html"
    shutil.copy(src, copy)
    errors = PageErrors(page)
    page.goto(copy.as_uri())
    assert page.input_value("#server-url") == "http://localhost:8000"
    page.fill("#server-url", keyed_server_url + "/")
    page.fill("#api-key", API_KEY)
    page.set_input_files("#file", str(clip))
    page.click("#analyze-http")
    page.wait_for_selector("#result[data-source=http]", state="visible")
    assert page.get_attribute("#result", "data-classification") == "deepfake"
    page.click("#analyze-ws")
    page.wait_for_selector("#result[data-source=ws]", state="visible")
    assert page.get_attribute("#result", "data-classification") == "deepfake"
    assert page.text_content("#error") == ""
    assert errors.unexpected() == []


# --------------------------------------------------------------------------- API key


def test_upload_page_sends_api_key(page: Any, keyed_server_url: str) -> None:
    clip = _require(FAKE_CLIP)
    errors = PageErrors(page)
    page.goto(keyed_server_url + "/demo/client_example.html")
    page.set_input_files("#file", str(clip))

    page.click("#analyze-http")  # no key yet: the server refuses, the page says why
    page.wait_for_function("document.getElementById('error').textContent.length > 0")
    assert "HTTP 401" in page.text_content("#error") or "HTTP 403" in page.text_content("#error")
    page.click("#analyze-ws")
    page.wait_for_function("document.getElementById('error').textContent.includes('API key')")
    assert page.is_hidden("#result")

    page.fill("#api-key", API_KEY)
    page.click("#analyze-http")
    page.wait_for_selector("#result[data-source=http]", state="visible")
    assert page.get_attribute("#result", "data-classification") == "deepfake"
    page.click("#analyze-ws")
    page.wait_for_selector("#result[data-source=ws]", state="visible")
    assert page.get_attribute("#result", "data-classification") == "deepfake"
    assert page.text_content("#error") == ""
    assert errors.unexpected("Failed to load resource", "WebSocket connection") == []


def test_realtime_page_sends_api_key(fake_mic_browser: Any, keyed_server_url: str) -> None:
    context = fake_mic_browser.new_context()
    context.grant_permissions(["microphone"], origin=keyed_server_url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        page.goto(keyed_server_url + "/demo/realtime_client.html")
        page.fill("#api-key", "wrong-key")
        page.click("#start")
        page.wait_for_function("document.getElementById('error').textContent.length > 0")
        assert page.is_enabled("#start") and page.is_disabled("#stop")

        page.fill("#api-key", API_KEY)
        page.click("#start")
        page.wait_for_selector("#windows > li", timeout=20_000)
        assert page.text_content("#error") == ""
        page.click("#stop")
        page.wait_for_selector("#summary", state="visible")
    finally:
        context.close()


def test_realtime_page_works_from_file_url(
    fake_mic_browser: Any, keyed_server_url: str, tmp_path: Path
) -> None:
    """From disk Chromium refuses the Blob-URL AudioWorklet (opaque origin), so this also
    exercises the ScriptProcessor fallback."""
    copy = tmp_path / "realtime_client.html"
    shutil.copy(ROOT / "deepfake_audio" / "server" / "static" / "realtime_client.html", copy)
    context = fake_mic_browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors = PageErrors(page)
    try:
        page.goto(copy.as_uri())
        assert page.input_value("#server-url") == "http://localhost:8000"
        page.fill("#server-url", keyed_server_url)
        page.fill("#api-key", API_KEY)
        page.click("#start")
        page.wait_for_selector("#windows > li:nth-child(2)", timeout=20_000)
        page.click("#stop")
        page.wait_for_selector("#summary", state="visible")
        assert page.get_attribute("#summary", "data-classification") == "deepfake"
        assert page.text_content("#error") == ""
        assert errors.unexpected() == []
    finally:
        context.close()
