"""Filterbanks and transforms of the cepstral features (numpy only, cached per shape).

``tests/test_features.py`` checks them against librosa and scipy.
"""

from __future__ import annotations

import functools

import numpy as np


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    linear = hz / f_sp
    log = min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep
    return np.where(hz >= min_log_hz, log, linear)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    return np.where(
        mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel
    )


def _triangles(edges_hz: np.ndarray, fft_hz: np.ndarray) -> np.ndarray:
    lower = edges_hz[:-2, None]
    centre = edges_hz[1:-1, None]
    upper = edges_hz[2:, None]
    rising = (fft_hz[None, :] - lower) / (centre - lower)
    falling = (upper - fft_hz[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    # Slaney area normalisation: each triangle has unit area.
    return weights * (2.0 / (upper - lower))


@functools.lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney-normalised mel filterbank, ``(n_mels, n_fft // 2 + 1)``.

    Equals ``librosa.filters.mel`` with its defaults (checked in the tests).
    """
    fft_hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2))
    return _triangles(edges, fft_hz).astype(np.float32)


@functools.lru_cache(maxsize=16)
def linear_filterbank(sample_rate: int, n_fft: int, n_filters: int) -> np.ndarray:
    """Equal-width triangular filters over 0..Nyquist, ``(n_filters, n_fft // 2 + 1)``."""
    fft_hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = np.linspace(0, sample_rate / 2, n_filters + 2)
    return _triangles(edges, fft_hz).astype(np.float32)


@functools.lru_cache(maxsize=16)
def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II as a matrix, ``(n_out, n_in)``; equals ``scipy.fft.dct(norm="ortho")``."""
    n = np.arange(n_in)
    k = np.arange(n_out)[:, None]
    basis = np.cos(np.pi / n_in * (n + 0.5) * k) * np.sqrt(2.0 / n_in)
    basis[0] /= np.sqrt(2.0)
    return basis.astype(np.float32)
