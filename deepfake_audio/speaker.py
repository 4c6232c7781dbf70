"""Speaker-reference check: does the voice match genuine recordings of the person?

A :class:`SpeakerProfile` holds GE2E embeddings (:mod:`deepfake_audio.ge2e`) of
genuine recordings of one person. :class:`SpeakerVerifier` compares a recording
with a profile and returns a :class:`SpeakerResult`: the cosine similarity to
the references' mean embedding and its calibrated probability of being the same
speaker. :meth:`SpeakerVerifier.fuse` combines that with the artefact detector's
probability by the rule fitted with ``scripts/fit_speaker.py`` (parameters in
``models/speaker/speaker.json``): a clear mismatch raises the deepfake probability,
since a genuine recording of the person should not mismatch; a clear match may lower
it only a little, because clones and vocoder resyntheses of the real voice can match
the references too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .audio import Audio, AudioSource, load_audio
from .exceptions import InputError, ModelLoadError, NoSpeechError, SpeakerReferenceError
from .ge2e import ENCODER_DIR, SAMPLE_RATE, Embedding, GE2EEncoder, load_encoder
from .speaker_scoring import (
    SpeakerParams,
    _sigmoid,
    _unit,
    fuse,
    load_cohort,
    load_params,
    probe_partials,
    snorm,
)

logger = logging.getLogger("deepfake_audio")

PROFILE_FORMAT = "deepfake-audio-speaker-profile"
PROFILE_VERSION = 1
#: Below this much speech in all references together the comparison is unreliable.
MIN_REFERENCE_SPEECH_S = 3.0
#: Below this it is meaningless: :class:`SpeakerReferenceError`.
MIN_USABLE_SPEECH_S = 0.5


def _amount_warnings(speech_s: float) -> list[str]:
    """Warn below :data:`MIN_REFERENCE_SPEECH_S`; raise below :data:`MIN_USABLE_SPEECH_S`."""
    if speech_s < MIN_USABLE_SPEECH_S:
        raise SpeakerReferenceError(
            f"the references hold {speech_s:.1f} s of speech: too little to compare voices "
            f"(give at least {MIN_REFERENCE_SPEECH_S:.0f} s)"
        )
    if speech_s < MIN_REFERENCE_SPEECH_S:
        return [f"the references hold only {speech_s:.1f} s of speech; the voice comparison "
                f"is unreliable below {MIN_REFERENCE_SPEECH_S:.0f} s"]
    return []


def _two_voice_cosine(partials: np.ndarray) -> float | None:
    """Cosine between the means of a 2-means split of the partial embeddings.

    None when there are too few partials (under 4) to tell.
    """
    if len(partials) < 4:
        return None
    sims = partials @ partials.T
    a, b = np.unravel_index(int(np.argmin(sims)), sims.shape)
    centres = np.stack([partials[a], partials[b]])
    for _ in range(5):
        assign = np.argmax(partials @ centres.T, axis=1)
        if assign.min() == assign.max():
            return None
        centres = np.stack([_unit(partials[assign == k].mean(axis=0)) for k in (0, 1)])
    counts = np.bincount(assign, minlength=2)
    if counts.min() < 2:
        return None
    return float(centres[0] @ centres[1])


@dataclass(frozen=True)
class ReferenceInfo:
    """One reference recording of a profile."""

    source: str
    speech_s: float
    probability_deepfake: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "speech_s": self.speech_s,
                "probability_deepfake": self.probability_deepfake}


@dataclass(frozen=True, eq=False)  # holds an array: identity, not element-wise, equality
class SpeakerProfile:
    """Embeddings of genuine recordings of one speaker.

    Build with :meth:`from_files` / :meth:`from_sources`, store with :meth:`save`
    (a small versioned JSON file, no pickle) and read back with :meth:`load`.

    Attributes
    ----------
    name : str
        Who the references are of.
    embeddings : numpy.ndarray
        ``(count, 256)`` unit vectors, one per reference.
    references : tuple of ReferenceInfo
        Per reference: where it came from, its speech seconds, its artefact score.
    encoder_id : str
        Encoder that produced the embeddings; comparing needs the same one.
    warnings : tuple of str
        Reference-hygiene warnings found when the profile was built.
    """

    name: str
    embeddings: np.ndarray
    references: tuple[ReferenceInfo, ...]
    encoder_id: str
    warnings: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return len(self.references)

    @property
    def speech_seconds(self) -> float:
        return round(sum(r.speech_s for r in self.references), 3)

    @property
    def centroid(self) -> np.ndarray:
        return _unit(self.embeddings.mean(axis=0))

    @classmethod
    def from_files(cls, files: Sequence[str | Path], *, name: str | None = None,
                   artefact_score: Callable[[Audio], float] | None = None) -> SpeakerProfile:
        """Profile from audio files (see :meth:`from_sources`); ``name`` defaults to the first
        file's stem."""
        if not files:
            raise SpeakerReferenceError("no reference recordings given")
        return cls.from_sources(list(files), name=name or Path(files[0]).stem,
                                labels=[Path(f).name for f in files],
                                artefact_score=artefact_score)

    @classmethod
    def from_sources(cls, sources: Sequence[AudioSource], *, name: str = "speaker",
                     labels: Sequence[str] | None = None,
                     artefact_score: Callable[[Audio], float] | None = None,
                     verifier: SpeakerVerifier | None = None) -> SpeakerProfile:
        """Profile from paths, encoded bytes or ``(samples, sample_rate)`` pairs.

        Parameters
        ----------
        sources : sequence of audio sources
            Genuine recordings of the speaker, ideally 3 s of speech or more in total.
        name : str
            Who they are of.
        labels : sequence of str, optional
            Display name of each source (file names); ``reference 1``, … otherwise.
        artefact_score : callable, optional
            ``Audio -> probability_deepfake``; when given, a reference that scores as
            synthetic gets a warning (the detector passes its own).
        verifier : SpeakerVerifier, optional
            Reuse a loaded verifier.

        Raises
        ------
        SpeakerReferenceError
            No sources, or too little speech in them to compare voices at all.
        InputError
            A source cannot be decoded.
        """
        if not sources:
            raise SpeakerReferenceError("no reference recordings given")
        verifier = verifier or SpeakerVerifier()
        labels = list(labels) if labels is not None else [
            f"reference {i + 1}" for i in range(len(sources))]
        vectors, infos, warnings = [], [], []
        for source, label in zip(sources, labels, strict=True):
            try:
                audio = load_audio(source, target_sr=SAMPLE_RATE, max_duration_s=None)
            except InputError as exc:  # say which input was bad: the reference, not the clip
                name = label if label.startswith("reference") else f"reference {label}"
                raise type(exc)(f"{name}: {exc}") from exc
            embedding = verifier.embed(audio.samples)
            try:
                p_fake = artefact_score(audio) if artefact_score is not None else None
            except NoSpeechError:  # too little speech is judged below, for all references
                p_fake = None
            vectors.append(embedding.vector)
            infos.append(ReferenceInfo(label, round(embedding.speech_s, 3),
                                       None if p_fake is None else round(p_fake, 4)))
            warnings.extend(verifier.reference_warnings(label, embedding, p_fake))
        warnings.extend(_amount_warnings(sum(info.speech_s for info in infos)))
        return cls(name, np.stack(vectors).astype(np.float32), tuple(infos),
                   verifier.encoder.encoder_id, tuple(warnings))

    @classmethod
    def combine(cls, profiles: Sequence[SpeakerProfile], *, name: str | None = None
                ) -> SpeakerProfile:
        """One profile holding every reference of ``profiles`` (same encoder required).

        Raises
        ------
        SpeakerReferenceError
            No profiles, or profiles made with different encoders.
        """
        if not profiles:
            raise SpeakerReferenceError("no reference recordings given")
        if len({p.encoder_id for p in profiles}) > 1:
            raise SpeakerReferenceError("the profiles were made with different speaker encoders")
        if len(profiles) == 1 and name is None:
            return profiles[0]
        warnings = [w for p in profiles for w in p.warnings
                    if "of speech; the voice comparison" not in w]
        references = tuple(r for p in profiles for r in p.references)
        warnings.extend(_amount_warnings(sum(r.speech_s for r in references)))
        return cls(name or profiles[0].name, np.concatenate([p.embeddings for p in profiles]),
                   references, profiles[0].encoder_id, tuple(warnings))

    def to_dict(self) -> dict[str, Any]:
        """The saved form (embeddings as lists of floats)."""
        return {
            "format": PROFILE_FORMAT,
            "version": PROFILE_VERSION,
            "name": self.name,
            "encoder": self.encoder_id,
            "count": self.count,
            "speech_seconds": self.speech_seconds,
            "references": [
                {**info.to_dict(), "embedding": [round(float(v), 7) for v in vector]}
                for info, vector in zip(self.references, self.embeddings, strict=True)
            ],
            "warnings": list(self.warnings),
        }

    def save(self, path: str | Path) -> Path:
        """Write the profile as JSON (a few kB per reference) and return the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> SpeakerProfile:
        """Read a profile written by :meth:`save`.

        Raises
        ------
        SpeakerReferenceError
            Not a profile, an unknown version, or malformed content.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise SpeakerReferenceError(f"{path}: not a readable speaker profile: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != PROFILE_FORMAT:
            raise SpeakerReferenceError(f"{path}: not a deepfake-audio speaker profile")
        if data.get("version") != PROFILE_VERSION:
            raise SpeakerReferenceError(
                f"{path}: profile version {data.get('version')!r} is not supported "
                f"(this library reads version {PROFILE_VERSION})"
            )
        try:
            refs = data["references"]
            vectors = np.array([r["embedding"] for r in refs], dtype=np.float32)
            infos = tuple(ReferenceInfo(str(r["source"]), float(r["speech_s"]),
                                        None if r.get("probability_deepfake") is None
                                        else float(r["probability_deepfake"])) for r in refs)
            profile = cls(str(data["name"]), vectors, infos, str(data["encoder"]),
                          tuple(str(w) for w in data.get("warnings", [])))
        except (KeyError, TypeError, ValueError) as exc:
            raise SpeakerReferenceError(f"{path}: malformed speaker profile: {exc}") from exc
        if vectors.ndim != 2 or vectors.shape[1] != 256 or not len(infos):
            raise SpeakerReferenceError(f"{path}: profile embeddings must be (n >= 1, 256)")
        if not np.all(np.isfinite(vectors)):
            raise SpeakerReferenceError(f"{path}: profile embeddings hold NaN or infinity")
        return profile


@dataclass(frozen=True)
class SpeakerResult:
    """How well a recording's voice matches the references.

    Attributes
    ----------
    similarity : float
        Cosine between the recording's GE2E embedding and the references' mean.
    probability_same_speaker : float
        ``similarity`` calibrated on genuine same- vs different-speaker pairs.
    probability_artefacts : float
        The artefact detector's own ``probability_deepfake``, before fusion.
    speech_seconds : float
        Speech the voice-activity detector found in the recording.
    references : dict
        ``{"count": n, "speech_seconds": s}`` of the profile used.
    profile : str
        The profile's name.
    warnings : tuple of str
        Reference-hygiene and input warnings.
    """

    similarity: float
    probability_same_speaker: float
    probability_artefacts: float
    speech_seconds: float
    references: dict[str, Any]
    profile: str
    encoder: str
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "similarity": self.similarity,
            "probability_same_speaker": self.probability_same_speaker,
            "probability_artefacts": self.probability_artefacts,
            "speech_seconds": self.speech_seconds,
            "references": dict(self.references),
            "profile": self.profile,
            "encoder": self.encoder,
            "warnings": list(self.warnings),
        }

    def summary(self) -> str:
        """``voice matches the references: 0.91 · synthesis artefacts: 0.12``."""
        return (f"voice matches the references: {self.probability_same_speaker:.2f} · "
                f"synthesis artefacts: {self.probability_artefacts:.2f}")


