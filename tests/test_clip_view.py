"""The clip view: a second SVM on a clip's mean window features, joined to the window mean."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepfake_audio import Detector
from deepfake_audio.audio import load_audio
from deepfake_audio.clip_view import CLIP_VIEW_FILE, ClipView, fit_view, window_means
from deepfake_audio.datasets import load_dataset
from deepfake_audio.exceptions import ModelIntegrityError
from deepfake_audio.feature_table import extract_dataset
from deepfake_audio.features import FeatureConfig, extract
from deepfake_audio.model import METADATA_FILE, load_model
from deepfake_audio.training import TrainSettings, train

SETTINGS = TrainSettings(augment_copies=0, calibration_folds=3, clip_view=0.35)


@pytest.fixture(scope="module")
def view_model(two_corpora, tmp_path_factory):
    out = tmp_path_factory.mktemp("clip_view") / "model"
    metadata = train(two_corpora, out, settings=SETTINGS, progress=False, model_id="view-test")
    return out, metadata


def test_training_stores_the_rule_and_hashed_arrays(view_model):
    directory, metadata = view_model
    stored = json.loads((directory / METADATA_FILE).read_text())
    assert stored["clip_view"]["weight"] == 0.35
    assert stored["artefacts"][CLIP_VIEW_FILE]
    assert metadata.clip_view is not None and metadata.clip_view.window_scale > 0
    for compiled in (True, False):
        loaded = load_model(directory, compiled=compiled)
        assert loaded.clip_view is not None and loaded.metadata.clip_view == metadata.clip_view


def test_view_arrays_equal_scikit_learn(two_corpora):
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    table = extract_dataset(two_corpora, FeatureConfig(), max_windows=6, progress=False)
    means = window_means(table, len(two_corpora))
    arrays = fit_view(two_corpora, table, SETTINGS)
    labels = np.array([c.label for c in two_corpora])[means.clip_index]
    scaler = StandardScaler().fit(means.matrix)
    svm = SVC(C=SETTINGS.C, gamma="scale", class_weight="balanced",
              random_state=SETTINGS.seed).fit(scaler.transform(means.matrix), labels)
    np.testing.assert_allclose(arrays.decision_values(means.matrix),
                               svm.decision_function(scaler.transform(means.matrix)),
                               rtol=1e-9, atol=1e-9)
    # A clip's row is the mean of its windows.
    first = table.matrix[table.clip_index == means.clip_index[0]].mean(axis=0)
    np.testing.assert_allclose(means.matrix[0], first, rtol=1e-6)


def test_detector_raw_score_joins_the_window_mean_and_the_view(view_model, two_corpora):
    directory, metadata = view_model
    detector = Detector(directory, speech_gate=False)
    model = load_model(directory)
    assert metadata.clip_view is not None and model.clip_view is not None
    for clip in (two_corpora[0], two_corpora[-1]):
        result = detector.analyze(clip.path)
        audio = load_audio(clip.path, target_sr=metadata.features.sample_rate)
        matrix = extract(audio.samples, metadata.features).matrix
        window_mean = float(model.decision_values(matrix).mean())
        view = float(model.clip_view.decision_values(matrix.mean(axis=0)[None, :])[0])
        expected = float(metadata.clip_view.combine(window_mean, view))
        assert result.raw_score == pytest.approx(expected, abs=1e-5)
        assert result.raw_score != pytest.approx(window_mean, abs=1e-5)
        # The timeline keeps the window models' own scores.
        assert [w.raw_score for w in result.timeline] == pytest.approx(
            model.decision_values(matrix).tolist(), abs=1e-5)


def test_a_tampered_view_is_refused(view_model, tmp_path):
    import shutil

    directory = tmp_path / "copy"
    shutil.copytree(view_model[0], directory)
    data = bytearray((directory / CLIP_VIEW_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01
    (directory / CLIP_VIEW_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError):
        load_model(directory)


def test_rule_keeps_window_units_and_round_trips():
    rule = ClipView(0.35, window_center=-0.2, window_scale=0.5, view_center=1.0, view_scale=2.0)
    assert ClipView.from_dict(rule.to_dict()) == rule
    # At the view's centre the raw score is the window mean pulled towards its centre.
    assert float(rule.combine(0.8, 1.0)) == pytest.approx(-0.2 + 0.65 * 1.0)
    assert float(ClipView(0.0, -0.2, 0.5, 1.0, 2.0).combine(0.8, 9.0)) == pytest.approx(0.8)
    with pytest.raises(ValueError):
        ClipView(1.5, 0.0, 1.0, 0.0, 1.0)


def test_models_without_a_view_score_the_window_mean(tiny_data, tmp_path):
    clips = load_dataset(tiny_data)
    train(clips, tmp_path / "m", progress=False,
          settings=TrainSettings(augment_copies=0, calibration_folds=3, clip_view=0.0))
    assert not (tmp_path / "m" / CLIP_VIEW_FILE).exists()
    model = load_model(tmp_path / "m")
    assert model.clip_view is None and model.metadata.clip_view is None
    assert model.clip_raw_score(0.25, np.ones(3)) == 0.25


def test_held_out_protocols_hold_the_view_out_too(view_model, two_corpora, tmp_path):
    """``evaluate --protocol unseen`` retrains the clip view per fold and joins it."""
    import shutil

    from deepfake_audio.clip_view import view_settings
    from deepfake_audio.evaluation import evaluate
    from deepfake_audio.held_out import unseen_scores

    directory, metadata = view_model
    assert metadata.clip_view is not None
    with_view = evaluate(two_corpora, "unseen", model_dir=directory, progress=False)
    # The same folder without its clip view: the window models' own held-out scores.
    plain = tmp_path / "plain"
    shutil.copytree(directory, plain)
    stored = json.loads((plain / METADATA_FILE).read_text())
    del stored["clip_view"], stored["artefacts"][CLIP_VIEW_FILE]
    (plain / METADATA_FILE).write_text(json.dumps(stored))
    (plain / CLIP_VIEW_FILE).unlink()
    window = evaluate(two_corpora, "unseen", model_dir=plain, progress=False)
    table = extract_dataset(two_corpora, metadata.features, max_windows=SETTINGS.max_windows,
                            progress=False)
    view = unseen_scores(two_corpora, window_means(table, len(two_corpora)),
                         view_settings(SETTINGS), progress=False)
    np.testing.assert_allclose(with_view.scores,
                               metadata.clip_view.combine(window.scores, view), atol=1e-9)
    assert not np.allclose(with_view.scores, window.scores)
