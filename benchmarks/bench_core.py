#!/usr/bin/env python
"""Core speed and memory benchmark (prints the figures quoted in the docs and notes).

    python benchmarks/bench_core.py

1. End-to-end real-time factor on one core (one BLAS thread): decode a 16 kHz WAV
   from bytes → features → SVM → result, for 10 s and 60 s clips (best of 7 runs).
2. CLI cold start: wall time of ``deepfake-audio check`` on one 10 s file in a
   fresh process (median of 5).
3. Peak memory (max RSS of a fresh process) analysing a 10-minute file.
"""

from __future__ import annotations

import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def speech_like(seconds: float, sr: int = 16_000, seed: int = 0) -> np.ndarray:
    """Harmonic 'voice' with a wandering pitch, syllable envelope and a noise floor."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 20))
    envelope = np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 0.5
    y = 0.2 * voice * envelope + 0.003 * rng.standard_normal(len(t))
    return (y / np.max(np.abs(y)) * 0.8).astype(np.float32)


def wav_bytes(seconds: float, sr: int = 16_000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, speech_like(seconds, sr), sr, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def real_time_factor() -> None:
    from threadpoolctl import threadpool_limits

    from deepfake_audio import Detector

    # "Per core": one BLAS thread, so CPU time is not inflated by idle worker spinning.
    threadpool_limits(1)
    detector = Detector()
    detector.warm_up()
    for seconds in (10, 60):
        data = wav_bytes(seconds)
        runs = []
        for _ in range(7):
            started = time.process_time()  # CPU time of this process = per-core cost
            detector.analyze(data)
            runs.append(time.process_time() - started)
        best = min(runs)
        print(f"end-to-end {seconds:>3} s clip (16 kHz WAV bytes): {best * 1000:7.1f} ms CPU"
              f"  -> {seconds / best:7.0f}x real time per core")


def cold_start(tmp: Path) -> None:
    path = tmp / "ten_seconds.wav"
    path.write_bytes(wav_bytes(10))
    exe = [sys.executable, "-m", "deepfake_audio", "check", str(path)]
    subprocess.run(exe, check=True, capture_output=True)  # warm the OS file cache
    times = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run(exe, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    print(f"CLI cold start, one 10 s file: median {statistics.median(times):.3f} s wall"
          f" (min {min(times):.3f}, max {max(times):.3f})")


def peak_memory(tmp: Path) -> None:
    path = tmp / "ten_minutes.wav"
    sf.write(path, speech_like(600), 16_000, subtype="PCM_16")
    # VmHWM (not ru_maxrss, which a child inherits from its parent across fork).
    code = (
        "import re, sys\n"
        "def hwm():\n"
        "    text = open('/proc/self/status').read()\n"
        "    return int(re.search(r'VmHWM:\\s+(\\d+)', text).group(1)) // 1024\n"
        "from deepfake_audio import Detector\n"
        "d = Detector()\n"
        "before = hwm()\n"
        "r = d.analyze(sys.argv[1])\n"
        "print(before, hwm(), len(r.timeline))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], check=True,
                         capture_output=True, text=True).stdout.split()
    before, after, windows = (int(x) for x in out)
    print(f"10-minute file: peak RSS {after} MB (model loaded: {before} MB;"
          f" analysis adds {after - before} MB), {windows} timeline windows")


def main() -> int:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    real_time_factor()
    with tempfile.TemporaryDirectory() as tmp:
        cold_start(Path(tmp))
        peak_memory(Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
