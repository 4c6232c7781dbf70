"""``deepfake-audio evaluate``: score a labelled dataset or run a held-out protocol.

Protocols
---------
``model``
    Score every clip with the given (default: bundled) model through the same
    :meth:`Detector.analyze` path users call.
``speaker-cv``
    5-fold cross-validation grouped by speaker, retraining with the model's settings.
``leave-one-generator-out``
    Each generator family's fakes are scored by a model trained without any of
    them; genuine clips by speaker-grouped cross-validation. Per-family EER is
    that family's fakes against all genuine clips.
``leave-one-corpus-out``
    Each genuine corpus is scored by a model trained without it; reports the
    share called real and its EER against out-of-fold fakes.
``unseen``
    Both at once: genuine clips leave-one-corpus-out, fakes leave-one-generator-out.
    The closest this data gets to recordings from corpora and generators the model
    never saw; the bundled model's threshold is calibrated on these scores.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from . import training
from .exceptions import DeepfakeAudioError, InputError
from .features import FeatureConfig
from .training import Clip

logger = logging.getLogger("deepfake_audio")


def _score_with_model(
    clips: list[Clip], args: argparse.Namespace
) -> tuple[np.ndarray, np.ndarray, float, str]:
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    from .detector import Detector

    detector = Detector(args.model, allow_unverified=args.allow_unverified_model,
                        max_duration_s=None)

    def score(clip: Clip) -> tuple[float, float]:
        try:
            result = detector.analyze(clip.path)
        except InputError as exc:
            logger.warning("skipping %s: %s", clip.path, exc)
            return float("nan"), float("nan")
        return result.raw_score, result.probability_deepfake

    results = Parallel(n_jobs=args.jobs, prefer="threads", return_as="generator")(
        delayed(score)(c) for c in clips
    )
    pairs = list(tqdm(results, total=len(clips), desc="scoring", unit="clip",
                      disable=args.quiet, file=sys.stderr))
    raw = np.array([p[0] for p in pairs])
    prob = np.array([p[1] for p in pairs])
    return raw, prob, detector.threshold, detector.model_id


def _model_settings(
    args: argparse.Namespace,
) -> tuple[FeatureConfig, training.TrainSettings, float]:
    from .model import load_model

    model = load_model(args.model, allow_unverified=args.allow_unverified_model)
    stored = model.metadata.training.get("settings", {})
    fields = training.TrainSettings.__dataclass_fields__
    settings = training.TrainSettings(**{k: v for k, v in stored.items() if k in fields})
    return model.metadata.features, settings, model.metadata.decision_threshold


def _print_summary(title: str, summary: dict[str, float]) -> None:
    print(title)
    print(f"  clips      {summary['n']}")
    print(f"  EER        {summary['eer'] * 100:.2f}%")
    if "balanced_eer" in summary:
        print(f"  balanced   {summary['balanced_eer'] * 100:.2f}%  (the EER with every genuine"
              " corpus and every generator weighted equally)")
    print(f"  ROC-AUC    {summary['roc_auc']:.4f}")
    print(f"  accuracy   {summary['accuracy'] * 100:.2f}%")
    print(f"  real called real  {summary['real_called_real'] * 100:.2f}%")
    print(f"  fake called fake  {summary['fake_called_fake'] * 100:.2f}%")
    if "brier" in summary:
        print(f"  Brier      {summary['brier']:.4f}")


def _plot(path: str, labels: np.ndarray, scores: np.ndarray, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DeepfakeAudioError(
            'plotting needs matplotlib: pip install "deepfake-audio[plot]"'
        ) from None
    fpr, tpr, _ = training.roc_points(labels, scores)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label="ROC")
    ax.plot([0, 1], [1, 0], ":", color="grey", label="EER line")
    ax.set_xlabel("false positive rate (real called deepfake)")
    ax.set_ylabel("true positive rate (deepfake called deepfake)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"plot written to {path}")


def _check_groups(clips: list[Clip], protocol: str) -> None:
    """Refuse a held-out protocol the data cannot support, before any feature is extracted."""
    corpora = {c.corpus for c in clips if c.label == 0}
    families = {c.family for c in clips if c.label == 1}
    if protocol in ("leave-one-corpus-out", "unseen") and len(corpora) < 2:
        raise DeepfakeAudioError(
            f"--protocol {protocol} needs genuine clips from at least 2 corpora (manifest"
            f" column 'source'); found {len(corpora)}"
        )
    if protocol in ("leave-one-generator-out", "unseen") and len(families) < 2:
        raise DeepfakeAudioError(
            f"--protocol {protocol} needs fakes from at least 2 generators (manifest column"
            f" 'generator'); found {len(families)}"
        )


def run_evaluation(args: argparse.Namespace) -> int:
    excluded = set(getattr(args, "exclude_generator", None) or ())
    clips = [clip for data in args.data for clip in training.load_dataset(data)
             if clip.generator not in excluded]
    labels = np.array([c.label for c in clips])
    report: dict[str, Any] = {"protocol": args.protocol, "data": args.data}
    if args.protocol == "model":
        raw, prob, threshold, model_id = _score_with_model(clips, args)
        report["model"] = model_id
        title = f"model {model_id} on {len(clips)} clips"
    else:
        _check_groups(clips, args.protocol)
        config, settings, threshold = _model_settings(args)
        table = training.extract_dataset(
            clips, config, augment_copies=settings.augment_copies,
            max_windows=settings.max_windows, seed=settings.seed, jobs=args.jobs,
            progress=not args.quiet, cache_dir=Path(args.cache) if args.cache else None,
        )
        folds = training.grouped_folds(clips, settings.calibration_folds, settings.seed)
        oof = training.out_of_fold_scores(clips, table, settings, folds, jobs=args.jobs,
                                               progress=not args.quiet)
        raw = oof.copy()
        if args.protocol == "leave-one-generator-out":
            held = training.leave_one_out(clips, table, settings, lambda c: c.family, label=1,
                                          jobs=args.jobs, progress=not args.quiet)
            raw[labels == 1] = held[labels == 1]
        elif args.protocol == "leave-one-corpus-out":
            held = training.leave_one_out(clips, table, settings, lambda c: c.corpus, label=0,
                                          jobs=args.jobs, progress=not args.quiet)
            raw[labels == 0] = held[labels == 0]
        elif args.protocol == "unseen":
            held = training.unseen_scores(clips, table, settings, jobs=args.jobs,
                                          progress=not args.quiet)
            raw = np.where(np.isnan(held), oof, held)
        prob = None
        title = f"{args.protocol} on {len(clips)} clips"
    valid = ~np.isnan(raw)
    summary = training.summarise(labels[valid], raw[valid], threshold,
                                 None if prob is None else prob[valid])
    weights = training.group_balanced_weights([c for c, ok in zip(clips, valid, strict=True) if ok])
    summary["balanced_eer"] = training.equal_error_rate(labels[valid], raw[valid], weights)[0]
    report["summary"] = summary
    _print_summary(title, summary)
    print()
    by_generator = training.per_group_table(clips, raw, threshold, lambda c: c.family)
    by_source = training.per_group_table(clips, raw, threshold,
                                         training.source_label_key(clips))
    report["per_generator"], report["per_source"] = by_generator, by_source
    print(training.format_table(by_generator, "generator"))
    print()
    print(training.format_table(by_source, "source"))
    print()
    print(f"EER: {summary['eer'] * 100:.2f}%")
    if args.plot:
        _plot(args.plot, labels[valid], raw[valid], title)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0
