#!/usr/bin/env python
"""How a faint noise floor moves the verdicts (model card, "limits").

    python scripts/noise_floor_check.py --data ../shared/data [--model DIR] [--per-group 30]

Synthetic speech often has digital silence between words, genuine recordings never do; a
model can learn that as the mark of a synthetic voice. This adds white noise at fixed
signal-to-noise ratios to the first ``--per-group`` clips of a few generators and genuine
corpora and prints the share called deepfake at each level. The clips are training clips
of the bundled model, so the clean column is optimistic; the trend is the point. The
speech gate is off so that every window of every clip counts, as in the held-out protocols
(at 30 dB SNR a quiet clip's softer words could otherwise drop out).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deepfake_audio import Detector  # noqa: E402
from deepfake_audio.audio import load_audio  # noqa: E402
from deepfake_audio.datasets import load_dataset  # noqa: E402
from deepfake_audio.exceptions import InputError  # noqa: E402

GROUPS = {
    "tortoise-tts (fake)": lambda c: c.label == 1 and c.generator == "tortoise-tts",
    "espeak/flite/festival (fake)": lambda c: c.label == 1 and c.generator in (
        "espeak_gb", "espeak_us", "flite_slt", "festival_kal"),
    "maskgct/voxtream/f5 (fake)": lambda c: c.label == 1 and c.generator in (
        "maskgct", "voxtream", "f5-tts", "openaudio-s1"),
    "librispeech (genuine)": lambda c: c.label == 0 and c.corpus == "librispeech",
    "rtcfake (genuine)": lambda c: c.label == 0 and c.corpus == "rtcfake",
}
SNR_DB = (None, 60.0, 45.0, 30.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--model", default=None)
    parser.add_argument("--per-group", type=int, default=30)
    args = parser.parse_args()

    detector = Detector(model_dir=args.model, speech_gate=False)
    sr = detector.feature_config.sample_rate
    clips = load_dataset(args.data)
    rng = np.random.default_rng(0)
    header = "".join(f"{'clean' if s is None else f'{s:.0f} dB SNR':>12}" for s in SNR_DB)
    print(f"model {detector.model_id}: share called deepfake, white noise added at each SNR")
    print(f"{'group':<30}{'n':>4}{header}")
    for name, wanted in GROUPS.items():
        chosen = [c for c in clips if wanted(c)][: args.per_group]
        flagged = np.zeros(len(SNR_DB))
        for clip in chosen:
            try:
                samples = load_audio(clip.path, target_sr=sr, max_duration_s=None).samples
            except InputError:
                continue
            power = float(np.mean(samples**2)) + 1e-12
            noise = rng.standard_normal(len(samples)).astype(np.float32)
            for i, snr in enumerate(SNR_DB):
                noisy = samples if snr is None else samples + noise * np.float32(
                    np.sqrt(power / 10 ** (snr / 10)))
                flagged[i] += detector.analyze((noisy, sr)).classification == "deepfake"
        shares = "".join(f"{f / max(1, len(chosen)):>12.0%}" for f in flagged)
        print(f"{name:<30}{len(chosen):>4}{shares}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
