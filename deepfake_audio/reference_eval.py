"""``evaluate --protocol reference``: the speaker-reference check on a labelled dataset.

For every speaker with at least two genuine *recordings* (derived copies — the
resampled LibriSpeech clips, RTCFake's platform and noise versions — count as one
recording), each genuine clip is checked against that speaker's other genuine
recordings (leave one recording out); each synthetic clip (clone, voice
conversion, resynthesis) of a speaker with at least one genuine recording is
checked against all of them. The report gives, per
generator family and pooled, the EER of the artefact score alone, of the speaker
signal alone and of the fused ``probability_deepfake``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .audio import load_audio
from .datasets import Clip
from .exceptions import InputError
from .ge2e import SAMPLE_RATE, load_encoder
from .metrics import equal_error_rate

if TYPE_CHECKING:
    from .detector import Detector
    from .speaker import SpeakerVerifier

logger = logging.getLogger("deepfake_audio")

# RTCFake stores one recording several times: through call platforms and with added noise.
_DERIVED_SUFFIX = re.compile(
    r"(_(dingding|feishu|qq|telegram|tencentmeeting|wechat|zoom|txhy|lark|voov"
    r"|rain|coffee|footsteps|echo|keyboard|office|noise))+$"
)


_VOCODER = re.compile(r"melgan|hifigan|hifi-gan|wavegan|bigvgan|vocos|istftnet|univnet|waveglow")


def synthesis_kind(clip: Clip) -> str:
    """``neural vocoder`` (resynthesis of the real voice), ``neural TTS`` (a model built on the
    speaker's own voice) or ``voice cloning`` (a system imitating a speaker it was not built
    for: zero-shot TTS, voice conversion, multi-speaker TTS)."""
    if _VOCODER.search(clip.family):
        return "neural vocoder"
    if clip.speaker in _SINGLE_SPEAKER_VOICES:
        return "neural TTS"
    return "voice cloning"


# Speakers whose fakes come from models trained on that very voice (LJSpeech TTS systems).
_SINGLE_SPEAKER_VOICES = frozenset({"ljspeech"})


def recording_key(clip: Clip) -> str:
    """Identify the recording a clip was derived from (copies share the key)."""
    stem = clip.path.stem
    if clip.source.startswith("rtcfake"):
        stem = _DERIVED_SUFFIX.sub("", stem.rsplit("-", 1)[-1])
    return f"{clip.speaker}/{stem}"


@dataclass(frozen=True)
class ClipEmbeddings:
    """Speaker embeddings of a list of clips (NaN rows where a clip could not be decoded).

    ``vectors`` embed each clip as a reference (every partial), ``probe_vectors`` as the
    recording being checked (:func:`~.speaker_scoring.probe_partials`).
    """

    vectors: np.ndarray
    speech_s: np.ndarray
    probe_vectors: np.ndarray


def embed_clips(clips: Sequence[Clip], *, cache: Path | None = None,
                progress: bool = True) -> ClipEmbeddings:
    """GE2E embeddings of ``clips``, optionally cached in an ``.npz`` keyed by path and size."""
    from tqdm.auto import tqdm

    from .speaker_scoring import probe_partials

    encoder = load_encoder()
    keys = [hashlib.sha256(f"{c.path}:{c.path.stat().st_size}".encode()).hexdigest()[:20]
            if c.path.exists() else str(c.path) for c in clips]
    stored: dict[str, np.ndarray] = {}
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as data:
            stored = {k: data[k] for k in data.files}
    vectors = np.full((len(clips), 256), np.nan, np.float32)
    probes = np.full((len(clips), 256), np.nan, np.float32)
    speech = np.full(len(clips), np.nan)
    for i, (clip, key) in enumerate(tqdm(list(zip(clips, keys, strict=True)), desc="speaker",
                                         unit="clip", disable=not progress, file=sys.stderr)):
        if len(stored.get(key, ())) != 2 * 256 + 1:  # absent, or cached before probe vectors
            try:
                audio = load_audio(clip.path, target_sr=SAMPLE_RATE, max_duration_s=None)
            except InputError as exc:
                logger.warning("skipping %s: %s", clip.path, exc)
                continue
            embedding = encoder.embed(audio.samples)
            probe = embedding.fewer(probe_partials(audio.duration_s))
            stored[key] = np.concatenate([embedding.vector, [embedding.speech_s],
                                          probe.vector]).astype(np.float32)
        vectors[i] = stored[key][:256]
        speech[i] = float(stored[key][256])
        probes[i] = stored[key][257:]
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **stored)  # type: ignore[arg-type]  # stub confuses **kw with allow_pickle
    return ClipEmbeddings(vectors, speech, probes)


@dataclass(frozen=True)
class Trial:
    """One check: clip ``index`` against the genuine clips ``references`` of its speaker."""

    index: int
    references: tuple[int, ...]


def reference_trials(clips: Sequence[Clip], valid: np.ndarray) -> list[Trial]:
    """Leave-one-recording-out trials.

    A genuine clip needs another genuine recording of its speaker; a synthetic clip
    needs one (the prompt of a clone is usually such a recording, as it would be
    for a defender holding the public recordings an attacker cloned from).
    """
    genuine: dict[str, dict[str, list[int]]] = {}
    for i, clip in enumerate(clips):
        if clip.label == 0 and valid[i]:
            genuine.setdefault(clip.speaker, {}).setdefault(recording_key(clip), []).append(i)
    trials = []
    for i, clip in enumerate(clips):
        recordings = genuine.get(clip.speaker, {})
        own = recording_key(clip) if clip.label == 0 else None
        if len(recordings) < 1 + (own is not None) or not valid[i]:
            continue
        refs = tuple(j for key, idx in recordings.items() if key != own for j in idx)
        trials.append(Trial(i, refs))
    return trials


@dataclass(frozen=True)
class FamilyRow:
    """EERs of one generator family's clips against the genuine trials."""

    family: str
    n: int
    eer_artefacts: float
    eer_speaker: float
    eer_fused: float

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "n": self.n, "eer_artefacts": self.eer_artefacts,
                "eer_speaker": self.eer_speaker, "eer_fused": self.eer_fused}


