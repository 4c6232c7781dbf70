#!/usr/bin/env python
"""Add the numpy-only compiled arrays to an existing model folder.

    python scripts/compile_model.py MODEL_DIR [MODEL_DIR ...]

Loads the folder's verified pickles through scikit-learn once, writes
``compiled.npz`` (scaler + SVM as plain arrays, no pickle) beside them and lists
its SHA-256 in ``model.json``; from then on scoring never imports scikit-learn.
Prints the largest difference between the compiled and scikit-learn decision
values on random feature rows around the scaler's mean. Models saved by
``deepfake-audio train`` already carry the arrays; this is for older folders.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deepfake_audio.compiled import compile_model  # noqa: E402
from deepfake_audio.model import load_model  # noqa: E402


def max_difference(directory: Path) -> float:
    reference = load_model(directory, compiled=False)
    compiled = load_model(directory)
    width = len(reference.scaler.mean_)
    rows = np.random.default_rng(0).standard_normal((200, width))
    rows = reference.scaler.mean_ + rows * reference.scaler.scale_
    return float(np.max(np.abs(compiled.decision_values(rows)
                               - reference.decision_values(rows))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dirs", nargs="+", type=Path, metavar="MODEL_DIR")
    args = parser.parse_args()
    for directory in args.model_dirs:
        digest = compile_model(directory)
        print(f"{directory}: compiled.npz sha256 {digest[:16]}…, max |compiled - scikit-learn|"
              f" decision value {max_difference(directory):.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
