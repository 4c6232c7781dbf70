"""Model artefacts: verification before unpickling, the allow-list, legacy folders."""

from __future__ import annotations

import dataclasses
import io
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import joblib
import numpy as np
import pytest
import sklearn
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from deepfake_audio import Detector, model, safe_pickle
from deepfake_audio.boosting import BOOSTING_FILE
from deepfake_audio.clip_view import CLIP_VIEW_FILE
from deepfake_audio.compiled import COMPILED_FILE, compile_model
from deepfake_audio.exceptions import ModelIntegrityError, ModelLoadError
from deepfake_audio.features import FeatureConfig, extract, feature_names
from deepfake_audio.model import (
    DEFAULT_MODEL_DIR,
    FAMILY_FILE,
    METADATA_FILE,
    MODEL_FILE,
    SCALER_FILE,
    ModelMetadata,
    load_model,
    save_model,
    sha256_file,
)
from tests.helpers.artefacts import RunsShell, copy_default, read_meta, replace_artefact, write_meta


def flip_middle_byte(path):
    """One bit of damage in the middle of an artefact."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def forbid_unpickling(monkeypatch):
    def fail(path):
        raise AssertionError(f"{path} was unpickled although verification should have failed")

    monkeypatch.setattr(model, "safe_load_pickle", fail)


# --------------------------------------------------------------------------- bundled model


def test_bundled_model_loads_and_verifies():
    loaded = load_model(compiled=False)
    meta = loaded.metadata
    assert loaded.verified and loaded.compiled is None
    assert loaded.directory == DEFAULT_MODEL_DIR
    assert meta.features == FeatureConfig.from_dict(read_meta(DEFAULT_MODEL_DIR)["features"])
    assert loaded.classifier.n_features_in_ == len(feature_names(meta.features))
    assert loaded.scaler.n_features_in_ == len(feature_names(meta.features))
    assert np.isfinite(meta.decision_threshold)
    assert meta.calibration.method == "platt" and meta.calibration.a < 0  # p rises with score
    for name in (MODEL_FILE, SCALER_FILE, COMPILED_FILE):
        assert meta.artefacts[name] == sha256_file(DEFAULT_MODEL_DIR / name)


def test_bundled_model_scores_with_its_compiled_arrays():
    loaded = load_model()
    assert loaded.verified and loaded.classifier is None and loaded.scaler is None
    assert loaded.compiled is not None
    assert loaded.compiled.n_features == len(feature_names(loaded.metadata.features))


def _feature_rows(detector: Detector, clips: list) -> np.ndarray:
    rows = [extract(detector.decode(clip).samples, detector.feature_config).matrix
            for clip in clips]
    return np.vstack(rows)


def test_compiled_decision_values_equal_scikit_learn(real_clip, fake_clip, gen, detector):
    """The numpy RBF decision function is scikit-learn's decision_function (sign included)."""
    reference = load_model(compiled=False)
    compiled = load_model()
    clips = [real_clip, fake_clip, (gen.speechlike(16000, 12.0, seed=7), 16000),
             (gen.noise(16000, 4.0, seed=8), 16000)]
    rows = _feature_rows(detector, clips)
    rng = np.random.default_rng(0)
    # and rows around the training distribution, where the kernel values are not all ~0
    sv = reference.scaler.inverse_transform(reference.classifier.support_vectors_[:50])
    near = sv + 0.1 * rng.standard_normal(sv.shape) * reference.scaler.scale_
    sign = -1 if reference.classifier.classes_[0] == reference.metadata.deepfake_label else 1
    many = np.tile(near, (6, 1))  # more rows than one scoring batch
    assert compiled.compiled is not None
    for matrix in (rows, near, near.astype(np.float32), many):  # extract() gives float32
        expected = sign * reference.classifier.decision_function(reference.scaler.transform(matrix))
        np.testing.assert_allclose(compiled.compiled.decision_values(matrix), expected,
                                   rtol=0, atol=1e-9)
        # The whole score (fused with the boosted trees, if the model has them) agrees too.
        np.testing.assert_allclose(compiled.decision_values(matrix),
                                   reference.decision_values(matrix), rtol=0, atol=1e-9)


