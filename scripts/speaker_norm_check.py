#!/usr/bin/env python
"""Variants of the speaker score on the reference trials (issue 14: speaker signal alone).

    python scripts/speaker_norm_check.py ../shared/data --embeddings cache/embeddings.npz

The trials and the s-norm cohort are those of ``scripts/fit_speaker.py`` (same embedding
cache). The checked clip of each trial is embedded as the library embeds a checked
recording (``speaker_scoring.probe_partials``), its references from every partial. Each
variant scores every trial; printed is the EER of voice-cloning trials
against all genuine trials (the figure ``fit_speaker.py`` prints as "speaker signal"),
against only the genuine trials of speakers that also have cloning trials, and of all
synthetic trials against all genuine ones. Variants: the bundled score (cosine to the
references' mean embedding, s-normalised against 90 LibriSpeech speakers), embeddings
centred on the cohort mean, a cohort twice as large (the other LibriSpeech clips),
PCA whitening fitted on that cohort, and per-reference scoring (mean or best two of the
s-normalised cosines to each reference).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout, not whichever is installed

from deepfake_audio.datasets import load_dataset  # noqa: E402
from deepfake_audio.metrics import equal_error_rate  # noqa: E402
from deepfake_audio.reference_eval import (  # noqa: E402
    Trial,
    cohort_clips,
    embed_clips,
    reference_trials,
    synthesis_kind,
    trial_clips,
)
from deepfake_audio.speaker_scoring import snorm  # noqa: E402

Scorer = Callable[[np.ndarray, Trial], float]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--embeddings", type=Path, help="embedding cache (.npz)")
    args = parser.parse_args()

    everything = load_dataset(args.data)
    librispeech = [c for c in everything if c.source == "librispeech"]
    halves = [embed_clips(part, cache=args.embeddings, progress=False).vectors
              for part in (cohort_clips(everything), librispeech[1::2])]
    cohort, other = (h[~np.isnan(h[:, 0])] for h in halves)
    clips = trial_clips(everything)
    embedded = embed_clips(clips, cache=args.embeddings, progress=False)
    vectors, probes = embedded.vectors, embedded.probe_vectors
    trials = reference_trials(clips, ~np.isnan(vectors[:, 0]))
    labels = np.array([clips[t.index].label for t in trials])
    kinds = np.array([synthesis_kind(clips[t.index]) if clips[t.index].label else "genuine"
                      for t in trials])
    speakers = np.array([clips[t.index].speaker for t in trials])
    cloned = np.isin(speakers, list(set(speakers[kinds == "voice cloning"])))
    selections = {
        "cloning vs all genuine": (kinds == "voice cloning") | (labels == 0),
        "cloning vs same speakers": (kinds == "voice cloning") | ((labels == 0) & cloned),
        "all synthetic": np.ones(len(trials), bool),
    }
    print(f"{len(trials)} trials: {int((kinds == 'voice cloning').sum())} cloning, "
          f"{int((labels == 0).sum())} genuine ({int(((labels == 0) & cloned).sum())} of "
          f"speakers with cloning trials); cohort {len(cohort)} (+{len(other)}) LibriSpeech")
    print(f"{'score':<38}" + "".join(f"{name:>26}" for name in selections))

    def report(name: str, vecs: np.ndarray, probe_vecs: np.ndarray, cohort_vecs: np.ndarray,
               how: str = "mean emb") -> None:
        scores = []
        for t in trials:
            probe, refs = probe_vecs[t.index], vecs[list(t.references)]
            if how == "mean emb":
                scores.append(snorm(probe, unit(refs.mean(axis=0)), cohort_vecs))
                continue
            each = sorted(snorm(probe, r, cohort_vecs) for r in refs)
            scores.append(float(np.mean(each if how == "per-ref mean" else each[-2:])))
        score = np.array(scores)
        print(f"{name:<38}" + "".join(
            f"{equal_error_rate(labels[sel], -score[sel])[0] * 100:25.1f}%"
            for sel in selections.values()))

    both = np.vstack([cohort, other])
    report("bundled (s-norm, 90 speakers)", vectors, probes, cohort)
    mean = cohort.mean(axis=0)
    report("centred on the cohort mean", unit(vectors - mean), unit(probes - mean),
           unit(cohort - mean))
    report("cohort of 180 clips", vectors, probes, both)
    centre = both.mean(axis=0)
    _, singular, basis = np.linalg.svd(both - centre, full_matrices=False)
    for k in (32, 128):
        project = basis[:k].T / singular[:k]
        report(f"PCA-whitened, {k} dims", unit((vectors - centre) @ project),
               unit((probes - centre) @ project), unit((both - centre) @ project))
    centred, centred_cohort = unit(vectors - mean), unit(cohort - mean)
    centred_probes = unit(probes - mean)
    report("centred, per-reference mean", centred, centred_probes, centred_cohort,
           "per-ref mean")
    report("centred, best two references", centred, centred_probes, centred_cohort,
           "best two")


if __name__ == "__main__":
    main()
