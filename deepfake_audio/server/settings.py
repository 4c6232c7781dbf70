"""Server settings: one frozen dataclass, the single source of every server option.

Each field's metadata holds its one-line ``help`` and its ``env`` name: the
environment variable is ``DEEPFAKE_AUDIO_<env>`` and the ``serve`` flag
``--<env in lower case, "_" -> "-">`` (``MAX_DURATION`` → ``--max-duration``).
Precedence: built-in default < environment variable < command-line flag
(:meth:`Settings.resolve`). Raw strings from either source go through one
converter driven by the field's type; every range check is in ``__post_init__``,
so values given in code are validated the same way.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import env_name, env_value, parse_bool

MB = 1024 * 1024
_NONE_WORDS = frozenset({"", "none", "auto"})


def _cpu_count() -> int:
    # sched_getaffinity honours CPU pinning (containers, taskset); cpu_count does not.
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _origins(value: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    # Browsers send origins without a trailing slash; normalise so "http://x/" still matches.
    return tuple(dict.fromkeys(o.strip().rstrip("/") for o in items if o.strip()))


def _setting(default: Any, env: str, help: str, **kwargs: Any) -> Any:
    return field(default=default, metadata={"help": help, "env": env}, **kwargs)


@dataclass(frozen=True)
class Settings:
    """Everything the server can be configured with.

    Each field's ``metadata["help"]`` describes it and ``metadata["env"]`` names its
    ``DEEPFAKE_AUDIO_*`` variable and ``serve`` flag (see the module docstring).
    ``api_key`` is never printed by ``repr``.

    Raises
    ------
    ValueError
        A value is out of range (the message lists every problem).
    """

    host: str = _setting("127.0.0.1", "HOST", "address to listen on")
    port: int = _setting(8000, "PORT", "TCP port to listen on")
    workers: int = _setting(1, "WORKERS", "uvicorn worker processes (each loads its own model)")
    model: str | None = _setting(None, "MODEL", "model folder (default: the bundled model)")
    allow_unverified_model: bool = _setting(
        False, "ALLOW_UNVERIFIED_MODEL",
        "load a legacy model folder without model.json (unverified pickles)")
    api_key: str | None = _setting(
        None, "API_KEY", "require this key (X-API-Key header or api_key query parameter)",
        repr=False)
    cors_origins: tuple[str, ...] = _setting(
        (), "CORS_ORIGINS", "comma-separated origins allowed for CORS and WebSockets ('*' = any)")
    max_upload_mb: float = _setting(
        25.0, "MAX_UPLOAD_MB", "largest upload or decoded WebSocket payload, MiB")
    max_duration_s: float = _setting(600.0, "MAX_DURATION", "longest audio accepted, seconds")
    max_concurrency: int = _setting(
        0, "MAX_CONCURRENCY", "analyses running at once (0 = one per CPU)")
    max_queue: int = _setting(16, "MAX_QUEUE", "analyses allowed to wait before answering 429")
    ws_max_message_mb: float | None = _setting(
        None, "WS_MAX_MESSAGE_MB",
        "largest WebSocket message, MiB (default: base64 of max-upload-mb plus 64 KiB)")
    analysis_timeout_s: float = _setting(
        60.0, "ANALYSIS_TIMEOUT", "seconds a request may wait for its analysis before 503")
    log_level: str = _setting("info", "LOG_LEVEL", "logging level (debug, info, warning, ...)")
    log_format: str = _setting("text", "LOG_FORMAT", "log lines as 'text' or 'json'")
    shutdown_drain_s: float = _setting(
        2.0, "SHUTDOWN_DRAIN", "seconds between SIGTERM and closing the listener (ready = 503)")
    graceful_timeout_s: float = _setting(
        10.0, "GRACEFUL_TIMEOUT", "seconds in-flight requests get to finish once shutdown starts")
    stream_window_s: float = _setting(3.0, "STREAM_WINDOW", "/ws/stream window length, seconds")
    stream_hop_s: float = _setting(1.0, "STREAM_HOP", "/ws/stream verdict interval, seconds")

    def __post_init__(self) -> None:
        # Normalise in place (frozen, hence object.__setattr__) so every constructor path agrees.
        for name in ("host", "log_level", "log_format"):
            object.__setattr__(self, name, getattr(self, name).strip())
        object.__setattr__(self, "cors_origins", _origins(self.cors_origins))
        object.__setattr__(self, "api_key", self.api_key or None)
        object.__setattr__(self, "model", (self.model or "").strip() or None)
        problems = []
        if not 0 < self.port < 65536:
            problems.append(f"port {self.port} is not in 1-65535")
        if self.workers < 1:
            problems.append("workers must be >= 1")
        if self.max_upload_mb <= 0:
            problems.append("max_upload_mb must be > 0")
        if self.max_duration_s <= 0:
            problems.append("max_duration must be > 0")
        if self.max_concurrency < 0 or self.max_queue < 0:
            problems.append("max_concurrency and max_queue must be >= 0")
        if self.ws_max_message_mb is not None and self.ws_max_message_mb <= 0:
            problems.append("ws_max_message_mb must be > 0")
        if self.analysis_timeout_s <= 0:
            problems.append("analysis_timeout must be > 0")
        if self.log_format not in ("text", "json"):
            problems.append("log_format must be 'text' or 'json'")
        if self.shutdown_drain_s < 0 or self.graceful_timeout_s < 0:
            problems.append("shutdown_drain and graceful_timeout must be >= 0")
        if not 0 < self.stream_hop_s <= self.stream_window_s:
            problems.append("stream_hop must be > 0 and <= stream_window")
        if problems:
            raise ValueError("invalid server settings: " + "; ".join(problems))

    # ------------------------------------------------------------------ derived values

    @property
    def concurrency(self) -> int:
        """Analyses in flight at once (``max_concurrency``, or the CPU count when 0)."""
        return self.max_concurrency or _cpu_count()

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @property
    def ws_max_message_bytes(self) -> int:
        """WebSocket frame cap: an explicit setting, else room for a base64 max-size upload."""
        if self.ws_max_message_mb is not None:
            return int(self.ws_max_message_mb * MB)
        return int(math.ceil(self.max_upload_bytes / 3) * 4) + 64 * 1024

    @property
    def api_key_required(self) -> bool:
        return self.api_key is not None

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_strings(cls, values: Mapping[str, str]) -> Settings:
        """Build settings from raw strings keyed by field name (flags or variables).

        Each string is converted by its field's type: ``bool`` with
        :func:`~deepfake_audio.config.parse_bool`, ``float | None`` maps ``""``,
        ``none`` and ``auto`` to ``None``, ``tuple[str, ...]`` is comma-separated.
        A blank number leaves the default, as an unset variable does.

        Raises
        ------
        ValueError
            An unknown name, a value of the wrong type (the message names the
            variable, the flag and the value), or a value out of range.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for name, raw in values.items():
            if name not in fields:
                raise ValueError(f"unknown server setting {name!r}")
            env = fields[name].metadata["env"]
            convert = _CONVERTERS[_TYPES[name]]
            try:
                value = convert(raw)
            except ValueError as exc:
                flag = "--" + env.lower().replace("_", "-")
                raise ValueError(f"invalid value {raw!r} for {env_name(env)} / {flag}: {exc}") \
                    from None
            if value is not _UNSET:
                kwargs[name] = value
        return cls(**kwargs)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the ``DEEPFAKE_AUDIO_*`` variables that are set (``os.environ`` by default).

        Raises
        ------
        ValueError
            A variable holds a value of the wrong type or out of range.
        """
        return cls.from_strings(_env_strings(environ))

    @classmethod
    def resolve(cls, flags: Mapping[str, str | None],
                environ: Mapping[str, str] | None = None) -> Settings:
        """Environment variables first, then every flag that is not ``None`` wins.

        Parameters
        ----------
        flags : mapping of field name to raw string or None
            Command-line values; ``None`` means the flag was not given.
        environ : mapping, optional
            Defaults to ``os.environ``.

        Raises
        ------
        ValueError
            As :meth:`from_strings`.
        """
        values = _env_strings(environ)
        values.update({name: raw for name, raw in flags.items() if raw is not None})
        return cls.from_strings(values)

    def to_env(self) -> dict[str, str]:
        """The settings as ``DEEPFAKE_AUDIO_*`` variables (to hand to worker processes)."""
        env: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            name = env_name(f.metadata["env"])
            if value is None:
                env[name] = ""
            elif isinstance(value, tuple):
                env[name] = ",".join(value)
            elif isinstance(value, bool):
                env[name] = "1" if value else "0"
            else:
                env[name] = str(value)
        return env


def _env_strings(environ: Mapping[str, str] | None) -> dict[str, str]:
    values: dict[str, str] = {}
    for f in dataclasses.fields(Settings):
        raw = env_value(f.metadata["env"], environ)
        if raw is not None:
            values[f.name] = raw
    return values


#: Marks "leave the default" (a blank number).
_UNSET: Any = object()


def _to_int(raw: str) -> Any:
    if not raw.strip():
        return _UNSET
    try:
        return int(raw)
    except ValueError:
        raise ValueError("not an integer") from None


def _to_float(raw: str) -> Any:
    if not raw.strip():
        return _UNSET
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("not a number") from None
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


def _to_bool(raw: str) -> bool:
    try:
        return parse_bool(raw)
    except ValueError:
        raise ValueError("not a yes/no value (use 1/0, true/false, yes/no, on/off)") from None


def _to_optional_float(raw: str) -> float | None:
    return None if raw.strip().lower() in _NONE_WORDS else _to_float(raw)


def _to_tuple(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


_CONVERTERS: dict[Any, Callable[[str], Any]] = {
    str: str,
    str | None: str,
    int: _to_int,
    float: _to_float,
    float | None: _to_optional_float,
    bool: _to_bool,
    tuple[str, ...]: _to_tuple,
}
#: Field name → its resolved type (the annotations are strings under PEP 563).
_TYPES: dict[str, Any] = typing.get_type_hints(Settings)
