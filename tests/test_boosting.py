"""Boosted trees beside the SVM: the numpy evaluator, the fusion rule, saving and loading."""

from __future__ import annotations

import io

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from deepfake_audio.boosting import (
    BOOSTING_FILE,
    Fusion,
    compile_boosting,
    fit_boosting,
    load_boosting,
)
from deepfake_audio.exceptions import ModelIntegrityError, ModelLoadError
from deepfake_audio.features import FeatureConfig, feature_names
from deepfake_audio.model import ModelMetadata, load_model, save_model
from tests.helpers.artefacts import RunsShell, read_meta, replace_artefact, write_meta

CONFIG = FeatureConfig(groups=("mfcc",), statistics=("mean",), means="all")


def _data(rng: np.random.Generator, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    n_features = len(feature_names(CONFIG))
    x = rng.normal(size=(n, n_features))
    # Not linearly separable, so the trees need several levels.
    y = ((x[:, 0] * x[:, 1] > 0) ^ (x[:, 2] > 0.5)).astype(int)
    return x, y


@pytest.fixture(scope="module")
def ensemble():
    x, y = _data(np.random.default_rng(0))
    x[::13, 4] = np.nan  # teaches the trees where missing values go
    return fit_boosting(x, y, None, seed=0), x, y


def test_compiled_trees_equal_scikit_learn(ensemble):
    classifier, _, _ = ensemble
    trees = compile_boosting(classifier, deepfake_label=1)
    assert trees.depth >= 2 and len(trees.roots) == classifier.n_iter_
    fresh, _ = _data(np.random.default_rng(1), 400)
    fresh[::7, 4] = np.nan
    fresh[::11, 0] = np.nan
    np.testing.assert_allclose(trees.decision_values(fresh), classifier.decision_function(fresh),
                               rtol=0, atol=1e-9)


def test_the_sign_follows_the_deepfake_label(ensemble):
    classifier, x, _ = ensemble
    flipped = compile_boosting(classifier, deepfake_label=0)
    np.testing.assert_allclose(flipped.decision_values(x[:50]),
                               -classifier.decision_function(x[:50]), rtol=0, atol=1e-9)


def test_saved_trees_load_without_pickles(ensemble, tmp_path):
    classifier, x, _ = ensemble
    compile_boosting(classifier, 1).save(tmp_path / BOOSTING_FILE)
    loaded = load_boosting(tmp_path / BOOSTING_FILE)
    np.testing.assert_allclose(loaded.decision_values(x), classifier.decision_function(x),
                               rtol=0, atol=1e-9)


def test_inconsistent_or_pickled_tree_files_are_refused(ensemble, tmp_path):
    trees = compile_boosting(ensemble[0], 1)
    path = tmp_path / BOOSTING_FILE
    trees.save(path)
    with np.load(path) as data:
        arrays = dict(data)
    broken = {**arrays, "left": arrays["left"] + len(arrays["value"])}  # points past the end
    np.savez(path, **broken)
    with pytest.raises(ModelLoadError, match="inconsistent tree arrays"):
        load_boosting(path)
    payload = np.empty(1, dtype=object)
    payload[0] = RunsShell(f"touch {tmp_path / 'pwned'}")
    np.savez(path, **{**arrays, "value": payload})
    with pytest.raises(ModelLoadError, match="not a tree ensemble"):
        load_boosting(path)
    assert not (tmp_path / "pwned").exists()


def test_fusion_is_linear_so_window_means_commute():
    rng = np.random.default_rng(2)
    svm, trees = rng.normal(1, 2, 40), rng.normal(-1, 3, 40)
    fusion = Fusion.fit(svm, trees, svm_weight=0.25)
    combined = fusion.combine(svm, trees)
    assert combined.mean() == pytest.approx(0.0, abs=1e-12)  # both parts standardised
    assert combined.std() > 0
    assert fusion.combine(svm.mean(), trees.mean()) == pytest.approx(combined.mean(), abs=1e-12)
    assert Fusion.from_dict(fusion.to_dict()) == fusion
    with pytest.raises(ValueError, match="invalid fusion"):
        Fusion(0.0, 0.0, 0.0, 1.0)


@pytest.fixture
def fused_model(tmp_path, ensemble):
    x, y = _data(np.random.default_rng(3))
    scaler = StandardScaler().fit(x)
    svm = SVC().fit(scaler.transform(x), y)
    trees = fit_boosting(scaler.transform(x), y, None, seed=0)
    fusion = Fusion(0.1, 1.5, -0.2, 2.5, svm_weight=0.5)
    save_model(tmp_path / "m", svm, scaler,
               ModelMetadata(model_id="fused", features=CONFIG, fusion=fusion), boosting=trees)
    return tmp_path / "m", svm, scaler, trees, fusion, x


def test_a_fused_model_scores_both_models_through_its_fusion(fused_model):
    directory, svm, scaler, trees, fusion, x = fused_model
    expected = fusion.combine(svm.decision_function(scaler.transform(x)),
                              trees.decision_function(scaler.transform(x)))
    compiled, pickled = load_model(directory), load_model(directory, compiled=False)
    assert compiled.compiled is not None and compiled.boosting is not None
    assert pickled.compiled is None and pickled.boosting is not None
    for loaded in (compiled, pickled):
        assert loaded.metadata.fusion == fusion
        np.testing.assert_allclose(loaded.decision_values(x), expected, rtol=0, atol=1e-9)
    assert read_meta(directory)["fusion"]["svm_weight"] == 0.5


def test_fused_model_trees_are_hash_checked(fused_model):
    directory = fused_model[0]
    data = bytearray((directory / BOOSTING_FILE).read_bytes())
    data[len(data) // 2] ^= 1
    (directory / BOOSTING_FILE).write_bytes(bytes(data))
    for compiled in (True, False):
        with pytest.raises(ModelIntegrityError, match=r"does not match model\.json"):
            load_model(directory, compiled=compiled)


def test_a_fused_model_without_its_trees_is_refused(fused_model):
    directory = fused_model[0]
    (directory / BOOSTING_FILE).unlink()
    with pytest.raises(ModelLoadError, match=f"lacks {BOOSTING_FILE}"):
        load_model(directory)
    meta = read_meta(directory)
    del meta["artefacts"][BOOSTING_FILE]
    write_meta(directory, meta)
    with pytest.raises(ModelIntegrityError, match=f"no SHA-256 for {BOOSTING_FILE}"):
        load_model(directory)


def test_trees_for_other_features_are_refused(fused_model, ensemble, tmp_path):
    directory = fused_model[0]
    x, y = _data(np.random.default_rng(4))
    narrow = fit_boosting(x[:, :5], y, None, seed=0)
    buffer = io.BytesIO()
    trees = compile_boosting(narrow, 1)
    trees.save(tmp_path / "narrow.npz")
    buffer.write((tmp_path / "narrow.npz").read_bytes())
    replace_artefact(directory, BOOSTING_FILE, buffer.getvalue())
    with pytest.raises(ModelLoadError, match="expects 5 features"):
        load_model(directory)


def test_saving_trees_needs_a_fusion_rule(fused_model, tmp_path):
    _, svm, scaler, trees, fusion, _ = fused_model
    with pytest.raises(ValueError, match="fusion"):
        save_model(tmp_path / "x", svm, scaler, ModelMetadata(model_id="x", features=CONFIG),
                   boosting=trees)
    saved = save_model(tmp_path / "fused", svm, scaler,
                       ModelMetadata(model_id="x", features=CONFIG, fusion=fusion), boosting=trees)
    assert BOOSTING_FILE in saved.artefacts
    plain = save_model(tmp_path / "fused", svm, scaler,
                       ModelMetadata(model_id="x", features=CONFIG))  # retrained SVM-only
    assert BOOSTING_FILE not in plain.artefacts
    assert not (tmp_path / "fused" / BOOSTING_FILE).exists()
