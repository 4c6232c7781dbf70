"""Scores → figures: ROC, EER, balanced weights, per-group tables, reliability bins.

Pure functions of labels and scores (and :class:`~deepfake_audio.datasets.Clip` groups);
used by training, evaluation and the scripts that print the model card's tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .datasets import Clip


def roc_points(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False positive rates, true positive rates and thresholds of the ROC curve."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(labels, scores, sample_weight=weights)
    return fpr, tpr, thresholds


def equal_error_rate(labels: np.ndarray, scores: np.ndarray,
                     weights: np.ndarray | None = None) -> tuple[float, float]:
    """EER and the threshold where false-accept and false-reject rates cross.

    ``weights`` (per clip) make some clips count more, e.g. :func:`group_balanced_weights`.
    """
    labels = np.asarray(labels)
    if len(set(labels.tolist())) < 2:
        return float("nan"), float("nan")
    fpr, tpr, thresholds = roc_points(labels, scores, weights)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2), float(thresholds[i])


def group_balanced_weights(clips: Sequence[Clip]) -> np.ndarray:
    """Clip weights under which every genuine corpus and every generator family counts once.

    The EER with these weights does not let the largest corpus (LibriSpeech here) decide
    the figure: closer to a test set of many corpora and generators.
    """
    keys = [("real", c.corpus) if c.label == 0 else ("fake", c.family) for c in clips]
    counts: dict[tuple[str, str], int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return np.array([1.0 / counts[key] for key in keys])


def summarise(labels: np.ndarray, scores: np.ndarray, threshold: float,
              probabilities: np.ndarray | None = None) -> dict[str, float]:
    """Accuracy, EER, ROC-AUC (and Brier score when probabilities are given)."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    predicted = (scores > threshold).astype(int)
    out: dict[str, float] = {
        "n": len(labels),
        "accuracy": float(np.mean(predicted == labels)),
        "eer": equal_error_rate(labels, scores)[0],
        "roc_auc": float(roc_auc_score(labels, scores)) if len(set(labels.tolist())) == 2
        else float("nan"),
        "real_called_real": float(np.mean(predicted[labels == 0] == 0)) if (labels == 0).any()
        else float("nan"),
        "fake_called_fake": float(np.mean(predicted[labels == 1] == 1)) if (labels == 1).any()
        else float("nan"),
    }
    if probabilities is not None:
        out["brier"] = float(np.mean((probabilities - labels) ** 2))
    return out


def per_group_table(clips: Sequence[Clip], scores: np.ndarray, threshold: float,
                    key: Callable[[Clip], str]) -> list[dict[str, Any]]:
    """Per-group rows: fakes of each group scored against all genuine clips (EER), and the
    share of the group's clips classified correctly at ``threshold``."""
    labels = np.array([c.label for c in clips])
    valid = ~np.isnan(scores)
    real = valid & (labels == 0)
    rows = []
    for name in sorted({key(c) for c in clips}):
        members = valid & np.array([key(c) == name for c in clips])
        if not members.any():
            continue
        group_labels = labels[members]
        correct = float(np.mean((scores[members] > threshold).astype(int) == group_labels))
        row: dict[str, Any] = {"group": name, "n": int(members.sum()), "correct": correct}
        if (group_labels == 1).all() and real.any():
            both = real | members
            row["eer"] = equal_error_rate(labels[both], scores[both])[0]
        rows.append(row)
    return rows


def source_label_key(clips: Sequence[Clip]) -> Callable[[Clip], str]:
    """Group key for per-source tables: a source holding both genuine clips and fakes made
    from them (resyntheses) gets one row per label, so "correct" is not a mix of both."""
    labels_by_source: dict[str, set[int]] = {}
    for clip in clips:
        labels_by_source.setdefault(clip.source, set()).add(clip.label)
    mixed = {source for source, labels in labels_by_source.items() if len(labels) > 1}

    def key(clip: Clip) -> str:
        if clip.source not in mixed:
            return clip.source
        return f"{clip.source} ({'fake' if clip.label else 'real'})"

    return key


def reliability_bins(labels: np.ndarray, probabilities: np.ndarray,
                     prior_deepfake: float = 0.5, n_bins: int = 10) -> list[dict[str, float]]:
    """Calibration table: per probability bin, mean predicted vs. observed deepfake share.

    Clips are weighted so the fakes weigh ``prior_deepfake`` in all, matching the prior
    the calibration assumes (see :meth:`deepfake_audio.model.Calibration.fit`).
    """
    labels = np.asarray(labels, dtype=float)
    class_weight = np.where(labels == 1, prior_deepfake / max(labels.sum(), 1),
                            (1 - prior_deepfake) / max((1 - labels).sum(), 1))
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(probabilities, edges) - 1, 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        members = which == b
        if members.any():
            rows.append({"low": float(edges[b]), "high": float(edges[b + 1]),
                         "n": int(members.sum()),
                         "predicted": float(probabilities[members].mean()),
                         "observed": float(np.average(labels[members],
                                                      weights=class_weight[members]))})
    return rows


