"""Held-out protocols: score each clip by models that never saw its speaker, corpus or generator.

Speaker-grouped cross-validation (:func:`out_of_fold_scores`), leave-one-corpus-out and
leave-one-generator-out (:func:`leave_one_out`, :func:`unseen_scores`) and the same in a
few folds (:func:`unseen_fold_scores`). Training calibrates on these scores; ``evaluate``
and the scripts under ``scripts/`` report them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .boosting import Fusion
from .datasets import Clip
from .exceptions import DatasetError
from .feature_table import FeatureTable
from .fitting import TrainSettings, clip_means, fit_models, fused, row_weights


def grouped_folds(clips: Sequence[Clip], n_folds: int, seed: int) -> np.ndarray:
    """Fold number per clip, speakers never split across folds, labels stratified."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.array([c.label for c in clips])
    groups = np.array([c.speaker for c in clips])
    # Each fold needs a group of each class; small datasets get fewer folds.
    smallest = min(len(set(groups[labels == label].tolist())) for label in (0, 1))
    if smallest < 2:
        raise DatasetError(
            "need clips from at least 2 speakers (or files) of each class for held-out"
            " calibration"
        )
    n_folds = min(n_folds, smallest)
    folds = np.zeros(len(clips), dtype=int)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(clips)), labels, groups)):
        folds[test] = k
    return folds


def _fit_and_score(table: FeatureTable, labels: np.ndarray, weights: np.ndarray,
                   settings: TrainSettings, train_rows: np.ndarray, test_rows: np.ndarray,
                   n_clips: int) -> np.ndarray:
    models = fit_models(table.matrix[train_rows], labels[table.clip_index[train_rows]],
                        settings, weights[train_rows])
    rows = np.flatnonzero(test_rows)
    return clip_means(models.components(table.matrix[rows]), table.clip_index[rows], n_clips)


def _held_out_scores(clips: Sequence[Clip], table: FeatureTable, settings: TrainSettings,
                     held_out_masks: Sequence[np.ndarray], desc: str, jobs: int,
                     progress: bool,
                     scored_masks: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """For each clip mask: fit without those clips (and their augmented rows), score them.

    With ``scored_masks``, only those clips (a subset of the held-out ones) are scored.
    Returns ``(n_clips, models)``: one column per model of :func:`fit_models`.
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    labels = np.array([c.label for c in clips])
    weights = row_weights(clips, table, settings)
    scored_masks = held_out_masks if scored_masks is None else scored_masks
    tasks = []
    for held_out, scored in zip(held_out_masks, scored_masks, strict=True):
        tasks.append(delayed(_fit_and_score)(table, labels, weights, settings,
                                             ~held_out[table.clip_index],
                                             scored[table.clip_index] & ~table.augmented,
                                             len(clips)))
    scores = np.full((len(clips), 2 if settings.boosting else 1), np.nan)
    results = Parallel(n_jobs=jobs, return_as="generator")(tasks)
    for scored, fold_scores in zip(
        scored_masks, tqdm(results, total=len(tasks), desc=desc, disable=not progress),
        strict=True,
    ):
        scores[scored] = fold_scores[scored]
    return scores


def _fused_if_given(columns: np.ndarray, fusion: Fusion | None) -> np.ndarray:
    """One score per clip; the ``(n_clips, 2)`` columns themselves when no fusion is given."""
    return columns if fusion is None and columns.shape[1] > 1 else fused(columns, fusion)


def out_of_fold_scores(clips: Sequence[Clip], table: FeatureTable, settings: TrainSettings,
                       folds: np.ndarray, *, fusion: Fusion | None = None, jobs: int = 1,
                       progress: bool = True) -> np.ndarray:
    """Clip scores from models that never saw the clip's speaker (augmented rows train only).

    With ``settings.boosting`` the two models' scores are combined by ``fusion``; without
    a fusion the ``(n_clips, 2)`` columns are returned.
    """
    masks = [folds == k for k in sorted(set(folds.tolist()))]
    columns = _held_out_scores(clips, table, settings, masks, "cross-validation", jobs,
                               progress)
    return _fused_if_given(columns, fusion)


def unseen_scores(clips: Sequence[Clip], table: FeatureTable, settings: TrainSettings, *,
                  fusion: Fusion | None = None, jobs: int = 1,
                  progress: bool = True) -> np.ndarray:
    """Genuine clips scored leave-one-corpus-out, fakes leave-one-generator-out.

    The closest this data gets to what a deployed model meets: recordings from a corpus
    and a generator it never saw. NaN where a group cannot be held out. ``fusion`` as for
    :func:`out_of_fold_scores`.
    """
    labels = np.array([c.label for c in clips])
    real = leave_one_out(clips, table, settings, lambda c: c.corpus, label=0, fusion=fusion,
                         jobs=jobs, progress=progress)
    fake = leave_one_out(clips, table, settings, lambda c: c.family, label=1, fusion=fusion,
                         jobs=jobs, progress=progress)
    mask = labels == 0
    return np.where(mask[:, None] if real.ndim == 2 else mask, real, fake)


def unseen_fold_scores(clips: Sequence[Clip], table: FeatureTable, settings: TrainSettings,
                       n_folds: int = 5, *, fusion: Fusion | None = None, jobs: int = 1,
                       progress: bool = True) -> np.ndarray:
    """:func:`unseen_scores` in ``n_folds`` fits instead of one per corpus and generator.

    Genuine corpora and generator families are dealt into folds (stratified, grouped). A
    fold's model is trained without its corpora, the fakes made from them included, and
    without its families; it scores the fold's genuine clips and its families' fakes.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.array([c.label for c in clips])
    corpora = np.array([c.corpus for c in clips])
    families = np.array([c.family for c in clips])
    groups = np.where(labels == 1, np.char.add("fake:", families), np.char.add("real:", corpora))
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=settings.seed)
    held_out, scored = [], []
    for _, test in splitter.split(np.zeros(len(clips)), labels, groups):
        genuine = np.isin(corpora, corpora[test][labels[test] == 0])
        fake = (labels == 1) & np.isin(families, families[test][labels[test] == 1])
        held_out.append(genuine | fake)
        scored.append((genuine & (labels == 0)) | fake)
    columns = _held_out_scores(clips, table, settings, held_out, "unseen folds", jobs, progress,
                               scored)
    return _fused_if_given(columns, fusion)


def leave_one_out(
    clips: Sequence[Clip],
    table: FeatureTable,
    settings: TrainSettings,
    key: Callable[[Clip], str],
    *,
    label: int,
    fusion: Fusion | None = None,
    jobs: int = 1,
    progress: bool = True,
) -> np.ndarray:
    """Score each clip with ``label`` by a model trained without its whole ``key`` group.

    For ``label=1`` and ``key=family`` this is leave-one-generator-out; for
    ``label=0`` and ``key=corpus`` leave-one-corpus-out. Other clips get NaN.
    Copies derived from held-out clips (8 kHz, resampled) share the key, so they
    are held out too. ``fusion`` as for :func:`out_of_fold_scores`.
    """
    labels = np.array([c.label for c in clips])
    keys = np.array([key(c) for c in clips])
    names = sorted(set(keys[labels == label].tolist()))
    masks = [keys == name for name in names]
    columns = _held_out_scores(clips, table, settings, masks,
                               f"leave-one-out ({'fake' if label else 'real'})", jobs, progress)
    columns[labels != label] = np.nan
    return _fused_if_given(columns, fusion)


__all__ = [
    "grouped_folds", "leave_one_out", "out_of_fold_scores", "unseen_fold_scores",
    "unseen_scores",
]
