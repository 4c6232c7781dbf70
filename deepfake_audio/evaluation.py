"""Score a labelled dataset with a model, or run a held-out protocol (``deepfake-audio evaluate``).

:func:`evaluate` returns an :class:`EvaluationReport`; printing and plotting it is the
caller's job (``deepfake-audio evaluate`` does both).

Protocols
---------
``model``
    Score every clip with the given (default: bundled) model through the same
    :meth:`Detector.analyze` path users call.
``speaker-cv``
    5-fold cross-validation grouped by speaker, retraining with the model's settings.
``leave-one-generator-out``
    Each generator family's fakes are scored by a model trained without any of
    them; genuine clips by speaker-grouped cross-validation. Per-family EER is
    that family's fakes against all genuine clips.
``leave-one-corpus-out``
    Each genuine corpus is scored by a model trained without it; reports the
    share called real and its EER against out-of-fold fakes.
``unseen``
    Both at once: genuine clips leave-one-corpus-out, fakes leave-one-generator-out.
    The closest this data gets to recordings from corpora and generators the model
    never saw; the bundled model's threshold is calibrated on these scores.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import feature_table, fitting, held_out, metrics
from .boosting import Fusion
from .clip_view import ClipView, view_settings, window_means
from .datasets import Clip
from .exceptions import DatasetError, InputError
from .features import FeatureConfig

logger = logging.getLogger("deepfake_audio")

#: Accepted ``protocol`` values of :func:`evaluate`.
PROTOCOLS = ("model", "leave-one-generator-out", "leave-one-corpus-out", "unseen", "speaker-cv")


@dataclass(frozen=True)
class EvaluationReport:
    """What :func:`evaluate` measured.

    Attributes
    ----------
    protocol : str
        One of :data:`PROTOCOLS`.
    title : str
        One line naming the model or protocol and the clip count.
    summary : dict
        ``n``, ``eer``, ``balanced_eer``, ``roc_auc``, ``accuracy``, ``real_called_real``,
        ``fake_called_fake`` (and ``brier`` for the ``model`` protocol).
    per_generator, per_source : list of dict
        :func:`~deepfake_audio.metrics.per_group_table` rows.
    labels, scores : numpy.ndarray
        Labels and raw scores of the clips that could be scored (for plots).
    model : str or None
        Model id (``model`` protocol only).
    """

    protocol: str
    title: str
    summary: dict[str, float]
    per_generator: list[dict[str, Any]]
    per_source: list[dict[str, Any]]
    labels: np.ndarray
    scores: np.ndarray
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures (without the per-clip arrays)."""
        out: dict[str, Any] = {"protocol": self.protocol}
        if self.model is not None:
            out["model"] = self.model
        out.update(summary=self.summary, per_generator=self.per_generator,
                   per_source=self.per_source)
        return out

    def to_text(self) -> str:
        """The plain-text report ``deepfake-audio evaluate`` prints (last line ``EER: x%``)."""
        s = self.summary
        lines = [
            self.title,
            f"  clips      {s['n']}",
            f"  EER        {s['eer'] * 100:.2f}%",
            f"  balanced   {s['balanced_eer'] * 100:.2f}%  (the EER with every genuine corpus"
            " and every generator weighted equally)",
            f"  ROC-AUC    {s['roc_auc']:.4f}",
            f"  accuracy   {s['accuracy'] * 100:.2f}%",
            f"  real called real  {s['real_called_real'] * 100:.2f}%",
            f"  fake called fake  {s['fake_called_fake'] * 100:.2f}%",
        ]
        if "brier" in s:
            lines.append(f"  Brier      {s['brier']:.4f}")
        lines += ["", metrics.format_table(self.per_generator, "generator"), "",
                  metrics.format_table(self.per_source, "source"), "",
                  f"EER: {s['eer'] * 100:.2f}%"]
        return "\n".join(lines)


