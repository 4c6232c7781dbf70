"""Decode, validate and resample audio.

Everything that touches raw bytes lives here: format sniffing, header checks
(duration and channel limits are enforced from the header, before decoding),
streaming decode with downmix, sample validation and resampling with soxr.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import soundfile as sf
import soxr

from .exceptions import (
    AudioDecodeError,
    AudioFileNotFoundError,
    AudioTooLongError,
    AudioTooShortError,
    EmptyAudioError,
    InvalidAudioError,
    SilentAudioError,
    UnsupportedFormatError,
)

logger = logging.getLogger("deepfake_audio")

#: Anything :func:`load_audio` accepts: a path, encoded bytes, a binary file
#: object, or a ``(samples, sample_rate)`` pair.
AudioSource = str | os.PathLike | bytes | bytearray | memoryview | IO[bytes] | tuple

SUPPORTED_FORMATS = ("WAV", "FLAC", "OGG", "MP3")
SUPPORTED_EXTENSIONS = (".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3")

DEFAULT_MAX_DURATION_S = 600.0
DEFAULT_MIN_DURATION_S = 0.3
#: Most channels :func:`load_audio` accepts in a file or an array (all are mixed to mono).
MAX_INPUT_CHANNELS = 16
#: Sample-rate range :func:`load_audio` accepts in a file header or with an array;
#: anything outside is a corrupt header, not audio (the WebSocket stream has its own limits).
MIN_INPUT_SAMPLE_RATE = 1_000
MAX_INPUT_SAMPLE_RATE = 384_000
# Peak below -70 dBFS: nothing a microphone or a generator would produce as speech.
SILENCE_PEAK = 10 ** (-70 / 20)
_BLOCK_FRAMES = 1 << 16

# Containers people send by mistake; naming them beats "not recognised".
_KNOWN_UNSUPPORTED = (
    (b"FORM", 0, "AIFF"),
    (b"ftyp", 4, "MP4/M4A/AAC"),
    (b"\x1a\x45\xdf\xa3", 0, "WebM/Matroska"),
    (b"#!AMR", 0, "AMR"),
    (b".snd", 0, "AU"),
    (b"caff", 0, "CAF"),
    (b"MAC ", 0, "Monkey's Audio"),
    (b"wvpk", 0, "WavPack"),
)


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, read without decoding the samples."""

    format: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


@dataclass(frozen=True)
class Audio:
    """Decoded mono audio, resampled to ``sample_rate``."""

    samples: np.ndarray
    sample_rate: int
    original_sample_rate: int
    channels: int
    format: str

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def sniff_format(head: bytes) -> str:
    """Name the container from its first bytes.

    Parameters
    ----------
    head : bytes
        At least the first 12 bytes of the file.

    Returns
    -------
    str
        One of :data:`SUPPORTED_FORMATS`.

    Raises
    ------
    EmptyAudioError
        ``head`` is empty.
    UnsupportedFormatError
        A known audio container that is not supported.
    AudioDecodeError
        Not recognisable as audio.
    """
    if not head:
        raise EmptyAudioError("empty input: no bytes to decode")
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "WAV"
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[:4] == b"OggS":
        return "OGG"
    if head[:3] == b"ID3":
        return "MP3"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        layer = (head[1] >> 1) & 0x3
        if layer == 0:  # ADTS AAC shares the frame sync but has layer bits 00
            raise UnsupportedFormatError(
                "AAC (ADTS) audio is not supported; use WAV, FLAC, OGG or MP3"
            )
        return "MP3"
    for magic, offset, name in _KNOWN_UNSUPPORTED:
        if head[offset : offset + len(magic)] == magic:
            raise UnsupportedFormatError(
                f"{name} audio is not supported; use WAV, FLAC, OGG or MP3"
            )
    raise AudioDecodeError("not a recognised audio file (expected WAV, FLAC, OGG or MP3 data)")


