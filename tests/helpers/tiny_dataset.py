"""A tiny labelled dataset for training tests: noise-like "real", tone-like "fake" clips."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deepfake_audio.datasets import Clip
from tests.helpers.audio import AudioGen

RATES = (16000, 22050, 44100, 8000)


def real_samples(gen: type[AudioGen], i: int, sr: int) -> np.ndarray:
    """The ``i``-th "real" clip: 2 s of noise."""
    return gen.noise(sr, 2.0, seed=100 + i)


def fake_samples(gen: type[AudioGen], i: int, sr: int) -> np.ndarray:
    """The ``i``-th "fake" clip: 2 s of a harmonic voice-like tone."""
    return gen.synthetic_voice(sr, 2.0, seed=200 + i, f0=110.0 + 15 * (i % 12))


def write_tiny_dataset(root: Path, gen: type[AudioGen]) -> Path:
    """12 real and 12 fake clips, 4 speakers each, WAV and FLAC, with ``manifest.csv``."""
    rows = []
    for i in range(12):
        sr = RATES[(i + i // 4) % len(RATES)]  # every speaker spans three rates
        speaker = f"spk{i % 4}"
        for label, make, source, generator in (("real", real_samples, "noisecorpus", "human"),
                                               ("fake", fake_samples, "tonecorpus", "harmonic")):
            rel = f"{label}/{speaker}/{label}{i:02d}.{'flac' if i % 2 else 'wav'}"
            gen.write(root / rel, make(gen, i, sr), sr)
            rows.append({"path": rel, "label": label, "source": source,
                         "generator": generator, "speaker": f"{label}-{speaker}"})
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def split_in_two_corpora(clips: Sequence[Clip]) -> list[Clip]:
    """The tiny data as two genuine corpora and two generators (by speaker)."""
    return [Clip(c.path, c.label, f"{c.source}-{'ab'[int(c.speaker[-1]) // 2]}",
                 f"{c.generator}-{'ab'[int(c.speaker[-1]) // 2]}" if c.label else c.generator,
                 c.speaker) for c in clips]
