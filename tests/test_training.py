"""Datasets, training, evaluation and augmentation on tiny generated data."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from deepfake_audio import Detector
from deepfake_audio.augment import AUGMENTATIONS, augment
from deepfake_audio.clip_view import CLIP_VIEW_FILE
from deepfake_audio.datasets import Clip, load_dataset
from deepfake_audio.exceptions import DatasetError, TrainingError
from deepfake_audio.features import FeatureConfig
from deepfake_audio.held_out import unseen_scores
from deepfake_audio.metrics import (
    equal_error_rate,
    group_balanced_weights,
    per_group_table,
    source_label_key,
)
from deepfake_audio.model import Calibration, ModelMetadata
from deepfake_audio.training import TrainSettings, train
from tests.helpers.tiny_dataset import RATES, fake_samples, real_samples


@pytest.fixture(scope="module")
def tiny_model(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_model") / "model"
    clips = load_dataset(tiny_data)
    metadata = train(clips, out, settings=TrainSettings(augment_copies=0, calibration_folds=3),
                     progress=False, model_id="tiny-test")
    return out, metadata


# --------------------------------------------------------------------------- datasets


def test_load_dataset_from_manifest(tiny_data):
    clips = load_dataset(tiny_data)  # the folder's manifest.csv wins over real/ fake/
    assert len(clips) == 24
    assert sum(c.label for c in clips) == 12
    first = clips[0]
    assert isinstance(first, Clip)
    assert first.path == tiny_data / "real" / "spk0" / "real00.wav"
    assert (first.label, first.source, first.generator, first.speaker) == (
        0, "noisecorpus", "human", "real-spk0")
    assert all(c.path.is_file() for c in clips)
    assert load_dataset(tiny_data / "manifest.csv") == clips


def test_load_dataset_from_folders(tmp_path, gen):
    gen.write(tmp_path / "real" / "a.wav", gen.noise(16000, 1.0), 16000)
    gen.write(tmp_path / "real" / "corpusx" / "b.flac", gen.noise(16000, 1.0), 16000)
    gen.write(tmp_path / "fake" / "vocoder1" / "c.mp3", gen.speechlike(16000, 1.0), 16000)
    (tmp_path / "fake" / "readme.txt").write_text("ignored")
    clips = load_dataset(tmp_path)
    by_name = {c.path.name: c for c in clips}
    assert set(by_name) == {"a.wav", "b.flac", "c.mp3"}
    assert (by_name["a.wav"].label, by_name["a.wav"].source) == (0, "real")
    assert (by_name["b.flac"].label, by_name["b.flac"].source) == (0, "corpusx")
    assert (by_name["c.mp3"].label, by_name["c.mp3"].generator) == (1, "vocoder1")
    assert by_name["b.flac"].generator == "human"


def test_load_dataset_errors(tmp_path):
    with pytest.raises(DatasetError):
        load_dataset(tmp_path)  # neither manifest nor real/ fake/
    (tmp_path / "real").mkdir()
    with pytest.raises(DatasetError, match="no audio clips"):
        load_dataset(tmp_path)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nx.wav,maybe\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="unknown label"):
        load_dataset(manifest)


def test_manifest_corpus_and_family_columns(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,label,source,generator,corpus,family\n"
        "a.wav,real,calls-8k,human,calls,\n"
        "b.wav,fake,x,voc-phone,,voc\n"
        "c.wav,real,librispeech-resampled-22k,human,,\n"  # the shared corpus's naming
        "d.wav,fake,y,bigvgan-tel8k,,\n"
        "e.wav,fake,z,plain,,\n"
        "f.wav,fake,z,tensorflowtts-fastspeech2-tel8k,,\n", encoding="utf-8")  # README's alias
    clips = load_dataset(manifest)
    assert [(c.corpus, c.family) for c in clips] == [
        ("calls", "human"), ("x", "voc"), ("librispeech", "human"), ("y", "bigvgan"),
        ("z", "plain"), ("z", "fastspeech2")]
    assert Clip(Path("f"), 1, "src", "gen").family == "gen"  # defaults: the columns themselves


def test_manifest_label_synonyms(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\na.wav,bonafide\nb.wav,Spoof\nc.wav, genuine\n",
                        encoding="utf-8")
    assert [c.label for c in load_dataset(manifest)] == [0, 1, 0]


# --------------------------------------------------------------------------- training


def test_train_writes_a_model_the_detector_loads(tiny_model):
    out, metadata = tiny_model
    assert sorted(p.name for p in out.iterdir()) == [
        "boosting.npz", "clip_view.npz", "compiled.npz", "model.json", "scaler.pkl",
        "svm_model.pkl"]  # no plot
    detector = Detector(out)
    assert detector.model_id == "tiny-test"
    assert detector._model.verified and detector._model.compiled is not None
    saved = json.loads((out / "model.json").read_text(encoding="utf-8"))
    assert saved["metrics"]["out_of_fold"]["n"] == 24
    assert metadata.fusion is not None and detector._model.boosting is not None
    assert saved["fusion"] == metadata.fusion.to_dict()
    assert saved["training"]["settings"]["augment_copies"] == 0
    assert saved["decision_threshold"] == pytest.approx(metadata.decision_threshold)
    p = float(metadata.calibration.probability_deepfake(metadata.decision_threshold))
    assert p == pytest.approx(0.5, abs=1e-6)


def test_trained_model_separates_unseen_clips(tiny_model, gen):
    detector = Detector(tiny_model[0], speech_gate=False)  # noise vs tones: no speech
    for i in range(12, 20):  # new seeds, same families and rates as the training clips
        sr = RATES[i % len(RATES)]
        real = detector.analyze((real_samples(gen, i, sr), sr))
        fake = detector.analyze((fake_samples(gen, i, sr), sr))
        assert real.classification == "real", real
        assert fake.classification == "deepfake", fake
        assert fake.raw_score > real.raw_score


def test_training_metrics_are_sane(tiny_model):
    summary = tiny_model[1].metrics["out_of_fold"]
    assert summary["eer"] <= 0.1
    assert summary["roc_auc"] >= 0.9
    assert 0.0 <= summary["brier"] <= 0.25


def test_training_needs_both_classes(tiny_data, tmp_path):
    real_only = [c for c in load_dataset(tiny_data) if c.label == 0]
    with pytest.raises(DatasetError, match="both"):
        train(real_only, tmp_path / "m", settings=TrainSettings(augment_copies=0),
              progress=False)


def test_training_needs_two_speakers_per_class(tiny_data, tmp_path):
    clips = load_dataset(tiny_data)
    one_fake_speaker = [c for c in clips if c.label == 0 or c.speaker == "fake-spk0"]
    with pytest.raises(DatasetError, match="at least 2 speakers"):
        train(one_fake_speaker, tmp_path / "m", settings=TrainSettings(augment_copies=0),
              progress=False)


@pytest.mark.parametrize("bad", [{"C": 0}, {"gamma": -1.0}, {"gamma": "big"},
                                 {"augment_copies": -1}, {"calibration_folds": 1},
                                 {"calibration": "sometimes"}, {"prior_deepfake": 0.0},
                                 {"prior_deepfake": 1.0}])
def test_train_settings_are_validated_on_construction(bad):
    with pytest.raises(TrainingError, match="invalid training settings"):
        TrainSettings(**bad)


def test_training_data_errors_come_before_any_feature(tiny_data, tmp_path, monkeypatch):
    from deepfake_audio import training

    def no_features(*args, **kwargs):
        raise AssertionError("features extracted before the data was checked")

    monkeypatch.setattr(training, "extract_dataset", no_features)
    clips = [c for c in load_dataset(tiny_data) if c.label == 0 or c.speaker == "fake-spk0"]
    with pytest.raises(DatasetError, match="at least 2 speakers"):
        train(clips, tmp_path / "m", settings=TrainSettings(augment_copies=0), progress=False)


def test_train_cli_maps_data_errors_to_exit_2(tiny_data, tmp_path, capsys):
    from deepfake_audio.cli import main

    code = main(["train", str(tiny_data), "-o", str(tmp_path / "m"), "-q",
                 "--exclude-generator", "harmonic"])
    assert code == 2
    assert capsys.readouterr().err.strip() == "error: training needs both real and fake clips"
    assert not (tmp_path / "m").exists()


def test_evaluate_cli_prints_eer(tiny_data, tiny_model, cli_commands, cli_env, tmp_path):
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [*cli_commands["module"], "evaluate", str(tiny_data), "--model", str(tiny_model[0]),
         "-q", "--no-speech-gate", "--output", str(report)],
        capture_output=True, text=True, env=cli_env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"^EER: (\d+\.\d+)%$", proc.stdout, re.MULTILINE)
    assert match, proc.stdout
    assert float(match.group(1)) <= 10.0
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["model"] == "tiny-test"
    assert data["summary"]["n"] == 24
    assert data["summary"]["eer"] == pytest.approx(float(match.group(1)) / 100, abs=5e-5)


def test_evaluate_json_flag_prints_the_report(tiny_data, tiny_model, capsys):
    from deepfake_audio.cli import main

    code = main(["evaluate", str(tiny_data), "--model", str(tiny_model[0]), "-q", "--json",
                 "--no-speech-gate"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)  # stdout holds the JSON and nothing else
    assert (data["model"], data["protocol"], data["data"]) == ("tiny-test", "model",
                                                               [str(tiny_data)])
    assert data["summary"]["n"] == 24 and 0 <= data["summary"]["balanced_eer"] <= 1
    assert {row["group"] for row in data["per_generator"]} == {"human", "harmonic"}


def test_evaluate_returns_a_report(tiny_data, tiny_model):
    from deepfake_audio.evaluation import evaluate

    report = evaluate(load_dataset(tiny_data), "model", model_dir=tiny_model[0], progress=False,
                      speech_gate=False)
    assert report.model == "tiny-test" and report.summary["n"] == len(report.scores) == 24
    assert set(report.to_dict()) == {"protocol", "model", "summary", "per_generator",
                                     "per_source"}
    assert report.summary["eer"] == equal_error_rate(report.labels, report.scores)[0]


def test_stored_settings_without_boosting_mean_an_svm_only_model():
    assert TrainSettings().boosting
    assert not TrainSettings.from_stored({"C": 3.0, "unknown": 1}).boosting
    assert TrainSettings.from_stored({"boosting": True, "C": 3.0}) == TrainSettings(
        C=3.0, clip_view=0.0, prior_deepfake=0.5)


def test_the_default_settings_are_the_bundled_models_recipe():
    from deepfake_audio.model import load_model

    stored = load_model().metadata.training["settings"]
    assert TrainSettings.from_stored(stored) == TrainSettings()  # deepfake-audio train


def test_the_default_recipe_has_a_clip_view_that_older_models_lack():
    assert TrainSettings().clip_view == 0.35  # what train_default.py trains
    assert TrainSettings.from_stored({"boosting": True}).clip_view == 0.0
    assert TrainSettings.from_stored({"clip_view": 0.5}).clip_view == 0.5


def test_train_cli_no_boosting_writes_an_svm_only_model(tiny_data, tmp_path):
    from deepfake_audio.cli import main

    assert main(["train", str(tiny_data), "-o", str(tmp_path / "m"), "-q", "--augment", "0",
                 "--no-boosting"]) == 0
    assert not (tmp_path / "m" / "boosting.npz").exists()
    assert "fusion" not in json.loads((tmp_path / "m" / "model.json").read_text("utf-8"))
    assert Detector(tmp_path / "m")._model.boosting is None


def test_train_cli_clip_view_weight(tiny_data, tmp_path, monkeypatch, capsys):
    from deepfake_audio.cli import main

    assert main(["train", str(tiny_data), "-o", str(tmp_path / "default"), "-q",
                 "--augment", "0"]) == 0
    stored = json.loads((tmp_path / "default" / "model.json").read_text("utf-8"))
    assert stored["clip_view"]["weight"] == 0.35
    assert (tmp_path / "default" / CLIP_VIEW_FILE).is_file()

    monkeypatch.setenv("DEEPFAKE_AUDIO_CLIP_VIEW", "0")
    assert main(["train", str(tiny_data), "-o", str(tmp_path / "none"), "-q",
                 "--augment", "0"]) == 0
    assert not (tmp_path / "none" / CLIP_VIEW_FILE).exists()
    assert Detector(tmp_path / "none")._model.clip_view is None

    assert main(["train", str(tiny_data), "-o", str(tmp_path / "bad"), "-q",
                 "--clip-view", "1.5"]) == 2
    assert "clip_view must be between 0 and 1" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_platt_prior_shifts_only_the_intercept_by_the_prior_log_odds():
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(-1, 1, 300), rng.normal(1, 1, 200)])
    labels = np.repeat([0, 1], [300, 200])
    even = Calibration.fit(scores, labels)
    calibration = Calibration.fit(scores, labels, 0.2)
    assert calibration.prior_deepfake == 0.2 and even.prior_deepfake == 0.5
    assert calibration.a == pytest.approx(even.a) and calibration.a < 0
    # posterior odds = likelihood ratio x prior odds: 0.2 / 0.8 against 1 / 1
    assert calibration.b - even.b == pytest.approx(np.log(4))
    for score in (-1.0, 0.0, 2.0):
        p = float(calibration.probability_deepfake(score))
        q = float(even.probability_deepfake(score))
        assert p / (1 - p) == pytest.approx(q / (1 - q) / 4)
    # a lower prior raises the threshold
    assert calibration.raw_score_at(0.5) > even.raw_score_at(0.5)


def test_train_cli_prior_deepfake_moves_the_threshold(tiny_data, tmp_path, monkeypatch, capsys):
    from deepfake_audio.cli import main

    assert main(["train", str(tiny_data), "-o", str(tmp_path / "default"), "-q",
                 "--augment", "0", "--no-boosting", "--clip-view", "0"]) == 0
    monkeypatch.setenv("DEEPFAKE_AUDIO_PRIOR_DEEPFAKE", "0.5")
    assert main(["train", str(tiny_data), "-o", str(tmp_path / "even"), "-q",
                 "--augment", "0", "--no-boosting", "--clip-view", "0"]) == 0
    default, even = (ModelMetadata.from_dict(json.loads((tmp_path / name / "model.json")
                                                        .read_text("utf-8")))
                     for name in ("default", "even"))
    assert default.calibration.prior_deepfake == 0.4 and even.calibration.prior_deepfake == 0.5
    assert default.calibration.a == pytest.approx(even.calibration.a)
    assert default.decision_threshold > even.decision_threshold
    assert float(default.calibration.probability_deepfake(default.decision_threshold)) == \
        pytest.approx(0.5)
    assert main(["train", str(tiny_data), "-o", str(tmp_path / "bad"), "-q",
                 "--prior-deepfake", "1"]) == 2
    assert "prior_deepfake must be between 0 and 1" in capsys.readouterr().err


def test_training_calibrates_on_unseen_corpora_and_generators(two_corpora, tmp_path):
    metadata = train(two_corpora, tmp_path / "m", progress=False,
                     settings=TrainSettings(augment_copies=0, calibration_folds=3))
    assert metadata.metrics["protocol"].startswith("genuine clips leave-one-corpus-out")
    assert metadata.metrics["calibration"]["n"] == 24
    assert metadata.training["settings"]["calibration"] == "unseen"
    p = float(metadata.calibration.probability_deepfake(metadata.decision_threshold))
    assert p == pytest.approx(0.5, abs=1e-6)
    detector = Detector(tmp_path / "m", speech_gate=False)
    assert detector.analyze(two_corpora[0].path).classification == "real"


def test_unseen_window_scores_use_the_models_fusion(two_corpora, tmp_path):
    from deepfake_audio.evaluation import unseen_window_scores

    metadata = train(two_corpora, tmp_path / "m", progress=False,
                     settings=TrainSettings(augment_copies=0, calibration_folds=3))
    assert metadata.fusion is not None
    scores = unseen_window_scores(two_corpora, model_dir=tmp_path / "m", progress=False)
    assert all(len(w) == len(s) > 0 for w, s in zip(scores.windows, scores.spans, strict=True))
    assert np.isfinite(np.concatenate(scores.windows)).all()
    # Fused with the model's constants, the clip means sit on its raw-score scale: the
    # held-out fakes (tones) above its threshold, the genuine noise below.
    above = scores.clip_scores > metadata.decision_threshold
    np.testing.assert_array_equal(above, scores.labels == 1)


def test_unseen_window_components_hold_out_a_corpus_with_its_fakes(two_corpora, tmp_path):
    """Every-window scoring uses the same fold models as the clip-level ``unseen`` protocol:
    a genuine corpus leaves training together with the fakes made from it."""
    from deepfake_audio.evaluation import unseen_window_components
    from deepfake_audio.feature_table import extract_dataset

    # Each fake claims the genuine corpus of its speaker group, as vocoded LJSpeech does.
    clips = [Clip(c.path, c.label, c.corpus.replace("tonecorpus", "noisecorpus"), c.generator,
                  c.speaker) for c in two_corpora]
    assert {c.corpus for c in clips if c.label} == {c.corpus for c in clips if not c.label}
    settings = TrainSettings(augment_copies=0, calibration_folds=3)
    train(clips, tmp_path / "m", progress=False, settings=settings)
    table = extract_dataset(clips, FeatureConfig(), progress=False)
    assert np.bincount(table.clip_index).max() <= settings.max_windows  # table = all windows

    components = unseen_window_components(clips, model_dir=tmp_path / "m", progress=False)
    means = np.array([w.mean(axis=0) for w in components.windows])
    assert means.shape == (len(clips), 2)
    expected = unseen_scores(clips, table, settings, progress=False)
    np.testing.assert_allclose(means, expected, rtol=1e-9, atol=1e-9)

    # A recipe change (scripts/window_fusion_check.py --svm-c) retrains the folds with it.
    tighter = dataclasses.replace(settings, C=0.01)
    changed = unseen_window_components(clips, model_dir=tmp_path / "m", progress=False,
                                       settings=tighter)
    changed_means = np.array([w.mean(axis=0) for w in changed.windows])
    np.testing.assert_allclose(changed_means, unseen_scores(clips, table, tighter,
                                                            progress=False), rtol=1e-9, atol=1e-9)
    assert not np.allclose(changed_means[:, 0], means[:, 0])


def test_training_without_two_corpora_falls_back_to_speaker_cv(tiny_model):
    metadata = tiny_model[1]
    assert metadata.metrics["protocol"].startswith("3-fold cross-validation grouped by speaker")
    assert metadata.metrics["calibration"] == metadata.metrics["out_of_fold"]


def test_evaluate_unseen_protocol(tmp_path, two_corpora, tiny_model, cli_commands, cli_env):
    manifest = tmp_path / "two.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "source", "generator", "speaker"])
        for c in two_corpora:
            writer.writerow([c.path, "fake" if c.label else "real", c.source, c.generator,
                             c.speaker])
    proc = subprocess.run(
        [*cli_commands["module"], "evaluate", str(manifest), "--model", str(tiny_model[0]),
         "--protocol", "unseen", "-q", "--cache", str(tmp_path / "cache")],
        capture_output=True, text=True, env=cli_env, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^EER: \d+\.\d+%$", proc.stdout, re.MULTILINE), proc.stdout
    assert re.search(r"^  balanced   \d+\.\d+%", proc.stdout, re.MULTILINE), proc.stdout
    assert "harmonic-a" in proc.stdout and "harmonic-b" in proc.stdout
    assert len(list((tmp_path / "cache").glob("*.npz"))) == len(two_corpora)


@pytest.mark.parametrize("protocol", ["unseen", "leave-one-corpus-out",
                                      "leave-one-generator-out"])
def test_evaluate_refuses_a_protocol_the_data_cannot_support(
    tiny_data, tiny_model, cli_commands, cli_env, protocol
):
    proc = subprocess.run(
        [*cli_commands["module"], "evaluate", str(tiny_data), "--model", str(tiny_model[0]),
         "--protocol", protocol, "-q"],
        capture_output=True, text=True, env=cli_env, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr  # a data error, not a bad audio file
    assert "at least 2" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# --------------------------------------------------------------------------- metrics


def test_equal_error_rate_separable():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([-3.0, -2.0, -1.5, -1.0, 1.0, 1.5, 2.0, 3.0])
    eer, threshold = equal_error_rate(labels, scores)
    assert eer == 0.0
    assert -1.0 < threshold <= 1.0


def test_equal_error_rate_one_error_each_side():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    eer, threshold = equal_error_rate(labels, scores)
    assert eer == pytest.approx(0.25)
    assert threshold == pytest.approx(0.6)


def test_weighted_equal_error_rate_counts_groups_not_clips():
    clips = ([Clip(Path(f"a{i}"), 0, "big") for i in range(8)] + [Clip(Path("b"), 0, "small")]
             + [Clip(Path(f"f{i}"), 1, "x", "gen") for i in range(3)])
    weights = group_balanced_weights(clips)
    np.testing.assert_allclose(weights[:8].sum(), weights[8])
    np.testing.assert_allclose(weights[9:].sum(), 1.0)
    labels = np.array([c.label for c in clips])
    # The one "small" genuine clip scores above every fake: 1 of 9 clips, but half the corpora.
    scores = np.array([-1.0] * 8 + [5.0] + [1.0, 2.0, 3.0])
    assert equal_error_rate(labels, scores)[0] < 0.2
    assert equal_error_rate(labels, scores, weights)[0] == pytest.approx(0.5, abs=0.2)


def test_per_source_rows_split_sources_that_hold_both_labels():
    clips = [Clip(Path("a"), 0, "corpus"), Clip(Path("b"), 1, "corpus", "vocoder"),
             Clip(Path("c"), 0, "other"), Clip(Path("d"), 1, "tts", "engine")]
    rows = per_group_table(clips, np.array([-1.0, -0.5, 1.0, 2.0]), 0.0,
                           source_label_key(clips))
    by_group = {r["group"]: r for r in rows}
    assert set(by_group) == {"corpus (real)", "corpus (fake)", "other", "tts"}
    assert by_group["corpus (real)"]["correct"] == 1.0  # not averaged with the missed fake
    assert by_group["corpus (fake)"]["correct"] == 0.0


def test_equal_error_rate_inverted_and_degenerate():
    labels = np.array([0, 0, 1, 1])
    assert equal_error_rate(labels, np.array([2.0, 1.0, -1.0, -2.0]))[0] == 1.0
    eer, threshold = equal_error_rate(np.array([1, 1, 1]), np.array([0.1, 0.2, 0.3]))
    assert np.isnan(eer) and np.isnan(threshold)


# --------------------------------------------------------------------------- augmentation


@pytest.mark.parametrize("kind", AUGMENTATIONS)
@pytest.mark.parametrize("sr", [16000, 22050])
def test_augment_keeps_length_and_finiteness(gen, kind, sr):
    y = gen.speechlike(sr, 1.3, seed=11).astype(np.float32)
    out = augment(y, sr, kind, np.random.default_rng(0))
    assert out.shape == y.shape
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert 0.05 < np.max(np.abs(out)) <= 1.0 + 1e-6


@pytest.mark.parametrize("kind", AUGMENTATIONS)
def test_augment_is_seeded(gen, kind):
    y = gen.speechlike(16000, 1.0, seed=12).astype(np.float32)
    first = augment(y, 16000, kind, np.random.default_rng(7))
    second = augment(y, 16000, kind, np.random.default_rng(7))
    np.testing.assert_array_equal(first, second)


def test_augment_changes_the_signal(gen):
    y = gen.speechlike(16000, 1.0, seed=13).astype(np.float32)
    for kind in AUGMENTATIONS[1:]:
        out = augment(y, 16000, kind, np.random.default_rng(1))
        normalised = out / np.max(np.abs(out)) * np.max(np.abs(y))
        assert not np.allclose(normalised, y, atol=1e-3), kind


def test_augment_rejects_unknown_kind(gen):
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment(gen.tone(16000).astype(np.float32), 16000, "vinyl", np.random.default_rng())


def test_telephone_augmentation_is_narrowband(gen):
    """Whatever codec it draws, nothing survives above the 8 kHz line's 4 kHz Nyquist."""
    y = gen.noise(16000, 1.0, seed=14).astype(np.float32)
    for seed in range(8):
        out = augment(y, 16000, "telephone", np.random.default_rng(seed))
        spectrum = np.abs(np.fft.rfft(out)) ** 2
        freqs = np.fft.rfftfreq(len(out), 1 / 16000)
        above = spectrum[freqs > 4200].sum() / spectrum.sum()
        assert above < 1e-3, (seed, above)
        assert spectrum[(freqs > 500) & (freqs < 3000)].sum() / spectrum.sum() > 0.5
