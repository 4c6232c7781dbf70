"""Feature blocks screened for issue 13 item 3 and not adopted (``feature_screen.py --candidates``).

Each function describes one whole clip (16 kHz mono) by a few numbers; none of them is
part of the package, because none improved the unseen protocol enough to pay for its
cost (model card, "Feature blocks"). Kept so the screen can be rerun.

- :func:`voicing`: cepstral peak prominence (CPP, how clearly the harmonics stand out of
  the spectrum), harmonics-to-noise ratio from the normalised autocorrelation, the
  voiced share and the frame-to-frame F0 jitter (40 ms frames, 10 ms hop);
- :func:`group_delay`: modified group-delay cepstra (Hegde et al.; alpha 0.4, gamma 0.9),
  mean and standard deviation of coefficients 1-12;
- :func:`bicoherence`: mean, standard deviation, skewness and excess kurtosis of the
  bicoherence's magnitude and phase over frequency pairs below 4 kHz (AlBadawy et al.,
  2019: synthesis leaves unusual higher-order phase correlations);
- :func:`subband_flatness`: spectral flatness of seven bands (0-1-2-4-5-6-7-8 kHz),
  mean and standard deviation over frames;
- :func:`cqcc`: constant-Q cepstral coefficients (Todisco et al., 2017): a constant-Q
  transform (24 bins per octave, 31.25 Hz to 8 kHz, computed octave by octave on a
  signal halved in rate each time), its log power resampled to a uniform frequency
  grid, then a DCT; mean and standard deviation of coefficients 1-19 and the standard
  deviation of their deltas.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.fft import dct
from scipy.signal import resample_poly

SAMPLE_RATE = 16_000


def _frames(x: np.ndarray, size: int, hop: int) -> np.ndarray:
    if len(x) < size:
        x = np.pad(x, (0, size - len(x)))
    count = 1 + (len(x) - size) // hop
    return x[np.arange(size)[None, :] + hop * np.arange(count)[:, None]]


def _loud(frames: np.ndarray, floor_db: float) -> np.ndarray:
    level = 10 * np.log10((frames**2).sum(axis=1) + 1e-12)
    return frames[level > level.max() - floor_db]


def _summary(values: np.ndarray) -> np.ndarray:
    values = values[np.isfinite(values)]
    if len(values) < 3:
        return np.zeros(5)
    return np.r_[values.mean(), values.std(), np.percentile(values, [10, 50, 90])]


def _moments(values: np.ndarray) -> np.ndarray:
    mean, std = values.mean(), values.std() + 1e-12
    z = (values - mean) / std
    return np.r_[mean, std, (z**3).mean(), (z**4).mean() - 3]


def voicing(x: np.ndarray) -> np.ndarray:
    """CPP and HNR summaries, voiced share, median and spread of F0 jitter (13 numbers)."""
    frames = _loud(_frames(x, 640, 160), 30.0) * np.hanning(640)
    log_power = 10 * np.log10(np.abs(np.fft.rfft(frames, 1024)) ** 2 + 1e-10)
    cepstrum = np.fft.irfft(log_power, axis=1)[:, :512]
    low, high = 40, 267  # quefrencies of F0 between 60 and 400 Hz
    peak = cepstrum[:, low:high].argmax(axis=1) + low
    quefrency = np.arange(16, 400)
    slope, intercept = np.linalg.lstsq(np.c_[quefrency, np.ones_like(quefrency)],
                                       cepstrum[:, 16:400].T, rcond=None)[0]
    cpp = cepstrum[np.arange(len(cepstrum)), peak] - (slope * peak + intercept)
    autocorr = np.fft.irfft(np.abs(np.fft.rfft(frames, 2048)) ** 2, axis=1)[:, :300]
    autocorr /= autocorr[:, :1] + 1e-12
    r = autocorr[:, low:high].max(axis=1).clip(1e-4, 0.9999)
    lag = autocorr[:, low:high].argmax(axis=1) + low
    voiced = r > 0.5
    jitter = np.abs(np.diff(np.log(SAMPLE_RATE / lag)))[voiced[1:] & voiced[:-1]]
    jitter = jitter[jitter < 0.1]
    spread = (np.median(jitter), jitter.std()) if len(jitter) > 3 else (0.0, 0.0)
    return np.r_[_summary(cpp), _summary(10 * np.log10(r / (1 - r))), voiced.mean(), spread]


def group_delay(x: np.ndarray) -> np.ndarray:
    """Mean and standard deviation of modified group-delay cepstra 1-12 (24 numbers)."""
    frames = _loud(_frames(x, 400, 160), 50.0) * np.hamming(400)
    spectrum = np.fft.rfft(frames, 512)
    ramped = np.fft.rfft(frames * np.arange(400), 512)
    cepstrum = np.fft.irfft(np.log(np.abs(spectrum) + 1e-9), axis=1)
    cepstrum[:, 30:-30] = 0  # keep the envelope: the smoothed spectrum in the denominator
    smooth = np.exp(np.fft.rfft(cepstrum, axis=1).real)
    tau = (spectrum.real * ramped.real + spectrum.imag * ramped.imag) / (smooth**1.8 + 1e-9)
    tau = np.sign(tau) * np.abs(tau) ** 0.4
    coefficients = dct(tau, type=2, axis=1, norm="ortho")[:, 1:13]
    return np.r_[coefficients.mean(axis=0), coefficients.std(axis=0)]


def bicoherence(x: np.ndarray) -> np.ndarray:
    """Moments of the bicoherence magnitude and phase (8 numbers; 256-point frames)."""
    frames = _loud(_frames(x, 256, 128), 40.0) * np.hanning(256)
    spectrum = np.fft.rfft(frames)
    f1, f2 = np.meshgrid(np.arange(1, 64), np.arange(1, 64), indexing="ij")
    lower = f1 >= f2
    f1, f2 = f1[lower], f2[lower]
    pairs = spectrum[:, f1] * spectrum[:, f2]
    total = spectrum[:, f1 + f2]
    norm = np.sqrt((np.abs(pairs) ** 2).sum(axis=0) * (np.abs(total) ** 2).sum(axis=0))
    value = (pairs * np.conj(total)).sum(axis=0) / (norm + 1e-12)
    return np.r_[_moments(np.abs(value)), _moments(np.angle(value))]


def subband_flatness(x: np.ndarray) -> np.ndarray:
    """Log spectral flatness of seven bands, mean and spread over frames (14 numbers)."""
    frames = _loud(_frames(x, 400, 160), 50.0) * np.hamming(400)
    power = np.abs(np.fft.rfft(frames, 512)) ** 2 + 1e-12
    freqs = np.fft.rfftfreq(512, 1 / SAMPLE_RATE)
    out = []
    for low, high in ((0, 1000), (1000, 2000), (2000, 4000), (4000, 5000), (5000, 6000),
                      (6000, 7000), (7000, 8001)):
        band = power[:, (freqs >= low) & (freqs < high)]
        flatness = np.log(band).mean(axis=1) - np.log(band.mean(axis=1))
        out += [flatness.mean(), flatness.std()]
    return np.array(out)


def _constant_q_power(x: np.ndarray, octaves: int = 8, per_octave: int = 24,
                      hop: int = 128) -> np.ndarray:
    """``(frames, octaves * per_octave)`` constant-Q power, lowest bin first (``hop`` at 16 kHz)."""
    quality = 1 / (2 ** (1 / per_octave) - 1)
    frames = max(1, len(x) // hop)
    columns = []
    signal = x
    for octave in range(octaves):
        rate = SAMPLE_RATE / 2**octave
        # the top octave of each (halved) signal: rate/4 to rate/2, same kernels every time
        centres = rate / 4 * 2 ** (np.arange(per_octave) / per_octave)
        lengths = np.ceil(quality * rate / centres).astype(int)
        width = int(lengths.max()) | 1
        kernels = np.zeros((per_octave, width), dtype=complex)
        for row, (centre, length) in enumerate(zip(centres, lengths, strict=True)):
            t = np.arange(length) - length // 2
            kernels[row, t + width // 2] = (np.hanning(length) / length
                                            * np.exp(2j * np.pi * centre * t / rate))
        # the transform is only needed at the frame times: one matrix product per octave
        step = max(1, hop >> octave)
        padded = np.pad(signal, (width // 2, width))
        starts = step * np.arange(frames)
        starts = starts[starts < len(signal)]
        power = np.abs(padded[starts[:, None] + np.arange(width)] @ kernels.T) ** 2
        columns.append(np.pad(power, ((0, frames - len(power)), (0, 0)))[:, ::-1])
        signal = resample_poly(signal, 1, 2)
    return np.concatenate(columns, axis=1)[:, ::-1]


def cqcc(x: np.ndarray) -> np.ndarray:
    """CQCC 1-19: mean and standard deviation, and the deltas' standard deviation (57 numbers)."""
    per_octave, octaves = 24, 8
    power = _constant_q_power(x, octaves, per_octave)
    level = 10 * np.log10(power.sum(axis=1) + 1e-12)
    log_power = np.log(power[level > level.max() - 50.0] + 1e-12)
    # uniform resampling (Todisco et al.): 16 points in the lowest octave, doubling upwards
    geometric = 31.25 * 2 ** (np.arange(octaves * per_octave) / per_octave)
    uniform = np.linspace(geometric[0], geometric[-1], 16 * (2**octaves - 1))
    # interpolation then DCT is one linear map: fold both into a (192, 19) matrix
    interpolation = np.array([np.interp(uniform, geometric, column)
                              for column in np.eye(len(geometric))])
    projection = dct(interpolation, type=2, axis=1, norm="ortho")[:, 1:20]
    coefficients = log_power @ projection
    if len(coefficients) < 3:
        return np.zeros(57)
    return np.r_[coefficients.mean(axis=0), coefficients.std(axis=0),
                 np.diff(coefficients, axis=0).std(axis=0)]


BLOCKS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "voicing (CPP, HNR, jitter)": voicing,
    "modified group delay": group_delay,
    "bicoherence": bicoherence,
    "sub-band flatness": subband_flatness,
    "CQCC": cqcc,
}
