"""Feature extraction against reference implementations (librosa, scipy) and by hand."""

from __future__ import annotations

import dataclasses
import itertools
import json

import librosa
import numpy as np
import pytest
import scipy.fft

from deepfake_audio import features, filterbanks, spectra
from deepfake_audio.features import FeatureConfig, extract, feature_names

SR = 16_000


#: Every optional block on: skewness/kurtosis of two groups and the modulation spectrum.
SHAPED = FeatureConfig(shape_groups=("mfcc", "phase"), modulation=True)


@pytest.fixture(scope="module")
def config() -> FeatureConfig:
    return FeatureConfig()


@pytest.fixture(scope="module")
def clip(gen) -> np.ndarray:
    return (gen.speechlike(SR, 4.0, seed=3) + 0.3 * gen.noise(SR, 4.0, seed=4)).astype(np.float32)


# --------------------------------------------------------------------------- filterbanks


@pytest.mark.parametrize(("sr", "n_fft", "n_mels"), [(16000, 512, 40), (22050, 2048, 128),
                                                     (8000, 256, 26)])
def test_mel_filterbank_equals_librosa(sr, n_fft, n_mels):
    ours = filterbanks.mel_filterbank(sr, n_fft, n_mels)
    reference = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)
    assert ours.shape == reference.shape == (n_mels, n_fft // 2 + 1)
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-7)


def test_hz_mel_round_trip():
    hz = np.array([0.0, 100.0, 999.0, 1000.0, 1001.0, 4000.0, 8000.0])
    np.testing.assert_allclose(filterbanks.mel_to_hz(filterbanks.hz_to_mel(hz)), hz, atol=1e-6)
    np.testing.assert_allclose(filterbanks.hz_to_mel(hz), librosa.hz_to_mel(hz), rtol=1e-9)


def test_linear_filterbank_shape_and_coverage():
    bank = filterbanks.linear_filterbank(SR, 512, 70)
    assert bank.shape == (70, 257)
    assert (bank >= 0).all()
    centres = np.argmax(bank, axis=1)
    assert (np.diff(centres) > 0).all(), "filters must be ordered by frequency"
    # every bin strictly inside (0, Nyquist) is covered by some filter
    assert (bank[:, 1:-1].sum(axis=0) > 0).all()


@pytest.mark.parametrize(("n_in", "n_out"), [(40, 20), (70, 20), (16, 16)])
def test_dct_matrix_equals_scipy(n_in, n_out):
    x = np.random.default_rng(0).standard_normal((7, n_in))
    ours = x @ filterbanks.dct_matrix(n_in, n_out).T
    reference = scipy.fft.dct(x, type=2, norm="ortho", axis=1)[:, :n_out]
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-5)


def test_square_dct_is_orthonormal():
    d = filterbanks.dct_matrix(40, 40).astype(np.float64)
    np.testing.assert_allclose(d @ d.T, np.eye(40), atol=1e-6)


# --------------------------------------------------------------------------- spectrogram


@pytest.mark.filterwarnings("ignore:n_fft=512 is too large")
@pytest.mark.parametrize("n", [16000, 16000 + 77, 399, 100])
def test_power_spectrogram_equals_librosa(config, gen, n):
    y = gen.speechlike(SR, 1.0, seed=1)[:n].astype(np.float32) if n <= SR else \
        gen.noise(SR, n / SR, seed=2).astype(np.float32)
    assert config.win_length < config.n_fft  # the zero-padded window case
    ours = features.power_spectrogram(y, config)
    reference = np.abs(librosa.stft(y, n_fft=config.n_fft, hop_length=config.hop_length,
                                    win_length=config.win_length, window="hann", center=True,
                                    pad_mode="constant")) ** 2
    assert ours.shape == reference.T.shape
    np.testing.assert_allclose(ours, reference.T, rtol=1e-3, atol=1e-6 * reference.max())


