"""``deepfake_audio.__all__`` is the public API: pinned here so a change to it is deliberate."""

from __future__ import annotations

import types

import deepfake_audio

EXPECTED = {
    "AnalysisResult",
    "Audio",
    "AudioDecodeError",
    "AudioFileNotFoundError",
    "AudioInfo",
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
    "SilentAudioError",
    "UnsupportedFormatError",
    "WindowScore",
    "__version__",
    "load_audio",
    "probe",
}


def test_all_is_the_expected_list_without_duplicates() -> None:
    assert sorted(deepfake_audio.__all__) == sorted(EXPECTED)
    assert len(deepfake_audio.__all__) == len(set(deepfake_audio.__all__))


def test_every_name_in_all_exists() -> None:
    missing = [name for name in deepfake_audio.__all__ if not hasattr(deepfake_audio, name)]
    assert not missing


def test_every_public_member_is_in_all() -> None:
    # Submodules are reachable as attributes once imported; they are not re-exports.
    public = {
        name for name, value in vars(deepfake_audio).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public <= set(deepfake_audio.__all__), sorted(public - set(deepfake_audio.__all__))
