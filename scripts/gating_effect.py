#!/usr/bin/env python
"""Unseen-protocol figures with and without speech gating (model card, issue 11).

    python scripts/fit_band.py deepfake_audio/models/default ../shared/data   # writes the scores
    python scripts/gating_effect.py --data ../shared/data

Reads the held-out window scores ``scripts/fit_band.py`` keeps (every window of every
clip, scored by a model trained without the clip's corpus or generator family), marks each
window speech or not exactly as :class:`deepfake_audio.Detector` does
(:class:`deepfake_audio.vad.SpeechActivity`, :data:`~deepfake_audio.vad.MIN_SPEECH_SHARE`),
and prints the clip-level figures twice: every window averaged (no gate) and only speech
windows averaged (the gate). A clip without a single speech window gets no verdict from the
gated detector (``NoSpeechError``); it is counted and left out of the gated row.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from fit_band import DEFAULT_SCORES, load_scores  # noqa: E402

from deepfake_audio import metrics  # noqa: E402
from deepfake_audio.audio import load_audio  # noqa: E402
from deepfake_audio.datasets import load_dataset  # noqa: E402
from deepfake_audio.model import load_model  # noqa: E402
from deepfake_audio.vad import MIN_SPEECH_SHARE, SpeechActivity  # noqa: E402


def speech_mask(path: str, spans: np.ndarray, sample_rate: int, window_s: float,
                ) -> tuple[np.ndarray, bool]:
    """Speech windows as the detector marks them, and whether the dense re-read found them."""
    audio = load_audio(path, target_sr=sample_rate, max_duration_s=None, min_duration_s=0.1)
    activity = SpeechActivity(sample_rate, window_s)
    activity.feed(audio.samples)
    activity.finish()
    windows = [tuple(s) for s in spans]
    mask = activity.speech_shares(windows) >= MIN_SPEECH_SHARE
    if not mask.any():  # as the detector does: a short recording is read again, densely
        dense = activity.dense_shares(windows)
        if dense is not None and (dense >= MIN_SPEECH_SHARE).any():
            return dense >= MIN_SPEECH_SHARE, True
    return mask, False


def figures(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray,
            threshold: float) -> dict[str, float]:
    summary = metrics.summarise(labels, scores, threshold)
    summary["balanced_eer"] = metrics.equal_error_rate(labels, scores, weights)[0]
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--model", default=None, help="model folder (default: the bundled one)")
    parser.add_argument("--scores", type=Path, default=DEFAULT_SCORES)
    args = parser.parse_args()

    model = load_model(args.model)
    scores, paths, model_id = load_scores(args.scores)
    if model_id != model.metadata.model_id:
        print(f"error: {args.scores} holds scores of {model_id}, not {model.metadata.model_id};"
              " run scripts/fit_band.py again", file=sys.stderr)
        return 2
    by_path = {str(c.path): c for c in load_dataset(args.data)}
    clips = [by_path[p] for p in paths]
    config = model.metadata.features
    threshold = model.metadata.decision_threshold

    all_scores, gated_scores, reread = [], [], []
    for path, windows, spans in zip(paths, scores.windows, scores.spans, strict=True):
        if not len(windows):
            all_scores.append(np.nan)
            gated_scores.append(np.nan)
            continue
        mask, dense = speech_mask(path, spans, config.sample_rate, config.window_s or 3.0)
        if dense:
            reread.append(by_path[path])
        all_scores.append(float(np.mean(windows)))
        gated_scores.append(float(np.mean(windows[mask])) if mask.any() else np.nan)
    plain, gated = np.array(all_scores), np.array(gated_scores)
    scored = ~np.isnan(plain)
    no_speech = scored & np.isnan(gated)
    weights = metrics.group_balanced_weights(clips)

    print(f"{model_id}: unseen protocol, {int(scored.sum())} clips with held-out scores;"
          f" {int(no_speech.sum())} of them have no speech window"
          f" ({int((no_speech & (scores.labels == 0)).sum())} genuine,"
          f" {int((no_speech & (scores.labels == 1)).sum())} fake)")
    sources = Counter(f"{c.source} ({'fake' if c.label else 'genuine'})" for c in reread)
    print(f"{len(reread)} of them had speech only in the dense re-read of short recordings: "
          + (", ".join(f"{n} {name}" for name, n in sorted(sources.items())) or "none"))
    rows = {
        "every window (no gate)": figures(scores.labels[scored], plain[scored],
                                          weights[scored], threshold),
        "same clips, no gate": figures(scores.labels[scored & ~no_speech],
                                       plain[scored & ~no_speech],
                                       weights[scored & ~no_speech], threshold),
        "speech windows (gate)": figures(scores.labels[scored & ~no_speech],
                                         gated[scored & ~no_speech],
                                         weights[scored & ~no_speech], threshold),
    }
    print(f"{'':<26}{'clips':>7}{'EER':>9}{'balanced':>10}{'ROC-AUC':>9}"
          f"{'real->real':>12}{'fake->fake':>12}")
    for name, row in rows.items():
        print(f"{name:<26}{row['n']:>7}{row['eer']:>9.2%}{row['balanced_eer']:>10.2%}"
              f"{row['roc_auc']:>9.3f}{row['real_called_real']:>12.1%}"
              f"{row['fake_called_fake']:>12.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
