"""Logging for the server: one structured line per request, no secrets.

Request lines go to the ``deepfake_audio.server`` logger with the fields as
``extra`` attributes, rendered as ``key=value`` text or as JSON. Uvicorn's own
loggers print the raw request target, which may carry ``?api_key=…``: the
:class:`RedactFilter` masks it wherever those lines go.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

LOGGER_NAME = "deepfake_audio.server"
logger = logging.getLogger(LOGGER_NAME)

_SECRET_QUERY = re.compile(r"(?i)(api_key=)[^&\s\"']*")
# At DEBUG, uvicorn's WebSocket protocol logs every handshake header ("< x-api-key: …").
_SECRET_HEADER = re.compile(r"(?i)\b((?:x-api-key|authorization|proxy-authorization|cookie)"
                            r"\s*:\s*)[^\r\n\"]*")
#: Attributes every LogRecord has; anything else was passed as ``extra``.
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "color_message"}


def redact(text: str) -> str:
    """Mask ``api_key=`` query values and API-key / credential header values in ``text``."""
    return _SECRET_HEADER.sub(r"\1***", _SECRET_QUERY.sub(r"\1***", text))


class RedactFilter(logging.Filter):
    """Rewrite records whose rendered message carries an ``api_key=`` value or a
    credential header (``X-API-Key``, ``Authorization``, ``Cookie``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to fix
            return True
        lowered = message.lower()
        if any(marker in lowered for marker in ("api_key=", "api-key", "authorization",
                                                "cookie")):
            redacted = redact(message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


def install_redaction() -> None:
    """Attach :class:`RedactFilter` to uvicorn's loggers once (idempotent)."""
    for name in ("uvicorn.access", "uvicorn.error", "uvicorn"):
        log = logging.getLogger(name)
        if not any(isinstance(f, RedactFilter) for f in log.filters):
            log.addFilter(RedactFilter())


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


class KeyValueFormatter(logging.Formatter):
    """``2024-01-01T00:00:00Z INFO deepfake_audio.server: request method=GET …``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%SZ")
        self.converter = time.gmtime  # UTC, as the "Z" says

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = extra_fields(record)
        if fields:
            line += " " + " ".join(f"{k}={_kv(v)}" for k, v in fields.items())
        return line


def _kv(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (not text or any(c in text for c in ' "=')) else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **extra_fields(record),
        }
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def log_config(level: str = "info", fmt: str = "text") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` dict for uvicorn's ``log_config``.

    Uvicorn applies it in every worker process, so ``--workers`` keeps the format.
    """
    level_name = level.upper()
    formatter = "json" if fmt == "json" else "text"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactFilter}},
        "formatters": {
            "text": {"()": KeyValueFormatter},
            "json": {"()": JsonFormatter},
        },
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": formatter,
                        "filters": ["redact"], "stream": "ext://sys.stderr"},
        },
        "loggers": {
            # Our access line replaces uvicorn's (which would print full URLs).
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "uvicorn": {"handlers": ["default"], "level": level_name, "propagate": False},
            "deepfake_audio": {"handlers": ["default"], "level": level_name, "propagate": False},
        },
    }
