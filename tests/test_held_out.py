"""Held-out protocols: speaker folds, leave-one-corpus/generator-out, unseen folds."""

from __future__ import annotations

import numpy as np

from deepfake_audio import held_out
from deepfake_audio.boosting import Fusion
from deepfake_audio.datasets import Clip, load_dataset
from deepfake_audio.feature_table import extract_dataset
from deepfake_audio.features import FeatureConfig
from deepfake_audio.fitting import TrainSettings
from deepfake_audio.held_out import grouped_folds, leave_one_out, unseen_scores


def test_small_datasets_get_fewer_calibration_folds(tiny_data):
    clips = [c for c in load_dataset(tiny_data) if c.speaker[-1] in "012"]  # 3 speakers/class
    folds = grouped_folds(clips, 5, seed=0)
    assert sorted(set(folds.tolist())) == [0, 1, 2]
    for fold in range(3):
        members = [c for c, f in zip(clips, folds, strict=True) if f == fold]
        assert {c.label for c in members} == {0, 1}


def test_unseen_scores_hold_out_corpus_for_real_and_generator_for_fake(two_corpora):

    settings = TrainSettings(augment_copies=0)
    table = extract_dataset(two_corpora, FeatureConfig(), max_windows=settings.max_windows,
                            progress=False)
    labels = np.array([c.label for c in two_corpora])
    scores = unseen_scores(two_corpora, table, settings, progress=False)
    by_corpus = leave_one_out(two_corpora, table, settings, lambda c: c.corpus, label=0,
                              progress=False)
    by_generator = leave_one_out(two_corpora, table, settings, lambda c: c.family, label=1,
                                 progress=False)
    assert not np.isnan(scores).any()
    np.testing.assert_allclose(scores[labels == 0], by_corpus[labels == 0])
    np.testing.assert_allclose(scores[labels == 1], by_generator[labels == 1])


def test_boosting_adds_a_column_beside_the_unchanged_svm(two_corpora):

    plain_settings = TrainSettings(augment_copies=0, boosting=False)
    table = extract_dataset(two_corpora, FeatureConfig(), max_windows=6, progress=False)
    plain = unseen_scores(two_corpora, table, plain_settings, progress=False)
    both = unseen_scores(two_corpora, table, TrainSettings(augment_copies=0), progress=False)
    assert plain.shape == (24,) and both.shape == (24, 2)
    np.testing.assert_allclose(both[:, 0], plain)
    assert not np.allclose(both[:, 1], plain)
    fusion = Fusion.fit(both[:, 0], both[:, 1])
    np.testing.assert_allclose(
        unseen_scores(two_corpora, table, TrainSettings(augment_copies=0), fusion=fusion,
                      progress=False), fusion.combine(both[:, 0], both[:, 1]))


def test_unseen_fold_scores_keep_held_out_corpora_and_their_fakes_out_of_training(
        tiny_data, monkeypatch):
    """The k-fold unseen protocol (speaker-fusion fit): a fold's model never saw its genuine
    corpora, the fakes made from them, or its generator families; every clip is scored once."""
    # Four corpora and four families; each fake was made from the next speaker's corpus.
    clips = [Clip(c.path, c.label, f"corpus{(int(c.speaker[-1]) + c.label) % 4}",
                  f"gen{c.speaker[-1]}" if c.label else "human", c.speaker)
             for c in load_dataset(tiny_data)]
    settings = TrainSettings(augment_copies=0)
    table = extract_dataset(clips, FeatureConfig(), max_windows=2, progress=False)
    corpora = np.array([c.corpus for c in clips])
    families = np.array([c.family for c in clips])
    labels = np.array([c.label for c in clips])
    folds: list[tuple[np.ndarray, np.ndarray]] = []
    fit_and_score = held_out._fit_and_score

    def spy(table, labels, weights, settings, train_rows, test_rows, n_clips):
        folds.append((np.unique(table.clip_index[train_rows]),
                      np.unique(table.clip_index[test_rows])))
        return fit_and_score(table, labels, weights, settings, train_rows, test_rows, n_clips)

    monkeypatch.setattr(held_out, "_fit_and_score", spy)
    scores = held_out.unseen_fold_scores(clips, table, settings, 4, progress=False)
    assert scores.shape == (len(clips), 2) and not np.isnan(scores).any()
    scored = np.concatenate([test for _, test in folds])
    assert sorted(scored.tolist()) == list(range(len(clips)))  # each clip exactly once
    for train_clips, test_clips in folds:
        held_corpora = set(corpora[test_clips][labels[test_clips] == 0])
        held_families = set(families[test_clips][labels[test_clips] == 1])
        assert held_corpora or held_families
        assert not held_corpora & set(corpora[train_clips])  # fakes of those corpora too
        assert not held_families & set(families[train_clips])
        assert {0, 1} <= set(labels[train_clips])
