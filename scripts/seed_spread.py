#!/usr/bin/env python
"""How much the unseen-protocol figures move with the training seed alone (issue 13).

    python scripts/seed_spread.py --data ../shared/data --seeds 0 1 2   # ~9 min per seed on 2 CPUs

The bundled recipe draws at random which augmentation each clip's copy gets (and its
parameters), which 6 windows of a long clip train, and the boosted trees' early-stopping
split; ``TrainSettings.seed`` (0 for the bundled model) fixes all of them. This script
fits the unseen protocol's fold models as ``scripts/fit_band.py`` does
(:func:`deepfake_audio.evaluation.unseen_window_components`: each genuine corpus, with
the fakes made from it, and each generator family held out in turn; every window of each
held-out clip scored) with nothing changed but the seed, and prints per seed the clip
figures of the fused window scores (the bundled fusion constants, no clip view; threshold
where Platt scaling fitted on that row's scores puts it, as ``scripts/fusion_check.py``
prints), their mean and spread, and an ensemble row: the models' window scores averaged
over the seeds, per model, before fusing.

Per-seed window scores are kept in ``--out``/``seed-<N>-components.npz`` (reused when
present). Recipe differences smaller than the spread printed here are not evidence.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from fit_band import load_components, save_components  # noqa: E402
from fusion_check import figures  # noqa: E402

from deepfake_audio import fitting  # noqa: E402
from deepfake_audio.boosting import Fusion  # noqa: E402
from deepfake_audio.datasets import load_datasets  # noqa: E402
from deepfake_audio.evaluation import unseen_window_components  # noqa: E402
from deepfake_audio.model import load_model  # noqa: E402
from deepfake_audio.pool import without_decoder_noise  # noqa: E402

COLUMNS = ("eer", "balanced_eer", "roc_auc", "real_called_real", "fake_called_fake")


def clip_scores(windows: list[np.ndarray], fusion: Fusion | None) -> np.ndarray:
    """Each clip's mean fused window score (NaN for clips without scored windows)."""
    return np.array([float(np.mean(fitting.fused(w, fusion))) if len(w) else np.nan
                     for w in windows])


def row(name: str, values: dict[str, float]) -> str:
    return (f"{name:<22} {values['eer']:8.2%} {values['balanced_eer']:9.2%}"
            f" {values['roc_auc']:8.4f} {values['real_called_real']:10.1%}"
            f" {values['fake_called_fake']:10.1%}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--model", default=str(ROOT / "deepfake_audio" / "models" / "default"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cache", type=Path, default=ROOT / "build" / "feature-cache")
    parser.add_argument("--out", type=Path, default=ROOT / "build")
    parser.add_argument("-j", "--jobs", type=int, default=2)
    args = parser.parse_args()

    clips = load_datasets([args.data])
    model = load_model(args.model)
    base = fitting.TrainSettings.from_stored(model.metadata.training["settings"])
    runs: list[list[np.ndarray]] = []
    for seed in args.seeds:
        path = args.out / f"seed-{seed}-components.npz"
        if not path.is_file():
            started = time.time()
            with without_decoder_noise():
                components = unseen_window_components(
                    clips, model_dir=args.model, jobs=args.jobs, cache_dir=args.cache,
                    progress=False, settings=replace(base, seed=seed))
            save_components(path, components.windows)
            print(f"({path.name}: {time.time() - started:.0f} s)", flush=True)
        runs.append(load_components(path))

    fusion = model.metadata.fusion
    print(f"unseen protocol, every window of {len(clips)} clips; {model.metadata.model_id}'s"
          f" recipe (stored seed {base.seed}) with only the seed changed")
    print(f"{'seed':<22} {'EER':>8} {'balanced':>9} {'ROC-AUC':>8} {'real->real':>10}"
          f" {'fake->fake':>10}")
    per_seed = []
    for seed, windows in zip(args.seeds, runs, strict=True):
        per_seed.append(figures(clip_scores(windows, fusion), clips))
        print(row(str(seed), per_seed[-1]))
    mean = {key: float(np.mean([f[key] for f in per_seed])) for key in COLUMNS}
    spread = {key: float(np.std([f[key] for f in per_seed], ddof=1)) if len(per_seed) > 1
              else 0.0 for key in COLUMNS}
    print(row("mean", mean))
    print(row("standard deviation", spread))
    if len(runs) > 1:
        averaged = [np.mean([run[i] for run in runs], axis=0) if len(runs[0][i]) else runs[0][i]
                    for i in range(len(clips))]
        print(row(f"ensemble of {len(runs)}", figures(clip_scores(averaged, fusion), clips)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
