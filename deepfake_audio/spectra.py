"""Frame-level features: one float32 STFT per chunk of frames feeds every group.

Per frame: MFCC, LFCC (linear-frequency cepstra, the classic anti-spoofing
baseline), deltas, spectral-shape measures and phase advance, all numpy (no
librosa import on the hot path). :class:`FrameFeatureStream` takes audio pushed
block by block and returns frame rows as soon as they are final, so memory stays
bounded whatever the recording's length.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .feature_config import (
    _PHASE_NAMES,
    _SPECTRAL_NAMES,
    FeatureConfig,
    _enabled_groups,
)
from .filterbanks import dct_matrix, linear_filterbank, mel_filterbank

_EPS = 1e-10
_FRAME_CHUNK = 512  # frames per STFT batch: bounds memory, keeps the arrays in cache

# --------------------------------------------------------------------------- frame level
#
# One STFT per frame chunk feeds every group; all per-frame measures are float32
# array operations over (frames, bins), with the per-frame sums done as matrix
# products against band indicator matrices (one BLAS call instead of a reduction
# per band). Chunks of frames bound the memory: nothing holds a whole-file spectrogram.


@dataclass(frozen=True)
class _Plan:
    """Constants of one :class:`FeatureConfig`, built once (see :func:`_plan`)."""

    window: np.ndarray          # (n_fft,) float64 analysis window
    banks: np.ndarray           # (n_bins, n_mels + n_linear) mel then linear filters
    dct_mel: np.ndarray         # (n_mels, n_mfcc)
    dct_lin: np.ndarray         # (n_linear, n_lfcc)
    high: int                   # first "high band" bin of the spectral measures
    sums: np.ndarray            # (n_bins, 2): all bins, high band
    fine: np.ndarray            # (n_bins - 8, 2): fine-structure bands of the residual
    blocks: np.ndarray          # (n_bins, n_blocks) bins -> roll-off blocks
    phase_bands: np.ndarray     # (n_bins, 2): phase bands low (from bin 2), high (to n_bins - 2)
    advance: np.ndarray         # (n_bins,) expected phase advance per hop of a steady partial


_ROLLOFF_BLOCK = 16


@functools.lru_cache(maxsize=16)
def _plan(config: FeatureConfig) -> _Plan:
    n_bins = config.n_fft // 2 + 1
    mel = mel_filterbank(config.sample_rate, config.n_fft, config.n_mels)
    lin = linear_filterbank(config.sample_rate, config.n_fft, config.n_linear)
    high = _high_bin(config, n_bins)
    high = min(max(high, 1), n_bins - 2)
    sums = np.zeros((n_bins, 2), dtype=np.float32)
    sums[:, 0], sums[high:, 1] = 1, 1
    fine = np.zeros((n_bins - 8, 2), dtype=np.float32)  # residual column j is bin j + 4
    fine[: high - 4, 0], fine[high - 4 :, 1] = 1, 1
    n_blocks = -(-n_bins // _ROLLOFF_BLOCK)
    blocks = np.zeros((n_bins, n_blocks), dtype=np.float32)
    blocks[np.arange(n_bins), np.arange(n_bins) // _ROLLOFF_BLOCK] = 1
    phase_high = _high_bin(config, n_bins)
    phase_bands = np.zeros((n_bins, 2), dtype=np.float32)
    phase_bands[2:phase_high, 0], phase_bands[phase_high : n_bins - 1, 1] = 1, 1
    return _Plan(
        window=_analysis_window(config.win_length, config.n_fft).astype(np.float64),
        banks=np.ascontiguousarray(np.concatenate([mel, lin]).T),
        dct_mel=np.ascontiguousarray(dct_matrix(config.n_mels, config.n_mfcc).T),
        dct_lin=np.ascontiguousarray(dct_matrix(config.n_linear, config.n_lfcc).T),
        high=high, sums=sums, fine=fine, blocks=blocks,
        phase_bands=phase_bands,
        advance=2 * np.pi * np.arange(n_bins) * config.hop_length / config.n_fft,
    )


def _high_bin(config: FeatureConfig, n_bins: int) -> int:
    return round(config.high_band_hz / (config.sample_rate / 2) * (n_bins - 1))


@functools.lru_cache(maxsize=16)
def _analysis_window(win_length: int, n_fft: int) -> np.ndarray:
    window = np.zeros(n_fft, dtype=np.float32)
    offset = (n_fft - win_length) // 2
    # Periodic Hann, as librosa/scipy use for spectral analysis.
    window[offset : offset + win_length] = 0.5 - 0.5 * np.cos(
        2 * np.pi * np.arange(win_length) / win_length
    )
    return window


def _frames(samples: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Read-only strided view of centred (zero-padded, like librosa) frames."""
    pad = config.n_fft // 2
    padded = np.pad(np.asarray(samples, dtype=np.float32), (pad, pad))
    return _frame_view(padded, 1 + max(0, (len(padded) - config.n_fft) // config.hop_length),
                       config)


def _frame_view(padded: np.ndarray, n_frames: int, config: FeatureConfig) -> np.ndarray:
    return np.lib.stride_tricks.as_strided(
        padded,
        shape=(n_frames, config.n_fft),
        strides=(padded.strides[0] * config.hop_length, padded.strides[0]),
        writeable=False,
    )


def _spectrum(frames: np.ndarray, config: FeatureConfig, start: int = 0,
              gain: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary STFT parts, float32 ``(n_frames, n_bins)``, of frames ``start``...

    ``gain`` scales the samples (folded into the window: no copy of the audio).

    Each windowed frame is rotated circularly by ``start * hop`` samples (modulo
    ``n_fft``) before its FFT. That multiplies bin k by a unit phase factor, so the
    power is unchanged, while the phases become relative to a common time origin:
    a steady partial then keeps its phase from frame to frame, and the phase
    features need no per-bin rotation of their own. The FFT runs in float64:
    numpy's float64 real FFT is faster than its float32 one.
    """
    n_fft, hop = config.n_fft, config.hop_length
    window = _plan(config).window * gain
    windowed = np.empty(frames.shape, dtype=np.float64)
    period = n_fft // math.gcd(hop, n_fft)  # frames between repeats of the same rotation
    for residue in range(min(period, len(frames))):
        rows = slice(residue, None, period)
        shift = ((start + residue) * hop) % n_fft
        np.multiply(frames[rows, : n_fft - shift], window[: n_fft - shift],
                    out=windowed[rows, shift:])
        np.multiply(frames[rows, n_fft - shift :], window[n_fft - shift :],
                    out=windowed[rows, :shift])
    spec = np.fft.rfft(windowed, axis=1)
    parts = spec.view(np.float64).reshape(*spec.shape, 2)
    return parts[..., 0].astype(np.float32), parts[..., 1].astype(np.float32)


def power_spectrogram(samples: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Power STFT, ``(n_frames, n_fft // 2 + 1)``, frames centred like librosa (zero padding)."""
    re, im = _spectrum(_frames(samples, config), config)
    return re * re + im * im


def _phase(re: np.ndarray, im: np.ndarray, power: np.ndarray, plan: _Plan) -> np.ndarray:
    """Phase-advance statistics of frames 1.. against their predecessors, ``(n - 1, 4)``.

    ``re``/``im`` must be phase-aligned across frames (see :func:`_spectrum`): the
    angle of ``X_t conj(X_{t-1})`` is then the deviation from a steady partial.
    """
    cross_re = re[1:] * re[:-1]
    cross_re += im[1:] * im[:-1]
    cross_im = im[1:] * re[:-1]
    cross_im -= re[1:] * im[:-1]
    deviation = np.abs(np.arctan2(cross_im, cross_re, out=cross_im), out=cross_im)
    weight = np.multiply(power[1:], power[:-1], out=cross_re)
    np.sqrt(weight, out=weight)  # = |cross|
    weight += np.float32(_EPS)
    total = weight @ plan.phase_bands
    weight *= deviation
    mean = (weight @ plan.phase_bands) / total
    weight *= deviation
    spread = np.sqrt(np.maximum((weight @ plan.phase_bands) / total - mean * mean, 0))
    return np.concatenate([mean, spread], axis=1)


def phase_deviation(spec: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Per-frame phase-advance deviation, ``(n_frames, 4)`` (first frame: zeros).

    For a steady partial in bin k the phase advances by ``2*pi*k*hop/n_fft`` per
    hop. Natural speech, vocoders (which invent phase) and phase reconstruction
    (Griffin-Lim, WORLD) depart from that in different ways. Per band (below /
    above ``high_band_hz``) we take the magnitude-weighted mean absolute wrapped
    deviation and its weighted spread.

    ``spec`` is an ordinary complex STFT, ``(n_frames, n_fft // 2 + 1)``.
    """
    out = np.zeros((len(spec), len(_PHASE_NAMES)), dtype=np.float32)
    if len(spec) >= 2:
        plan = _plan(config)
        aligned = spec * np.exp(-1j * np.outer(np.arange(len(spec)), plan.advance))
        re, im = aligned.real.astype(np.float32), aligned.imag.astype(np.float32)
        out[1:] = _phase(re, im, re * re + im * im, plan)
    return out


def cepstra(power: np.ndarray, filterbank: np.ndarray, n_coeffs: int) -> np.ndarray:
    """Log filterbank energies → orthonormal DCT-II, ``(n_frames, n_coeffs)``."""
    return _log_energies(power @ filterbank.T) @ dct_matrix(filterbank.shape[0], n_coeffs).T


def _log_energies(energies: np.ndarray) -> np.ndarray:
    return np.float32(10.0) * np.log10(np.maximum(energies, np.float32(_EPS)))


def deltas(features: np.ndarray, width: int = 2) -> np.ndarray:
    """Regression deltas over time (axis 0) with edge padding, as in HTK.

    ``d[t] = sum_n n * (x[t+n] - x[t-n]) / (2 * sum_n n^2)`` for ``n = 1..width``.
    """
    if len(features) == 0:
        return features.copy()
    stream = _DeltaStream(width)
    return np.concatenate([stream.push(features), stream.push(features[:0], final=True)])


def _valid_deltas(padded: np.ndarray, width: int) -> np.ndarray:
    """Deltas of the rows of ``padded`` that have ``width`` neighbours on both sides."""
    total = len(padded) - 2 * width
    out = np.zeros((max(total, 0), padded.shape[1]), dtype=padded.dtype)
    if total <= 0:
        return out
    for n in range(1, width + 1):  # a loop over the regression width, not over frames
        out += n * (padded[width + n : width + n + total] - padded[width - n : width - n + total])
    return out / (2 * sum(n * n for n in range(1, width + 1)))


class _DeltaStream:
    """:func:`deltas` of a sequence that arrives in pieces; output lags ``width`` rows."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.context: np.ndarray | None = None

    def push(self, rows: np.ndarray, *, final: bool = False) -> np.ndarray:
        if self.context is None:
            if len(rows) == 0:
                return rows.copy()
            self.context = np.repeat(rows[:1], self.width, axis=0)  # edge padding at the start
        parts = [self.context, rows]
        if final:
            tail = rows[-1:] if len(rows) else self.context[-1:]
            parts.append(np.repeat(tail, self.width, axis=0))  # edge padding at the end
        sequence = np.concatenate(parts)
        self.context = sequence[-2 * self.width :]
        return _valid_deltas(sequence, self.width)


def _spectral(power: np.ndarray, lead: int, plan: _Plan) -> np.ndarray:
    """Spectral measures of ``power[lead:]``; row ``lead - 1`` (if any) only feeds the flux."""
    n_bins = power.shape[1]
    p = power + np.float32(_EPS)
    log_p = np.log(p)
    own, log_own = p[lead:], log_p[lead:]
    counts = np.array([n_bins, n_bins - plan.high], np.float32)
    sums = own @ plan.sums
    flatness = np.exp((log_own @ plan.sums) / counts) / (sums / counts)
    high_ratio = 10 * np.log10(sums[:, 1] / sums[:, 0])
    # Residual around a centred 9-bin moving average, for bins 4 .. n_bins - 5 (the
    # average never reaches past the spectrum there): box sums of 3, then of 3 of those.
    three = log_own[:, :-2] + log_own[:, 1:-1]
    three += log_own[:, 2:]
    residual = three[:, :-6] + three[:, 3:-3]
    residual += three[:, 6:]
    residual *= np.float32(-1 / 9)
    residual += log_own[:, 4:-4]
    fine_counts = plan.fine.sum(axis=0)
    fine_mean = (residual @ plan.fine) / fine_counts
    residual *= residual
    fine = np.sqrt(np.maximum(residual @ plan.fine / fine_counts - fine_mean**2, 0))
    flux = np.zeros(len(own), dtype=np.float32)
    if len(p) > 1:
        step = log_p[1:] - log_p[:-1]
        step *= step
        flux[len(flux) - len(step):] = np.sqrt((step @ plan.sums[:, 0]) / np.float32(n_bins))
    return np.stack([flatness[:, 0], flatness[:, 1], high_ratio, fine[:, 0], fine[:, 1], flux,
                     _rolloff(own, sums[:, 0], plan)], axis=1).astype(np.float32)


def _rolloff(p: np.ndarray, total: np.ndarray, plan: _Plan) -> np.ndarray:
    """95 % roll-off as a fraction of Nyquist: bins whose running sum is below 95 %.

    Found blockwise (block sums, then the bins of the one block where the running
    sum crosses) rather than with a cumulative sum over every bin.
    """
    n_frames, n_bins = p.shape
    n_blocks = plan.blocks.shape[1]
    threshold = (0.95 * total.astype(np.float64))[:, None]
    running = np.cumsum(p @ plan.blocks, axis=1, dtype=np.float64)
    below = np.count_nonzero(running < threshold, axis=1)
    crossing = np.minimum(below, n_blocks - 1)
    rows = np.arange(n_frames)
    before = running[rows, crossing - 1]
    before[crossing == 0] = 0.0
    # The crossing block's bins (a short last block is padded with zero power).
    padded = np.zeros((n_frames, n_blocks * _ROLLOFF_BLOCK), dtype=np.float32)
    padded[:, :n_bins] = p
    values = padded.reshape(n_frames, n_blocks, _ROLLOFF_BLOCK)[rows, crossing]
    partial = np.cumsum(values, axis=1, dtype=np.float64)
    partial += before[:, None]
    inside = np.count_nonzero(partial < threshold, axis=1)
    count = np.minimum(crossing * _ROLLOFF_BLOCK + inside, n_bins)
    return (count / np.float32(n_bins - 1)).astype(np.float32)


def spectral_measures(power: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Per-frame spectral shape, ``(n_frames, 7)``: see ``_SPECTRAL_NAMES``.

    Flatness (whole and high band), high-band energy ratio, "fine structure" (the
    spread of the log spectrum around its own smoothed envelope, low and high band:
    vocoders and phase reconstruction leave it too regular or too noisy), spectral
    flux and 95 % roll-off (as a fraction of Nyquist).
    """
    return _spectral(np.asarray(power, dtype=np.float32), 0, _plan(config))


def _chunk_features(frames: np.ndarray, lead: int, start: int, gain: float,
                    config: FeatureConfig, groups: frozenset[str],
                    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Static per-frame features of ``frames[lead:]`` (``frames[0]`` is context when lead=1).

    ``start`` is the index of ``frames[0]`` in the whole recording; the samples are
    multiplied by ``gain``.
    """
    plan = _plan(config)
    re, im = _spectrum(frames, config, start, gain)
    power = re * re + im * im
    own = power[lead:]
    energy = np.float32(10) * np.log10(own.sum(axis=1) + np.float32(_EPS))
    out: dict[str, np.ndarray] = {}
    if groups & {"mfcc", "mfcc_delta", "lfcc", "lfcc_delta"}:
        logs = _log_energies(own @ plan.banks)
        out["mfcc"] = (logs[:, : config.n_mels] @ plan.dct_mel)[:, 1:]
        out["lfcc"] = (logs[:, config.n_mels :] @ plan.dct_lin)[:, 1:]
    if "spectral" in groups:
        out["spectral"] = _spectral(power, lead, plan)
    if "phase" in groups:
        phase = np.zeros((len(own), len(_PHASE_NAMES)), dtype=np.float32)
        if len(power) > 1:
            phase[len(own) - len(power) + 1 :] = _phase(re, im, power, plan)
        out["phase"] = phase
    return out, energy



class _FrameChunker:
    """Centred frames of audio pushed block by block, ``chunk`` at a time.

    :meth:`push` and :meth:`finish` yield ``(frames, lead, start)``: every chunk
    after the first starts with the previous chunk's last frame (``lead == 1``) so
    flux and phase advance run across the seam; ``start`` is the index of
    ``frames[0]`` in the whole recording. Only about one chunk of samples is copied
    at a time, however large the blocks. Consume each call's chunks before pushing more.
    """

    def __init__(self, config: FeatureConfig, chunk: int) -> None:
        self.config, self.chunk = config, chunk
        self.buffer = np.zeros(config.n_fft // 2, dtype=np.float32)  # centring zeros
        self.first = 0  # global index of the frame at buffer[0]
        self.done = 0   # frames yielded so far

    def push(self, block: np.ndarray) -> Iterator[tuple[np.ndarray, int, int]]:
        return self._chunks(np.asarray(block, dtype=np.float32), final=False)

    def finish(self) -> Iterator[tuple[np.ndarray, int, int]]:
        return self._chunks(np.zeros(self.config.n_fft // 2, dtype=np.float32), final=True)

    def _chunks(self, block: np.ndarray, final: bool) -> Iterator[tuple[np.ndarray, int, int]]:
        config, chunk = self.config, self.chunk
        hop, n_fft = config.hop_length, config.n_fft
        while True:
            needed = (self.done + chunk - 1 - self.first) * hop + n_fft
            take = block[: max(needed - len(self.buffer), 0)]
            block = block[len(take):]
            if len(take):
                self.buffer = np.concatenate([self.buffer, take])
            available = self.first + max(0, (len(self.buffer) - n_fft) // hop + 1)
            if available - self.done < (1 if final else chunk):
                return
            stop = min(self.done + chunk, available)
            lead = 1 if self.done > 0 else 0
            start = self.done - lead
            yield (_frame_view(self.buffer[(start - self.first) * hop :], stop - start, config),
                   lead, start)
            self.done = stop
            # Keep the samples from the last yielded frame on (the next chunk's lead).
            drop = max(self.done - 1 - self.first, 0)
            self.buffer, self.first = self.buffer[drop * hop :], self.first + drop


class _Fifo:
    """Rows waiting until every group has produced them."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.size = 0

    def push(self, rows: np.ndarray) -> None:
        self.parts.append(rows)
        self.size += len(rows)

    def pop(self, count: int) -> np.ndarray:
        rows = self.parts[0] if len(self.parts) == 1 else np.concatenate(self.parts)
        self.parts, self.size = [rows[count:]], self.size - count
        return rows[:count]



class FrameFeatureStream:
    """Frame features of audio pushed in blocks: ``(rows, energy_db)`` pieces in order.

    Concatenated, the pieces of every :meth:`feed` and the :meth:`finish` equal
    :func:`frame_features` of the concatenated blocks; memory stays bounded by a
    few thousand frames whatever the length.

    Parameters
    ----------
    config : FeatureConfig
    gain : float
        Every sample is multiplied by this first.
    """

    def __init__(self, config: FeatureConfig, *, gain: float = 1.0) -> None:
        self.config, self.gain = config, gain
        self._groups = frozenset(config.groups)
        self._enabled = _enabled_groups(config)
        self._deltas = {name: _DeltaStream(config.delta_width)
                        for name in ("mfcc", "mfcc_dd", "lfcc")
                        if f"{name[:4]}_delta" in self._groups}
        self._queues = {name: _Fifo() for name in [*self._enabled, "energy", "mfcc_first"]}
        self._chunker = _FrameChunker(config, _FRAME_CHUNK)
        self._empty = {name: np.zeros((0, 0), dtype=np.float32) for name in ("mfcc", "lfcc")}

    def feed(self, block: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Add mono samples at ``config.sample_rate``; return the frame rows now final."""
        return self._consume(self._chunker.push(block))

    def finish(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The remaining frame rows (the end of the audio is zero-padded, as centred)."""
        out = self._consume(self._chunker.finish())
        self._push({**self._empty, "spectral": np.zeros((0, len(_SPECTRAL_NAMES)), np.float32),
                    "phase": np.zeros((0, len(_PHASE_NAMES)), np.float32)},
                   np.zeros(0, np.float32), final=True)
        return out + list(self._ready())

    def _consume(self, chunks: Iterator[tuple[np.ndarray, int, int]],
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
        out: list[tuple[np.ndarray, np.ndarray]] = []
        for frames, lead, start in chunks:
            static, energy = _chunk_features(frames, lead, start, self.gain, self.config,
                                             self._groups)
            self._push(static, energy, final=False)
            out.extend(self._ready())
            self._empty = {name: static[name][:0] for name in ("mfcc", "lfcc") if name in static}
        return out

    def _push(self, static: dict[str, np.ndarray], energy: np.ndarray, final: bool) -> None:
        groups, queues, streams = self._groups, self._queues, self._deltas
        queues["energy"].push(energy)
        for name in ("spectral", "phase", "mfcc", "lfcc"):
            if name in groups:
                queues[name].push(static[name])
        if "mfcc_delta" in groups:
            first = streams["mfcc"].push(static["mfcc"], final=final)
            second = streams["mfcc_dd"].push(first, final=final)
            # Both orders lag differently: keep the first-order ones until the second catch up.
            queues["mfcc_first"].push(first)
            queues["mfcc_delta"].push(np.concatenate(
                [queues["mfcc_first"].pop(len(second)), second], axis=1))
        if "lfcc_delta" in groups:
            queues["lfcc_delta"].push(streams["lfcc"].push(static["lfcc"], final=final))

    def _ready(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        queues = self._queues
        count = min(queues[name].size for name in [*self._enabled, "energy"])
        if count:
            yield (np.concatenate([queues[name].pop(count) for name in self._enabled], axis=1),
                   queues["energy"].pop(count))


def iter_frame_features(
    blocks: Iterable[np.ndarray], config: FeatureConfig, *, gain: float = 1.0,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """:class:`FrameFeatureStream` over an iterable of blocks (pull-style)."""
    stream = FrameFeatureStream(config, gain=gain)
    for block in blocks:
        yield from stream.feed(block)
    yield from stream.finish()


def frame_features(samples: np.ndarray, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """Frame-level feature matrix and frame energies (dB) for the enabled groups.

    The columns are named by :func:`frame_feature_names`: both take the groups in
    ``ALL_GROUPS`` order.
    """
    pieces = list(iter_frame_features([samples], config))
    return (np.concatenate([rows for rows, _ in pieces]),
            np.concatenate([energy for _, energy in pieces]))