def test_full_length_window_equals_librosa(gen):
    cfg = FeatureConfig(n_fft=512, win_length=512, hop_length=128)
    y = gen.speechlike(SR, 0.5).astype(np.float32)
    reference = np.abs(librosa.stft(y, n_fft=512, hop_length=128, center=True,
                                    pad_mode="constant")) ** 2
    np.testing.assert_allclose(features.power_spectrogram(y, cfg), reference.T, rtol=1e-3,
                               atol=1e-6 * reference.max())


def test_mfcc_matches_librosa_pipeline(config, clip):
    """cepstra() on our power spectrum equals librosa's dB-mel + ortho DCT."""
    power = features.power_spectrogram(clip, config)
    mel = filterbanks.mel_filterbank(SR, config.n_fft, config.n_mels)
    ours = features.cepstra(power, mel, config.n_mfcc)
    mel_power = power @ mel.T
    reference = scipy.fft.dct(10 * np.log10(np.maximum(mel_power, 1e-10)), norm="ortho",
                              axis=1)[:, : config.n_mfcc]
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-3)


# --------------------------------------------------------------------------- deltas


def _deltas_by_hand(x: np.ndarray, width: int) -> np.ndarray:
    t_max = len(x) - 1
    out = np.zeros_like(x, dtype=np.float64)
    denominator = 2 * sum(n * n for n in range(1, width + 1))
    for t in range(len(x)):
        for n in range(1, width + 1):
            after, before = x[min(t + n, t_max)], x[max(t - n, 0)]
            out[t] += n * (after - before)
    return out / denominator


@pytest.mark.parametrize("width", [1, 2, 3])
def test_deltas_match_hand_computation(width):
    x = np.random.default_rng(5).standard_normal((13, 4))
    np.testing.assert_allclose(features.deltas(x, width), _deltas_by_hand(x, width), atol=1e-12)


def test_deltas_of_a_ramp_and_a_constant():
    ramp = np.arange(20, dtype=np.float64)[:, None] * np.array([[1.0, -2.0]])
    d = features.deltas(ramp, 2)
    np.testing.assert_allclose(d[2:-2], np.tile([1.0, -2.0], (16, 1)))  # exact slope inside
    np.testing.assert_allclose(features.deltas(np.full((9, 3), 7.0), 2), 0.0)
    assert features.deltas(np.zeros((0, 3)), 2).shape == (0, 3)


# --------------------------------------------------------------------------- windows


def test_short_clip_is_one_window(config):
    assert features.window_bounds(10, config) == [(0, 10)]
    assert features.window_bounds(config.frames_per_window, config) == [
        (0, config.frames_per_window)]


def test_long_clip_windows_hop_and_end_aligned(config):
    n_frames = 1234
    bounds = features.window_bounds(n_frames, config)
    size, hop = config.frames_per_window, config.frames_per_hop
    assert (size, hop) == (300, 150)
    assert bounds[0] == (0, size)
    # 1234 frames: windows at 0, 150, ..., 900; the 34 frames left over stretch the last one.
    assert [start for start, _ in bounds] == list(range(0, 901, hop))
    assert all(stop - start == size for start, stop in bounds[:-1])
    assert bounds[-1] == (900, n_frames)


def test_long_tail_gets_its_own_end_aligned_window(config):
    size, hop = config.frames_per_window, config.frames_per_hop
    n_frames = size + 2 * hop + 100  # 100 frames left over: more than half a hop
    bounds = features.window_bounds(n_frames, config)
    assert [start for start, _ in bounds] == [0, hop, 2 * hop, n_frames - size]
    assert all(stop - start == size for start, stop in bounds)


@pytest.mark.parametrize("extra", [1, 10, 74])
def test_tail_barely_past_a_window_stretches_it_instead_of_duplicating(config, extra):
    size, hop = config.frames_per_window, config.frames_per_hop
    n_frames = size + 2 * hop + extra
    bounds = features.window_bounds(n_frames, config)
    assert [start for start, _ in bounds] == [0, hop, 2 * hop]
    assert bounds[-1] == (2 * hop, n_frames)


def test_windows_exactly_fitting_need_no_extra(config):
    n_frames = 300 + 150 * 4
    bounds = features.window_bounds(n_frames, config)
    assert bounds[-1] == (n_frames - 300, n_frames)
    assert len(bounds) == 5


