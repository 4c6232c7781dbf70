"""Training and evaluation: datasets, augmentation, fitting, calibration, metrics.

Used by ``deepfake-audio train`` / ``evaluate`` and ``scripts/train_default.py``.
Everything is seeded, so the same data and settings give the same model.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import inspect
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .audio import SUPPORTED_EXTENSIONS, load_audio
from .augment import AUGMENTATIONS, augment
from .exceptions import DeepfakeAudioError
from .features import FeatureConfig, extract

logger = logging.getLogger("deepfake_audio")

LABELS = {"real": 0, "bonafide": 0, "genuine": 0, "fake": 1, "deepfake": 1, "spoof": 1}


@dataclass(frozen=True)
class Clip:
    """One labelled recording of a dataset."""

    path: Path
    label: int  # 0 real, 1 deepfake
    source: str = "unknown"
    generator: str = "unknown"
    speaker: str = "unknown"

    @property
    def family(self) -> str:
        """Generator with the derived-copy suffix removed (``x-tel8k`` counts as ``x``)."""
        return self.generator.removesuffix("-tel8k")

    @property
    def corpus(self) -> str:
        """Source corpus with derived-copy suffixes removed."""
        base = self.source.removesuffix("-tel8k")
        return base.split("-resampled")[0]


def _read_manifest(manifest: Path) -> list[Clip]:
    root = manifest.parent
    clips = []
    with open(manifest, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            label = LABELS.get(row["label"].strip().lower())
            if label is None:
                raise DeepfakeAudioError(f"{manifest}: unknown label {row['label']!r}")
            clips.append(Clip(
                path=root / row["path"], label=label, source=row.get("source") or "unknown",
                generator=row.get("generator") or ("human" if label == 0 else "unknown"),
                speaker=row.get("speaker") or row["path"],
            ))
    return clips


def _walk_folder(folder: Path) -> list[Clip]:
    clips = []
    for label_name, label in (("real", 0), ("fake", 1)):
        base = folder / label_name
        for path in sorted(base.rglob("*")):
            if path.suffix.lower() in SUPPORTED_EXTENSIONS and path.is_file():
                parts = path.relative_to(base).parts
                sub = parts[0] if len(parts) > 1 else label_name
                clips.append(Clip(path, label, source=sub,
                                  generator="human" if label == 0 else sub, speaker=str(path)))
    return clips


def load_dataset(data: str | Path) -> list[Clip]:
    """Read a dataset: a manifest CSV, a folder holding ``manifest.csv``, or ``real/`` + ``fake/``.

    The manifest format is ``path,label,source,generator,speaker,...`` with paths
    relative to the CSV's folder.
    """
    path = Path(data)
    if path.is_file():
        clips = _read_manifest(path)
    elif (path / "manifest.csv").is_file():
        clips = _read_manifest(path / "manifest.csv")
    elif (path / "real").is_dir() or (path / "fake").is_dir():
        clips = _walk_folder(path)
    else:
        raise DeepfakeAudioError(
            f"{path}: expected a manifest CSV or a folder with manifest.csv or real/ and fake/"
        )
    if not clips:
        raise DeepfakeAudioError(f"{path}: no audio clips found")
    return clips


# --------------------------------------------------------------------------- features


@dataclass(frozen=True)
class FeatureTable:
    """Window-level features of a dataset."""

    matrix: np.ndarray
    clip_index: np.ndarray  # row -> index into the clip list
    augmented: np.ndarray  # row came from an augmented copy
    failed: tuple[tuple[str, str], ...] = ()


def _clip_rows(
    clip: Clip, index: int, config: FeatureConfig, augment_copies: int, max_windows: int, seed: int
) -> tuple[list[np.ndarray], list[bool], str | None]:
    try:
        audio = load_audio(clip.path, target_sr=config.sample_rate, max_duration_s=None,
                           min_duration_s=0.1)
    except DeepfakeAudioError as exc:
        return [], [], str(exc)
    rng = np.random.default_rng([seed, index])
    rows, flags = [], []
    variants = [("none", audio.samples)]
    for _ in range(augment_copies):
        kind = str(rng.choice(AUGMENTATIONS[1:]))
        variants.append((kind, augment(audio.samples, config.sample_rate, kind, rng)))
    for kind, samples in variants:
        matrix = extract(samples, config).matrix
        if max_windows and len(matrix) > max_windows:
            matrix = matrix[np.sort(rng.choice(len(matrix), max_windows, replace=False))]
        rows.append(matrix)
        flags.append(kind != "none")
    return rows, flags, None


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    """Digest of the code that makes feature rows: a change there invalidates cached rows."""
    from . import features

    digest = hashlib.sha256()
    package = Path(features.__file__).parent
    for name in ("features.py", "augment.py", "audio.py"):
        digest.update((package / name).read_bytes())
    digest.update(inspect.getsource(_clip_rows).encode())
    return digest.hexdigest()[:16]


def _cache_key(clip: Clip, config: FeatureConfig, augment_copies: int, max_windows: int,
               seed: int, index: int) -> str:
    stat = clip.path.stat()
    text = repr((str(clip.path), stat.st_size, int(stat.st_mtime), config.to_dict(),
                 augment_copies, max_windows, seed, index, _code_digest()))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def extract_dataset(
    clips: Sequence[Clip],
    config: FeatureConfig,
    *,
    augment_copies: int = 0,
    max_windows: int = 0,
    seed: int = 0,
    jobs: int = 1,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> FeatureTable:
    """Window features of every clip (plus ``augment_copies`` augmented copies each).

    Clips that cannot be decoded are skipped and listed in ``failed``.
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    def work(i: int, clip: Clip) -> tuple[list[np.ndarray], list[bool], str | None]:
        if cache_dir is None:
            return _clip_rows(clip, i, config, augment_copies, max_windows, seed)
        cached = cache_dir / f"{_cache_key(clip, config, augment_copies, max_windows, seed, i)}.npz"
        if cached.is_file():
            with np.load(cached) as data:
                n = int(data["n"])
                return [data[f"m{k}"] for k in range(n)], list(data["flags"]), None
        rows, flags, error = _clip_rows(clip, i, config, augment_copies, max_windows, seed)
        if error is None:
            arrays: dict[str, Any] = {f"m{k}": m for k, m in enumerate(rows)}
            np.savez(cached, n=len(rows), flags=np.array(flags), **arrays)
        return rows, flags, error

    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
    tasks = (delayed(work)(i, clip) for i, clip in enumerate(clips))
    results: Iterable[Any] = Parallel(n_jobs=jobs, return_as="generator")(tasks)
    matrices, owners, flags_out, failed = [], [], [], []
    for i, (rows, flags, error) in enumerate(
        tqdm(results, total=len(clips), desc="features", unit="clip", disable=not progress)
    ):
        if error is not None:
            failed.append((str(clips[i].path), error))
            logger.warning("skipping %s: %s", clips[i].path, error)
            continue
        for matrix, flag in zip(rows, flags, strict=True):
            matrices.append(matrix)
            owners.append(np.full(len(matrix), i))
            flags_out.append(np.full(len(matrix), flag))
    if not matrices:
        raise DeepfakeAudioError("no clip could be decoded")
    return FeatureTable(np.vstack(matrices), np.concatenate(owners), np.concatenate(flags_out),
                        tuple(failed))


