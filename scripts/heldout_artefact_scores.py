"""Held-out artefact scores of every corpus clip, for fitting the speaker fusion.

The bundled model was trained on the whole corpus, so its scores on corpus clips
are in-sample and too confident. The fusion (``scripts/fit_speaker.py``) is fitted
on scores closer to what a deployed model meets: 5-fold cross-validation grouped
by genuine corpus and by generator family (``held_out.unseen_fold_scores``), so each
genuine clip is scored by a model that never saw its corpus nor the fakes made from it,
and each synthetic clip by one that never saw its generator family (the ``unseen``
protocol's idea in 5 fits instead of one per group). Writes ``{path relative to DATA:
raw score}`` as JSON::

    python scripts/heldout_artefact_scores.py /work/shared/data -o cache/heldout.json \\
        --cache cache/features
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout, not whichever is installed

from deepfake_audio import feature_table, fitting, held_out, metrics  # noqa: E402
from deepfake_audio.clip_view import view_settings, window_means  # noqa: E402
from deepfake_audio.datasets import load_dataset  # noqa: E402
from deepfake_audio.model import load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=None, help="window-feature cache folder")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()

    clips = load_dataset(args.data)
    model = load_model(None)
    settings = fitting.TrainSettings.from_stored(model.metadata.training.get("settings", {}))
    table = feature_table.extract_dataset(
        clips, model.metadata.features, augment_copies=settings.augment_copies,
        max_windows=settings.max_windows, seed=settings.seed, jobs=args.jobs,
        cache_dir=args.cache,
    )
    labels = np.array([c.label for c in clips])
    raw = held_out.unseen_fold_scores(clips, table, settings, 5, fusion=model.metadata.fusion,
                                      jobs=args.jobs)
    if model.metadata.clip_view is not None:  # held out the same way, then joined
        view = held_out.unseen_fold_scores(clips, window_means(table, len(clips)),
                                           view_settings(settings), 5, jobs=args.jobs)
        raw = model.metadata.clip_view.combine(raw, view)
    root = args.data if args.data.is_dir() else args.data.parent
    scores = {
        str(clip.path.relative_to(root)): float(score)
        for clip, score in zip(clips, raw, strict=True)
        if np.isfinite(score)
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(scores, indent=0) + "\n")
    print(f"{len(scores)} held-out scores -> {args.output} (model {model.metadata.model_id})")
    ok = np.isfinite(raw)
    summary = metrics.summarise(labels[ok], raw[ok], model.metadata.decision_threshold)
    print(f"all clips, 5 folds grouped by corpus (with its fakes) / generator family:"
          f" EER {summary['eer']:.2%}, ROC-AUC {summary['roc_auc']:.4f}")


if __name__ == "__main__":
    main()
