#!/usr/bin/env python
"""Feature and training ablation under held-out protocols (prints the model card's tables).

    python scripts/ablation.py [--jobs 2] [--variants all,mfcc,...]

For each variant it reports, on ``../shared/data`` plus ``build/generated``:
pooled EER and worst neural-vocoder EER under leave-one-generator-out (fakes of a
family scored by a model that never saw that family; genuine clips by
speaker-grouped 5-fold CV), and the share of genuine clips called real under
leave-one-corpus-out. Features are extracted once with every group and sliced.
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

from deepfake_audio import training  # noqa: E402
from deepfake_audio.features import ALL_GROUPS, FeatureConfig, feature_names  # noqa: E402

VOCODERS = ("hifigan", "melgan", "wavegan", "bigvgan", "vocos", "istftnet", "waveglow")

VARIANTS: dict[str, dict] = {
    "mfcc": {"groups": ("mfcc",)},
    "mfcc+delta": {"groups": ("mfcc", "mfcc_delta")},
    "lfcc+delta": {"groups": ("lfcc", "lfcc_delta")},
    "mfcc+lfcc": {"groups": ("mfcc", "mfcc_delta", "lfcc", "lfcc_delta")},
    "+spectral": {"groups": ("mfcc", "mfcc_delta", "lfcc", "lfcc_delta", "spectral")},
    "+phase (default)": {"groups": ALL_GROUPS},
    "no cepstral means": {"groups": ALL_GROUPS, "means": "no-cepstral"},
    "no augmentation": {"groups": ALL_GROUPS, "augment": False},
    "no class/corpus balancing": {"groups": ALL_GROUPS, "balance": False},
    "C=10, gamma=scale": {"groups": ALL_GROUPS, "C": 10.0, "gamma": "scale"},
    "+ griffinlim data": {"groups": ALL_GROUPS, "with_griffinlim": True},
}
EXCLUDED_GENERATORS = ("griffinlim",)


def is_vocoder(family: str) -> bool:
    return any(v in family for v in VOCODERS)


def run_variant(name: str, spec: dict, clips, full: training.FeatureTable, settings,
                jobs: int) -> dict:
    config = replace(FeatureConfig(), groups=tuple(spec["groups"]),
                     means=spec.get("means", "all"))
    all_names = feature_names(FeatureConfig())
    wanted = set(feature_names(config))
    columns = np.array([i for i, n in enumerate(all_names) if n in wanted])
    keep_clip = np.array([spec.get("with_griffinlim", False)
                          or c.generator not in EXCLUDED_GENERATORS for c in clips])
    keep_row = keep_clip[full.clip_index]
    if not spec.get("augment", True):
        keep_row &= ~full.augmented
    new_index = np.cumsum(keep_clip) - 1
    table = training.FeatureTable(full.matrix[keep_row][:, columns],
                                  new_index[full.clip_index[keep_row]], full.augmented[keep_row])
    clips = [c for c, k in zip(clips, keep_clip, strict=True) if k]
    settings = replace(settings, balance=spec.get("balance", settings.balance),
                       C=spec.get("C", settings.C), gamma=spec.get("gamma", settings.gamma))
    labels = np.array([c.label for c in clips])
    folds = training.grouped_folds(clips, settings.calibration_folds, settings.seed)
    oof = training.out_of_fold_scores(clips, table, settings, folds, jobs=jobs, progress=False)
    logo = training.leave_one_out(clips, table, settings, lambda c: c.family, label=1, jobs=jobs,
                                  progress=False)
    loco = training.leave_one_out(clips, table, settings, lambda c: c.corpus, label=0, jobs=jobs,
                                  progress=False)
    a, b = training.fit_platt(oof[~np.isnan(oof)], labels[~np.isnan(oof)])
    threshold = -b / a
    raw = oof.copy()
    raw[labels == 1] = logo[labels == 1]
    pooled = training.summarise(labels, raw, threshold)
    families = training.per_group_table(clips, raw, threshold, lambda c: c.family)
    vocoder_eers = [r["eer"] for r in families if "eer" in r and is_vocoder(r["group"])]
    real_mask = labels == 0
    loco_real = float(np.mean(loco[real_mask] <= threshold))
    corpora = training.per_group_table(clips, np.where(real_mask, loco, np.nan), threshold,
                                       lambda c: c.corpus)
    return {
        "variant": name, "dims": len(columns), "speaker_cv_eer": training.summarise(
            labels, oof, threshold)["eer"],
        "logo_pooled_eer": pooled["eer"], "logo_worst_vocoder_eer": max(vocoder_eers),
        "logo_mean_vocoder_eer": float(np.mean(vocoder_eers)),
        "loco_real_called_real": loco_real, "per_family": families, "loco_per_corpus": corpora,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--generated", default=str(ROOT / "build" / "generated"))
    parser.add_argument("--cache", default=str(ROOT / "build" / "feature-cache"))
    parser.add_argument("--variants", default=";".join(VARIANTS),
                        help="';'-separated variant names")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", default=str(ROOT / "build" / "ablation.json"))
    args = parser.parse_args()

    clips = training.load_dataset(args.data)
    if Path(args.generated, "manifest.csv").is_file():
        clips += training.load_dataset(args.generated)
    settings = training.TrainSettings()
    started = time.time()
    full = training.extract_dataset(clips, FeatureConfig(), augment_copies=settings.augment_copies,
                                    max_windows=settings.max_windows, seed=settings.seed,
                                    jobs=args.jobs, cache_dir=Path(args.cache))
    results = []
    header = (f"{'variant':<28} {'dims':>5} {'spk-CV EER':>10} {'LOGO EER':>9}"
              f" {'worst voc.':>10} {'mean voc.':>9} {'LOCO real':>9}")
    print(header)
    for name in args.variants.split(";"):
        r = run_variant(name, VARIANTS[name], clips, full, settings, args.jobs)
        results.append(r)
        print(f"{name:<28} {r['dims']:>5} {r['speaker_cv_eer'] * 100:9.1f}%"
              f" {r['logo_pooled_eer'] * 100:8.1f}% {r['logo_worst_vocoder_eer'] * 100:9.1f}%"
              f" {r['logo_mean_vocoder_eer'] * 100:8.1f}% {r['loco_real_called_real'] * 100:8.1f}%",
              flush=True)
    best = next((r for r in results if r["variant"] == "+phase (default)"), results[0])
    print()
    print(training.format_table(best["per_family"], f"per family, LOGO ({best['variant']})"))
    print()
    print(training.format_table(best["loco_per_corpus"], f"genuine, LOCO ({best['variant']})"))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    print(f"\n{len(clips)} clips, {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
