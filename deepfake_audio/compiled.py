"""The fitted scaler + SVM as plain numpy arrays, scored without scikit-learn.

Importing scikit-learn (and unpickling its estimators) costs most of a cold
``deepfake-audio check``; the decision function itself is a few array
operations. :func:`compile_estimators` reads the fitted arrays out of a
``StandardScaler`` and a binary ``SVC`` (RBF or linear kernel) once, at training
time; :meth:`CompiledModel.save` writes them to a non-pickle ``.npz`` that
:func:`load_compiled` reads back with ``allow_pickle=False``.

The sign convention is folded in: the stored dual coefficients and intercept make
the decision value positive towards the deepfake label, whatever ``classes_`` says.
``tests/test_model.py`` checks the decision values against scikit-learn's
``decision_function`` on the bundled model.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import ModelLoadError

COMPILED_FILE = "compiled.npz"
KERNELS = ("rbf", "linear")
_ARRAYS = ("offset", "scale", "support_vectors", "dual_coef", "intercept", "gamma", "kernel")
#: Present when the model has a source-family classifier (multinomial logistic regression).
_FAMILY_ARRAYS = ("family_coef", "family_intercept")


@dataclass(frozen=True)
class CompiledModel:
    """Scaler and SVM decision function in float64 arrays.

    Attributes
    ----------
    offset, scale : numpy.ndarray
        ``(n_features,)``: the scaler computes ``(x - offset) / scale``.
    support_vectors : numpy.ndarray
        ``(n_support, n_features)``, in scaled units.
    dual_coef : numpy.ndarray
        ``(n_support,)``, signed so the decision value is positive towards deepfake.
    intercept : float
        Same sign convention.
    gamma : float
        RBF width (unused by the linear kernel).
    kernel : {"rbf", "linear"}
    family_coef, family_intercept : numpy.ndarray or None
        ``(n_families, n_features)`` and ``(n_families,)``: the source-family logistic
        regression on scaled features, when the model has one.
    family_classes : tuple of str
        The family of each row of ``family_coef`` (empty in files compiled before it was
        stored).
    """

    offset: np.ndarray
    scale: np.ndarray
    support_vectors: np.ndarray
    dual_coef: np.ndarray
    intercept: float
    gamma: float
    kernel: str
    family_coef: np.ndarray | None = None
    family_intercept: np.ndarray | None = None
    family_classes: tuple[str, ...] = ()
    _sv_norms: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # ||sv||^2 once per model, not per call: the RBF distance is expanded around it.
        norms = np.einsum("ij,ij->i", self.support_vectors, self.support_vectors)
        object.__setattr__(self, "_sv_norms", norms)

    @property
    def n_features(self) -> int:
        return int(self.support_vectors.shape[1])

    def scaled(self, matrix: np.ndarray) -> np.ndarray:
        """``(matrix - offset) / scale`` as float64, as ``StandardScaler.transform``."""
        x = np.array(matrix, dtype=np.result_type(matrix, np.float32))
        # Scaled in the input's own precision, as StandardScaler.transform does: float32
        # features then score exactly as through scikit-learn (and as at training time).
        x -= self.offset.astype(x.dtype)
        x /= self.scale.astype(x.dtype)
        return x.astype(np.float64, copy=False)

    def family_probabilities(self, matrix: np.ndarray) -> np.ndarray | None:
        """Softmax of the source-family regression per row; None without one."""
        if self.family_coef is None or self.family_intercept is None:
            return None
        logits = self.scaled(matrix) @ self.family_coef.T + self.family_intercept
        logits -= logits.max(axis=1, keepdims=True)
        odds = np.exp(logits)
        return np.asarray(odds / odds.sum(axis=1, keepdims=True))

    def decision_values(self, matrix: np.ndarray) -> np.ndarray:
        """Signed score per row of raw (unscaled) features: positive leans deepfake."""
        return self.decision_values_scaled(self.scaled(matrix))

    def decision_values_scaled(self, x: np.ndarray) -> np.ndarray:
        """:meth:`decision_values` of rows already passed through :meth:`scaled`."""
        products = x @ self.support_vectors.T
        if self.kernel == "linear":
            kernel = products
        else:
            # ||x - sv||^2 = ||x||^2 + ||sv||^2 - 2 x.sv, with the rounding clipped at 0.
            sq = np.einsum("ij,ij->i", x, x)[:, None] + self._sv_norms[None, :] - 2.0 * products
            np.maximum(sq, 0.0, out=sq)
            kernel = np.exp(-self.gamma * sq, out=sq)
        return np.asarray(kernel @ self.dual_coef + self.intercept, dtype=np.float64)

    def save(self, path: Path) -> None:
        """Write the arrays to ``path`` (an uncompressed, pickle-free ``.npz``)."""
        arrays: dict[str, Any] = {
            "offset": self.offset, "scale": self.scale,
            "support_vectors": self.support_vectors, "dual_coef": self.dual_coef,
            "intercept": np.float64(self.intercept), "gamma": np.float64(self.gamma),
            "kernel": np.array(self.kernel),
        }
        if self.family_coef is not None and self.family_intercept is not None:
            arrays |= {"family_coef": self.family_coef,
                       "family_intercept": self.family_intercept,
                       "family_classes": np.array(self.family_classes, dtype=str)}
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)


def compile_estimators(classifier: Any, scaler: Any, deepfake_label: Any,
                       family_classifier: Any = None) -> CompiledModel:
    """Read the arrays out of a fitted ``StandardScaler`` and binary ``SVC`` (and the
    multinomial ``LogisticRegression`` of source families, when given).

    Parameters
    ----------
    classifier : sklearn.svm.SVC
        Fitted on two classes with an ``"rbf"`` or ``"linear"`` kernel.
    scaler : sklearn.preprocessing.StandardScaler
    deepfake_label : object
        The label of the synthetic class in ``classifier.classes_``.

    Raises
    ------
    ValueError
        Anything else (the model then keeps being scored by scikit-learn).
    """
    kernel = getattr(classifier, "kernel", None)
    classes = list(getattr(classifier, "classes_", []))
    if kernel not in KERNELS or len(classes) != 2 or not hasattr(classifier, "dual_coef_"):
        raise ValueError("only a binary SVC with an rbf or linear kernel can be compiled")
    if not (hasattr(scaler, "mean_") and hasattr(scaler, "scale_")):
        raise ValueError("only a StandardScaler can be compiled")
    n_features = int(classifier.support_vectors_.shape[1])
    offset = np.zeros(n_features) if scaler.mean_ is None else scaler.mean_
    scale = np.ones(n_features) if scaler.scale_ is None else scaler.scale_
    family: dict[str, Any] = {}
    if family_classifier is not None:
        coef = np.asarray(getattr(family_classifier, "coef_", None), dtype=np.float64)
        if coef.ndim != 2 or coef.shape[0] < 3 or type(family_classifier).__name__ != (
                "LogisticRegression"):
            raise ValueError("only a multinomial LogisticRegression family classifier"
                             " (three classes or more) can be compiled")
        family = {"family_coef": coef,
                  "family_intercept": np.asarray(family_classifier.intercept_, np.float64),
                  "family_classes": tuple(str(c) for c in family_classifier.classes_)}
    # scikit-learn's binary decision_function is positive towards classes_[1].
    sign = -1.0 if classes[0] == deepfake_label else 1.0
    return CompiledModel(
        offset=np.asarray(offset, dtype=np.float64),
        scale=np.asarray(scale, dtype=np.float64),
        support_vectors=np.ascontiguousarray(classifier.support_vectors_, dtype=np.float64),
        dual_coef=sign * np.asarray(classifier.dual_coef_, dtype=np.float64).reshape(-1),
        intercept=sign * float(np.asarray(classifier.intercept_).reshape(-1)[0]),
        gamma=float(getattr(classifier, "_gamma", 0.0)),
        kernel=str(kernel),
        **family,
    )


def read_arrays(path: Path, required: tuple[str, ...], optional: tuple[str, ...],
                what: str) -> dict[str, np.ndarray]:
    """The named arrays of a pickle-free ``.npz`` (``optional`` ones when present).

    Raises
    ------
    ModelLoadError
        Not a readable ``.npz``, a required array missing, or an object array (which
        would need unpickling).
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in (*required, *optional)
                    if name in required or name in data.files}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelLoadError(f"{path.name} is not {what}: {exc}") from None


