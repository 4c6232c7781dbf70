"""Exception hierarchy.

Every error the library raises on purpose derives from :class:`DeepfakeAudioError`.
:class:`InputError` covers problems with the audio a caller passed in (the CLI
exits with code 3 and the server answers 4xx); :class:`ModelLoadError` covers
model artefacts that are missing, tampered with or incompatible;
:class:`TrainingError` covers training and evaluation runs the data or settings
cannot support (the CLI exits with code 2, a usage/data error).
"""

from __future__ import annotations


class DeepfakeAudioError(Exception):
    """Base class of every error raised by ``deepfake_audio``."""


class InputError(DeepfakeAudioError):
    """The audio given to the detector cannot be analysed."""


class AudioDecodeError(InputError):
    """The bytes are not a decodable audio file (corrupt header, truncated or non-audio data)."""


class AudioFileNotFoundError(InputError, FileNotFoundError):
    """The given path does not exist or is not a regular file."""


class NotMediaError(AudioDecodeError):
    """The bytes are not an audio or video file at all; the message says what they look like."""


class NoAudioStreamError(AudioDecodeError):
    """A media container (e.g. a video) without any audio stream; the message lists its streams."""


class UnsupportedFormatError(InputError):
    """The container or codec is recognised but cannot be decoded."""


class EmptyAudioError(InputError):
    """The input holds no audio samples at all (empty file or header only)."""


class AudioTooShortError(InputError):
    """The audio is shorter than the minimum duration the detector needs."""


class AudioTooLongError(InputError):
    """The audio is longer than the configured maximum duration.

    Raised from the file header, before the samples are decoded.
    """


class SilentAudioError(InputError):
    """The audio holds no signal above the noise floor (digital silence)."""


class NoSpeechError(SilentAudioError):
    """The audio holds sound but no speech (silence, noise, music or tones only)."""


class InvalidAudioError(InputError):
    """The decoded samples are unusable: NaN or infinite values, or an absurd sample rate."""


class SpeakerReferenceError(InputError):
    """Speaker references cannot be used: none given, too little speech, a bad profile file."""


class ModelLoadError(DeepfakeAudioError):
    """Model artefacts are missing, fail verification, or do not match this library."""


class ModelIntegrityError(ModelLoadError):
    """An artefact's SHA-256 does not match ``model.json`` or the pickle holds forbidden objects."""


class ConfigurationError(DeepfakeAudioError, ValueError):
    """A setting is invalid on its own or against the model (e.g. a band without the threshold)."""


class TrainingError(DeepfakeAudioError):
    """A training or evaluation run cannot proceed with the given data or settings."""


class DatasetError(TrainingError):
    """A dataset cannot be read: no manifest or ``real/``/``fake/`` folders, unknown labels,
    no clips, or too few corpora, generators or speakers for the requested protocol."""


__all__ = [
    "AudioDecodeError",
    "AudioFileNotFoundError",
    "AudioTooLongError",
    "AudioTooShortError",
    "ConfigurationError",
    "DatasetError",
    "DeepfakeAudioError",
    "EmptyAudioError",
    "InputError",
    "InvalidAudioError",
    "ModelIntegrityError",
    "ModelLoadError",
    "NoAudioStreamError",
    "NoSpeechError",
    "NotMediaError",
    "SilentAudioError",
    "SpeakerReferenceError",
    "TrainingError",
    "UnsupportedFormatError",
]
