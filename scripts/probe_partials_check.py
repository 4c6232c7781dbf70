#!/usr/bin/env python
"""How many GE2E partials the checked recording needs (issue 14: speed of a check with references).

    python scripts/probe_partials_check.py ../shared/data --embeddings cache/embeddings.npz

The encoder runs a 3-layer LSTM over every 1.6 s partial (about 1.3 per second of speech),
so it, not the artefact analysis, dominated a check with a saved profile. The trials and
the s-norm cohort are those of ``scripts/fit_speaker.py`` (references embedded from all
their partials, from the same cache); each rule embeds the checked clips from fewer
partials, spread evenly over their speech. Printed per rule: the EER of the speaker score
(s-normalised cosine to the references' mean) for voice-cloning trials against all
genuine trials (``fit_speaker.py``'s "speaker signal") and for all synthetic trials, how many
checked clips the rule changes, the median cosine between a long clip's embedding under
the rule and from every partial (clips of 10 or more partials), and the encoder's CPU
time for a 10 s probe.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # per-core timings

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout, not whichever is installed

from deepfake_audio.audio import load_audio  # noqa: E402
from deepfake_audio.datasets import load_dataset  # noqa: E402
from deepfake_audio.ge2e import SAMPLE_RATE, load_encoder  # noqa: E402
from deepfake_audio.metrics import equal_error_rate  # noqa: E402
from deepfake_audio.reference_eval import (  # noqa: E402
    centroid,
    cohort_clips,
    embed_clips,
    reference_trials,
    synthesis_kind,
    trial_clips,
)
from deepfake_audio.speaker_scoring import probe_partials, snorm  # noqa: E402

Rule = Callable[[float], int | None]
RULES: dict[str, Rule] = {
    "every partial (Resemblyzer)": lambda seconds: None,
    "bundled: 1 per 4 s, 2 to 6": probe_partials,
    "at most 2": lambda seconds: 2,
    "at most 3": lambda seconds: 3,
    "at most 4": lambda seconds: 4,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--embeddings", type=Path, help="embedding cache (.npz)")
    args = parser.parse_args()

    everything = load_dataset(args.data)
    cohort = embed_clips(cohort_clips(everything), cache=args.embeddings,
                         progress=False).vectors
    cohort = cohort[~np.isnan(cohort[:, 0])]
    clips = trial_clips(everything)
    references = embed_clips(clips, cache=args.embeddings, progress=False).vectors
    trials = reference_trials(clips, ~np.isnan(references[:, 0]))
    labels = np.array([clips[t.index].label for t in trials])
    kinds = np.array([synthesis_kind(clips[t.index]) if clips[t.index].label else "genuine"
                      for t in trials])
    selections = {"cloning vs genuine": (kinds == "voice cloning") | (labels == 0),
                  "all synthetic": np.ones(len(trials), bool)}

    encoder = load_encoder()
    full = {}
    durations = {}
    genuine_speech = []
    for i in sorted({t.index for t in trials}):
        audio = load_audio(clips[i].path, target_sr=SAMPLE_RATE, max_duration_s=None)
        full[i], durations[i] = encoder.embed(audio.samples), audio.duration_s
        if clips[i].label == 0:
            genuine_speech.append(audio.samples)
    # The timed probe: 10 s of genuine speech (the trial clips, end to end).
    probe = np.concatenate(genuine_speech)[: 10 * SAMPLE_RATE]

    print(f"{len(trials)} trials ({int((kinds == 'voice cloning').sum())} voice cloning, "
          f"{int((labels == 0).sum())} genuine); cohort of {len(cohort)} LibriSpeech clips; "
          f"{sum(len(e.partials) >= 10 for e in full.values())} checked clips of 10+ partials")
    print(f"{'checked clip embedded from':<30}" + "".join(f"{n:>20}" for n in selections)
          + f"{'probes changed':>16}{'cos, long clips':>17}{'10 s probe, ms':>16}")
    long_clips = [i for i, e in full.items() if len(e.partials) >= 10]
    for name, rule in RULES.items():
        vectors: dict[int, np.ndarray] = {}
        changed = 0
        for i, embedding in full.items():
            cap = rule(durations[i])
            fewer = embedding if cap is None else embedding.fewer(cap)
            changed += fewer is not embedding
            vectors[i] = fewer.vector
        score = np.array([snorm(vectors[t.index], centroid(references, t), cohort)
                          for t in trials])
        cap = rule(10.0)
        encoder.embed(probe, max_partials=cap)
        started = time.process_time()
        for _ in range(5):
            encoder.embed(probe, max_partials=cap)
        cpu_ms = (time.process_time() - started) / 5 * 1000
        eers = "".join(f"{equal_error_rate(labels[sel], -score[sel])[0] * 100:19.2f}%"
                       for sel in selections.values())
        cosine = np.median([float(vectors[i] @ full[i].vector) for i in long_clips])
        print(f"{name:<30}{eers}{changed:16d}{cosine:17.3f}{cpu_ms:16.1f}")


if __name__ == "__main__":
    main()
