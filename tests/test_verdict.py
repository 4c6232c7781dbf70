"""The three-way verdict: the band, flagged segments and the segment rule; fitting the band."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepfake_audio import Detector, Segment
from deepfake_audio.detector import SEGMENT_MIN_S, flagged_segments, sustained
from deepfake_audio.exceptions import ConfigurationError, ModelLoadError
from deepfake_audio.metrics import band_summary, fit_band
from deepfake_audio.model import UNCALIBRATED, ModelMetadata
from tests.helpers.artefacts import copy_default, read_meta, write_meta


@pytest.fixture(scope="module")
def no_band_dir(tmp_path_factory):
    """The bundled model with any band removed from its model.json."""
    directory = copy_default(tmp_path_factory.mktemp("noband"))
    meta = read_meta(directory)
    meta.pop("band", None)
    write_meta(directory, meta)
    return directory


@pytest.fixture(scope="module")
def banded(detector) -> Detector:
    t = detector.threshold
    return Detector(band=(t - 0.5, t + 0.5))


@pytest.fixture(scope="module")
def call(gen, real_clip, fake_clip):
    """A genuine 'call' (the real clip eight times) with 7.8 s of the fake clip spliced in
    after 4 copies, and the times where the insert starts and ends."""
    from deepfake_audio.audio import load_audio

    real = load_audio(real_clip, target_sr=16000).samples
    fake = load_audio(fake_clip, target_sr=16000).samples
    start = 4 * len(real) / 16000
    samples = np.concatenate([real] * 4 + [fake, fake] + [real] * 4)
    return (samples, 16000), start, start + 2 * len(fake) / 16000


def test_model_without_band_is_never_inconclusive(no_band_dir):
    det = Detector(no_band_dir)
    assert det.band == (det.threshold, det.threshold)
    for raw in np.linspace(det.threshold - 3, det.threshold + 3, 61):
        verdict = det.verdict(raw)
        assert verdict.verdict == verdict.classification


def test_band_gives_three_answers_and_never_contradicts_classification(banded):
    t = banded.threshold
    cases = {t + 0.6: ("deepfake", "deepfake"), t + 0.2: ("deepfake", "inconclusive"),
             t: ("real", "inconclusive"), t - 0.2: ("real", "inconclusive"),
             t - 0.5: ("real", "real"), t - 0.6: ("real", "real")}
    for raw, (classification, verdict) in cases.items():
        got = banded.verdict(raw)
        assert (got.classification, got.verdict) == (classification, verdict), raw
        assert got.to_dict()["verdict"] == verdict


def test_band_must_contain_the_threshold(detector):
    t = detector.threshold
    with pytest.raises(ConfigurationError, match="must contain the threshold"):
        Detector(band=(t + 0.1, t + 1.0))
    with pytest.raises(ValueError):  # ConfigurationError is a ValueError too
        Detector(band=(t - 1.0, t - 0.1))


def test_model_band_is_read_from_model_json_and_widened_for_a_threshold_override(
        tmp_path, no_band_dir):
    directory = copy_default(tmp_path)
    meta = read_meta(no_band_dir)
    t = meta["decision_threshold"]
    meta["band"] = {"low": t - 0.25, "high": t + 0.75}
    write_meta(directory, meta)
    assert Detector(directory).band == pytest.approx((t - 0.25, t + 0.75))
    assert Detector(directory, threshold=t + 2).band == pytest.approx((t - 0.25, t + 2))
    assert Detector(directory, band=(t - 1, t + 1)).band == (t - 1, t + 1)


def test_band_round_trips_and_is_validated_in_metadata(no_band_dir):
    meta = read_meta(no_band_dir)
    t = meta["decision_threshold"]
    with_band = ModelMetadata.from_dict({**meta, "band": {"low": t - 1, "high": t + 2}})
    assert with_band.band == (t - 1, t + 2)
    assert ModelMetadata.from_dict(json.loads(json.dumps(with_band.to_dict()))) == with_band
    assert "band" not in ModelMetadata.from_dict(meta).to_dict()
    with pytest.raises(ModelLoadError, match="does not contain the decision threshold"):
        ModelMetadata.from_dict({**meta, "band": {"low": t + 1, "high": t + 2}})


def test_flagged_segments_merge_consecutive_windows():
    spans = [(0.0, 3.0), (1.5, 4.5), (3.0, 6.0), (4.5, 7.5), (6.0, 9.0), (7.0, 10.0)]
    scores = np.array([1.0, 2.0, -1.0, 0.5, 3.0, 1.5])
    segments = flagged_segments(spans, scores, 0.0, UNCALIBRATED)
    assert [(s.start_s, s.end_s) for s in segments] == [(0.0, 4.5), (4.5, 10.0)]
    assert [s.raw_score for s in segments] == pytest.approx([1.5, 5 / 3])
    assert segments[0].probability_deepfake == pytest.approx(1 / (1 + np.exp(-1.5)))
    assert flagged_segments(spans, scores, 5.0, UNCALIBRATED) == ()
    assert segments[0].to_dict() == {"start_s": 0.0, "end_s": 4.5, "raw_score": 1.5,
                                     "probability_deepfake": segments[0].probability_deepfake}


def test_sustained_needs_length_and_strength():
    long_strong = Segment(10.0, 10.0 + SEGMENT_MIN_S, 2.0, 0.9)
    assert sustained([long_strong], SEGMENT_MIN_S, 1.0)
    assert not sustained([long_strong], SEGMENT_MIN_S, 2.0)  # strength must exceed the bar
    assert not sustained([Segment(0.0, SEGMENT_MIN_S - 0.1, 5.0, 0.99)], SEGMENT_MIN_S, 1.0)
    assert not sustained([], SEGMENT_MIN_S, 1.0)


def test_sustained_segment_turns_a_real_mean_inconclusive(banded):
    low, high = banded.band
    strong = Segment(3.0, 3.0 + SEGMENT_MIN_S, high + 1.0, 0.95)
    weak = Segment(3.0, 3.0 + SEGMENT_MIN_S, high - 0.1, 0.6)
    short = Segment(3.0, 3.0 + SEGMENT_MIN_S / 2, high + 1.0, 0.95)
    assert banded.verdict(low - 1.0, [strong]).verdict == "inconclusive"
    assert banded.verdict(low - 1.0, [strong]).classification == "real"
    assert banded.verdict(low - 1.0, [weak, short]).verdict == "real"
    assert banded.verdict(high + 1.0, [strong]).verdict == "deepfake"


def test_analysis_lists_the_insert_as_a_segment(detector, call):
    source, start, end = call
    result = detector.analyze(source)
    assert result.segments, result.timeline
    longest = max(result.segments, key=lambda s: s.duration_s)
    # the flagged run overlaps the insert and stays near it (windows are 3 s long)
    assert longest.start_s < end and longest.end_s > start
    assert longest.start_s >= start - 3.0 and longest.end_s <= end + 3.0
    assert longest.probability_deepfake > 0.5
    flagged = [w for w in result.timeline if w.classification == "deepfake"]
    assert sum(len([w for w in flagged if s.start_s <= w.start_s and w.end_s <= s.end_s])
               for s in result.segments) == len(flagged)
    assert result.verdict != "real"
    data = result.to_dict(timeline=False)
    assert data["verdict"] == result.verdict
    assert data["band"] == list(detector.band)
    assert data["segments"] == [s.to_dict() for s in result.segments]


def test_verdict_of_results_is_the_detector_rule(detector, real_clip, fake_clip):
    for clip in (real_clip, fake_clip):
        result = detector.analyze(clip)
        assert result.verdict == detector.verdict(result.raw_score, result.segments).verdict


def test_fit_band_meets_the_error_bar_on_each_side():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(400, int), np.ones(400, int)]
    scores = np.r_[rng.normal(-1, 1, 400), rng.normal(1, 1, 400)]
    low, high = fit_band(labels, scores, 0.0, max_error=0.10)
    assert low < 0.0 < high
    above, below = scores > high, scores <= low
    assert np.mean(labels[above] == 0) <= 0.10 and np.mean(labels[below] == 1) <= 0.10
    # narrowest: every cut between the threshold and an edge breaks the bar
    for cut in [0.0, *scores[(scores > 0) & (scores < high)]]:
        assert np.mean(labels[scores > cut] == 0) > 0.10
    for cut in [0.0, *scores[(scores < 0) & (scores > low)]]:
        assert np.mean(labels[scores <= cut] == 1) > 0.10
    summary = band_summary(labels, scores, (low, high))
    assert 0 < summary["coverage"] < 1 and summary["accuracy"] >= 0.9
    assert summary["real_called_real"] + summary["real_inconclusive"] <= 1.0
    point = band_summary(labels, scores, (0.0, 0.0))
    assert point["coverage"] == 1.0


def test_fit_band_weighs_the_classes_by_the_calibrations_prior():
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(400, int), np.ones(400, int)]
    scores = np.r_[rng.normal(-1, 1, 400), rng.normal(1, 1, 400)]
    even = fit_band(labels, scores, 0.0, max_error=0.10)
    low, high = fit_band(labels, scores, 0.0, max_error=0.10, prior_deepfake=0.25)
    # fewer fakes expected: "deepfake" needs a higher score, "real" is said sooner
    assert high > even[1] and even[0] < low <= 0.0
    weights = np.where(labels == 1, 0.25 / 400, 0.75 / 400)
    above, below = scores > high, scores <= low
    assert np.average(labels[above] == 0, weights=weights[above]) <= 0.10
    assert np.average(labels[below] == 1, weights=weights[below]) <= 0.10


def test_fit_band_on_separable_scores_is_the_threshold():
    labels = np.r_[np.zeros(50, int), np.ones(50, int)]
    scores = np.r_[np.linspace(-3, -1, 50), np.linspace(1, 3, 50)]
    assert fit_band(labels, scores, 0.0) == (0.0, 0.0)
    assert band_summary(labels, scores, (0.0, 0.0))["accuracy"] == 1.0
