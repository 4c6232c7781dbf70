"""Speaker-reference check: profiles, hygiene warnings, fusion, Detector integration."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from deepfake_audio import (
    ModelIntegrityError,
    SpeakerProfile,
    SpeakerReferenceError,
    load_audio,
)
from deepfake_audio.ge2e import ENCODER_DIR, SAMPLE_RATE
from deepfake_audio.speaker import SpeakerVerifier
from deepfake_audio.speaker_scoring import fuse, load_params, probe_partials

DATA = Path(__file__).parent / "data"
SPEAKER_150 = DATA / "real_librispeech_150.flac"  # 12.3 s, LibriSpeech speaker 150


@pytest.fixture(scope="module")
def halves() -> tuple[np.ndarray, np.ndarray]:
    """Two different sentences of speaker 150 (first and second half of one utterance)."""
    samples = load_audio(SPEAKER_150, target_sr=SAMPLE_RATE).samples
    middle = len(samples) // 2
    return samples[:middle], samples[middle:]


@pytest.fixture(scope="module")
def profile_150(halves) -> SpeakerProfile:
    return SpeakerProfile.from_sources([(halves[0], SAMPLE_RATE)], name="speaker 150")


def test_profile_round_trips_through_a_small_json_file(profile_150, tmp_path):
    path = profile_150.save(tmp_path / "s150.profile")
    data = json.loads(path.read_text())
    assert data["format"] == "deepfake-audio-speaker-profile" and data["version"] == 1
    assert path.stat().st_size < 20_000
    loaded = SpeakerProfile.load(path)
    assert loaded.name == "speaker 150"
    assert loaded.count == 1 and loaded.speech_seconds == profile_150.speech_seconds
    assert loaded.encoder_id == profile_150.encoder_id
    np.testing.assert_allclose(loaded.embeddings, profile_150.embeddings, atol=1e-6)


@pytest.mark.parametrize("content, message", [
    ("not json", "not a readable"),
    ('{"format": "something else"}', "not a deepfake-audio speaker profile"),
    ('{"format": "deepfake-audio-speaker-profile", "version": 99}', "version 99"),
    ('{"format": "deepfake-audio-speaker-profile", "version": 1, "name": "x", "encoder": "e",'
     ' "references": [{"source": "a", "speech_s": 1, "embedding": [1, 2]}]}', "(n >= 1, 256)"),
])
def test_bad_profile_files_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.profile"
    path.write_text(content)
    with pytest.raises(SpeakerReferenceError, match=message):
        SpeakerProfile.load(path)


def test_same_speaker_scores_higher_than_another_speaker(profile_150, halves, real_clip):
    verifier = SpeakerVerifier()
    same = verifier.compare(verifier.embed(halves[1]), profile_150, 0.1)
    other_audio = load_audio(real_clip, target_sr=SAMPLE_RATE).samples
    other = verifier.compare(verifier.embed(other_audio), profile_150, 0.1)
    assert same.similarity > other.similarity
    assert same.probability_same_speaker > 0.5 > other.probability_same_speaker
    assert same.references == {"count": 1, "speech_seconds": profile_150.speech_seconds}
    assert "voice matches the references: " in same.summary()


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def test_fusion_raises_on_a_mismatch_and_lowers_a_little_on_a_match():
    params = load_params()
    rule = (params.weight, params.margin, 1.0, params.match_weight, params.match_margin)
    for p_art in (0.05, 0.3, 0.7):
        assert fuse(p_art, 0.01, *rule) > p_art
        matched = fuse(p_art, 0.99, *rule)
        assert matched <= p_art
        # everywhere: the logit moves by the mismatch term minus the match term
        for p_same in (0.02, 0.3, 0.6, 0.9, 0.97):
            expected = (params.weight * max(0.0, -_logit(p_same) - params.margin)
                        - params.match_weight * max(0.0, _logit(p_same) - params.match_margin))
            assert _logit(fuse(p_art, p_same, *rule)) - _logit(p_art) == pytest.approx(
                expected, abs=1e-6)
    values = [fuse(0.2, p, *rule) for p in np.linspace(0.01, 0.99, 30)]
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(values))
    assert any(a > b + 1e-6 for a, b in itertools.pairwise(values))
    # the script's grid evaluates arrays: the same numbers
    grid = np.linspace(0.01, 0.99, 30)
    assert np.allclose(fuse(np.full(30, 0.2), grid, *rule), values, rtol=0, atol=1e-12)
    # short probes count less: at reliability 0 the artefact score stands
    assert fuse(0.3, 0.01, params.weight, params.margin, 0.0, params.match_weight,
                params.match_margin) == pytest.approx(0.3)


def test_parameters_fitted_before_the_match_term_keep_the_one_sided_rule(tmp_path):
    from deepfake_audio.speaker_scoring import params_digest

    target = tmp_path / "speaker"
    shutil.copytree(ENCODER_DIR, target)
    data = json.loads((target / "speaker.json").read_text())
    for key in ("match_weight", "match_margin"):
        del data["params"][key]
    data["sha256"] = params_digest(data["params"])
    (target / "speaker.json").write_text(json.dumps(data))
    old = load_params(target)
    assert (old.match_weight, old.match_margin) == (0.0, 0.0)
    assert fuse(0.3, 0.999, old.weight, old.margin) == pytest.approx(0.3)


def test_short_references_warn_and_a_fragment_is_an_error(halves):
    short = SpeakerProfile.from_sources([(halves[0][: 2 * SAMPLE_RATE], SAMPLE_RATE)])
    assert any("only" in w and "speech" in w for w in short.warnings)
    with pytest.raises(SpeakerReferenceError, match="too little"):
        SpeakerProfile.from_sources([(halves[0][SAMPLE_RATE: SAMPLE_RATE + 6400], SAMPLE_RATE)])
    with pytest.raises(SpeakerReferenceError):
        SpeakerProfile.from_files([])


def test_synthetic_reference_is_flagged(detector, fake_clip):
    profile = detector.speaker_profile([fake_clip])
    assert any("scores as synthetic" in w for w in profile.warnings)
    assert profile.references[0].probability_deepfake > 0.5


def test_two_voices_in_one_reference_are_flagged(halves, real_clip):
    other = load_audio(real_clip, target_sr=SAMPLE_RATE).samples
    mixed = np.concatenate([halves[0], other])
    profile = SpeakerProfile.from_sources([(mixed, SAMPLE_RATE)])
    assert any("more than one voice" in w for w in profile.warnings)
    clean = SpeakerProfile.from_sources([(halves[0], SAMPLE_RATE)])
    assert not any("more than one voice" in w for w in clean.warnings)


def test_detector_without_references_is_unchanged(detector, real_clip):
    result = detector.analyze(real_clip)
    assert result.speaker is None
    assert "speaker" not in result.to_dict()


def test_detector_with_references(detector, real_clip, profile_150, tmp_path):
    plain = detector.analyze(SPEAKER_150)
    checked = detector.analyze(SPEAKER_150, references=profile_150)
    assert checked.speaker is not None
    assert checked.speaker.probability_artefacts == pytest.approx(plain.probability_deepfake,
                                                                  abs=1e-4)
    # the same voice: a clear match, which may only lower the probability, by the rule
    assert checked.speaker.probability_same_speaker > 0.9
    assert checked.probability_deepfake <= plain.probability_deepfake + 1e-9
    assert checked.probability_deepfake == pytest.approx(SpeakerVerifier().fuse(
        checked.speaker.probability_artefacts, checked.speaker.probability_same_speaker,
        checked.speaker.speech_seconds), abs=1e-4)
    assert checked.raw_score == plain.raw_score
    data = checked.to_dict()
    assert data["speaker"]["references"]["count"] == 1
    assert list(data)[:3] == ["classification", "confidence", "raw_score"]
    # references as files (paths and bytes) give the same comparison as a profile of them
    ref = tmp_path / "ref.flac"
    shutil.copy(real_clip, ref)
    by_path = detector.analyze(SPEAKER_150, references=[ref])
    by_bytes = detector.analyze(SPEAKER_150, references=[ref.read_bytes()])
    assert by_path.speaker.similarity == pytest.approx(by_bytes.speaker.similarity, abs=1e-4)
    assert by_path.speaker.similarity < checked.speaker.similarity


def test_profile_from_another_encoder_is_refused(detector, profile_150):
    from dataclasses import replace

    alien = replace(profile_150, encoder_id="other-encoder")
    with pytest.raises(SpeakerReferenceError, match="other-encoder"):
        detector.analyze(SPEAKER_150, references=alien)


def test_tampered_speaker_parameters_are_refused(tmp_path):
    target = tmp_path / "speaker"
    shutil.copytree(ENCODER_DIR, target)
    data = json.loads((target / "speaker.json").read_text())
    data["params"]["weight"] = data["params"]["weight"] + 1.0
    (target / "speaker.json").write_text(json.dumps(data))
    with pytest.raises(ModelIntegrityError):
        load_params(target)


@pytest.mark.parametrize(("seconds", "partials"),
                         [(3.0, 2), (11.9, 2), (12.0, 3), (20.0, 5), (24.0, 6), (3600.0, 6)])
def test_a_checked_recording_uses_a_few_partials_growing_with_its_length(seconds, partials):
    assert probe_partials(seconds) == partials


def test_the_check_embeds_the_recording_from_fewer_partials_than_a_reference():
    verifier = SpeakerVerifier()
    samples = load_audio(DATA / "real_librispeech_150.flac", target_sr=16_000).samples
    probe, reference = verifier.embed_probe(samples), verifier.embed(samples)
    assert len(probe.partials) == probe_partials(len(samples) / 16_000) < len(reference.partials)
    assert float(probe.vector @ reference.vector) > 0.9
