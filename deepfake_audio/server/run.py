"""Run the API under uvicorn (what ``deepfake-audio serve`` calls)."""

from __future__ import annotations

import logging.config
import math
import os
from typing import Any

import uvicorn

from .app import create_app
from .logs import log_config
from .settings import Settings
from .state import load_detector

APP_FACTORY = "deepfake_audio.server.app:create_app"


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for :func:`uvicorn.run` derived from ``settings``."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_config": log_config(settings.log_level, settings.log_format),
        "log_level": settings.log_level.lower(),
        # Our middleware logs each request without the query string (which may hold
        # the API key); uvicorn's access line would print it.
        "access_log": False,
        "ws_max_size": settings.ws_max_message_bytes,
        "timeout_graceful_shutdown": math.ceil(settings.graceful_timeout_s),
        "server_header": False,
    }


def serve(settings: Settings) -> None:
    """Serve the API until the process is told to stop.

    The model is loaded once before listening so a broken model fails fast. With
    ``settings.workers > 1`` uvicorn imports :data:`APP_FACTORY` in each worker
    process and the settings travel as ``DEEPFAKE_AUDIO_*`` variables.

    Parameters
    ----------
    settings : Settings
        Where to listen, which model, limits; see :class:`Settings`.

    Raises
    ------
    ModelLoadError
        The model cannot be loaded (the CLI maps it to exit code 4).
    """
    options = uvicorn_options(settings)
    logging.config.dictConfig(options["log_config"])
    # With several workers or isolation this load only makes a broken model fail fast.
    detector = load_detector(settings)
    if settings.workers > 1:
        os.environ.update(settings.to_env())
        del detector  # each worker loads its own copy
        uvicorn.run(APP_FACTORY, factory=True, workers=settings.workers, **options)
    elif settings.isolate:
        # A detector handed to create_app() analyses in this process; isolation needs the
        # app to start its worker processes, so this load only made a broken model fail fast.
        del detector
        uvicorn.run(create_app(settings), **options)
    else:
        uvicorn.run(create_app(settings, detector=detector), **options)
