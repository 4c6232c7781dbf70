#!/usr/bin/env python
"""Screen feature blocks under the unseen protocol (issue 13 item 3; model card "Ablation").

    python scripts/feature_screen.py --data ../shared/data                 # whole clips, ~3 min
    python scripts/feature_screen.py --data ../shared/data --level window  # ~25 min on 2 CPUs

Genuine clips are scored by SVMs trained without their corpus (and the fakes made from
it), fakes by SVMs trained without their generator family (``training.unseen_scores``).
Rows: the bundled recipe's blocks without the two added in ``default-2026.11.6``, with
each of them, and with both:

- ``shape``: skewness and excess kurtosis of the static MFCCs per window
  (``FeatureConfig.shape_groups``);
- ``modulation``: the modulation spectrum of the MFCC trajectories
  (``FeatureConfig.modulation``).

``--level clip`` describes each clip by one window over the whole clip, with ``gamma``
"scale", no augmentation and no balancing: quick enough to try many blocks, which is
how these two were found. ``--level window`` is the bundled recipe itself (3 s windows,
up to 6 per clip, one augmented copy, balanced, gamma 0.001), SVM only. Features are
extracted once with every block and sliced per row.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deepfake_audio import feature_table, metrics, training  # noqa: E402
from deepfake_audio.datasets import load_dataset  # noqa: E402
from deepfake_audio.features import FeatureConfig, feature_names  # noqa: E402

FULL = FeatureConfig(means="artefact", shape_groups=("mfcc",), modulation=True)
ROWS = {
    "without both (2026.11.5 blocks)": lambda n: not n.endswith(("_skew", "_kurt"))
    and not n.startswith("mod_"),
    "+ shape": lambda n: not n.startswith("mod_"),
    "+ modulation": lambda n: not n.endswith(("_skew", "_kurt")),
    "+ both (2026.11.6)": lambda n: True,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--level", choices=("clip", "window"), default="clip")
    parser.add_argument("--rows", default="",
                        help="comma-separated row numbers to run (1-4; default: all)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=ROOT / "build" / "feature-cache")
    args = parser.parse_args()

    clips = load_dataset(args.data)
    labels = np.array([c.label for c in clips])
    if args.level == "clip":
        config = FeatureConfig(means="artefact", shape_groups=("mfcc",), modulation=True,
                               window_s=0.0, hop_s=0.0)
        settings = training.TrainSettings(gamma="scale", augment_copies=0, max_windows=0,
                                          balance=False, boosting=False)
    else:
        config = FULL
        settings = training.TrainSettings(gamma=0.001, augment_copies=1, max_windows=6,
                                          boosting=False)
    table = feature_table.extract_dataset(
        clips, config, augment_copies=settings.augment_copies, max_windows=settings.max_windows,
        seed=settings.seed, jobs=args.jobs, cache_dir=args.cache, progress=False)
    names = feature_names(config)
    weights = metrics.group_balanced_weights(clips)
    print(f"unseen protocol, {len(clips)} clips, SVM only, {args.level} level")
    print(f"{'features':34s} {'columns':>7s} {'EER':>7s} {'balanced':>9s} {'ROC-AUC':>8s}"
          f" {'seconds':>8s}")
    chosen = {int(r) for r in args.rows.split(",") if r} or set(range(1, len(ROWS) + 1))
    for number, (row, keep) in enumerate(ROWS.items(), start=1):
        if number not in chosen:
            continue
        started = time.perf_counter()
        columns = [i for i, n in enumerate(names) if keep(n)]
        sliced = feature_table.FeatureTable(table.matrix[:, columns], table.clip_index,
                                            table.augmented)
        scores = training.unseen_scores(clips, sliced, settings, jobs=args.jobs,
                                        progress=False)
        ok = np.isfinite(scores)
        summary = metrics.summarise(labels[ok], scores[ok], 0.0)
        balanced = metrics.equal_error_rate(labels[ok], scores[ok], weights[ok])[0]
        print(f"{row:34s} {len(columns):7d} {summary['eer']:7.2%} {balanced:9.2%}"
              f" {summary['roc_auc']:8.4f} {time.perf_counter() - started:8.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
