"""The ``/ws/stream`` protocol: rolling buffer, windows and the connection's loop.

Windows are defined on the audio's own clock, not on arrival time: a window
ends every ``hop_s`` seconds of received audio (the first once ``min_first_s``
arrived) and covers the last ``window_s`` seconds (less at the start). So the
verdicts do not depend on how the client slices its frames or how fast it sends.
:class:`StreamSession` holds that logic free of any I/O; :func:`stream_loop`
drives it from a WebSocket.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import WebSocket

from ..detector import NO_SPEECH, Detector
from ..exceptions import InputError, NoSpeechError
from .admission import AnalysisTimeout
from .errors import TIMEOUT_MESSAGE, input_error_status
from .logs import logger
from .messages import (
    ENCODINGS,
    MAX_STREAM_FRAME_BYTES,
    StreamFormat,
    StreamProtocolError,
    parse_control,
    send_json,
    stream_error,
)
from .state import ServiceState


@dataclass(frozen=True)
class PendingWindow:
    """Audio of one window to score, with its position in the stream."""

    start_s: float
    end_s: float
    samples: np.ndarray


class StreamSession:
    """Accumulate PCM, cut windows, and keep the window scores.

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
        self.no_speech_windows = 0

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
        return PendingWindow(round((self.total - len(samples)) / sr, 3), round(self.total / sr, 3),
                             samples)

    def tail(self, min_samples: int) -> PendingWindow | None:
        """At ``end`` of a stream that produced no window yet: the buffered audio, if enough."""
        if (self.scores or self.no_speech_windows or self.total == 0
                or len(self.buffer) < min_samples):
            return None
        return self._window()

    def add_score(self, raw_score: float) -> None:
        """Record a window's raw score."""
        self.scores.append(float(raw_score))

    @property
    def mean_score(self) -> float:
        """The stream's overall raw score: the mean of its window scores."""
        return float(np.mean(self.scores)) if self.scores else float("nan")


# --------------------------------------------------------------------------- the connection


def _running_verdict(detector: Detector, session: StreamSession) -> dict[str, Any]:
    return {**detector.verdict(session.mean_score).to_dict(), "windows": len(session.scores)}


async def _score_window(websocket: WebSocket, state: ServiceState, detector: Detector,
                        session: StreamSession, window: PendingWindow) -> None:
    rate = session.format.sample_rate
    samples = window.samples
    try:
        result = await state.run_analysis("stream", lambda: detector.analyze((samples, rate)),
                                          wait=True)
    except NoSpeechError:
        # Silence, hold music, a tone: like a file's timeline, the window is shown unscored
        # and stays out of the running verdict.
        await send_json(websocket, {
            "type": "window", "start_s": window.start_s, "end_s": window.end_s,
            "classification": NO_SPEECH, "confidence": None, "raw_score": None,
            "probability_deepfake": None,
            "overall": _running_verdict(detector, session) if session.scores else None})
        session.no_speech_windows += 1
        return
    except Exception as exc:
        if isinstance(exc, InputError):
            text = f"{input_error_status(exc)[1]}: {exc}"
        elif isinstance(exc, AnalysisTimeout):
            text = TIMEOUT_MESSAGE
        else:  # a bug: report it, keep the stream going
            logger.exception("unhandled error on /ws/stream")
            text = "internal server error"
        await send_json(websocket, stream_error(text, start_s=window.start_s, end_s=window.end_s))
        return
    session.add_score(result.raw_score)
    await send_json(websocket, {
        "type": "window", "start_s": window.start_s, "end_s": window.end_s,
        "classification": result.classification, "confidence": result.confidence,
        "raw_score": result.raw_score, "probability_deepfake": result.probability_deepfake,
        "overall": _running_verdict(detector, session)})


async def _end(websocket: WebSocket, state: ServiceState, detector: Detector,
               session: StreamSession) -> None:
    tail = session.tail(int(detector.min_duration_s * session.format.sample_rate) + 1)
    if tail is not None:
        await _score_window(websocket, state, detector, session, tail)
    if session.scores:
        await send_json(websocket, {"type": "summary", **_running_verdict(detector, session),
                                    "duration_s": round(session.duration_s, 3)})
    else:
        reason = ("no speech in the stream (only silence, noise, music or tones)"
                  if session.no_speech_windows else "stream too short: no window could be scored")
        await send_json(websocket, stream_error(reason, duration_s=round(session.duration_s, 3)))


async def stream_loop(websocket: WebSocket, state: ServiceState) -> None:
    """Serve one accepted ``/ws/stream`` connection until the client disconnects."""
    settings = state.settings
    detector = state.loaded_detector
    session: StreamSession | None = None
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is not None:
            if len(data) > MAX_STREAM_FRAME_BYTES:
                # Cutting a huge frame into windows would hold the event loop.
                await send_json(websocket, stream_error(
                    f"binary frames must be at most {MAX_STREAM_FRAME_BYTES // 1024} KiB"))
                continue
            if session is None:
                await send_json(websocket, stream_error(
                    'send {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"} first'))
                continue
            # Slicing and decoding PCM is cheap (numpy); the scoring goes to the thread pool.
            for window in session.feed(data):
                await _score_window(websocket, state, detector, session, window)
            continue
        try:
            control = parse_control(message.get("text"))
            kind = control.get("type")
            fmt = StreamFormat.from_message(control) if kind == "start" else None
        except StreamProtocolError as exc:
            await send_json(websocket, stream_error(str(exc)))
            continue
        if fmt is not None:
            # No acknowledgement: the protocol's only answers are window/summary/error.
            session = StreamSession(fmt, window_s=settings.stream_window_s,
                                    hop_s=settings.stream_hop_s)
        elif kind == "end":
            if session is None:
                await send_json(websocket, stream_error("no stream in progress"))
                continue
            await _end(websocket, state, detector, session)
            session = None
        else:
            await send_json(websocket, stream_error(
                f"unknown message type {kind!r}; expected 'start' or 'end'"))
