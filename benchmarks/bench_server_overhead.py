#!/usr/bin/env python
"""Where the server's own CPU per request goes (issue 16's ratio to in-process).

    python benchmarks/bench_server_overhead.py [--seconds 8]

``benchmarks/bench_server.py`` prints the main process's CPU per request under load.
This script takes that cost apart. It starts servers on 127.0.0.1 that do less and less
of the real work and drives each with the same 5 s WAV uploads, 16 in flight, from the
same load generator. For each it prints the CPU time of the server process per request
(from ``/proc``, with the CPUs otherwise idle):

1. ``raw ASGI``: uvicorn and a bare ASGI app that reads the body and answers JSON;
2. ``FastAPI, multipart``: a FastAPI route that parses the multipart form;
3. ``... + thread``: the same, plus one ``anyio.to_thread`` hop, as every analysis takes;
4. ``deepfake-audio app, stub detector``: ``create_app`` with everything the real server
   runs in its process (middleware, admission, metrics, the result's JSON), but with
   analyses in-process (``ISOLATE=0``) and a detector that returns a stored result at once.

Last, the worker pool's hand-off on its own: the main process's CPU per
``WorkerPool.analyze`` call with a 160 kB payload that the workers refuse at once
(undecodable bytes), four callers at a time.

``--busy N`` keeps N other processes computing FFTs meanwhile, as the analysis workers
keep the CPUs busy in the real server (``--busy 2`` on two CPUs is closest to it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_server import free_port, run_http, wav_bytes  # noqa: E402

_SERVER = r'''
import json, os, sys
import anyio.to_thread, uvicorn
sys.path.insert(0, os.environ["BENCH_ROOT"])
variant, port = sys.argv[1], int(sys.argv[2])

async def raw(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            done = "startup" if message["type"] == "lifespan.startup" else "shutdown"
            await send({"type": f"lifespan.{done}.complete"})
            if done == "shutdown":
                return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = json.dumps({"classification": "real", "bytes": size}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

if variant == "raw":
    app = raw
elif variant in ("fastapi", "fastapi-thread"):
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    app = FastAPI()

    @app.post("/analyze")
    async def analyze(request: Request):
        form = await request.form()
        data = await form["file"].read()
        await form.close()
        if variant == "fastapi-thread":
            await anyio.to_thread.run_sync(len, data)
        return JSONResponse({"classification": "real", "bytes": len(data)})
else:
    from bench_core import wav_bytes
    from deepfake_audio import Detector
    from deepfake_audio.server.app import create_app
    from deepfake_audio.server.settings import Settings

    class StoredAnswer(Detector):
        def analyze(self, source, **kwargs):
            return self.stored

    detector = StoredAnswer()
    detector.stored = Detector.analyze(detector, wav_bytes(5))
    os.environ.update({"DEEPFAKE_AUDIO_ISOLATE": "0", "DEEPFAKE_AUDIO_MAX_QUEUE": "256"})
    app = create_app(Settings.from_env(), detector=detector)
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
'''

_POOL = r'''
import asyncio, os, sys
sys.path.insert(0, os.environ["BENCH_ROOT"])
from deepfake_audio.exceptions import InputError
from deepfake_audio.server.workers import Job, WorkerConfig, WorkerPool

async def main(calls):
    pool = WorkerPool(WorkerConfig(model=None, max_duration_s=None), size=2, timeout_s=30)
    await pool.start()
    job = Job(b"\x01" * 160_000)

    async def caller():
        for _ in range(calls // 4):
            try:
                await pool.analyze(job)
            except InputError:
                pass

    before = os.times()
    await asyncio.gather(*(caller() for _ in range(4)))
    after = os.times()
    await pool.close()
    cpu = (after.user + after.system) - (before.user + before.system)
    print(cpu * 1000 / (calls // 4 * 4))

if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
'''


_BUSY = r'''
import sys, time
import numpy as np
frames = np.random.default_rng(0).standard_normal((256, 512)).astype(np.float32)
stop = time.monotonic() + float(sys.argv[1])
while time.monotonic() < stop:
    np.fft.rfft(frames, axis=1)
'''


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve(variant: str, audio: bytes, seconds: float) -> tuple[float, float]:
    """Requests per second and server CPU ms per request for one variant."""
    port = free_port()
    env = {**os.environ, "BENCH_ROOT": str(ROOT), "PYTHONPATH": str(Path(__file__).parent)}
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, variant, str(port)], env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                run_http(port, audio, 1, 0.2, 0.0)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"{variant}: server did not start") from None
                time.sleep(0.2)
        before = cpu_of(proc.pid)
        result = run_http(port, audio, 16, seconds, 0.0)
        cpu = cpu_of(proc.pid) - before
        if result.errors:
            raise SystemExit(f"{variant}: {result.errors} requests failed")
        return result.throughput, cpu * 1000 / max(result.completed, 1)
    finally:
        proc.terminate()
        proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="load per server")
    parser.add_argument("--calls", type=int, default=2000, help="WorkerPool.analyze calls")
    parser.add_argument("--busy", type=int, default=0,
                        help="CPU-bound processes running meanwhile (like analysis workers)")
    args = parser.parse_args(argv)
    audio = wav_bytes(5.0)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    busy = [subprocess.Popen([sys.executable, "-c", _BUSY, str(8 * args.seconds + 120)], env=env)
            for _ in range(args.busy)]
    try:
        return _measure(args, audio)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()


def _measure(args: argparse.Namespace, audio: bytes) -> int:
    print(f"5 s WAV uploads ({len(audio) // 1000} kB), 16 in flight, {args.seconds:g} s each,"
          f" {os.cpu_count()} CPUs, {args.busy} CPU-bound process(es) meanwhile,"
          f" load average {os.getloadavg()[0]:.1f}\n")
    print(f"| {'server':<40} | {'requests/s':>10} | {'server CPU ms/request':>21} |")
    print(f"|{'-' * 42}|{'-' * 11}:|{'-' * 22}:|")
    for variant, label in (("raw", "raw ASGI (uvicorn only)"),
                           ("fastapi", "FastAPI, multipart"),
                           ("fastapi-thread", "FastAPI, multipart + thread"),
                           ("app", "deepfake-audio app, stub detector")):
        rate, cpu_ms = serve(variant, audio, args.seconds)
        print(f"| {label:<40} | {rate:>10.0f} | {cpu_ms:>21.3f} |")
    env = {**os.environ, "BENCH_ROOT": str(ROOT)}
    pool_file = ROOT / "build" / "bench_pool_child.py"
    pool_file.parent.mkdir(exist_ok=True)
    pool_file.write_text(_POOL)  # spawn needs an importable main module
    try:
        out = subprocess.run([sys.executable, str(pool_file), str(args.calls)], env=env,
                             check=True, capture_output=True, text=True).stdout.split()
    finally:
        pool_file.unlink()
    print(f"\nWorkerPool.analyze hand-off (160 kB in, refusal back): {float(out[-1]):.3f} ms"
          " main-process CPU per call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