# --------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of the SVM and the data pipeline."""

    # Chosen on held-out corpora and generators (scripts/ablation.py): a smooth RBF
    # (gamma well below sklearn's "scale") with C=10.
    C: float = 10.0
    gamma: str | float = 0.001
    augment_copies: int = 1
    max_windows: int = 6
    calibration_folds: int = 5
    # "unseen": Platt and threshold from genuine clips scored leave-one-corpus-out and
    # fakes scored leave-one-generator-out, the situation a deployed model is in;
    # "speaker-cv": from speaker-grouped out-of-fold scores (in-domain, over-confident).
    calibration: str = "unseen"
    seed: int = 0
    #: Weight windows so every (corpus, label) cell counts the same: one big corpus
    #: (LibriSpeech, Tortoise) must not decide what "real" or "fake" sounds like.
    balance: bool = True


def fit_svm(matrix: np.ndarray, labels: np.ndarray, settings: TrainSettings,
            weights: np.ndarray | None = None) -> tuple[Any, Any]:
    """Fit StandardScaler + RBF SVC (class-balanced); returns ``(classifier, scaler)``."""
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    scaler = StandardScaler().fit(matrix)
    # Balanced weights already equalise the classes; otherwise let sklearn do it.
    classifier = SVC(C=settings.C, gamma=settings.gamma, kernel="rbf",
                     class_weight=None if weights is not None else "balanced",
                     random_state=settings.seed)
    classifier.fit(scaler.transform(matrix), labels, sample_weight=weights)
    return classifier, scaler


