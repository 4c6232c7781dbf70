"""Rolling-buffer logic of the ``/ws/stream`` protocol, free of any I/O.

Windows are defined on the audio's own clock, not on arrival time: a window
ends every ``hop_s`` seconds of received audio (the first once ``min_first_s``
arrived) and covers the last ``window_s`` seconds (less at the start). So the
verdicts do not depend on how the client slices its frames or how fast it sends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

ENCODINGS: dict[str, np.dtype[Any]] = {"pcm_s16le": np.dtype("<i2"), "float32_le": np.dtype("<f4")}
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 8


class StreamProtocolError(ValueError):
    """A ``start`` message or a frame that breaks the streaming protocol."""


@dataclass(frozen=True)
class StreamFormat:
    """What the client declared in its ``start`` message."""

    sample_rate: int
    encoding: str
    channels: int

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> StreamFormat:
        """Validate a ``{"type": "start", ...}`` message.

        Raises
        ------
        StreamProtocolError
            A field is missing, of the wrong type or out of range.
        """
        rate = message.get("sample_rate")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate != int(rate):
            raise StreamProtocolError("start: sample_rate must be an integer (e.g. 16000)")
        if not MIN_SAMPLE_RATE <= int(rate) <= MAX_SAMPLE_RATE:
            raise StreamProtocolError(
                f"start: sample_rate must be {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")
        encoding = message.get("encoding", "pcm_s16le")
        if encoding not in ENCODINGS:
            raise StreamProtocolError(
                f"start: encoding must be one of {', '.join(sorted(ENCODINGS))}")
        channels = message.get("channels", 1)
        if isinstance(channels, bool) or not isinstance(channels, int) \
                or not 1 <= channels <= MAX_CHANNELS:
            raise StreamProtocolError(f"start: channels must be an integer 1-{MAX_CHANNELS}")
        return cls(int(rate), str(encoding), channels)

    @property
    def frame_bytes(self) -> int:
        return ENCODINGS[self.encoding].itemsize * self.channels


@dataclass(frozen=True)
class PendingWindow:
    """Audio of one window to score, with its position in the stream."""

    start_s: float
    end_s: float
    samples: np.ndarray


class StreamSession:
    """Accumulate PCM, cut windows, and keep the running verdict.

    Parameters
    ----------
    fmt : StreamFormat
        Declared sample rate, encoding and channels.
    window_s, hop_s : float
        Window length and spacing, seconds.
    min_first_s : float
        Audio needed before the first (shorter) window.
    """

    def __init__(self, fmt: StreamFormat, *, window_s: float = 3.0, hop_s: float = 1.0,
                 min_first_s: float = 1.0) -> None:
        self.format = fmt
        sr = fmt.sample_rate
        self.window = max(1, round(window_s * sr))
        self.hop = max(1, round(hop_s * sr))
        first = max(min_first_s, hop_s)
        self.next_end = self.hop * max(1, math.ceil(round(first * sr) / self.hop))
        self.total = 0  # samples received
        self.buffer = np.zeros(0, dtype=np.float32)  # the last `window` samples at most
        self._carry = b""  # bytes of an incomplete sample frame
        self.scores: list[float] = []
        self.last_scored_end = 0

    @property
    def duration_s(self) -> float:
        return self.total / self.format.sample_rate

    def _decode(self, data: bytes) -> np.ndarray:
        data = self._carry + data
        usable = len(data) - len(data) % self.format.frame_bytes
        self._carry = data[usable:]
        samples = np.frombuffer(data[:usable], dtype=ENCODINGS[self.format.encoding])
        if self.format.encoding == "pcm_s16le":
            out = samples.astype(np.float32) / 32768.0
        else:
            out = samples.astype(np.float32)
        if self.format.channels > 1:
            out = out.reshape(-1, self.format.channels).mean(axis=1, dtype=np.float32)
        return out

    def _append(self, chunk: np.ndarray) -> None:
        self.buffer = np.concatenate((self.buffer, chunk))[-self.window:]
        self.total += len(chunk)

    def feed(self, data: bytes) -> list[PendingWindow]:
        """Add raw PCM bytes; return the windows that became due, oldest first."""
        chunk = self._decode(data)
        due: list[PendingWindow] = []
        pos = 0
        while pos < len(chunk):
            take = min(self.next_end - self.total, len(chunk) - pos)
            self._append(chunk[pos:pos + take])
            pos += take
            if self.total == self.next_end:
                due.append(self._window())
                self.next_end += self.hop
        return due

    def _window(self) -> PendingWindow:
        sr = self.format.sample_rate
        samples = self.buffer.copy()
        self.last_scored_end = self.total
        return PendingWindow(round((self.total - len(samples)) / sr, 3), round(self.total / sr, 3),
                             samples)

    def tail(self, min_samples: int) -> PendingWindow | None:
        """At ``end`` of a stream that produced no window yet: the buffered audio, if enough."""
        if self.scores or self.total == 0 or len(self.buffer) < min_samples:
            return None
        return self._window()

    def add_score(self, raw_score: float) -> float:
        """Record a window's raw score; return the running mean (the overall raw score)."""
        self.scores.append(float(raw_score))
        return self.mean_score

    @property
    def mean_score(self) -> float:
        return float(np.mean(self.scores)) if self.scores else float("nan")
