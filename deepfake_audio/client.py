"""Python client for a running ``deepfake-audio serve``.

Command line (parsed and printed by :mod:`deepfake_audio.cli`)::

    deepfake-audio remote http://127.0.0.1:8000 call.wav other.mp3 [--ws] [--json] [--api-key KEY]
    python -m deepfake_audio.client --file call.wav [--url http://localhost:8000] [--ws]

(the second form keeps the original ``python_client.py --file`` usage). From Python:

>>> from deepfake_audio.client import analyze_file
>>> analyze_file("http://127.0.0.1:8000", "call.wav")["classification"]  # doctest: +SKIP
'real'

HTTP goes through ``httpx`` and WebSocket through ``websockets`` — both from the
``[server]`` extra and imported only when used. A busy server (429, or the
WebSocket's ``"server busy"`` answer) is retried a few times after ``Retry-After``.

Exit codes of the command line: 0 every file analysed; 1 the server could not be
reached or failed (5xx); 2 usage error or API key refused; 3 at least one file was
rejected (bad audio) or could not be read.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

INSTALL_HINT = 'pip install "deepfake-audio[server]"'
DEFAULT_URL = "http://localhost:8000"
BUSY_RETRIES = 5


class RemoteError(Exception):
    """The server answered with an error (or could not be reached).

    Attributes
    ----------
    status : int or None
        HTTP status; ``None`` for WebSocket answers and connection failures.
    body : dict
        The JSON error object (``{"error": ..., "detail": ...}``).
    """

    def __init__(self, message: str, status: int | None = None,
                 body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or {"error": message}


class ServerUnavailable(RemoteError):
    """Connection refused, timed out, or a 5xx answer."""


def _require(name: str) -> ModuleType:
    try:
        return __import__(name)
    except ImportError as exc:
        raise ImportError(f"the deepfake-audio client needs {name}: {INSTALL_HINT}") from exc


def _base_url(url: str) -> tuple[str, bool]:
    """Normalise ``url`` to an ``http(s)://host:port`` base; say if it named a WebSocket."""
    raw = url.strip()
    if "://" not in raw:
        raw = "http://" + raw
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        raise ValueError(f"not a server URL: {url!r} (expected e.g. {DEFAULT_URL})")
    path = parts.path.rstrip("/")
    for suffix in ("/analyze", "/ws/stream", "/ws"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, path, "", "")), parts.scheme in ("ws", "wss")


def _ws_url(base: str) -> str:
    parts = urlsplit(base)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path + "/ws", "", ""))


def _error_message(body: dict[str, Any]) -> str:
    error = str(body.get("error", "error"))
    detail = body.get("detail")
    return f"{error}: {detail}" if isinstance(detail, str) and detail else error


