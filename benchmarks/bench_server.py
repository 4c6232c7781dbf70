#!/usr/bin/env python
"""Server throughput and latency benchmark (prints the table quoted in docs/server.md).

    python benchmarks/bench_server.py [--seconds 5] [--workers 1] [--concurrency 1 8 16]

Starts a real ``deepfake-audio serve`` on 127.0.0.1 (a free port), then for HTTP
(``POST /analyze``) and WebSocket (``/ws``) and each concurrency level keeps that
many requests in flight with 5 s, 16 kHz, 16-bit WAV clips for ``--seconds`` and
reports analyses/s and p50/p99 latency. While the highest HTTP level runs, a
separate process probes ``GET /health/live`` every 20 ms and its p99 is reported.

Before the server starts and again after it stops, the same clip is analysed by as
many in-process worker processes as the server runs analyses at once
(``--max-concurrency``, default the CPU count; one BLAS thread each,
``Detector.analyze`` on the bytes in a loop): the "vs in-process" column is each row's
throughput over the mean of those two runs, so a machine whose speed drifts during the
run biases the ratio neither way (both runs are printed). Issue 16's targets, checked
at the highest concurrency: HTTP and WebSocket ≥ 75 % of in-process, p99 ≤ 250 ms,
``/health/live`` p99 < 50 ms.

"server CPU ms/analysis" is the CPU time of the server process and its worker processes
over the cell, per analysis; "of which main process" is the part spent by the process that
speaks HTTP and WebSocket (everything but the analysis itself). "load generator CPU ms" is
this script's own CPU per analysis (the clients), and "CPUs idle" the share of the
machine's CPU time over the cell that no process used (``/proc/stat``).

The load generator is deliberately light (asyncio with a hand-written HTTP/1.1
keep-alive client; the ``websockets`` client for WS) because it shares the CPUs
with the server on the same machine. Everything stays on loopback and is bounded
in time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import multiprocessing as mp
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import speech_like  # noqa: E402  (same synthetic voice as the core benchmark)

SR = 16_000
BOUNDARY = "benchboundary7f3a"


def wav_bytes(seconds: float) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, speech_like(seconds, SR), SR, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- load generators


def http_request(port: int, audio: bytes) -> bytes:
    part = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n")
    body = part.encode() + audio + f"\r\n--{BOUNDARY}--\r\n".encode()
    head = (f"POST /analyze HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await reader.readexactly(length)


@dataclass
class RunResult:
    completed: int
    errors: int
    elapsed: float
    latencies: list[float]

    @property
    def throughput(self) -> float:
        return self.completed / self.elapsed

    def pct(self, q: float) -> float:
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(q * len(data)))] if data else float("nan")


async def _drive(concurrency: int, seconds: float, warmup: float,
                 make_worker: Callable[[], Callable[[], object]]) -> RunResult:
    latencies: list[float] = []
    counts = {"ok": 0, "err": 0}
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds

    async def loop() -> None:
        step = await make_worker()  # type: ignore[misc]
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            ok = await step()
            t1 = time.perf_counter()
            if t0 >= measure_from and t1 <= stop_at:
                latencies.append(t1 - t0)
                counts["ok" if ok else "err"] += 1

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return RunResult(counts["ok"], counts["err"], seconds, latencies)


def run_http(port: int, audio: bytes, concurrency: int, seconds: float, warmup: float) -> RunResult:
    request = http_request(port, audio)

    async def make_worker() -> Callable[[], object]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def step() -> bool:
            writer.write(request)
            status, _ = await read_response(reader)
            return status == 200

        return step

    return asyncio.run(_drive(concurrency, seconds, warmup, make_worker))  # type: ignore[arg-type]


def run_ws(port: int, audio: bytes, concurrency: int, seconds: float, warmup: float) -> RunResult:
    from websockets.asyncio.client import connect

    message = json.dumps({"audio_data": base64.b64encode(audio).decode(), "file_type": ".wav"})

    async def make_worker() -> Callable[[], object]:
        ws = await connect(f"ws://127.0.0.1:{port}/ws", max_size=None, compression=None)

        async def step() -> bool:
            await ws.send(message)
            return "error" not in json.loads(await ws.recv())

        return step

    return asyncio.run(_drive(concurrency, seconds, warmup, make_worker))  # type: ignore[arg-type]


def _in_process_worker(audio: bytes, start_at: float, warmup: float, seconds: float,
                       out: Connection) -> None:
    from threadpoolctl import threadpool_limits

    from deepfake_audio import Detector

    threadpool_limits(1)
    detector = Detector()
    detector.warm_up()
    latencies, cpu = [], 0.0
    while time.perf_counter() < start_at:
        time.sleep(0.005)
    measure_from, stop_at = start_at + warmup, start_at + warmup + seconds
    while (t0 := time.perf_counter()) < stop_at:
        c0 = time.process_time()
        detector.analyze(audio)
        t1 = time.perf_counter()
        if t0 >= measure_from and t1 <= stop_at:
            latencies.append(t1 - t0)
            cpu += time.process_time() - c0
    out.send((latencies, cpu))
    out.close()


def run_in_process(audio: bytes, workers: int, seconds: float,
                   warmup: float) -> tuple[RunResult, float]:
    """``workers`` processes analysing ``audio`` back to back: the ceiling without a server.

    Returns the run and the CPU seconds per analysis.
    """
    start_at = time.perf_counter() + 15  # CLOCK_MONOTONIC: shared by the children
    pipes, procs = [], []
    for _ in range(workers):
        recv, send = mp.Pipe(duplex=False)
        proc = mp.Process(target=_in_process_worker, args=(audio, start_at, warmup, seconds, send))
        proc.start()
        pipes.append(recv)
        procs.append(proc)
    results = [recv.recv() for recv in pipes]
    for proc in procs:
        proc.join()
    latencies = [x for lat, _ in results for x in lat]
    cpu = sum(c for _, c in results) / max(len(latencies), 1)
    return RunResult(len(latencies), 0, seconds, latencies), cpu


def probe_health(port: int, seconds: float, interval: float, out: Connection) -> None:
    """Separate process: GET /health/live on a keep-alive socket, latencies back via ``out``."""
    request = f"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    latencies = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        reader = sock.makefile("rb")
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            sock.sendall(request)
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            reader.read(length)
            latencies.append(time.perf_counter() - t0)
            time.sleep(interval)
    out.send(latencies)
    out.close()


# --------------------------------------------------------------------------- main


def cpu_seconds(pid: int, descendants: bool = True) -> float:
    """User + system CPU of ``pid`` and (by default) its live descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    if not descendants:
        return stats[pid][1] if pid in stats else 0.0
    total, frontier = 0.0, {pid}
    while frontier:
        total += sum(stats[p][1] for p in frontier if p in stats)
        frontier = {p for p, (ppid, _) in stats.items() if ppid in frontier}
    return total


