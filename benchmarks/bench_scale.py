#!/usr/bin/env python
"""Archive-scan scaling on Dask (prints the figures quoted in docs/batch.md).

    python benchmarks/bench_scale.py [--files 200] [--seconds 2] [--repeats 2]

On the same generated files (speech-like 16 kHz WAV), in one run:

1. in-process baseline: one :class:`Detector` reading and analysing each file in a loop;
2. :func:`deepfake_audio.batch.scan` on a ``dask scheduler`` with 1 ``dask worker``
   and on another with 2 (processes on 127.0.0.1, one thread each, started as the
   tests start them: ``tests/dask_cluster.py``): files/s and their ratio;
3. the same scan with one file per task, the batching the scan avoids.

Per-file scheduling overhead = 1/(files/s on 1 worker) - 1/(baseline files/s). The
model is loaded on every worker before timing (steady state). The variants run
interleaved, ``--repeats`` rounds, and the best pass of each is kept. The 1-minute
load average is printed: on a shared machine other processes take cores and lower
the 2-worker figure.
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
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from dask_cluster import DaskCluster  # the tests' real scheduler + workers


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


def timed(run: Callable[[], int], expected: int) -> float:
    """Files per second of one pass."""
    started = time.perf_counter()
    done = run()
    elapsed = time.perf_counter() - started
    assert done == expected, (done, expected)
    return expected / elapsed


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

        clients = {}
        for workers in (1, 2):
            cluster = stack.enter_context(
                DaskCluster(Path(tmp) / f"cluster{workers}", workers=workers))
            clients[workers] = cluster.client
            cluster.client.run(batch._model_id, batch.DetectorOptions())  # load the model

        def on(workers: int, **options: Any) -> Callable[[], int]:
            def run() -> int:
                records = list(batch.scan(files, client=clients[workers], **options))
                assert all(r.status == batch.OK for r in records)
                return len(records)
            return run

        runs = {"baseline": direct, "one": on(1), "two": on(2),
                "one_per_task": on(1, files_per_task=1)}
        best = dict.fromkeys(runs, 0.0)
        for _ in range(args.repeats):  # interleaved, so a burst of load hits every variant
            for name, run in runs.items():
                best[name] = max(best[name], timed(run, len(files)))
        baseline, one, two = best["baseline"], best["one"], best["two"]
        print(f"in-process baseline (1 core)     : {baseline:7.2f} files/s"
              f" = {baseline * args.seconds:.1f} s of audio per core-second")
        print(f"dask, 1 worker                   : {one:7.2f} files/s")
        print(f"dask, 2 workers                  : {two:7.2f} files/s")
        print(f"speed-up 2 workers / 1 worker    : {two / one:7.2f}x")
        print(f"scheduling overhead, batched     : {1e3 * (1 / one - 1 / baseline):7.2f} ms/file")
        print(f"dask, 1 worker, 1 file per task  : {best['one_per_task']:7.2f} files/s (overhead"
              f" {1e3 * (1 / best['one_per_task'] - 1 / baseline):.2f} ms/file)")
        print(f"load average at the end          : {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