@dataclass(frozen=True)
class ReferenceReport:
    """Result of the reference protocol.

    Attributes
    ----------
    genuine_trials, synthetic_trials : int
        Checks run (genuine clips left out, synthetic clips of the same speakers).
    speakers : int
        Speakers with at least two genuine recordings.
    pooled : FamilyRow
        All synthetic trials against all genuine trials.
    kinds : tuple of FamilyRow
        Voice cloning, neural TTS, neural vocoder (:func:`synthesis_kind`).
    families : tuple of FamilyRow
        One row per generator family.
    genuine_called_real : dict
        Share of genuine trials called real without and with references.
    """

    genuine_trials: int
    synthetic_trials: int
    speakers: int
    pooled: FamilyRow
    kinds: tuple[FamilyRow, ...]
    families: tuple[FamilyRow, ...]
    genuine_called_real: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": "reference",
            "genuine_trials": self.genuine_trials,
            "synthetic_trials": self.synthetic_trials,
            "speakers": self.speakers,
            "pooled": self.pooled.to_dict(),
            "kinds": [row.to_dict() for row in self.kinds],
            "families": [row.to_dict() for row in self.families],
            "genuine_called_real": self.genuine_called_real,
        }

    def format(self) -> str:
        """Plain-text table (EERs in %)."""
        lines = [
            f"reference protocol: {self.speakers} speakers, {self.genuine_trials} genuine and "
            f"{self.synthetic_trials} synthetic checks (leave one recording out)",
            f"{'family':<28}{'n':>5}{'artefacts':>11}{'speaker':>9}{'fused':>8}",
        ]
        for row in (*self.families, *self.kinds, self.pooled):
            lines.append(f"{row.family:<28}{row.n:>5}{row.eer_artefacts * 100:>10.1f}%"
                         f"{row.eer_speaker * 100:>8.1f}%{row.eer_fused * 100:>7.1f}%")
        lines.append("genuine called real: " + ", ".join(
            f"{k} {v * 100:.1f}%" for k, v in self.genuine_called_real.items()))
        return "\n".join(lines)


def artefact_probabilities(clips: Sequence[Clip], detector: Detector, *,
                           progress: bool = True) -> np.ndarray:
    """The detector's ``probability_deepfake`` per clip (NaN where it cannot be decoded)."""
    from tqdm.auto import tqdm

    out = np.full(len(clips), np.nan)
    for i, clip in enumerate(tqdm(clips, desc="artefacts", unit="clip", disable=not progress,
                                  file=sys.stderr)):
        try:
            out[i] = detector.analyze(clip.path).probability_deepfake
        except InputError as exc:
            logger.warning("skipping %s: %s", clip.path, exc)
    return out


def cohort_clips(clips: Sequence[Clip]) -> list[Clip]:
    """The speaker check's s-norm cohort in the training pool: every other LibriSpeech clip
    (one recording per speaker, so no LibriSpeech speaker has trials)."""
    return [c for c in clips if c.source == "librispeech"][::2]


def trial_clips(clips: Sequence[Clip]) -> list[Clip]:
    """The clips the training pool's reference trials use, as ``scripts/fit_speaker.py``
    fits on them: LibriSpeech (one recording per speaker, plus resampled copies) and the
    ``libritts`` placeholder speaker id give no trials."""
    pool = [c for c in clips if not c.source.startswith("librispeech") and c.speaker != "libritts"]
    trials = reference_trials(pool, np.ones(len(pool), bool))
    return [pool[i] for i in sorted({i for t in trials for i in (t.index, *t.references)})]


