"""Reading settings from the environment: one prefix, one yes/no parser."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from .exceptions import ConfigurationError

ENV_PREFIX = "DEEPFAKE_AUDIO_"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def parse_bool(raw: str) -> bool:
    """Parse a yes/no value (``1/true/yes/on`` or ``0/false/no/off``, any case).

    Raises
    ------
    ValueError
        For anything else, so a typo is reported instead of read as "no".
    """
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{raw!r} is not a yes/no value (use 1/0, true/false, yes/no, on/off)")


def env_name(option: str) -> str:
    """``max-duration`` / ``max_duration`` → ``DEEPFAKE_AUDIO_MAX_DURATION``."""
    return ENV_PREFIX + option.upper().replace("-", "_")


def env_value(option: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The raw ``DEEPFAKE_AUDIO_<OPTION>`` value, or ``None`` when unset."""
    return (os.environ if environ is None else environ).get(env_name(option))


def parse_band(value: str | Sequence[str] | None) -> tuple[float, float] | None:
    """``--band LOW HIGH`` (or ``DEEPFAKE_AUDIO_BAND="LOW HIGH"``) → ``(low, high)``.

    Raises
    ------
    ConfigurationError
        Not two numbers.
    """
    if value is None:
        return None
    parts = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    if not parts or parts == ["none"]:
        return None
    try:
        low, high = (float(v) for v in parts)
    except ValueError:
        raise ConfigurationError(
            f"--band needs two numbers, LOW HIGH (got {' '.join(parts)!r})") from None
    return low, high


def parse_float_or_none(value: str | None) -> float | None:
    """A number, or ``None`` for unset, empty or ``"none"`` (no limit)."""
    return None if value in (None, "", "none") else float(value)
