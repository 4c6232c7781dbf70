"""Feature extraction: pure functions from samples to fixed-size vectors.

The main feature set (``kind="cepstral-v1"``) is computed with numpy only, so a
cold ``deepfake-audio check`` does not pay librosa's numba import and JIT cost;
``tests/test_features.py`` checks the filterbanks against librosa's. Per frame it
computes MFCC, LFCC (linear-frequency cepstra, the classic anti-spoofing
baseline) and a few spectral-shape measures; per window it summarises them with
means and standard deviations over the frames that carry signal.

``kind="legacy-mfcc-mean"`` reproduces the original service's features (mean of
13 librosa MFCCs at 22.05 kHz over the whole clip) so that its
``svm_model.pkl``/``scaler.pkl`` pairs keep working.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .filterbanks import dct_matrix, linear_filterbank, mel_filterbank

MAIN_KIND = "cepstral-v1"
LEGACY_KIND = "legacy-mfcc-mean"
#: Every feature group, in the order of their columns in the feature vector.
ALL_GROUPS = ("mfcc", "mfcc_delta", "lfcc", "lfcc_delta", "spectral", "phase")
_EPS = 1e-10
_FRAME_CHUNK = 512  # frames per STFT batch: bounds memory, keeps the arrays in cache
_MIN_ACTIVE_FRAMES = 10
MEAN_CHOICES = ("all", "no-cepstral", "artefact")
STATISTICS = ("mean", "std")
_PHASE_NAMES = ("phase_dev_low", "phase_dev_high", "phase_dev_low_spread",
                "phase_dev_high_spread")
_SPECTRAL_NAMES = (
    "flatness", "flatness_high", "high_band_ratio_db", "fine_structure_low",
    "fine_structure_high", "flux", "rolloff",
)


@dataclass(frozen=True)
class FeatureConfig:
    """Every setting that changes the feature vector; stored in ``model.json``.

    Attributes
    ----------
    kind : str
        ``"cepstral-v1"`` or ``"legacy-mfcc-mean"``.
    sample_rate : int
        Audio is resampled to this rate before analysis.
    n_fft, win_length, hop_length : int
        STFT size, analysis window and hop in samples.
    n_mels, n_mfcc : int
        Mel bands and MFCCs (c0 is dropped from the statistics: it only measures gain).
    n_linear, n_lfcc : int
        Linear-frequency bands and LFCCs.
    high_band_hz : float
        Lower edge of the "high band" used by the spectral measures.
    delta_width : int
        Half-width N of the regression window for deltas.
    energy_floor_db : float
        Frames quieter than the window's loudest frame by more than this are ignored.
    groups : tuple of str
        Which feature groups are concatenated (see ``ALL_GROUPS``).
    window_s, hop_s : float
        Analysis window and hop for the per-window timeline; ``window_s == 0`` means
        one window over the whole clip.
    statistics : tuple of str
        Summaries of each frame feature over a window (``mean``, ``std``).
    means : {"all", "no-cepstral", "artefact"}
        Which frame features keep their window mean (standard deviations are always
        kept). ``no-cepstral`` drops the means of the static MFCC/LFCC; ``artefact``
        keeps only the means of flatness, fine structure and phase advance. The
        dropped means mostly describe the speaker, the recording channel and its
        bandwidth rather than the synthesis method (``docs/model-card.md``, ablation).
    """

    kind: str = MAIN_KIND
    sample_rate: int = 16_000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 40
    n_mfcc: int = 20
    n_linear: int = 70
    n_lfcc: int = 20
    high_band_hz: float = 4000.0
    delta_width: int = 2
    energy_floor_db: float = 50.0
    groups: tuple[str, ...] = ALL_GROUPS
    window_s: float = 3.0
    hop_s: float = 1.5
    statistics: tuple[str, ...] = field(default=("mean", "std"))
    means: str = "artefact"

    @classmethod
    def legacy(cls) -> FeatureConfig:
        """Settings of the original service: 13-MFCC mean over the whole clip, librosa defaults."""
        return cls(
            kind=LEGACY_KIND, sample_rate=22_050, n_fft=2048, win_length=2048, hop_length=512,
            n_mels=128, n_mfcc=13, groups=("mfcc",), window_s=0.0, hop_s=0.0,
            statistics=("mean",),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        """Build from ``model.json``; unknown keys are an error, not silently dropped."""
        names = {f.name for f in dataclasses.fields(cls)} | {"cepstral_means"}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown feature settings: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        if "cepstral_means" in values:  # model.json of version 0.1.0
            values["means"] = "all" if values.pop("cepstral_means") else "no-cepstral"
        return cls(**values)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` unless these settings describe a computable feature vector."""
        if self.kind not in (MAIN_KIND, LEGACY_KIND):
            raise ValueError(f"unknown feature kind {self.kind!r}")
        bad = set(self.groups) - set(ALL_GROUPS)
        if bad:
            raise ValueError(f"unknown feature groups: {', '.join(sorted(bad))}")
        if self.means not in MEAN_CHOICES:
            raise ValueError(f"means must be one of {', '.join(MEAN_CHOICES)}")
        bad = set(self.statistics) - set(STATISTICS)
        if bad:
            raise ValueError(f"unknown statistics: {', '.join(sorted(bad))}")
        if self.kind == MAIN_KIND and not feature_names(self):
            raise ValueError("these groups, statistics and means select no feature at all")
        if self.win_length > self.n_fft or self.hop_length <= 0:
            raise ValueError("need 0 < hop_length and win_length <= n_fft")
        if self.n_mfcc > self.n_mels or self.n_lfcc > self.n_linear:
            raise ValueError("need n_mfcc <= n_mels and n_lfcc <= n_linear")

    @property
    def frames_per_window(self) -> int:
        return max(1, round(self.window_s * self.sample_rate / self.hop_length))

    @property
    def frames_per_hop(self) -> int:
        return max(1, round(self.hop_s * self.sample_rate / self.hop_length))


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