def test_window_zero_means_whole_clip():
    cfg = dataclasses.replace(FeatureConfig(), window_s=0.0, hop_s=0.0)
    assert features.window_bounds(100_000, cfg) == [(0, 100_000)]


# --------------------------------------------------------------------------- extract


@pytest.mark.parametrize("cfg", [
    FeatureConfig(),
    FeatureConfig(groups=("mfcc",), statistics=("mean",), means="all"),
    FeatureConfig(groups=("lfcc", "lfcc_delta", "spectral")),
    FeatureConfig(groups=("mfcc_delta", "spectral"), statistics=("std",)),
    FeatureConfig(means="no-cepstral"),
    FeatureConfig(means="artefact"),
    SHAPED,
], ids=["default", "mfcc-mean", "lfcc-spectral", "deltas-std", "no-cepstral-means",
        "artefact-means", "shaped"])
def test_extract_shape_matches_feature_names(cfg, clip):
    result = extract(clip, cfg)
    names = feature_names(cfg)
    assert len(set(names)) == len(names)
    assert result.matrix.shape == (len(result.spans), len(names))
    assert result.matrix.dtype == np.float32
    assert np.isfinite(result.matrix).all()


def test_frame_columns_are_the_named_blocks(clip):
    """Each group's block sits where :func:`frame_feature_names` says its names are."""
    full_config = FeatureConfig(means="all")
    full, _ = features.frame_features(clip, full_config)
    names = features.frame_feature_names(full_config)
    assert full.shape[1] == len(names) == len(set(names))
    for group in features.ALL_GROUPS:
        single = dataclasses.replace(full_config, groups=(group,))
        block, _ = features.frame_features(clip, single)
        columns = [names.index(n) for n in features.frame_feature_names(single)]
        np.testing.assert_array_equal(full[:, columns], block)


_GROUP_SETS = [groups for n in range(1, len(features.ALL_GROUPS) + 1)
               for groups in itertools.combinations(features.ALL_GROUPS, n)]


@pytest.mark.parametrize("means", features.MEAN_CHOICES)
@pytest.mark.parametrize("statistics", [("mean",), ("std",), ("mean", "std"), ("std", "mean")])
def test_every_config_extracts_as_many_columns_as_it_names(gen, means, statistics):
    y = gen.speechlike(SR, 1.0, seed=5).astype(np.float32)
    valid = 0
    for groups in _GROUP_SETS:
        # Reversed on purpose: the order of ``groups`` must not change the column order.
        try:
            config = FeatureConfig(groups=groups[::-1], statistics=statistics, means=means)
        except ValueError:  # selects no column at all (e.g. artefact means of cepstra only)
            assert means != "all" and statistics == ("mean",)
            continue
        valid += 1
        frames, _ = features.frame_features(y, config)
        assert frames.shape[1] == len(features.frame_feature_names(config))
        assert extract(y, config).matrix.shape[1] == len(feature_names(config))
        assert feature_names(config) == feature_names(dataclasses.replace(config, groups=groups))
    assert valid > 0


def test_default_config_matches_bundled_model_width(config):
    from deepfake_audio.model import DEFAULT_MODEL_DIR

    stored = json.loads((DEFAULT_MODEL_DIR / "model.json").read_text())
    assert FeatureConfig.from_dict(stored["features"]) == config
    assert feature_names(config) == stored["feature_names"]


def test_extract_spans_cover_the_clip(config, gen):
    y = gen.speechlike(SR, 10.0, seed=9).astype(np.float32)
    result = extract(y, config)
    assert len(result.spans) == len(result.matrix) > 1
    assert result.spans[0][0] == 0.0
    assert result.spans[-1][1] == pytest.approx(10.0, abs=0.01)
    for (s0, e0), (s1, e1) in itertools.pairwise(result.spans):
        assert s0 < s1 <= e0 <= e1  # ordered and overlapping: no gaps
        assert e1 - s1 == pytest.approx(config.window_s, abs=0.011)


