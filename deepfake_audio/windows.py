"""Window level: analysis windows over frame features, summarised as they complete.

:class:`WindowStream` is the one block-wise path from samples to window feature
vectors: :func:`~.features.extract` feeds it a whole clip, the detector feeds it a
recording block by block (one stream per analysed channel).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .feature_config import (
    LEGACY_KIND,
    MODULATION_EDGES_HZ,
    MODULATION_GROUPS,
    FeatureConfig,
    _kept_columns,
    shape_columns,
)
from .spectra import FrameFeatureStream

_MIN_ACTIVE_FRAMES = 10
#: Audio buffered before the gain is fixed (see :class:`WindowStream`).
GAIN_LOOKAHEAD_S = 30.0


def window_bounds(n_frames: int, config: FeatureConfig) -> list[tuple[int, int]]:
    """Frame ranges of the analysis windows; the last window is aligned to the end."""
    size, hop = config.frames_per_window, config.frames_per_hop
    if config.window_s <= 0 or n_frames <= size:
        return [(0, n_frames)]
    bounds = [(start, start + size) for start in range(0, n_frames - size + 1, hop)]
    if bounds[-1][1] < n_frames:
        tail = (n_frames - size, n_frames)
        # A tail window only a few frames after the last one would count the same
        # audio twice; stretch the last window to the end instead.
        if tail[0] - bounds[-1][0] < hop // 2:
            bounds[-1] = (bounds[-1][0], n_frames)
        else:
            bounds.append(tail)
    return bounds


def _summaries(rows: np.ndarray, energy: np.ndarray, bounds: np.ndarray,
               config: FeatureConfig) -> np.ndarray:
    """Window rows (``statistics`` of the active frames) for ``bounds`` into ``rows``.

    All windows at once: a (windows, frames) weight matrix selects each window's
    active frames, so means and standard deviations are two matrix products.
    """
    index = np.arange(len(rows))
    inside = (index >= bounds[:, :1]) & (index < bounds[:, 1:])
    loudest = np.where(inside, energy, -np.inf).max(axis=1).astype(np.float32)
    active = inside & (energy >= loudest[:, None] - np.float32(config.energy_floor_db))
    # A window with too few loud frames is summarised over all of its frames.
    use = np.where((active.sum(axis=1) >= _MIN_ACTIVE_FRAMES)[:, None], active, inside)
    weights = use / use.sum(axis=1, keepdims=True)
    values = rows.astype(np.float64)
    values -= values.mean(axis=0)  # centred, so E[x^2] - E[x]^2 does not cancel
    mean = weights @ values
    std = np.sqrt(np.maximum(weights @ (values * values) - mean * mean, 0.0))
    mean += rows.astype(np.float64).mean(axis=0)
    parts = {"mean": mean, "std": std}
    blocks = [parts[stat] for stat in config.statistics]
    shaped = shape_columns(config)
    if shaped:
        blocks.extend(_shapes(values[:, list(shaped)], weights))
    if config.uses_modulation:
        blocks.append(_modulation(rows[:, : config.n_mfcc - 1], bounds, config))
    return np.concatenate(blocks, axis=1)


def _shapes(values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted skewness and excess kurtosis of each column per window (0 where flat)."""
    m1 = weights @ values
    squares = values * values
    m2, m3, m4 = weights @ squares, weights @ (squares * values), weights @ (squares * squares)
    var = m2 - m1 * m1
    c3 = m3 - 3 * m1 * m2 + 2 * m1**3
    c4 = m4 - 4 * m1 * m3 + 6 * m1 * m1 * m2 - 3 * m1**4
    flat = var <= 1e-12
    var = np.where(flat, 1.0, var)
    return (np.where(flat, 0.0, c3 / var**1.5), np.where(flat, 0.0, c4 / (var * var) - 3.0))


#: Windows shorter than this many frames get the flat modulation spectrum.
_MIN_MODULATION_FRAMES = 32


@functools.lru_cache(maxsize=64)
def _coefficient_groups(n_cepstra: int) -> np.ndarray:
    """(cepstra, groups): the mean over each contiguous group of coefficients."""
    grouping = np.zeros((n_cepstra, MODULATION_GROUPS))
    for g, members in enumerate(np.array_split(np.arange(n_cepstra), MODULATION_GROUPS)):
        grouping[members, g] = 1.0 / len(members)
    grouping.flags.writeable = False  # shared by every call
    return grouping


