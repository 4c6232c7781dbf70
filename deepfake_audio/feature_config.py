"""Feature settings (:class:`FeatureConfig`) and the names of the feature columns.

Shared by the frame level (:mod:`.spectra`), the window level (:mod:`.windows`)
and the public entry point :mod:`.features`.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAIN_KIND = "cepstral-v1"
LEGACY_KIND = "legacy-mfcc-mean"
#: Every feature group, in the order of their columns in the feature vector.
ALL_GROUPS = ("mfcc", "mfcc_delta", "lfcc", "lfcc_delta", "spectral", "phase")
MEAN_CHOICES = ("all", "no-cepstral", "artefact")
STATISTICS = ("mean", "std")
#: Modulation-frequency bands (Hz) of :attr:`FeatureConfig.modulation`: syllable rate
#: (2-8 Hz) against the slow drift below and the frame-to-frame jitter above it.
MODULATION_EDGES_HZ = (0.5, 2.0, 4.0, 8.0, 16.0, 32.0, 50.0)
#: Static MFCCs 1.. are split into this many contiguous groups for the modulation block.
MODULATION_GROUPS = 4
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
    shape_groups : tuple of str
        Frame-feature groups whose window skewness and excess kurtosis are kept too
        (after the ``statistics`` columns): how peaked and lopsided a coefficient's
        distribution is, which smooth synthetic trajectories change. Groups not in
        ``groups`` are skipped.
    modulation : bool
        Keep the modulation spectrum of the static MFCC trajectories in each window:
        the share of their temporal variation in :data:`MODULATION_EDGES_HZ` bands, for
        :data:`MODULATION_GROUPS` groups of coefficients (log). Only when ``"mfcc"`` is
        in ``groups`` (:attr:`uses_modulation`).
    means : {"all", "no-cepstral", "artefact"}
        Which frame features keep their window mean (standard deviations are always
        kept). ``no-cepstral`` drops the means of the static MFCC/LFCC; ``artefact``
        keeps only the means of flatness, fine structure and phase advance. The
        dropped means mostly describe the speaker, the recording channel and its
        bandwidth rather than the synthesis method, so ``"artefact"`` is the default
        (the bundled model's setting; ``docs/model-card.md``).
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
    shape_groups: tuple[str, ...] = ("mfcc",)
    modulation: bool = True

    @classmethod
    def legacy(cls) -> FeatureConfig:
        """Settings of the original service: 13-MFCC mean over the whole clip, librosa defaults."""
        return cls(
            kind=LEGACY_KIND, sample_rate=22_050, n_fft=2048, win_length=2048, hop_length=512,
            n_mels=128, n_mfcc=13, groups=("mfcc",), window_s=0.0, hop_s=0.0,
            statistics=("mean",), means="all", shape_groups=(), modulation=False,
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
        # Files written before the setting existed kept every mean (the default has moved).
        values.setdefault("means", "all")
        # Nor did they have the shape statistics or the modulation block.
        values.setdefault("shape_groups", ())
        values.setdefault("modulation", False)
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
        bad = set(self.shape_groups) - set(ALL_GROUPS)
        if bad:
            raise ValueError(f"unknown shape_groups: {', '.join(sorted(bad))}")
        if self.kind == MAIN_KIND and not feature_names(self):
            raise ValueError("these groups, statistics and means select no feature at all")
        if self.win_length > self.n_fft or self.hop_length <= 0:
            raise ValueError("need 0 < hop_length and win_length <= n_fft")
        if self.n_mfcc > self.n_mels or self.n_lfcc > self.n_linear:
            raise ValueError("need n_mfcc <= n_mels and n_lfcc <= n_linear")

    @property
    def uses_modulation(self) -> bool:
        """Whether the modulation block is computed (it reads the static MFCCs)."""
        return self.modulation and "mfcc" in self.groups

    @property
    def frames_per_window(self) -> int:
        return max(1, round(self.window_s * self.sample_rate / self.hop_length))

    @property
    def frames_per_hop(self) -> int:
        return max(1, round(self.hop_s * self.sample_rate / self.hop_length))



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
    shaped = shape_columns(config)
    names += [f"{frame[i]}_{stat}" for stat in ("skew", "kurt") for i in shaped]
    if config.uses_modulation:
        names += [f"mod_g{g}_{lo:g}-{hi:g}hz" for lo, hi in itertools.pairwise(MODULATION_EDGES_HZ)
                  for g in range(MODULATION_GROUPS)]
    return [n for n in names if _keeps(config.means, n)]


@functools.lru_cache(maxsize=16)
def shape_columns(config: FeatureConfig) -> tuple[int, ...]:
    """Indices into the frame features of the ``shape_groups`` columns."""
    names = _group_names(config)
    out: list[int] = []
    start = 0
    for group in _enabled_groups(config):
        width = len(names[group])
        if group in config.shape_groups:
            out.extend(range(start, start + width))
        start += width
    return tuple(out)


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