def test_short_clip_gives_one_row(config, gen):
    result = extract(gen.speechlike(SR, 1.0).astype(np.float32), config)
    assert result.matrix.shape[0] == 1
    assert result.spans == ((0.0, 1.0),)


def test_gain_invariance(config, clip):
    loud = extract(clip, config).matrix
    quiet = extract(clip * np.float32(0.1), config).matrix
    np.testing.assert_allclose(quiet, loud, rtol=1e-3, atol=1e-3)


def test_features_respond_to_the_signal(config, gen):
    """Not a constant: a tone and noise must land far apart."""
    tone = extract(gen.tone(SR, 2.0, 300.0).astype(np.float32), config).matrix
    noise = extract(gen.noise(SR, 2.0).astype(np.float32), config).matrix
    assert np.abs(tone - noise).max() > 1.0


def test_chunked_frame_features_equal_one_pass(config, clip, monkeypatch):
    """Long files are processed in frame chunks; the seams must not show."""
    whole, energy = features.frame_features(clip, config)
    monkeypatch.setattr(spectra, "_FRAME_CHUNK", 37)
    chunked, chunked_energy = features.frame_features(clip, config)
    # float32 matrix products round differently for different batch sizes: allow that
    # (relative to each column's scale), not a seam
    tolerance = 1e-5 * np.abs(whole).max(axis=0) + 1e-6
    excess = np.abs(chunked - whole) - tolerance
    assert (excess <= 0).all(), f"seam: {excess.max():.3g} over tolerance"
    np.testing.assert_allclose(chunked_energy, energy, rtol=1e-6, atol=1e-6)


def test_legacy_features_equal_librosa_mfcc_mean(gen):
    cfg = FeatureConfig.legacy()
    y = gen.speechlike(22050, 1.5).astype(np.float32)
    result = extract(y, cfg)
    reference = librosa.feature.mfcc(y=y, sr=22050, n_mfcc=13).mean(axis=1)
    assert result.matrix.shape == (1, 13) == (1, len(feature_names(cfg)))
    np.testing.assert_allclose(result.matrix[0], reference, rtol=1e-4, atol=1e-3)


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("cfg", [FeatureConfig(), FeatureConfig.legacy(), SHAPED,
                                 FeatureConfig(groups=("lfcc",), means="no-cepstral")])
def test_config_round_trip(cfg):
    data = cfg.to_dict()
    assert FeatureConfig.from_dict(data) == cfg
    assert FeatureConfig.from_dict(json.loads(json.dumps(data))) == cfg  # as in model.json
    assert isinstance(data["groups"], list)


def test_config_reads_version_0_1_model_json():
    data = FeatureConfig().to_dict()
    del data["means"]
    assert FeatureConfig.from_dict({**data, "cepstral_means": True}).means == "all"
    assert FeatureConfig.from_dict({**data, "cepstral_means": False}).means == "no-cepstral"


def test_artefact_means_keep_only_artefact_levels_and_every_std():
    names = feature_names(FeatureConfig(means="artefact"))
    full = feature_names(FeatureConfig())
    assert [n for n in full if n.endswith("_std")] == [n for n in names if n.endswith("_std")]
    means = [n for n in names if n.endswith("_mean")]
    assert means and all(n.startswith(("flatness", "fine_structure", "phase_dev")) for n in means)
    result = extract(np.random.default_rng(0).standard_normal(48000).astype(np.float32),
                     FeatureConfig(means="artefact"))
    reference = extract(np.random.default_rng(0).standard_normal(48000).astype(np.float32),
                        FeatureConfig())
    np.testing.assert_array_equal(result.matrix,
                                  reference.matrix[:, [full.index(n) for n in names]])


def test_shape_and_modulation_apply_to_enabled_groups_only(clip):
    config = FeatureConfig(groups=("lfcc", "spectral"), shape_groups=("mfcc", "spectral"),
                           modulation=True)
    names = feature_names(config)
    assert not config.uses_modulation and not any(n.startswith("mod_") for n in names)
    assert {n.rsplit("_", 1)[0] for n in names if n.endswith("_skew")} == set(
        features.frame_feature_names(dataclasses.replace(config, groups=("spectral",))))
    assert extract(clip, config).matrix.shape[1] == len(names)


