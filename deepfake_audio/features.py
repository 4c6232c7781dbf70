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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .filterbanks import dct_matrix, linear_filterbank, mel_filterbank

MAIN_KIND = "cepstral-v1"
LEGACY_KIND = "legacy-mfcc-mean"
#: Every feature group, in the order of their columns in the feature vector.
ALL_GROUPS = ("mfcc", "mfcc_delta", "lfcc", "lfcc_delta", "spectral", "phase")
_EPS = 1e-10
_FRAME_CHUNK = 4096  # frames per FFT batch: bounds peak memory on long files
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
        bandwidth rather than the synthesis method; with the 40-odd corpora of the
        third training batch keeping them all held out better (``docs/model-card.md``,
        ablation), so ``"all"`` is the default.
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
    means: str = "all"

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
    n_frames = 1 + max(0, (len(padded) - config.n_fft) // config.hop_length)
    return np.lib.stride_tricks.as_strided(
        padded,
        shape=(n_frames, config.n_fft),
        strides=(padded.strides[0] * config.hop_length, padded.strides[0]),
        writeable=False,
    )


def _stft(frames: np.ndarray, config: FeatureConfig) -> np.ndarray:
    return np.fft.rfft(frames * _analysis_window(config.win_length, config.n_fft), axis=1)


def _power(spec: np.ndarray) -> np.ndarray:
    return (spec.real**2 + spec.imag**2).astype(np.float32)


def power_spectrogram(samples: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Power STFT, ``(n_frames, n_fft // 2 + 1)``, frames centred like librosa (zero padding)."""
    return _power(_stft(_frames(samples, config), config))


def phase_deviation(spec: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Per-frame phase-advance deviation, ``(n_frames, 4)`` (first frame: zeros).

    For a steady partial in bin k the phase advances by ``2*pi*k*hop/n_fft`` per
    hop. Natural speech, vocoders (which invent phase) and phase reconstruction
    (Griffin-Lim, WORLD) depart from that in different ways. Per band (below /
    above ``high_band_hz``) we take the magnitude-weighted mean absolute wrapped
    deviation and its weighted spread.
    """
    out = np.zeros((len(spec), len(_PHASE_NAMES)), dtype=np.float32)
    if len(spec) < 2:
        return out
    n_bins = spec.shape[1]
    expected = np.exp(-2j * np.pi * np.arange(n_bins) * config.hop_length / config.n_fft)
    cross = spec[1:] * np.conj(spec[:-1]) * expected
    deviation = np.abs(np.angle(cross))
    weight = np.abs(cross)
    high = round(config.high_band_hz / (config.sample_rate / 2) * (n_bins - 1))
    for column, band in enumerate((slice(2, high), slice(high, n_bins - 1))):
        w = weight[:, band] + _EPS
        d = deviation[:, band]
        mean = (w * d).sum(axis=1) / w.sum(axis=1)
        spread = np.sqrt((w * (d - mean[:, None]) ** 2).sum(axis=1) / w.sum(axis=1))
        out[1:, column] = mean
        out[1:, column + 2] = spread
    return out


def cepstra(power: np.ndarray, filterbank: np.ndarray, n_coeffs: int) -> np.ndarray:
    """Log filterbank energies → orthonormal DCT-II, ``(n_frames, n_coeffs)``."""
    energies = power @ filterbank.T
    log_energies = 10.0 * np.log10(np.maximum(energies, _EPS))
    return log_energies @ dct_matrix(filterbank.shape[0], n_coeffs).T


def deltas(features: np.ndarray, width: int = 2) -> np.ndarray:
    """Regression deltas over time (axis 0) with edge padding, as in HTK.

    ``d[t] = sum_n n * (x[t+n] - x[t-n]) / (2 * sum_n n^2)`` for ``n = 1..width``.
    """
    if len(features) == 0:
        return features.copy()
    padded = np.pad(features, ((width, width), (0, 0)), mode="edge")
    total = len(features)
    out = np.zeros_like(features)
    for n in range(1, width + 1):
        out += n * (padded[width + n : width + n + total] - padded[width - n : width - n + total])
    return out / (2 * sum(n * n for n in range(1, width + 1)))


def _moving_average(rows: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average along axis 1 (edge-padded), via a cumulative sum."""
    half = width // 2
    padded = np.pad(rows, ((0, 0), (half + 1, half)), mode="edge")
    cumulative = np.cumsum(padded, axis=1)
    return (cumulative[:, width:] - cumulative[:, :-width]) / width


def spectral_measures(power: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Per-frame spectral shape, ``(n_frames, 7)``: see ``_SPECTRAL_NAMES``.

    Flatness (whole and high band), high-band energy ratio, "fine structure" (the
    spread of the log spectrum around its own smoothed envelope, low and high band:
    vocoders and phase reconstruction leave it too regular or too noisy), spectral
    flux and 95 % roll-off (as a fraction of Nyquist).
    """
    n_bins = power.shape[1]
    high = round(config.high_band_hz / (config.sample_rate / 2) * (n_bins - 1))
    high = min(max(high, 1), n_bins - 2)
    p = power.astype(np.float64) + _EPS
    log_p = np.log(p)

    def flatness(block: np.ndarray, log_block: np.ndarray) -> np.ndarray:
        return np.exp(log_block.mean(axis=1)) / block.mean(axis=1)

    total = p.sum(axis=1)
    high_ratio = 10 * np.log10(p[:, high:].sum(axis=1) / total)
    residual = log_p - _moving_average(log_p, 9)
    fine_low = residual[:, 4:high].std(axis=1)
    fine_high = residual[:, high:-4].std(axis=1)
    flux = np.zeros(len(p))
    if len(p) > 1:
        flux[1:] = np.sqrt(np.mean(np.diff(log_p, axis=0) ** 2, axis=1))
    cumulative = np.cumsum(p, axis=1)
    rolloff = (cumulative < 0.95 * total[:, None]).sum(axis=1) / (n_bins - 1)
    return np.stack(
        [flatness(p, log_p), flatness(p[:, high:], log_p[:, high:]), high_ratio,
         fine_low, fine_high, flux, rolloff],
        axis=1,
    ).astype(np.float32)


def frame_features(samples: np.ndarray, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """Frame-level feature matrix and frame energies (dB) for the enabled groups.

    The columns are named by :func:`frame_feature_names`: both take the groups in
    ``ALL_GROUPS`` order.

    The STFT and the per-frame measures run in chunks of frames so a 10-minute
    file never holds its whole spectrogram (let alone float64 copies of it).
    """
    groups = set(config.groups)
    want_mfcc = bool(groups & {"mfcc", "mfcc_delta"})
    want_lfcc = bool(groups & {"lfcc", "lfcc_delta"})
    mel = mel_filterbank(config.sample_rate, config.n_fft, config.n_mels)
    lin = linear_filterbank(config.sample_rate, config.n_fft, config.n_linear)
    frames = _frames(samples, config)
    energy, mfcc, lfcc, spectral, phase = [], [], [], [], []
    for start in range(0, len(frames), _FRAME_CHUNK):
        # One frame of overlap so flux and phase advance are continuous across chunks.
        first = max(start - 1, 0)
        spec = _stft(frames[first : start + _FRAME_CHUNK], config)
        power = _power(spec)
        own = power[start - first :]
        energy.append(10 * np.log10(own.sum(axis=1) + _EPS))
        if want_mfcc:
            mfcc.append(cepstra(own, mel, config.n_mfcc)[:, 1:])
        if want_lfcc:
            lfcc.append(cepstra(own, lin, config.n_lfcc)[:, 1:])
        if "spectral" in groups:
            spectral.append(spectral_measures(power, config)[start - first :])
        if "phase" in groups:
            phase.append(phase_deviation(spec, config)[start - first :])
    blocks: dict[str, np.ndarray] = {}
    if want_mfcc:
        blocks["mfcc"] = np.concatenate(mfcc)
        if "mfcc_delta" in groups:
            d1 = deltas(blocks["mfcc"], config.delta_width)
            blocks["mfcc_delta"] = np.concatenate([d1, deltas(d1, config.delta_width)], axis=1)
    if want_lfcc:
        blocks["lfcc"] = np.concatenate(lfcc)
        if "lfcc_delta" in groups:
            blocks["lfcc_delta"] = deltas(blocks["lfcc"], config.delta_width)
    if spectral:
        blocks["spectral"] = np.concatenate(spectral)
    if phase:
        blocks["phase"] = np.concatenate(phase)
    columns = [blocks[group] for group in _enabled_groups(config)]
    return np.concatenate(columns, axis=1), np.concatenate(energy)


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


def _summarise(frames: np.ndarray, statistics: Sequence[str]) -> np.ndarray:
    parts = []
    for stat in statistics:
        if stat == "mean":
            parts.append(frames.mean(axis=0))
        elif stat == "std":
            parts.append(frames.std(axis=0))
        else:
            raise ValueError(f"unknown statistic {stat!r}")
    return np.concatenate(parts)


@dataclass(frozen=True)
class WindowFeatures:
    """Feature vectors of one clip, one row per analysis window."""

    matrix: np.ndarray
    #: ``(start_s, end_s)`` of each row.
    spans: tuple[tuple[float, float], ...]


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
    duration = len(samples) / config.sample_rate
    if config.kind == LEGACY_KIND:
        return WindowFeatures(legacy_features(samples, config)[None, :], ((0.0, duration),))
    # Gain does not tell real from fake; normalise it away so c0-like drift cannot leak in.
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    if peak > 0:
        samples = samples * np.float32(0.5 / peak)
    frames, energy_db = frame_features(samples, config)
    rows, spans = [], []
    seconds_per_frame = config.hop_length / config.sample_rate
    for start, stop in window_bounds(len(frames), config):
        window_energy = energy_db[start:stop]
        active = window_energy >= window_energy.max() - config.energy_floor_db
        chunk = frames[start:stop]
        if active.sum() >= _MIN_ACTIVE_FRAMES:
            chunk = chunk[active]
        rows.append(_summarise(chunk, config.statistics))
        spans.append((round(start * seconds_per_frame, 3),
                      round(min(stop * seconds_per_frame, duration), 3)))
    matrix = np.vstack(rows).astype(np.float32)
    kept = _kept_columns(config)
    if kept is not None:
        matrix = matrix[:, kept]
    return WindowFeatures(matrix, tuple(spans))


def legacy_features(samples: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """The original service's features: mean of librosa MFCCs over the clip."""
    import librosa  # only legacy models pay librosa's import and JIT cost

    mfcc = librosa.feature.mfcc(
        y=np.asarray(samples, dtype=np.float32), sr=config.sample_rate, n_mfcc=config.n_mfcc,
        n_fft=config.n_fft, hop_length=config.hop_length, n_mels=config.n_mels,
    )
    return np.asarray(mfcc.mean(axis=1), dtype=np.float32)