class SpeakerVerifier:
    """Embeds recordings and compares them with profiles.

    Parameters
    ----------
    directory : path, optional
        Folder with ``ge2e.npz``, ``ge2e.json`` and ``speaker.json``; the bundled one
        by default.
    """

    def __init__(self, directory: Path = ENCODER_DIR) -> None:
        self.encoder: GE2EEncoder = load_encoder(directory)
        self.params: SpeakerParams = load_params(directory)
        self.cohort = load_cohort(directory)
        if self.params.encoder_id != self.encoder.encoder_id:
            raise ModelLoadError(
                f"speaker.json was fitted for {self.params.encoder_id}, "
                f"the encoder is {self.encoder.encoder_id}"
            )

    def embed(self, samples: np.ndarray) -> Embedding:
        """GE2E embedding of mono samples at 16 kHz (a reference: every partial)."""
        return self.encoder.embed(samples)

    def embed_probe(self, samples: np.ndarray) -> Embedding:
        """GE2E embedding of the recording being checked (:func:`probe_partials`)."""
        return self.encoder.embed(samples, max_partials=probe_partials(len(samples) / SAMPLE_RATE))

    def reference_warnings(self, label: str, embedding: Embedding,
                           p_fake: float | None) -> list[str]:
        """Hygiene warnings for one reference: several voices, or synthetic-sounding."""
        warnings = []
        cosine = _two_voice_cosine(embedding.partials)
        if cosine is not None and cosine < self.params.voices_threshold:
            warnings.append(f"{label} seems to hold more than one voice "
                            f"(its two halves of speech match at {cosine:.2f})")
        if p_fake is not None and p_fake >= 0.5:
            warnings.append(f"{label} itself scores as synthetic (probability {p_fake:.2f}); "
                            "references must be genuine recordings")
        return warnings

    def probability_same(self, vector: np.ndarray, centroid: np.ndarray) -> float:
        """Calibrated probability that ``vector`` and ``centroid`` are the same speaker."""
        score = snorm(vector, centroid, self.cohort)
        return _sigmoid(self.params.slope * score + self.params.intercept)

    def compare(self, embedding: Embedding, profile: SpeakerProfile,
                probability_artefacts: float) -> SpeakerResult:
        """Compare one recording's embedding with ``profile``.

        Raises
        ------
        SpeakerReferenceError
            The profile was made with a different encoder.
        """
        if profile.encoder_id != self.encoder.encoder_id:
            raise SpeakerReferenceError(
                f"profile {profile.name!r} was made with encoder {profile.encoder_id}, "
                f"this library uses {self.encoder.encoder_id}; create it again"
            )
        centroid = profile.centroid
        similarity = float(embedding.vector @ centroid)
        warnings = list(profile.warnings)
        if embedding.speech_s < 1.0:
            warnings.append(f"the recording holds only {embedding.speech_s:.1f} s of speech; "
                            "the voice comparison is unreliable")
        return SpeakerResult(
            similarity=round(similarity, 4),
            probability_same_speaker=round(self.probability_same(embedding.vector, centroid), 4),
            probability_artefacts=round(probability_artefacts, 4),
            speech_seconds=round(embedding.speech_s, 3),
            references={"count": profile.count, "speech_seconds": profile.speech_seconds},
            profile=profile.name,
            encoder=self.encoder.encoder_id,
            warnings=tuple(warnings),
        )

    def reliability(self, speech_s: float) -> float:
        """How much identity evidence counts for a recording with ``speech_s`` of speech."""
        full = self.params.full_speech_s
        return 1.0 if full <= 0 else min(1.0, speech_s / full)

    def fuse(self, probability_artefacts: float, probability_same_speaker: float,
             speech_s: float) -> float:
        """Deepfake probability with identity evidence (see the module docstring)."""
        return float(fuse(probability_artefacts, probability_same_speaker, self.params.weight,
                          self.params.margin, self.reliability(speech_s),
                          self.params.match_weight, self.params.match_margin))

    def check(self, audio: Audio, profile: SpeakerProfile,
              probability_artefacts: float) -> tuple[SpeakerResult, float]:
        """Embed ``audio`` (resampled to 16 kHz if needed), compare, fuse.

        Returns
        -------
        (SpeakerResult, float)
            The speaker result and the fused deepfake probability.
        """
        samples = audio.samples
        if audio.sample_rate != SAMPLE_RATE:
            from .audio import resample

            samples = resample(samples, audio.sample_rate, SAMPLE_RATE)
        result = self.compare(self.embed_probe(samples), profile, probability_artefacts)
        return result, self.fuse(probability_artefacts, result.probability_same_speaker,
                                 result.speech_seconds)


