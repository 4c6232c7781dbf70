"""Feature extraction: pure functions from samples to fixed-size vectors.

The main feature set (``kind="cepstral-v1"``) is computed with numpy only, so a
cold ``deepfake-audio check`` does not pay librosa's numba import and JIT cost;
``tests/test_features.py`` checks the filterbanks against librosa's. Per frame it
computes MFCC, LFCC (linear-frequency cepstra, the classic anti-spoofing
baseline) and a few spectral-shape measures (:mod:`.spectra`); per window it
summarises them with means and standard deviations over the frames that carry
signal (:mod:`.windows`). Settings and column names live in :mod:`.feature_config`;
this module is the public entry point and re-exports them.

``kind="legacy-mfcc-mean"`` reproduces the original service's features (mean of
13 librosa MFCCs at 22.05 kHz over the whole clip) so that its
``svm_model.pkl``/``scaler.pkl`` pairs keep working.
"""

from __future__ import annotations

import numpy as np

from .feature_config import (
    _PHASE_NAMES,
    _SPECTRAL_NAMES,
    ALL_GROUPS,
    LEGACY_KIND,
    MAIN_KIND,
    MEAN_CHOICES,
    STATISTICS,
    FeatureConfig,
    feature_names,
    frame_feature_names,
)
from .spectra import (
    FrameFeatureStream,
    _analysis_window,
    _frames,
    cepstra,
    deltas,
    frame_features,
    iter_frame_features,
    phase_deviation,
    power_spectrogram,
    spectral_measures,
)
from .windows import WindowFeatures, WindowStream, window_bounds

__all__ = [
    "ALL_GROUPS", "LEGACY_KIND", "MAIN_KIND", "MEAN_CHOICES", "STATISTICS", "_PHASE_NAMES",
    "_SPECTRAL_NAMES", "FeatureConfig", "FrameFeatureStream", "WindowFeatures", "WindowStream",
    "_analysis_window", "_frames", "cepstra", "deltas", "extract", "feature_names",
    "frame_feature_names", "frame_features", "iter_frame_features", "legacy_features",
    "phase_deviation", "power_spectrogram", "spectral_measures", "window_bounds",
]


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
        return WindowFeatures(legacy_features(samples, config)[None, :], ((0.0, duration),),
                              duration)
    samples = np.asarray(samples, dtype=np.float32)
    peak = max(float(samples.max()), -float(samples.min())) if len(samples) else 0.0
    stream = WindowStream(config, peak=peak)
    parts = [*stream.feed(samples), stream.finish()]
    found = [part for part in parts if part is not None]
    if not found:
        raise ValueError("no audio samples to extract features from")
    return WindowFeatures(np.vstack([part.matrix for part in found]),
                          tuple(span for part in found for span in part.spans), duration)


def legacy_features(samples: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """The original service's features: mean of librosa MFCCs over the clip."""
    import librosa  # only legacy models pay librosa's import and JIT cost

    mfcc = librosa.feature.mfcc(
        y=np.asarray(samples, dtype=np.float32), sr=config.sample_rate, n_mfcc=config.n_mfcc,
        n_fft=config.n_fft, hop_length=config.hop_length, n_mels=config.n_mels,
    )
    return np.asarray(mfcc.mean(axis=1), dtype=np.float32)
