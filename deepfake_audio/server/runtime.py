"""Process-level concerns of a server process: SIGTERM drain, BLAS threads, heap trimming."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

from .logs import logger


def install_drain_handler(mark_draining: Callable[[], None], delay: float,
                          loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """Chain a SIGTERM handler in front of uvicorn's: readiness turns 503 at once, and
    uvicorn's shutdown (listener closed, in-flight requests finished) starts only after
    ``delay`` seconds so a load balancer has time to notice. SIGINT stays immediate.

    Parameters
    ----------
    mark_draining : callable
        Called on every SIGTERM, before anything else (turns readiness to 503).
    delay : float
        Seconds between the first SIGTERM and uvicorn's own handler; 0 = at once.
    loop : asyncio.AbstractEventLoop
        The server's event loop (the delayed call is scheduled on it).

    Returns
    -------
    callable
        Restores the previous handler. A no-op outside the main thread (signals
        cannot be handled there, e.g. under a test client).
    """
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except ValueError:
        return lambda: None
    if not callable(previous):
        return lambda: None
    fired = False

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        mark_draining()
        if fired or delay <= 0:
            previous(signum, frame)  # a second SIGTERM: stop draining, shut down now
            return
        fired = True
        logger.info("SIGTERM: readiness is now 503; shutting down in %.1f s", delay)
        loop.call_soon_threadsafe(loop.call_later, delay, previous, signum, None)

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:
        return lambda: None

    def restore() -> None:
        with contextlib.suppress(ValueError):
            if signal.getsignal(signal.SIGTERM) is on_sigterm:
                signal.signal(signal.SIGTERM, previous)

    return restore


def single_threaded_blas() -> Any:
    """Pin BLAS/OpenMP pools to one thread; returns a handle to undo it (or ``None``).

    The server already runs one analysis per CPU in parallel; letting each of them
    also fan out over every core oversubscribes the CPUs and burns time in spin-waits
    (measured: ~2x CPU per request under load).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        return None
    return threadpool_limits(limits=1)


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return None
    return trim


_MALLOC_TRIM = _load_malloc_trim()


def release_freed_memory() -> None:
    """Give freed heap pages back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    A large ``/ws`` message exists several times over while it is handled (the frame,
    its text, the JSON string, base64 input and output: ~6x the audio size). All of it
    is freed right after, but glibc keeps much of it in its per-thread arenas: measured
    with the reliability corpus (a 7 MB message among others), the resident size grew
    ~37 MB per pass and drifted to ~+70 MB over 12 passes; with this call after each
    message of 1 MB or more, ~+23 MB and ~+50 MB.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
