#!/usr/bin/env python
"""Reliability figures (prints the markdown tables quoted in docs/reliability.md).

    python scripts/reliability_report.py            # full: WS 100x20, HTTP 60 s, fuzz 100k
    python scripts/reliability_report.py --quick    # the default test suite's sizes

Runs the same scenarios as ``tests/reliability`` (and reuses their helpers) against
real ``deepfake-audio serve`` processes on 127.0.0.1, and prints what it measured
instead of asserting: per-file times of the malformed corpus through the library, the
CLI, ``POST /analyze`` and ``/ws``; server memory growth and temp-file leftovers; 413
latency; load replies/errors/latency; fault and shutdown outcomes; access checks; fuzz
throughput; model-integrity exits. Everything is local and bounded in time (~3 min).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import pickle
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import soundfile as sf  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from deepfake_audio import Detector, __version__  # noqa: E402
from deepfake_audio.model import MODEL_FILE, SCALER_FILE  # noqa: E402
from deepfake_audio.server.faults import MAGIC  # noqa: E402
from tests.helpers.artefacts import RunsShell, copy_default, replace_artefact  # noqa: E402
from tests.helpers.audio import FAKE_CLIP, wav_bytes, wav_of_size  # noqa: E402
from tests.helpers.server import ServerProcess, free_port  # noqa: E402
from tests.reliability import probes, runs  # noqa: E402
from tests.reliability.make_corpus import HOUR_MP3, build_corpus, write_hour_mp3  # noqa: E402
from tests.reliability.servers import CAP, InspectableServer  # noqa: E402


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}" if seconds >= 0.01 else f"{seconds * 1000:.1f}"


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def start(tmp: Path, name: str, env: dict[str, str]) -> InspectableServer:
    server = InspectableServer(tmp / name, env)
    return server.wait_ready()  # type: ignore[return-value]


# --------------------------------------------------------------------------- sections


def corpus_section(tmp: Path) -> str:
    hour = write_hour_mp3(tmp / HOUR_MP3)
    corpus = build_corpus(tmp / "corpus", hour)
    detector = Detector()
    lib_tmp = tmp / "lib-tmp"
    lib_tmp.mkdir()
    tempfile.tempdir = str(lib_tmp)
    fds_before = len(probes.fd_targets())
    lib = runs.run_library(detector, corpus)
    fds_after = len(probes.fd_targets())
    tempfile.tempdir = None
    cli_tmp = tmp / "cli-tmp"
    cli_tmp.mkdir()
    cli = runs.run_cli(corpus, cli_tmp)

    server = start(tmp, "srv-corpus", {"DEEPFAKE_AUDIO_MAX_CONCURRENCY": "2"})
    with server:
        httpx.post(server.url + "/analyze", files={"file": ("a.wav", wav_bytes(3.0))}, timeout=30)
        rss_before = server.rss_mb()
        http = runs.run_http(server.url, corpus)
        ws = runs.run_ws(server.ws_url, corpus)
        rss_after = server.rss_mb()
        leftovers = server.leftovers()
        log = server.log()

    rows = []
    for i, (case, _) in enumerate(corpus):
        lib_rows = lib[2 * i:2 * i + 2]
        rows.append([
            f"`{case.name}`", f"{len(case.data):,}", case.why,
            f"{lib_rows[0].outcome} ({ms(max(r.seconds for r in lib_rows))})",
            f"{cli[i].outcome} ({cli[i].seconds:.2f} s)",
            f"{http[i].outcome[5:]} ({ms(http[i].seconds)})",
            f"{ws[i].outcome} ({ms(ws[i].seconds)})",
            "yes" if all(r.ok for r in (*lib_rows, cli[i], http[i], ws[i])) else "**NO**",
        ])
    all_rows = lib + cli + http + ws
    slowest = max(all_rows, key=lambda r: r.seconds if r.entry != "cli" else 0)
    slowest_cli = max(cli, key=lambda r: r.seconds)
    out = [
        "### 1. Malformed corpus",
        "",
        "Each cell: outcome (time in ms; CLI: whole process in s, start-up and model load"
        " included). Library time is the slower of path and bytes input.",
        "",
        table(["file", "bytes", "what", "library", "CLI `check`", "`POST /analyze`",
               "`/ws` error", "as expected"], rows),
        "",
        f"- slowest library/HTTP/WS answer: {ms(slowest.seconds)} ms ({slowest.entry},"
        f" `{slowest.case.name}`); slowest CLI process: {slowest_cli.seconds:.2f} s"
        f" (`{slowest_cli.case.name}`); budget 2 s each",
        f"- 5xx answers: {sum(r.outcome.startswith('HTTP 5') for r in http)};"
        f" tracebacks in CLI output: {sum('traceback' in r.problem for r in cli)};"
        f" tracebacks in the server log: {log.count('Traceback')}",
        f"- server RSS over the whole corpus (HTTP then /ws): {rss_before:.1f} →"
        f" {rss_after:.1f} MB (**{rss_after - rss_before:+.1f} MB**, budget +50 MB)",
        f"- temp files left: server {len(leftovers)}, CLI {len(list(cli_tmp.iterdir()))},"
        f" library {len(list(lib_tmp.iterdir()))}; library file descriptors"
        f" {fds_before} → {fds_after}",
    ]
    bad = [f"{r.entry} {r.case.name}: {r.problem}" for r in all_rows if not r.ok]
    if bad:
        out.append("- **unexpected:** " + "; ".join(bad))
    return "\n".join(out)


def caps_section(tmp: Path) -> str:
    server = start(tmp, "srv-caps", {"DEEPFAKE_AUDIO_MAX_UPLOAD_MB": "1",
                                     "DEEPFAKE_AUDIO_MAX_CONCURRENCY": "2"})
    rows = []
    with server:
        for label, size in (("cap − 1 KB", CAP - 1024), ("cap + 1 KB", CAP + 1024)):
            started = time.perf_counter()
            response = httpx.post(server.url + "/analyze",
                                  files={"file": ("a.wav", wav_of_size(size))}, timeout=30)
            rows.append([f"WAV upload, {label} ({size:,} B)", response.status_code,
                         ms(time.perf_counter() - started), "all of it", "–"])
        for chunked in (False, True):
            before = server.rss_mb()
            answer = probes.oversized_upload(server.port, 200 * 1024 * 1024, chunked=chunked)
            after = server.rss_mb()
            rows.append(["200 MB body, " + ("chunked, no length" if chunked
                                            else "`Content-Length`"),
                         answer.status, ms(answer.seconds),
                         f"{answer.sent_bytes / 1024 / 1024:.2f} MB",
                         f"{after - before:+.1f} MB"])
        with connect(server.ws_url + "/ws", max_size=None) as bystander:
            with connect(server.ws_url + "/ws", max_size=None) as offender:
                started = time.perf_counter()
                offender.send("x" * (2 * CAP + 1024))
                try:
                    offender.recv(timeout=10)
                    code: Any = "no close"
                except ConnectionClosed as exc:
                    code = exc.rcvd.code if exc.rcvd else None
                took = time.perf_counter() - started
            bystander.send(probes.ws_message(wav_bytes(2.0)))
            fine = "classification" in json.loads(bystander.recv(timeout=30))
        rows.append(["`/ws` text frame of 2 MB (limit ≈ 1.4 MB)", f"close {code}", ms(took),
                     "–", f"other open connection still served: {'yes' if fine else 'NO'}"])
        leftovers = server.leftovers()
    return "\n".join([
        "### 3. Caps (server started with `DEEPFAKE_AUDIO_MAX_UPLOAD_MB=1`)",
        "",
        table(["request", "answer", "ms", "body sent before the answer¹",
               "server RSS / note"], rows),
        "",
        "¹ what the client managed to push into the socket (kernel buffers included) before"
        " the answer arrived; the server itself stops reading at the cap.",
        "",
        f"- temp files left in the server: {len(leftovers)}",
    ])


def load_section(tmp: Path, quick: bool) -> str:
    clip = wav_bytes(5.0, seed=3)
    ws_server = InspectableServer(tmp / "srv-ws", {"DEEPFAKE_AUDIO_MAX_CONCURRENCY": "2",
                                                   "DEEPFAKE_AUDIO_MAX_QUEUE": "128"})
    http_server = InspectableServer(tmp / "srv-http", {"DEEPFAKE_AUDIO_MAX_CONCURRENCY": "2"})
    rows = []
    with ws_server, http_server:
        ws_server.wait_ready()
        http_server.wait_ready()
        for server in (ws_server, http_server):
            for _ in range(4):
                httpx.post(server.url + "/analyze", files={"file": ("a.wav", clip)}, timeout=30)
            asyncio.run(probes.ws_load(server.ws_url + "/ws", probes.ws_message(clip),
                                       clients=2, messages=2))
        clients, messages = (20, 5) if quick else (100, 20)
        before = ws_server.rss_mb()
        ws = asyncio.run(probes.ws_load(ws_server.ws_url + "/ws", probes.ws_message(clip),
                                        clients=clients, messages=messages))
        after = ws_server.rss_mb()
        rows.append([f"`/ws`, {clients} clients × {messages} messages (queue 128)",
                     ws.requests, ws.ok, ws.busy, ws.errors, f"{ws.rate:.1f}",
                     f"{ws.p50_ms:.0f}", f"{ws.p99_ms:.0f}",
                     f"{before:.0f} → {after:.0f} ({after - before:+.1f})"])
        seconds = 10.0 if quick else 60.0
        body, content_type = probes.multipart(clip)
        before = http_server.rss_mb()
        http = asyncio.run(probes.http_load(http_server.port, body, content_type,
                                            concurrency=32, duration_s=seconds))
        after = http_server.rss_mb()
        rows.append([f"`POST /analyze`, 32 clients for {seconds:.0f} s (2 slots + queue 16)",
                     http.requests, http.ok,
                     f"{http.busy} (without Retry-After: {http.busy_without_retry_after})",
                     http.errors, f"{http.rate:.1f}", f"{http.p50_ms:.0f}",
                     f"{http.p99_ms:.0f}", f"{before:.0f} → {after:.0f} ({after - before:+.1f})"])
        leftovers = ws_server.leftovers() + http_server.leftovers()
    return "\n".join([
        "### 4. Load (5 s 16 kHz WAV clips, server and load generator on the same 2 CPUs)",
        "",
        table(["run", "requests", "verdicts", "busy (429)", "errors", "verdicts/s", "p50 ms",
               "p99 ms", "server RSS MB"], rows),
        "",
        "Latency counts successful requests only and includes queueing; clients honour"
        f" `Retry-After` after a 429. Temp files left: {len(leftovers)}. Sample errors:"
        f" {(ws.error_samples + http.error_samples)[:3] or 'none'}.",
    ])


def _post(url: str, data: bytes, **kwargs: Any) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = httpx.post(url + "/analyze", files={"file": ("a.wav", data)}, timeout=30,
                          **kwargs)
    return response, time.perf_counter() - started


def faults_section(tmp: Path) -> str:
    rows = []
    server = ServerProcess({"DEEPFAKE_AUDIO_TEST_FAULTS": "1",
                            "DEEPFAKE_AUDIO_ANALYSIS_TIMEOUT": "1",
                            "DEEPFAKE_AUDIO_MAX_CONCURRENCY": "2"})
    with server:
        server.wait_ready()
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            stuck = pool.submit(_post, server.url, MAGIC + b"hang=4")
            time.sleep(0.3)
            others = [_post(server.url, wav_bytes(2.0)) for _ in range(5)]
            response, seconds = stuck.result()
        rows.append(["HTTP upload whose decode hangs 4 s (timeout 1 s)",
                     f"{response.status_code} `{response.json()['error']}`,"
                     f" Retry-After {response.headers.get('retry-after')}", f"{seconds:.2f} s",
                     f"5 uploads meanwhile: {dict(Counter(r.status_code for r, _ in others))}"
                     f", max {max(s for _, s in others) * 1000:.0f} ms"])
        time.sleep(4)
        with connect(server.ws_url + "/ws") as ws:
            started = time.perf_counter()
            ws.send(probes.ws_message(MAGIC + b"hang=2"))
            reply = json.loads(ws.recv(timeout=10))
            took = time.perf_counter() - started
            ws.send(probes.ws_message(wav_bytes(2.0)))
            after = "verdict" if "classification" in json.loads(ws.recv(timeout=10)) else "error"
        rows.append(["`/ws` message whose decode hangs 2 s", f"`{reply}`", f"{took:.2f} s",
                     f"next message on the same connection: {after}"])
        response, seconds = _post(server.url, MAGIC + b"crash")
        ok, _ = _post(server.url, wav_bytes(2.0))
        rows.append(["HTTP upload whose decode raises", f"{response.status_code}"
                     f" `{response.json()['error']}`", ms(seconds),
                     f"X-Request-ID in header and detail: "
                     f"{response.headers.get('x-request-id', '?') in response.text};"
                     f" next upload {ok.status_code}"])
    server = ServerProcess(runs.SIGTERM_SERVER_ENV)
    with server:
        server.wait_ready()
        out = runs.sigterm_in_flight(server, wav_bytes(60.0))
    rows.append(["SIGTERM with 10 HTTP + 10 `/ws` requests (60 s clips) queued behind a"
                 " 3 s hung decode on the only slot; drain 1 s",
                 f"readiness 503 after {ms(out.ready_503_after_s)} ms",
                 f"exit after {out.exit_after_s:.1f} s (code {out.returncode})",
                 f"HTTP: {dict(Counter(out.http_statuses))}; /ws: "
                 f"{dict(Counter(out.ws_outcomes))}"])
    return "\n".join([
        "### 5. Faults (`DEEPFAKE_AUDIO_TEST_FAULTS=1`, 2 analysis slots)",
        "",
        table(["fault", "answer", "time", "everything else"], rows),
    ])


def access_section(tmp: Path) -> str:
    key = "report-Key-NEVER-LOG-ME-0123"
    server = ServerProcess({"DEEPFAKE_AUDIO_API_KEY": key, "DEEPFAKE_AUDIO_LOG_LEVEL": "debug",
                            "DEEPFAKE_AUDIO_CORS_ORIGINS": "http://allowed.example",
                            "DEEPFAKE_AUDIO_TEST_FAULTS": "1"})
    rows = []

    def analyses() -> float:
        text = httpx.get(server.url + "/metrics", timeout=5).text
        return sum(float(v) for v in re.findall(
            r"^deepfake_audio_analyses_total\{[^}]*\} (\S+)$", text, re.M))

    with server:
        server.wait_ready()
        before = analyses()
        response, seconds = _post(server.url, MAGIC + b"crash", headers={"X-API-Key": "nope"})
        rows.append(["`POST /analyze`, wrong key", response.status_code, ms(seconds)])
        head = (f"POST /analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {200 << 20}"
                "\r\nContent-Type: multipart/form-data; boundary=x\r\n\r\n").encode()
        answer = probes.offer_body(server.port, head, 200 << 20, chunked=False)
        rows.append([f"`POST /analyze`, no key, 200 MB body"
                     f" ({answer.sent_bytes / 1024 / 1024:.2f} MB offered before the answer)",
                     answer.status, ms(answer.seconds)])
        try:
            connect(server.ws_url + "/ws?api_key=nope", open_timeout=5)
            status: Any = "opened"
        except InvalidStatus as exc:
            status = exc.response.status_code
        rows.append(["`/ws`, wrong key, no `Origin` (non-browser)", f"HTTP {status}", "–"])
        with connect(server.ws_url + "/ws", additional_headers={
                "Origin": "http://allowed.example"}) as ws, contextlib.suppress(ConnectionClosed):
            ws.send(probes.ws_message(MAGIC + b"crash"))
            ws.recv(timeout=5)
        rows.append(["`/ws`, no key, allowed `Origin` (browser)",
                     f"close {ws.close_code} “{ws.close_reason}”", "–"])
        try:
            connect(server.ws_url + "/ws", additional_headers={
                "Origin": "http://evil.example", "X-API-Key": key}, open_timeout=5)
            status = "opened"
        except InvalidStatus as exc:
            status = exc.response.status_code
        rows.append(["`/ws`, right key, disallowed `Origin`", f"HTTP {status}", "–"])
        after = analyses()
        httpx.post(server.url + "/analyze", files={"file": ("a.wav", wav_bytes(1.0))},
                   params={"api_key": key}, timeout=30)
        with connect(server.ws_url + "/ws", additional_headers={"X-API-Key": key}) as ws:
            ws.send(probes.ws_message(wav_bytes(1.0)))
            ws.recv(timeout=30)
        time.sleep(0.5)
        log = server.log()
    return "\n".join([
        "### 6. Access (API key set, one allowed origin, debug logging)",
        "",
        table(["request", "answer", "ms"], rows),
        "",
        f"- analyses counted for all refused requests: {after - before:g}; injected-crash"
        f" payloads reached: {log.count('injected decoder crash')}",
        f"- occurrences of the key in {len(log.splitlines())} lines of server output"
        f" (debug level, key sent as header and as `?api_key=`): {log.count(key)}",
    ])


def fuzz_section(quick: bool) -> str:
    fuzzer = ROOT / "tests" / "reliability" / "fuzz_load_audio.py"
    runs_n = 20_000 if quick else 100_000
    proc = subprocess.run([sys.executable, str(fuzzer), "random", "--runs", str(runs_n),
                           "--max-time", "300", "--seed", "1"],
                          capture_output=True, text=True, timeout=400)
    lines = ["### 2. Fuzzing `load_audio` (bytes in)", ""]
    lines.append(f"- random mutation of valid WAV/FLAC/OGG/MP3 (exit {proc.returncode}): "
                 + (proc.stdout.strip().splitlines() or ["no output"])[-1])
    if importlib.util.find_spec("atheris") is not None:
        with tempfile.TemporaryDirectory() as work:
            started = time.monotonic()
            proc = subprocess.run([sys.executable, str(fuzzer), "atheris", "--runs", "300000",
                                   "--max-time", "240", "--seed", "1", "--workdir", work],
                                  capture_output=True, text=True, timeout=400)
            stats = dict(re.findall(r"stat::(\w+):\s+(\d+)", proc.stderr))
            lines.append(f"- atheris/libFuzzer (exit {proc.returncode}):"
                         f" {stats.get('number_of_executed_units', '?')} executions in"
                         f" {time.monotonic() - started:.0f} s,"
                         f" {stats.get('new_units_added', '?')} new coverage units,"
                         f" slowest input {stats.get('slowest_unit_time_sec', '?')} s,"
                         f" peak RSS {stats.get('peak_rss_mb', '?')} MB")
    else:
        lines.append("- atheris not installed: libFuzzer run skipped")
    return "\n".join(lines)


def model_section(tmp: Path) -> str:
    rows = []
    env = runs.cli_env()
    for attack in ("tampered", "crafted"):
        directory = copy_default(tmp, attack)
        marker = tmp / f"{attack}-payload-ran"
        payload = pickle.dumps(RunsShell(f"touch {marker}"))
        if attack == "tampered":
            (directory / SCALER_FILE).write_bytes(payload)
        else:
            replace_artefact(directory, MODEL_FILE, payload)
        for program in ("check", "serve"):
            args = ([str(FAKE_CLIP)] if program == "check"
                    else ["--host", "127.0.0.1", "--port", str(free_port())])
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "deepfake_audio", program, "--model",
                                   str(directory), *args], capture_output=True, text=True,
                                  env=env, cwd=ROOT, timeout=60)
            line = proc.stderr.strip().splitlines()[0] if proc.stderr.strip() else ""
            line = line.replace(str(tmp), "$TMP")
            rows.append([attack, program, proc.returncode, f"{time.perf_counter() - started:.2f}",
                         len(proc.stderr.strip().splitlines()), f"`{line[:150]}`",
                         "yes" if marker.exists() else "no"])
    proc = subprocess.run([sys.executable, "-W", "error", "-c",
                           "from deepfake_audio import Detector; Detector()"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    return "\n".join([
        "### 7. Model integrity",
        "",
        table(["artefact", "program", "exit", "s", "stderr lines", "message",
               "payload ran"], rows),
        "",
        "`tampered`: a payload pickle in place of `scaler.pkl`, `model.json` untouched (hash"
        " mismatch). `crafted`: a payload pickle as `svm_model.pkl` *and* its SHA-256 in"
        " `model.json` (only the unpickling allow-list stands).",
        "",
        f"- `python -W error -c \"from deepfake_audio import Detector; Detector()\"`: exit"
        f" {proc.returncode}, {len(proc.stderr.strip().splitlines())} lines on stderr",
    ])


def header(args: argparse.Namespace) -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        match = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = match.group(1) if match else "?"
    import numpy
    import sklearn

    return "\n".join([
        f"Command: `python scripts/reliability_report.py{' --quick' if args.quick else ''}`"
        f" — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"Machine: {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()},"
        f" deepfake-audio {__version__}, model `{Detector().model_id}`, numpy"
        f" {numpy.__version__}, scikit-learn {sklearn.__version__}, libsndfile"
        f" {sf.__libsndfile_version__}",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="reduced load and fuzzing, as in the default test run")
    parser.add_argument("--only", default="", help="comma-separated sections: corpus, fuzz,"
                        " caps, load, faults, access, model")
    args = parser.parse_args()
    wanted = set(filter(None, args.only.split(","))) or {
        "corpus", "fuzz", "caps", "load", "faults", "access", "model"}
    sections = [header(args)]
    with tempfile.TemporaryDirectory(prefix="reliability-") as work:
        tmp = Path(work)
        steps = [("corpus", lambda: corpus_section(tmp)), ("fuzz", lambda: fuzz_section(
            args.quick)), ("caps", lambda: caps_section(tmp)),
            ("load", lambda: load_section(tmp, args.quick)),
            ("faults", lambda: faults_section(tmp)), ("access", lambda: access_section(tmp)),
            ("model", lambda: model_section(tmp))]
        for name, step in steps:
            if name in wanted:
                started = time.monotonic()
                sections.append(step())
                print(f"[{name}: {time.monotonic() - started:.0f} s]", file=sys.stderr)
    print("\n\n".join(sections))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
