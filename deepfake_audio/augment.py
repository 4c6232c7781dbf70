"""Training-time augmentation: channel and codec perturbations of a clip.

Used by :mod:`deepfake_audio.feature_table` for the augmented training copies, so the
model cannot key on one corpus's recording chain. Every codec comes from the libsndfile
inside ``soundfile``.
"""

from __future__ import annotations

import io

import numpy as np

from .audio import resample

AUGMENTATIONS = ("none", "codec", "bandlimit", "noise", "reverb", "telephone")
# (container, subtype) pairs libsndfile encodes; the narrowband ones model phone lines.
_WIDEBAND_CODECS = (("MP3", None), ("OGG", "OPUS"), ("OGG", "VORBIS"))
_NARROWBAND_CODECS = (("WAV", "ULAW"), ("WAV", "ALAW"), ("WAV", "GSM610"), ("WAV", "G721_32"),
                      ("WAV", "NMS_ADPCM_24"), ("OGG", "OPUS"))


def _codec_round_trip(y: np.ndarray, sample_rate: int, container: str, subtype: str | None,
                      rng: np.random.Generator) -> np.ndarray:
    import soundfile as sf

    buffer = io.BytesIO()
    level = float(rng.uniform(0.3, 0.95)) if container in ("MP3", "OGG") else None
    sf.write(buffer, np.clip(y, -1.0, 1.0), sample_rate, format=container, subtype=subtype,
             compression_level=level)
    buffer.seek(0)
    decoded, _ = sf.read(buffer, dtype="float32")
    return np.pad(decoded, (0, max(0, len(y) - len(decoded))))[: len(y)]


#: Share of augmented copies that also get a faint noise floor (:func:`_add_floor`).
FLOOR_SHARE = 0.5


def _add_floor(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """White or pink noise 45-75 dB below the signal.

    Synthetic speech often has digital silence between words, genuine recordings never:
    without this a model learns "no noise floor" as the mark of a synthetic voice, and
    any TTS played through a real channel (or a faint hiss) then passes as genuine.
    """
    noise = rng.standard_normal(len(y)).astype(np.float32)
    if rng.random() < 0.5:
        noise = np.cumsum(noise)
        noise -= np.convolve(noise, np.ones(256) / 256, mode="same")
    snr_db = rng.uniform(45, 75)
    signal_power = float(np.mean(y**2)) + 1e-12
    noise *= np.sqrt(signal_power / (10 ** (snr_db / 10)) / (np.mean(noise**2) + 1e-12))
    return (y + noise).astype(np.float32)


def augment(
    samples: np.ndarray, sample_rate: int, kind: str, rng: np.random.Generator
) -> np.ndarray:
    """Channel/codec perturbation so the model cannot key on one corpus's recording chain.

    ``codec``: MP3, Opus or Vorbis round trip at a random bit rate; ``telephone``: 8 kHz,
    a random 200-400 to 3200-3600 Hz band-pass and a narrowband codec (mu-law, A-law,
    GSM 06.10, G.721, NMS ADPCM, Opus); ``bandlimit``: resample through
    8/11.025/12 kHz; ``noise``: white or pink noise at 15–40 dB SNR; ``reverb``: a
    synthetic exponentially decaying room response. Half of every kind but ``noise``
    also get a faint noise floor (45-75 dB SNR). Gain is randomised for all.
    """
    y = samples.astype(np.float32, copy=True)
    y /= np.max(np.abs(y)) + 1e-9
    if kind == "codec":
        container, subtype = _WIDEBAND_CODECS[rng.integers(len(_WIDEBAND_CODECS))]
        y = _codec_round_trip(y, sample_rate, container, subtype, rng)
    elif kind == "telephone":
        from scipy.signal import butter, sosfilt

        narrow = resample(y, sample_rate, 8000)
        band = butter(4, [rng.uniform(200, 400), rng.uniform(3200, 3600)], btype="band",
                      fs=8000, output="sos")
        narrow = sosfilt(band, narrow).astype(np.float32)
        narrow *= np.float32(0.5 / (np.max(np.abs(narrow)) + 1e-9))
        container, subtype = _NARROWBAND_CODECS[rng.integers(len(_NARROWBAND_CODECS))]
        narrow = _codec_round_trip(narrow, 8000, container, subtype, rng)
        y = resample(narrow, 8000, sample_rate)
        y = np.pad(y, (0, max(0, len(samples) - len(y))))[: len(samples)]
    elif kind == "bandlimit":
        low = int(rng.choice([8000, 11025, 12000]))
        y = resample(resample(y, sample_rate, low), low, sample_rate)[: len(samples)]
    elif kind == "noise":
        noise = rng.standard_normal(len(y)).astype(np.float32)
        if rng.random() < 0.5:  # pink-ish: integrate white noise, remove drift
            noise = np.cumsum(noise)
            noise -= np.convolve(noise, np.ones(256) / 256, mode="same")
        snr_db = rng.uniform(15, 40)
        signal_power = float(np.mean(y**2)) + 1e-12
        noise *= np.sqrt(signal_power / (10 ** (snr_db / 10)) / (np.mean(noise**2) + 1e-12))
        y = y + noise
    elif kind == "reverb":
        rt60 = rng.uniform(0.15, 0.6)
        n = int(rt60 * sample_rate)
        ir = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / n)
        ir[0] = 1.0
        from scipy.signal import fftconvolve  # direct convolution with ~10k taps is slow

        y = fftconvolve(y, ir / np.sqrt(np.sum(ir**2)), mode="full")[: len(y)].astype(np.float32)
    elif kind != "none":
        raise ValueError(f"unknown augmentation {kind!r}")
    if kind not in ("none", "noise") and rng.random() < FLOOR_SHARE:
        y = _add_floor(y, rng)
    y *= np.float32(10 ** (rng.uniform(-20, 0) / 20) / (np.max(np.abs(y)) + 1e-9))
    return y


__all__ = ["AUGMENTATIONS", "augment"]
