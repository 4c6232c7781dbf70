"""Error payloads shared by HTTP and WebSocket handlers: ``{"error": ..., "detail": ...}``."""

from __future__ import annotations

from typing import Any

from ..exceptions import (
    AudioDecodeError,
    AudioTooLongError,
    AudioTooShortError,
    EmptyAudioError,
    InputError,
    InvalidAudioError,
    NoSpeechError,
    SilentAudioError,
    SpeakerReferenceError,
    UnsupportedFormatError,
)

BUSY_MESSAGE = "server busy, retry later"
WORKER_CRASHED_MESSAGE = "analysis worker crashed"
#: Where an upload-size error tells the user the cap comes from.
UPLOAD_SETTING = "raise it with --max-upload-mb / DEEPFAKE_AUDIO_MAX_UPLOAD_MB"
TIMEOUT_MESSAGE = "analysis timed out"

# Most specific first: the first isinstance match decides.
_INPUT_ERRORS: tuple[tuple[type[InputError], int, str], ...] = (
    (SpeakerReferenceError, 422, "unusable speaker references"),
    (UnsupportedFormatError, 415, "unsupported audio format"),
    (AudioTooLongError, 413, "audio too long"),
    (EmptyAudioError, 400, "empty audio"),
    (AudioTooShortError, 400, "audio too short"),
    (NoSpeechError, 400, "no speech"),
    (SilentAudioError, 400, "silent audio"),
    (InvalidAudioError, 400, "invalid audio"),
    (AudioDecodeError, 400, "could not decode audio"),
)


def input_error_status(exc: InputError) -> tuple[int, str]:
    """HTTP status and short message for an :class:`InputError` from the core."""
    for cls, status, message in _INPUT_ERRORS:
        if isinstance(exc, cls):
            return status, message
    return 400, "invalid audio input"


def error_body(error: str, detail: Any = None) -> dict[str, Any]:
    """The JSON error object; ``detail`` is left out when there is none."""
    body: dict[str, Any] = {"error": error}
    if detail is not None and detail != "":
        body["detail"] = detail
    return body


def input_error_body(exc: InputError) -> dict[str, Any]:
    return error_body(input_error_status(exc)[1], str(exc))
