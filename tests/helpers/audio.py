"""The bundled test clips and synthetic, deterministic test audio (numpy + soundfile)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from . import ROOT

DATA_DIR = ROOT / "tests" / "data"
REAL_CLIP = DATA_DIR / "real_librispeech.flac"
FAKE_CLIP = DATA_DIR / "fake_espeak.wav"
SR = 16_000


def clip(path: Path) -> Path:
    """``path``, or skip the test when the bundled clip is missing."""
    if not path.is_file():
        pytest.skip(f"test clip {path} is not there")
    return path


def tone(seconds: float, sr: int = SR, seed: int = 0, amplitude: float = 0.3) -> np.ndarray:
    """A vibrato tone with a little noise: plenty for plumbing tests."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = amplitude * np.sin(2 * np.pi * (180 + 20 * np.sin(2 * np.pi * 3 * t)) * t)
    return (y + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def encode(samples: np.ndarray, sr: int = SR, fmt: str = "WAV",
           subtype: str | None = None) -> bytes:
    """Encode with soundfile (WAV, FLAC, OGG, MP3, AIFF, ...) to bytes."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, sr, format=fmt, subtype=subtype)
    return buffer.getvalue()


def wav_bytes(seconds: float, sr: int = SR, seed: int = 0) -> bytes:
    return encode(tone(seconds, sr, seed), sr, "WAV", "PCM_16")


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def wav_of_size(total: int) -> bytes:
    """A valid 16 kHz mono PCM-16 WAV of exactly ``total`` bytes (44-byte header)."""
    frames = (total - 44) // 2
    t = np.arange(frames) / 16_000
    samples = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * np.random.default_rng(0).standard_normal(
        frames)
    data = encode(samples.astype(np.float32), 16_000, "WAV", "PCM_16")
    assert len(data) == total, (len(data), total)
    return data


class AudioGen:
    """Synthetic test signals and encoders (all deterministic)."""

    @staticmethod
    def tone(sr: int, seconds: float = 1.0, freq: float = 440.0, amplitude: float = 0.5,
             channels: int = 1) -> np.ndarray:
        """A sine; ``(n,)`` for mono, ``(n, channels)`` otherwise (same tone on every channel)."""
        t = np.arange(round(sr * seconds)) / sr
        y = amplitude * np.sin(2 * np.pi * freq * t)
        return np.repeat(y[:, None], channels, axis=1) if channels > 1 else y

    @staticmethod
    def speechlike(sr: int, seconds: float = 2.0, seed: int = 0, f0: float = 140.0) -> np.ndarray:
        """Harmonic "voice" with vibrato, syllable-rate envelope and a little breath noise."""
        rng = np.random.default_rng(seed)
        n = round(sr * seconds)
        t = np.arange(n) / sr
        pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * 5.0 * t + rng.uniform(0, 6)))
        phase = 2 * np.pi * np.cumsum(pitch) / sr
        y = sum(np.sin(k * phase) / k for k in range(1, 12) if k * f0 < sr / 2 * 0.9)
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.5 * t + rng.uniform(0, 6)) ** 2
        y = y * envelope + 0.05 * rng.standard_normal(n)
        return 0.3 * y / np.max(np.abs(y))

    @staticmethod
    def noise(sr: int, seconds: float = 2.0, seed: int = 0, amplitude: float = 0.2) -> np.ndarray:
        """Band-shaped noise with a slow envelope (our stand-in for "real" recordings)."""
        rng = np.random.default_rng(seed)
        n = round(sr * seconds)
        y = np.convolve(rng.standard_normal(n), np.ones(4) / 4, mode="same")
        t = np.arange(n) / sr
        y *= 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(1, 4) * t)
        return amplitude * y / np.max(np.abs(y))

    encode = staticmethod(encode)

    @classmethod
    def write(cls, path: Path, samples: np.ndarray, sr: int, fmt: str | None = None,
              subtype: str | None = None) -> Path:
        """Write a file; the format defaults to the one the suffix names."""
        fmt = fmt or {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}[path.suffix]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(cls.encode(samples, sr, fmt, subtype))
        return path

    @staticmethod
    def dominant_hz(samples: np.ndarray, sr: int) -> float:
        spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
        return float(np.argmax(spectrum) * sr / len(samples))
