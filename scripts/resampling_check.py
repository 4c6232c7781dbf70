#!/usr/bin/env python
"""Does the model read the sample rate? Genuine clips resampled to 16-48 kHz (model card table).

    python scripts/resampling_check.py --data ../shared/data [--model DIR]

Takes every genuine clip of the training manifest recorded at 44.1 kHz or more, resamples it
(soxr HQ) to 16, 22.05, 24, 44.1 and 48 kHz, scores each copy with the bundled (or given)
model and prints, per rate, the mean probability of deepfake, the share called real and the
largest change of any clip's probability against its 48 kHz copy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deepfake_audio import Detector  # noqa: E402
from deepfake_audio.audio import resample  # noqa: E402
from deepfake_audio.datasets import load_dataset  # noqa: E402

RATES = (16_000, 22_050, 24_000, 44_100, 48_000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--model", default=None)
    args = parser.parse_args()

    detector = Detector(args.model, max_duration_s=None)
    clips = [c for c in load_dataset(args.data)
             if c.label == 0 and sf.info(str(c.path)).samplerate >= 44_100]
    probabilities = np.zeros((len(clips), len(RATES)))
    for i, clip in enumerate(clips):
        samples, rate = sf.read(str(clip.path), dtype="float32", always_2d=True)
        mono = samples.mean(axis=1)
        for j, target in enumerate(RATES):
            copy = resample(mono, rate, target)
            probabilities[i, j] = detector.analyze((copy, target)).probability_deepfake
    reference = probabilities[:, RATES.index(48_000)]
    print(f"{len(clips)} genuine clips recorded at >= 44.1 kHz "
          f"({', '.join(sorted({c.corpus for c in clips}))}); model {detector.model_id}")
    print(f"{'rate':>8} {'mean p(deepfake)':>17} {'called real':>12} {'max |change| vs 48k':>20}")
    for j, target in enumerate(RATES):
        column = probabilities[:, j]
        print(f"{target:>8} {column.mean():>17.3f} {np.mean(column <= 0.5) * 100:>11.1f}%"
              f" {np.max(np.abs(column - reference)):>20.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
