#!/usr/bin/env python
"""Fit a model's inconclusive band on held-out scores and write it into its ``model.json``.

    python scripts/fit_band.py deepfake_audio/models/default ../shared/data --rows 1065 -j 2

Scores every clip of DATA under the ``unseen`` protocol, window by window
(:func:`deepfake_audio.evaluation.unseen_window_scores`: genuine clips by models trained
without their corpus, fakes by models trained without their generator family, with the
model's own feature and training settings), fits the band with
:func:`deepfake_audio.metrics.fit_band` (the narrowest band around the threshold outside
which each side errs at most ``--max-error`` of the time, both classes weighted equally
unless ``--prior-deepfake`` says otherwise)
and prints its coverage and accuracy. The window scores are kept in ``--scores`` (reused
when present, and read by ``scripts/insert_eval.py``); each model's own window scores go
to ``--components`` for ``scripts/window_fusion_check.py``. ``--operating-points``
prints what the binary classification would say at other thresholds. Only ``band`` and
``metrics.band`` of ``model.json`` change; the pickles and their hashes are untouched.
Run it again after retraining a model (delete the ``--scores`` file first, unless the
window recipe is unchanged). A model with a clip view (:mod:`deepfake_audio.clip_view`)
joins each clip's window mean to its clip view's held-out score (same protocol) first.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deepfake_audio import feature_table, fitting, held_out, metrics  # noqa: E402
from deepfake_audio.clip_view import view_settings, window_means  # noqa: E402
from deepfake_audio.datasets import load_datasets  # noqa: E402
from deepfake_audio.evaluation import (  # noqa: E402
    WindowScores,
    fuse_windows,
    unseen_window_components,
)
from deepfake_audio.model import METADATA_FILE, LoadedModel, load_model  # noqa: E402
from deepfake_audio.pool import without_decoder_noise  # noqa: E402

DEFAULT_SCORES = ROOT / "build" / "unseen-windows.npz"
DEFAULT_COMPONENTS = ROOT / "build" / "window-components.npz"


def save_components(path: Path, windows: tuple[np.ndarray, ...]) -> None:
    """Per clip, the ``(windows, models)`` held-out scores of each model, unfused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width = max((w.shape[1] for w in windows if w.ndim == 2), default=1)
    np.savez(path, counts=np.array([len(w) for w in windows]),
             values=np.concatenate([*[w.reshape(-1, width) for w in windows],
                                    np.zeros((0, width))]))


def load_components(path: Path) -> list[np.ndarray]:
    """What :func:`save_components` wrote."""
    with np.load(path) as data:
        counts, values = data["counts"], data["values"]
    return np.split(values, np.cumsum(counts)[:-1])