def check_format_hint(file_type: str | None) -> None:
    """Refuse a declared file type (``".wav"``, ``"audio/mpeg"``…) we cannot decode.

    Raises
    ------
    UnsupportedFormatError
        The extension is not one of :data:`SUPPORTED_EXTENSIONS`.
    """
    if not file_type:
        return
    ext = file_type.strip().lower()
    if "/" in ext:  # a MIME type: judged by content instead
        return
    if not ext.startswith("."):
        ext = "." + ext
    if ext not in SUPPORTED_EXTENSIONS:
        raise UnsupportedFormatError(
            f"unsupported file type {file_type!r}; supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )


def _open_binary(source: AudioSource) -> tuple[IO[bytes], bool]:
    """Return a seekable binary stream and whether we own (must close) it."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source)), True
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise AudioFileNotFoundError(f"no such file: {path}")
        return open(path, "rb"), True
    if hasattr(source, "read"):
        stream: IO[bytes] = source  # type: ignore[assignment]
        if not stream.seekable():
            return io.BytesIO(stream.read()), True
        return stream, False
    raise TypeError(
        "audio source must be a path, bytes, a binary file object or a"
        f" (samples, sample_rate) tuple, not {type(source).__name__}"
    )


def _info_from_soundfile(handle: sf.SoundFile, fmt: str) -> AudioInfo:
    return AudioInfo(
        format=fmt, sample_rate=int(handle.samplerate), channels=int(handle.channels),
        frames=max(int(handle.frames), 0),
    )


def _check_header(info: AudioInfo, max_duration_s: float | None) -> None:
    """Refuse what the header (or an array's shape and rate) alone shows to be unusable."""
    if not MIN_INPUT_SAMPLE_RATE <= info.sample_rate <= MAX_INPUT_SAMPLE_RATE:
        raise InvalidAudioError(
            f"sample rate {info.sample_rate} Hz is outside"
            f" {MIN_INPUT_SAMPLE_RATE}-{MAX_INPUT_SAMPLE_RATE} Hz"
        )
    if info.channels < 1:
        raise InvalidAudioError("the header declares no audio channels")
    if info.channels > MAX_INPUT_CHANNELS:
        raise UnsupportedFormatError(
            f"{info.channels} channels; at most {MAX_INPUT_CHANNELS} are supported"
        )
    if info.frames == 0:
        raise EmptyAudioError("the file holds no audio samples")
    if max_duration_s is not None and info.duration_s > max_duration_s:
        raise AudioTooLongError(
            f"audio is {info.duration_s:.1f} s long; the limit is {max_duration_s:g} s"
        )


def probe(source: AudioSource) -> AudioInfo:
    """Read format, sample rate, channels and length from the header only.

    Raises
    ------
    InputError
        Any subclass, as for :func:`load_audio`.
    """
    stream, owned = _open_binary(source)
    try:
        head = stream.read(16)
        stream.seek(0)
        fmt = sniff_format(head)
        try:
            with sf.SoundFile(stream) as handle:
                return _info_from_soundfile(handle, fmt)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise AudioDecodeError(f"cannot read {fmt} header: {_short(exc)}") from None
    finally:
        if owned:
            stream.close()


# libsndfile messages that mislead when the input is an upload in memory, not a file.
_CLEARER_MESSAGES = (
    ("File does not exist or is not a regular file",
     "truncated or corrupt data (no decodable audio frames)"),
    ("SF_INFO struct incomplete",
     "the header declares an impossible sample rate, channel count or sample format"),
)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # libsndfile prefixes the (possibly huge) repr of the stream; keep its verdict only.
    text = text.rsplit(": ", 1)[-1] if "Error opening" in text else text
    for cryptic, clear in _CLEARER_MESSAGES:
        if cryptic in text:
            return clear
    return text


def _decode_mono(handle: sf.SoundFile, max_frames: int | None) -> np.ndarray:
    """Decode block by block, downmixing as we go so peak memory stays ~1× mono."""
    blocks: list[np.ndarray] = []
    total = 0
    for block in _blocks(handle):
        mono = block.mean(axis=1, dtype=np.float32) if block.ndim == 2 else block
        blocks.append(mono.astype(np.float32, copy=False))
        total += len(mono)
        if max_frames is not None and total > max_frames:
            raise AudioTooLongError(
                f"audio is longer than the {max_frames / handle.samplerate:g} s limit"
                " (the header understated its length)"
            )
    if not blocks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(blocks)


def _blocks(handle: sf.SoundFile) -> Iterator[np.ndarray]:
    while True:
        block = handle.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
        if len(block) == 0:
            return
        yield block


def _validate_samples(samples: np.ndarray, sample_rate: int, min_duration_s: float) -> None:
    if samples.size == 0:
        raise EmptyAudioError("the file holds no audio samples")
    if not np.isfinite(samples).all():
        raise InvalidAudioError("the audio contains NaN or infinite sample values")
    duration = samples.size / sample_rate
    if duration < min_duration_s:
        raise AudioTooShortError(
            f"audio is {duration:.3f} s long; at least {min_duration_s:g} s is needed"
        )
    if float(np.max(np.abs(samples))) < SILENCE_PEAK:
        raise SilentAudioError("the audio is silent (peak below -70 dBFS)")


def _array_to_mono(samples: np.ndarray) -> tuple[np.ndarray, int]:
    """Float32 mono samples and the number of channels the array held."""
    arr = np.asarray(samples)
    channels = 1
    if arr.dtype.kind in "iu":
        scale = float(np.iinfo(arr.dtype).max) + 1.0
        offset = scale / 2 if arr.dtype.kind == "u" else 0.0
        arr = (arr.astype(np.float64) - offset) / (scale if arr.dtype.kind == "i" else offset)
    elif arr.dtype.kind != "f":
        raise InvalidAudioError(f"samples must be a numeric array, not dtype {arr.dtype}")
    if arr.ndim == 2:
        # soundfile layout is (frames, channels); librosa's is (channels, frames).
        if arr.shape[0] <= MAX_INPUT_CHANNELS < arr.shape[1] or arr.shape[0] < arr.shape[1] <= 2:
            arr = arr.T
        if arr.shape[1] > MAX_INPUT_CHANNELS:
            raise UnsupportedFormatError(
                f"{arr.shape[1]} channels; at most {MAX_INPUT_CHANNELS} are supported"
            )
        channels = int(arr.shape[1])
        arr = arr.mean(axis=1)
    elif arr.ndim != 1:
        raise InvalidAudioError(f"samples must be 1-D or 2-D, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32), channels


def resample(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample mono float32 audio with soxr (high quality)."""
    if orig_sr == target_sr:
        return samples
    return soxr.resample(samples, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def load_audio(
    source: AudioSource,
    *,
    target_sr: int = 16_000,
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
    min_duration_s: float = DEFAULT_MIN_DURATION_S,
    file_type: str | None = None,
) -> Audio:
    """Decode any supported input to validated mono float32 at ``target_sr``.

    Parameters
    ----------
    source : path, bytes, binary file object or (numpy.ndarray, int)
        The audio. Arrays may be ``(frames,)``, ``(frames, channels)`` or
        ``(channels, frames)``, float in [-1, 1] or integer PCM.
    target_sr : int
        Sample rate of the returned samples.
    max_duration_s : float or None
        Longest audio accepted, checked from the header before decoding.
    min_duration_s : float
        Shortest audio accepted.
    file_type : str, optional
        Declared extension (``".wav"``, ``".mp3"``); an unsupported one is refused.
        The content itself decides how it is decoded.

    Returns
    -------
    Audio

    Raises
    ------
    InputError
        A specific subclass for each problem: :class:`AudioFileNotFoundError`,
        :class:`EmptyAudioError`, :class:`AudioDecodeError`,
        :class:`UnsupportedFormatError`, :class:`AudioTooLongError`,
        :class:`AudioTooShortError`, :class:`InvalidAudioError`,
        :class:`SilentAudioError`.
    """
    check_format_hint(file_type)
    if isinstance(source, tuple):
        if len(source) != 2:
            raise TypeError("an array source must be a (samples, sample_rate) pair")
        samples, sample_rate = source
        sample_rate = int(sample_rate)
        mono, channels = _array_to_mono(samples)
        info = AudioInfo("array", sample_rate, channels, len(mono))
        _check_header(info, max_duration_s)
        fmt = "array"
    else:
        stream, owned = _open_binary(source)
        try:
            head = stream.read(16)
            stream.seek(0)
            fmt = sniff_format(head)
            try:
                with sf.SoundFile(stream) as handle:
                    info = _info_from_soundfile(handle, fmt)
                    _check_header(info, max_duration_s)
                    max_frames = (
                        None if max_duration_s is None
                        else int(max_duration_s * info.sample_rate) + info.sample_rate
                    )
                    mono = _decode_mono(handle, max_frames)
            except (sf.LibsndfileError, RuntimeError, ValueError, EOFError) as exc:
                raise AudioDecodeError(f"cannot decode {fmt} data: {_short(exc)}") from None
        finally:
            if owned:
                stream.close()
        sample_rate = info.sample_rate
    _validate_samples(mono, sample_rate, min_duration_s)
    return Audio(
        samples=resample(mono, sample_rate, target_sr),
        sample_rate=target_sr,
        original_sample_rate=sample_rate,
        channels=info.channels,
        format=fmt,
    )
