"""Run the malformed corpus through each entry point and record what happened.

Shared by ``test_corpus.py`` (which asserts on the rows) and
``scripts/reliability_report.py`` (which prints them).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from deepfake_audio.server.faults import MAGIC as FAULT_MAGIC

from .make_corpus import Case
from .probes import ws_message

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Row:
    """What one entry point made of one corpus file."""

    case: Case
    entry: str            # library | cli | http | ws
    outcome: str          # exception name, "HTTP 400", "exit 3", or the error label
    message: str
    seconds: float
    ok: bool              # outcome matches the case's expectation
    problem: str = ""


def run_library(detector: object, corpus: list[tuple[Case, Path]]) -> list[Row]:
    """``Detector().analyze`` on the path and on the bytes of every case."""
    rows = []
    for case, path in corpus:
        for source in (path, case.data):
            started = time.perf_counter()
            try:
                detector.analyze(source)  # type: ignore[attr-defined]
            except Exception as exc:  # what was raised is the finding
                seconds = time.perf_counter() - started
                ok = isinstance(exc, case.error) and bool(str(exc).strip())
                rows.append(Row(case, "library", type(exc).__name__, str(exc), seconds, ok,
                                "" if ok else f"expected {case.error.__name__}"))
                continue
            rows.append(Row(case, "library", "analysed", "", time.perf_counter() - started,
                            False, f"expected {case.error.__name__}, got a verdict"))
    return rows


def cli_env(tmpdir: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPFAKE_AUDIO_")}
    env["PYTHONWARNINGS"] = "ignore"
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    return env


def _mpg123_noise(line: str) -> bool:
    # libmpg123 (inside libsndfile) prints its own C-level warnings on stderr.
    return line.startswith(("Warning: ", "[src/", "Note: "))


def run_cli(corpus: list[tuple[Case, Path]], tmpdir: Path | None = None) -> list[Row]:
    """``python -m deepfake_audio check FILE`` once per case (process start included)."""
    rows = []
    for case, path in corpus:
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "deepfake_audio", "check",
                               "--max-duration", "600", str(path)],
                              capture_output=True, text=True, env=cli_env(tmpdir), cwd=ROOT,
                              timeout=60)
        seconds = time.perf_counter() - started
        lines = [x for x in proc.stderr.splitlines() if x.strip() and not _mpg123_noise(x)]
        problems = []
        if proc.returncode != 3:
            problems.append(f"exit {proc.returncode}, expected 3")
        if "Traceback" in proc.stderr or "Traceback" in proc.stdout:
            problems.append("traceback printed")
        if len(lines) != 1 or not lines[0].startswith(f"error: {path}: "):
            problems.append(f"expected one 'error: {path}: …' line, got {lines!r}")
        if proc.stdout.strip():
            problems.append(f"unexpected stdout {proc.stdout[:200]!r}")
        message = lines[0].split(": ", 2)[-1] if lines else proc.stderr.strip()[:200]
        rows.append(Row(case, "cli", f"exit {proc.returncode}", message, seconds, not problems,
                        "; ".join(problems)))
    return rows


def run_cli_batch(corpus: list[tuple[Case, Path]], tmpdir: Path | None = None,
                  ) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    """All cases in one ``check --json`` invocation (the batch keeps going past bad files),
    under the 600 s cap the long cases are written for (the CLI has no limit by default)."""
    proc = subprocess.run(
        [sys.executable, "-m", "deepfake_audio", "check", "--json", "-q", "--max-duration", "600",
         *(str(p) for _, p in corpus)],
        capture_output=True, text=True, env=cli_env(tmpdir), cwd=ROOT, timeout=120)
    try:
        rows = json.loads(proc.stdout)
    except ValueError:
        rows = []
    return proc, rows


def run_http(url: str, corpus: list[tuple[Case, Path]]) -> list[Row]:
    """``POST /analyze`` with every case as the ``file`` field."""
    rows = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for case, _ in corpus:
            started = time.perf_counter()
            response = client.post("/analyze", files={
                "file": (case.name, case.data, "application/octet-stream")})
            seconds = time.perf_counter() - started
            try:
                body = response.json()
            except ValueError:
                body = {}
            problems = []
            if response.status_code != case.status:
                problems.append(f"HTTP {response.status_code}, expected {case.status}")
            if body.get("error") != case.label:
                problems.append(f"error {body.get('error')!r}, expected {case.label!r}")
            if not isinstance(body.get("detail"), str) or not body["detail"]:
                problems.append("no detail")
            rows.append(Row(case, "http", f"HTTP {response.status_code}",
                            f"{body.get('error')}: {body.get('detail')}", seconds, not problems,
                            "; ".join(problems)))
    return rows


def run_ws(ws_url: str, corpus: list[tuple[Case, Path]]) -> list[Row]:
    """Every case as a ``/ws`` message, all on one connection (which must stay open)."""
    from websockets.sync.client import connect

    rows = []
    with connect(ws_url + "/ws", max_size=None, open_timeout=10) as ws:
        for case, _ in corpus:
            started = time.perf_counter()
            ws.send(ws_message(case.data, case.suffix))
            reply = json.loads(ws.recv(timeout=30))
            seconds = time.perf_counter() - started
            problems = []
            if "classification" in reply or not isinstance(reply.get("error"), str):
                problems.append(f"expected an error reply, got {str(reply)[:200]}")
            # An empty file cannot even be sent as base64: the message itself is refused.
            elif case.data and reply["error"] != case.label:
                problems.append(f"error {reply['error']!r}, expected {case.label!r}")
            rows.append(Row(case, "ws", str(reply.get("error")), str(reply.get("detail", "")),
                            seconds, not problems, "; ".join(problems)))
    return rows


# --------------------------------------------------------------------------- SIGTERM


@dataclass
class ShutdownOutcome:
    """What 10 HTTP + 10 WebSocket requests in flight made of a SIGTERM."""

    in_flight_at_signal: float     # analyses admitted, the blocker included
    ready_503_after_s: float
    http_statuses: list[int]
    ws_outcomes: list[str]          # "result" or "close <code>"
    exit_after_s: float
    returncode: int | None
    log: str


def _gauge(url: str, name: str) -> float:
    import re

    text = httpx.get(url + "/metrics", timeout=5).text
    match = re.search(rf"^deepfake_audio_{name} ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def _ws_request(url: str, message: str, opened: threading.Barrier) -> str:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    try:
        with connect(url + "/ws", max_size=None, open_timeout=10) as ws:
            opened.wait(10)
            ws.send(message)
            reply = json.loads(ws.recv(timeout=60))
            return "result" if "classification" in reply else f"error {reply}"
    except ConnectionClosed as exc:
        return f"close {exc.rcvd.code if exc.rcvd is not None else None}"


def _post(url: str, data: bytes) -> int:
    return httpx.post(url + "/analyze", files={"file": ("a.wav", data, "audio/wav")},
                      timeout=60).status_code


def _wait_for_depth(url: str, depth: int, timeout: float = 15.0) -> float:
    deadline = time.monotonic() + timeout
    while (now := _gauge(url, "analysis_queue_depth")) < depth:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {now} analyses in flight, waited for {depth}")
        time.sleep(0.02)
    return now


#: One analysis slot, a 1 s drain and the fault hook: the SIGTERM scenario's server.
SIGTERM_SERVER_ENV = {"DEEPFAKE_AUDIO_MAX_CONCURRENCY": "1",
                      "DEEPFAKE_AUDIO_MAX_QUEUE": "32",
                      "DEEPFAKE_AUDIO_SHUTDOWN_DRAIN": "1.0",
                      "DEEPFAKE_AUDIO_GRACEFUL_TIMEOUT": "30",
                      "DEEPFAKE_AUDIO_TEST_FAULTS": "1"}


def sigterm_in_flight(server: Any, clip: bytes, *, http: int = 10, ws: int = 10,
                      blocker_s: float = 3.0) -> ShutdownOutcome:
    """SIGTERM a ready ``ServerProcess`` (one analysis slot, fault injection on) while
    ``http`` uploads and ``ws`` WebSocket requests of ``clip`` are in flight.

    A first upload hangs in its decoder for ``blocker_s`` (a fault-injection payload)
    so that every one of the others is certainly admitted and waiting when the signal
    arrives, however fast this machine analyses.
    """
    message = ws_message(clip)
    opened = threading.Barrier(ws + 1)
    with ThreadPoolExecutor(http + ws + 1) as pool:
        blocker = pool.submit(_post, server.url, FAULT_MAGIC + f"hang={blocker_s}".encode())
        _wait_for_depth(server.url, 1)
        ws_jobs = [pool.submit(_ws_request, server.ws_url, message, opened) for _ in range(ws)]
        opened.wait(15)
        http_jobs = [pool.submit(_post, server.url, clip) for _ in range(http)]
        depth = _wait_for_depth(server.url, 1 + http + ws)
        server.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        ready_after = float("nan")
        while time.monotonic() - signalled < 2.0:
            try:
                status = httpx.get(server.url + "/health/ready", timeout=2).status_code
            except httpx.TransportError:  # the listener is already closed
                break
            if status == 503:
                ready_after = time.monotonic() - signalled
                break
            time.sleep(0.01)
        http_statuses = [job.result() for job in http_jobs]
        ws_outcomes = [job.result() for job in ws_jobs]
        blocker.result()
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.proc.wait(timeout=40)
    return ShutdownOutcome(depth, ready_after, http_statuses, ws_outcomes,
                           time.monotonic() - signalled, server.proc.returncode, server.log())
