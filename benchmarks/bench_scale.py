#!/usr/bin/env python
"""Archive-scan scaling on Dask (prints the figures quoted in docs/batch.md).

    python benchmarks/bench_scale.py [--files 200] [--seconds 2] [--repeats 2]

On the same generated files (speech-like 16 kHz WAV), in one run:

1. in-process baseline: one :class:`Detector` reading and analysing each file in a loop;
2. :func:`deepfake_audio.batch.scan` on a ``dask scheduler`` with 1 ``dask worker``
   and on another with 2 (processes on 127.0.0.1, one thread each, started as the
   tests start them: ``tests/helpers/dask_cluster.py``): files/s and their ratio;
3. the same scan with one file per task, the batching the scan avoids.

Throughput is wall clock (best pass). Cost is CPU time (lowest pass) summed over the
client, scheduler and worker processes, which other jobs on a shared machine do not
inflate: per-file scheduling overhead = Dask CPU per file - in-process CPU per file,
and "audio per core-second" = clip length / in-process CPU per file. The model is
loaded on every worker before timing (steady state); the variants run interleaved,
``--repeats`` rounds. The 1-minute load average is printed: other jobs take cores
and make the wall-clock figures, the 2-worker one above all, noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one BLAS thread per worker process
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers.dask_cluster import DaskCluster  # the tests' real scheduler + workers


def speech_like(seconds: float, sr: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 110 + 40 * rng.random() + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 20))
    envelope = np.clip(np.sin(2 * np.pi * 3 * t + rng.uniform(0, 6)), 0, None) ** 0.5
    y = 0.2 * voice * envelope + 0.003 * rng.standard_normal(len(t))
    return (y / np.max(np.abs(y)) * 0.8).astype(np.float32)


def make_files(folder: Path, count: int, seconds: float) -> list[str]:
    paths = []
    for i in range(count):
        buffer = io.BytesIO()
        sf.write(buffer, speech_like(seconds, 16_000, i), 16_000, format="WAV", subtype="PCM_16")
        path = folder / f"clip{i:05d}.wav"
        path.write_bytes(buffer.getvalue())
        paths.append(str(path))
    return paths


def timed(run: Callable[[], int], expected: int, pids: list[int]) -> tuple[float, float]:
    """Files per second (wall clock) and CPU seconds per file (all ``pids``) of one pass."""
    import psutil

    processes = [psutil.Process(pid) for pid in pids]

    def cpu() -> float:
        return sum(sum(p.cpu_times()[:2]) for p in processes)

    cpu_before, started = cpu(), time.perf_counter()
    done = run()
    elapsed, cpu_used = time.perf_counter() - started, cpu() - cpu_before
    assert done == expected, (done, expected)
    return expected / elapsed, cpu_used / expected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each clip")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from threadpoolctl import threadpool_limits

    from deepfake_audio import Detector, batch

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        (Path(tmp) / "audio").mkdir()
        files = make_files(Path(tmp) / "audio", args.files, args.seconds)
        print(f"{args.files} files of {args.seconds:g} s speech-like 16 kHz WAV;"
              f" {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")

        threadpool_limits(1)
        detector = Detector()
        detector.warm_up()

        def direct() -> int:
            for path in files:
                detector.analyze(Path(path).read_bytes(), file_type=".wav")
            return len(files)

        clients, pids = {}, {"baseline": [os.getpid()]}
        for workers in (1, 2):
            cluster = stack.enter_context(
                DaskCluster(Path(tmp) / f"cluster{workers}", workers=workers))
            clients[workers] = cluster.client
            pids[workers] = [os.getpid(), cluster.scheduler.pid,
                             *(proc.pid for proc in cluster.workers.values())]
            cluster.client.run(batch._model_id, batch.DetectorOptions())  # load the model

        def on(workers: int, **options: Any) -> Callable[[], int]:
            def run() -> int:
                records = list(batch.scan(files, client=clients[workers], **options))
                assert all(r.status == batch.OK for r in records)
                return len(records)
            return run

        runs = {"baseline": (direct, pids["baseline"]), "one": (on(1), pids[1]),
                "two": (on(2), pids[2]), "one_per_task": (on(1, files_per_task=1), pids[1])}
        rate = dict.fromkeys(runs, 0.0)
        cpu = dict.fromkeys(runs, float("inf"))
        for _ in range(args.repeats):  # interleaved, so a burst of load hits every variant
            for name, (run, run_pids) in runs.items():
                files_per_s, cpu_per_file = timed(run, len(files), run_pids)
                rate[name] = max(rate[name], files_per_s)
                cpu[name] = min(cpu[name], cpu_per_file)
        for name, title in (("baseline", "in-process baseline (1 core)"),
                            ("one", "dask, 1 worker"), ("two", "dask, 2 workers"),
                            ("one_per_task", "dask, 1 worker, 1 file per task")):
            print(f"{title:33}: {rate[name]:7.2f} files/s, {1e3 * cpu[name]:6.1f} ms CPU/file")
        print(f"{'speed-up 2 workers / 1 worker':33}: {rate['two'] / rate['one']:7.2f}x")
        print(f"{'audio per core-second (baseline)':33}: {args.seconds / cpu['baseline']:7.1f} s")
        for name, title in (("one", "batched"), ("one_per_task", "1 file per task")):
            print(f"{'scheduling overhead, ' + title:33}: "
                  f"{1e3 * (cpu[name] - cpu['baseline']):7.2f} ms CPU/file")
        print(f"{'load average at the end':33}: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