def _frame_chunks(blocks: Iterable[np.ndarray], config: FeatureConfig,
                  chunk: int) -> Iterator[tuple[np.ndarray, int, int]]:
    """Centred frames of the concatenated ``blocks``, ``chunk`` at a time.

    Yields ``(frames, lead, start)``: every chunk after the first starts with the
    previous chunk's last frame (``lead == 1``) so flux and phase advance run across
    the seam; ``start`` is the index of ``frames[0]`` in the whole recording. Only
    about one chunk of samples is copied at a time, however large the blocks.
    """
    pad, hop, n_fft = config.n_fft // 2, config.hop_length, config.n_fft
    buffer = np.zeros(pad, dtype=np.float32)  # centring: zeros before the first sample
    first = 0                                 # global index of the frame at buffer[0]
    done = 0                                  # frames yielded so far

    def chunks(source: Iterator[np.ndarray], final: bool) -> Iterator[tuple[np.ndarray, int, int]]:
        nonlocal buffer, first, done
        block = np.zeros(0, dtype=np.float32)
        while True:
            needed = (done + chunk - 1 - first) * hop + n_fft
            parts = [buffer]
            size = len(buffer)
            while size < needed:
                if not len(block):
                    following = next(source, None)
                    if following is None:
                        break
                    block = np.asarray(following, dtype=np.float32)
                take = block[: needed - size]
                parts.append(take)
                size += len(take)
                block = block[len(take):]
            buffer = np.concatenate(parts) if len(parts) > 1 else buffer
            available = first + max(0, (len(buffer) - n_fft) // hop + 1)
            if available - done < (1 if final else chunk):
                return
            stop = min(done + chunk, available)
            lead = 1 if done > 0 else 0
            yield (_frame_view(buffer[(done - lead - first) * hop :], stop - done + lead, config),
                   lead, done - lead)
            done = stop
            # Keep the samples from the last yielded frame on (the next chunk's lead).
            drop = max(done - 1 - first, 0)
            buffer, first = buffer[drop * hop :], first + drop

    yield from chunks(iter(blocks), final=False)
    yield from chunks(iter([np.zeros(pad, dtype=np.float32)]), final=True)


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


def iter_frame_features(
    blocks: Iterable[np.ndarray], config: FeatureConfig, *, gain: float = 1.0,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Frame features of audio arriving in blocks: ``(rows, energy_db)`` pieces in order.

    Concatenated, the pieces equal :func:`frame_features` of the concatenated
    blocks; memory stays bounded by a few thousand frames whatever the length.

    Parameters
    ----------
    blocks : iterable of numpy.ndarray
        Consecutive mono float32 sample blocks at ``config.sample_rate``, any sizes.
    config : FeatureConfig
    gain : float
        Every sample is multiplied by this first.
    """
    groups = frozenset(config.groups)
    enabled = _enabled_groups(config)
    streams = {name: _DeltaStream(config.delta_width)
               for name in ("mfcc", "mfcc_dd", "lfcc") if f"{name[:4]}_delta" in groups}
    queues = {name: _Fifo() for name in [*enabled, "energy", "mfcc_first"]}

    def push(static: dict[str, np.ndarray], energy: np.ndarray, final: bool) -> None:
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

    def ready() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        count = min(queues[name].size for name in [*enabled, "energy"])
        if count:
            yield (np.concatenate([queues[name].pop(count) for name in enabled], axis=1),
                   queues["energy"].pop(count))

    empty = {name: np.zeros((0, 0), dtype=np.float32) for name in ("mfcc", "lfcc")}
    for frames, lead, start in _frame_chunks(blocks, config, _FRAME_CHUNK):
        static, energy = _chunk_features(frames, lead, start, gain, config, groups)
        push(static, energy, final=False)
        yield from ready()
        empty = {name: static[name][:0] for name in ("mfcc", "lfcc") if name in static}
    push({**empty, "spectral": np.zeros((0, len(_SPECTRAL_NAMES)), np.float32),
          "phase": np.zeros((0, len(_PHASE_NAMES)), np.float32)},
         np.zeros(0, np.float32), final=True)
    yield from ready()


def frame_features(samples: np.ndarray, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """Frame-level feature matrix and frame energies (dB) for the enabled groups.

    The columns are named by :func:`frame_feature_names`: both take the groups in
    ``ALL_GROUPS`` order.
    """
    pieces = list(iter_frame_features([samples], config))
    return (np.concatenate([rows for rows, _ in pieces]),
            np.concatenate([energy for _, energy in pieces]))


def _enabled_groups(config: FeatureConfig) -> list[str]:
    """The enabled groups in column order: the one order names and columns both follow."""
    return [group for group in ALL_GROUPS if group in config.groups]


def _group_names(config: FeatureConfig) -> dict[str, list[str]]:
    """Column names of each group's block of :func:`frame_features`."""
    mfcc = [f"mfcc{i}" for i in range(1, config.n_mfcc)]
    lfcc = [f"lfcc{i}" for i in range(1, config.n_lfcc)]
    return {
        "mfcc": mfcc,
        "mfcc_delta": [f"d_{n}" for n in mfcc] + [f"dd_{n}" for n in mfcc],
        "lfcc": lfcc,
        "lfcc_delta": [f"d_{n}" for n in lfcc],
        "spectral": list(_SPECTRAL_NAMES),
        "phase": list(_PHASE_NAMES),
    }


def frame_feature_names(config: FeatureConfig) -> list[str]:
    """Names of the columns :func:`frame_features` returns, in order."""
    names = _group_names(config)
    return [name for group in _enabled_groups(config) for name in names[group]]


def feature_names(config: FeatureConfig) -> list[str]:
    """Names of the columns :func:`extract` returns, in order."""
    if config.kind == LEGACY_KIND:
        return [f"mfcc{i}_mean" for i in range(config.n_mfcc)]
    frame = frame_feature_names(config)
    names = [f"{name}_{stat}" for stat in config.statistics for name in frame]
    return [n for n in names if _keeps(config.means, n)]


_ARTEFACT_MEANS = ("flatness", "fine_structure", "phase_dev")


def _keeps(means: str, name: str) -> bool:
    if means == "all" or not name.endswith("_mean"):
        return True
    if means == "no-cepstral":
        return not name.startswith(("mfcc", "lfcc"))
    return name.startswith(_ARTEFACT_MEANS)


@functools.lru_cache(maxsize=16)
def _kept_columns(config: FeatureConfig) -> np.ndarray | None:
    """Column indices that survive ``config.means`` (None: keep all)."""
    if config.means == "all":
        return None
    full = feature_names(dataclasses.replace(config, means="all"))
    return np.array([i for i, n in enumerate(full) if _keeps(config.means, n)])


# --------------------------------------------------------------------------- window level


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
    return np.concatenate([parts[stat] for stat in config.statistics], axis=1)


class _WindowStream:
    """Summarise windows as soon as their frames (and the next window's) have arrived.

    A window is final once the next one is complete: only the last window can be
    stretched or followed by an end-aligned tail (:func:`window_bounds`), and those
    are done by :meth:`finish`, when the frame count is known. Frames before the
    next unfinished window are dropped, so memory does not grow with the length.
    """

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self.rows = _Fifo()
        self.energy = _Fifo()
        self.first = 0      # global index of the first buffered frame
        self.done = 0       # windows summarised
        self.seen = 0       # frames pushed
        self.out: list[np.ndarray] = []

    def push(self, rows: np.ndarray, energy: np.ndarray) -> None:
        self.rows.push(rows)
        self.energy.push(energy)
        self.seen += len(rows)
        size, hop = self.config.frames_per_window, self.config.frames_per_hop
        if self.config.window_s <= 0 or self.seen < size + hop:
            return
        last = (self.seen - size) // hop - 1  # window `last + 1` is complete too
        if last >= self.done:
            starts = np.arange(self.done, last + 1) * hop
            self._summarise(np.stack([starts, starts + size], axis=1))
            self.done = last + 1

    def finish(self) -> tuple[np.ndarray, list[tuple[int, int]]]:
        bounds = window_bounds(self.seen, self.config)
        if len(bounds) > self.done:
            self._summarise(np.array(bounds[self.done :]))
        return np.concatenate(self.out).astype(np.float32), bounds

    def _summarise(self, bounds: np.ndarray) -> None:
        count = self.rows.size
        rows, energy = self.rows.pop(count), self.energy.pop(count)
        self.out.append(_summaries(rows, energy, bounds - self.first, self.config))
        # Keep the frames from the next window's start on.
        keep = int(bounds[-1, 0]) + self.config.frames_per_hop - self.first
        keep = min(max(keep, 0), count)
        self.rows.push(rows[keep:])
        self.energy.push(energy[keep:])
        self.first += keep


@dataclass(frozen=True)
class WindowFeatures:
    """Feature vectors of one clip, one row per analysis window."""

    matrix: np.ndarray
    #: ``(start_s, end_s)`` of each row.
    spans: tuple[tuple[float, float], ...]
    #: Length of the analysed audio.
    duration_s: float = 0.0


def extract_blocks(blocks: Iterable[np.ndarray], config: FeatureConfig, *,
                   peak: float) -> WindowFeatures:
    """Feature vectors of audio that arrives in blocks, in bounded memory.

    Same result as :func:`extract` on the concatenated blocks, which never need to
    be in memory together: a decoder can feed a file of any length block by block.

    Parameters
    ----------
    blocks : iterable of numpy.ndarray
        Consecutive mono float32 blocks at ``config.sample_rate``.
    config : FeatureConfig
        Settings of the ``cepstral-v1`` kind.
    peak : float
        Largest absolute sample of the whole audio (a first pass over it): the
        features are computed at a fixed peak level, as :func:`extract` does.

    Returns
    -------
    WindowFeatures
    """
    if config.kind == LEGACY_KIND:
        raise ValueError("legacy features need the whole clip: use extract()")
    # Gain does not tell real from fake; normalise it away so c0-like drift cannot leak in.
    gain = float(np.float32(0.5 / peak)) if peak > 0 else 1.0
    windows = _WindowStream(config)
    n_samples = 0

    def counted() -> Iterator[np.ndarray]:
        nonlocal n_samples
        for block in blocks:
            n_samples += len(block)
            yield block

    for rows, energy in iter_frame_features(counted(), config, gain=gain):
        windows.push(rows, energy)
    matrix, bounds = windows.finish()
    duration = n_samples / config.sample_rate
    seconds_per_frame = config.hop_length / config.sample_rate
    spans = tuple((round(start * seconds_per_frame, 3),
                   round(min(stop * seconds_per_frame, duration), 3)) for start, stop in bounds)
    kept = _kept_columns(config)
    return WindowFeatures(matrix if kept is None else matrix[:, kept], spans, duration)


def extract(samples: np.ndarray, config: FeatureConfig) -> WindowFeatures:
    """Feature vectors for each analysis window of ``samples`` (mono, ``config.sample_rate``).

    Parameters
    ----------
    samples : numpy.ndarray
        Mono float audio at ``config.sample_rate``.
    config : FeatureConfig

    Returns
    -------
    WindowFeatures
        ``matrix`` has shape ``(n_windows, len(feature_names(config)))``.
    """
    if config.kind == LEGACY_KIND:
        duration = len(samples) / config.sample_rate
        return WindowFeatures(legacy_features(samples, config)[None, :], ((0.0, duration),),
                              duration)
    peak = max(float(samples.max()), -float(samples.min())) if len(samples) else 0.0
    return extract_blocks([samples], config, peak=peak)


def legacy_features(samples: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """The original service's features: mean of librosa MFCCs over the clip."""
    import librosa  # only legacy models pay librosa's import and JIT cost

    mfcc = librosa.feature.mfcc(
        y=np.asarray(samples, dtype=np.float32), sr=config.sample_rate, n_mfcc=config.n_mfcc,
        n_fft=config.n_fft, hop_length=config.hop_length, n_mels=config.n_mels,
    )
    return np.asarray(mfcc.mean(axis=1), dtype=np.float32)
