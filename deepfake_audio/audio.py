"""Decode, validate and resample audio.

Everything that touches raw bytes lives here: format sniffing, header checks
(duration and channel limits are enforced from the header, before decoding),
block-by-block decoding and resampling with soxr, and sample validation.

Two decoders: libsndfile (``soundfile``) is the fast path for WAV, FLAC,
OGG/Vorbis/Opus, AIFF, CAF and AU; everything else (M4A/MP4/MOV, WebM/MKV,
AMR, 3GP, WMA, AC-3, MP3, video files…) goes through FFmpeg via PyAV
(:mod:`deepfake_audio.media`). MP3 goes to FFmpeg too: libsndfile's MP3 decoder
(libmpg123) prints resync warnings straight to stderr.

:class:`AudioReader` yields ``(frames, channels)`` blocks at the target rate, so
hours-long files are analysed in bounded memory; :func:`load_audio` is the
whole-file convenience on top of it.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
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
from .media import BLOCK_FRAMES, MediaFile, to_float32

logger = logging.getLogger("deepfake_audio")

#: Anything :func:`load_audio` accepts: a path, encoded bytes, a binary file
#: object, or a ``(samples, sample_rate)`` pair.
AudioSource = str | os.PathLike | bytes | bytearray | memoryview | IO[bytes] | tuple

#: Containers libsndfile reads (the fast path); anything else is handed to FFmpeg.
SNDFILE_FORMATS = ("WAV", "FLAC", "OGG", "AIFF", "CAF", "AU")
#: Families of input this build decodes (for documentation and messages).
SUPPORTED_FORMATS = ("WAV", "FLAC", "OGG", "MP3", "M4A/MP4/MOV", "WebM/MKV", "AMR", "3GP",
                     "WMA/ASF", "AIFF", "CAF", "AU", "AC-3", "AAC")
SUPPORTED_EXTENSIONS = (
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".m4b", ".mp4", ".m4v",
    ".mov", ".aac", ".webm", ".mkv", ".mka", ".amr", ".awb", ".3gp", ".3g2", ".wma", ".asf",
    ".wmv", ".aif", ".aiff", ".aifc", ".caf", ".au", ".snd", ".ac3", ".avi", ".mpeg", ".mpg", ".ts")

#: The library and CLI have no duration limit (analysis runs in bounded memory).
DEFAULT_MAX_DURATION_S: float | None = None
DEFAULT_MIN_DURATION_S = 0.3
#: Most channels :func:`load_audio` accepts in a file or an array (all are mixed to mono).
MAX_INPUT_CHANNELS = 16
#: Sample-rate range :func:`load_audio` accepts in a file header or with an array;
#: anything outside is a corrupt header, not audio (the WebSocket stream has its own limits).
MIN_INPUT_SAMPLE_RATE = 1_000
MAX_INPUT_SAMPLE_RATE = 384_000
# Peak below -70 dBFS: nothing a microphone or a generator would produce as speech.
SILENCE_PEAK = 10 ** (-70 / 20)
#: Where a duration error tells the user the limit comes from.
DURATION_SETTING = "--max-duration / DEEPFAKE_AUDIO_MAX_DURATION (library: max_duration_s)"


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, read without decoding the samples.

    ``frames`` is 0 when the container does not declare its length (e.g. a
    WebM recorded live); the decoder then enforces the limits while it runs.
    """

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
        One of :data:`SNDFILE_FORMATS` for the fast path, ``"MP3"``, or
        ``"media"`` for anything FFmpeg is to identify.

    Raises
    ------
    EmptyAudioError
        ``head`` is empty.
    """
    if not head:
        raise EmptyAudioError("empty input: no bytes to decode")
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "WAV"
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[:4] == b"OggS":
        return "OGG"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    if head[:4] == b"caff":
        return "CAF"
    if head[:4] == b".snd":
        return "AU"
    if head[:3] == b"ID3" or (
        len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and (head[1] >> 1) & 0x3
    ):
        return "MP3"  # ADTS AAC shares the frame sync but has layer bits 00: "media"
    return "media"


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


def too_long(duration_s: float, limit_s: float, *, understated: bool = False) -> AudioTooLongError:
    """The duration error, naming the setting that lifts the limit."""
    what = (f"audio is longer than the {limit_s:g} s limit (the header understated its length)"
            if understated else f"audio is {duration_s:.1f} s long; the limit is {limit_s:g} s")
    return AudioTooLongError(f"{what}; raise it with {DURATION_SETTING}")


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
    if max_duration_s is not None and info.duration_s > max_duration_s:
        raise too_long(info.duration_s, max_duration_s)


# libsndfile messages that mislead when the input is an upload in memory, not a file.
_CLEARER_MESSAGES = (
    ("File does not exist or is not a regular file",
     "truncated or corrupt data (no decodable audio frames)"),
    ("SF_INFO struct incomplete",
     "the header declares an impossible sample rate, channel count or sample format"),
)
_SNDFILE_ERRORS = (sf.LibsndfileError, RuntimeError, ValueError, EOFError)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # libsndfile prefixes the (possibly huge) repr of the stream; keep its verdict only.
    text = text.rsplit(": ", 1)[-1] if "Error opening" in text else text
    for cryptic, clear in _CLEARER_MESSAGES:
        if cryptic in text:
            return clear
    return text


def _sndfile_blocks(handle: sf.SoundFile) -> Iterator[np.ndarray]:
    while True:
        block = handle.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
        if len(block) == 0:
            return
        yield block


def _array_blocks(samples: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, len(samples), BLOCK_FRAMES):
        yield samples[start : start + BLOCK_FRAMES]


def _as_frames_by_channels(samples: object) -> np.ndarray:
    """A caller's array as float32 ``(frames, channels)``."""
    arr = np.asarray(samples)
    if arr.dtype.kind not in "iuf":
        raise InvalidAudioError(f"samples must be a numeric array, not dtype {arr.dtype}")
    arr = to_float32(arr)
    if arr.ndim == 1:
        return arr[:, None]
    if arr.ndim != 2:
        raise InvalidAudioError(f"samples must be 1-D or 2-D, got shape {arr.shape}")
    # soundfile layout is (frames, channels); librosa's is (channels, frames).
    if arr.shape[0] <= MAX_INPUT_CHANNELS < arr.shape[1] or arr.shape[0] < arr.shape[1] <= 2:
        arr = arr.T
    return arr


