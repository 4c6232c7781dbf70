#!/usr/bin/env python
"""Core speed and memory benchmark (prints the figures quoted in the docs and notes).

    python benchmarks/bench_core.py

    python benchmarks/bench_core.py --quick   # skip the 2-hour files

1. End-to-end real-time factor on one core (one BLAS thread): decode a 16 kHz WAV
   from bytes → features → speech gate → SVM → result, for 10 s and 60 s clips
   (best of 7 runs); the 60 s clip also without the speech gate (what the gate
   costs) and as a 44.1 kHz AAC M4A (what FFmpeg decoding and resampling cost).
2. CLI cold start: wall time of ``deepfake-audio check`` on one 10 s file in a
   fresh process (median of 5).
3. Long recordings: a 2-hour 16 kHz WAV and a 2-hour 44.1 kHz AAC M4A analysed in
   a fresh process each: wall time, CPU time and peak RSS (``VmHWM``).
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


def write_m4a(target: str | Path | io.BytesIO, minutes: float, sr: int = 44_100) -> None:
    """AAC in an M4A container, encoded a minute at a time with PyAV's FFmpeg."""
    import av

    minute = speech_like(min(60.0, minutes * 60), sr)
    with av.open(target if isinstance(target, io.BytesIO) else str(target), "w",
                 format="ipod") as out:
        stream = out.add_stream("aac", rate=sr, layout="mono")
        for _ in range(max(1, round(minutes))):
            frame = av.AudioFrame.from_ndarray(minute[None, :], format="flt", layout="mono")
            frame.sample_rate = sr
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def m4a_bytes(seconds: float) -> bytes:
    buffer = io.BytesIO()
    write_m4a(buffer, seconds / 60)
    return buffer.getvalue()


def _best_cpu(detector: object, data: bytes, runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        started = time.process_time()  # CPU time of this process = per-core cost
        detector.analyze(data)  # type: ignore[attr-defined]
        times.append(time.process_time() - started)
    return min(times)


def real_time_factor() -> None:
    from threadpoolctl import threadpool_limits

    from deepfake_audio import Detector

    # "Per core": one BLAS thread, so CPU time is not inflated by idle worker spinning.
    threadpool_limits(1)
    detector = Detector()
    ungated = Detector(speech_gate=False)
    for d in (detector, ungated):
        d.warm_up()
    cases = [("10 s clip (16 kHz WAV bytes)", detector, 10, wav_bytes(10)),
             ("60 s clip (16 kHz WAV bytes)", detector, 60, wav_bytes(60)),
             ("60 s clip, no speech gate", ungated, 60, wav_bytes(60)),
             ("60 s clip (44.1 kHz AAC M4A)", detector, 60, m4a_bytes(60))]
    for label, d, seconds, data in cases:
        best = _best_cpu(d, data)
        print(f"end-to-end {label:<30}: {best * 1000:7.1f} ms CPU"
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


_MEASURE = (
    "import re, resource, sys, time\n"
    "from deepfake_audio import Detector\n"
    "started = time.perf_counter()\n"
    "r = Detector().analyze(sys.argv[1])\n"
    "wall = time.perf_counter() - started\n"
    "usage = resource.getrusage(resource.RUSAGE_SELF)\n"
    "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
    "print(int(hwm) // 1024, wall, usage.ru_utime + usage.ru_stime, r.duration_s,"
    " len(r.timeline))\n"
)


def long_recordings(tmp: Path) -> None:
    wav = tmp / "two_hours.wav"
    minute = speech_like(60)
    with sf.SoundFile(wav, "w", samplerate=16_000, channels=1, subtype="PCM_16") as out:
        for _ in range(120):
            out.write(minute)
    m4a = tmp / "two_hours.m4a"
    write_m4a(m4a, 120)
    for label, path in (("2-hour 16 kHz WAV", wav), ("2-hour 44.1 kHz AAC M4A", m4a)):
        # VmHWM (not ru_maxrss, which a child inherits from its parent across fork).
        out = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], check=True,
                             capture_output=True, text=True).stdout.split()
        peak, wall, cpu, duration, windows = int(out[0]), *map(float, out[1:])
        print(f"{label}: peak RSS {peak} MB, {wall:.0f} s wall, {cpu:.0f} s CPU"
              f" ({duration / cpu:.0f}x real time per core incl. start-up),"
              f" {windows:.0f} timeline windows")


def main() -> int:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    real_time_factor()
    with tempfile.TemporaryDirectory() as tmp:
        cold_start(Path(tmp))
        if "--quick" not in sys.argv[1:]:
            long_recordings(Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
