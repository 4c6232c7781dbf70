#!/usr/bin/env python
"""Does the fusion hold when a clip is scored on every window? Unseen protocol (issue 13).

    python scripts/window_fusion_check.py --data ../shared/data   # ~20 min on 2 CPUs

Training calibrates and standardises the fusion on clip scores of up to 6 sampled windows
(``scripts/train_default.py``); :class:`~deepfake_audio.Detector` averages every window of
a clip. This script fits the bundled recipe's fold models as ``scripts/fit_band.py`` does
(:func:`deepfake_audio.evaluation.unseen_window_components`: genuine corpora, with the
fakes made from them, and generator families held out one at a time), scores every window of
each held-out clip with the SVM and the boosted trees separately, and prints the clip
figures of each model and of fusions whose constants come from

- ``bundled``: the bundled model's ``fusion`` (fitted on the sampled-window scores), and
- ``window``: these every-window clip scores themselves (no labels used),

with the SVM weighted 0.25, 0.5 and 0.75. Per-model window scores are read from
``build/window-components.npz``, which ``scripts/fit_band.py`` writes (or computed and
written there).

``--clip-view`` adds a second view of each clip, not part of the bundled model: an RBF SVM
(gamma "scale", no augmentation, no balancing) on the *mean* of the clip's sampled window
feature vectors (the training windows of the bundled recipe, from ``--features``), under
the same unseen protocol (``held_out.unseen_scores``), alone and averaged with the bundled
fusion's every-window scores (both standardised over the clips, no labels used). With
``--all-windows`` the mean is over every window of the clip, unaugmented, as a detector
would compute it.

``--svm-c C`` retrains the fold models with the window SVM's C changed (about 25 min on 2
CPUs, then cached); the clip view keeps the bundled recipe.

``--logistic`` (with ``--clip-view``) fits the join instead: a logistic regression
(group-balanced weights) over standardised clip statistics — the window mean, the view, the
SVM and tree means, upper and lower deciles of the window scores — scored leave-one-group-out
(genuine clips by corpus, fakes by family), so no clip is scored by a fusion that saw its group.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from fit_band import DEFAULT_COMPONENTS, load_components, save_components  # noqa: E402
from fusion_check import report, standardised  # noqa: E402

from deepfake_audio import feature_table, fitting, held_out, metrics  # noqa: E402
from deepfake_audio.boosting import Fusion  # noqa: E402
from deepfake_audio.clip_view import view_settings, window_means  # noqa: E402
from deepfake_audio.datasets import Clip, load_dataset  # noqa: E402
from deepfake_audio.evaluation import unseen_window_components  # noqa: E402
from deepfake_audio.model import load_model  # noqa: E402


def window_components(clips: list[Clip], cache: Path, jobs: int,
                      svm_c: float | None = None) -> list[np.ndarray]:
    """Per clip, ``(windows, 2)`` held-out SVM and boosted-tree scores (empty if none)."""
    if cache.is_file():
        return load_components(cache)
    settings = None
    if svm_c is not None:
        stored = load_model().metadata.training["settings"]
        settings = replace(fitting.TrainSettings.from_stored(stored), C=svm_c)
    scored = unseen_window_components(clips, jobs=jobs, progress=False, settings=settings,
                                      cache_dir=ROOT / "build" / "feature-cache")
    save_components(cache, scored.windows)
    return list(scored.windows)


def clip_view_scores(clips: list[Clip], features: Path, jobs: int,
                     all_windows: bool) -> np.ndarray:
    """Unseen-protocol scores of an SVM on each clip's mean window features."""
    metadata = load_model().metadata
    settings = fitting.TrainSettings.from_stored(metadata.training["settings"])
    table = feature_table.extract_dataset(
        clips, metadata.features, augment_copies=0 if all_windows else settings.augment_copies,
        max_windows=0 if all_windows else settings.max_windows, seed=settings.seed, jobs=jobs,
        cache_dir=features, progress=False)
    return held_out.unseen_scores(clips, window_means(table, len(clips)),
                                  view_settings(settings), jobs=jobs, progress=False)


