"""FFmpeg decoding through PyAV, for what libsndfile cannot read.

M4A/MP4/MOV (AAC, ALAC), WebM/MKV (Opus, Vorbis), AMR, 3GP, WMA/ASF, AC-3,
MP3, ADTS AAC and the audio of video files all come through here. PyAV's
wheels bundle FFmpeg, so no system binary is needed, and FFmpeg's own log
lines stay off stderr (PyAV leaves FFmpeg logging off unless asked).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

from .exceptions import AudioDecodeError, NoAudioStreamError, NotMediaError

logger = logging.getLogger("deepfake_audio")

#: Frames per decoded block, for this FFmpeg path and audio.py's libsndfile path alike:
#: each block is read by the speech detector in one batch (a fixed cost per batch) and
#: fewer switches between it and the features keep the caches warm.
BLOCK_FRAMES = 1 << 18

# Magic numbers of files people upload by mistake: naming them beats "invalid data".
_NON_MEDIA = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows executable"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"{", "JSON or other text"),
    (b"<", "HTML/XML or other text"),
)


# Demuxers of audio and video containers. Image, playlist, subtitle and network
# demuxers stay off: an HLS playlist or concat list could make FFmpeg open other files.
_DEMUXERS = ",".join((
    "mov", "matroska", "amr", "amrnb", "amrwb", "asf", "aiff", "caf", "ac3", "eac3", "aac",
    "mp3", "wav", "w64", "ogg", "flac", "avi", "mpeg", "mpegts", "flv", "au", "wv", "ape",
    "tta", "dts", "truehd", "mlp", "rm", "voc", "xwma", "dsf", "oma", "mpc", "mpc8",
))


def describe_non_media(head: bytes) -> str:
    """Say what ``head`` looks like when it is not media (for error messages)."""
    for magic, name in _NON_MEDIA:
        if head.startswith(magic):
            return name
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "unrecognised binary data"
    return "text" if text.isprintable() or text.strip() else "unrecognised data"


_CONTAINER_NAMES = {"mov": "MP4/MOV", "matroska": "WebM/Matroska", "asf": "ASF/WMV"}


def _container_name(container: Any) -> str:
    short = str(container.format.name).split(",")[0]
    return _CONTAINER_NAMES.get(short, short.upper())


def _codec_name(stream: Any) -> str:
    """``AAC``, ``MP3``, ``AMR_NB``…: the codec, not FFmpeg's decoder variant (``mp3float``)."""
    codec = stream.codec_context.codec
    return str(getattr(codec, "canonical_name", None) or codec.name).upper()


class MediaFile:
    """First audio stream of a container opened with PyAV.

    Parameters
    ----------
    stream : binary file object
        Seekable; left open (the caller owns it).

    Raises
    ------
    NotMediaError
        FFmpeg recognises no container in the bytes.
    NoAudioStreamError
        A media container without an audio stream (says which streams it has).
    AudioDecodeError
        The container is damaged.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        import av

        head = stream.read(64)
        stream.seek(0)
        try:
            self._container = av.open(
                stream, mode="r", metadata_errors="ignore",
                container_options={"format_whitelist": _DEMUXERS, "protocol_whitelist": "none"},
            )
        except (av.error.InvalidDataError, av.error.ArgumentError):  # unknown or not allowed
            raise NotMediaError(
                f"not an audio or video file: found {describe_non_media(head)}"
            ) from None
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            raise AudioDecodeError(f"cannot open media container: {exc}") from None
        container = self._container
        if not container.streams.audio:
            kinds = [f"{s.type} ({s.codec_context.name})" if s.codec_context else str(s.type)
                     for s in container.streams]
            container.close()
            found = ", ".join(kinds) if kinds else "no streams at all"
            raise NoAudioStreamError(
                f"the {_container_name(container)} file has no audio stream"
                f" (found: {found})"
            )
        self._stream = container.streams.audio[0]
        context = self._stream.codec_context
        if context is None:  # an audio stream of a codec this FFmpeg build cannot decode
            name = _container_name(container)
            container.close()
            raise AudioDecodeError(f"the {name} file's audio stream uses a codec that"
                                   " cannot be decoded")
        self.codec = _codec_name(self._stream)
        self.container_format = _container_name(container)
        self.sample_rate = int(context.sample_rate or 0)
        self.channels = int(context.channels or 0)
        self.duration_s = self._duration(container)

    def _duration(self, container: Any) -> float | None:
        """Duration the container declares, or ``None`` (e.g. a live WebM recording)."""
        if self._stream.duration and self._stream.time_base:
            return float(self._stream.duration * self._stream.time_base)
        if container.duration:
            return float(container.duration) / 1_000_000
        return None

    def frames(self) -> Iterator[np.ndarray]:
        """Decoded audio as ``(frames, channels)`` float32 blocks at :attr:`sample_rate`."""
        import av

        bad_packets = 0
        # Codec frames are ~1024 samples: gather them so the per-block work downstream
        # (checks, resampling) runs a few times a second, not forty.
        pending: list[np.ndarray] = []
        size = 0
        try:
            for packet in self._container.demux(self._stream):
                try:
                    decoded = packet.decode()
                except (av.error.InvalidDataError, av.error.PatchWelcomeError):
                    bad_packets += 1  # a damaged packet: skip it like a player would
                    continue
                for frame in decoded:
                    pending.append(self._to_array(frame))
                    size += len(pending[-1])
                    if size >= BLOCK_FRAMES:
                        yield np.concatenate(pending)
                        pending, size = [], 0
        except av.error.FFmpegError as exc:
            raise AudioDecodeError(f"cannot decode {self.codec} audio: {exc}") from None
        if pending:
            yield np.concatenate(pending)
        if bad_packets:
            logger.info("skipped %d undecodable %s packets", bad_packets, self.codec)

    def _to_array(self, frame: Any) -> np.ndarray:
        channels = frame.layout.nb_channels
        try:
            arr, planar = frame.to_ndarray(), frame.format.is_planar
        except (KeyError, ValueError):  # a sample format PyAV has no numpy type for (s64)
            arr, planar = _packed_float(frame), False
        arr = arr.T if planar else arr.reshape(-1, channels)
        arr = to_float32(arr)
        if channels != self.channels:  # a mid-stream layout change: keep the declared count
            arr = np.repeat(arr.mean(axis=1, keepdims=True), self.channels, axis=1)
        return arr

    def close(self) -> None:
        self._container.close()


def _packed_float(frame: Any) -> np.ndarray:
    """``frame`` converted to packed float32 by libswresample, as ``(1, samples * channels)``."""
    import av

    resampler = av.AudioResampler(format="flt", layout=frame.layout, rate=frame.sample_rate)
    out = [*resampler.resample(frame), *resampler.resample(None)]
    if not out:
        return np.zeros((1, 0), dtype=np.float32)
    return np.concatenate([o.to_ndarray() for o in out], axis=1)


def to_float32(arr: np.ndarray) -> np.ndarray:
    """Integer PCM or float samples as float32 in [-1, 1]."""
    if arr.dtype.kind == "f":
        return arr.astype(np.float32, copy=False)
    if arr.dtype.kind not in "iu":
        raise AudioDecodeError(f"samples must be numeric, not dtype {arr.dtype}")
    scale = float(np.iinfo(arr.dtype).max) + 1.0
    if arr.dtype.kind == "u":
        return ((arr.astype(np.float32) - scale / 2) / (scale / 2)).astype(np.float32)
    return (arr.astype(np.float32) / scale).astype(np.float32)
