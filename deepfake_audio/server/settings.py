"""Server settings: one frozen dataclass, filled from flags and ``DEEPFAKE_AUDIO_*`` variables.

Precedence: built-in default < environment variable < command-line flag. Each field's
metadata holds its help text and variable suffix (``env``); ``deepfake-audio serve``
generates its flags from them (``--`` + ``env`` in lower case with dashes) and hands the
raw strings to :meth:`Settings.resolve`, which converts and validates them in one place.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import ENV_PREFIX, parse_bool

MB = 1024 * 1024


def _cpu_count() -> int:
    # sched_getaffinity honours CPU pinning (containers, taskset); cpu_count does not.
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _opt(default: Any, env: str, help: str, **kwargs: Any) -> Any:
    """A field with its variable suffix and help text (read by the ``serve`` CLI)."""
    return field(default=default, metadata={"env": env, "help": help}, **kwargs)


def _origins(value: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    # Browsers send origins without a trailing slash; normalise so "http://x/" still matches.
    return tuple(dict.fromkeys(o.strip().rstrip("/") for o in items if o.strip()))


@dataclass(frozen=True)
class Settings:
    """Everything the server can be configured with.

    Each field maps to an environment variable ``DEEPFAKE_AUDIO_<NAME>`` (see
    :data:`ENV_NAMES`); ``deepfake-audio serve`` flags override them.

    Attributes
    ----------
    host, port : str, int
        Where to listen.
    workers : int
        Uvicorn worker processes (each loads its own model copy).
    model : str or None
        Model folder; the bundled default model when ``None``.
    allow_unverified_model : bool
        Load a legacy model folder without ``model.json``.
    api_key : str or None
        When set, ``/analyze`` and the WebSockets require it (``X-API-Key`` header or
        ``api_key`` query parameter). Never printed by ``repr``.
    cors_origins : tuple of str
        Origins allowed for CORS and WebSocket handshakes (``"*"`` = any). Empty = none.
    max_upload_mb : float
        Largest audio file accepted (HTTP upload or decoded WebSocket payload), MiB.
    max_duration_s : float
        Longest audio accepted, seconds (checked from the header before decoding).
    max_concurrency : int
        Analyses running at once; 0 means one per CPU.
    max_queue : int
        Analyses allowed to wait for a free slot before the server answers 429.
    ws_max_message_mb : float or None
        Largest WebSocket message, MiB; ``None`` derives it from ``max_upload_mb``
        (base64 grows data by 4/3).
    analysis_timeout_s : float
        Longest a request waits for its analysis (queueing included) before 503.
    log_level, log_format : str
        Logging level and ``"text"`` or ``"json"`` lines.
    shutdown_drain_s : float
        After SIGTERM, keep serving this long with readiness at 503 so load balancers
        stop sending traffic before the listener closes. SIGINT (Ctrl+C) skips it.
    graceful_timeout_s : float
        How long in-flight requests may take to finish once shutdown starts.
    stream_window_s, stream_hop_s : float
        Window length and hop of ``/ws/stream`` verdicts.
    """

    host: str = _opt("127.0.0.1", "HOST", "interface to listen on")
    port: int = _opt(8000, "PORT", "TCP port")
    workers: int = _opt(1, "WORKERS", "uvicorn worker processes (each loads the model)")
    model: str | None = _opt(None, "MODEL", "model folder (default: the bundled model)")
    allow_unverified_model: bool = _opt(
        False, "ALLOW_UNVERIFIED_MODEL",
        "load a legacy model folder without model.json (unverified pickles)")
    api_key: str | None = _opt(
        None, "API_KEY", "require this key (X-API-Key header or api_key query parameter)",
        repr=False)
    cors_origins: tuple[str, ...] = _opt((), "CORS_ORIGINS",
                                         "comma-separated allowed origins ('*' for any)")
    max_upload_mb: float = _opt(25.0, "MAX_UPLOAD_MB", "largest upload accepted, MiB")
    max_duration_s: float = _opt(600.0, "MAX_DURATION", "longest audio accepted, seconds")
    max_concurrency: int = _opt(0, "MAX_CONCURRENCY", "analyses in flight (0: number of CPUs)")
    max_queue: int = _opt(16, "MAX_QUEUE", "requests allowed to wait before 429")
    ws_max_message_mb: float | None = _opt(
        None, "WS_MAX_MESSAGE_MB", "largest WebSocket message, MiB (default: from max upload)")
    analysis_timeout_s: float = _opt(60.0, "ANALYSIS_TIMEOUT",
                                     "seconds a request may wait for its analysis before 503")
    log_level: str = _opt("info", "LOG_LEVEL", "log level")
    log_format: str = _opt("text", "LOG_FORMAT", "log lines: text or json")
    shutdown_drain_s: float = _opt(2.0, "SHUTDOWN_DRAIN",
                                   "seconds to keep serving (not ready) after SIGTERM")
    graceful_timeout_s: float = _opt(10.0, "GRACEFUL_TIMEOUT",
                                     "seconds in-flight requests get at shutdown")
    stream_window_s: float = _opt(3.0, "STREAM_WINDOW", "/ws/stream window, seconds")
    stream_hop_s: float = _opt(1.0, "STREAM_HOP", "/ws/stream hop, seconds")

    def __post_init__(self) -> None:
        # Normalise in place (frozen, hence object.__setattr__) so every constructor path agrees.
        object.__setattr__(self, "cors_origins", _origins(self.cors_origins))
        object.__setattr__(self, "api_key", self.api_key or None)
        object.__setattr__(self, "model", self.model or None)
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
    def resolve(cls, flags: Mapping[str, str | None],
                environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from raw flag values (by field name; ``None`` = not given), else the
        ``DEEPFAKE_AUDIO_*`` variables (``os.environ`` by default), else the defaults.

        Raises
        ------
        ValueError
            A value of the wrong type or out of range; the message names its origin.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            origin = "--" + f.metadata["env"].lower().replace("_", "-")
            raw = flags.get(f.name)
            if raw is None:
                origin = ENV_PREFIX + f.metadata["env"]
                raw = environ.get(origin)
                if raw is None or (raw.strip() == "" and f.name not in _STRING_FIELDS):
                    continue
            try:
                values[f.name] = _convert(f.name, raw)
            except ValueError:
                raise ValueError(f"{origin}={raw!r} is not a valid value") from None
        return cls(**values)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``DEEPFAKE_AUDIO_*`` variables (``os.environ`` by default).

        Raises
        ------
        ValueError
            A variable holds a value of the wrong type or out of range.
        """
        return cls.resolve({}, environ)

    def to_env(self) -> dict[str, str]:
        """The settings as ``DEEPFAKE_AUDIO_*`` variables (to hand to worker processes)."""
        env: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            name = ENV_PREFIX + ENV_NAMES[f.name]
            if value is None:
                env[name] = ""
            elif isinstance(value, tuple):
                env[name] = ",".join(value)
            elif isinstance(value, bool):
                env[name] = "1" if value else "0"
            else:
                env[name] = str(value)
        return env


#: Field name → environment variable suffix (``DEEPFAKE_AUDIO_`` + this).
ENV_NAMES: dict[str, str] = {f.name: f.metadata["env"] for f in dataclasses.fields(Settings)}

_STRING_FIELDS = {"host", "model", "api_key", "cors_origins", "log_level", "log_format"}
_INT_FIELDS = {"port", "workers", "max_concurrency", "max_queue"}
_BOOL_FIELDS = {"allow_unverified_model"}
_OPTIONAL_FLOAT_FIELDS = {"ws_max_message_mb"}


def _convert(name: str, raw: str) -> Any:
    if name in _STRING_FIELDS:
        return raw.strip() if name != "api_key" else raw
    if name in _INT_FIELDS:
        return int(raw)
    if name in _BOOL_FIELDS:
        return parse_bool(raw)
    if name in _OPTIONAL_FLOAT_FIELDS and raw.strip().lower() in ("", "none", "auto"):
        return None
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(raw)
    return value