def logistic_join(columns: dict[str, np.ndarray], clips: list[Clip]) -> np.ndarray:
    """Leave-one-group-out scores of a logistic regression over ``columns``."""
    from sklearn.linear_model import LogisticRegression

    matrix = np.column_stack([standardised(c) for c in columns.values()])
    labels = np.array([c.label for c in clips])
    groups = np.array([f"real:{c.corpus}" if c.label == 0 else f"fake:{c.family}"
                       for c in clips])
    usable = ~np.isnan(matrix).any(axis=1)
    weights = np.zeros(len(clips))
    # Every corpus and family counts the same, as in the balanced EER.
    weights[usable] = metrics.group_balanced_weights(
        [c for c, ok in zip(clips, usable, strict=True) if ok])
    scores = np.full(len(clips), np.nan)
    for group in np.unique(groups[usable]):
        held_out = usable & (groups == group)
        fit = usable & ~held_out
        model = LogisticRegression().fit(matrix[fit], labels[fit], sample_weight=weights[fit])
        scores[held_out] = model.decision_function(matrix[held_out])
    return scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=DEFAULT_COMPONENTS)
    parser.add_argument("--clip-view", action="store_true",
                        help="add an SVM on each clip's mean window features (not bundled)")
    parser.add_argument("--all-windows", action="store_true",
                        help="--clip-view: average every window, not the sampled ones")
    parser.add_argument("--logistic", action="store_true",
                        help="--clip-view: also fit the join by logistic regression")
    parser.add_argument("--svm-c", type=float,
                        help="window SVM's C instead of the bundled recipe's (fold models"
                             " retrained; scores kept in build/window-components-C<C>.npz)")
    parser.add_argument("--features", type=Path, default=ROOT / "build" / "feature-cache")
    args = parser.parse_args()

    clips = load_dataset(args.data)
    cache = args.cache
    if args.svm_c is not None and cache == DEFAULT_COMPONENTS:
        cache = cache.with_name(f"window-components-C{args.svm_c:g}.npz")
    windows = window_components(clips, cache, args.jobs, args.svm_c)
    means = np.array([w.mean(axis=0) if len(w) else [np.nan, np.nan] for w in windows])
    stored = load_model().metadata.fusion
    assert stored is not None, "the bundled model has no fusion"
    print(f"unseen protocol, every window of each clip ({len(clips)} clips)")
    print(f"{'scores':30s} {'clips':>5s} {'EER':>7s} {'balanced':>9s} {'ROC-AUC':>8s}"
          f" {'real->real':>10s} {'fake->fake':>10s}")
    report("SVM alone", means[:, 0], clips)
    report("boosted trees alone", means[:, 1], clips)
    for source, base in (("bundled", stored), ("window", Fusion.fit(*means.T))):
        for weight in (0.25, 0.5, 0.75):
            fusion = replace(base, svm_weight=weight)
            report(f"{source} constants, SVM {weight}", fusion.combine(*means.T), clips)
    if args.clip_view:
        bundled = standardised(stored.combine(*means.T))
        view = clip_view_scores(clips, args.features, args.jobs, args.all_windows)
        report("clip view alone", view, clips)
        for weight in (0.25, 0.35, 0.5):
            report(f"bundled + clip view {weight}",
                   (1 - weight) * bundled + weight * standardised(view), clips)
        if args.logistic:
            fused = [stored.combine(*w.T) if len(w) else np.zeros(0) for w in windows]

            def per_clip(statistic: str) -> np.ndarray:
                return np.array([getattr(np, statistic)(f) if len(f) else np.nan
                                 for f in fused])

            def decile(q: float) -> np.ndarray:
                return np.array([np.quantile(f, q) if len(f) else np.nan for f in fused])

            candidates = {"mean": per_clip("mean"), "view": view, "SVM": means[:, 0],
                          "trees": means[:, 1], "q90": decile(0.9), "q10": decile(0.1)}
            for names in (("mean", "view"), ("SVM", "trees", "view"),
                          ("mean", "view", "q90", "q10")):
                report(f"logistic: {'+'.join(names)}",
                       logistic_join({n: candidates[n] for n in names}, clips), clips)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
