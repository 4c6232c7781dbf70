"""PNG figures for the callers that ask for them (needs the ``[plot]`` extra: matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import DeepfakeAudioError
from .metrics import roc_points


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DeepfakeAudioError(
            'plotting needs matplotlib: pip install "deepfake-audio[plot]"'
        ) from None
    return plt


def plot_roc(path: str | Path, labels: np.ndarray, scores: np.ndarray, title: str) -> None:
    """ROC curve with the EER line, written as a PNG.

    Raises
    ------
    DeepfakeAudioError
        matplotlib is not installed.
    """
    plt = _pyplot()
    fpr, tpr, _ = roc_points(labels, scores)
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


def plot_reliability(rows: Sequence[dict[str, float]], path: str | Path) -> None:
    """Reliability diagram (rows of :func:`~deepfake_audio.metrics.reliability_bins`) as a PNG.

    Raises
    ------
    DeepfakeAudioError
        matplotlib is not installed.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ax.plot([r["predicted"] for r in rows], [r["observed"] for r in rows], "o-",
            label="model (out-of-fold)")
    ax.set_xlabel("predicted probability of deepfake")
    ax.set_ylabel("observed share of deepfakes")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["plot_reliability", "plot_roc"]