def cpu_ticks() -> tuple[int, int]:
    """Machine-wide idle and total CPU ticks so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])  # idle + iowait; user .. steal


def own_cpu_seconds() -> float:
    """User + system CPU of this process: the load generator."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_server(port: int, workers: int, extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPFAKE_AUDIO_")}
    env.update({"DEEPFAKE_AUDIO_MAX_QUEUE": "256", "DEEPFAKE_AUDIO_LOG_LEVEL": "warning",
                "DEEPFAKE_AUDIO_SHUTDOWN_DRAIN": "0", **extra_env})
    proc = subprocess.Popen(
        [sys.executable, "-m", "deepfake_audio", "serve", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180  # analysis worker processes load the model too
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server not ready after 180 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per cell")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--clip-seconds", type=float, default=5.0)
    parser.add_argument("--max-concurrency", default="",
                        help="DEEPFAKE_AUDIO_MAX_CONCURRENCY for the server (default: CPUs)")
    args = parser.parse_args(argv)

    audio = wav_bytes(args.clip_seconds)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    analysis_workers = int(args.max_concurrency or cpus)
    load_start = os.getloadavg()[0]
    before = run_in_process(audio, analysis_workers, args.seconds, args.warmup)
    port = free_port()
    extra = {"DEEPFAKE_AUDIO_MAX_CONCURRENCY": args.max_concurrency} if args.max_concurrency else {}
    proc = start_server(port, args.workers, extra)
    rows = []
    health: list[float] = []
    try:
        for transport, runner in (("HTTP", run_http), ("WS", run_ws)):
            for level in args.concurrency:
                probe = None
                if transport == "HTTP" and level == max(args.concurrency):
                    recv, send = mp.Pipe(duplex=False)
                    probe = mp.Process(target=probe_health,
                                       args=(port, args.seconds + args.warmup, 0.02, send))
                    probe.start()
                cpu_before, main_before = cpu_seconds(proc.pid), cpu_seconds(proc.pid, False)
                own_before, stat_before = own_cpu_seconds(), cpu_ticks()
                result = runner(port, audio, level, args.seconds, args.warmup)
                cpu = cpu_seconds(proc.pid) - cpu_before
                main_cpu = cpu_seconds(proc.pid, False) - main_before
                client_cpu = own_cpu_seconds() - own_before
                stat_after = cpu_ticks()
                idle = (stat_after[0] - stat_before[0]) / max(stat_after[1] - stat_before[1], 1)
                if probe is not None:
                    health = recv.recv()
                    probe.join()
                # ms per analysis: the CPU figures span the warm-up too
                per = 1000 / max(result.completed * (args.seconds + args.warmup) / args.seconds, 1)
                rows.append((transport, level, result, cpu * per, main_cpu * per,
                             client_cpu * per, idle))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    after = run_in_process(audio, analysis_workers, args.seconds, args.warmup)
    baseline = RunResult(before[0].completed + after[0].completed, 0, 2 * args.seconds,
                         before[0].latencies + after[0].latencies)
    baseline_cpu = (before[1] + after[1]) / 2

    print(f"\n{args.clip_seconds:g} s WAV clips, {cpus} CPUs, {args.workers} worker(s), "
          f"{args.seconds:g} s per cell (load generator on the same machine), load average"
          f" {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end\n")
    print(f"in-process: {analysis_workers} worker process(es) analysing back to back:"
          f" {baseline.throughput:.1f} analyses/s (before the server {before[0].throughput:.1f},"
          f" after {after[0].throughput:.1f}), p50 {baseline.pct(0.5) * 1000:.1f} ms,"
          f" CPU {baseline_cpu * 1000:.2f} ms/analysis\n")
    print(f"| {'transport':9} | {'concurrency':>11} | {'analyses/s':>10} | {'vs in-process':>13} |"
          f" {'p50 ms':>7} | {'p99 ms':>7} | {'errors':>6} | {'server CPU ms/analysis':>22} |"
          f" {'of which main process':>21} | {'load generator CPU ms':>21} | {'CPUs idle':>9} |")
    print(f"|{'-' * 11}|{'-' * 12}:|{'-' * 11}:|{'-' * 14}:|{'-' * 8}:|{'-' * 8}:|{'-' * 7}:"
          f"|{'-' * 23}:|{'-' * 22}:|{'-' * 22}:|{'-' * 10}:|")
    for transport, level, r, cpu_ms, main_ms, client_ms, idle in rows:
        print(f"| {transport:9} | {level:>11} | {r.throughput:>10.1f} |"
              f" {r.throughput / baseline.throughput:>12.0%} | {r.pct(0.5) * 1000:>7.1f} |"
              f" {r.pct(0.99) * 1000:>7.1f} | {r.errors:>6} | {cpu_ms:>22.2f} |"
              f" {main_ms:>21.2f} | {client_ms:>21.2f} | {idle:>9.0%} |")
    top = max(args.concurrency)
    checks = []
    for transport, level, r, *_ in rows:
        if level == top:
            ratio = r.throughput / baseline.throughput
            checks.append((f"{transport} throughput vs in-process at {top}", ratio >= 0.75,
                           f"{ratio:.0%} (target >= 75 %)"))
            checks.append((f"{transport} p99 at {top}", r.pct(0.99) <= 0.25,
                           f"{r.pct(0.99) * 1000:.0f} ms (target <= 250 ms)"))
    if health:
        health.sort()
        p99 = health[min(len(health) - 1, int(0.99 * len(health)))]
        print(f"\nGET /health/live during HTTP concurrency {top}: "
              f"{len(health)} probes, p50 {statistics.median(health) * 1000:.1f} ms, "
              f"p99 {p99 * 1000:.1f} ms, max {health[-1] * 1000:.1f} ms")
        checks.append(("/health/live p99", p99 < 0.05, f"{p99 * 1000:.1f} ms (target < 50 ms)"))
    print()
    for label, ok, text in checks:
        print(f"{'ok    ' if ok else 'MISSED'} {label}: {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
