"""The :class:`Detector`: audio in, verdict out.

Scoring: the clip is cut into analysis windows (``window_s`` long, ``hop_s``
apart, the last one aligned to the end; a clip shorter than one window is one
window). Each window gets the SVM's signed decision value. The clip's
``raw_score`` aggregates its window scores as ``model.json`` says (the
**mean**, the only rule implemented, which load_model enforces) — the same rule
the calibration and threshold were fitted with at training time — and the timeline
keeps every window's own score, so a long call shows where synthetic speech is. A model
with a clip view (:mod:`deepfake_audio.clip_view`) joins a second score to that mean: its
SVM's verdict on the mean feature vector of the speech windows.

Only windows with speech are scored (:mod:`deepfake_audio.vad`): silence, noise,
music and tones appear in the timeline as ``"no-speech"`` and stay out of the
clip score; a recording without any speech is refused (:class:`NoSpeechError`).
Recordings are decoded and scored block by block (:class:`~.audio.AudioReader`,
:class:`~.features.WindowStream`), so memory does not grow with their length.
Channels that differ (a call) are analysed one by one (:mod:`.channels`); the
recording's verdict is that of its most suspicious channel; every channel
gets its own verdict and segments.
The three-way ``verdict``, the ``band`` and flagged ``segments`` follow
:mod:`deepfake_audio.verdict`; windows without speech never join a segment.
:meth:`Detector.verdict` turns a raw score into the verdict, for clips and
streams alike.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import heap, silero
from .audio import (
    DEFAULT_MAX_DURATION_S,
    DEFAULT_MIN_DURATION_S,
    Audio,
    AudioReader,
    AudioSource,
    load_audio,
)
from .channels import DECIDE_S, check_mode, choose
from .exceptions import ConfigurationError, NoSpeechError
from .feature_config import LEGACY_KIND, FeatureConfig
from .lanes import Lane, LaneOutcome
from .model import AGGREGATIONS, GENUINE_FAMILY, LoadedModel, ModelMetadata, load_model
from .results import NO_SPEECH, AnalysisResult, WindowScore
from .vad import SpeechActivity
from .verdict import (
    DEEPFAKE,
    INCONCLUSIVE,
    REAL,
    SEGMENT_MIN_S,
    Segment,
    Verdict,
    flagged_segments,
    sustained,
)

if TYPE_CHECKING:
    from .speaker import SpeakerProfile, SpeakerVerifier

logger = logging.getLogger("deepfake_audio")

__all__ = ["DEEPFAKE", "INCONCLUSIVE", "NO_SPEECH", "REAL", "SEGMENT_MIN_S", "AnalysisResult",
           "Detector", "Segment", "Verdict", "WindowScore", "flagged_segments", "sustained"]


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
    max_duration_s : float or None
        Longest audio accepted (checked from the header before decoding).
    min_duration_s : float
        Shortest audio accepted.
    allow_unverified : bool
        Load a legacy model folder without ``model.json`` (unverifiable pickles).
    channels : {"auto", "mix", "separate"}
        How multi-channel audio is analysed (:mod:`deepfake_audio.channels`).
    speech_gate : bool, optional
        Score only windows with speech (:mod:`deepfake_audio.vad`). Off: every
        window is scored, as before speech gating existed. Default: on, except for
        legacy whole-clip models, which keep the original service's verdicts.

    Raises
    ------
    ConfigurationError
        ``band`` does not contain the threshold.
    ModelLoadError
        The model, or with the speech gate on the speech detector's weights, cannot be
        loaded or fails its hash check.

    Notes
    -----
    On Linux with glibc, the first ``Detector`` of a process fixes malloc's mmap and trim
    thresholds (:func:`deepfake_audio.heap.keep_freed_memory`), so that analyses reuse
    their arrays' memory instead of faulting it in from the kernel each time (a third
    faster on short clips). Setting one of glibc's ``MALLOC_*_`` variables keeps yours.

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
        channels: str = "auto",
        speech_gate: bool | None = None,
    ) -> None:
        started = time.perf_counter()
        heap.keep_freed_memory()
        self._model: LoadedModel = load_model(model_dir, allow_unverified=allow_unverified)
        # load_model refused any aggregation missing from AGGREGATIONS.
        self._aggregate = AGGREGATIONS[self._model.metadata.aggregation]
        self.threshold = (
            float(threshold) if threshold is not None else self._model.metadata.decision_threshold
        )
        self.band = self._resolve_band(band)
        self.max_duration_s = max_duration_s
        self.min_duration_s = min_duration_s
        self.channels = check_mode(channels)
        self.speech_gate = (self.feature_config.kind != LEGACY_KIND if speech_gate is None
                            else speech_gate)
        if self.speech_gate:
            silero.weights()  # hash-checked here: a damaged install fails at load, not mid-scan
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
        channels: str | None = None,
        references: SpeakerProfile | Sequence[AudioSource] | None = None,
    ) -> AnalysisResult:
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
        references : SpeakerProfile or sequence of audio sources, optional
            Genuine recordings of the person supposedly speaking, paths of saved
            profiles among them, or a loaded profile: adds ``speaker`` to the result and
            fuses identity evidence into ``probability_deepfake`` and the verdict (a
            mismatch raises it, a clear match lowers it a little; see
            :mod:`deepfake_audio.speaker`).

        Returns
        -------
        AnalysisResult

        Raises
        ------
        InputError
            The audio cannot be analysed (a specific subclass says why;
            :class:`~deepfake_audio.exceptions.NoSpeechError` when it holds no speech;
            :class:`SpeakerReferenceError` for unusable references).
        """
        if references is not None:
            if hasattr(source, "read"):  # read once: the speaker check decodes it again
                source = source.read()
            result = self.analyze(source, file_type=file_type, channels=channels)
            return self._with_speaker(self.decode(source, file_type=file_type), result,
                                      references)
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
            lanes = ([Lane(self, channel) for channel in range(info.channels)] if separate
                     else [Lane(self, None)])
            for block in itertools.chain(head, blocks):
                if separate:
                    for lane in lanes:
                        lane.feed(block[:, lane.index])
                else:
                    lane = lanes[0]
                    lane.feed(block[:, 0] if block.shape[1] == 1
                              else block.mean(axis=1, dtype=np.float32))
            # Read again densely only if no channel has speech: a faint bleed of the other
            # side is no voice of its own.
            outcomes = [lane.finish(reread=not separate) for lane in lanes]
            if separate and all(o.error is not None for o in outcomes):
                outcomes = [lane.reread() for lane in lanes]
            return self._combine(outcomes, info.sample_rate)

    # ------------------------------------------------------------------ speaker references
    def speaker_profile(self, references: SpeakerProfile | Sequence[AudioSource],
                        *, name: str | None = None) -> SpeakerProfile:
        """Build (or pass through) a profile, scoring each reference for synthesis artefacts."""
        from .speaker import as_profile

        profile = as_profile(references, verifier=self._verifier(),
                             artefact_score=lambda a: self.analyze(
                                 (a.samples, a.sample_rate)).probability_deepfake)
        return replace(profile, name=name) if name else profile

    def _verifier(self) -> SpeakerVerifier:
        if self._speaker_verifier is None:
            from .speaker import SpeakerVerifier

            self._speaker_verifier = SpeakerVerifier()
        return self._speaker_verifier

    def _with_speaker(self, audio: Audio, result: AnalysisResult,
                      references: SpeakerProfile | Sequence[AudioSource]) -> AnalysisResult:
        profile = self.speaker_profile(references)
        speaker, p_fused = self._verifier().check(audio, profile, result.probability_deepfake)
        # One verdict rule: the fused probability goes back through the calibration to the
        # raw score it stands for, and that score meets the threshold, band and segments.
        # A clear voice match may pull an artefact "deepfake" below the threshold: the
        # fitted rule (scripts/fit_speaker.py) is scored that way, and bounds how far.
        fused_raw = self._model.metadata.calibration.raw_score_at(p_fused)
        verdict = self.verdict(fused_raw, result.segments)
        return replace(result, speaker=speaker, probability_deepfake=verdict.probability_deepfake,
                       classification=verdict.classification, confidence=verdict.confidence,
                       verdict=verdict.verdict)

    def analyze_audio(self, audio: Audio) -> AnalysisResult:
        """Classify already-decoded mono :class:`~deepfake_audio.audio.Audio`."""
        lane = Lane(self, None)
        lane.feed(audio.samples)
        return self._combine([lane.finish()], audio.original_sample_rate)

    def _combine(self, outcomes: list[LaneOutcome], sample_rate: int) -> AnalysisResult:
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

    def _result(self, outcome: LaneOutcome, sample_rate: int) -> AnalysisResult:
        calibration = self._model.metadata.calibration
        scores = outcome.scores
        probabilities = calibration.probability_deepfake(scores)
        timeline = tuple(
            WindowScore(start, end, float(score), float(prob), self._label(float(score)))
            if speech else WindowScore(start, end, None, None, NO_SPEECH)
            for (start, end), score, prob, speech in zip(
                outcome.spans, scores, probabilities, outcome.speech, strict=True)
        )
        segments = flagged_segments(outcome.spans, np.where(outcome.speech, scores, -np.inf),
                                    self.threshold, calibration)
        raw = self._model.clip_raw_score(self._aggregate(scores[outcome.speech]),
                                         outcome.feature_mean)
        verdict = self.verdict(raw, segments)
        source_family = None
        if outcome.families is not None:
            p_fake = verdict.probability_deepfake
            shares = outcome.families[outcome.speech].mean(axis=0)
            source_family = {GENUINE_FAMILY: round(1.0 - p_fake, 6)} | {
                name: round(p_fake * float(share), 6)
                for name, share in zip(self._model.metadata.source_families, shares,
                                       strict=True)
            }
        return AnalysisResult(
            classification=verdict.classification,
            confidence=verdict.confidence,
            raw_score=verdict.raw_score,
            probability_deepfake=verdict.probability_deepfake,
            verdict=verdict.verdict,
            threshold=self.threshold,
            band=self.band,
            duration_s=round(outcome.duration_s, 3),
            sample_rate=sample_rate,
            model=self.model_id,
            calibrated=calibration.method != "none",
            timeline=timeline,
            segments=segments,
            channel=outcome.index,
            source_family=source_family,
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
        """Run one inference on a synthetic tone so first real requests are not slow.

        The tone is no speech, so it is scored with the speech gate open; the
        speech detector is still loaded and run.
        """
        sr = self.feature_config.sample_rate
        t = np.arange(int(sr * 1.0)) / sr
        tone = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)))
        tone = tone.astype(np.float32)
        if self.speech_gate:
            activity = SpeechActivity(sr, self.feature_config.window_s or 3.0)
            activity.feed(tone)
            activity.finish()
        lane = Lane(self, None, gate=False)
        lane.feed(tone)
        return self._combine([lane.finish()], sr)

    def __repr__(self) -> str:
        return (f"Detector(model={self.model_id!r}, threshold={self.threshold:.3f},"
                f" band=({self.band[0]:.3f}, {self.band[1]:.3f}))")
