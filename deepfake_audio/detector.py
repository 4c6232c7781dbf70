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

Two answers: ``classification`` is binary (``raw_score > threshold``), exactly as the
service contract defines it; ``verdict`` adds ``"inconclusive"`` for raw scores inside the
model's **band** ``[low, high]`` around the threshold (fitted on held-out scores by
``scripts/fit_band.py``, stored in ``model.json``; a model without one has the threshold
as its band, so it is never inconclusive). Runs of consecutive windows above the threshold
are merged into **segments**; a *sustained* one (at least :data:`SEGMENT_MIN_S` long,
its mean window score above the band) turns a ``real`` verdict into ``inconclusive``, so a
synthetic insert in a long genuine call is not averaged away. ``verdict`` never
contradicts ``classification``: it is either the same or ``"inconclusive"``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .audio import (
    DEFAULT_MAX_DURATION_S,
    DEFAULT_MIN_DURATION_S,
    Audio,
    AudioSource,
    load_audio,
)
from .exceptions import ConfigurationError
from .features import FeatureConfig, WindowFeatures, extract, extract_blocks
from .model import AGGREGATIONS, Calibration, LoadedModel, ModelMetadata, load_model

if TYPE_CHECKING:
    from .speaker import SpeakerProfile, SpeakerResult, SpeakerVerifier

logger = logging.getLogger("deepfake_audio")

REAL = "real"
DEEPFAKE = "deepfake"
INCONCLUSIVE = "inconclusive"

