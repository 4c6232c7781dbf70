"""The numpy GE2E port against embeddings computed with Resemblyzer itself."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from deepfake_audio import ModelIntegrityError, load_audio
from deepfake_audio.ge2e import ENCODER_DIR, SAMPLE_RATE, load_encoder, partial_slices

GOLDEN = Path(__file__).parent / "data" / "ge2e_golden.json"


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()


@pytest.mark.parametrize("name", sorted(json.loads(GOLDEN.read_text())["embeddings"]))
def test_port_matches_resemblyzer(encoder, name):
    golden = np.array(json.loads(GOLDEN.read_text())["embeddings"][name])
    audio = load_audio(Path(__file__).parent / "data" / name, target_sr=SAMPLE_RATE)
    embedding = encoder.embed(audio.samples)
    assert embedding.vector.shape == (256,)
    assert float(embedding.vector @ golden) > 0.999
    assert np.all(embedding.vector >= 0)  # ReLU before the norm, as in the original
    assert 0 < embedding.speech_s <= audio.duration_s


def test_partials_overlap_by_about_half():
    slices = partial_slices(10 * SAMPLE_RATE)
    assert all(s.stop - s.start == 160 for s in slices)
    assert {b.start - a.start for a, b in itertools.pairwise(slices)} == {77}
    assert partial_slices(SAMPLE_RATE // 2) == [slice(0, 160)]  # short: one padded partial


def test_silence_has_no_speech(encoder):
    embedding = encoder.embed(np.zeros(3 * SAMPLE_RATE, np.float32))
    assert embedding.speech_s == 0.0


def test_tampered_weights_are_refused(tmp_path):
    target = tmp_path / "speaker"
    shutil.copytree(ENCODER_DIR, target)
    weights = target / "ge2e.npz"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError):
        load_encoder(target)


def test_fewer_partials_are_spread_over_the_recording_and_match_a_direct_embedding(encoder):
    audio = load_audio(Path(__file__).parent / "data" / "real_librispeech_150.flac",
                       target_sr=SAMPLE_RATE)
    every = encoder.embed(audio.samples)
    assert len(every.partials) > 6
    slices = partial_slices(len(audio.samples))
    chosen = partial_slices(len(audio.samples), max_partials=3)
    assert chosen[0] == slices[0] and chosen[-1] == slices[-1] and len(chosen) == 3
    for count in (2, 3, 5):
        direct = encoder.embed(audio.samples, max_partials=count)
        assert direct.partials.shape == (count, 256)
        # partials start from a zero state each: a subset of them, not an approximation
        assert float(direct.vector @ every.fewer(count).vector) > 0.99999
        assert float(direct.vector @ every.vector) > 0.9
    assert every.fewer(len(every.partials)) is every
