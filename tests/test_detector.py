"""Detector: verdicts, sign convention, calibration, timeline, every input kind."""

from __future__ import annotations

import copy
import dataclasses
import io
import itertools
import json

import numpy as np
import pytest
import soundfile as sf

from deepfake_audio import AnalysisResult, Detector, WindowScore
from deepfake_audio.exceptions import (
    AudioTooLongError,
    AudioTooShortError,
    InputError,
    ModelLoadError,
    UnsupportedFormatError,
)
from deepfake_audio.features import extract
from deepfake_audio.model import DEFAULT_MODEL_DIR, load_model


@pytest.fixture(scope="module")
def results(detector, real_clip, fake_clip, gen) -> list[AnalysisResult]:
    """A spread of verdicts: the two bundled clips plus generated signals."""
    sources = [real_clip, fake_clip,
               (gen.speechlike(16000, 2.5, seed=1), 16000),
               (gen.speechlike(22050, 2.0, seed=3) + gen.noise(22050, 2.0, seed=2), 22050),
               (gen.speechlike(8000, 1.0, seed=4), 8000)]
    return [detector.analyze(s) for s in sources]


def with_threshold(detector: Detector, threshold: float) -> Detector:
    """A cheap copy sharing the loaded model (Detector keeps the threshold as an attribute)."""
    other = copy.copy(detector)
    other.threshold = threshold
    return other


# --------------------------------------------------------------------------- the result


def test_result_is_frozen(results):
    result = results[0]
    assert dataclasses.is_dataclass(result)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.classification = "deepfake"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.timeline[0].raw_score = 0.0  # type: ignore[misc]
    assert isinstance(result.timeline, tuple)
    assert all(isinstance(w, WindowScore) for w in result.timeline)


def test_to_dict_leads_with_the_three_service_keys_and_is_json(results):
    for result in results:
        data = result.to_dict()
        assert list(data)[:3] == ["classification", "confidence", "raw_score"]
        decoded = json.loads(json.dumps(data))
        assert decoded["classification"] in {"real", "deepfake"}
        assert decoded["raw_score"] == pytest.approx(result.raw_score)
        assert len(decoded["timeline"]) == len(result.timeline)
        assert set(decoded["timeline"][0]) == {"start_s", "end_s", "raw_score",
                                               "probability_deepfake", "classification"}
        assert "timeline" not in result.to_dict(timeline=False)


def test_source_family_splits_the_deepfake_probability(results, detector):
    families = detector.metadata.source_families
    assert set(families) == {"classic-tts", "neural-vocoder", "zero-shot-tts",
                             "voice-conversion"}
    for result in results:
        shares = result.to_dict()["source_family"]
        assert list(shares) == ["genuine", *families]
        assert shares["genuine"] == pytest.approx(1 - result.probability_deepfake, abs=1e-5)
        assert sum(shares.values()) == pytest.approx(1.0, abs=1e-4)
        assert all(0 <= v <= 1 for v in shares.values())


def test_sign_convention(results, detector):
    for result in results:
        assert result.threshold == detector.threshold
        assert (result.raw_score > result.threshold) == (result.classification == "deepfake")
        assert result.is_deepfake == (result.classification == "deepfake")
        for window in result.timeline:
            assert (window.raw_score > result.threshold) == (window.classification == "deepfake")
    assert {r.classification for r in results} == {"real", "deepfake"}


def test_confidence_is_the_calibrated_probability_of_the_verdict(results, detector):
    calibration = detector.metadata.calibration
    for result in results:
        p = result.probability_deepfake
        assert p == pytest.approx(float(calibration.probability_deepfake(result.raw_score)))
        assert 0.5 <= result.confidence <= 1.0
        expected = p if result.classification == "deepfake" else 1.0 - p
        assert result.confidence == pytest.approx(expected)
        assert result.calibrated


def test_verdict_is_the_rule_behind_every_result(results, detector):
    for result in results:
        verdict = detector.verdict(result.raw_score)
        assert verdict.to_dict() == {k: result.to_dict()[k] for k in verdict.to_dict()}
    assert detector.verdict(detector.threshold).classification == "real"  # strictly above
    assert detector.verdict(detector.threshold + 1e-9).classification == "deepfake"


