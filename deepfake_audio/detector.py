"""The :class:`Detector`: audio in, verdict out.

Scoring: the clip is cut into analysis windows (``window_s`` long, ``hop_s``
apart, the last one aligned to the end; a clip shorter than one window is one
window). Each window gets the SVM's signed decision value. The clip's
``raw_score`` aggregates its window scores as ``model.json`` says (the
**mean**, the only rule implemented, which load_model enforces) — the same rule
the calibration and threshold were fitted with at training time — and the timeline
keeps every window's own score, so a long call shows where synthetic speech is.

Only windows with speech are scored (:mod:`deepfake_audio.vad`): silence, noise,
music and tones appear in the timeline as ``"no-speech"`` and stay out of the
clip score; a recording without any speech is refused (:class:`NoSpeechError`).
Recordings are decoded and scored block by block (:class:`~.audio.AudioReader`,
:class:`~.features.WindowStream`), so memory does not grow with their length.
Channels that differ (a call) are analysed one by one (:mod:`.channels`); the
recording's verdict is that of its most suspicious channel.
:meth:`Detector.verdict` turns a raw score into the verdict, for clips and
streams alike.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .audio import (
    DEFAULT_MAX_DURATION_S,
    DEFAULT_MIN_DURATION_S,
    SILENCE_PEAK,
    Audio,
    AudioReader,
    AudioSource,
    load_audio,
)
from .channels import DECIDE_S, check_mode, choose
from .exceptions import (
    AudioTooShortError,
    EmptyAudioError,
    InputError,
    NoSpeechError,
    SilentAudioError,
)
from .features import LEGACY_KIND, FeatureConfig, WindowFeatures, WindowStream, extract
from .model import AGGREGATIONS, LoadedModel, ModelMetadata, load_model
from .vad import MIN_SPEECH_SHARE, SpeechActivity

logger = logging.getLogger("deepfake_audio")

REAL = "real"
DEEPFAKE = "deepfake"
NO_SPEECH = "no-speech"


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
    """Score of one analysis window of the timeline.

    A window without speech has ``classification == "no-speech"`` and no scores.
    """

    start_s: float
    end_s: float
    raw_score: float | None
    probability_deepfake: float | None
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
        Per-window scores in time order; windows without speech say ``"no-speech"``.
    channel : int or None
        When channels were analysed separately: the channel this verdict comes
        from (for a recording, its most suspicious channel). ``None`` when mixed.
    channels : tuple of AnalysisResult
        One result per channel analysed separately (each with its ``channel``);
        empty when the channels were mixed or the audio is mono.
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
    channel: int | None = None
    channels: tuple[AnalysisResult, ...] = ()

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
        }
        if timeline:
            data["timeline"] = [w.to_dict() for w in self.timeline]
        data["channel"] = self.channel
        if not self._is_channel_entry:
            data["channels"] = [c.to_dict(timeline=timeline) for c in self.channels]
        return data

    @property
    def _is_channel_entry(self) -> bool:
        return self.channel is not None and not self.channels


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
    channels : {"auto", "mix", "separate"}
        How multi-channel audio is analysed (:mod:`deepfake_audio.channels`).
    speech_gate : bool
        Score only windows with speech (:mod:`deepfake_audio.vad`). Off: every
        window is scored, as before speech gating existed.

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
        channels: str = "auto",
        speech_gate: bool = True,
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
        self.channels = check_mode(channels)
        self.speech_gate = speech_gate
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

    def analyze(self, source: AudioSource, *, file_type: str | None = None,
                channels: str | None = None) -> AnalysisResult:
        """Classify one recording, decoding and scoring it block by block.

        Parameters
        ----------
        source : path, bytes, binary file object or (numpy.ndarray, int)
            Any format of :data:`~deepfake_audio.audio.SUPPORTED_FORMATS` (audio
            or video files, at any sample rate and channel count), or raw samples
            with their sample rate.
        file_type : str, optional
            Declared extension (e.g. ``".mp3"``), as the WebSocket API sends it.
        channels : {"auto", "mix", "separate"}, optional
            Overrides the detector's ``channels`` setting for this call.

        Returns
        -------
        AnalysisResult

        Raises
        ------
        InputError
            The audio cannot be analysed (a specific subclass says why;
            :class:`~deepfake_audio.exceptions.NoSpeechError` when it holds no speech).
        """
        mode = check_mode(channels or self.channels)
        sample_rate = self.feature_config.sample_rate
        with AudioReader(source, target_sr=sample_rate, max_duration_s=self.max_duration_s,
                         file_type=file_type) as reader:
            info = reader.info
            blocks = reader.blocks()
            head: list[np.ndarray] = []
            for block in blocks:  # the channel rule looks at the first seconds
                head.append(block)
                if sum(len(b) for b in head) >= DECIDE_S * sample_rate:
                    break
            separate = info.channels > 1 and bool(head) and choose(mode, np.concatenate(head))
            lanes = ([_Lane(self, channel) for channel in range(info.channels)] if separate
                     else [_Lane(self, None)])
            for block in itertools.chain(head, blocks):
                if separate:
                    for lane in lanes:
                        lane.feed(block[:, lane.index])
                else:
                    lane = lanes[0]
                    lane.feed(block[:, 0] if block.shape[1] == 1
                              else block.mean(axis=1, dtype=np.float32))
            return self._combine([lane.finish() for lane in lanes], info.sample_rate)

    def analyze_audio(self, audio: Audio) -> AnalysisResult:
        """Classify already-decoded mono :class:`~deepfake_audio.audio.Audio`."""
        lane = _Lane(self, None)
        lane.feed(audio.samples)
        return self._combine([lane.finish()], audio.original_sample_rate)

    def _combine(self, outcomes: list[_LaneOutcome], sample_rate: int) -> AnalysisResult:
        """The recording's result from its lanes: the most suspicious channel decides."""
        scored = [o for o in outcomes if o.error is None]
        if not scored:
            errors = [o.error for o in outcomes if o.error is not None]
            raise next((e for e in errors if isinstance(e, NoSpeechError)), errors[0])
        results = [self._result(o, sample_rate) for o in scored]
        if outcomes[0].index is None:
            return results[0]
        worst = max(results, key=lambda r: r.raw_score)
        return dataclasses.replace(worst, channels=tuple(results))

    def _result(self, outcome: _LaneOutcome, sample_rate: int) -> AnalysisResult:
        calibration = self._model.metadata.calibration
        scores = outcome.scores
        probabilities = calibration.probability_deepfake(scores)
        timeline = tuple(
            WindowScore(start, end, float(score), float(prob), self._label(float(score)))
            if speech else WindowScore(start, end, None, None, NO_SPEECH)
            for (start, end), score, prob, speech in zip(
                outcome.spans, scores, probabilities, outcome.speech, strict=True)
        )
        verdict = self.verdict(self._aggregate(scores[outcome.speech]))
        return AnalysisResult(
            classification=verdict.classification,
            confidence=verdict.confidence,
            raw_score=verdict.raw_score,
            probability_deepfake=verdict.probability_deepfake,
            threshold=self.threshold,
            duration_s=round(outcome.duration_s, 3),
            sample_rate=sample_rate,
            model=self.model_id,
            calibrated=calibration.method != "none",
            timeline=timeline,
            channel=outcome.index,
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
        """Run one inference on a synthetic tone so first real requests are not slow.

        The tone is no speech, so it is scored with the speech gate open; the
        voice-activity model is still loaded and run.
        """
        sr = self.feature_config.sample_rate
        t = np.arange(int(sr * 1.0)) / sr
        tone = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)))
        tone = tone.astype(np.float32)
        if self.speech_gate:
            SpeechActivity(sr, self.feature_config.window_s or 3.0).feed(tone)
        lane = _Lane(self, None, gate=False)
        lane.feed(tone)
        return self._combine([lane.finish()], sr)

    def __repr__(self) -> str:
        return f"Detector(model={self.model_id!r}, threshold={self.threshold:.3f})"


