"""Test-only fault injection: make one analysis hang or crash on demand.

Active only when the process was started with ``DEEPFAKE_AUDIO_TEST_FAULTS=1``
(the reliability suite sets it; never set it in production). Then an upload or
``/ws`` payload whose bytes start with :data:`MAGIC` is not decoded but obeys the
command after it, in the analysis thread, exactly where a misbehaving decoder would:

- ``MAGIC + b"hang=SECONDS"`` sleeps that long (capped at :data:`MAX_HANG_S`),
  like a decoder stuck in a loop: the request must time out (503) on its own;
- ``MAGIC + b"crash"`` raises :class:`InjectedCrash`, like a decoder bug: the
  request must fail alone (500 / ``{"error"}``) and the server keep serving.

Anything else, and every payload when the variable is unset, is left alone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

from ..config import parse_bool

ENV_VAR = "DEEPFAKE_AUDIO_TEST_FAULTS"
MAGIC = b"DEEPFAKE-AUDIO-TEST-FAULT:"
MAX_HANG_S = 120.0

FaultHook = Callable[[bytes], None]


class InjectedCrash(RuntimeError):
    """Raised by the ``crash`` command: stands for an unexpected bug in decoding."""


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether :data:`ENV_VAR` is set to a yes value (unset or empty: no).

    Raises
    ------
    ValueError
        The variable holds something that is not a yes/no value.
    """
    raw = (os.environ if environ is None else environ).get(ENV_VAR, "")
    try:
        return parse_bool(raw)
    except ValueError as exc:
        raise ValueError(f"{ENV_VAR}: {exc}") from None


def inject(head: bytes) -> None:
    """Obey a fault command at the start of ``head``; do nothing for normal audio."""
    if not head.startswith(MAGIC):
        return
    command = head[len(MAGIC):].split(b"\n", 1)[0].strip()
    if command.startswith(b"hang="):
        try:
            seconds = float(command[5:].decode("ascii", "replace"))
        except ValueError:
            seconds = MAX_HANG_S
        time.sleep(min(max(seconds, 0.0), MAX_HANG_S))
        return
    if command == b"crash":
        raise InjectedCrash("injected decoder crash (DEEPFAKE_AUDIO_TEST_FAULTS)")


def hook_from_env(environ: Mapping[str, str] | None = None) -> FaultHook | None:
    """:func:`inject` when fault injection is switched on, else ``None``."""
    return inject if enabled(environ) else None
