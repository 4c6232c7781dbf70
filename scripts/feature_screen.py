#!/usr/bin/env python
"""Screen feature blocks under the unseen protocol (issue 13 item 3; model card "Ablation").

    python scripts/feature_screen.py --data ../shared/data                 # whole clips, ~3 min
    python scripts/feature_screen.py --data ../shared/data --level window  # ~25 min on 2 CPUs
    python scripts/feature_screen.py --data ../shared/data --candidates    # ~8 min

Genuine clips are scored by SVMs trained without their corpus (and the fakes made from
it), fakes by SVMs trained without their generator family (``held_out.unseen_scores``).
Rows: the bundled recipe's blocks without the two added in ``default-2026.11.6``, with
each of them, and with both:

- ``shape``: skewness and excess kurtosis of the static MFCCs per window
  (``FeatureConfig.shape_groups``);
- ``modulation``: the modulation spectrum of the MFCC trajectories
  (``FeatureConfig.modulation``).

``--level clip`` describes each clip by one window over the whole clip, with ``gamma``
"scale", no augmentation and no balancing: quick enough to try many blocks, which is
how these two were found. ``--level window`` is the bundled recipe itself (3 s windows,
up to 6 per clip, one augmented copy, balanced, gamma 0.001), SVM only. Features are
extracted once with every block and sliced per row.

``--recipe`` (window level only) keeps every block and varies the SVM instead: the
``default-2026.11.7`` recipe's ``C`` 10 and ``gamma`` against C 3, 30 and 100, gamma
0.0005 and 0.002, and C 30 with gamma 0.002 (this screen chose C 30 for
``default-2026.11.8``). ``--rows`` picks rows by number here too.

``--candidates`` (clip level only) screens the blocks of ``scripts/candidate_blocks.py``,
which the package does not use, against the 2026.11.6 blocks: each appended to them, all
of them appended, and all of them as a separate SVM whose held-out scores are averaged with
the 2026.11.6 SVM's (each standardised over the clips, no labels used; weight 0.35). The
blocks are computed once and kept in ``--cache``/``candidate-blocks.npz``; a block added
to ``BLOCKS`` is computed alone and added to that file.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from candidate_blocks import BLOCKS  # noqa: E402
from fusion_check import standardised  # noqa: E402

from deepfake_audio import feature_table, fitting, held_out, metrics  # noqa: E402
from deepfake_audio.audio import load_audio  # noqa: E402
from deepfake_audio.datasets import Clip, load_dataset  # noqa: E402
from deepfake_audio.exceptions import InputError  # noqa: E402
from deepfake_audio.features import FeatureConfig, feature_names  # noqa: E402

FULL = FeatureConfig(means="artefact", shape_groups=("mfcc",), modulation=True)
ROWS = {
    "without both (2026.11.5 blocks)": lambda n: not n.endswith(("_skew", "_kurt"))
    and not n.startswith("mod_"),
    "+ shape": lambda n: not n.startswith("mod_"),
    "+ modulation": lambda n: not n.endswith(("_skew", "_kurt")),
    "+ both (2026.11.6)": lambda n: True,
}


# --recipe rows: changes to the window SVM of the 2026.11.7 recipe (C 10, gamma 0.001)
RECIPES: dict[str, dict[str, float]] = {
    "C 10, gamma 0.001 (2026.11.7)": {}, "C 3": {"C": 3.0}, "C 30": {"C": 30.0},
    "gamma 0.0005": {"gamma": 0.0005}, "gamma 0.002": {"gamma": 0.002},
    "C 100": {"C": 100.0}, "C 30, gamma 0.002": {"C": 30.0, "gamma": 0.002},
}


def candidate_blocks(clips: list[Clip], cache: Path, jobs: int) -> dict[str, np.ndarray]:
    """``(clips, columns)`` per candidate block, read from or written to ``cache``."""
    path = cache / "candidate-blocks.npz"
    stored: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path) as saved:
            stored = {name: saved[name] for name in saved.files
                      if name in BLOCKS and len(saved[name]) == len(clips)}
    missing = {name: block for name, block in BLOCKS.items() if name not in stored}
    if not missing:
        return {name: stored[name] for name in BLOCKS}

    def describe(clip: Clip) -> list[np.ndarray] | None:
        try:
            samples = load_audio(clip.path, max_duration_s=None, min_duration_s=0.1).samples
        except InputError:
            return None  # not in the feature table either
        return [block(samples.astype(np.float64)) for block in missing.values()]

    rows = Parallel(n_jobs=jobs)(delayed(describe)(clip) for clip in clips)
    found = next(row for row in rows if row is not None)
    stored |= {name: np.nan_to_num(np.array([found[i] * 0 if row is None else row[i]
                                             for row in rows]), posinf=0.0, neginf=0.0)
               for i, name in enumerate(missing)}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **stored)
    return {name: stored[name] for name in BLOCKS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--level", choices=("clip", "window"), default="clip")
    parser.add_argument("--rows", default="",
                        help="comma-separated row numbers to run (default: all)")
    parser.add_argument("--candidates", action="store_true",
                        help="screen scripts/candidate_blocks.py (clip level)")
    parser.add_argument("--recipe", action="store_true",
                        help="--level window: vary the SVM's C and gamma, every block kept")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=ROOT / "build" / "feature-cache")
    args = parser.parse_args()
    if args.candidates and args.level != "clip":
        parser.error("--candidates screens at the clip level only")
    if args.recipe and args.level != "window":
        parser.error("--recipe screens at the window level only")

    clips = load_dataset(args.data)
    labels = np.array([c.label for c in clips])
    if args.level == "clip":
        config = FeatureConfig(means="artefact", shape_groups=("mfcc",), modulation=True,
                               window_s=0.0, hop_s=0.0)
        # C 10: the recipe these screens were first run with (default-2026.11.7)
        settings = fitting.TrainSettings(C=10.0, gamma="scale", augment_copies=0, max_windows=0,
                                          balance=False, boosting=False)
    else:
        config = FULL
        settings = fitting.TrainSettings(C=10.0, gamma=0.001, augment_copies=1, max_windows=6,
                                          boosting=False)
    table = feature_table.extract_dataset(
        clips, config, augment_copies=settings.augment_copies, max_windows=settings.max_windows,
        seed=settings.seed, jobs=args.jobs, cache_dir=args.cache, progress=False)
    names = feature_names(config)
    weights = metrics.group_balanced_weights(clips)
    print(f"unseen protocol, {len(clips)} clips, SVM only, {args.level} level")
    print(f"{'features':34s} {'columns':>7s} {'EER':>7s} {'balanced':>9s} {'ROC-AUC':>8s}"
          f" {'seconds':>8s}")

    def row(name: str, matrix: np.ndarray,
            recipe: fitting.TrainSettings = settings) -> np.ndarray:
        started = time.perf_counter()
        sliced = feature_table.FeatureTable(matrix, table.clip_index, table.augmented)
        scores = held_out.unseen_scores(clips, sliced, recipe, jobs=args.jobs,
                                        progress=False)
        show(name, matrix.shape[1], scores, time.perf_counter() - started)
        return scores

    def show(name: str, columns: int, scores: np.ndarray, seconds: float) -> None:
        ok = np.isfinite(scores)
        summary = metrics.summarise(labels[ok], scores[ok], 0.0)
        balanced = metrics.equal_error_rate(labels[ok], scores[ok], weights[ok])[0]
        print(f"{name:34s} {columns:7d} {summary['eer']:7.2%} {balanced:9.2%}"
              f" {summary['roc_auc']:8.4f} {seconds:8.0f}", flush=True)

    if args.candidates:
        blocks = {name: values[table.clip_index]
                  for name, values in candidate_blocks(clips, args.cache, args.jobs).items()}
        base = row("2026.11.6 blocks", table.matrix)
        for name, values in blocks.items():
            row(f"+ {name}", np.hstack([table.matrix, values]))
        every = np.hstack(list(blocks.values()))
        row(f"+ all {len(blocks)}", np.hstack([table.matrix, every]))
        alone = row(f"all {len(blocks)} alone", every)
        show(f"2026.11.6 SVM + all-{len(blocks)} SVM, 0.35", table.matrix.shape[1] + every.shape[1],
             0.65 * standardised(base) + 0.35 * standardised(alone), 0.0)
        return 0
    chosen = {int(r) for r in args.rows.split(",") if r}
    if args.recipe:
        for number, (name, change) in enumerate(RECIPES.items(), start=1):
            if number in chosen or not chosen:
                row(name, table.matrix, replace(settings, **change))
        return 0
    for number, (name, keep) in enumerate(ROWS.items(), start=1):
        if chosen and number not in chosen:
            continue
        columns = [i for i, n in enumerate(names) if keep(n)]
        row(name, table.matrix[:, columns])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
