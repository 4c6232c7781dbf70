"""Pydantic models of the API's JSON replies, for the OpenAPI document.

The routes build their replies from the core's frozen dataclasses
(:meth:`AnalysisResult.to_dict`); these models describe that shape so clients
and schemathesis can check it. They live here, not in the core library.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class WindowScoreModel(BaseModel):
    start_s: float
    end_s: float
    raw_score: float | None = Field(description="null for a window without speech")
    probability_deepfake: float | None = Field(ge=0, le=1)
    classification: Literal["real", "deepfake", "no-speech"]


class ChannelResponse(BaseModel):
    """Verdict for one channel analysed on its own (a call's party)."""

    channel: int = Field(ge=0, description="channel index in the file")
    classification: Literal["real", "deepfake"]
    confidence: float = Field(ge=0, le=1)
    raw_score: float
    probability_deepfake: float = Field(ge=0, le=1)
    threshold: float
    duration_s: float
    sample_rate: int
    model: str
    calibrated: bool
    timeline: list[WindowScoreModel]


class SegmentModel(BaseModel):
    """Consecutive windows scored above the threshold, merged."""

    start_s: float = Field(description="start of the run's first window, seconds")
    end_s: float = Field(description="end of the run's last window, seconds")
    raw_score: float = Field(description="mean raw score of the run's windows")
    probability_deepfake: float = Field(ge=0, le=1)


class SpeakerReferences(BaseModel):
    count: int
    speech_seconds: float


class SpeakerModel(BaseModel):
    """The speaker-reference check (only when references or a profile were sent)."""

    summary: str = Field(description="'voice matches the references: 0.91 · synthesis"
                                     " artefacts: 0.12'")
    similarity: float = Field(description="cosine to the references' mean embedding")
    probability_same_speaker: float = Field(ge=0, le=1)
    probability_artefacts: float = Field(ge=0, le=1,
                                         description="the artefact detector's own probability")
    speech_seconds: float
    references: SpeakerReferences
    profile: str
    encoder: str
    warnings: list[str]


class AnalysisResponse(BaseModel):
    """Verdict for one recording; the first three keys are the original service's."""

    classification: Literal["real", "deepfake"] = Field(
        description="binary decision at the threshold (the original service's field)")
    confidence: float = Field(ge=0, le=1, description="calibrated probability of the class")
    raw_score: float = Field(description="mean SVM decision value; positive leans deepfake")
    probability_deepfake: float = Field(ge=0, le=1)
    verdict: Literal["real", "deepfake", "inconclusive"] = Field(
        description="three-way verdict: 'inconclusive' when raw_score is inside the band, or"
                    " when a sustained flagged segment contradicts a 'real' mean")
    threshold: float
    band: tuple[float, float] = Field(
        description="(low, high) on raw_score; low < raw_score <= high is inconclusive")
    duration_s: float
    sample_rate: int = Field(description="sample rate of the upload before resampling")
    model: str
    calibrated: bool
    segments: list[SegmentModel] = Field(
        description="flagged segments: runs of consecutive deepfake-side windows, in order")
    speaker: SpeakerModel | None = Field(
        None, description="present when references were sent; probability_deepfake and the"
                          " verdict are then the fused ones")
    source_family: dict[str, float] | None = Field(
        default=None, description="probabilities of genuine speech and of each synthetic source"
        " family (sum 1); null for models without a family classifier")
    timeline: list[WindowScoreModel]
    channel: int | None = Field(
        description="the channel the verdict comes from when channels were analysed"
                    " separately (its most suspicious one); null when mixed or mono")
    channels: list[ChannelResponse] = Field(
        description="one verdict per channel analysed separately; empty when mixed or mono")


class ErrorResponse(BaseModel):
    error: str
    detail: str | None = None


class InfoResponse(BaseModel):
    name: str
    version: str
    description: str
    endpoints: dict[str, str]
    model: str | None


class LiveResponse(BaseModel):
    status: Literal["alive"]


class ReadyResponse(BaseModel):
    status: str
    version: str
    model: str | None
    uptime_s: float
    error: str | None = None
    detail: str | None = None