def _score_with_model(
    clips: Sequence[Clip], model_dir: str | Path | None, allow_unverified: bool, jobs: int,
    progress: bool, speech_gate: bool | None,
) -> tuple[np.ndarray, np.ndarray, float, str]:
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    from .detector import Detector

    detector = Detector(model_dir, allow_unverified=allow_unverified, max_duration_s=None,
                        speech_gate=speech_gate)

    def score(clip: Clip) -> tuple[float, float]:
        try:
            result = detector.analyze(clip.path)
        except InputError as exc:
            logger.warning("skipping %s: %s", clip.path, exc)
            return float("nan"), float("nan")
        return result.raw_score, result.probability_deepfake

    results = Parallel(n_jobs=jobs, prefer="threads", return_as="generator")(
        delayed(score)(c) for c in clips
    )
    pairs = list(tqdm(results, total=len(clips), desc="scoring", unit="clip",
                      disable=not progress))
    raw = np.array([p[0] for p in pairs])
    prob = np.array([p[1] for p in pairs])
    return raw, prob, detector.threshold, detector.model_id


@dataclass(frozen=True)
class _Recipe:
    """What a held-out protocol retrains and thresholds with: the model's own settings."""

    config: FeatureConfig
    settings: fitting.TrainSettings
    threshold: float
    fusion: Fusion | None
    clip_view: ClipView | None = None


def _model_settings(model_dir: str | Path | None, allow_unverified: bool) -> _Recipe:
    from .model import load_model

    model = load_model(model_dir, allow_unverified=allow_unverified)
    settings = fitting.TrainSettings.from_stored(model.metadata.training.get("settings", {}))
    return _Recipe(model.metadata.features, settings, model.metadata.decision_threshold,
                   model.metadata.fusion, model.metadata.clip_view)


def check_protocol(clips: Sequence[Clip], protocol: str) -> None:
    """Refuse a protocol the data cannot support, before any feature is extracted.

    Raises
    ------
    DatasetError
        An unknown protocol, or too few genuine corpora or generators to hold one out.
    """
    if protocol not in PROTOCOLS:
        raise DatasetError(f"unknown protocol {protocol!r} (one of {', '.join(PROTOCOLS)})")
    corpora = {c.corpus for c in clips if c.label == 0}
    families = {c.family for c in clips if c.label == 1}
    if protocol in ("leave-one-corpus-out", "unseen") and len(corpora) < 2:
        raise DatasetError(
            f"--protocol {protocol} needs genuine clips from at least 2 corpora (manifest"
            f" column 'source'); found {len(corpora)}"
        )
    if protocol in ("leave-one-generator-out", "unseen") and len(families) < 2:
        raise DatasetError(
            f"--protocol {protocol} needs fakes from at least 2 generators (manifest column"
            f" 'generator'); found {len(families)}"
        )


def _held_out_scores(
    clips: Sequence[Clip], protocol: str, model_dir: str | Path | None, allow_unverified: bool,
    jobs: int, cache_dir: Path | None, progress: bool,
) -> tuple[np.ndarray, float]:
    recipe = _model_settings(model_dir, allow_unverified)
    settings, fusion = recipe.settings, recipe.fusion
    table = feature_table.extract_dataset(
        clips, recipe.config, augment_copies=settings.augment_copies,
        max_windows=settings.max_windows, seed=settings.seed, jobs=jobs, progress=progress,
        cache_dir=cache_dir,
    )
    folds = held_out.grouped_folds(clips, settings.calibration_folds, settings.seed)
    raw = _protocol_scores(clips, table, settings, fusion, folds, protocol, jobs, progress)
    if recipe.clip_view is not None:  # the clip view held out the same way, then joined
        view = _protocol_scores(clips, window_means(table, len(clips)),
                                view_settings(settings), None, folds, protocol, jobs, progress)
        raw = recipe.clip_view.combine(raw, view)
    return raw, recipe.threshold


def _protocol_scores(clips: Sequence[Clip], table: feature_table.FeatureTable,
                     settings: fitting.TrainSettings, fusion: Fusion | None, folds: np.ndarray,
                     protocol: str, jobs: int, progress: bool) -> np.ndarray:
    labels = np.array([c.label for c in clips])
    raw = held_out.out_of_fold_scores(clips, table, settings, folds, fusion=fusion, jobs=jobs,
                                      progress=progress)
    held_out_by: dict[str, tuple[Callable[[Clip], str], int]] = {
        "leave-one-generator-out": (lambda c: c.family, 1),
        "leave-one-corpus-out": (lambda c: c.corpus, 0),
    }
    if protocol in held_out_by:
        key, label = held_out_by[protocol]
        held = held_out.leave_one_out(clips, table, settings, key, label=label, fusion=fusion,
                                      jobs=jobs, progress=progress)
        raw[labels == label] = held[labels == label]
    elif protocol == "unseen":
        held = held_out.unseen_scores(clips, table, settings, fusion=fusion, jobs=jobs,
                                      progress=progress)
        raw = np.where(np.isnan(held), raw, held)
    return raw


