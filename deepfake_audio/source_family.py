"""Source family of synthetic speech: which kind of generator made it.

A multinomial logistic regression over the scaled window features of the synthetic
clips, trained beside the binary models by :func:`deepfake_audio.training.train`;
the confusion matrix comes from leave-one-generator-out scores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .datasets import Clip
from .exceptions import DatasetError
from .feature_table import FeatureTable


def fit_family_classifier(matrix: np.ndarray, families: np.ndarray) -> Any:
    """Multinomial logistic regression from scaled window features to source families.

    Only synthetic windows are passed: it answers "which kind of generator", and the
    binary SVM answers "synthetic or not". Classes are balanced.
    """
    from sklearn.linear_model import LogisticRegression

    classifier = LogisticRegression(C=0.1, class_weight="balanced", max_iter=2000)
    return classifier.fit(matrix, families)


def held_out_families(clips: Sequence[Clip], table: FeatureTable, scaler: Any,
                      source_family: Callable[[Clip], str], *, jobs: int = 1
                      ) -> list[dict[str, float] | None]:
    """Family probabilities of each fake from a classifier trained without its generator
    family (leave-one-generator-out; None for genuine clips and families that cannot be held
    out because they alone make up a source family)."""
    from joblib import Parallel, delayed

    labels = np.array([c.label for c in clips])
    fake_rows = (labels[table.clip_index] == 1) & ~table.augmented
    scaled = scaler.transform(table.matrix)
    names = np.array([source_family(c) if c.label == 1 else "" for c in clips])
    keys = np.array([c.family for c in clips])
    row_names, row_keys = names[table.clip_index], keys[table.clip_index]
    train_rows = (labels[table.clip_index] == 1)

    def one(key: str) -> tuple[str, np.ndarray | None, list[str]]:
        keep = train_rows & (row_keys != key)
        if len(set(row_names[keep].tolist())) < len(set(names[labels == 1].tolist())):
            return key, None, []
        model = fit_family_classifier(scaled[keep], row_names[keep])
        test = fake_rows & (row_keys == key)
        return key, model.predict_proba(scaled[test]), [str(c) for c in model.classes_]

    out: list[dict[str, float] | None] = [None] * len(clips)
    held = sorted(set(keys[labels == 1].tolist()))
    for key, proba, classes in Parallel(n_jobs=jobs)(delayed(one)(k) for k in held):
        if proba is None:
            continue
        owners = table.clip_index[fake_rows & (row_keys == key)]
        for index in np.unique(owners):
            mean = proba[owners == index].mean(axis=0)
            out[int(index)] = dict(zip(classes, (float(v) for v in mean), strict=True))
    return out


def family_model(clips: Sequence[Clip], table: FeatureTable, scaler: Any,
                 source_families: Mapping[str, str], *, jobs: int = 1
                 ) -> tuple[Any, dict[str, Any]]:
    """The family classifier on every synthetic window, and its held-out confusion counts.

    ``source_families`` maps each fake's generator family to its source family.

    Raises
    ------
    DatasetError
        A fake's generator family has no source family.
    """
    unmapped = sorted({c.family for c in clips if c.label == 1} - set(source_families))
    if unmapped:
        raise DatasetError("no source family for generator(s): " + ", ".join(unmapped))
    labels = np.array([c.label for c in clips])
    names = np.array([source_families[c.family] if c.label == 1 else "" for c in clips])
    fake = labels[table.clip_index] == 1
    model = fit_family_classifier(scaler.transform(table.matrix[fake]),
                                  names[table.clip_index][fake])
    held = held_out_families(clips, table, scaler, lambda c: source_families[c.family],
                             jobs=jobs)
    classes = [str(c) for c in model.classes_]
    confusion = {true: dict.fromkeys(classes, 0) for true in classes}
    for clip, probabilities in zip(clips, held, strict=True):
        if probabilities is not None:
            confusion[source_families[clip.family]][max(probabilities,
                                                         key=probabilities.__getitem__)] += 1
    return model, {"protocol": "fakes scored by a family classifier trained without their"
                               " generator family (rows: true family, columns: predicted)",
                   "confusion": confusion}


__all__ = ["family_model", "fit_family_classifier", "held_out_families"]