class AudioReader:
    """An opened recording: its header, then its samples block by block.

    Parameters
    ----------
    source : path, bytes, binary file object or (numpy.ndarray, int)
        As for :func:`load_audio`.
    target_sr : int
        Rate of the blocks :meth:`blocks` yields.
    max_duration_s : float or None
        Longest audio accepted: checked from the header when it declares a
        length, and again while decoding.
    file_type : str, optional
        Declared extension; an unsupported one is refused.

    Attributes
    ----------
    info : AudioInfo
        Format, native sample rate, channel count and declared length.

    Raises
    ------
    InputError
        A specific subclass, as for :func:`load_audio`.
    """

    def __init__(
        self,
        source: AudioSource,
        *,
        target_sr: int = 16_000,
        max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
        file_type: str | None = None,
    ) -> None:
        check_format_hint(file_type)
        self.target_sr = target_sr
        self.max_duration_s = max_duration_s
        self._stream: IO[bytes] | None = None
        self._owned = False
        self._sndfile: sf.SoundFile | None = None
        self._media: MediaFile | None = None
        self._array: np.ndarray | None = None
        try:
            self.info = self._open(source)
            _check_header(self.info, max_duration_s)
        except BaseException:
            self.close()
            raise

    def _open(self, source: AudioSource) -> AudioInfo:
        if isinstance(source, tuple):
            if len(source) != 2:
                raise TypeError("an array source must be a (samples, sample_rate) pair")
            self._array = _as_frames_by_channels(source[0])
            return AudioInfo("array", int(source[1]), self._array.shape[1], len(self._array))
        self._stream, self._owned = _open_binary(source)
        head = self._stream.read(16)
        self._stream.seek(0)
        fmt = sniff_format(head)
        if fmt in SNDFILE_FORMATS:
            try:
                self._sndfile = sf.SoundFile(self._stream)
            except _SNDFILE_ERRORS as exc:
                # libsndfile lacks some codecs in these containers (e.g. WAV with
                # G.723 or an exotic ADPCM, CAF with AAC): FFmpeg gets a turn.
                logger.debug("libsndfile cannot read this %s (%s); trying FFmpeg", fmt, exc)
                self._stream.seek(0)
                try:
                    return self._open_media()
                except AudioDecodeError:
                    raise AudioDecodeError(f"cannot decode {fmt} data: {_short(exc)}") from None
            handle = self._sndfile
            frames = max(int(handle.frames), 0)
            if frames == 0:
                raise EmptyAudioError("the file holds no audio samples")
            return AudioInfo(fmt, int(handle.samplerate), int(handle.channels), frames)
        return self._open_media()

    def _open_media(self) -> AudioInfo:
        assert self._stream is not None
        media = self._media = MediaFile(self._stream)
        if media.sample_rate <= 0:
            raise AudioDecodeError(f"the {media.codec} stream declares no sample rate")
        frames = round(media.duration_s * media.sample_rate) if media.duration_s else 0
        return AudioInfo(media.codec, media.sample_rate, media.channels, frames)

    def _native_blocks(self) -> Iterator[np.ndarray]:
        """Blocks at the native rate, ``(frames, channels)`` float32."""
        if self._array is not None:
            yield from _array_blocks(self._array)
        elif self._sndfile is not None:
            try:
                yield from _sndfile_blocks(self._sndfile)
            except _SNDFILE_ERRORS as exc:
                raise AudioDecodeError(
                    f"cannot decode {self.info.format} data: {_short(exc)}"
                ) from None
        elif self._media is not None:
            yield from self._media.frames()

    def blocks(self) -> Iterator[np.ndarray]:
        """Decode block by block: ``(frames, channels)`` float32 at ``target_sr``.

        Raises
        ------
        AudioTooLongError
            The stream runs past ``max_duration_s`` (the header understated it).
        InvalidAudioError
            NaN or infinite samples.
        AudioDecodeError
            The data is damaged beyond the first block.
        """
        info = self.info
        limit = (None if self.max_duration_s is None
                 else int(self.max_duration_s * info.sample_rate) + info.sample_rate)
        stream = (None if info.sample_rate == self.target_sr else soxr.ResampleStream(
            info.sample_rate, self.target_sr, info.channels, dtype="float32", quality="HQ"))
        total = 0
        for block in self._native_blocks():
            total += len(block)
            if limit is not None and total > limit:
                raise too_long(total / info.sample_rate, self.max_duration_s or 0.0,
                               understated=True)
            if not (np.isfinite(block.min()) and np.isfinite(block.max())):
                raise InvalidAudioError("the audio contains NaN or infinite sample values")
            out = block if stream is None else stream.resample_chunk(block)
            if len(out):
                yield np.ascontiguousarray(out, dtype=np.float32)
        if stream is not None:
            tail = stream.resample_chunk(np.zeros((0, info.channels), np.float32), last=True)
            if len(tail):
                yield np.ascontiguousarray(tail, dtype=np.float32)

    def close(self) -> None:
        if self._sndfile is not None:
            self._sndfile.close()
        if self._media is not None:
            self._media.close()
        if self._owned and self._stream is not None:
            self._stream.close()
        self._sndfile = self._media = self._stream = None

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def probe(source: AudioSource) -> AudioInfo:
    """Read format, sample rate, channels and length from the header only.

    Raises
    ------
    InputError
        Any subclass, as for :func:`load_audio`.
    """
    with AudioReader(source, max_duration_s=None) as reader:
        return reader.info