def test_tampered_compiled_arrays_are_refused(tmp_path):
    directory = copy_default(tmp_path)
    flip_middle_byte(directory / COMPILED_FILE)
    with pytest.raises(ModelIntegrityError, match=r"does not match model\.json"):
        load_model(directory)
    assert load_model(directory, compiled=False).classifier is not None


def test_compiled_arrays_holding_a_pickle_are_refused(tmp_path):
    """allow_pickle=False: an object array in the .npz is a load error, never unpickled."""
    directory = copy_default(tmp_path)
    marker = tmp_path / "pwned"
    payload = np.empty(1, dtype=object)
    payload[0] = RunsShell(f"touch {marker}")
    buffer = io.BytesIO()
    with np.load(directory / COMPILED_FILE) as arrays:
        np.savez(buffer, **{**dict(arrays), "support_vectors": payload})
    replace_artefact(directory, COMPILED_FILE, buffer.getvalue())
    with pytest.raises(ModelLoadError, match="not a compiled model"):
        load_model(directory)
    assert not marker.exists()


def test_compile_model_adds_the_arrays_to_an_old_folder(tmp_path, fake_clip):
    """A folder saved before compiled arrays existed: compile_model lists them in model.json."""
    directory = copy_default(tmp_path)
    (directory / COMPILED_FILE).unlink()
    meta = read_meta(directory)
    del meta["artefacts"][COMPILED_FILE]
    write_meta(directory, meta)
    before = Detector(directory)
    assert before._model.compiled is None
    digest = compile_model(directory)
    after_meta = read_meta(directory)
    assert after_meta["artefacts"][COMPILED_FILE] == digest == sha256_file(
        directory / COMPILED_FILE)
    assert {k: v for k, v in after_meta.items() if k != "artefacts"} == {
        k: v for k, v in meta.items() if k != "artefacts"}
    after = Detector(directory)
    assert after._model.compiled is not None
    assert after.analyze(fake_clip).raw_score == pytest.approx(
        before.analyze(fake_clip).raw_score, abs=1e-9)


def test_scoring_imports_neither_scikit_learn_nor_librosa(fake_clip, cli_env):
    code = (
        "import sys\n"
        "from deepfake_audio import Detector\n"
        "from deepfake_audio.cli import main\n"
        "Detector().analyze(sys.argv[1])\n"
        "assert main(['check', sys.argv[1]]) == 0\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('sklearn', 'librosa', 'joblib'))))\n"
    )
    run = subprocess.run([sys.executable, "-c", code, str(fake_clip)], capture_output=True,
                         text=True, env=cli_env, check=True)
    assert run.stdout.splitlines()[-1] == ""


def test_bundled_threshold_is_where_calibration_crosses_half():
    meta = load_model().metadata
    p = float(meta.calibration.probability_deepfake(meta.decision_threshold))
    assert p == pytest.approx(0.5, abs=1e-6)


def test_bundled_model_json_is_self_consistent():
    meta = read_meta(DEFAULT_MODEL_DIR)
    assert meta["feature_names"] == feature_names(FeatureConfig.from_dict(meta["features"]))
    assert meta["sign_convention"] == "raw_score > decision_threshold means deepfake"


def test_family_classifier_must_match_model_json(tmp_path):
    directory = copy_default(tmp_path)
    meta = read_meta(directory)
    meta["source_families"] = list(reversed(meta["source_families"]))
    write_meta(directory, meta)
    for compiled in (True, False):
        with pytest.raises(ModelLoadError, match=r"do not match model\.json's source_families"):
            load_model(directory, compiled=compiled)
    (directory / FAMILY_FILE).unlink()
    with pytest.raises(ModelLoadError, match=f"lacks {FAMILY_FILE}"):
        load_model(directory)