def load_compiled(path: Path) -> CompiledModel:
    """Read a :class:`CompiledModel` written by :meth:`CompiledModel.save` (no unpickling).

    Raises
    ------
    ModelLoadError
        The file is not such an ``.npz`` or its arrays do not fit together.
    """
    arrays = read_arrays(path, _ARRAYS, (*_FAMILY_ARRAYS, "family_classes"), "a compiled model")
    family = {name: arrays.pop(name).astype(np.float64) for name in _FAMILY_ARRAYS
              if name in arrays}
    classes = (tuple(str(c) for c in arrays.pop("family_classes").reshape(-1))
               if "family_classes" in arrays else ())
    kernel = str(arrays["kernel"])
    support_vectors = arrays["support_vectors"]
    n_support, n_features = support_vectors.shape if support_vectors.ndim == 2 else (-1, -1)
    if (kernel not in KERNELS or n_support < 1
            or arrays["dual_coef"].shape != (n_support,)
            or arrays["offset"].shape != (n_features,) or arrays["scale"].shape != (n_features,)):
        raise ModelLoadError(f"{path.name} holds inconsistent arrays")
    if family and (len(family) != 2 or family["family_coef"].shape[1:] != (n_features,)
                   or family["family_intercept"].shape != family["family_coef"].shape[:1]):
        raise ModelLoadError(f"{path.name} holds inconsistent family arrays")
    if classes and (not family or len(classes) != len(family["family_coef"])):
        raise ModelLoadError(f"{path.name} names {len(classes)} source families for"
                             f" {len(family.get('family_coef', ()))} rows")
    return CompiledModel(
        offset=arrays["offset"].astype(np.float64), scale=arrays["scale"].astype(np.float64),
        support_vectors=np.ascontiguousarray(support_vectors, dtype=np.float64),
        dual_coef=arrays["dual_coef"].astype(np.float64),
        intercept=float(arrays["intercept"]), gamma=float(arrays["gamma"]), kernel=kernel,
        family_classes=classes, **family,
    )


