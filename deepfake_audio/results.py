"""What an analysis returns: :class:`AnalysisResult` and its timeline of :class:`WindowScore`.

Frozen dataclasses with ``to_dict()``; :mod:`deepfake_audio.detector` makes them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .verdict import DEEPFAKE, Segment

if TYPE_CHECKING:
    from .speaker import SpeakerResult

#: Timeline classification of a window without speech.
NO_SPEECH = "no-speech"


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
        Calibrated probability that the recording is synthetic, at the share of
        synthetic recordings the model assumes (``model.json``
        ``calibration.prior_deepfake``; 0.4 for the bundled model).
    verdict : {"real", "deepfake", "inconclusive"}
        Three-way answer (:mod:`deepfake_audio.verdict`): ``classification`` or
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
        Per-window scores in time order; windows without speech say ``"no-speech"``.
    segments : tuple of Segment
        Runs of consecutive speech windows above the threshold, in time order.
    channel : int or None
        When channels were analysed separately: the channel this verdict comes
        from (for a recording, its most suspicious channel). ``None`` when mixed.
    channels : tuple of AnalysisResult
        One result per channel analysed separately (each with its ``channel``);
        empty when the channels were mixed or the audio is mono.
    speaker : SpeakerResult or None
        The speaker-reference check when references were given; then
        ``probability_deepfake``, ``classification`` and ``confidence`` are the
        fused ones and ``speaker.probability_artefacts`` is the detector's alone.
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
    verdict: str
    threshold: float
    band: tuple[float, float]
    duration_s: float
    sample_rate: int
    model: str
    calibrated: bool
    timeline: tuple[WindowScore, ...]
    segments: tuple[Segment, ...] = ()
    channel: int | None = None
    channels: tuple[AnalysisResult, ...] = ()
    speaker: SpeakerResult | None = None
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
            "verdict": self.verdict,
            "threshold": self.threshold,
            "band": list(self.band),
            "duration_s": self.duration_s,
            "sample_rate": self.sample_rate,
            "model": self.model,
            "calibrated": self.calibrated,
            "segments": [s.to_dict() for s in self.segments],
            "source_family": None if self.source_family is None else dict(self.source_family),
        }
        if self.speaker is not None:
            data["speaker"] = self.speaker.to_dict()
        if timeline:
            data["timeline"] = [w.to_dict() for w in self.timeline]
        data["channel"] = self.channel
        if not self._is_channel_entry:
            data["channels"] = [c.to_dict(timeline=timeline) for c in self.channels]
        return data

    @property
    def _is_channel_entry(self) -> bool:
        return self.channel is not None and not self.channels