def validate_samples(samples: np.ndarray, sample_rate: int, min_duration_s: float) -> None:
    """Refuse empty, too short or silent mono audio.

    Raises
    ------
    EmptyAudioError, AudioTooShortError, SilentAudioError
    """
    if samples.size == 0:
        raise EmptyAudioError("the file holds no audio samples")
    duration = samples.size / sample_rate
    if duration < min_duration_s:
        raise AudioTooShortError(f"audio is {duration:.3f} s long; at least"
                                 f" {min_duration_s:g} s is needed")
    if max(float(samples.max()), -float(samples.min())) < SILENCE_PEAK:  # no |x| copy
        raise SilentAudioError("the audio is silent (peak below -70 dBFS)")


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

    The whole recording is held in memory; :class:`AudioReader` streams it.

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
        Declared extension (``".wav"``, ``".m4a"``); an unsupported one is refused.
        The content itself decides how it is decoded.

    Returns
    -------
    Audio

    Raises
    ------
    InputError
        A specific subclass for each problem: :class:`AudioFileNotFoundError`,
        :class:`EmptyAudioError`, :class:`AudioDecodeError` (and its
        :class:`NotMediaError`, :class:`NoAudioStreamError`),
        :class:`UnsupportedFormatError`, :class:`AudioTooLongError`,
        :class:`AudioTooShortError`, :class:`InvalidAudioError`,
        :class:`SilentAudioError`.
    """
    with AudioReader(source, target_sr=target_sr, max_duration_s=max_duration_s,
                     file_type=file_type) as reader:
        # Downmix block by block (peak memory ~1x the mono result); mono needs no mean.
        parts = [block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)
                 for block in reader.blocks()]
        info = reader.info
    mono = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    validate_samples(mono, target_sr, min_duration_s)
    return Audio(samples=mono, sample_rate=target_sr, original_sample_rate=info.sample_rate,
                 channels=info.channels, format=info.format)