def test_model_without_family_classifier_loads_and_saves(tmp_path):
    bundled = load_model(compiled=False)
    meta = dataclasses.replace(bundled.metadata, source_families=(), fusion=None, clip_view=None)
    saved = save_model(tmp_path / "plain", bundled.classifier, bundled.scaler, meta)
    assert FAMILY_FILE not in saved.artefacts and not (tmp_path / "plain" / FAMILY_FILE).exists()
    plain = load_model(tmp_path / "plain")
    assert plain.family_classifier is None
    assert plain.family_probabilities(np.zeros((2, len(feature_names(meta.features))))) is None


# --------------------------------------------------------------------------- integrity


@pytest.mark.parametrize("name", [MODEL_FILE, SCALER_FILE, FAMILY_FILE, BOOSTING_FILE,
                                  CLIP_VIEW_FILE])
def test_one_changed_byte_is_refused_before_unpickling(tmp_path, forbid_unpickling, name):
    directory = copy_default(tmp_path)
    flip_middle_byte(directory / name)
    with pytest.raises(ModelIntegrityError, match=r"does not match model\.json"):
        load_model(directory)


def test_missing_hash_entry_is_an_integrity_error(tmp_path, forbid_unpickling):
    directory = copy_default(tmp_path)
    meta = read_meta(directory)
    del meta["artefacts"][SCALER_FILE]
    write_meta(directory, meta)
    with pytest.raises(ModelIntegrityError, match="no SHA-256"):
        load_model(directory)


@pytest.mark.parametrize("name", [MODEL_FILE, SCALER_FILE, FAMILY_FILE])
def test_malicious_pickle_never_runs(tmp_path, name):
    marker = tmp_path / "pwned"
    directory = copy_default(tmp_path)
    replace_artefact(directory, name, pickle.dumps(RunsShell(f"touch {marker}")))
    load_model(directory)  # the compiled arrays are scored: the pickles are never opened
    with pytest.raises(ModelIntegrityError, match="refusing to unpickle"):
        load_model(directory, compiled=False)
    assert not marker.exists()


def test_malicious_object_array_inside_joblib_never_runs(tmp_path):
    """joblib stores object arrays as a nested pickle: it must go through the allow-list too."""
    marker = tmp_path / "pwned"
    directory = copy_default(tmp_path)
    payload = np.empty(2, dtype=object)
    payload[0], payload[1] = RunsShell(f"touch {marker}"), 1
    buffer = io.BytesIO()
    joblib.dump({"support_vectors_": payload}, buffer)
    replace_artefact(directory, MODEL_FILE, buffer.getvalue())
    with pytest.raises(ModelIntegrityError):
        load_model(directory, compiled=False)
    assert not marker.exists()


def _global_call(module: str, name: str, *args: str) -> bytes:
    """A protocol-4 pickle calling ``module.name(*args)`` (STACK_GLOBAL resolves dotted names)."""

    def text(value: str) -> bytes:
        raw = value.encode()
        return pickle.BINUNICODE + len(raw).to_bytes(4, "little") + raw

    body = text(module) + text(name) + pickle.STACK_GLOBAL + pickle.MARK
    body += b"".join(text(a) for a in args) + pickle.TUPLE + pickle.REDUCE + pickle.STOP
    return pickle.PROTO + b"\x04" + body


def _sklearn_module_importing_io() -> str | None:
    import sklearn.preprocessing
    import sklearn.svm

    assert sklearn.preprocessing and sklearn.svm  # imported to populate sys.modules

    for name in sorted(sys.modules):
        if name.startswith("sklearn.") and getattr(sys.modules[name], "io", None) is io:
            return name
    return None


