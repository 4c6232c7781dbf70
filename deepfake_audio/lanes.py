"""Lanes: one signal (a channel, or the mix) analysed block by block for the detector.

Each lane drives its own :class:`~.features.WindowStream` and speech-activity
tracker, scores windows in batches of :data:`SCORE_BATCH` as they complete and keeps
only their scores, so memory does not grow with the recording's length.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .audio import SILENCE_PEAK
from .exceptions import (
    AudioTooShortError,
    EmptyAudioError,
    InputError,
    NoSpeechError,
    SilentAudioError,
)
from .features import LEGACY_KIND, WindowFeatures, WindowStream, extract
from .vad import MIN_SPEECH_SHARE, RESCAN_S, SpeechActivity

if TYPE_CHECKING:
    from .detector import Detector

logger = logging.getLogger("deepfake_audio")

#: Windows scored together (96 s of audio at the bundled 1.5 s hop).
SCORE_BATCH = 64


@dataclass(frozen=True)
class LaneOutcome:
    """Window scores of one analysed signal (a channel, or the mix), or why there are none."""

    index: int | None
    spans: tuple[tuple[float, float], ...]
    scores: np.ndarray
    speech: np.ndarray
    duration_s: float
    error: InputError | None = None
    #: Per-window source-family probabilities, when the model has a family classifier.
    families: np.ndarray | None = None
    #: Mean feature vector of the speech windows, when the model has a clip view.
    feature_mean: np.ndarray | None = None


class Lane:
    """One signal analysed block by block: features, speech activity, window scores."""

    def __init__(self, detector: Detector, index: int | None, *, gate: bool | None = None) -> None:
        config = detector.feature_config
        self.detector = detector
        self.index = index
        self.gate = detector.speech_gate if gate is None else gate
        self.sample_rate = config.sample_rate
        windowed = config.kind != LEGACY_KIND and config.window_s > 0
        self._stream = WindowStream(config) if windowed else None
        self._whole: list[np.ndarray] = []  # legacy whole-clip features need every sample
        self._vad = (SpeechActivity(config.sample_rate, config.window_s or 3.0)
                     if self.gate else None)
        self._spans: list[tuple[float, float]] = []
        self._pending: list[WindowFeatures] = []
        self._scores: list[np.ndarray] = []
        self._speech: list[np.ndarray] = []
        self._families: list[np.ndarray] = []
        self._frames = 0
        self._peak = 0.0
        # Running sum of the speech windows' features for the clip view: bounded memory.
        self._feature_sum: np.ndarray | None = None
        self._feature_count = 0
        # A short recording's window features, for the dense speech re-read (reread()).
        self._matrices: list[np.ndarray] | None = [] if self._vad is not None else None
        # Window scores and speech marks once finish() has run.
        self._final: tuple[np.ndarray, np.ndarray] | None = None

    def feed(self, samples: np.ndarray) -> None:
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        if not len(samples):
            return
        self._frames += len(samples)
        self._peak = max(self._peak, float(np.max(np.abs(samples))))
        if self._vad is not None:
            self._vad.feed(samples)
        if self._stream is None:
            self._whole.append(samples)
            return
        for windows in self._stream.feed(samples):
            self._score(windows)

    def _score(self, windows: WindowFeatures) -> None:
        self._pending.append(windows)
        if sum(len(w.spans) for w in self._pending) >= SCORE_BATCH:
            self._flush()

    def _flush(self) -> None:
        # Scoring reads every support vector once per call, whatever the number of rows:
        # one call per batch of windows instead of one per block of frames.
        if not self._pending:
            return
        matrix = np.concatenate([w.matrix for w in self._pending])
        spans = [span for w in self._pending for span in w.spans]
        self._pending = []
        self._spans.extend(spans)
        model = self.detector._model
        self._scores.append(model.decision_values(matrix))
        families = model.family_probabilities(matrix)
        if families is not None:
            self._families.append(families)
        speech = (np.ones(len(spans), dtype=bool) if self._vad is None
                  else self._vad.speech_shares(spans) >= MIN_SPEECH_SHARE)
        self._speech.append(speech)
        self._add_to_clip_view(matrix, speech)
        if self._matrices is not None:
            if self._frames <= RESCAN_S * self.sample_rate:
                self._matrices.append(matrix)
            else:
                self._matrices = None

    def _add_to_clip_view(self, matrix: np.ndarray, speech: np.ndarray) -> None:
        if self.detector._model.clip_view is not None:
            total = matrix[speech].sum(axis=0, dtype=np.float64)
            self._feature_sum = total if self._feature_sum is None else self._feature_sum + total
            self._feature_count += int(speech.sum())

    def finish(self, *, reread: bool = True) -> LaneOutcome:
        """Score what is left; with ``reread``, a short lane without speech is read densely.

        A caller with several lanes passes ``reread=False`` and calls :meth:`reread` only
        when no lane has speech: a faint bleed of the other side is no voice of its own.
        """
        duration = self._frames / self.sample_rate
        if self._frames == 0:
            raise EmptyAudioError("the file holds no audio samples")
        if duration < self.detector.min_duration_s:
            raise AudioTooShortError(f"audio is {duration:.3f} s long; at least"
                                     f" {self.detector.min_duration_s:g} s is needed")
        if self._vad is not None:
            self._vad.finish()
        last = (self._stream.finish() if self._stream is not None
                else extract(np.concatenate(self._whole), self.detector.feature_config))
        if last is not None:
            self._pending.append(last)
        self._flush()
        self._final = (np.concatenate(self._scores), np.concatenate(self._speech))
        return self.reread() if reread else self._outcome(self._final[1])

    def reread(self) -> LaneOutcome:
        """The finished lane's outcome, read densely first if it has no speech window."""
        assert self._final is not None, "finish() first"
        speech = self._final[1]
        if self._vad is not None and not speech.any() and self._matrices is not None:
            speech = self._dense_speech(speech)
        return self._outcome(speech)

    def _outcome(self, speech: np.ndarray) -> LaneOutcome:
        assert self._final is not None
        error: InputError | None = None
        which = "" if self.index is None else f"channel {self.index}: "
        if self._peak < SILENCE_PEAK:
            error = SilentAudioError(f"{which}the audio is silent (peak below -70 dBFS)")
        elif not speech.any():
            error = NoSpeechError(f"{which}no speech found (only silence, noise, music or"
                                  " tones); nothing to judge")
        families = np.concatenate(self._families) if self._families else None
        feature_mean = (self._feature_sum / self._feature_count
                        if self._feature_sum is not None and self._feature_count else None)
        return LaneOutcome(self.index, tuple(self._spans), self._final[0], speech,
                           self._frames / self.sample_rate, error, families, feature_mean)

    def _dense_speech(self, speech: np.ndarray) -> np.ndarray:
        """A short recording the strided pass found no speech in, read again densely."""
        assert self._vad is not None and self._matrices is not None
        shares = self._vad.dense_shares(self._spans)
        if shares is None:
            return speech
        dense = shares >= MIN_SPEECH_SHARE
        if dense.any():
            logger.debug("no speech in the strided pass; the dense re-read found %d of %d"
                         " windows", int(dense.sum()), len(dense))
            self._add_to_clip_view(np.concatenate(self._matrices), dense)
        return dense