def test_config_of_models_before_the_shape_and_modulation_blocks():
    data = SHAPED.to_dict()
    del data["shape_groups"], data["modulation"]
    old = FeatureConfig.from_dict(data)
    assert old.shape_groups == () and not old.modulation
    assert feature_names(old) == feature_names(dataclasses.replace(SHAPED, shape_groups=(),
                                                                    modulation=False))


def test_shape_columns_are_the_skewness_and_kurtosis_of_the_active_frames(gen):
    """One window over a clip whose frames are all loud: scipy's moments of each column."""
    import scipy.stats

    y = (gen.speechlike(SR, 2.0, seed=21) + 0.2 * gen.noise(SR, 2.0, seed=22)).astype(np.float32)
    config = FeatureConfig(groups=("mfcc", "phase"), shape_groups=("phase",), means="all",
                           energy_floor_db=200.0)
    frames, _ = features.frame_features(y, config)
    names = feature_names(config)
    row = extract(y, config).matrix[0]
    phase = features.frame_feature_names(config).index("phase_dev_low")
    width = len(features.frame_feature_names(dataclasses.replace(config, groups=("phase",))))
    block = frames[:, phase : phase + width].astype(np.float64)
    skew = row[[names.index(f"{n}_skew") for n in features.frame_feature_names(config)[phase:]]]
    kurt = row[[names.index(f"{n}_kurt") for n in features.frame_feature_names(config)[phase:]]]
    np.testing.assert_allclose(skew, scipy.stats.skew(block, axis=0), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(kurt, scipy.stats.kurtosis(block, axis=0), rtol=1e-3, atol=1e-3)
    assert not any(n.startswith("mfcc") and n.endswith(("_skew", "_kurt")) for n in names)


@pytest.mark.parametrize(("rate_hz", "band"), [(1.0, "0.5-2hz"), (5.0, "4-8hz"),
                                               (12.0, "8-16hz"), (25.0, "16-32hz")])
def test_modulation_block_finds_the_rate_of_a_modulated_spectrum(gen, rate_hz, band):
    """Noise whose spectral tilt swings at ``rate_hz``: the MFCC trajectories' power sits
    in the modulation band holding that rate, for every group of coefficients."""
    t = np.arange(3 * SR) / SR
    rng = np.random.default_rng(3)
    white = rng.standard_normal(len(t))
    tilted = np.convolve(white, [1.0, 0.95], mode="same")  # bright
    dull = np.convolve(white, [1.0, -0.95], mode="same")  # dark
    mix = 0.5 + 0.5 * np.sin(2 * np.pi * rate_hz * t)
    y = (0.1 * (mix * tilted + (1 - mix) * dull)).astype(np.float32)
    config = FeatureConfig(modulation=True)
    names = feature_names(config)
    row = extract(y, config).matrix[0]
    shares = {n: row[names.index(n)] for n in names if n.startswith("mod_g0_")}
    assert max(shares, key=shares.__getitem__) == f"mod_g0_{band}"
    assert np.exp(shares[f"mod_g0_{band}"]) > 0.5  # most of the variation is at that rate


def test_config_rejects_unknown_keys():
    data = FeatureConfig().to_dict()
    data["n_mfccs"] = 20
    with pytest.raises(ValueError, match="n_mfccs"):
        FeatureConfig.from_dict(data)


@pytest.mark.parametrize("change", [
    {"kind": "wavelets"},
    {"groups": ["mfcc", "chroma"]},
    {"win_length": 1024},
    {"hop_length": 0},
    {"n_mfcc": 41},
    {"n_lfcc": 71},
    {"means": "some"},
    {"groups": ["mfcc"], "statistics": ["mean"], "means": "artefact", "shape_groups": [],
     "modulation": False},  # leaves nothing
    {"statistics": ["mean", "median"]},
    {"shape_groups": ["mfcc", "chroma"]},
])
def test_config_rejects_invalid_values(change):
    with pytest.raises(ValueError):
        FeatureConfig.from_dict({**FeatureConfig().to_dict(), **change})
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in change.items()}
    with pytest.raises(ValueError):  # the constructor validates too, not only model.json
        FeatureConfig(**values)
    with pytest.raises(ValueError):
        dataclasses.replace(FeatureConfig(), **values)


