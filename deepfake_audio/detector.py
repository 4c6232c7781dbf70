"""The :class:`Detector`: audio in, verdict out.

Scoring: the clip is cut into analysis windows (``window_s`` long, ``hop_s``
apart, the last one aligned to the end; a clip shorter than one window is one
window). Each window gets the SVM's signed decision value. The clip's
``raw_score`` aggregates its window scores as ``model.json`` says (the
**mean**, the only rule implemented, which load_model enforces) — the same rule
the calibration and threshold were fitted with at training time — and the timeline
keeps every window's own score, so a long call shows where synthetic speech is.
:meth:`Detector.verdict` turns a raw score into the verdict, for clips and
streams alike.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .audio import (
    DEFAULT_MAX_DURATION_S,
    DEFAULT_MIN_DURATION_S,
    Audio,
    AudioSource,
    load_audio,
)
from .features import FeatureConfig, extract
from .model import AGGREGATIONS, GENUINE_FAMILY, LoadedModel, ModelMetadata, load_model

logger = logging.getLogger("deepfake_audio")

REAL = "real"
DEEPFAKE = "deepfake"


@dataclass(frozen=True)
class Verdict:
    """The decision for one raw score (a clip's, or a stream's running one).

    Attributes
    ----------
    classification : {"real", "deepfake"}
        ``"deepfake"`` when ``raw_score > threshold``.
    confidence : float
        Calibrated probability of ``classification``.
    raw_score : float
        The score decided on.
    probability_deepfake : float
        Calibrated probability that the audio is synthetic.
    """

    classification: str
    confidence: float
    raw_score: float
    probability_deepfake: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WindowScore:
    """Score of one analysis window of the timeline."""

    start_s: float
    end_s: float
    raw_score: float
    probability_deepfake: float
    classification: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AnalysisResult:
    """Verdict for one recording.

    Attributes
    ----------
    classification : {"real", "deepfake"}
        ``"deepfake"`` when ``raw_score > threshold``.
    confidence : float
        Calibrated probability of the returned class: 0.5–1 at the model's own
        threshold (where the calibration crosses 0.5). A ``threshold`` override
        moves the verdict but not the calibration, so it can then be below 0.5.
    raw_score : float
        Mean SVM decision value over the windows; positive leans deepfake,
        negative leans real.
    probability_deepfake : float
        Calibrated probability that the recording is synthetic.
    threshold : float
        Decision threshold on ``raw_score`` that was applied.
    duration_s : float
        Length of the audio in seconds.
    sample_rate : int
        Sample rate of the input before resampling.
    model : str
        Identifier of the model that scored it.
    calibrated : bool
        False for legacy models without calibration data.
    timeline : tuple of WindowScore
        Per-window scores in time order.
    source_family : dict of str to float, or None
        What probably made the recording: ``"genuine"`` gets ``1 - probability_deepfake``
        and each synthetic family (``classic-tts``, ``neural-vocoder``, ``zero-shot-tts``,
        ``voice-conversion`` for the bundled model) ``probability_deepfake`` times the
        family classifier's share; the values sum to 1. None for models without a family
        classifier. The families are as reliable as the model card's confusion matrix says.
    """

    classification: str
    confidence: float
    raw_score: float
    probability_deepfake: float
    threshold: float
    duration_s: float
    sample_rate: int
    model: str
    calibrated: bool
    timeline: tuple[WindowScore, ...]
    source_family: dict[str, float] | None = None

    @property
    def is_deepfake(self) -> bool:
        return self.classification == DEEPFAKE

    def to_dict(self, *, timeline: bool = True) -> dict[str, Any]:
        """JSON-ready dict: the service's three keys first, then the extras."""
        data: dict[str, Any] = {
            "classification": self.classification,
            "confidence": self.confidence,
            "raw_score": self.raw_score,
            "probability_deepfake": self.probability_deepfake,
            "threshold": self.threshold,
            "duration_s": self.duration_s,
            "sample_rate": self.sample_rate,
            "model": self.model,
            "calibrated": self.calibrated,
            "source_family": None if self.source_family is None else dict(self.source_family),
        }
        if timeline:
            data["timeline"] = [w.to_dict() for w in self.timeline]
        return data


