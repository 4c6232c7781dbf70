"""Shared fixtures: the bundled clips, the default detector and synthetic audio.

Everything here is offline and generated in-process (numpy + soundfile), so the
core suite needs neither the training corpus nor a network.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

DATA_DIR = Path(__file__).parent / "data"
REAL_CLIP = DATA_DIR / "real_librispeech.flac"
FAKE_CLIP = DATA_DIR / "fake_espeak.wav"


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

    @staticmethod
    def encode(samples: np.ndarray, sr: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
        """Encode with soundfile (WAV, FLAC, OGG, MP3, AIFF, ...) to bytes."""
        buffer = io.BytesIO()
        sf.write(buffer, samples, sr, format=fmt, subtype=subtype)
        return buffer.getvalue()

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


@pytest.fixture(scope="session")
def gen() -> type[AudioGen]:
    return AudioGen


@pytest.fixture(scope="session")
def real_clip() -> Path:
    return REAL_CLIP


@pytest.fixture(scope="session")
def fake_clip() -> Path:
    return FAKE_CLIP


@pytest.fixture(scope="session")
def detector():
    """The bundled default model, loaded once per session (Detector is read-only)."""
    from deepfake_audio import Detector

    return Detector()


@pytest.fixture
def cli_env() -> dict[str, str]:
    """Environment for CLI subprocesses: no DEEPFAKE_AUDIO_* leaking in from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPFAKE_AUDIO_")}
    env["PYTHONWARNINGS"] = "ignore"
    return env


@pytest.fixture(scope="session")
def cli_commands() -> dict[str, list[str]]:
    """Both ways of starting the CLI: ``python -m deepfake_audio`` and the entry point."""
    commands = {"module": [sys.executable, "-m", "deepfake_audio"]}
    script = Path(sys.executable).parent / "deepfake-audio"
    if script.is_file():
        commands["script"] = [str(script)]
    return commands