#: Shortest flagged segment (seconds, first window start to last window end; six windows)
#: that can overrule a ``real`` mean. Chosen with ``scripts/insert_eval.py`` (figures in
#: docs/model-card.md): the shortest of 4.5/6/7.5/9 s that keeps the unseen-protocol EER
#: within one point of the mean's even with no band (6 s: +3.0 points, 7.5 s: +1.4, 9 s: +0.3).
SEGMENT_MIN_S = 9.0


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
    verdict : {"real", "deepfake", "inconclusive"}
        ``classification``, or ``"inconclusive"`` inside the band (or, for a clip, when a
        sustained flagged segment contradicts a ``real`` mean).
    """

    classification: str
    confidence: float
    raw_score: float
    probability_deepfake: float
    verdict: str

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
class Segment:
    """A run of consecutive windows scored above the threshold, merged.

    Attributes
    ----------
    start_s, end_s : float
        From the first window's start to the last window's end, in seconds.
    raw_score : float
        Mean raw score of its windows.
    probability_deepfake : float
        Calibrated probability for that mean score.
    """

    start_s: float
    end_s: float
    raw_score: float
    probability_deepfake: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def flagged_segments(spans: Sequence[tuple[float, float]], scores: np.ndarray, threshold: float,
                     calibration: Calibration) -> tuple[Segment, ...]:
    """Merge consecutive windows with ``score > threshold`` into :class:`Segment` s.

    Parameters
    ----------
    spans : sequence of (float, float)
        Start and end seconds of each window, in time order.
    scores : numpy.ndarray
        Raw score of each window.
    threshold : float
        Decision threshold on the raw score.
    calibration : Calibration
        Maps a segment's mean score to its probability.
    """
    scores = np.asarray(scores, dtype=np.float64)
    segments = []
    start = None
    for i, flagged in enumerate([*(scores > threshold).tolist(), False]):
        if flagged and start is None:
            start = i
        elif not flagged and start is not None:
            mean = float(np.mean(scores[start:i]))
            segments.append(Segment(float(spans[start][0]), float(spans[i - 1][1]), mean,
                                    float(calibration.probability_deepfake(mean))))
            start = None
    return tuple(segments)


def sustained(segments: Sequence[Segment], min_duration_s: float, min_raw_score: float) -> bool:
    """Whether any segment lasts ``min_duration_s`` with a mean score above ``min_raw_score``."""
    return any(s.duration_s >= min_duration_s and s.raw_score > min_raw_score for s in segments)


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
    verdict : {"real", "deepfake", "inconclusive"}
        Three-way answer (see the module docstring): ``classification`` or
        ``"inconclusive"``.
    threshold : float
        Decision threshold on ``raw_score`` that was applied.
    band : (float, float)
        ``(low, high)`` on ``raw_score``: inside (``low < raw_score <= high``) the verdict
        is ``"inconclusive"``.
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
    segments : tuple of Segment
        Runs of consecutive windows above the threshold, in time order.
    speaker : SpeakerResult or None
        The speaker-reference check when references were given; then
        ``probability_deepfake``, ``classification`` and ``confidence`` are the
        fused ones and ``speaker.probability_artefacts`` is the detector's alone.
    """

    classification: str
    confidence: float
    raw_score: float
    probability_deepfake: float
    verdict: str
    threshold: float
    band: tuple[float, float]
    duration_s: float
    sample_rate: int
    model: str
    calibrated: bool
    timeline: tuple[WindowScore, ...]
    segments: tuple[Segment, ...] = ()
    speaker: SpeakerResult | None = None

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
            "verdict": self.verdict,
            "threshold": self.threshold,
            "band": list(self.band),
            "duration_s": self.duration_s,
            "sample_rate": self.sample_rate,
            "model": self.model,
            "calibrated": self.calibrated,
            "segments": [s.to_dict() for s in self.segments],
        }
        if self.speaker is not None:
            data["speaker"] = self.speaker.to_dict()
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
    band : (float, float), optional
        Override the model's inconclusive band ``(low, high)`` on ``raw_score``; it must
        contain the threshold. Without it, the model's band (widened to reach an
        overridden threshold), or the threshold alone for a model without a band.

    Raises
    ------
    ConfigurationError
        ``band`` does not contain the threshold.
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
        band: tuple[float, float] | None = None,
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
        self.band = self._resolve_band(band)
        self.max_duration_s = max_duration_s
        self.min_duration_s = min_duration_s
        self._speaker_verifier: SpeakerVerifier | None = None  # loaded on first use
        logger.debug("loaded model %s in %.3f s", self.model_id, time.perf_counter() - started)

    def _resolve_band(self, band: tuple[float, float] | None) -> tuple[float, float]:
        if band is not None:
            low, high = (float(v) for v in band)
            if not low <= self.threshold <= high:
                raise ConfigurationError(f"band [{low}, {high}] must contain the threshold"
                                 f" {self.threshold:.4f}")
            return low, high
        low, high = self._model.metadata.band or (self.threshold, self.threshold)
        return min(low, self.threshold), max(high, self.threshold)

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

    def analyze(
        self,
        source: AudioSource,
        *,
        file_type: str | None = None,
        references: SpeakerProfile | Sequence[AudioSource] | None = None,
    ) -> AnalysisResult:
        """Classify one recording.

        Parameters
        ----------
        source : path, bytes, binary file object or (numpy.ndarray, int)
            WAV, FLAC, OGG or MP3 data at any sample rate and channel count, or
            raw samples with their sample rate.
        file_type : str, optional
            Declared extension (e.g. ``".mp3"``), as the WebSocket API sends it.
        references : SpeakerProfile or sequence of audio sources, optional
            Genuine recordings of the person supposedly speaking, paths of saved
            profiles among them, or a loaded profile: adds ``speaker`` to the result and
            fuses identity mismatch into ``probability_deepfake`` (see
            :mod:`deepfake_audio.speaker`).

        Returns
        -------
        AnalysisResult

        Raises
        ------
        InputError
            The audio cannot be analysed (a specific subclass says why);
            :class:`SpeakerReferenceError` for unusable references.
        """
        audio = self.decode(source, file_type=file_type)
        result = self.analyze_audio(audio)
        if references is None:
            return result
        return self._with_speaker(audio, result, references)

    # ------------------------------------------------------------------ speaker references
    def speaker_profile(self, references: SpeakerProfile | Sequence[AudioSource],
                        *, name: str | None = None) -> SpeakerProfile:
        """Build (or pass through) a profile, scoring each reference for synthesis artefacts."""
        from .speaker import as_profile

        profile = as_profile(references, verifier=self._verifier(),
                             artefact_score=lambda a: self.analyze_audio(
                                 self._at_model_rate(a)).probability_deepfake)
        return replace(profile, name=name) if name else profile

    def _verifier(self) -> SpeakerVerifier:
        if self._speaker_verifier is None:
            from .speaker import SpeakerVerifier

            self._speaker_verifier = SpeakerVerifier()
        return self._speaker_verifier

    def _at_model_rate(self, audio: Audio) -> Audio:
        sr = self.feature_config.sample_rate
        if audio.sample_rate == sr:
            return audio
        from .audio import resample

        return replace(audio, samples=resample(audio.samples, audio.sample_rate, sr),
                       sample_rate=sr)

    def _with_speaker(self, audio: Audio, result: AnalysisResult,
                      references: SpeakerProfile | Sequence[AudioSource]) -> AnalysisResult:
        profile = self.speaker_profile(references)
        speaker, p_fused = self._verifier().check(audio, profile, result.probability_deepfake)
        # One verdict rule: the fused probability goes back through the calibration to the
        # raw score it stands for, and that score meets the threshold, band and segments.
        # Identity evidence only ever adds suspicion to what the artefacts already say.
        fused_raw = self._model.metadata.calibration.raw_score_at(p_fused)
        verdict = self.verdict(max(fused_raw, result.raw_score) if result.is_deepfake
                               else fused_raw, result.segments)
        return replace(result, speaker=speaker, probability_deepfake=verdict.probability_deepfake,
                       classification=verdict.classification, confidence=verdict.confidence,
                       verdict=verdict.verdict)

    def analyze_audio(self, audio: Audio) -> AnalysisResult:
        """Classify already-decoded :class:`~deepfake_audio.audio.Audio`."""
        return self._result(extract(audio.samples, self.feature_config),
                            audio.original_sample_rate)

    def analyze_blocks(self, blocks: Iterable[np.ndarray], *, peak: float,
                       original_sample_rate: int | None = None) -> AnalysisResult:
        """Classify audio that arrives in blocks, in memory bounded whatever its length.

        Parameters
        ----------
        blocks : iterable of numpy.ndarray
            Consecutive mono float32 sample blocks at the model's sample rate
            (``feature_config.sample_rate``), already validated, any sizes.
        peak : float
            Largest absolute sample of the whole audio (from a first pass).
        original_sample_rate : int, optional
            Rate of the source before resampling, reported in the result.

        Returns
        -------
        AnalysisResult
            Equal to :meth:`analyze_audio` of the concatenated blocks.
        """
        sample_rate = self.feature_config.sample_rate
        windows = extract_blocks(blocks, self.feature_config, peak=peak)
        return self._result(windows, original_sample_rate or sample_rate)

    def _result(self, windows: WindowFeatures, original_sample_rate: int) -> AnalysisResult:
        scores = self._model.decision_values(windows.matrix)
        calibration = self._model.metadata.calibration
        probabilities = calibration.probability_deepfake(scores)
        timeline = tuple(
            WindowScore(start, end, float(score), float(prob), self._label(float(score)))
            for (start, end), score, prob in zip(windows.spans, scores, probabilities,
                                                 strict=True)
        )
        segments = flagged_segments(windows.spans, scores, self.threshold, calibration)
        verdict = self.verdict(self._aggregate(scores), segments)
        return AnalysisResult(
            classification=verdict.classification,
            confidence=verdict.confidence,
            raw_score=verdict.raw_score,
            probability_deepfake=verdict.probability_deepfake,
            verdict=verdict.verdict,
            threshold=self.threshold,
            band=self.band,
            duration_s=round(windows.duration_s, 3),
            sample_rate=original_sample_rate,
            model=self.model_id,
            calibrated=calibration.method != "none",
            timeline=timeline,
            segments=segments,
        )

    def verdict(self, raw_score: float, segments: Sequence[Segment] = ()) -> Verdict:
        """Decide on one raw score: the rule behind every verdict, clip or stream.

        Parameters
        ----------
        raw_score : float
            A clip's aggregated window score (or a stream's running one).
        segments : sequence of Segment
            The clip's flagged segments (:func:`flagged_segments`), if any.

        Returns
        -------
        Verdict
            ``classification`` ``"deepfake"`` when ``raw_score > threshold``; ``verdict``
            ``"deepfake"`` above the band, ``"real"`` at or below it, ``"inconclusive"``
            inside it or when a sustained segment (:data:`SEGMENT_MIN_S`, mean score
            above the band) meets a ``real`` mean.
        """
        raw = float(raw_score)
        p_fake = float(self._model.metadata.calibration.probability_deepfake(raw))
        label = self._label(raw)
        low, high = self.band
        three_way = DEEPFAKE if raw > high else REAL if raw <= low else INCONCLUSIVE
        if three_way == REAL and sustained(segments, SEGMENT_MIN_S, high):
            three_way = INCONCLUSIVE
        return Verdict(label, p_fake if label == DEEPFAKE else 1.0 - p_fake, raw, p_fake,
                       three_way)

    def _label(self, raw_score: float) -> str:
        return DEEPFAKE if raw_score > self.threshold else REAL

    def warm_up(self) -> AnalysisResult:
        """Run one inference on a synthetic tone so first real requests are not slow."""
        sr = self.feature_config.sample_rate
        t = np.arange(int(sr * 1.0)) / sr
        tone = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)))
        return self.analyze((tone.astype(np.float32), sr))

    def __repr__(self) -> str:
        return (f"Detector(model={self.model_id!r}, threshold={self.threshold:.3f},"
                f" band=({self.band[0]:.3f}, {self.band[1]:.3f}))")
