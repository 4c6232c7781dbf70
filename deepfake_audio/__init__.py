"""deepfake-audio: tell genuine speech from synthetic speech.

>>> from deepfake_audio import Detector
>>> Detector().analyze("call.wav").classification  # doctest: +SKIP
'real'

The HTTP/WebSocket server lives in :mod:`deepfake_audio.server` and needs the
``[server]`` extra; importing this package never imports it.
"""

import importlib
import logging
import typing

from ._version import __version__
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

if typing.TYPE_CHECKING:
    from .audio import Audio, AudioInfo, AudioReader, load_audio, probe
    from .detector import AnalysisResult, Detector, Segment, WindowScore
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

# The heavy modules are imported on first use (PEP 562), so the command line can
# start building the speech detector on another core before numpy and the model load.
_HOMES = {"audio": ("Audio", "AudioInfo", "AudioReader", "load_audio", "probe"),
          "detector": ("AnalysisResult", "Detector", "Segment", "WindowScore"),
          "features": ("FeatureConfig",),
          "speaker": ("SpeakerProfile", "SpeakerResult")}
_HOME = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> typing.Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'deepfake_audio' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