def test_dotted_name_cannot_reach_classes_imported_by_sklearn(tmp_path):
    """"sklearn.<module>" + "io.FileIO" used to pass the allow-list and truncate any file."""
    module = _sklearn_module_importing_io()
    if module is None:
        pytest.skip("no scikit-learn module imports io in this version")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious", encoding="utf-8")
    directory = copy_default(tmp_path)
    replace_artefact(directory, MODEL_FILE, _global_call(module, "io.FileIO", str(victim), "w"))
    with pytest.raises(ModelIntegrityError, match="refusing to unpickle"):
        load_model(directory, compiled=False)
    assert victim.read_text(encoding="utf-8") == "precious"


@pytest.mark.parametrize(("module", "name", "obj"), [
    ("sklearn.svm._classes", "np.ndarray", None),           # dotted path
    ("sklearn.svm._classes", "SVC.__init__", None),         # dotted path to a function
    ("sklearn.utils", "FileIO", io.FileIO),                 # class not defined in sklearn
    ("sklearn.utils", "check_array", len),                  # not a class at all
    ("builtins", "eval", None),
    ("os", "system", None),
    ("numpy", "load", None),
    ("joblib.numpy_pickle_compat", "NDArrayWrapper", None),  # reads side files with pickle
])
def test_allow_list_refuses(module, name, obj):
    with pytest.raises(ModelIntegrityError):
        safe_pickle._check_global(module, name, obj)


@pytest.mark.parametrize(("module", "name", "obj"), [
    ("sklearn.svm._classes", "SVC", SVC),
    ("sklearn.preprocessing._data", "StandardScaler", StandardScaler),
    ("numpy", "ndarray", np.ndarray),
    ("numpy.dtypes", "Float64DType", None),
    ("joblib.numpy_pickle", "NumpyArrayWrapper", None),
])
def test_allow_list_accepts(module, name, obj):
    safe_pickle._check_global(module, name, obj)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_plain_pickles_of_allowed_types_load(tmp_path, protocol):
    scaler = StandardScaler().fit(np.random.default_rng(0).standard_normal((20, 3)))
    path = tmp_path / "scaler.pkl"
    path.write_bytes(pickle.dumps(scaler, protocol=protocol))
    loaded = safe_pickle.safe_load_pickle(path)
    np.testing.assert_allclose(loaded.mean_, scaler.mean_)


