"""Gradient-boosted trees beside the SVM: fitting, a numpy evaluator and the fusion rule.

A model trained with ``TrainSettings(boosting=True)`` scores every window twice: the RBF
SVM and a ``HistGradientBoostingClassifier`` over the same scaled features. The two
decision values are put on one scale by :class:`Fusion` (each standardised by the mean and
spread of its own held-out clip scores, no labels used) and averaged with fixed weights.
Under the unseen protocol this beat either model alone on pooled EER, balanced EER and
ROC-AUC (``scripts/fusion_check.py``, docs/model-card.md).

scikit-learn's fitted ensemble pickles a numpy random generator, which the loader's
allow-list refuses; and unpickling it would bring scikit-learn back into a cold start.
So the trees are stored as plain arrays (:meth:`BoostedTrees.save`, a pickle-free
``.npz``) and evaluated in numpy; ``tests/test_boosting.py`` checks them against
scikit-learn's ``decision_function``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .compiled import read_arrays
from .exceptions import ModelLoadError

BOOSTING_FILE = "boosting.npz"
#: The bundled recipe's ensemble (``scripts/fusion_check.py`` measured these settings).
BOOSTING_PARAMS: dict[str, Any] = {
    "max_iter": 200, "learning_rate": 0.05, "max_leaf_nodes": 15, "min_samples_leaf": 40,
    "l2_regularization": 1.0,
}
_ARRAYS = ("feature", "threshold", "missing_left", "left", "right", "value", "roots",
           "baseline", "depth", "n_features")


def fit_boosting(scaled: np.ndarray, labels: np.ndarray, weights: np.ndarray | None,
                 seed: int) -> Any:
    """Fit the recipe's ``HistGradientBoostingClassifier`` on scaled window features.

    ``BOOSTING_PARAMS`` as measured by ``scripts/fusion_check.py``; tables of fewer than
    800 rows get proportionally smaller leaves.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    # A leaf needs 40 windows on the bundled data; a small table (a user's first model)
    # could then not split at all, and a constant ensemble would only add noise.
    params = {**BOOSTING_PARAMS,
              "min_samples_leaf": min(BOOSTING_PARAMS["min_samples_leaf"],
                                      max(2, len(scaled) // 20))}
    classifier = HistGradientBoostingClassifier(**params, random_state=seed)
    return classifier.fit(scaled, labels, sample_weight=weights)


@dataclass(frozen=True)
class BoostedTrees:
    """A binary tree ensemble as flat node arrays (all trees concatenated).

    Leaves point to themselves (``left == right == index``) and never change the walk,
    so every row takes exactly ``depth`` steps.

    Attributes
    ----------
    feature, threshold, missing_left, left, right, value : numpy.ndarray
        Per node: the feature compared, the split value (``x <= threshold`` goes left),
        where a NaN goes, the children (global indices) and the leaf value.
    roots : numpy.ndarray
        The root node of each tree.
    baseline : float
        Added to the sum of leaf values.
    depth : int
        The deepest leaf's depth.
    n_features : int
    """

    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    roots: np.ndarray
    baseline: float
    depth: int
    n_features: int
    _children: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # children[2 * node + went_right]: one gather per step instead of two and a select.
        children = np.stack([self.left, self.right], axis=1).reshape(-1)
        object.__setattr__(self, "_children", children)

    def decision_values(self, scaled: np.ndarray) -> np.ndarray:
        """Log-odds of deepfake per row of *scaled* features (positive leans deepfake)."""
        x = np.ascontiguousarray(scaled, dtype=np.float64)
        flat = x.reshape(-1)
        row_start = (np.arange(len(x)) * x.shape[1])[:, None]
        node = np.repeat(self.roots[None, :], len(x), axis=0)
        has_nan = bool(np.isnan(flat).any())
        for _ in range(self.depth):
            values = flat[row_start + self.feature[node]]
            went_right = values > self.threshold[node]
            if has_nan:
                went_right = np.where(np.isnan(values), ~self.missing_left[node], went_right)
            node = self._children[2 * node + went_right]
        return np.asarray(self.value[node].sum(axis=1) + self.baseline, dtype=np.float64)

    def save(self, path: Path) -> None:
        """Write the arrays to ``path`` (an uncompressed, pickle-free ``.npz``)."""
        with open(path, "wb") as handle:
            np.savez(handle, **{name: getattr(self, name) for name in _ARRAYS})


def compile_boosting(classifier: Any, deepfake_label: Any) -> BoostedTrees:
    """Read the node arrays out of a fitted binary ``HistGradientBoostingClassifier``.

    Raises
    ------
    ValueError
        Not a fitted binary ensemble of numerical splits.
    """
    classes = list(getattr(classifier, "classes_", []))
    predictors = getattr(classifier, "_predictors", None)
    if len(classes) != 2 or not predictors or any(len(p) != 1 for p in predictors):
        raise ValueError("only a fitted binary HistGradientBoostingClassifier can be compiled")
    tables = [p[0].nodes for p in predictors]
    if any(t["is_categorical"].any() for t in tables):
        raise ValueError("categorical splits cannot be compiled")
    starts = np.cumsum([0] + [len(t) for t in tables[:-1]])
    nodes = np.concatenate(tables)
    offsets = np.repeat(starts, [len(t) for t in tables])
    own = np.arange(len(nodes))
    leaf = nodes["is_leaf"].astype(bool)
    # HGB's decision_function is positive towards classes_[1].
    sign = -1.0 if classes[0] == deepfake_label else 1.0
    return BoostedTrees(
        feature=np.where(leaf, 0, nodes["feature_idx"]).astype(np.int64),
        threshold=np.where(leaf, np.inf, nodes["num_threshold"]).astype(np.float64),
        missing_left=nodes["missing_go_to_left"].astype(bool),
        left=np.where(leaf, own, nodes["left"].astype(np.int64) + offsets),
        right=np.where(leaf, own, nodes["right"].astype(np.int64) + offsets),
        value=sign * np.where(leaf, nodes["value"], 0.0).astype(np.float64),
        roots=starts.astype(np.int64),
        baseline=sign * float(np.asarray(classifier._baseline_prediction).reshape(-1)[0]),
        depth=int(nodes["depth"].max()),
        n_features=int(classifier.n_features_in_),
    )


def load_boosting(path: Path) -> BoostedTrees:
    """Read :class:`BoostedTrees` written by :meth:`BoostedTrees.save` (no unpickling).

    Raises
    ------
    ModelLoadError
        The file is not such an ``.npz`` or its arrays do not fit together.
    """
    arrays = read_arrays(path, _ARRAYS, (), "a tree ensemble")
    n_nodes = len(arrays["value"])
    n_features = int(arrays["n_features"])
    links = np.concatenate([arrays["left"], arrays["right"], arrays["roots"]])
    if (any(arrays[name].shape != (n_nodes,) for name in _ARRAYS[:6])
            or arrays["roots"].ndim != 1 or not len(arrays["roots"])
            or links.min(initial=0) < 0 or links.max(initial=0) >= n_nodes
            or arrays["feature"].min(initial=0) < 0
            or arrays["feature"].max(initial=0) >= n_features):
        raise ModelLoadError(f"{path.name} holds inconsistent tree arrays")
    return BoostedTrees(
        feature=arrays["feature"].astype(np.int64),
        threshold=arrays["threshold"].astype(np.float64),
        missing_left=arrays["missing_left"].astype(bool),
        left=arrays["left"].astype(np.int64), right=arrays["right"].astype(np.int64),
        value=arrays["value"].astype(np.float64), roots=arrays["roots"].astype(np.int64),
        baseline=float(arrays["baseline"]), depth=int(arrays["depth"]), n_features=n_features,
    )


@dataclass(frozen=True)
class Fusion:
    """``svm_weight * z(svm) + (1 - svm_weight) * z(boosting)`` per window.

    ``z`` standardises by the mean and standard deviation of that model's held-out clip
    scores at training time (no labels used). The rule is linear, so the mean over a
    clip's windows of the fused values is the fusion of the clip means.
    """

    svm_mean: float
    svm_scale: float
    boosting_mean: float
    boosting_scale: float
    svm_weight: float = 0.5

    def __post_init__(self) -> None:
        if not (self.svm_scale > 0 and self.boosting_scale > 0
                and 0.0 <= self.svm_weight <= 1.0):
            raise ValueError(f"invalid fusion parameters: {self}")

    @classmethod
    def fit(cls, svm: np.ndarray, boosting: np.ndarray, svm_weight: float = 0.5) -> Fusion:
        """Standardisation constants from held-out scores of each model (NaN ignored)."""
        return cls(float(np.nanmean(svm)), float(np.nanstd(svm)),
                   float(np.nanmean(boosting)), float(np.nanstd(boosting)), svm_weight)

    def combine(self, svm: np.ndarray, boosting: np.ndarray) -> np.ndarray:
        return np.asarray(
            self.svm_weight * (np.asarray(svm) - self.svm_mean) / self.svm_scale
            + (1 - self.svm_weight) * (np.asarray(boosting) - self.boosting_mean)
            / self.boosting_scale, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"rule": "svm_weight * (svm - svm_mean) / svm_scale + (1 - svm_weight)"
                        " * (boosting - boosting_mean) / boosting_scale, per window",
                "svm_weight": self.svm_weight,
                "svm_mean": self.svm_mean, "svm_scale": self.svm_scale,
                "boosting_mean": self.boosting_mean, "boosting_scale": self.boosting_scale}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fusion:
        return cls(float(data["svm_mean"]), float(data["svm_scale"]),
                   float(data["boosting_mean"]), float(data["boosting_scale"]),
                   float(data["svm_weight"]))


__all__ = ["BOOSTING_FILE", "BOOSTING_PARAMS", "BoostedTrees", "Fusion", "compile_boosting",
           "fit_boosting", "load_boosting"]