@functools.lru_cache(maxsize=64)
def _modulation_plan(length: int, frame_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """The taper of a ``length``-frame trajectory and (bins, bands): which band each
    modulation bin falls in (the last band is open)."""
    edges = np.asarray(MODULATION_EDGES_HZ)
    freqs = np.fft.rfftfreq(length, 1.0 / frame_rate)
    band = np.searchsorted(edges[1:-1], freqs, side="right")
    members = (band[:, None] == np.arange(len(edges) - 1)) & (freqs >= edges[0])[:, None]
    taper, weights = np.hanning(length), members.astype(np.float64)
    taper.flags.writeable = weights.flags.writeable = False  # shared by every call
    return taper, weights


def _modulation(cepstra: np.ndarray, bounds: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Log share of each window's MFCC-trajectory power in each modulation band.

    Every frame of the window counts (a trajectory needs its pauses); windows of one
    length are transformed together and the bands and coefficient groups are summed
    by two matrix products, so there is no per-window loop.
    """
    n_bands = len(MODULATION_EDGES_HZ) - 1
    grouping = _coefficient_groups(cepstra.shape[1])
    lengths = bounds[:, 1] - bounds[:, 0]
    out = np.full((len(bounds), n_bands * MODULATION_GROUPS), np.log(1.0 / n_bands + 1e-6))
    frame_rate = config.sample_rate / config.hop_length
    for length in np.unique(lengths).tolist():
        if length < _MIN_MODULATION_FRAMES:
            continue
        chosen = np.flatnonzero(lengths == length)
        # (windows, cepstra, frames): each trajectory contiguous for the FFT.
        x = cepstra.T[:, bounds[chosen, :1] + np.arange(length)].transpose(1, 0, 2)
        x = x.astype(np.float64)
        x -= x.mean(axis=2, keepdims=True)
        taper, members = _modulation_plan(length, frame_rate)
        x *= taper
        spectrum = np.fft.rfft(x, axis=2)
        power = spectrum.real**2 + spectrum.imag**2  # (windows, cepstra, modulation bins)
        per_band = power @ members  # (windows, cepstra, bands)
        shares = per_band / (per_band.sum(axis=2, keepdims=True) + 1e-12)
        grouped = shares.transpose(0, 2, 1) @ grouping  # (windows, bands, groups)
        out[chosen] = np.log(grouped + 1e-6).reshape(len(chosen), -1)
    return out




class _Windows:
    """Summarise windows as soon as their frames (and the next window's) have arrived.

    A window is final once the next one is complete: only the last window can be
    stretched or followed by an end-aligned tail (:func:`window_bounds`), and those
    are done by :meth:`finish`, when the frame count is known. Frames before the
    next unfinished window are dropped, so memory does not grow with the length.
    """

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self.rows: list[np.ndarray] = []
        self.energy: list[np.ndarray] = []
        self.first = 0      # global index of the first buffered frame
        self.done = 0       # windows summarised
        self.seen = 0       # frames pushed

    def push(self, rows: np.ndarray, energy: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Add frame rows; return ``(summaries, bounds)`` of the windows now final, if any."""
        self.rows.append(rows)
        self.energy.append(energy)
        self.seen += len(rows)
        size, hop = self.config.frames_per_window, self.config.frames_per_hop
        if self.config.window_s <= 0 or self.seen < size + hop:
            return None
        last = (self.seen - size) // hop - 1  # window `last + 1` is complete too
        if last < self.done:
            return None
        starts = np.arange(self.done, last + 1) * hop
        self.done = last + 1
        return self._summarise(np.stack([starts, starts + size], axis=1))

    def finish(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The remaining windows (the last one aligned to the end)."""
        bounds = window_bounds(self.seen, self.config)
        if self.seen == 0 or len(bounds) <= self.done:
            return None
        rest = np.array(bounds[self.done :])
        self.done = len(bounds)
        return self._summarise(rest)

    def _summarise(self, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows, energy = np.concatenate(self.rows), np.concatenate(self.energy)
        out = _summaries(rows, energy, bounds - self.first, self.config)
        # Keep the frames from the next window's start on.
        keep = int(bounds[-1, 0]) + self.config.frames_per_hop - self.first
        keep = min(max(keep, 0), len(rows))
        self.rows, self.energy = [rows[keep:]], [energy[keep:]]
        self.first += keep
        return out, bounds


@dataclass(frozen=True)
class WindowFeatures:
    """Feature vectors of one clip, one row per analysis window."""

    matrix: np.ndarray
    #: ``(start_s, end_s)`` of each row.
    spans: tuple[tuple[float, float], ...]
    #: Length of the analysed audio.
    duration_s: float = 0.0



class WindowStream:
    """Window feature vectors of mono audio pushed block by block, in bounded memory.

    The windows, their spans and their values are those of
    :func:`~.features.extract` on the whole recording (which runs through this class).

    Gain does not tell real from fake, so the samples are scaled to a fixed peak
    (0.5) before analysis. Without ``peak``, the first :data:`GAIN_LOOKAHEAD_S`
    seconds (the whole clip when shorter) are buffered and their peak fixes the gain
    for the rest: a clip up to that length gets exactly the whole-clip gain, a long
    recording needs no second pass, and a later louder part only scales its frames
    (the features are gain-invariant apart from the tiny energy floor).

    Parameters
    ----------
    config : FeatureConfig
        ``cepstral-v1`` settings (legacy features need the whole clip: use ``extract``).
    peak : float, optional
        Largest absolute sample of the whole audio, when known.
    """

    def __init__(self, config: FeatureConfig, *, peak: float | None = None) -> None:
        if config.kind == LEGACY_KIND:
            raise ValueError("legacy features have no windowed streaming: use extract()")
        self.config = config
        self.samples_seen = 0
        self._frames: FrameFeatureStream | None = None
        self._pending: list[np.ndarray] = []
        self._windows = _Windows(config)
        self._finished = False
        if peak is not None:
            self._start(peak)

    def feed(self, samples: np.ndarray) -> list[WindowFeatures]:
        """Add mono samples at ``config.sample_rate``; return the windows this completed."""
        samples = np.asarray(samples, dtype=np.float32)
        self.samples_seen += len(samples)
        if self._frames is None:
            self._pending.append(samples)
            if self.samples_seen < GAIN_LOOKAHEAD_S * self.config.sample_rate:
                return []
            return self._lookahead_done()
        return self._collect(self._frames.feed(samples), None)

    def finish(self) -> WindowFeatures | None:
        """The remaining windows, the last aligned to the end; ``None`` when none are left."""
        if self._finished or self.samples_seen == 0:
            return None
        self._finished = True
        done = self._lookahead_done() if self._frames is None else []
        assert self._frames is not None
        duration = self.samples_seen / self.config.sample_rate
        tail = self._collect(self._frames.finish(), duration)
        parts = done + tail
        if not parts:
            return None
        matrix = np.vstack([p.matrix for p in parts])
        return WindowFeatures(matrix, tuple(s for p in parts for s in p.spans), duration)

    def _lookahead_done(self) -> list[WindowFeatures]:
        pending, self._pending = self._pending, []
        buffered = np.concatenate(pending) if pending else np.zeros(0, np.float32)
        self._start(max(float(buffered.max()), -float(buffered.min())) if len(buffered) else 0.0)
        assert self._frames is not None
        return self._collect(self._frames.feed(buffered), None)

    def _start(self, peak: float) -> None:
        gain = float(np.float32(0.5 / peak)) if peak > 0 else 1.0
        self._frames = FrameFeatureStream(self.config, gain=gain)

    def _collect(self, pieces: list[tuple[np.ndarray, np.ndarray]],
                 duration_s: float | None) -> list[WindowFeatures]:
        """Windows completed by frame ``pieces``; with ``duration_s``, the end of the audio."""
        found = [self._windows.push(rows, energy) for rows, energy in pieces]
        if duration_s is not None:
            found.append(self._windows.finish())
        config = self.config
        seconds_per_frame = config.hop_length / config.sample_rate
        end = float("inf") if duration_s is None else duration_s
        kept = _kept_columns(config)
        out = []
        for item in found:
            if item is None:
                continue
            matrix, bounds = item
            matrix = matrix.astype(np.float32)
            spans = tuple((round(int(start) * seconds_per_frame, 3),
                           round(min(int(stop) * seconds_per_frame, end), 3))
                          for start, stop in bounds)
            out.append(WindowFeatures(matrix if kept is None else matrix[:, kept], spans,
                                      self.samples_seen / config.sample_rate))
        return out
