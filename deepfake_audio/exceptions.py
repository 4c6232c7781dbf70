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


class UnsupportedFormatError(InputError):
    """The container or codec is recognised but not supported (supported: WAV, FLAC, OGG, MP3)."""


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


class InvalidAudioError(InputError):
    """The decoded samples are unusable: NaN or infinite values, or an absurd sample rate."""


class ModelLoadError(DeepfakeAudioError):
    """Model artefacts are missing, fail verification, or do not match this library."""


class ModelIntegrityError(ModelLoadError):
    """An artefact's SHA-256 does not match ``model.json`` or the pickle holds forbidden objects."""


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
    "DatasetError",
    "DeepfakeAudioError",
    "EmptyAudioError",
    "InputError",
    "InvalidAudioError",
    "ModelIntegrityError",
    "ModelLoadError",
    "SilentAudioError",
    "TrainingError",
    "UnsupportedFormatError",
]
