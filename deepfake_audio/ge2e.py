"""GE2E speaker encoder (Resemblyzer's weights) in numpy.

A port of Resemblyzer's ``VoiceEncoder`` (Corentin Jemine / Resemble AI,
Apache-2.0): 40-band power mel spectrogram (25 ms window, 10 ms hop, 16 kHz),
utterance cut into 1.6 s partials about 50 % overlapped, a 3-layer LSTM with 256
hidden units, the last layer's final hidden state projected to 256 dimensions,
ReLU and L2 normalisation; the utterance embedding is the normalised mean of
its partials. Before that, Resemblyzer's preprocessing: volume raised to
-30 dBFS (never lowered) and silences longer than ~0.2 s cut with WebRTC VAD.
``scripts/convert_ge2e.py`` turned the original ``pretrained.pt`` into
``models/speaker/ge2e.npz``; ``tests/test_ge2e.py`` checks this port against
embeddings computed with the original.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .filterbanks import mel_filterbank
from .safe_pickle import load_checked_arrays

logger = logging.getLogger("deepfake_audio")

SAMPLE_RATE = 16_000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s
PARTIAL_RATE = 1.3  # partials per second: 77-frame step, ~50 % overlap
MIN_COVERAGE = 0.75
# Up to this many partials, one vector-matrix product each per step beats one small
# matrix product (OpenBLAS's kernels for 2 or 3 rows are slower than 2 or 3 products).
_ROW_BY_ROW = 3
VAD_WINDOW = 480  # 30 ms
VAD_AVERAGE_WIDTH = 8
VAD_MAX_SILENCE = 6
TARGET_DBFS = -30.0
INT16_MAX = 2**15 - 1
HIDDEN = 256

ENCODER_DIR = Path(__file__).parent / "models" / "speaker"


@dataclass(frozen=True)
class Embedding:
    """Speaker embedding of one recording.

    Attributes
    ----------
    vector : numpy.ndarray
        L2-normalised utterance embedding, shape ``(256,)``.
    partials : numpy.ndarray
        L2-normalised embeddings of the 1.6 s partials, shape ``(n, 256)``.
    speech_s : float
        Seconds of audio the voice-activity detector kept.
    """

    vector: np.ndarray
    partials: np.ndarray
    speech_s: float

    def fewer(self, max_partials: int) -> Embedding:
        """The embedding from at most ``max_partials`` of its partials, spread evenly: what
        :meth:`GE2EEncoder.embed` returns with ``max_partials`` (partials are independent)."""
        if len(self.partials) <= max_partials:
            return self
        partials = self.partials[spread(len(self.partials), max_partials)]
        mean = partials.mean(axis=0)
        return Embedding(mean / np.linalg.norm(mean), partials, self.speech_s)


def spread(count: int, at_most: int) -> np.ndarray:
    """Indices of at most ``at_most`` of ``count`` items, evenly spread, first and last kept."""
    if count <= at_most:
        return np.arange(count)
    return np.round(np.linspace(0, count - 1, at_most)).astype(int)


def normalize_volume(wav: np.ndarray) -> np.ndarray:
    """Raise the level to -30 dBFS RMS; louder audio is left alone (Resemblyzer's rule)."""
    rms = float(np.sqrt(np.mean((wav.astype(np.float64) * INT16_MAX) ** 2)))
    if rms == 0.0:
        return wav
    change = TARGET_DBFS - 20 * np.log10(rms / INT16_MAX)
    return wav if change < 0 else (wav * 10 ** (change / 20)).astype(np.float32)


def trim_long_silences(wav: np.ndarray) -> np.ndarray:
    """Keep voiced 30 ms windows (WebRTC VAD, mode 3, smoothed and dilated) as Resemblyzer does."""
    import webrtcvad

    wav = wav[: len(wav) - len(wav) % VAD_WINDOW]
    pcm = np.round(wav * INT16_MAX).astype(np.int16).tobytes()
    vad = webrtcvad.Vad(3)
    step = VAD_WINDOW * 2
    flags = np.array(
        [vad.is_speech(pcm[i : i + step], SAMPLE_RATE) for i in range(0, len(pcm), step)],
        dtype=float,
    )
    if flags.size == 0:
        return wav
    padded = np.concatenate(
        (np.zeros((VAD_AVERAGE_WIDTH - 1) // 2), flags, np.zeros(VAD_AVERAGE_WIDTH // 2))
    )
    summed = np.cumsum(padded)
    summed[VAD_AVERAGE_WIDTH:] = summed[VAD_AVERAGE_WIDTH:] - summed[:-VAD_AVERAGE_WIDTH]
    mask = np.round(summed[VAD_AVERAGE_WIDTH - 1 :] / VAD_AVERAGE_WIDTH).astype(bool)
    # Binary dilation by VAD_MAX_SILENCE + 1 windows (odd, centred; no scipy.ndimage import).
    width = VAD_MAX_SILENCE + 1
    full = np.convolve(mask, np.ones(width))
    mask = full[width // 2 : width // 2 + len(mask)] > 0
    return wav[np.repeat(mask, VAD_WINDOW)]


def partial_slices(n_samples: int, max_partials: int | None = None) -> list[slice]:
    """Mel-frame ranges of the partials covering ``n_samples`` (Resemblyzer's rule).

    With ``max_partials``, at most that many of them, spread evenly over the recording.
    """
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    frame_step = round(SAMPLE_RATE / PARTIAL_RATE / HOP)
    steps = max(1, n_frames - PARTIAL_FRAMES + frame_step + 1)
    slices = [slice(i, i + PARTIAL_FRAMES) for i in range(0, steps, frame_step)]
    last = slices[-1]
    coverage = (n_samples - last.start * HOP) / (PARTIAL_FRAMES * HOP)
    if coverage < MIN_COVERAGE and len(slices) > 1:
        slices.pop()
    if max_partials is not None:
        slices = [slices[i] for i in spread(len(slices), max_partials)]
    return slices


class GE2EEncoder:
    """The numpy GE2E encoder; load once with :func:`load_encoder`."""

    def __init__(self, weights: dict[str, np.ndarray], encoder_id: str) -> None:
        self.encoder_id = encoder_id
        # PyTorch's gate order is (i, f, g, o); (i, f, o, g) makes one sigmoid and one tanh
        # slice. sigmoid(x) = (1 + tanh(x / 2)) / 2, and halving is exact in float32, so the
        # sigmoid gates' weights are halved here and one tanh per step serves all four.
        order = np.r_[0:512, 768:1024, 512:768]
        scale = np.r_[np.full(3 * HIDDEN, 0.5), np.ones(HIDDEN)].astype(np.float32)
        self._w_input = [np.ascontiguousarray(weights[f"lstm_weight_ih_l{k}"][order].T * scale)
                         for k in range(3)]
        self._w_recurrent = [
            np.ascontiguousarray(weights[f"lstm_weight_hh_l{k}"][order].T * scale)
            for k in range(3)]
        self._bias = [(weights[f"lstm_bias_ih_l{k}"] + weights[f"lstm_bias_hh_l{k}"])[order]
                      * scale for k in range(3)]
        self._proj_w = np.ascontiguousarray(weights["linear_weight"].T)
        self._proj_b = weights["linear_bias"]
        # librosa's defaults, as Resemblyzer calls it (no librosa import: see features.py).
        self._mel_basis = mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS)
        self._window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(
            np.float32)

    def mel(self, wav: np.ndarray) -> np.ndarray:
        """Power mel spectrogram, ``(frames, 40)``, as ``librosa.feature.melspectrogram``."""
        return self._mel_of_padded(np.pad(wav.astype(np.float32), N_FFT // 2))

    def _mel_of_padded(self, padded: np.ndarray) -> np.ndarray:
        n_frames = 1 + (len(padded) - N_FFT) // HOP
        frames = np.lib.stride_tricks.as_strided(
            padded, shape=(n_frames, N_FFT), strides=(padded.strides[0] * HOP, padded.strides[0])
        )
        spectrum = np.abs(np.fft.rfft(frames * self._window, axis=1)) ** 2
        return (spectrum.astype(np.float32) @ self._mel_basis.T).astype(np.float32)

    def embed_partials(self, mels: np.ndarray) -> np.ndarray:
        """Embeddings of a batch of partial spectrograms ``(batch, frames, 40)``."""
        batch, steps, _ = mels.shape
        hidden = HIDDEN
        # Layer by layer, time-major: each layer's input projection is one large matrix
        # product over every step, and the step loop multiplies by the 1 MB recurrent
        # matrix only, which stays in cache (the three layers' 6 MB together do not).
        sequence = np.ascontiguousarray(mels.astype(np.float32).transpose(1, 0, 2))
        for w_input, w_recurrent, bias in zip(self._w_input, self._w_recurrent, self._bias,
                                              strict=True):
            inputs = (sequence.reshape(steps * batch, -1) @ w_input).reshape(steps, batch, -1)
            inputs += bias
            h = np.zeros((batch, hidden), np.float32)
            c = np.zeros((batch, hidden), np.float32)
            outputs = np.empty((steps, batch, hidden), np.float32)
            # Preallocated and updated in place: at a few partials the step loop's
            # element-wise calls cost as much as its matrix products.
            gates = np.empty((batch, 4 * hidden), np.float32)
            product = np.empty((batch, hidden), np.float32)
            sig = gates[:, : 3 * hidden]
            in_gate, forget_gate, out_gate = (sig[:, k * hidden : (k + 1) * hidden]
                                              for k in range(3))
            cell_input = gates[:, 3 * hidden :]
            for t in range(steps):
                if batch <= _ROW_BY_ROW:
                    for row in range(batch):
                        np.matmul(h[row], w_recurrent, out=gates[row])
                else:
                    np.matmul(h, w_recurrent, out=gates)
                gates += inputs[t]
                np.tanh(gates, out=gates)
                sig *= 0.5
                sig += 0.5
                c *= forget_gate
                np.multiply(in_gate, cell_input, out=product)
                c += product
                h = outputs[t]
                np.tanh(c, out=product)
                np.multiply(out_gate, product, out=h)
            sequence = outputs
        raw = np.maximum(h @ self._proj_w + self._proj_b, 0.0)
        return raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)

    def embed(self, samples: np.ndarray, max_partials: int | None = None) -> Embedding:
        """Embed mono float samples at 16 kHz (any level, silences included).

        Parameters
        ----------
        samples : numpy.ndarray
            Mono audio at :data:`SAMPLE_RATE`.
        max_partials : int, optional
            Embed at most this many 1.6 s partials, spread evenly over the speech
            (all of them by default, as Resemblyzer does).

        Returns
        -------
        Embedding
            ``speech_s`` is 0 when the voice-activity detector found no speech; the
            embedding is then computed from the whole signal and is not meaningful.
        """
        wav = trim_long_silences(normalize_volume(samples.astype(np.float32)))
        speech_s = len(wav) / SAMPLE_RATE
        if len(wav) < HOP:
            wav = samples.astype(np.float32)
        slices = partial_slices(len(wav), max_partials)
        end = slices[-1].stop * HOP
        if end >= len(wav):
            wav = np.pad(wav, (0, end - len(wav)))
        padded = np.pad(wav.astype(np.float32), N_FFT // 2)
        if len(slices) * PARTIAL_FRAMES < len(padded) // HOP:
            # A few partials of a longer recording: only their frames.
            mels = np.stack([self._mel_of_padded(padded[s.start * HOP : (s.stop - 1) * HOP + N_FFT])
                             for s in slices])
        else:  # overlapping partials: one spectrogram, sliced
            mel = self._mel_of_padded(padded)
            mels = np.stack([mel[s] for s in slices])
        partials = self.embed_partials(mels)
        mean = partials.mean(axis=0)
        return Embedding(mean / np.linalg.norm(mean), partials, speech_s)


@lru_cache(maxsize=2)
def load_encoder(directory: Path = ENCODER_DIR) -> GE2EEncoder:
    """Load and hash-check the converted weights (cached per directory).

    Raises
    ------
    ModelLoadError
        ``ge2e.json`` or the weights are missing.
    ModelIntegrityError
        The weights' SHA-256 differs from ``ge2e.json``.
    """
    meta, weights = load_checked_arrays(directory, "ge2e.json", "the speaker encoder")
    return GE2EEncoder(weights, meta["encoder_id"])