def _decode_json(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    return body if isinstance(body, dict) else {"error": response.text[:200] or "no body"}


def analyze_file(url: str, path: str | os.PathLike[str], *, api_key: str | None = None,
                 timeout: float = 120.0, client: Any = None) -> dict[str, Any]:
    """Upload one file to ``POST /analyze``.

    Parameters
    ----------
    url : str
        Server base URL, e.g. ``http://127.0.0.1:8000``.
    path : path-like
        Audio file (WAV, MP3, FLAC, OGG).
    api_key : str, optional
        Sent as the ``X-API-Key`` header.
    timeout : float
        Seconds for connect/read.
    client : httpx.Client, optional
        Reuse a client (connection pooling across files).

    Returns
    -------
    dict
        The server's result (``classification``, ``confidence``, ``raw_score``…).

    Raises
    ------
    RemoteError
        The server refused the file (4xx).
    ServerUnavailable
        No connection, or a 5xx answer.
    """
    httpx = _require("httpx")
    base, _ = _base_url(url)
    own = client is None
    http = client or httpx.Client(timeout=timeout)
    headers = {"X-API-Key": api_key} if api_key else {}
    file = Path(path)
    mime = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    try:
        for attempt in range(BUSY_RETRIES + 1):
            try:
                with file.open("rb") as handle:
                    response = http.post(base + "/analyze", headers=headers,
                                         files={"file": (file.name, handle, mime)})
            except httpx.HTTPError as exc:
                raise ServerUnavailable(f"cannot reach {base}: {exc}") from exc
            if response.status_code == 429 and attempt < BUSY_RETRIES:
                time.sleep(_retry_after(response.headers.get("retry-after")))
                continue
            body = _decode_json(response)
            if response.status_code >= 500:
                raise ServerUnavailable(_error_message(body), response.status_code, body)
            if response.status_code >= 400:
                raise RemoteError(_error_message(body), response.status_code, body)
            return body
        raise AssertionError("unreachable")  # pragma: no cover
    finally:
        if own:
            http.close()


def _retry_after(value: str | None) -> float:
    try:
        return min(max(float(value or 1), 0.1), 30.0)
    except ValueError:
        return 1.0


def analyze_files_ws(url: str, paths: Iterable[str | os.PathLike[str]], *,
                     api_key: str | None = None, timeout: float = 120.0,
                     ) -> Iterator[tuple[Path, dict[str, Any] | RemoteError]]:
    """Send files one after another over a single ``/ws`` connection.

    Yields
    ------
    (Path, dict or RemoteError)
        Each file with the server's result, or the error it answered with (the
        connection stays open after an error, as the protocol promises).

    Raises
    ------
    ServerUnavailable
        The WebSocket could not be opened or dropped.
    RemoteError
        The handshake was refused (bad API key, origin).
    """
    _require("websockets")
    from websockets.exceptions import InvalidStatus, WebSocketException
    from websockets.sync.client import connect

    base, _ = _base_url(url)
    target = _ws_url(base)
    headers = {"X-API-Key": api_key} if api_key else None
    try:
        ws = connect(target, additional_headers=headers, open_timeout=timeout,
                     max_size=16 * 1024 * 1024)
    except InvalidStatus as exc:
        status = exc.response.status_code
        try:
            body = json.loads(exc.response.body or b"{}")
        except ValueError:
            body = {}
        message = _error_message(body) if body else f"handshake refused with HTTP {status}"
        raise RemoteError(message, status, body) from None
    except (OSError, WebSocketException, TimeoutError) as exc:
        raise ServerUnavailable(f"cannot open {target}: {exc}") from exc
    with ws:
        for item in paths:
            path = Path(item)
            try:
                data = path.read_bytes()
            except OSError as exc:
                yield path, RemoteError(f"cannot read {path}: {exc.strerror or exc}")
                continue
            message = json.dumps({"audio_data": base64.b64encode(data).decode("ascii"),
                                  "file_type": path.suffix.lower() or ".wav"})
            for attempt in range(BUSY_RETRIES + 1):
                try:
                    ws.send(message)
                    answer = json.loads(ws.recv(timeout=timeout))
                except (WebSocketException, TimeoutError, OSError) as exc:
                    raise ServerUnavailable(f"WebSocket to {target} failed: {exc}") from exc
                if answer.get("error") == "server busy, retry later" and attempt < BUSY_RETRIES:
                    time.sleep(1.0)
                    continue
                break
            if "error" in answer:
                yield path, RemoteError(_error_message(answer), None, answer)
            else:
                yield path, answer


def analyze_files(url: str, files: Iterable[str | os.PathLike[str]], *, ws: bool = False,
                  api_key: str | None = None, timeout: float = 120.0,
                  ) -> Iterator[tuple[Path, dict[str, Any] | RemoteError]]:
    """Analyse files one after another, over HTTP (one pooled client) or one WebSocket.

    A ``ws://`` / ``wss://`` ``url`` selects the WebSocket API too.

    Yields
    ------
    (Path, dict or RemoteError)
        Each file with the server's result, or the error it answered for that file
        (files that do not exist become a :class:`RemoteError` without a status).

    Raises
    ------
    ValueError
        ``url`` is not a server URL.
    ImportError
        httpx (HTTP) or websockets (WebSocket) is missing: the message says what to install.
    ServerUnavailable
        No connection, or a 5xx answer.
    RemoteError
        The API key or the WebSocket handshake was refused (nothing else would work).
    """
    _, names_ws = _base_url(url)
    use_ws = ws or names_ws
    _require("websockets" if use_ws else "httpx")
    if use_ws:
        yield from analyze_files_ws(url, files, api_key=api_key, timeout=timeout)
        return
    httpx = _require("httpx")
    with httpx.Client(timeout=timeout) as client:
        for item in files:
            path = Path(item)
            if not path.is_file():
                yield path, RemoteError(f"no such file: {path}")
                continue
            try:
                yield path, analyze_file(url, path, api_key=api_key, client=client)
            except ServerUnavailable:
                raise
            except RemoteError as exc:
                if exc.status in (401, 403):
                    raise
                yield path, exc


if __name__ == "__main__":
    from .cli import client_main

    raise SystemExit(client_main())
