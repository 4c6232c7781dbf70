"""Keep freed memory in the process heap between analyses (glibc's malloc only).

An analysis allocates and frees a few megabytes of arrays, many between 128 KiB and
1 MiB. With its default, self-adjusting thresholds glibc serves those with fresh
``mmap()`` calls and trims the top of the heap back to the kernel after each clip, so
the next analysis faults every page in again: about 1100 page faults for a 5 s clip, a
quarter of its CPU time (``benchmarks/bench_core.py``, "short clips"). Fixed thresholds
keep such arrays in the heap; the memory kept is bounded by :data:`TRIM_THRESHOLD`, and
the peak of one analysis does not change.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

logger = logging.getLogger("deepfake_audio")

#: Arrays below this size come from the heap instead of their own ``mmap()``.
MMAP_THRESHOLD = 1 << 20
#: Free memory at the top of the heap kept for the next analysis before trimming.
TRIM_THRESHOLD = 32 << 20

# mallopt() parameters (<malloc.h>).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: Environment variables with which a user sets glibc's thresholds themselves.
GLIBC_TUNABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                  "MALLOC_MMAP_MAX_")

_state: dict[str, bool] = {}


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds once per process (what :class:`Detector` calls).

    Nothing happens outside Linux with glibc, or when the environment already sets one of
    glibc's own malloc variables (:data:`GLIBC_TUNABLES`, or ``glibc.malloc`` in
    ``GLIBC_TUNABLES``): the user's choice wins.

    Returns
    -------
    bool
        Whether the thresholds are set (now or by an earlier call).
    """
    if "applied" in _state:
        return _state["applied"]
    applied = False
    if not sys.platform.startswith("linux"):
        reason = "not Linux"
    elif any(name in os.environ for name in GLIBC_TUNABLES) or \
            "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        reason = "the environment sets malloc's thresholds"
    else:
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.gnu_get_libc_version  # noqa: B018 (musl has no such symbol)
            applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
                bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
            reason = "mallopt" if applied else "mallopt refused"
        except (OSError, AttributeError):
            reason = "no glibc"
    logger.debug("heap thresholds %s (%s)", "set" if applied else "left alone", reason)
    _state["applied"] = applied
    return applied