def test_probability_grows_with_raw_score(results):
    ordered = sorted(results, key=lambda r: r.raw_score)
    probabilities = [r.probability_deepfake for r in ordered]
    assert probabilities == sorted(probabilities)


def test_raw_score_joins_the_window_mean_and_the_clip_view(detector, gen):
    """The bundled model's raw score: its speech windows' mean score joined to the clip
    view's score of their mean feature vector (docs/model-card.md, "File score")."""
    samples = gen.speechlike(16000, 12.0, seed=6)
    result = detector.analyze((samples, 16000))
    assert len(result.timeline) > 1
    speech = np.array([w.raw_score is not None for w in result.timeline])
    assert speech.any()
    window_mean = float(np.mean([w.raw_score for w in result.timeline if w.raw_score is not None]))
    matrix = extract(samples, detector.feature_config).matrix[speech]
    model = load_model()
    assert model.clip_view is not None
    assert result.raw_score == pytest.approx(model.clip_raw_score(window_mean, matrix.mean(axis=0)),
                                             abs=1e-6)
    assert result.raw_score != pytest.approx(window_mean, abs=1e-3)


def test_threshold_override(detector, fake_clip, real_clip):
    fake = detector.analyze(fake_clip)
    assert fake.classification == "deepfake"
    strict = with_threshold(detector, fake.raw_score + 0.5).analyze(fake_clip)
    assert strict.classification == "real"
    assert strict.threshold == pytest.approx(fake.raw_score + 0.5)
    assert strict.raw_score == pytest.approx(fake.raw_score)
    assert strict.probability_deepfake == pytest.approx(fake.probability_deepfake)
    assert strict.confidence == pytest.approx(1 - strict.probability_deepfake)
    real = detector.analyze(real_clip)
    lax = with_threshold(detector, real.raw_score - 0.5).analyze(real_clip)
    assert lax.classification == "deepfake"


def test_threshold_constructor_argument(fake_clip):
    detector = Detector(threshold=1e6)
    assert detector.threshold == 1e6
    assert detector.analyze(fake_clip).classification == "real"


# --------------------------------------------------------------------------- timeline


def _assert_covers(result: AnalysisResult) -> None:
    spans = [(w.start_s, w.end_s) for w in result.timeline]
    assert spans[0][0] == 0.0
    assert spans[-1][1] == pytest.approx(result.duration_s, abs=0.011)
    for (s0, e0), (s1, e1) in itertools.pairwise(spans):
        assert s0 < s1 <= e0 <= e1, "windows must be in order and leave no gaps"


def test_timeline_covers_the_clip(results):
    for result in results:
        assert result.timeline
        _assert_covers(result)


def test_sixty_second_clip_has_many_windows(detector, gen):
    y = np.concatenate([gen.speechlike(16000, 30.0, seed=7), gen.noise(16000, 30.0, seed=8)])
    result = detector.analyze((y, 16000))
    assert result.duration_s == pytest.approx(60.0)
    assert len(result.timeline) >= 30  # 3 s windows every 1.5 s
    _assert_covers(result)
    assert all(w.end_s - w.start_s == pytest.approx(3.0, abs=0.011) for w in result.timeline)
    scored = [w for w in result.timeline if w.classification != "no-speech"]
    assert scored and all(0.0 <= w.probability_deepfake <= 1.0 for w in scored)
    # The second half is noise only: its windows are not scored.
    assert all(w.classification == "no-speech" for w in result.timeline if w.start_s >= 30.5)


def test_short_clip_is_one_window(detector, gen):
    samples = gen.speechlike(16000, 1.0)
    result = detector.analyze((samples, 16000))
    assert len(result.timeline) == 1
    window = result.timeline[0].raw_score
    assert window is not None
    features = extract(samples, detector.feature_config).matrix[0]
    assert result.raw_score == pytest.approx(load_model().clip_raw_score(window, features),
                                             abs=1e-6)


