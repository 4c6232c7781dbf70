#!/usr/bin/env python
"""Feature and training ablation under held-out protocols (prints the model card's tables).

    python scripts/ablation.py [--jobs 2] [--variants "artefact means (2026.11.2);mfcc"]

For each variant, on ``../shared/data`` plus ``build/generated`` and ``build/registry``
(``scripts/train_default.py`` makes both): genuine clips are scored
leave-one-corpus-out and fakes leave-one-generator-out ("unseen"), and the threshold
is calibrated on those scores as for the bundled model. It prints the unseen EER
pooled over clips and balanced (every corpus and generator family weighted equally),
the worst and mean EER over neural-vocoder families, the share of genuine clips called
real when their corpus is held out, and speaker-grouped CV EER for reference.
Features are extracted once with every group and every mean, then sliced.

It measures the recipe of ``default-2026.11.2`` (artefact means, one augmented copy, up to
6 windows, gamma 0.001) on that release's pool; ``default-2026.11.3`` (trained on the
three batches of ``../shared/data`` only, with other defaults) is not described by it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deepfake_audio import feature_table, fitting, held_out, metrics  # noqa: E402
from deepfake_audio.datasets import Clip, load_dataset  # noqa: E402
from deepfake_audio.features import ALL_GROUPS, FeatureConfig, feature_names  # noqa: E402
from deepfake_audio.model import Calibration  # noqa: E402

VOCODERS = ("hifigan", "melgan", "wavegan", "bigvgan", "vocos", "istftnet", "waveglow")

DEFAULT_VARIANT = "artefact means (2026.11.2)"
VARIANTS: dict[str, dict] = {
    "mfcc": {"groups": ("mfcc",), "means": "all"},
    "mfcc+delta": {"groups": ("mfcc", "mfcc_delta"), "means": "all"},
    "lfcc+delta": {"groups": ("lfcc", "lfcc_delta"), "means": "all"},
    "mfcc+lfcc": {"groups": ("mfcc", "mfcc_delta", "lfcc", "lfcc_delta"), "means": "all"},
    "+spectral": {"groups": ("mfcc", "mfcc_delta", "lfcc", "lfcc_delta", "spectral"),
                  "means": "all"},
    "+phase, all means": {"groups": ALL_GROUPS, "means": "all"},
    "no cepstral means": {"groups": ALL_GROUPS, "means": "no-cepstral"},
    DEFAULT_VARIANT: {"groups": ALL_GROUPS, "means": "artefact"},
    "no augmentation": {"groups": ALL_GROUPS, "augment": False},
    "no class/corpus balancing": {"groups": ALL_GROUPS, "balance": False},
    "C=10, gamma=scale": {"groups": ALL_GROUPS, "C": 10.0, "gamma": "scale"},
    "without registry data": {"groups": ALL_GROUPS, "registry": False},
}
EXCLUDED_GENERATORS = ("griffinlim",)
# Extracted once; every variant is a column slice. The 2026.11.2 recipe's blocks only
# (the 2026.11.6 blocks have their own screen: scripts/feature_screen.py).
BASE_CONFIG = FeatureConfig(shape_groups=(), modulation=False)
FULL_CONFIG = replace(BASE_CONFIG, means="all")


def is_vocoder(family: str) -> bool:
    return any(v in family for v in VOCODERS)


def run_variant(name: str, spec: dict, clips: list[Clip], full: feature_table.FeatureTable,
                settings: fitting.TrainSettings, jobs: int, registry: set[Path]) -> dict:
    config = replace(BASE_CONFIG, groups=tuple(spec["groups"]),
                     means=spec.get("means", "artefact"))
    all_names = feature_names(FULL_CONFIG)
    wanted = set(feature_names(config))
    columns = np.array([i for i, n in enumerate(all_names) if n in wanted])
    keep_clip = np.array([spec.get("registry", True) or c.path not in registry for c in clips])
    keep_row = keep_clip[full.clip_index]
    if not spec.get("augment", True):
        keep_row &= ~full.augmented
    new_index = np.cumsum(keep_clip) - 1
    table = feature_table.FeatureTable(full.matrix[keep_row][:, columns],
                                  new_index[full.clip_index[keep_row]], full.augmented[keep_row])
    clips = [c for c, k in zip(clips, keep_clip, strict=True) if k]
    settings = replace(settings, balance=spec.get("balance", settings.balance),
                       C=spec.get("C", settings.C), gamma=spec.get("gamma", settings.gamma))
    labels = np.array([c.label for c in clips])
    folds = held_out.grouped_folds(clips, settings.calibration_folds, settings.seed)
    oof = held_out.out_of_fold_scores(clips, table, settings, folds, jobs=jobs, progress=False)
    unseen = held_out.unseen_scores(clips, table, settings, jobs=jobs, progress=False)
    unseen = np.where(np.isnan(unseen), oof, unseen)
    threshold = Calibration.fit(unseen, labels).raw_score_at(0.5)  # as training.train()
    families = metrics.per_group_table(clips, unseen, threshold, lambda c: c.family)
    vocoder_eers = [r["eer"] for r in families if "eer" in r and is_vocoder(r["group"])]
    real_mask = labels == 0
    corpora = metrics.per_group_table(clips, np.where(real_mask, unseen, np.nan), threshold,
                                       lambda c: c.corpus)
    return {
        "variant": name, "dims": len(columns),
        "speaker_cv_eer": metrics.equal_error_rate(labels, oof)[0],
        "unseen_eer": metrics.equal_error_rate(labels, unseen)[0],
        "unseen_balanced_eer": metrics.equal_error_rate(
            labels, unseen, metrics.group_balanced_weights(clips))[0],
        "worst_vocoder_eer": max(vocoder_eers),
        "mean_vocoder_eer": float(np.mean(vocoder_eers)),
        "loco_real_called_real": float(np.mean(unseen[real_mask] <= threshold)),
        "per_family": families, "loco_per_corpus": corpora,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--generated", default=str(ROOT / "build" / "generated"))
    parser.add_argument("--registry", default=str(ROOT / "build" / "registry"))
    parser.add_argument("--cache", default=str(ROOT / "build" / "feature-cache"))
    parser.add_argument("--variants", default=";".join(VARIANTS),
                        help="';'-separated variant names")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--output", metavar="FILE", default=str(ROOT / "build" / "ablation.json"),
                        help="write every variant's figures here as JSON")
    args = parser.parse_args()

    # Same clips in the same order as scripts/train_default.py: a clip's augmentation is
    # seeded by its position, so the default row reproduces the bundled model's figures.
    clips = load_dataset(args.data)
    for folder in (args.generated, args.registry):
        if not Path(folder, "manifest.csv").is_file():
            sys.exit(f"{folder}/manifest.csv missing: run scripts/train_default.py first")
        extra = [c for c in load_dataset(folder)
                 if c.generator not in EXCLUDED_GENERATORS]
        clips += extra
    registry = {c.path for c in extra}
    # default-2026.11.2's recipe, which the variants depart from.
    settings = fitting.TrainSettings(C=10.0, gamma=0.001, augment_copies=1, max_windows=6)
    started = time.time()
    full = feature_table.extract_dataset(clips, FULL_CONFIG, augment_copies=settings.augment_copies,
                                    max_windows=settings.max_windows, seed=settings.seed,
                                    jobs=args.jobs, cache_dir=Path(args.cache))
    results = []
    header = (f"{'variant':<26} {'dims':>4} {'unseen EER':>10} {'balanced':>8}"
              f" {'worst voc.':>10} {'mean voc.':>9} {'LOCO real':>9} {'spk-CV EER':>10}")
    print(header)
    for name in args.variants.split(";"):
        r = run_variant(name, VARIANTS[name], clips, full, settings, args.jobs, registry)
        results.append(r)
        print(f"{name:<26} {r['dims']:>4} {r['unseen_eer'] * 100:9.1f}%"
              f" {r['unseen_balanced_eer'] * 100:7.1f}% {r['worst_vocoder_eer'] * 100:9.1f}%"
              f" {r['mean_vocoder_eer'] * 100:8.1f}% {r['loco_real_called_real'] * 100:8.1f}%"
              f" {r['speaker_cv_eer'] * 100:9.1f}%", flush=True)
    best = next((r for r in results if r["variant"] == DEFAULT_VARIANT), results[0])
    print()
    print(metrics.format_table(best["per_family"], f"per family, held out ({best['variant']})"))
    print()
    print(metrics.format_table(best["loco_per_corpus"], f"genuine, LOCO ({best['variant']})"))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=1) + "\n")
    print(f"\n{len(clips)} clips, {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