def row_weights(clips: Sequence[Clip], table: FeatureTable, settings: TrainSettings) -> np.ndarray:
    """Per-row sample weights (mean 1); uniform when ``settings.balance`` is off."""
    if not settings.balance:
        return np.ones(len(table.matrix))
    cells = np.array([f"{c.label}:{c.corpus}" for c in clips])[table.clip_index]
    labels = np.array([c.label for c in clips])[table.clip_index]
    weights = np.zeros(len(cells))
    for label in (0, 1):
        in_label = labels == label
        names = set(cells[in_label].tolist())
        for name in names:
            members = cells == name
            weights[members] = 1.0 / (members.sum() * len(names))
    return weights * len(weights) / weights.sum()


def clip_scores(classifier: Any, scaler: Any, table: FeatureTable, rows: np.ndarray,
                n_clips: int) -> np.ndarray:
    """Mean window decision value per clip (NaN for clips without rows), positive = deepfake."""
    values = classifier.decision_function(scaler.transform(table.matrix[rows]))
    if list(classifier.classes_) != [0, 1]:
        raise DeepfakeAudioError("classifier classes must be [0, 1] (real, deepfake)")
    sums = np.bincount(table.clip_index[rows], weights=values, minlength=n_clips)
    counts = np.bincount(table.clip_index[rows], minlength=n_clips)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def fit_platt(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Platt scaling: ``p(deepfake) = 1 / (1 + exp(a * score + b))``.

    Classes are weighted equally, so the probability assumes even odds of real and
    fake rather than the training corpus's mix, and p = 0.5 sits where both error
    rates balance.
    """
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e4, class_weight="balanced").fit(scores.reshape(-1, 1), labels)
    return -float(lr.coef_[0, 0]), -float(lr.intercept_[0])


def grouped_folds(clips: Sequence[Clip], n_folds: int, seed: int) -> np.ndarray:
    """Fold number per clip, speakers never split across folds, labels stratified."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.array([c.label for c in clips])
    groups = np.array([c.speaker for c in clips])
    # Each fold needs a group of each class; small datasets get fewer folds.
    smallest = min(len(set(groups[labels == label].tolist())) for label in (0, 1))
    if smallest < 2:
        raise DeepfakeAudioError(
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
    clf, scaler = fit_svm(table.matrix[train_rows], labels[table.clip_index[train_rows]], settings,
                          weights[train_rows])
    return clip_scores(clf, scaler, table, np.flatnonzero(test_rows), n_clips)


def _held_out_scores(clips: Sequence[Clip], table: FeatureTable, settings: TrainSettings,
                     held_out_masks: Sequence[np.ndarray], desc: str, jobs: int,
                     progress: bool) -> np.ndarray:
    """For each clip mask: fit without those clips (and their augmented rows), score them."""
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    labels = np.array([c.label for c in clips])
    weights = row_weights(clips, table, settings)
    tasks = []
    for held_out in held_out_masks:
        held_rows = held_out[table.clip_index]
        tasks.append(delayed(_fit_and_score)(table, labels, weights, settings, ~held_rows,
                                             held_rows & ~table.augmented, len(clips)))
    scores = np.full(len(clips), np.nan)
    results = Parallel(n_jobs=jobs, return_as="generator")(tasks)
    for held_out, fold_scores in zip(
        held_out_masks, tqdm(results, total=len(tasks), desc=desc, disable=not progress),
        strict=True,
    ):
        scores[held_out] = fold_scores[held_out]
    return scores


def out_of_fold_scores(clips: Sequence[Clip], table: FeatureTable, settings: TrainSettings,
                       folds: np.ndarray, *, jobs: int = 1, progress: bool = True) -> np.ndarray:
    """Clip scores from models that never saw the clip's speaker (augmented rows train only)."""
    masks = [folds == k for k in sorted(set(folds.tolist()))]
    return _held_out_scores(clips, table, settings, masks, "cross-validation", jobs, progress)


# --------------------------------------------------------------------------- metrics


def roc_points(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
                     n_bins: int = 10) -> list[dict[str, float]]:
    """Calibration table: per probability bin, mean predicted vs. observed deepfake share.

    Clips are weighted so both classes count equally, matching the even-odds prior
    the calibration assumes (see :func:`fit_platt`).
    """
    labels = np.asarray(labels, dtype=float)
    class_weight = np.where(labels == 1, 0.5 / max(labels.sum(), 1),
                            0.5 / max((1 - labels).sum(), 1))
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


def plot_reliability(rows: Sequence[dict[str, float]], path: Path) -> None:
    """Reliability diagram PNG (needs matplotlib, the ``[plot]`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ax.plot([r["predicted"] for r in rows], [r["observed"] for r in rows], "o-",
            label="model (out-of-fold)")
    ax.set_xlabel("predicted probability of deepfake")
    ax.set_ylabel("observed share of deepfakes")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_table(rows: Sequence[dict[str, Any]], title: str) -> str:
    """Plain-text table of :func:`per_group_table` rows."""
    lines = [f"{title:<40} {'n':>5} {'correct':>8} {'EER':>7}"]
    for row in rows:
        eer = f"{row['eer'] * 100:6.1f}%" if "eer" in row else "      -"
        lines.append(f"{row['group']:<40} {row['n']:>5} {row['correct'] * 100:7.1f}% {eer}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- high level


def dataset_summary(clips: Sequence[Clip]) -> dict[str, Any]:
    from collections import Counter

    return {
        "clips": len(clips),
        "real": sum(c.label == 0 for c in clips),
        "deepfake": sum(c.label == 1 for c in clips),
        "speakers": len({c.speaker for c in clips}),
        "by_source": dict(sorted(Counter(f"{c.source}/{c.generator}" for c in clips).items())),
    }


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
    reliability_png: Path | None = None,
) -> Any:
    """Train, calibrate and save a model; returns its :class:`~deepfake_audio.model.ModelMetadata`.

    Calibration (Platt) and the threshold come from held-out scores (see
    ``TrainSettings.calibration``); the saved SVM is then fitted on every clip.
    """
    from .model import Calibration, ModelMetadata, save_model

    config = config or FeatureConfig()
    settings = settings or TrainSettings()
    labels = np.array([c.label for c in clips])
    if len(set(labels.tolist())) < 2:
        raise DeepfakeAudioError("training needs both real and fake clips")
    table = extract_dataset(clips, config, augment_copies=settings.augment_copies,
                            max_windows=settings.max_windows, seed=settings.seed, jobs=jobs,
                            cache_dir=cache_dir, progress=progress)
    folds = grouped_folds(clips, settings.calibration_folds, settings.seed)
    oof = out_of_fold_scores(clips, table, settings, folds, jobs=jobs, progress=progress)
    calibration_scores, protocol = oof, (
        f"{settings.calibration_folds}-fold cross-validation grouped by speaker")
    if settings.calibration == "unseen":
        if can_hold_out_groups(clips):
            unseen = unseen_scores(clips, table, settings, jobs=jobs, progress=progress)
            # A group whose removal leaves one class empty stays NaN: fall back to its
            # out-of-fold score rather than dropping the clip.
            calibration_scores = np.where(np.isnan(unseen), oof, unseen)
            protocol = ("genuine clips leave-one-corpus-out, fakes leave-one-generator-out "
                        "(speaker-grouped cross-validation where a group cannot be held out)")
        else:
            logger.warning("calibrating on speaker-grouped cross-validation: leave-one-out "
                           "calibration needs two genuine corpora and two generators")
    elif settings.calibration != "speaker-cv":
        raise DeepfakeAudioError(f"unknown calibration {settings.calibration!r}")
    valid = ~np.isnan(calibration_scores)
    a, b = fit_platt(calibration_scores[valid], labels[valid])
    if a >= 0:  # higher scores must mean "more likely deepfake", or the sign convention breaks
        raise DeepfakeAudioError(
            "calibration failed: held-out scores do not separate real from fake clips"
        )
    calibration = Calibration(a, b)
    threshold = -b / a  # where the calibrated probability crosses 0.5
    probabilities = calibration.probability_deepfake(calibration_scores[valid])
    reliability = reliability_bins(labels[valid], probabilities)
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
    if reliability_png is not None:
        plot_reliability(reliability, reliability_png)
    classifier, scaler = fit_svm(table.matrix, labels[table.clip_index], settings,
                                 row_weights(clips, table, settings))
    training = {
        "data": dataset_summary(clips),
        "windows": len(table.matrix),
        "failed_clips": len(table.failed),
        "settings": {k: v for k, v in settings.__dict__.items()},
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
    )
    return save_model(output_dir, classifier, scaler, metadata)


def unseen_scores(clips: Sequence[Clip], table: FeatureTable, settings: TrainSettings, *,
                  jobs: int = 1, progress: bool = True) -> np.ndarray:
    """Genuine clips scored leave-one-corpus-out, fakes leave-one-generator-out.

    The closest this data gets to what a deployed model meets: recordings from a corpus
    and a generator it never saw. NaN where a group cannot be held out.
    """
    labels = np.array([c.label for c in clips])
    real = leave_one_out(clips, table, settings, lambda c: c.corpus, label=0, jobs=jobs,
                         progress=progress)
    fake = leave_one_out(clips, table, settings, lambda c: c.family, label=1, jobs=jobs,
                         progress=progress)
    return np.where(labels == 0, real, fake)


def can_hold_out_groups(clips: Sequence[Clip]) -> bool:
    """Whether there are at least two genuine corpora and two generator families."""
    return (len({c.corpus for c in clips if c.label == 0}) >= 2
            and len({c.family for c in clips if c.label == 1}) >= 2)


def leave_one_out(
    clips: Sequence[Clip],
    table: FeatureTable,
    settings: TrainSettings,
    key: Callable[[Clip], str],
    *,
    label: int,
    jobs: int = 1,
    progress: bool = True,
) -> np.ndarray:
    """Score each clip with ``label`` by a model trained without its whole ``key`` group.

    For ``label=1`` and ``key=family`` this is leave-one-generator-out; for
    ``label=0`` and ``key=corpus`` leave-one-corpus-out. Other clips get NaN.
    Copies derived from held-out clips (8 kHz, resampled) share the key, so they
    are held out too.
    """
    labels = np.array([c.label for c in clips])
    keys = np.array([key(c) for c in clips])
    names = sorted(set(keys[labels == label].tolist()))
    masks = [keys == name for name in names]
    scores = _held_out_scores(clips, table, settings, masks,
                              f"leave-one-out ({'fake' if label else 'real'})", jobs, progress)
    scores[labels != label] = np.nan
    return scores


__all__ = [
    "Clip",
    "FeatureTable",
    "TrainSettings",
    "augment",
    "can_hold_out_groups",
    "clip_scores",
    "dataset_summary",
    "equal_error_rate",
    "extract_dataset",
    "fit_platt",
    "fit_svm",
    "format_table",
    "group_balanced_weights",
    "grouped_folds",
    "leave_one_out",
    "load_dataset",
    "out_of_fold_scores",
    "per_group_table",
    "plot_reliability",
    "reliability_bins",
    "row_weights",
    "source_label_key",
    "summarise",
    "train",
    "unseen_scores",
]