def compile_model(directory: str | Path) -> str:
    """Add the compiled arrays to a verified model folder and list them in ``model.json``.

    The pickles are loaded (after their hash check) through scikit-learn once;
    the rest of ``model.json`` is kept as it is.

    Parameters
    ----------
    directory : path
        A folder :func:`load_model` accepts without ``allow_unverified``.

    Returns
    -------
    str
        SHA-256 of the written ``compiled.npz``.

    Raises
    ------
    ModelLoadError, ModelIntegrityError
        As for :func:`load_model`, or the estimators cannot be compiled.
    """
    import json

    from .model import METADATA_FILE, load_model
    from .safe_pickle import sha256_file

    loaded = load_model(directory, compiled=False)
    try:
        arrays = compile_estimators(loaded.classifier, loaded.scaler,
                                    loaded.metadata.deepfake_label, loaded.family_classifier)
    except ValueError as exc:
        raise ModelLoadError(f"cannot compile {loaded.directory}: {exc}") from None
    arrays.save(loaded.directory / COMPILED_FILE)
    digest = sha256_file(loaded.directory / COMPILED_FILE)
    meta_path = loaded.directory / METADATA_FILE
    data = json.loads(meta_path.read_text(encoding="utf-8"))
    data["artefacts"] = {**data.get("artefacts", {}), COMPILED_FILE: digest}
    meta_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return digest