def test_garbage_pickle_is_a_load_error(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(b"definitely not a pickle")
    with pytest.raises(ModelLoadError):
        safe_pickle.safe_load_pickle(path)


# --------------------------------------------------------------------------- load errors


def test_missing_model_json_needs_allow_unverified(tmp_path, forbid_unpickling):
    directory = copy_default(tmp_path)
    (directory / METADATA_FILE).unlink()
    with pytest.raises(ModelLoadError, match="allow_unverified") as info:
        load_model(directory)
    assert not isinstance(info.value, ModelIntegrityError)


def test_allow_unverified_then_checks_the_feature_count(tmp_path):
    """Without model.json the legacy 13-MFCC settings are assumed: the default SVM mismatches."""
    directory = copy_default(tmp_path)
    width = len(feature_names(FeatureConfig()))
    (directory / METADATA_FILE).unlink()
    with pytest.raises(ModelLoadError, match=f"expects {width} features but .* give 13"):
        load_model(directory, allow_unverified=True)


def test_feature_count_mismatch(tmp_path):
    directory = copy_default(tmp_path)
    meta = read_meta(directory)
    narrower = FeatureConfig.from_dict(meta["features"])
    narrower = FeatureConfig.from_dict({**narrower.to_dict(), "groups": ["mfcc", "lfcc"]})
    meta["features"] = narrower.to_dict()
    meta["feature_names"] = feature_names(narrower)
    write_meta(directory, meta)
    with pytest.raises(ModelLoadError, match="features"):
        load_model(directory)


@pytest.mark.parametrize("edit", [
    lambda m: m.update(format_version=99),
    lambda m: m["features"].update(n_mfccs=13),
    lambda m: m.update(feature_names=m["feature_names"][:-1]),
    lambda m: m.pop("model_id"),
    lambda m: m["calibration"].pop("a"),
], ids=["format", "unknown-feature-key", "names", "no-id", "calibration"])
def test_invalid_model_json(tmp_path, edit, forbid_unpickling):
    directory = copy_default(tmp_path)
    meta = read_meta(directory)
    edit(meta)
    write_meta(directory, meta)
    with pytest.raises(ModelLoadError):
        load_model(directory)


def test_unimplemented_aggregation_is_refused_at_load(tmp_path, forbid_unpickling):
    directory = copy_default(tmp_path)
    write_meta(directory, {**read_meta(directory), "aggregation": "median"})
    with pytest.raises(ModelLoadError, match="aggregation 'median' is not implemented"):
        load_model(directory)
    with pytest.raises(ModelLoadError, match="supported: mean"):
        Detector(directory)


def test_model_json_not_json(tmp_path, forbid_unpickling):
    directory = copy_default(tmp_path)
    (directory / METADATA_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_model(directory)


def test_missing_directory_and_files(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(tmp_path / "nowhere")
    directory = copy_default(tmp_path)
    (directory / SCALER_FILE).unlink()
    with pytest.raises(ModelLoadError, match=SCALER_FILE):
        load_model(directory)


def test_sklearn_version_drift_warns_but_loads(tmp_path, gen):
    directory = copy_default(tmp_path)
    meta = read_meta(directory)
    meta["sklearn_version"] = "0.0.1"  # model.json itself is not hashed
    write_meta(directory, meta)
    with pytest.warns(UserWarning, match=r"scikit-learn 0\.0\.1"):
        loaded = load_model(directory, compiled=False)
    assert loaded.metadata.sklearn_version == "0.0.1"
    scores = loaded.decision_values(extract(gen.speechlike(16000, 2.0).astype(np.float32),
                                            loaded.metadata.features).matrix)
    assert np.isfinite(scores).all()
    with warnings.catch_warnings():  # the compiled arrays do not depend on scikit-learn
        warnings.simplefilter("error")
        load_model(directory)


def test_matching_sklearn_version_is_silent(tmp_path):
    directory = copy_default(tmp_path)
    meta = read_meta(directory)
    meta["sklearn_version"] = sklearn.__version__
    write_meta(directory, meta)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model(directory)


# --------------------------------------------------------------------------- save / legacy


def _separable(rng: np.random.Generator, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    real = rng.normal(-1.0, 1.0, (30, n_features))
    fake = rng.normal(+1.0, 1.0, (30, n_features))
    return np.vstack([real, fake]), np.array([0] * 30 + [1] * 30)


def test_save_model_round_trip(tmp_path):
    config = FeatureConfig(groups=("mfcc",), statistics=("mean",), means="all")
    n = len(feature_names(config))
    x, y = _separable(np.random.default_rng(0), n)
    scaler = StandardScaler().fit(x)
    classifier = SVC().fit(scaler.transform(x), y)
    saved = save_model(tmp_path / "m", classifier, scaler,
                       ModelMetadata(model_id="unit", features=config, decision_threshold=0.25))
    assert saved.sklearn_version == sklearn.__version__
    assert COMPILED_FILE in saved.artefacts
    loaded = load_model(tmp_path / "m")
    assert loaded.verified and loaded.metadata.model_id == "unit"
    assert loaded.compiled is not None
    assert loaded.metadata.decision_threshold == 0.25
    scores = loaded.decision_values(x)
    assert (scores[y == 1] > 0).mean() > 0.9 and (scores[y == 0] < 0).mean() > 0.9
    np.testing.assert_allclose(scores, classifier.decision_function(scaler.transform(x)),
                               rtol=0, atol=1e-9)


def test_string_labels_keep_the_sign_convention(tmp_path):
    """classes_ sorted as ['fake', 'real'] would make decision_function positive for real."""
    config = FeatureConfig(groups=("mfcc",), statistics=("mean",), means="all")
    x, y = _separable(np.random.default_rng(1), len(feature_names(config)))
    labels = np.where(y == 1, "fake", "real")
    scaler = StandardScaler().fit(x)
    classifier = SVC().fit(scaler.transform(x), labels)
    assert list(classifier.classes_) == ["fake", "real"]
    save_model(tmp_path / "m", classifier, scaler,
               ModelMetadata(model_id="strings", features=config, deepfake_label="fake"))
    for compiled in (True, False):
        scores = load_model(tmp_path / "m", compiled=compiled).decision_values(x)
        assert (scores[y == 1] > 0).mean() > 0.9 and (scores[y == 0] < 0).mean() > 0.9


@pytest.fixture(scope="module")
def legacy_folder(tmp_path_factory, gen):
    """A model folder made like the original service's main.py (tones and noise, so the
    detectors below score without the speech gate): 13 librosa MFCC means at
    22.05 kHz, StandardScaler + linear SVC (labels 0 genuine, 1 deepfake), joblib.dump."""
    import librosa

    root = tmp_path_factory.mktemp("legacy")
    features, labels, clips = [], [], []
    for i in range(12):
        label = i % 2
        y = (gen.tone(22050, 1.5, 180.0 + 40 * i, 0.3) if label
             else gen.noise(22050, 1.5, seed=i))
        path = gen.write(root / f"clip{i}.wav", y, 22050)
        with warnings.catch_warnings():  # audioread's deprecated stdlib imports
            warnings.simplefilter("ignore", DeprecationWarning)
            audio, sr = librosa.load(path, sr=22050)
        mfcc = librosa.feature.mfcc(y=audio, sr=sr, n_mfcc=13, n_fft=2048, hop_length=512)
        features.append(np.mean(mfcc.T, axis=0))
        labels.append(label)
        clips.append((path, label))
    scaler = StandardScaler()
    classifier = SVC(kernel="linear", random_state=42)
    classifier.fit(scaler.fit_transform(np.array(features)), np.array(labels))
    folder = root / "legacy_model"
    folder.mkdir()
    joblib.dump(classifier, folder / MODEL_FILE)
    joblib.dump(scaler, folder / SCALER_FILE)
    return folder, clips


def test_legacy_folder_loads_only_when_allowed(legacy_folder, caplog):
    folder, clips = legacy_folder
    with pytest.raises(ModelLoadError, match=r"no model\.json"):
        Detector(folder)
    detector = Detector(folder, allow_unverified=True, speech_gate=False)
    assert "NOT verified" in caplog.text
    assert detector.feature_config == FeatureConfig.legacy()
    assert not detector._model.verified
    result = detector.analyze(clips[0][0])
    assert result.calibrated is False
    assert result.model == f"legacy:{folder.name}"
    assert len(result.timeline) == 1


def test_legacy_model_keeps_its_predictions(legacy_folder):
    """Same verdicts as the original predict(): label 1 ⇔ deepfake."""
    folder, clips = legacy_folder
    detector = Detector(folder, allow_unverified=True, speech_gate=False)
    for path, label in clips:
        result = detector.analyze(path)
        assert result.classification == ("deepfake" if label else "real"), path.name
        assert 0.5 <= result.confidence <= 1.0


def test_checked_arrays_round_trip_and_refuse_a_changed_file(tmp_path: Path) -> None:
    """What the weight converters write (save_checked_arrays) is what the loaders accept."""
    from deepfake_audio.exceptions import ModelIntegrityError

    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    written = safe_pickle.save_checked_arrays(tmp_path, "weights", arrays,
                                              identity=("model_id", "test-1"),
                                              details={"license": "MIT"})
    assert list(written) == ["format", "model_id", "file", "sha256", "license"]
    meta, loaded = safe_pickle.load_checked_arrays(tmp_path, "weights.json", "test weights")
    assert meta == written
    np.testing.assert_array_equal(loaded["w"], arrays["w"])
    np.savez(tmp_path / "weights.npz", w=arrays["w"] + 1)
    with pytest.raises(ModelIntegrityError, match="SHA-256"):
        safe_pickle.load_checked_arrays(tmp_path, "weights.json", "test weights")
