"""Clip view: a second model that judges a whole recording from its mean window features.

The window models score each 3 s window and a clip's raw score is the mean of those
scores. The clip view averages the *features* of the clip's speech windows first and
scores that one vector with its own RBF SVM (gamma "scale", one row per clip, no
augmentation): a view of the recording as a whole that ranks clips differently
(``scripts/window_fusion_check.py --clip-view``; docs/model-card.md, "Feature blocks").
:class:`ClipView` averages the two standardised scores and maps the result back to the
window scores' units, so thresholds, the band and segments keep their meaning.

The view's scaler and SVM are stored as plain arrays (``clip_view.npz``, the format of
:class:`~deepfake_audio.compiled.CompiledModel`), hash-checked with the other artefacts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .compiled import CompiledModel, compile_estimators, load_compiled
from .exceptions import ModelLoadError

if TYPE_CHECKING:
    from .datasets import Clip
    from .feature_table import FeatureTable
    from .fitting import TrainSettings

CLIP_VIEW_FILE = "clip_view.npz"


@dataclass(frozen=True)
class ClipView:
    """How the clip view's score joins the window models' clip score (``model.json``).

    ``raw = window_center + window_scale * ((1 - weight) * z(window) + weight * z(view))``
    where each ``z`` standardises by the held-out clip scores' mean and standard deviation
    at training time (no labels used). With ``weight`` 0 the raw score is the window mean.
    """

    weight: float
    window_center: float
    window_scale: float
    view_center: float
    view_scale: float

    def __post_init__(self) -> None:
        if not (0.0 <= self.weight <= 1.0 and self.window_scale > 0 and self.view_scale > 0):
            raise ValueError(f"invalid clip-view parameters: {self}")

    @classmethod
    def fit(cls, weight: float, window: np.ndarray, view: np.ndarray) -> ClipView:
        """Standardisation constants from held-out clip scores of each side (NaN ignored)."""
        return cls(weight, float(np.nanmean(window)), float(np.nanstd(window)),
                   float(np.nanmean(view)), float(np.nanstd(view)))

    def combine(self, window: Any, view: Any) -> np.ndarray:
        """The clip's raw score from its window-model mean and its clip-view score."""
        z = ((1 - self.weight) * (np.asarray(window, dtype=np.float64) - self.window_center)
             / self.window_scale
             + self.weight * (np.asarray(view, dtype=np.float64) - self.view_center)
             / self.view_scale)
        return np.asarray(self.window_center + self.window_scale * z)

    def to_dict(self) -> dict[str, Any]:
        return {"rule": "window_center + window_scale * ((1 - weight) * z(window mean)"
                        " + weight * z(clip view)), per clip",
                "weight": self.weight, "window_center": self.window_center,
                "window_scale": self.window_scale, "view_center": self.view_center,
                "view_scale": self.view_scale}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClipView:
        return cls(float(data["weight"]), float(data["window_center"]),
                   float(data["window_scale"]), float(data["view_center"]),
                   float(data["view_scale"]))


def load_view(directory: Path, rule: ClipView | None, n_features: int) -> CompiledModel | None:
    """The clip view's arrays of a model folder (None when ``rule`` is None).

    ``clip_view.npz`` is hash-checked with the other artefacts before this reads it.
    """
    if rule is None:
        return None
    arrays = load_compiled(directory / CLIP_VIEW_FILE)
    if arrays.n_features != n_features:
        raise ModelLoadError(f"{CLIP_VIEW_FILE} expects {arrays.n_features} features but the"
                             f" feature settings give {n_features}")
    return arrays


def save_view(directory: Path, arrays: CompiledModel | None) -> None:
    """Write the clip view's arrays into a model folder, or remove a stale file."""
    if arrays is None:
        (directory / CLIP_VIEW_FILE).unlink(missing_ok=True)
    else:
        arrays.save(directory / CLIP_VIEW_FILE)


# --------------------------------------------------------------------------- training


def window_means(table: FeatureTable, n_clips: int) -> FeatureTable:
    """One row per clip that has windows: the mean of its unaugmented window rows."""
    from .feature_table import FeatureTable

    original = ~table.augmented
    owner = table.clip_index[original]
    counts = np.bincount(owner, minlength=n_clips)
    sums = np.zeros((n_clips, table.matrix.shape[1]))
    np.add.at(sums, owner, table.matrix[original])
    present = np.flatnonzero(counts)
    return FeatureTable(sums[present] / counts[present, None], present,
                        np.zeros(len(present), dtype=bool))


#: The view's own C, whatever the window SVM's: the C it was chosen and shipped with in
#: 2026.11.7 (``scripts/window_fusion_check.py --clip-view``). The window SVM's C moved
#: to 30 in 2026.11.8 on its own screen; the view was kept as measured.
VIEW_C = 10.0


def view_settings(settings: TrainSettings) -> TrainSettings:
    """The window recipe's seed; C :data:`VIEW_C`, one unweighted row per clip, gamma "scale"."""
    return replace(settings, C=VIEW_C, gamma="scale", augment_copies=0, max_windows=0,
                   balance=False, boosting=False)


def fit_view(clips: Sequence[Clip], table: FeatureTable,
             settings: TrainSettings) -> CompiledModel:
    """Fit the clip view's scaler and SVM on every clip; returned as arrays."""
    from .fitting import fit_svm

    means = window_means(table, len(clips))
    labels = np.array([c.label for c in clips])[means.clip_index]
    classifier, scaler = fit_svm(means.matrix, labels, view_settings(settings))
    return compile_estimators(classifier, scaler, 1)


def held_out_view_scores(clips: Sequence[Clip], table: FeatureTable, settings: TrainSettings,
                         folds: np.ndarray, *, unseen: bool, jobs: int,
                         progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """The clip view's held-out scores: ``(calibration protocol, speaker folds)``.

    With ``unseen`` the first are :func:`~deepfake_audio.held_out.unseen_scores` (the
    speaker-fold score where a group cannot be held out), else the speaker-fold scores.
    """
    from .held_out import out_of_fold_scores, unseen_scores

    means = window_means(table, len(clips))
    recipe = view_settings(settings)
    oof = out_of_fold_scores(clips, means, recipe, folds, jobs=jobs, progress=progress)
    if not unseen:
        return oof, oof
    held = unseen_scores(clips, means, recipe, jobs=jobs, progress=progress)
    return np.where(np.isnan(held), oof, held), oof


def attach_view(clips: Sequence[Clip], table: FeatureTable, settings: TrainSettings,
                folds: np.ndarray, window_calibration: np.ndarray, window_oof: np.ndarray, *,
                unseen: bool, jobs: int,
                progress: bool) -> tuple[ClipView, CompiledModel, np.ndarray, np.ndarray]:
    """Fit the clip view for training: its rule, its arrays and the combined held-out scores.

    ``window_calibration``/``window_oof`` are the window models' held-out clip scores
    (calibration protocol, speaker folds); the rule is standardised on the first.
    """
    view_calibration, view_oof = held_out_view_scores(clips, table, settings, folds,
                                                      unseen=unseen, jobs=jobs,
                                                      progress=progress)
    rule = ClipView.fit(settings.clip_view, window_calibration, view_calibration)
    return (rule, fit_view(clips, table, settings),
            rule.combine(window_calibration, view_calibration), rule.combine(window_oof, view_oof))


__all__ = ["CLIP_VIEW_FILE", "ClipView", "attach_view", "fit_view", "held_out_view_scores",
           "load_view", "save_view", "view_settings", "window_means"]
