"""Numbers behind the speaker check: how much of the checked recording is embedded,
score normalisation against a cohort, the same-speaker calibration and the fusion
rule, the last three fitted by ``scripts/fit_speaker.py`` and stored (hash-checked) in
``models/speaker/``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import ModelIntegrityError, ModelLoadError
from .ge2e import ENCODER_DIR


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@dataclass(frozen=True)
class SpeakerParams:
    """Fitted parameters of the speaker check (``models/speaker/speaker.json``).

    Attributes
    ----------
    slope, intercept : float
        ``probability_same_speaker = sigmoid(slope * score + intercept)`` where ``score``
        is the cosine similarity symmetrically normalised against a cohort of other
        speakers (s-norm: how unusual the similarity is for each side).
    cohort_sha256 : str
        SHA-256 of ``cohort.npz`` (GE2E embeddings of 90 LibriSpeech speakers).
    weight, margin, full_speech_s, match_weight, match_margin : float
        Fusion: ``logit(p_fused) = logit(p_artefacts) + r * (weight * max(0, logit(p_different)
        - margin) - match_weight * max(0, logit(p_same) - match_margin))`` where
        ``p_same = probability_same_speaker``, ``p_different = 1 - p_same`` and
        ``r = min(1, speech seconds / full_speech_s)`` (1 when ``full_speech_s`` is 0).
        Files fitted before the match term existed have ``match_weight`` 0.
    voices_threshold : float
        Cosine between the two voice clusters of one reference below which it
        probably holds several voices.
    """

    encoder_id: str
    slope: float
    intercept: float
    weight: float
    margin: float
    full_speech_s: float
    voices_threshold: float
    cohort_sha256: str
    match_weight: float = 0.0
    match_margin: float = 0.0


def params_digest(params: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of the fitted parameters."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


@lru_cache(maxsize=2)
def load_cohort(directory: Path = ENCODER_DIR) -> np.ndarray:
    """The s-norm cohort, ``(n, 256)``, checked against ``speaker.json``.

    Raises
    ------
    ModelIntegrityError, ModelLoadError
        As :func:`load_params`.
    """
    params = load_params(directory)
    path = directory / "cohort.npz"
    try:
        if hashlib.sha256(path.read_bytes()).hexdigest() != params.cohort_sha256:
            raise ModelIntegrityError(f"{path} does not match the SHA-256 in speaker.json")
        with np.load(path, allow_pickle=False) as data:
            return np.asarray(data["embeddings"], dtype=np.float32)
    except (OSError, KeyError, ValueError) as exc:
        raise ModelLoadError(f"cannot load the speaker cohort from {directory}: {exc}") from exc


#: The checked recording is embedded from one 1.6 s partial per this many seconds of it,
#: spread evenly, within :data:`PROBE_PARTIALS` (references use all of theirs). The
#: encoder, not the artefact analysis, dominated a check with references; with this the
#: speaker signal on the reference trials is unchanged (``scripts/probe_partials_check.py``).
PROBE_SECONDS_PER_PARTIAL = 4.0
#: Fewest and most partials of a checked recording.
PROBE_PARTIALS = (2, 6)


def probe_partials(duration_s: float) -> int:
    """How many partials embed a checked recording of ``duration_s`` seconds."""
    low, high = PROBE_PARTIALS
    return min(high, max(low, int(duration_s // PROBE_SECONDS_PER_PARTIAL)))


def snorm(vector: np.ndarray, centroid: np.ndarray, cohort: np.ndarray) -> float:
    """Cosine of ``vector`` and ``centroid``, s-normalised against ``cohort``."""
    cosine = float(vector @ centroid)
    a, b = cohort @ vector, cohort @ centroid
    return 0.5 * ((cosine - float(a.mean())) / float(a.std())
                  + (cosine - float(b.mean())) / float(b.std()))


@lru_cache(maxsize=2)
def load_params(directory: Path = ENCODER_DIR) -> SpeakerParams:
    """Read and hash-check ``speaker.json``.

    Raises
    ------
    ModelIntegrityError
        The parameters differ from the digest stored beside them.
    ModelLoadError
        The file is missing or malformed.
    """
    try:
        data = json.loads((directory / "speaker.json").read_text())
        params = data["params"]
        if params_digest(params) != data["sha256"]:
            raise ModelIntegrityError(f"{directory}/speaker.json: parameters fail their SHA-256")
        return SpeakerParams(**params)
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"cannot load speaker parameters from {directory}: {exc}") from exc


def fuse(p_artefacts: Any, p_same: Any, weight: float, margin: float,
         reliability: Any = 1.0, match_weight: float = 0.0, match_margin: float = 0.0) -> Any:
    """Deepfake probability with identity evidence (:class:`SpeakerParams` has the formula).

    A mismatch beyond ``margin`` raises the logit by ``weight`` per logit unit; a match
    beyond ``match_margin`` lowers it by ``match_weight`` per unit, kept small because a
    vocoder resynthesis of the real voice matches as well as the person does.
    ``reliability`` (0–1) scales identity evidence down for recordings with little speech.
    Scalars give a float; arrays (``scripts/fit_speaker.py``'s grid) an array.
    """
    eps = 1e-6
    p_art = np.clip(np.asarray(p_artefacts, dtype=float), eps, 1 - eps)
    same = np.clip(np.asarray(p_same, dtype=float), eps, 1 - eps)
    logit_same = np.log(same) - np.log1p(-same)
    evidence = (weight * np.maximum(0.0, -logit_same - margin)
                - match_weight * np.maximum(0.0, logit_same - match_margin))
    fused = 1.0 / (1.0 + np.exp(-(np.log(p_art) - np.log1p(-p_art) + reliability * evidence)))
    return float(fused) if fused.ndim == 0 else fused
