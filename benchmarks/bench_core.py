#!/usr/bin/env python
"""Core speed and memory benchmark: every issue-16 target, as ratios measured in one run.

    python benchmarks/bench_core.py           # the figures quoted in docs and notes
    python benchmarks/bench_core.py --quick   # CI smoke run: short, loose limits, exit 1 if broken

1. Throughput, one core (one BLAS thread, CPU time of this process, best of N): a
   16 kHz 16-bit WAV from bytes → decode → features → SVM → result, for 10 s and
   60 s clips, beside "decode + one STFT" of the same bytes (the practical floor):
   target ≥ 1200x real time; the ratio to the floor says how close to it we are.
2. Cold start: wall time of ``deepfake-audio check`` on one 10 s file in a fresh
   process, and of ``python -c "import numpy"`` in the same run (medians):
   targets ≤ 0.5 s and ≤ 4x the numpy import.
3. Peak memory (VmHWM of a fresh process): a 10-minute file through
   ``Detector.analyze`` (target ≤ 200 MB) and a 2-hour file decoded block by block
   into ``Detector.analyze_blocks`` (target ≤ 250 MB; skipped by ``--quick``).

The load average is printed at the start and the end: on a shared machine the
absolute figures move with it, the ratios much less.
"""

from __future__ import annotations

import os

# One BLAS thread before numpy loads: "per core" figures, no idle-thread spinning.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import io  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SR = 16_000
FAILED: list[str] = []


def speech_like(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Harmonic 'voice' with a wandering pitch, syllable envelope and a noise floor."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 20))
    envelope = np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 0.5
    y = 0.2 * voice * envelope + 0.003 * rng.standard_normal(len(t))
    return (y / np.max(np.abs(y)) * 0.8).astype(np.float32)


def wav_bytes(seconds: float, sr: int = SR) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, speech_like(seconds, sr), sr, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def check(label: str, value: float, limit: float, *, at_most: bool = True) -> str:
    ok = value <= limit if at_most else value >= limit
    if not ok:
        FAILED.append(label)
    return f"[{'ok' if ok else 'MISSED'}: {'<=' if at_most else '>='} {limit:g}]"


def best_cpu(runs: list[Callable[[], object]], repeats: int) -> list[float]:
    """Best CPU time of each of ``runs``, taken in turns so they share the machine's state."""
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, samples in zip(runs, times, strict=True):
            started = time.process_time()
            run()
            samples.append(time.process_time() - started)
    return [min(samples) for samples in times]


def throughput(repeats: int, target: float) -> None:
    from deepfake_audio import Detector
    from deepfake_audio.audio import load_audio
    from deepfake_audio.features import _analysis_window, _frames

    detector = Detector()
    detector.warm_up()
    config = detector.feature_config
    window = _analysis_window(config.win_length, config.n_fft).astype(np.float64)

    def floor(data: bytes) -> None:
        samples = load_audio(data, target_sr=config.sample_rate).samples
        np.fft.rfft(_frames(samples, config) * window, axis=1)

    for seconds in (10, 60):
        data = wav_bytes(seconds)
        floor(data)
        full, base = best_cpu([lambda data=data: detector.analyze(data),  # type: ignore[misc]
                               lambda data=data: floor(data)], repeats)  # type: ignore[misc]
        verdict = check(f"throughput {seconds} s", seconds / full, target, at_most=False) \
            if seconds == 60 else ""
        print(f"end-to-end {seconds:>2} s WAV: {full * 1000:6.1f} ms CPU = {seconds / full:5.0f}x"
              f" real time per core {verdict}; decode + one STFT {base * 1000:5.1f} ms ="
              f" {seconds / base:5.0f}x; end-to-end / floor = {full / base:.2f}")


def wall_median(command: list[str], repeats: int, cwd: Path | None = None) -> float:
    subprocess.run(command, check=True, capture_output=True, cwd=cwd)  # warm the file cache
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=cwd)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def cold_start(tmp: Path, repeats: int, limit_s: float, limit_ratio: float) -> None:
    path = tmp / "one_10s.wav"
    path.write_bytes(wav_bytes(10))
    numpy_s = wall_median([sys.executable, "-c", "import numpy"], repeats)
    check_s = wall_median([sys.executable, "-m", "deepfake_audio", "check", str(path)], repeats)
    ratio = check_s / numpy_s
    print(f"cold start: deepfake-audio check one_10s.wav {check_s:.3f} s"
          f" {check('cold start s', check_s, limit_s)}; python -c 'import numpy' {numpy_s:.3f} s;"
          f" ratio {ratio:.2f} {check('cold start ratio', ratio, limit_ratio)}"
          f" (medians of {repeats})")


