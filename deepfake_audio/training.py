"""Training: fit on a whole dataset, calibrate on held-out scores, save the model.

Datasets are read by :mod:`deepfake_audio.datasets`, models fitted by
:mod:`deepfake_audio.fitting`, held-out scores come from :mod:`deepfake_audio.held_out`
and figures from :mod:`deepfake_audio.metrics`. Used by ``deepfake-audio train`` and
``scripts/train_default.py``. Everything is seeded, so the same data and settings give
the same model.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .boosting import Fusion
from .datasets import Clip, can_hold_out_groups, dataset_summary
from .exceptions import DatasetError, TrainingError
from .feature_table import extract_dataset
from .features import FeatureConfig
from .fitting import TrainSettings, fit_models, fused, row_weights
from .held_out import grouped_folds, out_of_fold_scores, unseen_scores
from .metrics import per_group_table, reliability_bins, source_label_key, summarise
from .source_family import family_model

if TYPE_CHECKING:
    from .model import ModelMetadata

logger = logging.getLogger("deepfake_audio")


def train(
    clips: Sequence[Clip],
    output_dir: str | Path,
    *,
    config: FeatureConfig | None = None,
    settings: TrainSettings | None = None,
    model_id: str | None = None,
    jobs: int = 1,
    cache_dir: Path | None = None,
    progress: bool = True,
    extra_training_info: dict[str, Any] | None = None,
    source_families: Mapping[str, str] | None = None,
) -> ModelMetadata:
    """Train, calibrate and save a model.

    ``source_families`` maps every fake clip's ``family`` to a source family (e.g.
    ``"neural-vocoder"``); when given, a family classifier is trained on the synthetic
    windows and saved with the model, and ``metrics["source_family"]`` holds its
    leave-one-generator-out confusion counts.

    Calibration (Platt) and the threshold come from held-out scores (see
    ``TrainSettings.calibration``); with ``settings.boosting`` the fusion of the SVM and
    the boosted trees is standardised on the same held-out scores. The saved models are
    then fitted on every clip. The reliability bins are in ``metrics["reliability"]``:
    plotting them is the caller's choice (:func:`deepfake_audio.plots.plot_reliability`).

    Returns
    -------
    ModelMetadata
        What was written to ``output_dir/model.json``.

    Raises
    ------
    DatasetError
        One class is missing, fewer than two speakers per class, or no clip decodes.
    TrainingError
        The held-out scores do not separate the classes.
    """
    from .model import GENUINE_FAMILY, Calibration, ModelMetadata, save_model

    config = config or FeatureConfig()
    settings = settings or TrainSettings()
    labels = np.array([c.label for c in clips])
    if len(set(labels.tolist())) < 2:
        raise DatasetError("training needs both real and fake clips")
    folds = grouped_folds(clips, settings.calibration_folds, settings.seed)  # fails fast
    table = extract_dataset(clips, config, augment_copies=settings.augment_copies,
                            max_windows=settings.max_windows, seed=settings.seed, jobs=jobs,
                            cache_dir=cache_dir, progress=progress)
    # Columns: one per model (SVM, boosted trees); fused once the fusion is known.
    oof_columns = _one_column_per_model(out_of_fold_scores(clips, table, settings, folds, jobs=jobs,
                                                 progress=progress))
    calibration_columns, protocol = oof_columns, (
        f"{settings.calibration_folds}-fold cross-validation grouped by speaker")
    if settings.calibration == "unseen":
        if can_hold_out_groups(clips):
            unseen = _one_column_per_model(unseen_scores(clips, table, settings, jobs=jobs,
                                               progress=progress))
            # A group whose removal leaves one class empty stays NaN: fall back to its
            # out-of-fold score rather than dropping the clip.
            calibration_columns = np.where(np.isnan(unseen), oof_columns, unseen)
            protocol = ("genuine clips leave-one-corpus-out, fakes leave-one-generator-out "
                        "(speaker-grouped cross-validation where a group cannot be held out)")
        else:
            logger.warning("calibrating on speaker-grouped cross-validation: leave-one-out "
                           "calibration needs two genuine corpora and two generators")
    # Standardised on the scores calibration sees: the unseen protocol's where it can run.
    fusion = (Fusion.fit(calibration_columns[:, 0], calibration_columns[:, 1])
              if settings.boosting else None)
    oof = fused(oof_columns, fusion)
    calibration_scores = fused(calibration_columns, fusion)
    view = view_arrays = None
    if settings.clip_view > 0:
        from .clip_view import attach_view

        view, view_arrays, calibration_scores, oof = attach_view(
            clips, table, settings, folds, calibration_scores, oof,
            unseen=calibration_columns is not oof_columns, jobs=jobs, progress=progress)
    valid = ~np.isnan(calibration_scores)
    calibration = Calibration.fit(calibration_scores[valid], labels[valid],
                                  settings.prior_deepfake)
    # higher scores must mean "more likely deepfake", or the sign convention breaks
    if calibration.a >= 0:
        raise TrainingError(
            "calibration failed: held-out scores do not separate real from fake clips"
        )
    threshold = calibration.raw_score_at(0.5)
    probabilities = calibration.probability_deepfake(calibration_scores[valid])
    reliability = reliability_bins(labels[valid], probabilities, settings.prior_deepfake)
    oof_valid = ~np.isnan(oof)
    metrics: dict[str, Any] = {
        "protocol": protocol,
        "calibration": summarise(labels[valid], calibration_scores[valid], threshold,
                                 probabilities),
        "out_of_fold": summarise(labels[oof_valid], oof[oof_valid], threshold,
                                 calibration.probability_deepfake(oof[oof_valid])),
        "per_generator": per_group_table(clips, calibration_scores, threshold,
                                         lambda c: c.generator),
        "per_source": per_group_table(clips, calibration_scores, threshold,
                                      source_label_key(clips)),
        "reliability": reliability,
    }
    weights = row_weights(clips, table, settings)
    models = fit_models(table.matrix, labels[table.clip_index], settings, weights)
    family_classifier: Any = None
    family_names: tuple[str, ...] = ()
    if source_families is not None:
        family_classifier, metrics["source_family"] = family_model(
            clips, table, models.scaler, source_families, jobs=jobs)
        metrics["per_family"] = per_group_table(
            clips, calibration_scores, threshold,
            lambda c: GENUINE_FAMILY if c.label == 0 else source_families[c.family])
        family_names = tuple(str(c) for c in family_classifier.classes_)
    training = {
        "data": dataset_summary(clips),
        "windows": len(table.matrix),
        "failed_clips": len(table.failed),
        "settings": asdict(settings),
        **(extra_training_info or {}),
    }
    digest = hashlib.sha256(table.matrix.tobytes()).hexdigest()[:8]
    metadata = ModelMetadata(
        model_id=model_id or f"svm-{config.kind}-{digest}",
        features=config,
        decision_threshold=float(threshold),
        calibration=calibration,
        deepfake_label=1,
        aggregation="mean",
        training=training,
        metrics=metrics,
        source_families=family_names,
        fusion=fusion,
        clip_view=view,
    )
    return save_model(output_dir, models.svm, models.scaler, metadata, family_classifier,
                      models.boosting, view_arrays)


def _one_column_per_model(scores: np.ndarray) -> np.ndarray:
    return scores if scores.ndim == 2 else scores[:, None]


__all__ = ["TrainSettings", "train"]