class Detector:
    """Load a model once, then analyse any number of recordings.

    Parameters
    ----------
    model_dir : path, optional
        Model folder; the bundled default model when omitted.
    threshold : float, optional
        Override the model's decision threshold on ``raw_score``.
    max_duration_s : float or None
        Longest audio accepted (checked from the header before decoding).
    min_duration_s : float
        Shortest audio accepted.
    allow_unverified : bool
        Load a legacy model folder without ``model.json`` (unverifiable pickles).

    Examples
    --------
    >>> from deepfake_audio import Detector
    >>> det = Detector()
    >>> result = det.analyze("call.wav")          # doctest: +SKIP
    >>> result.classification, result.confidence  # doctest: +SKIP
    ('real', 0.97)
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        threshold: float | None = None,
        max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
        min_duration_s: float = DEFAULT_MIN_DURATION_S,
        allow_unverified: bool = False,
    ) -> None:
        started = time.perf_counter()
        self._model: LoadedModel = load_model(model_dir, allow_unverified=allow_unverified)
        # load_model refused any aggregation missing from AGGREGATIONS.
        self._aggregate = AGGREGATIONS[self._model.metadata.aggregation]
        self.threshold = (
            float(threshold) if threshold is not None else self._model.metadata.decision_threshold
        )
        self.max_duration_s = max_duration_s
        self.min_duration_s = min_duration_s
        logger.debug("loaded model %s in %.3f s", self.model_id, time.perf_counter() - started)

    @classmethod
    def from_dir(cls, model_dir: str | Path, **kwargs: Any) -> Detector:
        """Load the model stored in ``model_dir`` (same keywords as the constructor)."""
        return cls(model_dir, **kwargs)

    @property
    def model_id(self) -> str:
        return self._model.metadata.model_id

    @property
    def metadata(self) -> ModelMetadata:
        return self._model.metadata

    @property
    def feature_config(self) -> FeatureConfig:
        return self._model.metadata.features

    @property
    def model_dir(self) -> Path:
        return self._model.directory

    def decode(self, source: AudioSource, *, file_type: str | None = None) -> Audio:
        """Decode and validate ``source`` at the model's sample rate (see :func:`load_audio`)."""
        return load_audio(
            source,
            target_sr=self.feature_config.sample_rate,
            max_duration_s=self.max_duration_s,
            min_duration_s=self.min_duration_s,
            file_type=file_type,
        )

    def analyze(self, source: AudioSource, *, file_type: str | None = None) -> AnalysisResult:
        """Classify one recording.

        Parameters
        ----------
        source : path, bytes, binary file object or (numpy.ndarray, int)
            WAV, FLAC, OGG or MP3 data at any sample rate and channel count, or
            raw samples with their sample rate.
        file_type : str, optional
            Declared extension (e.g. ``".mp3"``), as the WebSocket API sends it.

        Returns
        -------
        AnalysisResult

        Raises
        ------
        InputError
            The audio cannot be analysed (a specific subclass says why).
        """
        return self.analyze_audio(self.decode(source, file_type=file_type))

    def analyze_audio(self, audio: Audio) -> AnalysisResult:
        """Classify already-decoded :class:`~deepfake_audio.audio.Audio`."""
        windows = extract(audio.samples, self.feature_config)
        scores = self._model.decision_values(windows.matrix)
        calibration = self._model.metadata.calibration
        probabilities = calibration.probability_deepfake(scores)
        timeline = tuple(
            WindowScore(start, end, float(score), float(prob), self._label(float(score)))
            for (start, end), score, prob in zip(windows.spans, scores, probabilities,
                                                 strict=True)
        )
        verdict = self.verdict(self._aggregate(scores))
        families = self._model.family_probabilities(windows.matrix)
        source_family = None
        if families is not None:
            p_fake = verdict.probability_deepfake
            source_family = {GENUINE_FAMILY: round(1.0 - p_fake, 6)} | {
                name: round(p_fake * float(share), 6)
                for name, share in zip(self._model.metadata.source_families, families,
                                       strict=True)
            }
        return AnalysisResult(
            classification=verdict.classification,
            confidence=verdict.confidence,
            raw_score=verdict.raw_score,
            probability_deepfake=verdict.probability_deepfake,
            threshold=self.threshold,
            duration_s=round(audio.duration_s, 3),
            sample_rate=audio.original_sample_rate,
            model=self.model_id,
            calibrated=calibration.method != "none",
            timeline=timeline,
            source_family=source_family,
        )

    def verdict(self, raw_score: float) -> Verdict:
        """Decide on one raw score: the rule behind every verdict, clip or stream.

        Parameters
        ----------
        raw_score : float
            A clip's aggregated window score (or a stream's running one).

        Returns
        -------
        Verdict
            ``"deepfake"`` when ``raw_score > threshold``, with calibrated probabilities.
        """
        raw = float(raw_score)
        p_fake = float(self._model.metadata.calibration.probability_deepfake(raw))
        label = self._label(raw)
        return Verdict(label, p_fake if label == DEEPFAKE else 1.0 - p_fake, raw, p_fake)

    def _label(self, raw_score: float) -> str:
        return DEEPFAKE if raw_score > self.threshold else REAL

    def warm_up(self) -> AnalysisResult:
        """Run one inference on a synthetic tone so first real requests are not slow."""
        sr = self.feature_config.sample_rate
        t = np.arange(int(sr * 1.0)) / sr
        tone = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)))
        return self.analyze((tone.astype(np.float32), sr))

    def __repr__(self) -> str:
        return f"Detector(model={self.model_id!r}, threshold={self.threshold:.3f})"
