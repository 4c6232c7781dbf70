"""Verdict rules shared by clips and streams: the three-way answer and flagged segments.

Two answers: ``classification`` is binary (``raw_score > threshold``), exactly as the
service contract defines it; ``verdict`` adds ``"inconclusive"`` for raw scores inside the
model's **band** ``[low, high]`` around the threshold (fitted on held-out scores by
``scripts/fit_band.py``, stored in ``model.json``; a model without one has the threshold
as its band, so it is never inconclusive). Runs of consecutive speech windows above the
threshold are merged into **segments**; a *sustained* one (at least :data:`SEGMENT_MIN_S`
long, its mean window score above the band) turns a ``real`` verdict into
``inconclusive``, so a synthetic insert in a long genuine call is not averaged away.
``verdict`` never contradicts ``classification``: it is either the same or
``"inconclusive"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .model import Calibration

REAL = "real"
DEEPFAKE = "deepfake"
INCONCLUSIVE = "inconclusive"

#: Shortest flagged segment (seconds, first window start to last window end; four windows)
#: that can overrule a ``real`` mean. Chosen with ``scripts/insert_eval.py`` on
#: default-2026.11.6 (figures in docs/model-card.md): the shortest of 4.5/6/7.5/9 s that keeps
#: the unseen-protocol EER within one point of the mean's and, with the threshold alone,
#: false alarms on genuine calls within two points of the mean's (6 s: +7.4, 7.5 s: +1.9).
SEGMENT_MIN_S = 7.5


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

    Windows without speech should be passed with a score of ``-inf``: they are never
    flagged, so they end a run.
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
