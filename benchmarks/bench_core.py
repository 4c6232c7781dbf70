#!/usr/bin/env python
"""Core speed and memory benchmark: every issue-16 target, as ratios measured in one run.

    python benchmarks/bench_core.py           # the figures quoted in docs and notes
    python benchmarks/bench_core.py --quick   # CI smoke run: short, loose limits, exit 1 if broken

1. Throughput, one core (one BLAS thread, CPU time of this process, best of N): a
   16 kHz 16-bit WAV from bytes → decode → features → SVM → result, for 10 s and
   60 s clips, beside "decode + one STFT" of the same bytes (the practical floor):
   target ≥ 1200x real time; the ratio to the floor says how close to it we are.
   The 60 s clip also without the speech gate (what the gate costs) and as a
   44.1 kHz AAC M4A (what FFmpeg decoding and resampling cost).
   Short clips: 5 s WAVs analysed back to back in a fresh process, with the heap
   thresholds :class:`Detector` sets (:mod:`deepfake_audio.heap`) and with glibc's
   defaults: CPU time and page faults per analysis.
2. Cold start: wall time of ``deepfake-audio check`` on one 10 s file in a fresh
   process, and of ``python -c "import numpy"`` in the same run (medians, bytecode
   cached for both as after ``pip install``): targets ≤ 0.5 s and ≤ 4x the numpy import.
3. Peak memory (VmHWM of a fresh process), wall and CPU time of ``Detector.analyze``
   on files (decoded and scored block by block): a 10-minute WAV (target ≤ 200 MB),
   a 2-hour 16 kHz WAV and a 2-hour 44.1 kHz AAC M4A (target ≤ 250 MB; the 2-hour
   files are skipped by ``--quick``).

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
sys.path.insert(0, str(ROOT))  # measure this checkout, not whichever copy is installed
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
    ungated = Detector(speech_gate=False)
    for d in (detector, ungated):
        d.warm_up()
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
    for label, d, data in (("60 s WAV, no speech gate", ungated, wav_bytes(60)),
                           ("60 s 44.1 kHz AAC M4A", detector, m4a_bytes(60))):
        (best,) = best_cpu([lambda d=d, data=data: d.analyze(data)], repeats)  # type: ignore[misc]
        print(f"end-to-end {label}: {best * 1000:6.1f} ms CPU = {60 / best:5.0f}x"
              " real time per core")


_SHORT_CHILD = """
import resource, sys
sys.path.insert(0, sys.argv[3])
from bench_core import wav_bytes
from deepfake_audio import Detector, heap
if sys.argv[1] == "default":
    heap._state["applied"] = False  # as if glibc's self-adjusting thresholds were kept
detector = Detector()
data = wav_bytes(5)
for _ in range(20):
    detector.analyze(data)
before = resource.getrusage(resource.RUSAGE_SELF)
for _ in range(int(sys.argv[2])):
    detector.analyze(data)
after = resource.getrusage(resource.RUSAGE_SELF)
print(after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime,
      after.ru_minflt - before.ru_minflt)
"""


def short_clips(count: int) -> None:
    for heap_mode in ("kept", "default"):
        out = subprocess.run([sys.executable, "-c", _SHORT_CHILD, heap_mode, str(count),
                              str(Path(__file__).resolve().parent)], check=True,
                             capture_output=True, text=True, cwd=ROOT).stdout.split()
        user, system, faults = float(out[0]), float(out[1]), int(out[2])
        label = ("heap thresholds kept (Detector's)" if heap_mode == "kept"
                 else "glibc's default thresholds")
        print(f"5 s WAVs back to back, {label}: {(user + system) * 1000 / count:5.2f} ms CPU"
              f" ({system * 1000 / count:.2f} ms system) = {5 * count / (user + system):5.0f}x"
              f" real time per core; {faults / count:.0f} page faults per analysis")


def wall_median(command: list[str], repeats: int, cwd: Path | None = None) -> float:
    # Bytecode is cached as after ``pip install`` (which compiles it): numpy's is, and a
    # PYTHONDONTWRITEBYTECODE in the environment would leave only ours compiled per run.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(command, check=True, capture_output=True, cwd=cwd, env=env)  # warm caches
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=cwd, env=env)
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
import re, resource, sys, time
def hwm():
    text = open('/proc/self/status').read()
    return int(re.search(r'VmHWM:\\s+(\\d+)', text).group(1)) // 1024
from deepfake_audio import Detector
detector = Detector()
loaded = hwm()
started = time.perf_counter()
result = detector.analyze(sys.argv[1])  # decoded and scored block by block
wall = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_SELF)
print(loaded, hwm(), len(result.timeline), result.duration_s, wall,
      usage.ru_utime + usage.ru_stime)
"""


def write_long_wav(path: Path, seconds: int) -> None:
    """A long file written a minute at a time (never held in memory whole)."""
    minute = speech_like(60)
    rng = np.random.default_rng(1)
    with sf.SoundFile(path, "w", samplerate=SR, channels=1, subtype="PCM_16") as handle:
        for start in range(0, seconds, 60):
            gain = np.float32(rng.uniform(0.5, 1.0))
            handle.write(minute[: (min(seconds - start, 60)) * SR] * gain)


def peak_memory(path: Path, label: str, limit_mb: float) -> None:
    # VmHWM of a fresh process (not ru_maxrss, which a child inherits across fork).
    out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(path)], check=True,
                         capture_output=True, text=True, cwd=ROOT).stdout.split()
    path.unlink()
    loaded, peak, windows = int(out[0]), int(out[1]), int(out[2])
    duration, wall, cpu = (float(v) for v in out[3:])
    print(f"memory, {label} via Detector.analyze: peak RSS {peak} MB"
          f" {check(f'memory {label}', peak, limit_mb)} (model loaded {loaded} MB;"
          f" {windows} windows); {wall:.0f} s wall, {cpu:.0f} s CPU"
          f" ({duration / cpu:.0f}x real time per core incl. start-up)")


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
    short_clips(50 if args.quick else 300)
    with tempfile.TemporaryDirectory() as tmp:
        cold_start(Path(tmp), 3 if args.quick else 7, limits["cold"], limits["ratio"])
        tmp_path = Path(tmp)
        write_long_wav(tmp_path / "ten_minutes.wav", 600)
        peak_memory(tmp_path / "ten_minutes.wav", "10-minute 16 kHz WAV", limits["mem10"])
        if not args.quick:
            write_long_wav(tmp_path / "two_hours.wav", 7200)
            peak_memory(tmp_path / "two_hours.wav", "2-hour 16 kHz WAV", 250)
            write_m4a(tmp_path / "two_hours.m4a", 120)
            peak_memory(tmp_path / "two_hours.m4a", "2-hour 44.1 kHz AAC M4A", 250)
    print(f"load average {os.getloadavg()[0]:.1f} (end);"
          f" {'all targets met' if not FAILED else 'missed: ' + ', '.join(FAILED)}")
    return 1 if FAILED and args.quick else 0


if __name__ == "__main__":
    raise SystemExit(main())