def test_config_is_hashable_and_frozen():
    cfg = FeatureConfig()
    assert hash(cfg) == hash(FeatureConfig())
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_fft = 1024  # type: ignore[misc]


# --------------------------------------------------------------------------- streaming, definitions


def _blocks(y: np.ndarray, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.integers(0, len(y), 12))
    return [y[a:b] for a, b in itertools.pairwise([0, *cuts, len(y)])]  # some are empty


@pytest.mark.parametrize("seconds", [0.5, 3.2, 17.3])
@pytest.mark.parametrize("config", [FeatureConfig(), SHAPED], ids=["default", "shaped"])
def test_window_stream_in_blocks_equals_extract(config, gen, seconds, monkeypatch):
    """Audio fed in irregular blocks (and frame chunks smaller than a window) gives the
    windows of the whole clip."""
    monkeypatch.setattr(spectra, "_FRAME_CHUNK", 97)
    y = gen.speechlike(SR, seconds, seed=11).astype(np.float32)
    whole = extract(y, config)
    stream = features.WindowStream(config)
    parts = [w for block in _blocks(y, 1) for w in stream.feed(block)]
    last = stream.finish()
    assert last is not None
    parts.append(last)
    assert tuple(span for part in parts for span in part.spans) == whole.spans
    assert last.duration_s == whole.duration_s == pytest.approx(seconds)
    np.testing.assert_allclose(np.vstack([p.matrix for p in parts]), whole.matrix,
                               rtol=1e-5, atol=1e-6)


def test_iter_frame_features_pieces_equal_frame_features(clip):
    config = FeatureConfig(means="all")
    rows, energy = features.frame_features(clip, config)
    pieces = list(features.iter_frame_features(_blocks(clip, 2), config))
    np.testing.assert_array_equal(np.concatenate([p for p, _ in pieces]), rows)
    np.testing.assert_array_equal(np.concatenate([e for _, e in pieces]), energy)