@dataclass(frozen=True)
class TrialScores:
    """Per-trial probabilities: artefacts alone, speaker mismatch alone, fused."""

    p_artefacts: np.ndarray
    p_different: np.ndarray
    p_fused: np.ndarray


def score_trials(trials: Sequence[Trial], embeddings: ClipEmbeddings, p_artefacts: np.ndarray,
                 verifier: SpeakerVerifier) -> TrialScores:
    """Compare each trial's clip with the mean of its references and fuse."""
    art = np.array([p_artefacts[t.index] for t in trials])
    same = np.array([verifier.probability_same(embeddings.probe_vectors[t.index],
                                               centroid(embeddings.vectors, t))
                     for t in trials])
    speech = [float(embeddings.speech_s[t.index]) for t in trials]
    fused = np.array([verifier.fuse(a, s, sp) for a, s, sp in zip(art, same, speech, strict=True)])
    return TrialScores(art, 1.0 - same, fused)


def centroid(vectors: np.ndarray, trial: Trial) -> np.ndarray:
    """Normalised mean embedding of a trial's references (as a profile's centroid)."""
    mean = vectors[list(trial.references)].mean(axis=0)
    return mean / np.linalg.norm(mean)


def evaluate_reference(
    clips: Sequence[Clip],
    detector: Detector,
    *,
    cache: Path | None = None,
    progress: bool = True,
) -> ReferenceReport:
    """Run the reference protocol on ``clips`` with ``detector`` and the bundled speaker check.

    Raises
    ------
    DeepfakeAudioError
        No speaker has two genuine recordings, so there is nothing to check.
    """
    from .exceptions import DeepfakeAudioError
    from .speaker import SpeakerVerifier

    usable = np.ones(len(clips), bool)
    trials = reference_trials(clips, usable)
    if not any(clips[t.index].label == 0 for t in trials):
        raise DeepfakeAudioError(
            "reference protocol: no speaker has two genuine recordings (manifest `speaker` "
            "column) to leave one out"
        )
    needed = sorted({i for t in trials for i in (t.index, *t.references)})
    sub = [clips[i] for i in needed]
    embeddings = embed_clips(sub, cache=cache, progress=progress)
    p_art = artefact_probabilities(sub, detector, progress=progress)
    valid = ~np.isnan(p_art) & ~np.isnan(embeddings.vectors[:, 0])
    trials = reference_trials(sub, valid)
    scores = score_trials(trials, embeddings, p_art, SpeakerVerifier())
    p_threshold = float(detector.metadata.calibration.probability_deepfake(detector.threshold))
    return build_report(sub, trials, scores, threshold=p_threshold)


def _eer(labels: np.ndarray, scores: np.ndarray) -> float:
    return equal_error_rate(labels, scores)[0]


def build_report(
    clips: Sequence[Clip],
    trials: Sequence[Trial],
    scores: TrialScores,
    threshold: float = 0.5,
) -> ReferenceReport:
    """Per-kind, per-family and pooled EERs of the three per-trial scores.

    Genuine trials are called real where their probability is at most ``threshold``
    (the detector's probability at its decision threshold).
    """
    p_artefact, p_different, p_fused = scores.p_artefacts, scores.p_different, scores.p_fused
    labels = np.array([clips[t.index].label for t in trials])
    families = np.array([clips[t.index].family for t in trials])
    kinds = np.array([synthesis_kind(clips[t.index]) for t in trials])

    def row(name: str, mask: np.ndarray) -> FamilyRow:
        sel = mask | (labels == 0)
        return FamilyRow(name, int(mask.sum()), _eer(labels[sel], p_artefact[sel]),
                         _eer(labels[sel], p_different[sel]), _eer(labels[sel], p_fused[sel]))

    rows = tuple(row(name, families == name)
                 for name in sorted(set(families[labels == 1].tolist())))
    kind_rows = tuple(row(name, (kinds == name) & (labels == 1))
                      for name in sorted(set(kinds[labels == 1].tolist())))
    speakers = len({clips[t.index].speaker for t in trials})
    genuine = labels == 0
    return ReferenceReport(
        genuine_trials=int(genuine.sum()),
        synthetic_trials=int((~genuine).sum()),
        speakers=speakers,
        pooled=row("all families", labels == 1),
        kinds=kind_rows,
        families=rows,
        genuine_called_real={
            "without references": float(np.mean(p_artefact[genuine] < threshold)),
            "with references": float(np.mean(p_fused[genuine] < threshold)),
        },
    )
