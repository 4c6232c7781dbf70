"""HTTP + WebSocket API for :mod:`deepfake_audio` (needs the ``[server]`` extra).

>>> from deepfake_audio.server import create_app  # doctest: +SKIP
>>> app = create_app()                             # doctest: +SKIP

Run it with ``deepfake-audio serve`` or ``uvicorn --factory
deepfake_audio.server.app:create_app``. See ``docs/server.md``.
"""

from __future__ import annotations

INSTALL_HINT = 'pip install "deepfake-audio[server]"'

try:
    import fastapi  # noqa: F401
    import pybase64  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        f"the deepfake-audio server needs FastAPI, uvicorn and pybase64 ({exc.name} is missing): "
        f"{INSTALL_HINT}"
    ) from exc

from .app import create_app  # noqa: E402
from .settings import Settings  # noqa: E402

__all__ = ["INSTALL_HINT", "Settings", "create_app"]
