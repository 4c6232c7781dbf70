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
    raw_score: float
    probability_deepfake: float = Field(ge=0, le=1)
    classification: Literal["real", "deepfake"]


class AnalysisResponse(BaseModel):
    """Verdict for one recording; the first three keys are the original service's."""

    classification: Literal["real", "deepfake"]
    confidence: float = Field(ge=0, le=1, description="calibrated probability of the class")
    raw_score: float = Field(description="mean SVM decision value; positive leans deepfake")
    probability_deepfake: float = Field(ge=0, le=1)
    threshold: float
    duration_s: float
    sample_rate: int = Field(description="sample rate of the upload before resampling")
    model: str
    calibrated: bool
    source_family: dict[str, float] | None = Field(
        default=None, description="probabilities of genuine speech and of each synthetic source"
        " family (sum 1); null for models without a family classifier")
    timeline: list[WindowScoreModel]


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