def evaluate(
    clips: Sequence[Clip],
    protocol: str = "model",
    *,
    model_dir: str | Path | None = None,
    allow_unverified: bool = False,
    jobs: int = 1,
    cache_dir: Path | None = None,
    progress: bool = True,
    speech_gate: bool | None = None,
) -> EvaluationReport:
    """Score ``clips`` under ``protocol`` (see the module docstring).

    Parameters
    ----------
    clips : sequence of Clip
        The labelled data (:func:`deepfake_audio.datasets.load_datasets`).
    protocol : str
        One of :data:`PROTOCOLS`.
    model_dir : str or Path, optional
        Model folder; the bundled model when ``None``. Held-out protocols retrain with its
        feature configuration and training settings.
    allow_unverified : bool
        Load a legacy model folder without ``model.json``.
    jobs : int
        Parallel workers.
    cache_dir : Path, optional
        Cache window features here between runs (held-out protocols).
    progress : bool
        Show progress bars on stderr.
    speech_gate : bool, optional
        ``model`` protocol: score only windows with speech, as :class:`Detector` does
        (clips without speech are skipped); off scores every window. Held-out
        protocols score every window of each clip either way.

    Raises
    ------
    DatasetError
        The data cannot support ``protocol``.
    ModelLoadError
        The model cannot be loaded.
    """
    check_protocol(clips, protocol)
    labels = np.array([c.label for c in clips])
    model_id: str | None = None
    prob: np.ndarray | None = None
    if protocol == "model":
        raw, prob, threshold, model_id = _score_with_model(clips, model_dir, allow_unverified,
                                                           jobs, progress, speech_gate)
        title = f"model {model_id} on {len(clips)} clips"
    else:
        raw, threshold = _held_out_scores(clips, protocol, model_dir, allow_unverified, jobs,
                                          cache_dir, progress)
        title = f"{protocol} on {len(clips)} clips"
    valid = ~np.isnan(raw)
    summary = metrics.summarise(labels[valid], raw[valid], threshold,
                                None if prob is None else prob[valid])
    weights = metrics.group_balanced_weights([c for c, ok in zip(clips, valid, strict=True) if ok])
    summary["balanced_eer"] = metrics.equal_error_rate(labels[valid], raw[valid], weights)[0]
    return EvaluationReport(
        protocol=protocol, title=title, summary=summary, model=model_id,
        per_generator=metrics.per_group_table(clips, raw, threshold, lambda c: c.family),
        per_source=metrics.per_group_table(clips, raw, threshold,
                                           metrics.source_label_key(clips)),
        labels=labels[valid], scores=raw[valid],
    )


@dataclass(frozen=True)
class WindowScores:
    """Every window of every clip scored by a model that never saw the clip's group.

    Attributes
    ----------
    labels : numpy.ndarray
        0 real, 1 deepfake, per clip.
    windows : tuple of numpy.ndarray
        Per clip, the raw score of each analysis window in time order (empty when the
        clip could not be decoded or its group could not be held out).
    spans : tuple of numpy.ndarray
        Per clip, ``(n_windows, 2)`` start and end seconds of those windows.
    """

    labels: np.ndarray
    windows: tuple[np.ndarray, ...]
    spans: tuple[np.ndarray, ...]

    @property
    def clip_scores(self) -> np.ndarray:
        """Each clip's raw score as :class:`~deepfake_audio.detector.Detector` aggregates it
        (the mean of its windows); NaN for clips without windows."""
        return np.array([float(np.mean(w)) if len(w) else np.nan for w in self.windows])


