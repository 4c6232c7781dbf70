"""deepfake-audio: tell genuine speech from synthetic speech.

>>> from deepfake_audio import Detector
>>> Detector().analyze("call.wav").classification  # doctest: +SKIP
'real'

The HTTP/WebSocket server lives in :mod:`deepfake_audio.server` and needs the
``[server]`` extra; importing this package never imports it.
"""

import logging

from ._version import __version__
from .audio import Audio, AudioInfo, AudioReader, load_audio, probe
from .detector import AnalysisResult, Detector, Segment, WindowScore
from .exceptions import (
    AudioDecodeError,
    AudioFileNotFoundError,
    AudioTooLongError,
    AudioTooShortError,
    DeepfakeAudioError,
    EmptyAudioError,
    InputError,
    InvalidAudioError,
    ModelIntegrityError,
    ModelLoadError,
    NoAudioStreamError,
    NoSpeechError,
    NotMediaError,
    SilentAudioError,
    SpeakerReferenceError,
    UnsupportedFormatError,
)
from .features import FeatureConfig
from .speaker import SpeakerProfile, SpeakerResult

logging.getLogger("deepfake_audio").addHandler(logging.NullHandler())

__all__ = [
    "AnalysisResult",
    "Audio",
    "AudioDecodeError",
    "AudioFileNotFoundError",
    "AudioInfo",
    "AudioReader",
    "AudioTooLongError",
    "AudioTooShortError",
    "DeepfakeAudioError",
    "Detector",
    "EmptyAudioError",
    "FeatureConfig",
    "InputError",
    "InvalidAudioError",
    "ModelIntegrityError",
    "ModelLoadError",
    "NoAudioStreamError",
    "NoSpeechError",
    "NotMediaError",
    "Segment",
    "SilentAudioError",
    "SpeakerProfile",
    "SpeakerReferenceError",
    "SpeakerResult",
    "UnsupportedFormatError",
    "WindowScore",
    "__version__",
    "load_audio",
    "probe",
]
