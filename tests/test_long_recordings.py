"""Hours-long recordings are analysed block by block in bounded memory.

Each analysis runs in a fresh process whose peak resident size (``VmHWM``; not
``ru_maxrss``, which keeps the forking parent's peak across exec) is read back, so
the measurement is of that analysis alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

PEAK_RSS_BOUND_MB = 250.0
SR = 16_000

_MEASURE = """
import json, re, sys
from deepfake_audio import Detector
result = Detector().analyze(sys.argv[1])
status = open("/proc/self/status").read()
peak_mb = int(re.search(r"VmHWM:\\s+(\\d+)", status).group(1)) / 1024
print(json.dumps({"peak_mb": peak_mb,
                  "duration_s": result.duration_s, "windows": len(result.timeline),
                  "classification": result.classification}))
"""


def _minute(seed: int = 0) -> np.ndarray:
    """One minute of a harmonic voice-like signal with pauses and a noise floor."""
    rng = np.random.default_rng(seed)
    t = np.arange(60 * SR) / SR
    phase = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 0.7 * t)) / SR
    voice = sum(np.sin(k * phase) / k for k in range(1, 20))
    envelope = np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 0.5
    y = 0.2 * voice * envelope + 0.003 * rng.standard_normal(len(t))
    return (0.8 * y / np.max(np.abs(y))).astype(np.float32)


def write_wav(path: Path, minutes: int) -> Path:
    minute = _minute()
    with sf.SoundFile(path, "w", samplerate=SR, channels=1, subtype="PCM_16") as out:
        for _ in range(minutes):
            out.write(minute)
    return path


def write_m4a(path: Path, minutes: int) -> Path:
    import av

    minute = _minute()
    with av.open(str(path), "w", format="ipod") as out:
        stream = out.add_stream("aac", rate=SR, layout="mono")
        for _ in range(minutes):
            frame = av.AudioFrame.from_ndarray(minute[None, :], format="flt", layout="mono")
            frame.sample_rate = SR
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def measure(path: Path) -> dict[str, float]:
    run = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True,
                         text=True, timeout=3600)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_memory_does_not_grow_with_length(tmp_path):
    """Default suite: 1 vs 8 minutes. Whole-file decoding would add ~31 MB of
    float32 samples (plus features) for the longer one; block-wise adds nothing."""
    short = measure(write_wav(tmp_path / "short.wav", 1))
    long = measure(write_wav(tmp_path / "long.wav", 8))
    assert long["duration_s"] == pytest.approx(480.0)
    assert long["windows"] >= 300
    assert long["peak_mb"] <= PEAK_RSS_BOUND_MB
    assert long["peak_mb"] - short["peak_mb"] < 12.0, (short, long)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("write", [write_wav, write_m4a], ids=["wav", "m4a"])
def test_two_hour_recording_under_the_memory_bound(tmp_path, write):
    path = write(tmp_path / f"two-hours.{write.__name__[-3:]}", 120)
    stats = measure(path)
    assert stats["duration_s"] == pytest.approx(7200.0, abs=1.0)
    assert stats["windows"] >= 4799
    assert stats["peak_mb"] <= PEAK_RSS_BOUND_MB, stats