def _clip_windows(clip: Clip, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    from .audio import load_audio
    from .features import extract

    try:
        audio = load_audio(clip.path, target_sr=config.sample_rate, max_duration_s=None,
                           min_duration_s=0.1)
    except InputError as exc:
        logger.warning("skipping %s: %s", clip.path, exc)
        return np.zeros((0, 0)), np.zeros((0, 2))
    windows = extract(audio.samples, config)
    return windows.matrix, np.array(windows.spans, dtype=np.float64).reshape(-1, 2)


def unseen_window_components(
    clips: Sequence[Clip],
    *,
    model_dir: str | Path | None = None,
    allow_unverified: bool = False,
    jobs: int = 1,
    cache_dir: Path | None = None,
    progress: bool = True,
    settings: fitting.TrainSettings | None = None,
) -> WindowScores:
    """Like :func:`unseen_window_scores`, but each clip's windows are ``(n_windows, models)``:
    one column per model of :meth:`fitting.FittedModels.components`, not fused.

    ``settings`` replaces the model's own training settings (to measure a recipe change).
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    check_protocol(clips, "unseen")
    recipe = _model_settings(model_dir, allow_unverified)
    config, settings = recipe.config, settings or recipe.settings
    table = feature_table.extract_dataset(
        clips, config, augment_copies=settings.augment_copies, max_windows=settings.max_windows,
        seed=settings.seed, jobs=jobs, progress=progress, cache_dir=cache_dir,
    )
    full = list(tqdm(Parallel(n_jobs=jobs, return_as="generator")(
        delayed(_clip_windows)(clip, config) for clip in clips),
        total=len(clips), desc="all windows", unit="clip", disable=not progress))
    labels = np.array([c.label for c in clips])
    weights = fitting.row_weights(clips, table, settings)
    groups = [(label, name) for label, key in ((0, "corpus"), (1, "family"))
              for name in sorted({getattr(c, key) for c in clips if c.label == label})]

    def fold(label: int, name: str) -> tuple[list[int], list[np.ndarray]]:
        # As held_out.leave_one_out holds out: every clip of the group leaves the training
        # table, so a genuine corpus goes with the fakes made from it (vocoded LJSpeech
        # with LJSpeech), as a corpus the model never met would.
        key = "corpus" if label == 0 else "family"
        held = np.array([getattr(c, key) == name for c in clips])
        keep = ~held[table.clip_index]
        models = fitting.fit_models(table.matrix[keep], labels[table.clip_index[keep]],
                                     settings, weights[keep])
        indices = [i for i in np.flatnonzero(held & (labels == label)).tolist()
                   if len(full[i][0])]
        return indices, [models.components(full[i][0]) for i in indices]

    n_models = 2 if settings.boosting else 1
    scores: list[np.ndarray] = [np.zeros((0, n_models))] * len(clips)
    results = Parallel(n_jobs=jobs, return_as="generator")(
        delayed(fold)(label, name) for label, name in groups)
    for indices, values in tqdm(results, total=len(groups), desc="unseen folds",
                                disable=not progress):
        for i, value in zip(indices, values, strict=True):
            scores[i] = np.asarray(value, dtype=np.float64)
    return WindowScores(labels, tuple(scores), tuple(spans for _, spans in full))


def unseen_window_scores(
    clips: Sequence[Clip],
    *,
    model_dir: str | Path | None = None,
    allow_unverified: bool = False,
    jobs: int = 1,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> WindowScores:
    """Window-level scores under the ``unseen`` protocol, for rules that look inside a clip.

    Fold models are trained as :func:`evaluate` trains them for ``unseen`` (the model's
    feature settings and training settings; each genuine corpus and each generator family
    held out one at a time, a corpus together with the fakes made from it), but each
    held-out clip is scored on *all* its windows, as :meth:`Detector.analyze` scores it,
    rather than on the training table's sample. The models' scores are fused with the
    model's stored constants.

    Raises
    ------
    DatasetError
        The data cannot support the ``unseen`` protocol.
    """
    components = unseen_window_components(
        clips, model_dir=model_dir, allow_unverified=allow_unverified, jobs=jobs,
        cache_dir=cache_dir, progress=progress)
    return fuse_windows(components, _model_settings(model_dir, allow_unverified).fusion)


def fuse_windows(components: WindowScores, fusion: Fusion | None) -> WindowScores:
    """One fused score per window from :func:`unseen_window_components`' columns."""
    return WindowScores(
        components.labels,
        tuple(fitting.fused(w, fusion) if len(w) else np.zeros(0) for w in components.windows),
        components.spans)


__all__ = ["PROTOCOLS", "EvaluationReport", "WindowScores", "check_protocol", "evaluate",
           "fuse_windows", "unseen_window_components", "unseen_window_scores"]
