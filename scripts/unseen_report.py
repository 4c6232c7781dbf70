#!/usr/bin/env python
"""Unseen protocol on ``../shared/data``, overall and per source family (model card tables).

    python scripts/unseen_report.py --data ../shared/data [--model DIR] [--jobs 2]

Runs ``deepfake-audio evaluate DATA --protocol unseen`` (genuine clips scored by models
trained without their corpus, fakes by models trained without their generator family,
retrained with the model's settings) and then groups the same held-out scores by the
source family of ``scripts/source_families.csv``: per family, the EER of its fakes against
every genuine clip and the share caught at the model's calibrated threshold.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from train_default import SETTINGS, read_family_table  # noqa: E402

from deepfake_audio import evaluation, metrics  # noqa: E402
from deepfake_audio.datasets import load_dataset  # noqa: E402
from deepfake_audio.model import Calibration  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--model", default=None, help="model folder (default: the bundled one)")
    parser.add_argument("--cache", default=str(ROOT / "build" / "feature-cache"))
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    clips = load_dataset(args.data)
    report = evaluation.evaluate(clips, "unseen", model_dir=args.model, jobs=args.jobs,
                                 cache_dir=Path(args.cache), progress=False)
    print(report.to_text())
    if len(report.scores) != len(clips):
        sys.exit("some clips could not be scored: per-family table needs every clip")
    table = read_family_table()
    family = {c.path: "genuine" if c.label == 0 else table[c.family] for c in clips}
    # The threshold the model would be calibrated to on these scores (as train() does).
    threshold = Calibration.fit(report.scores, report.labels,
                                SETTINGS.prior_deepfake).raw_score_at(0.5)
    rows = metrics.per_group_table(clips, np.asarray(report.scores), threshold,
                                   lambda c: family[c.path])
    print()
    print(metrics.format_table(rows, "source family (held out)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
