"""Which channels of a recording are analysed, and how.

A call recorded in stereo often has one party per channel: mixing them would
average a synthetic voice with a genuine one. ``auto`` analyses the channels
separately when they differ and mixes them when they are near-identical (plain
stereo of one voice). The rule: over the first :data:`DECIDE_S` seconds, every
pair of channels must correlate at :data:`SAME_CORRELATION` or more to be
mixed. Correlation ignores gain, so a voice panned or recorded at different
levels on each side still counts as one; a channel that is silent while the
other talks does not.
"""

from __future__ import annotations

import numpy as np

CHANNEL_MODES = ("auto", "mix", "separate")
#: Seconds of audio the ``auto`` rule looks at.
DECIDE_S = 30.0
#: Pearson correlation above which two channels are "the same signal".
SAME_CORRELATION = 0.9


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`CHANNEL_MODES`.

    Raises
    ------
    ValueError
        Any other value.
    """
    if mode not in CHANNEL_MODES:
        raise ValueError(f"channels must be one of {', '.join(CHANNEL_MODES)}, not {mode!r}")
    return mode


def channels_differ(samples: np.ndarray) -> bool:
    """Whether the channels of ``(frames, channels)`` samples carry different signals.

    A channel that is silent (all zeros) while another is not differs from it.
    """
    if samples.ndim != 2 or samples.shape[1] < 2:
        return False
    x = samples.astype(np.float64) - samples.mean(axis=0)
    energy = np.sqrt((x**2).sum(axis=0))
    if np.all(energy == 0):
        return False
    if np.any(energy == 0):
        return True
    correlation = (x.T @ x) / np.outer(energy, energy)
    return bool(correlation.min() < SAME_CORRELATION)


def choose(mode: str, first_seconds: np.ndarray) -> bool:
    """Whether to analyse channels separately, given ``mode`` and the first samples."""
    if first_seconds.ndim != 2 or first_seconds.shape[1] < 2 or mode == "mix":
        return False
    return mode == "separate" or channels_differ(first_seconds)