def is_profile_file(path: str | Path) -> bool:
    """Whether ``path`` is a saved :class:`SpeakerProfile` (sniffs the JSON header)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(256)
    except OSError:
        return False
    return head.lstrip().startswith(b"{") and PROFILE_FORMAT.encode() in head


def as_profile(references: SpeakerProfile | Sequence[AudioSource], *,
               artefact_score: Callable[[Audio], float] | None = None,
               verifier: SpeakerVerifier | None = None) -> SpeakerProfile:
    """Accept a profile as is, or build one from reference recordings.

    Raises
    ------
    SpeakerReferenceError, InputError
        See :meth:`SpeakerProfile.from_sources`.
    """
    if isinstance(references, SpeakerProfile):
        return references
    if isinstance(references, (str, Path, bytes, bytearray, tuple)):
        raise InputError("references must be a list of recordings or a SpeakerProfile")
    def saved_profile(ref: Any) -> SpeakerProfile | None:
        if isinstance(ref, SpeakerProfile):
            return ref
        if isinstance(ref, (str, Path)) and is_profile_file(ref):
            return SpeakerProfile.load(ref)
        return None

    loaded = [(ref, saved_profile(ref)) for ref in references]
    saved = [profile for _, profile in loaded if profile is not None]
    recordings = [ref for ref, profile in loaded if profile is None]
    if recordings:
        labels = [Path(r).name if isinstance(r, (str, Path)) else f"reference {i + 1}"
                  for i, r in enumerate(recordings)]
        saved.append(SpeakerProfile.from_sources(recordings, name="references", labels=labels,
                                                 artefact_score=artefact_score,
                                                 verifier=verifier))
    return SpeakerProfile.combine(saved)


__all__ = [
    "ReferenceInfo",
    "SpeakerParams",
    "SpeakerProfile",
    "SpeakerResult",
    "SpeakerVerifier",
    "as_profile",
    "fuse",
    "is_profile_file",
    "load_cohort",
    "load_params",
    "snorm",
]