_MEMORY_CHILD = """
import re, sys
import numpy as np
import soundfile as sf
def hwm():
    text = open('/proc/self/status').read()
    return int(re.search(r'VmHWM:\\s+(\\d+)', text).group(1)) // 1024
from deepfake_audio import Detector
detector = Detector()
loaded = hwm()
path, mode = sys.argv[1], sys.argv[2]
if mode == "whole":
    result = detector.analyze(path)
else:  # block by block: a first pass for the peak, then the features
    with sf.SoundFile(path) as handle:
        peak = max(float(np.max(np.abs(b))) for b in handle.blocks(65536, dtype="float32"))
    with sf.SoundFile(path) as handle:
        result = detector.analyze_blocks(handle.blocks(65536, dtype="float32"), peak=peak)
print(loaded, hwm(), len(result.timeline), result.duration_s)
"""


def write_long_wav(path: Path, seconds: int) -> None:
    """A long file written a minute at a time (never held in memory whole)."""
    minute = speech_like(60)
    rng = np.random.default_rng(1)
    with sf.SoundFile(path, "w", samplerate=SR, channels=1, subtype="PCM_16") as handle:
        for start in range(0, seconds, 60):
            gain = np.float32(rng.uniform(0.5, 1.0))
            handle.write(minute[: (min(seconds - start, 60)) * SR] * gain)


def peak_memory(tmp: Path, seconds: int, mode: str, limit_mb: float) -> None:
    path = tmp / f"long_{seconds}s.wav"
    write_long_wav(path, seconds)
    out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(path), mode], check=True,
                         capture_output=True, text=True, cwd=ROOT).stdout.split()
    path.unlink()
    loaded, peak, windows = int(out[0]), int(out[1]), int(out[2])
    how = "Detector.analyze" if mode == "whole" else "blocks -> Detector.analyze_blocks"
    print(f"memory, {seconds / 60:g}-minute file via {how}: peak RSS {peak} MB"
          f" {check(f'memory {seconds} s', peak, limit_mb)} (model loaded {loaded} MB;"
          f" {windows} windows)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="CI smoke run: fewer repeats, no 2-hour file, loose limits")
    args = parser.parse_args(argv)
    # --quick guards against gross regressions on a slow, shared CI machine only.
    limits = ({"x": 100, "cold": 5.0, "ratio": 20.0, "mem10": 400}
              if args.quick else {"x": 1200, "cold": 0.5, "ratio": 4.0, "mem10": 200})
    repeats = 3 if args.quick else 9
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} CPUs,"
          f" load average {os.getloadavg()[0]:.1f} (start){' [quick]' if args.quick else ''}")
    throughput(repeats, limits["x"])
    with tempfile.TemporaryDirectory() as tmp:
        cold_start(Path(tmp), 3 if args.quick else 7, limits["cold"], limits["ratio"])
        peak_memory(Path(tmp), 600, "whole", limits["mem10"])
        if not args.quick:
            peak_memory(Path(tmp), 7200, "blocks", 250)
    print(f"load average {os.getloadavg()[0]:.1f} (end);"
          f" {'all targets met' if not FAILED else 'missed: ' + ', '.join(FAILED)}")
    return 1 if FAILED and args.quick else 0


if __name__ == "__main__":
    raise SystemExit(main())
