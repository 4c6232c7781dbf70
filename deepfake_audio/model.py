"""Model artefacts: save, verify and load.

A model directory holds the original service's two pickles (``svm_model.pkl``,
``scaler.pkl``) plus ``model.json``: feature settings, decision threshold,
calibration, the SHA-256 of each artefact and what the model was trained on.
Models saved by this version also hold ``compiled.npz``, the same scaler and
SVM as plain arrays (:mod:`deepfake_audio.compiled`): when ``model.json`` lists
it, scoring reads it instead of the pickles and never imports scikit-learn.
``scripts/compile_model.py`` adds it to an older folder. A model trained with
boosted trees beside the SVM also holds ``boosting.npz`` (arrays only, always read
that way) and the ``fusion`` of the two scores in ``model.json``
(:mod:`deepfake_audio.boosting`). A model with a clip view also holds ``clip_view.npz``
(arrays only) and its ``clip_view`` rule (:mod:`deepfake_audio.clip_view`).

Pickles can run arbitrary code when loaded, so loading is guarded twice:

1. the SHA-256 of every artefact must match ``model.json`` (tampering is refused
   before a single byte is unpickled);
2. unpickling goes through an allow-list: only numpy arrays, plain containers
   and scikit-learn classes may be created, so a crafted pickle that names
   ``os.system`` or similar fails instead of running.

A directory without ``model.json`` (trained by the original ``main.py``) can
only be hash-checked against nothing, so it is refused unless the caller passes
``allow_unverified=True`` — never load such pickles from a source you do not trust.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .boosting import BOOSTING_FILE, BoostedTrees, Fusion, compile_boosting, load_boosting
from .clip_view import CLIP_VIEW_FILE, ClipView, load_view, save_view
from .compiled import COMPILED_FILE, CompiledModel, compile_estimators, load_compiled
from .exceptions import ModelIntegrityError, ModelLoadError
from .features import FeatureConfig, feature_names
from .safe_pickle import safe_load_pickle, sha256_file

logger = logging.getLogger("deepfake_audio")

MODEL_FILE = "svm_model.pkl"
SCALER_FILE = "scaler.pkl"
#: Optional source-family classifier (listed in ``model.json`` only when present).
FAMILY_FILE = "family_model.pkl"
#: Name of the genuine class in :attr:`AnalysisResult.source_family`.
GENUINE_FAMILY = "genuine"
METADATA_FILE = "model.json"
FORMAT_VERSION = 1
DEFAULT_MODEL_DIR = Path(__file__).parent / "models" / "default"
_SCORE_BATCH = 256  # windows scored at once

@dataclass(frozen=True)
class Calibration:
    """Platt scaling of the file-level raw score: ``p(deepfake) = 1 / (1 + exp(a * raw + b))``.

    ``prior_deepfake`` is the share of synthetic recordings the probability assumes
    (:meth:`fit`); it is already folded into ``b``.
    """

    a: float
    b: float
    method: str = "platt"
    prior_deepfake: float = 0.5

    @classmethod
    def fit(cls, scores: np.ndarray, labels: np.ndarray,
            prior_deepfake: float = 0.5) -> Calibration:
        """Platt scaling of held-out ``scores`` (0 real / 1 deepfake ``labels``).

        Fitted with both classes weighted equally, so the mix of real and fake in the
        data does not leak in; then the prior odds ``prior_deepfake : 1 - prior_deepfake``
        replace the even odds (Bayes' rule shifts only ``b``). With the default 0.5,
        p = 0.5 sits where both error rates balance; a lower prior moves it towards fewer
        false alarms.
        """
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e4, class_weight="balanced").fit(
            np.asarray(scores).reshape(-1, 1), labels)
        prior_log_odds = float(np.log(prior_deepfake / (1 - prior_deepfake)))
        return cls(-float(lr.coef_[0, 0]), -float(lr.intercept_[0]) - prior_log_odds,
                   prior_deepfake=prior_deepfake)

    def probability_deepfake(self, raw_score: np.ndarray | float) -> np.ndarray:
        z = np.clip(self.a * np.asarray(raw_score, dtype=np.float64) + self.b, -60, 60)
        return np.asarray(1.0 / (1.0 + np.exp(z)))

    def raw_score_at(self, probability_deepfake: float) -> float:
        """The raw score this calibration maps to ``probability_deepfake`` (its inverse)."""
        p = min(max(float(probability_deepfake), 1e-12), 1 - 1e-12)
        return (float(np.log((1 - p) / p)) - self.b) / self.a


#: Used for legacy models, which carry no calibration: a logistic squash, flagged uncalibrated.
UNCALIBRATED = Calibration(a=-1.0, b=0.0, method="none")


#: ``ModelMetadata.aggregation`` → how a clip's window scores become its raw score.
AGGREGATIONS: dict[str, Callable[[np.ndarray], float]] = {
    "mean": lambda scores: float(np.mean(scores)),
}


@dataclass(frozen=True)
class ModelMetadata:
    """Content of ``model.json``.

    Raises
    ------
    ValueError
        ``aggregation`` is not one of :data:`AGGREGATIONS` (from ``model.json``:
        :class:`~deepfake_audio.exceptions.ModelLoadError`, before any pickle is read).
    """

    model_id: str
    features: FeatureConfig
    decision_threshold: float = 0.0
    #: ``(low, high)`` on the raw score: the inconclusive band around the threshold
    #: (``scripts/fit_band.py``); ``None`` means no band (never inconclusive).
    band: tuple[float, float] | None = None
    calibration: Calibration = UNCALIBRATED
    deepfake_label: Any = 1
    aggregation: str = "mean"
    sklearn_version: str | None = None
    artefacts: dict[str, str] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    library_version: str = __version__
    format_version: int = FORMAT_VERSION
    #: Synthetic source families the optional family classifier tells apart, in its
    #: class order; empty when the model has none.
    source_families: tuple[str, ...] = ()
    #: How the SVM's and the boosted trees' window scores are combined; None for an
    #: SVM-only model (no ``boosting.npz``).
    fusion: Fusion | None = None
    #: How the clip view's score joins the window mean; None without one (``clip_view.npz``).
    clip_view: ClipView | None = None

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation {self.aggregation!r} is not implemented by this"
                             f" library (supported: {', '.join(sorted(AGGREGATIONS))})")
        if self.band is not None and not (
                self.band[0] <= self.decision_threshold <= self.band[1]):
            raise ValueError(f"band {list(self.band)} does not contain the decision threshold"
                             f" {self.decision_threshold}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "model_id": self.model_id,
            "library_version": self.library_version,
            "sklearn_version": self.sklearn_version,
            "features": self.features.to_dict(),
            "feature_names": feature_names(self.features),
            "decision_threshold": self.decision_threshold,
            "sign_convention": "raw_score > decision_threshold means deepfake",
            **({"band": {"low": self.band[0], "high": self.band[1]}} if self.band else {}),
            "deepfake_label": self.deepfake_label,
            "aggregation": self.aggregation,
            "calibration": {"method": self.calibration.method, "a": self.calibration.a,
                            "b": self.calibration.b,
                            "prior_deepfake": self.calibration.prior_deepfake},
            "artefacts": self.artefacts,
            "source_families": list(self.source_families),
            **({"fusion": self.fusion.to_dict()} if self.fusion else {}),
            **({"clip_view": self.clip_view.to_dict()} if self.clip_view else {}),
            "training": self.training,
            "metrics": self.metrics,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMetadata:
        try:
            if data.get("format_version") != FORMAT_VERSION:
                raise ModelLoadError(
                    f"model.json format {data.get('format_version')!r} is not supported"
                    f" (this library reads format {FORMAT_VERSION})"
                )
            features = FeatureConfig.from_dict(data["features"])
            names = data.get("feature_names")
            if names is not None and names != feature_names(features):
                raise ModelLoadError("model.json feature_names do not match its feature settings")
            cal = data.get("calibration") or {}
            band = data.get("band")
            fusion = data.get("fusion")
            return cls(
                model_id=str(data["model_id"]),
                features=features,
                decision_threshold=float(data.get("decision_threshold", 0.0)),
                band=(float(band["low"]), float(band["high"])) if band else None,
                calibration=Calibration(float(cal["a"]), float(cal["b"]), str(cal["method"]),
                                        float(cal.get("prior_deepfake", 0.5)))
                if cal else UNCALIBRATED,
                deepfake_label=data.get("deepfake_label", 1),
                aggregation=str(data.get("aggregation", "mean")),
                sklearn_version=data.get("sklearn_version"),
                artefacts=dict(data.get("artefacts", {})),
                training=dict(data.get("training", {})),
                metrics=dict(data.get("metrics", {})),
                library_version=str(data.get("library_version", "")),
                source_families=tuple(str(name) for name in data.get("source_families", ())),
                fusion=Fusion.from_dict(fusion) if fusion else None,
                clip_view=ClipView.from_dict(data["clip_view"]) if data.get("clip_view") else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"invalid model.json: {exc}") from None


@dataclass(frozen=True)
class LoadedModel:
    """A verified model with its metadata: compiled arrays, or scikit-learn estimators.

    Attributes
    ----------
    compiled : CompiledModel or None
        Set when the folder's compiled arrays were loaded; ``classifier``, ``scaler``
        and ``family_classifier`` are then None (the pickles were hash-checked, not
        unpickled).
    family_classifier : object or None
        The scikit-learn source-family classifier of an uncompiled model, if it has one.
    boosting : BoostedTrees or None
        The tree ensemble fused with the SVM (``metadata.fusion``), if the model has one.
    """

    directory: Path
    metadata: ModelMetadata
    classifier: Any
    scaler: Any
    verified: bool
    compiled: CompiledModel | None = None
    family_classifier: Any = None
    boosting: BoostedTrees | None = None
    #: The clip view's scaler and SVM (``metadata.clip_view``), if the model has one.
    clip_view: CompiledModel | None = None

    def clip_raw_score(self, window_mean: float, feature_mean: np.ndarray | None) -> float:
        """A clip's raw score from its windows' mean score and mean feature vector."""
        if self.clip_view is None or self.metadata.clip_view is None or feature_mean is None:
            return window_mean
        view = self.clip_view.decision_values(feature_mean[None, :])[0]
        return float(self.metadata.clip_view.combine(window_mean, view))

    def family_probabilities(self, matrix: np.ndarray) -> np.ndarray | None:
        """P(family | synthetic) per ``metadata.source_families`` for each row.

        None when the model has no family classifier.
        """
        if self.compiled is not None:
            return self.compiled.family_probabilities(matrix)
        if self.family_classifier is None:
            return None
        return np.asarray(self.family_classifier.predict_proba(self.scaler.transform(matrix)),
                          dtype=np.float64)

    def decision_values(self, matrix: np.ndarray) -> np.ndarray:
        """Signed per-row scores: positive leans deepfake."""
        # Rows in batches: the RBF kernel is (rows x support vectors) floats, 270 MB for
        # the 4800 windows of a 2-hour file at once.
        if len(matrix) > _SCORE_BATCH:
            return np.concatenate([self.decision_values(matrix[i : i + _SCORE_BATCH])
                                   for i in range(0, len(matrix), _SCORE_BATCH)])
        # Scaled once for both models.
        if self.compiled is not None:
            scaled = self.compiled.scaled(matrix)
            svm = self.compiled.decision_values_scaled(scaled)
        else:
            scaled = self.scaler.transform(matrix)
            svm = np.asarray(self.classifier.decision_function(scaled),
                             dtype=np.float64).reshape(-1)
            classes = list(getattr(self.classifier, "classes_", [0, 1]))
            # decision_function is positive towards classes_[1]; flip if that is "real".
            if len(classes) == 2 and classes[0] == self.metadata.deepfake_label:
                svm = -svm
        if self.boosting is None or self.metadata.fusion is None:
            return svm
        return self.metadata.fusion.combine(svm, self.boosting.decision_values(scaled))


def _check_estimators(classifier: Any, scaler: Any, n_features: int, directory: Path) -> None:
    if not hasattr(classifier, "decision_function"):
        raise ModelLoadError(f"{directory / MODEL_FILE} does not hold a classifier with"
                             " decision_function (expected a scikit-learn SVM)")
    if not hasattr(scaler, "transform"):
        raise ModelLoadError(f"{directory / SCALER_FILE} does not hold a scaler with transform")
    for name, est in ((MODEL_FILE, classifier), (SCALER_FILE, scaler)):
        seen = getattr(est, "n_features_in_", None)
        if seen is not None and int(seen) != n_features:
            raise ModelLoadError(
                f"{name} expects {seen} features but the feature settings give {n_features}"
            )


def load_model(
    directory: str | Path | None = None, *, allow_unverified: bool = False,
    compiled: bool = True,
) -> LoadedModel:
    """Load and verify a model directory (the bundled default when ``directory`` is None).

    Parameters
    ----------
    directory : path, optional
        Folder with ``svm_model.pkl``, ``scaler.pkl`` and ``model.json``.
    allow_unverified : bool
        Accept a legacy folder without ``model.json`` (original service layout),
        using the original MFCC settings. Its pickles cannot be verified: only use
        this for files you created yourself.
    compiled : bool
        Score with the compiled arrays when ``model.json`` lists them (no
        scikit-learn import); False unpickles the estimators instead.

    Raises
    ------
    ModelLoadError
        Missing files, invalid metadata, mismatching feature settings.
    ModelIntegrityError
        A hash mismatch or a pickle holding forbidden objects.
    """
    path = Path(directory) if directory is not None else DEFAULT_MODEL_DIR
    if not path.is_dir():
        raise ModelLoadError(
            f"model directory not found: {path} (train one with 'deepfake-audio train DATA"
            f" -o {path}', or leave the model unset to use the bundled default)"
        )
    missing = [name for name in (MODEL_FILE, SCALER_FILE) if not (path / name).is_file()]
    if missing:
        raise ModelLoadError(f"model directory {path} lacks {', '.join(missing)}")
    meta_path = path / METADATA_FILE
    if meta_path.is_file():
        try:
            metadata = ModelMetadata.from_dict(json.loads(meta_path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as exc:
            raise ModelLoadError(f"{meta_path} is not valid JSON: {exc}") from None
        use_compiled = compiled and COMPILED_FILE in metadata.artefacts
        for name in (*_artefact_names(metadata), *((COMPILED_FILE,) if use_compiled else ())):
            _verify_artefact(path, name, metadata.artefacts.get(name))
        n_features = len(feature_names(metadata.features))
        if use_compiled:
            arrays = load_compiled(path / COMPILED_FILE)
            if arrays.n_features != n_features:
                raise ModelLoadError(f"{COMPILED_FILE} expects {arrays.n_features} features but"
                                     f" the feature settings give {n_features}")
            families = 0 if arrays.family_coef is None else len(arrays.family_coef)
            if families != len(metadata.source_families):
                raise ModelLoadError(f"{COMPILED_FILE} has {families} source families but"
                                     f" model.json lists {len(metadata.source_families)}")
            if arrays.family_classes and (
                    list(arrays.family_classes) != list(metadata.source_families)):
                raise ModelLoadError(f"{COMPILED_FILE}'s families {list(arrays.family_classes)}"
                                     " do not match model.json's source_families"
                                     f" {list(metadata.source_families)}")
            return LoadedModel(path, metadata, None, None, True, arrays,
                               boosting=_load_trees(path, metadata, n_features),
                               clip_view=load_view(path, metadata.clip_view, n_features))
        verified = True
    elif allow_unverified:
        logger.warning("loading %s without model.json: pickles are NOT verified; legacy MFCC"
                       " settings assumed", path)
        metadata = ModelMetadata(model_id=f"legacy:{path.name}", features=FeatureConfig.legacy())
        verified = False
    else:
        raise ModelLoadError(
            f"{path} has no model.json, so its pickles cannot be verified. If you trained it"
            " yourself with the original main.py, pass allow_unverified=True"
            " (CLI: --allow-unverified-model)."
        )
    classifier = safe_load_pickle(path / MODEL_FILE)
    scaler = safe_load_pickle(path / SCALER_FILE)
    _check_estimators(classifier, scaler, len(feature_names(metadata.features)), path)
    family = _load_family_classifier(path, metadata) if metadata.source_families else None
    _warn_on_version_drift(metadata)
    return LoadedModel(path, metadata, classifier, scaler, verified,
                       family_classifier=family,
                       boosting=_load_trees(path, metadata, len(feature_names(metadata.features))),
                       clip_view=load_view(path, metadata.clip_view,
                                           len(feature_names(metadata.features))))


def _artefact_names(metadata: ModelMetadata) -> tuple[str, ...]:
    return (MODEL_FILE, SCALER_FILE, *((FAMILY_FILE,) if metadata.source_families else ()),
            *((BOOSTING_FILE,) if metadata.fusion else ()),
            *((CLIP_VIEW_FILE,) if metadata.clip_view else ()))



def _load_trees(path: Path, metadata: ModelMetadata, n_features: int) -> BoostedTrees | None:
    if metadata.fusion is None:
        return None
    trees = load_boosting(path / BOOSTING_FILE)  # hash-checked with the other artefacts
    if trees.n_features != n_features:
        raise ModelLoadError(f"{BOOSTING_FILE} expects {trees.n_features} features but the"
                             f" feature settings give {n_features}")
    return trees


def _load_family_classifier(path: Path, metadata: ModelMetadata) -> Any:
    family = safe_load_pickle(path / FAMILY_FILE)
    if not hasattr(family, "predict_proba"):
        raise ModelLoadError(f"{path / FAMILY_FILE} does not hold a classifier with"
                             " predict_proba")
    classes = [str(c) for c in getattr(family, "classes_", [])]
    if classes != list(metadata.source_families):
        raise ModelLoadError(f"{FAMILY_FILE} classes {classes} do not match model.json's"
                             f" source_families {list(metadata.source_families)}")
    return family


def _verify_artefact(directory: Path, name: str, expected: str | None) -> None:
    if not expected:
        raise ModelIntegrityError(f"model.json lists no SHA-256 for {name}")
    if not (directory / name).is_file():
        raise ModelLoadError(f"model directory {directory} lacks {name}")
    actual = sha256_file(directory / name)
    if actual != expected:
        raise ModelIntegrityError(
            f"{directory / name} does not match model.json (sha256 {actual[:12]}…,"
            f" expected {expected[:12]}…): refusing to load a modified artefact"
        )


def _warn_on_version_drift(metadata: ModelMetadata) -> None:
    if not metadata.sklearn_version:
        return
    import sklearn

    if sklearn.__version__ != metadata.sklearn_version:
        message = (f"model {metadata.model_id} was trained with scikit-learn"
                   f" {metadata.sklearn_version}; running {sklearn.__version__}."
                   " Scores may differ slightly; retrain if results look wrong.")
        logger.warning(message)
        warnings.warn(message, UserWarning, stacklevel=3)


def save_model(
    directory: str | Path, classifier: Any, scaler: Any, metadata: ModelMetadata,
    family_classifier: Any = None, boosting: Any = None, clip_view: CompiledModel | None = None,
) -> ModelMetadata:
    """Write the pickles and ``model.json`` (with their SHA-256) to ``directory``.

    ``family_classifier`` (optional) maps the scaled window features to probabilities over
    ``metadata.source_families``; it is saved as ``family_model.pkl``. ``boosting``
    (optional, with ``metadata.fusion``) is a fitted ``HistGradientBoostingClassifier`` on
    the scaled features, saved as ``boosting.npz`` arrays; ``clip_view`` (with
    ``metadata.clip_view``) the clip view's arrays, saved as ``clip_view.npz``.

    Returns
    -------
    ModelMetadata
        ``metadata`` with ``artefacts`` and ``sklearn_version`` filled in.
    """
    import joblib
    import sklearn

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    if (family_classifier is None) != (not metadata.source_families):
        raise ValueError("a family classifier needs metadata.source_families, and vice versa")
    if (boosting is None) != (metadata.fusion is None):
        raise ValueError("boosted trees need metadata.fusion, and vice versa")
    joblib.dump(classifier, path / MODEL_FILE, protocol=4)
    joblib.dump(scaler, path / SCALER_FILE, protocol=4)
    if family_classifier is not None:
        joblib.dump(family_classifier, path / FAMILY_FILE, protocol=4)
    else:
        (path / FAMILY_FILE).unlink(missing_ok=True)  # a stale one would never be verified
    if boosting is not None:
        compile_boosting(boosting, metadata.deepfake_label).save(path / BOOSTING_FILE)
    else:
        (path / BOOSTING_FILE).unlink(missing_ok=True)
    if (clip_view is None) != (metadata.clip_view is None):
        raise ValueError("clip-view arrays need metadata.clip_view, and vice versa")
    save_view(path, clip_view)
    names = list(_artefact_names(metadata))
    try:
        compile_estimators(classifier, scaler, metadata.deepfake_label,
                           family_classifier).save(path / COMPILED_FILE)
        names.append(COMPILED_FILE)
    except ValueError as exc:
        logger.info("not compiling %s (scored through scikit-learn): %s", path, exc)
    artefacts = {name: sha256_file(path / name) for name in names}
    final = ModelMetadata(**{**metadata.__dict__, "artefacts": artefacts,
                             "sklearn_version": sklearn.__version__})
    (path / METADATA_FILE).write_text(json.dumps(final.to_dict(), indent=2) + "\n",
                                      encoding="utf-8")
    return final