def save_scores(path: Path, scores: WindowScores, paths: list[str], model_id: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    counts = np.array([len(w) for w in scores.windows])
    np.savez(path, labels=scores.labels, counts=counts, paths=np.array(paths),
             model=np.array(model_id),
             windows=np.concatenate([*scores.windows, np.zeros(0)]),
             spans=np.concatenate([s.reshape(-1, 2) for s in scores.spans if len(s)]
                                  or [np.zeros((0, 2))]))


def load_scores(path: Path) -> tuple[WindowScores, list[str], str]:
    """Window scores written by this script: ``(scores, clip paths, model id)``."""
    with np.load(path) as data:
        counts = data["counts"]
        offsets = np.concatenate([[0], np.cumsum(counts)])
        windows = tuple(data["windows"][a:b] for a, b in itertools.pairwise(offsets))
        spans = tuple(data["spans"][a:b] for a, b in itertools.pairwise(offsets))
        return (WindowScores(data["labels"], windows, spans), data["paths"].tolist(),
                str(data["model"]))


def clip_view_scores(model: LoadedModel, data: list[str], paths: list[str], jobs: int,
                     cache: Path) -> np.ndarray:
    """The clip view's held-out scores (unseen protocol, as training calibrates) for ``paths``."""
    clips = load_datasets(data)
    settings = fitting.TrainSettings.from_stored(model.metadata.training["settings"])
    table = feature_table.extract_dataset(
        clips, model.metadata.features, augment_copies=settings.augment_copies,
        max_windows=settings.max_windows, seed=settings.seed, jobs=jobs, cache_dir=cache,
        progress=False)
    view = held_out.unseen_scores(clips, window_means(table, len(clips)),
                                  view_settings(settings), jobs=jobs, progress=False)
    by_path = {str(c.path): float(v) for c, v in zip(clips, view, strict=True)}
    return np.array([by_path.get(path, np.nan) for path in paths])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("data", nargs="+", help="labelled data (as for deepfake-audio evaluate)")
    parser.add_argument("--rows", type=int, default=0,
                        help="use only the first N clips (e.g. the corpus a model was trained on)")
    parser.add_argument("--max-error", type=float, default=0.15)
    parser.add_argument("--scores", type=Path, default=DEFAULT_SCORES)
    parser.add_argument("--components", type=Path, default=DEFAULT_COMPONENTS,
                        help="where the per-model window scores go (window_fusion_check.py)")
    parser.add_argument("--cache", type=Path, default=ROOT / "build" / "feature-cache")
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--dry-run", action="store_true", help="print, do not write model.json")
    parser.add_argument("--prior-deepfake", type=float, default=0.5, metavar="SHARE",
                        help="weight of the fakes in the band's error shares (default 0.5:"
                             " both classes count equally, whatever the calibration's prior)")
    parser.add_argument("--operating-points", type=float, nargs="+", metavar="THRESHOLD",
                        help="also print the binary rates at these raw-score thresholds")
    args = parser.parse_args()

    model = load_model(args.model_dir)
    if args.scores.is_file():
        scores, paths, scored_by = load_scores(args.scores)
        print(f"window scores read from {args.scores} ({len(paths)} clips, model {scored_by})")
    else:
        clips = load_datasets(args.data)
        if args.rows:
            clips = clips[: args.rows]
        with without_decoder_noise():
            components = unseen_window_components(clips, model_dir=args.model_dir,
                                                  jobs=args.jobs, cache_dir=args.cache)
        save_components(args.components, components.windows)
        scores = fuse_windows(components, model.metadata.fusion)
        paths = [str(c.path) for c in clips]
        save_scores(args.scores, _drop_unscored(scores), paths, model.metadata.model_id)
        print(f"window scores of {len(paths)} clips written to {args.scores}")
    raw = scores.clip_scores
    if model.metadata.clip_view is not None:
        raw = model.metadata.clip_view.combine(
            raw, clip_view_scores(model, args.data, paths, args.jobs, args.cache))
        print(f"clip view joined at weight {model.metadata.clip_view.weight}")
    valid = ~np.isnan(raw)
    labels, raw = scores.labels[valid], raw[valid]
    threshold = model.metadata.decision_threshold
    prior = args.prior_deepfake
    band = metrics.fit_band(labels, raw, threshold, max_error=args.max_error,
                            prior_deepfake=prior)
    weighting = ("classes weighted equally" if prior == 0.5
                 else f"fakes weighted {prior:.0%}")
    before = metrics.band_summary(labels, raw, (threshold, threshold))
    after = metrics.band_summary(labels, raw, band)
    print(f"threshold {threshold:+.4f}; band [{band[0]:+.4f}, {band[1]:+.4f}] on raw_score"
          f" (max error {args.max_error:.0%} each side, {weighting})")
    print(f"{'unseen protocol, ' + str(len(raw)) + ' clips':<34} {'no band':>10} {'band':>10}")
    for key in ("coverage", "accuracy", "balanced_coverage", "balanced_accuracy",
                "real_called_real", "real_inconclusive", "fake_called_fake",
                "fake_inconclusive"):
        print(f"  {key:<32} {before[key] * 100:9.1f}% {after[key] * 100:9.1f}%")
    if args.operating_points:
        print(f"{'threshold on raw_score':<24} {'genuine called real':>20}"
              f" {'fakes called fake':>18}")
        for point in sorted({threshold, *args.operating_points}):
            row = metrics.band_summary(labels, raw, (point, point))
            mark = " (the model's)" if point == threshold else ""
            print(f"  {point:+.4f}{mark:<14} {row['real_called_real'] * 100:19.1f}%"
                  f" {row['fake_called_fake'] * 100:17.1f}%")
    if args.dry_run:
        return 0
    meta_path = Path(args.model_dir) / METADATA_FILE
    data = json.loads(meta_path.read_text(encoding="utf-8"))
    data["band"] = {"low": band[0], "high": band[1]}
    data.setdefault("metrics", {})["band"] = {
        "rule": f"narrowest band around the threshold outside which each side errs at most"
                f" {args.max_error:.0%} ({weighting}); scripts/fit_band.py",
        "protocol": "unseen (window-level)", "clips": len(raw), **after,
    }
    meta_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    load_model(args.model_dir)  # the edited model.json must still load and verify
    print(f"band written to {meta_path}")
    return 0


def _drop_unscored(scores: WindowScores) -> WindowScores:
    # A clip whose group could not be held out has spans but no scores: keep both aligned.
    spans = tuple(s if len(w) else np.zeros((0, 2))
                  for w, s in zip(scores.windows, scores.spans, strict=True))
    return WindowScores(scores.labels, scores.windows, spans)


if __name__ == "__main__":
    raise SystemExit(main())
