#!/usr/bin/env python
"""Which models to fuse beside the SVM? Unseen protocol, one model at a time (issue 13).

    python scripts/fusion_check.py --data ../shared/data         # ~30 min on 2 CPUs
    python scripts/fusion_check.py --data ../shared/data --gmm   # + a GMM likelihood ratio

On the bundled model's window features and training settings (the same table
``train_default.py`` builds), genuine clips are scored leave-one-corpus-out and fakes
leave-one-generator-out, as in ``scripts/unseen_report.py``, three ways:

- the bundled recipe's RBF SVM;
- a ``HistGradientBoostingClassifier`` on the same windows and sample weights (200
  iterations, learning rate 0.05, 15 leaves, at least 40 windows per leaf, L2 1.0);
- both, fused: each model's held-out scores standardised (mean 0, sd 1 over all clips, no
  labels used) and averaged with the SVM weighted 0.25, 0.5 or 0.75 (``default-2026.11.5``
  ships the 0.5 fusion);
- with ``--gmm``: a Gaussian-mixture log-likelihood ratio (16 diagonal components per class
  on the scaled windows, the classical LFCC-GMM detector's rule on these features), alone
  and fused in equal thirds with the other two.

The weights are not fitted, so the fused rows are not tuned on the figures they print.
Scores are cached in ``build/`` so a second run only prints.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deepfake_audio import feature_table, fitting, held_out, metrics  # noqa: E402
from deepfake_audio.datasets import Clip, load_dataset  # noqa: E402
from deepfake_audio.evaluation import _model_settings  # noqa: E402
from deepfake_audio.model import Calibration  # noqa: E402


def fit_boosting(matrix: np.ndarray, labels: np.ndarray, settings: fitting.TrainSettings,
                 weights: np.ndarray | None = None) -> tuple[Any, Any]:
    """Drop-in for :func:`fitting.fit_svm` (``decision_function`` is positive for fakes)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(matrix)
    classifier = HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=40,
        l2_regularization=1.0, random_state=settings.seed)
    classifier.fit(scaler.transform(matrix), labels, sample_weight=weights)
    return classifier, scaler


class GmmRatio:
    """``log p(x | fake) - log p(x | real)`` under one Gaussian mixture per class."""

    classes_ = np.array([0, 1])

    def __init__(self, real: Any, fake: Any) -> None:
        self.real, self.fake = real, fake

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.fake.score_samples(x) - self.real.score_samples(x))


def fit_gmm(matrix: np.ndarray, labels: np.ndarray, settings: fitting.TrainSettings,
            weights: np.ndarray | None = None) -> tuple[GmmRatio, Any]:
    """Drop-in for :func:`fitting.fit_svm` (mixtures take no sample weights)."""
    from sklearn.mixture import GaussianMixture
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(matrix)
    scaled = scaler.transform(matrix)
    mixtures = [GaussianMixture(16, covariance_type="diag", reg_covar=1e-3, max_iter=200,
                                random_state=settings.seed).fit(scaled[labels == label])
                for label in (0, 1)]
    return GmmRatio(*mixtures), scaler


def cached(path: Path, compute: Callable[[], np.ndarray]) -> np.ndarray:
    if path.is_file():
        return np.asarray(np.load(path))
    started = time.time()
    scores = compute()
    np.save(path, scores)
    print(f"({path.name}: {time.time() - started:.0f} s)", flush=True)
    return scores


def figures(scores: np.ndarray, clips: list[Clip]) -> dict[str, float]:
    """Clip figures of ``scores`` (NaN: unscored) at the threshold training would choose
    (Platt scaling fitted on them), plus the group-balanced EER and the clips scored."""
    labels = np.array([c.label for c in clips])
    ok = ~np.isnan(scores)
    threshold = Calibration.fit(scores[ok], labels[ok]).raw_score_at(0.5)
    summary = metrics.summarise(labels[ok], scores[ok], threshold)
    weights = metrics.group_balanced_weights([c for c, k in zip(clips, ok, strict=True) if k])
    return {**summary, "clips": float(ok.sum()),
            "balanced_eer": metrics.equal_error_rate(labels[ok], scores[ok], weights)[0]}


def report(name: str, scores: np.ndarray, clips: list[Clip]) -> None:
    values = figures(scores, clips)
    print(f"{name:30s} {int(values['clips']):5d} {values['eer']:7.2%}"
          f" {values['balanced_eer']:9.2%} {values['roc_auc']:8.4f}"
          f" {values['real_called_real']:10.1%} {values['fake_called_fake']:10.1%}", flush=True)


def standardised(scores: np.ndarray) -> np.ndarray:
    return (scores - np.nanmean(scores)) / np.nanstd(scores)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--cache", default=str(ROOT / "build" / "feature-cache"))
    parser.add_argument("--out", type=Path, default=ROOT / "build")

    parser.add_argument("--gmm", action="store_true", help="also a GMM likelihood ratio")
    args = parser.parse_args()

    clips = load_dataset(args.data)
    recipe = _model_settings(None, False)
    config = recipe.config
    settings = replace(recipe.settings, boosting=False)  # one model per run
    table = feature_table.extract_dataset(
        clips, config, augment_copies=settings.augment_copies, max_windows=settings.max_windows,
        seed=settings.seed, jobs=2, cache_dir=Path(args.cache), progress=False)
    args.out.mkdir(parents=True, exist_ok=True)
    svm = cached(args.out / "fusion-svm-unseen.npy",
                 lambda: held_out.unseen_scores(clips, table, settings, jobs=2, progress=False))
    # The fold loop calls fitting.fit_svm; jobs=1 keeps the swap in this process.
    fitting.fit_svm = fit_boosting
    boosting = cached(args.out / "fusion-hgb-unseen.npy",
                      lambda: held_out.unseen_scores(clips, table, settings, jobs=1,
                                                     progress=False))
    gmm = None
    if args.gmm:
        fitting.fit_svm = fit_gmm
        gmm = cached(args.out / "fusion-gmm-unseen.npy",
                     lambda: held_out.unseen_scores(clips, table, settings, jobs=1,
                                                    progress=False))
    print(f"unseen protocol on {len(clips)} clips, bundled model's features and settings")
    print(f"{'scores':30s} {'clips':>5s} {'EER':>7s} {'balanced':>9s} {'ROC-AUC':>8s}"
          f" {'real->real':>10s} {'fake->fake':>10s}")
    report("SVM alone (2026.11.4 recipe)", svm, clips)
    report("gradient boosting", boosting, clips)
    for weight in (0.25, 0.5, 0.75):
        report(f"fused, SVM weight {weight}",
               weight * standardised(svm) + (1 - weight) * standardised(boosting), clips)
    if gmm is not None:
        report("GMM likelihood ratio", gmm, clips)
        report("SVM + GMM, even", (standardised(svm) + standardised(gmm)) / 2, clips)
        report("SVM + boosting + GMM, thirds",
               (standardised(svm) + standardised(boosting) + standardised(gmm)) / 3, clips)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