# --------------------------------------------------------------------------- the bundled clips


@pytest.mark.parametrize(("clip_name", "expected"), [("real_clip", "real"),
                                                     ("fake_clip", "deepfake")])
def test_bundled_clips_every_input_kind(detector, request, clip_name, expected):
    path = request.getfixturevalue(clip_name)
    data = path.read_bytes()
    float_samples, sr = sf.read(path, dtype="float32")
    int_samples, _ = sf.read(path, dtype="int16")
    with open(path, "rb") as handle:
        from_handle = detector.analyze(handle)
    results = {
        "path": detector.analyze(path),
        "str": detector.analyze(str(path)),
        "bytes": detector.analyze(data),
        "bytesio": detector.analyze(io.BytesIO(data)),
        "handle": from_handle,
        "array": detector.analyze((float_samples, sr)),
        "int16": detector.analyze((int_samples, sr)),
        "stereo": detector.analyze((np.stack([float_samples, float_samples]), sr)),
    }
    reference = results["path"]
    for kind, result in results.items():
        assert result.classification == expected, kind
        assert result.raw_score == pytest.approx(reference.raw_score, abs=1e-4), kind
        assert result.sample_rate == sr
    # Calibrated on corpora and generators held out of training, so even clear cases get
    # moderate probabilities; the raw score is well away from the threshold.
    assert reference.confidence > 0.65
    assert abs(reference.raw_score - detector.threshold) > 0.5


def test_bundled_clips_match_their_readme(real_clip, fake_clip):
    readme = (real_clip.parent / "README.md").read_text(encoding="utf-8")
    assert real_clip.name in readme and fake_clip.name in readme
    assert "CC BY 4.0" in readme
    assert sf.info(real_clip).duration <= 8.0 and sf.info(fake_clip).duration <= 8.0
    assert sf.info(real_clip).format == "FLAC" and sf.info(fake_clip).format == "WAV"


# --------------------------------------------------------------------------- limits and errors


def test_duration_limits_are_the_detectors(gen):
    detector = Detector(max_duration_s=2.0, min_duration_s=1.0)
    wav = gen.encode(gen.speechlike(16000, 3.0), 16000)
    with pytest.raises(AudioTooLongError, match="--max-duration"):
        detector.analyze(wav)
    with pytest.raises(AudioTooShortError):
        detector.analyze(gen.encode(gen.speechlike(16000, 0.5), 16000))
    assert detector.analyze(gen.encode(gen.speechlike(16000, 1.5), 16000)).duration_s == 1.5


def test_input_errors_propagate(detector, gen):
    with pytest.raises(UnsupportedFormatError):
        detector.analyze(gen.encode(gen.speechlike(16000), 16000), file_type=".docx")
    with pytest.raises(InputError):
        detector.analyze(b"\x00" * 100)


def test_warm_up_and_repr(detector):
    result = detector.warm_up()
    assert result.classification in {"real", "deepfake"}
    assert detector.model_id in repr(detector)


def test_from_dir_and_missing_model(tmp_path):
    assert Detector.from_dir(DEFAULT_MODEL_DIR).model_dir == DEFAULT_MODEL_DIR
    with pytest.raises(ModelLoadError):
        Detector(tmp_path / "missing")


def test_results_are_deterministic(detector, fake_clip):
    first, second = detector.analyze(fake_clip), detector.analyze(fake_clip)
    assert first == second


def test_file_analysed_in_blocks_equals_whole_clip(detector, gen, tmp_path):
    """A file decoded and scored block by block gives the result of the whole clip."""
    y = gen.speechlike(16000, 14.0, seed=4).astype(np.float32)
    path = tmp_path / "clip.flac"
    sf.write(path, y, 16000, subtype="PCM_24")
    whole = detector.analyze_audio(detector.decode(path))
    streamed = detector.analyze(path)
    assert streamed.classification == whole.classification
    assert streamed.raw_score == pytest.approx(whole.raw_score, abs=1e-6)
    assert streamed.duration_s == whole.duration_s
    assert [w.start_s for w in streamed.timeline] == [w.start_s for w in whole.timeline]