def _reference_phase(y: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """The definition: angle of X_t conj(X_{t-1}) exp(-i 2 pi k hop / n_fft), in float64."""
    frames = features._frames(y, config).astype(np.float64)
    spec = np.fft.rfft(frames * features._analysis_window(config.win_length, config.n_fft),
                       axis=1)
    n_bins = spec.shape[1]
    expected = np.exp(-2j * np.pi * np.arange(n_bins) * config.hop_length / config.n_fft)
    cross = spec[1:] * np.conj(spec[:-1]) * expected
    deviation, weight = np.abs(np.angle(cross)), np.abs(cross)
    high = round(config.high_band_hz / (config.sample_rate / 2) * (n_bins - 1))
    out = np.zeros((len(spec), 4))
    for column, band in enumerate((slice(2, high), slice(high, n_bins - 1))):
        w, d = weight[:, band] + 1e-10, deviation[:, band]
        mean = (w * d).sum(axis=1) / w.sum(axis=1)
        out[1:, column] = mean
        out[1:, column + 2] = np.sqrt((w * (d - mean[:, None]) ** 2).sum(axis=1) / w.sum(axis=1))
    return out


def _reference_spectral(power: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """The definitions of the spectral measures, written plainly in float64."""
    n_bins = power.shape[1]
    high = round(config.high_band_hz / (config.sample_rate / 2) * (n_bins - 1))
    p = power.astype(np.float64) + 1e-10
    log_p = np.log(p)
    total = p.sum(axis=1)
    padded = np.pad(log_p, ((0, 0), (4, 4)), mode="edge")
    smooth = np.stack([padded[:, k : k + 9].mean(axis=1) for k in range(n_bins)], axis=1)
    residual = log_p - smooth
    flux = np.zeros(len(p))
    flux[1:] = np.sqrt(np.mean(np.diff(log_p, axis=0) ** 2, axis=1))
    return np.stack([
        np.exp(log_p.mean(axis=1)) / p.mean(axis=1),
        np.exp(log_p[:, high:].mean(axis=1)) / p[:, high:].mean(axis=1),
        10 * np.log10(p[:, high:].sum(axis=1) / total),
        residual[:, 4:high].std(axis=1), residual[:, high:-4].std(axis=1), flux,
        (np.cumsum(p, axis=1) < 0.95 * total[:, None]).sum(axis=1) / (n_bins - 1),
    ], axis=1)


def test_phase_and_spectral_columns_follow_their_definitions(config, clip, monkeypatch):
    """The fast paths (phase-aligned STFT, band sums as products, blockwise roll-off,
    chunk seams) compute the same measures as their plain definitions."""
    monkeypatch.setattr(spectra, "_FRAME_CHUNK", 64)
    y = clip * np.float32(0.5 / np.max(np.abs(clip)))
    names = features.frame_feature_names(config)
    rows, _ = features.frame_features(y, config)
    phase = rows[:, [names.index(n) for n in features._PHASE_NAMES]]
    np.testing.assert_allclose(phase, _reference_phase(y, config), rtol=1e-4, atol=1e-4)
    spectral = rows[:, [names.index(n) for n in features._SPECTRAL_NAMES]]
    reference = _reference_spectral(features.power_spectrogram(y, config), config)
    rolloff = features._SPECTRAL_NAMES.index("rolloff")
    others = [i for i in range(reference.shape[1]) if i != rolloff]
    np.testing.assert_allclose(spectral[:, others], reference[:, others], rtol=1e-4, atol=1e-4)
    # a running sum within float32 rounding of 95 % may land one bin either side
    assert np.abs(spectral[:, rolloff] - reference[:, rolloff]).max() <= 1.01 / 256
    assert np.mean(spectral[:, rolloff] != reference[:, rolloff].astype(np.float32)) < 0.01


def test_public_phase_and_spectral_functions(config, clip):
    frames = features._frames(clip, config)
    spec = np.fft.rfft(frames * features._analysis_window(config.win_length, config.n_fft),
                       axis=1)
    np.testing.assert_allclose(features.phase_deviation(spec, config),
                               _reference_phase(clip, config), rtol=1e-4, atol=1e-4)
    power = features.power_spectrogram(clip, config)
    got = features.spectral_measures(power, config)
    assert got.shape == (len(power), len(features._SPECTRAL_NAMES))
    np.testing.assert_allclose(got[:, :6], _reference_spectral(power, config)[:, :6],
                               rtol=1e-4, atol=1e-4)
@pytest.mark.parametrize(("seconds", "piece"), [(9.7, 5000), (61.0, 48_000), (95.3, 7919),
                                                (130.0, 1 << 16)])
def test_window_stream_matches_whole_file_extraction(gen, seconds, piece):
    """Block-wise extraction sees the same windows, spans and frames as extract()."""
    y = (gen.speechlike(SR, seconds, seed=5) + 0.05 * gen.noise(SR, seconds, seed=6))
    y = (y / np.max(np.abs(y)) * 0.8).astype(np.float32)
    config = FeatureConfig()
    whole = extract(y, config)
    stream = features.WindowStream(config)
    parts = [w for start in range(0, len(y), piece) for w in stream.feed(y[start:start + piece])]
    parts.append(stream.finish())
    assert tuple(span for part in parts for span in part.spans) == whole.spans
    matrix = np.vstack([part.matrix for part in parts])
    scale = np.abs(whole.matrix).max(axis=0) + 1e-6
    assert np.max(np.abs(matrix - whole.matrix) / scale) < 1e-3  # gain: first 30 s vs whole file
    assert stream.samples_seen == len(y)
    assert stream.finish() is None


def test_window_stream_refuses_whole_clip_features():
    with pytest.raises(ValueError, match="windowed streaming"):
        features.WindowStream(FeatureConfig.legacy())