def _class_balanced(labels: np.ndarray, prior_deepfake: float = 0.5) -> np.ndarray:
    """Clip weights under which the fakes weigh ``prior_deepfake`` and the genuine clips the
    rest (0.5: both classes count equally)."""
    labels = np.asarray(labels)
    return np.where(labels == 1, prior_deepfake / max(int((labels == 1).sum()), 1),
                    (1 - prior_deepfake) / max(int((labels == 0).sum()), 1))


def fit_band(labels: np.ndarray, scores: np.ndarray, threshold: float, *,
             max_error: float = 0.10, min_decided: int = 10,
             prior_deepfake: float = 0.5) -> tuple[float, float]:
    """The narrowest band ``[low, high]`` around ``threshold`` outside which each side errs
    at most ``max_error`` of the time.

    ``high`` is the lowest score at or above ``threshold`` such that, of the clips scoring
    above it, at most ``max_error`` are genuine; ``low`` the highest score at or below it
    such that, of the clips scoring at or below it, at most ``max_error`` are fakes. The
    fakes weigh ``prior_deepfake`` in all and the genuine clips the rest (the bundled band:
    0.5, both classes equally), and a side needs at least ``min_decided`` clips; a side
    that never meets the bar gets the most extreme score, so it is (almost) never decided.

    Parameters
    ----------
    labels, scores : numpy.ndarray
        0 real / 1 deepfake, and raw scores (positive leans deepfake), of held-out clips.
    threshold : float
        The model's decision threshold on the raw score.
    max_error : float
        Largest error share accepted on each side of the band.
    min_decided : int
        Fewest clips a side must decide for its error share to count.
    prior_deepfake : float
        Weight of the fakes against the genuine clips.

    Returns
    -------
    (float, float)
        ``low <= threshold <= high``.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    weights = _class_balanced(labels, prior_deepfake)
    bar = max_error + 1e-12  # a share of exactly max_error passes despite float rounding
    order = np.sort(np.unique(scores))
    high = float(order[-1]) if len(order) else threshold
    for cut in [threshold, *order[order > threshold]]:
        above = scores > cut
        if above.sum() < min_decided:
            break
        if np.average(labels[above] == 0, weights=weights[above]) <= bar:
            high = float(cut)
            break
    low = float(order[0]) if len(order) else threshold
    for cut in [threshold, *order[order < threshold][::-1]]:
        below = scores <= cut
        if below.sum() < min_decided:
            break
        if np.average(labels[below] == 1, weights=weights[below]) <= bar:
            low = float(cut)
            break
    return min(low, threshold), max(high, threshold)


def band_summary(labels: np.ndarray, scores: np.ndarray, band: tuple[float, float]
                 ) -> dict[str, float]:
    """How a band decides labelled clips: coverage and accuracy outside it.

    Returns
    -------
    dict
        ``coverage`` (share of clips decided, i.e. outside the band), ``accuracy`` (share of
        decided clips decided right), the same two with both classes weighted equally
        (``balanced_coverage``, ``balanced_accuracy``), ``real_called_real``,
        ``real_inconclusive``, ``fake_called_fake``, ``fake_inconclusive`` (shares of each
        class) and ``n``.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    low, high = band
    decided_fake = scores > high
    decided = decided_fake | (scores <= low)
    correct = decided & (decided_fake == (labels == 1))
    weights = _class_balanced(labels)

    def share(mask: np.ndarray, of: np.ndarray) -> float:
        return float(mask[of].mean()) if of.any() else float("nan")

    real, fake = labels == 0, labels == 1
    return {
        "n": len(labels),
        "coverage": share(decided, np.ones_like(decided)),
        "accuracy": share(correct, decided),
        "balanced_coverage": float(np.sum(weights * decided) / np.sum(weights)),
        "balanced_accuracy": float(np.sum(weights * correct) / max(np.sum(weights * decided),
                                                                   1e-12)),
        "real_called_real": share(decided & ~decided_fake, real),
        "real_inconclusive": share(~decided, real),
        "fake_called_fake": share(decided_fake, fake),
        "fake_inconclusive": share(~decided, fake),
    }


def format_table(rows: Sequence[dict[str, Any]], title: str) -> str:
    """Plain-text table of :func:`per_group_table` rows."""
    lines = [f"{title:<40} {'n':>5} {'correct':>8} {'EER':>7}"]
    for row in rows:
        eer = f"{row['eer'] * 100:6.1f}%" if "eer" in row else "      -"
        lines.append(f"{row['group']:<40} {row['n']:>5} {row['correct'] * 100:7.1f}% {eer}")
    return "\n".join(lines)


__all__ = [
    "band_summary",
    "equal_error_rate",
    "fit_band",
    "format_table",
    "group_balanced_weights",
    "per_group_table",
    "reliability_bins",
    "roc_points",
    "source_label_key",
    "summarise",
]