@dataclass(frozen=True)
class _LaneOutcome:
    """Window scores of one analysed signal (a channel, or the mix), or why there are none."""

    index: int | None
    spans: tuple[tuple[float, float], ...]
    scores: np.ndarray
    speech: np.ndarray
    duration_s: float
    error: InputError | None = None


class _Lane:
    """One signal analysed block by block: features, speech activity, window scores."""

    def __init__(self, detector: Detector, index: int | None, *, gate: bool | None = None) -> None:
        config = detector.feature_config
        self.detector = detector
        self.index = index
        self.gate = detector.speech_gate if gate is None else gate
        self.sample_rate = config.sample_rate
        windowed = config.kind != LEGACY_KIND and config.window_s > 0
        self._stream = WindowStream(config) if windowed else None
        self._whole: list[np.ndarray] = []  # legacy whole-clip features need every sample
        self._vad = (SpeechActivity(config.sample_rate, config.window_s or 3.0, slot=index or 0)
                     if self.gate else None)
        self._spans: list[tuple[float, float]] = []
        self._scores: list[np.ndarray] = []
        self._speech: list[np.ndarray] = []
        self._frames = 0
        self._peak = 0.0

    def feed(self, samples: np.ndarray) -> None:
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        if not len(samples):
            return
        self._frames += len(samples)
        self._peak = max(self._peak, float(np.max(np.abs(samples))))
        if self._vad is not None:
            self._vad.feed(samples)
        if self._stream is None:
            self._whole.append(samples)
            return
        for windows in self._stream.feed(samples):
            self._score(windows)

    def _score(self, windows: WindowFeatures) -> None:
        self._spans.extend(windows.spans)
        self._scores.append(self.detector._model.decision_values(windows.matrix))
        self._speech.append(np.ones(len(windows.spans), dtype=bool) if self._vad is None
                            else self._vad.speech_shares(list(windows.spans)) >= MIN_SPEECH_SHARE)

    def finish(self) -> _LaneOutcome:
        duration = self._frames / self.sample_rate
        if self._frames == 0:
            raise EmptyAudioError("the file holds no audio samples")
        if duration < self.detector.min_duration_s:
            raise AudioTooShortError(f"audio is {duration:.3f} s long; at least"
                                     f" {self.detector.min_duration_s:g} s is needed")
        if self._vad is not None:
            self._vad.finish()
        last = (self._stream.finish() if self._stream is not None
                else extract(np.concatenate(self._whole), self.detector.feature_config))
        if last is not None:
            self._score(last)
        scores = np.concatenate(self._scores)
        speech = np.concatenate(self._speech)
        error: InputError | None = None
        which = "" if self.index is None else f"channel {self.index}: "
        if self._peak < SILENCE_PEAK:
            error = SilentAudioError(f"{which}the audio is silent (peak below -70 dBFS)")
        elif not speech.any():
            error = NoSpeechError(f"{which}no speech found (only silence, noise, music or"
                                  " tones); nothing to judge")
        return _LaneOutcome(self.index, tuple(self._spans), scores, speech, duration, error)
