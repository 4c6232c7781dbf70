#!/usr/bin/env python
"""Rebuild the bundled default model deterministically.

    python -m venv build/genvenv
    build/genvenv/bin/pip install -e ".[plot]" -r scripts/requirements-generate.txt
    build/genvenv/bin/python scripts/train_default.py

Steps: (1) generate the extra, scripted training data with ``scripts/generate_data.py``
into ``build/generated`` and ``scripts/generate_registry_data.py`` into
``build/registry`` (both skip clips that are already there; the second needs the
packages in ``scripts/requirements-generate.txt``); (2) train on ``../shared/data`` plus
that data, calibrating on genuine clips scored leave-one-corpus-out and fakes scored
leave-one-generator-out; (3) write ``deepfake_audio/models/default`` and print the
figures quoted in ``docs/model-card.md``. Nothing listed as reserved in
``../shared/data/README.md`` is used.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deepfake_audio import training  # noqa: E402
from deepfake_audio.datasets import load_dataset  # noqa: E402
from deepfake_audio.features import FeatureConfig  # noqa: E402
from deepfake_audio.metrics import format_table  # noqa: E402
from deepfake_audio.plots import plot_reliability  # noqa: E402

MODEL_ID = "default-2026.11.2"
# Griffin-Lim from the exact STFT magnitude differs from its source only in phase
# (about 0.1 dB mel error): as "fake" it taught the magnitude features that genuine
# LibriSpeech is fake. Measured with scripts/ablation.py; see docs/model-card.md.
EXCLUDED_GENERATORS = ("griffinlim",)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--generated", default=str(ROOT / "build" / "generated"))
    parser.add_argument("--registry", default=str(ROOT / "build" / "registry"))
    parser.add_argument("--no-generated", action="store_true", help="train on --data only")
    parser.add_argument("--output", default=str(ROOT / "deepfake_audio" / "models" / "default"))
    parser.add_argument("--cache", default=str(ROOT / "build" / "feature-cache"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--reliability-plot", metavar="PNG",
                        default=str(ROOT / "docs" / "reliability-diagram.png"),
                        help="where to write the reliability diagram")
    args = parser.parse_args()

    started = time.time()
    clips = load_dataset(args.data)
    sources = [str(Path(args.data).resolve().name)]
    if not args.no_generated:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "generate_data.py"),
                        "--data", args.data, "--out", args.generated, "--jobs", str(args.jobs)],
                       check=True)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "generate_registry_data.py"),
                        "--shared", args.data, "--out", args.registry], check=True)
        for folder in (args.generated, args.registry):
            clips += [c for c in load_dataset(folder)
                      if c.generator not in EXCLUDED_GENERATORS]
        sources += ["generated (scripts/generate_data.py)",
                    "registry (scripts/generate_registry_data.py)"]
    metadata = training.train(
        clips, args.output, config=FeatureConfig(), settings=training.TrainSettings(),
        model_id=MODEL_ID, jobs=args.jobs, cache_dir=Path(args.cache),
        extra_training_info={"sources": sources, "script": "scripts/train_default.py"},
    )
    plot_reliability(metadata.metrics["reliability"], args.reliability_plot)
    print("calibration scores:", metadata.metrics["protocol"])
    print(json.dumps(metadata.metrics["calibration"], indent=2))
    print("speaker-grouped cross-validation at the same threshold:")
    print(json.dumps(metadata.metrics["out_of_fold"], indent=2))
    print("reliability (calibration scores): predicted -> observed share of deepfakes")
    for row in metadata.metrics["reliability"]:
        print(f"  {row['low']:.1f}-{row['high']:.1f}  n={row['n']:4d}  predicted"
              f" {row['predicted']:.3f}  observed {row['observed']:.3f}")
    print(format_table(metadata.metrics["per_generator"], "generator (held out)"))
    print(format_table(metadata.metrics["per_source"], "source (held out)"))
    print(f"model {metadata.model_id} written to {args.output} in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
