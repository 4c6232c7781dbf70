"""Pure ASGI middleware: request context/metrics/logs, access control, upload guard.

Pure ASGI (not ``BaseHTTPMiddleware``) so bodies stream through untouched and a
request can be refused before a single body byte is read.

Order, outermost first: :class:`RequestContextMiddleware` → CORS →
:class:`AccessMiddleware` → :class:`AnalyzeGuardMiddleware` → the routes. CORS sits
outside access control so preflights and 401 answers carry CORS headers.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .admission import Admission
from .errors import BUSY_MESSAGE, UPLOAD_SETTING, error_body
from .logs import logger
from .metrics import Metrics
from .settings import Settings

REQUEST_ID_KEY = "deepfake_audio.request_id"
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
#: Paths that never need the API key: probes, metrics, the info page and the demo pages
#: (a browser cannot attach a header when it loads a page; the pages then send the key).
_PUBLIC_PATHS = frozenset({"/", "/health", "/health/live", "/health/ready", "/metrics",
                           "/favicon.ico"})
#: Static files: the demo pages and the third-party scripts of /docs and /redoc.
_PUBLIC_PREFIXES = ("/demo/", "/docs-assets/")
_QUIET_PATHS = frozenset({"/health", "/health/live", "/health/ready", "/metrics"})
# Room for multipart boundaries and part headers on top of the audio itself.
MULTIPART_OVERHEAD = 64 * 1024


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def request_id_of(scope: Scope) -> str:
    return str(scope.get(REQUEST_ID_KEY, ""))


async def send_json(send: Send, status: int, body: dict[str, Any],
                    headers: dict[str, str] | None = None) -> None:
    """Send a complete JSON response on an HTTP scope."""
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


async def deny_websocket(scope: Scope, send: Send, status: int, body: dict[str, Any]) -> None:
    """Refuse a WebSocket handshake with an HTTP status and JSON body when the server
    supports the denial extension, else with close code 1008 (policy violation)."""
    if "websocket.http.response" in scope.get("extensions", {}):
        data = json.dumps(body).encode()
        await send({"type": "websocket.http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(data)).encode())]})
        await send({"type": "websocket.http.response.body", "body": data})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": body["error"][:120]})


async def close_websocket(receive: Receive, send: Send, reason: str) -> None:
    """Accept a WebSocket handshake and close it at once with 1008 and ``reason``.

    For browsers: a refused handshake only shows as code 1006 with no reason (the
    HTTP status is hidden from scripts), while a 1008 close carries the reason to
    ``onclose``. Nothing is read from the connection, so nothing is decoded.
    """
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": 1008, "reason": reason[:120]})


def _route_label(scope: Scope, known: frozenset[str]) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path is not None:
        return str(path)
    # Refused by a middleware before routing (401, 413, 429): the raw path is a route
    # of ours. Anything else is lumped together so odd URLs cannot grow label cardinality.
    raw = str(scope.get("path", ""))
    if raw in known:
        return raw
    for prefix in _PUBLIC_PREFIXES:
        if raw.startswith(prefix):
            return prefix.rstrip("/")
    return "unmatched"


class RequestContextMiddleware:
    """Request id, one log line per request or WebSocket connection, and metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics, known_paths: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.known_paths = known_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _REQUEST_ID_OK.match(incoming) else uuid.uuid4().hex
        scope[REQUEST_ID_KEY] = request_id
        if scope["type"] == "http":
            await self._http(scope, receive, send, request_id)
        else:
            await self._websocket(scope, receive, send, request_id)

    async def _http(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        started = time.perf_counter()
        status = 500
        id_header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = {**message, "headers": [*message.get("headers", ()), id_header]}
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.in_flight.dec()
            elapsed = time.perf_counter() - started
            route = _route_label(scope, self.known_paths)
            method = str(scope.get("method", ""))
            self.metrics.requests.inc(route, method, str(status))
            self.metrics.latency.observe(elapsed, route, method)
            path = str(scope.get("path", ""))
            level = (logging.ERROR if status >= 500 else
                     logging.DEBUG if path in _QUIET_PATHS else logging.INFO)
            # The path only: the query string may hold the API key.
            logger.log(level, "request", extra={
                "request_id": request_id, "method": method, "path": path, "status": status,
                "duration_ms": round(elapsed * 1000, 2), "client": _client(scope)})

    async def _websocket(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        started = time.perf_counter()
        outcome: dict[str, Any] = {"status": 101, "close_code": None}
        path = str(scope.get("path", ""))
        opened = False

        async def watch_send(message: Message) -> None:
            nonlocal opened
            kind = message["type"]
            if kind == "websocket.accept":
                opened = True
                self.metrics.websockets.inc(path)
            elif kind == "websocket.http.response.start":
                outcome["status"] = int(message["status"])
            elif kind == "websocket.close":
                if not opened:
                    outcome["status"] = 403
                outcome["close_code"] = int(message.get("code", 1000))
            await send(message)

        async def watch_receive() -> Message:
            message = await receive()
            if message["type"] == "websocket.disconnect" and outcome["close_code"] is None:
                outcome["close_code"] = int(message.get("code", 1005))
            return message

        try:
            await self.app(scope, watch_receive, watch_send)
        finally:
            if opened:
                self.metrics.websockets.dec(path)
            elapsed = time.perf_counter() - started
            logger.info("websocket", extra={
                "request_id": request_id, "path": path, "status": outcome["status"],
                "close_code": outcome["close_code"], "duration_ms": round(elapsed * 1000, 2),
                "client": _client(scope)})


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "-"


# --------------------------------------------------------------------------- access control


def _normalise_netloc(scheme: str, netloc: str) -> str:
    netloc = netloc.lower()
    default = {"http": ":80", "ws": ":80", "https": ":443", "wss": ":443"}.get(scheme)
    return netloc[: -len(default)] if default and netloc.endswith(default) else netloc


class AccessMiddleware:
    """Optional API key on HTTP and WebSocket; ``Origin`` allow-list on WebSocket handshakes.

    Browsers do not apply CORS to WebSockets, so without this check any web page
    could open ``/ws`` on a user's behalf (cross-site WebSocket hijacking). A
    disallowed ``Origin`` is refused at the handshake (403). A missing or wrong key is
    refused with HTTP 401 for non-browser clients (no ``Origin``), and for browsers
    (allowed ``Origin``) by accepting the handshake and closing at once with 1008
    "invalid or missing API key", the only way a page's ``onclose`` learns why.
    Either way no message is read, so nothing is ever decoded for an unauthorised
    client.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.key = settings.api_key.encode() if settings.api_key else None
        self.origins = set(settings.cors_origins)
        self.any_origin = "*" in self.origins

    def key_ok(self, scope: Scope) -> bool:
        if self.key is None:
            return True
        supplied = _header(scope, b"x-api-key")
        if supplied is None:
            query = scope.get("query_string", b"").decode("latin-1")
            supplied = next((v for k, v in parse_qsl(query) if k == "api_key"), None)
        # compare_digest: no timing side channel on how many leading bytes matched.
        return supplied is not None and hmac.compare_digest(supplied.encode("latin-1", "replace"),
                                                            self.key)

    def origin_ok(self, scope: Scope) -> bool:
        origin = _header(scope, b"origin")
        if origin is None:  # not a browser: nothing to protect against
            return True
        origin = origin.rstrip("/")
        if self.any_origin or origin in self.origins:
            return True
        host = _header(scope, b"host")
        parts = urlsplit(origin)
        if host is None or not parts.netloc:
            return False
        # Same origin: a page served by this very server (the /demo clients).
        scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
        return _normalise_netloc(parts.scheme, parts.netloc) == _normalise_netloc(scheme, host)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = str(scope.get("path", ""))
            public = path in _PUBLIC_PATHS or path.startswith(_PUBLIC_PREFIXES) \
                or path == "/demo"
            if not public and not self.key_ok(scope):
                await send_json(send, 401, error_body("invalid or missing API key"),
                                {"WWW-Authenticate": 'ApiKey header="X-API-Key"'})
                return
        elif scope["type"] == "websocket":
            if not self.origin_ok(scope):
                await deny_websocket(scope, send, 403, error_body(
                    "origin not allowed", "add it to DEEPFAKE_AUDIO_CORS_ORIGINS"))
                return
            if not self.key_ok(scope):
                if _header(scope, b"origin") is not None:
                    # A browser (its Origin was allowed above): let the page see why.
                    await close_websocket(receive, send, "invalid or missing API key")
                else:
                    await deny_websocket(scope, send, 401,
                                         error_body("invalid or missing API key"))
                return
        await self.app(scope, receive, send)


# --------------------------------------------------------------------------- upload guard


class UploadTooLarge(HTTPException):
    """Raised from ``receive`` once the body passes the cap; rendered as 413 JSON."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds the {limit / 1024 / 1024:g} MB limit"
                              f" ({UPLOAD_SETTING})")


class AnalyzeGuardMiddleware:
    """Refuse ``POST /analyze`` early: 429 when saturated, 413 when the body is too big.

    The size cap is enforced twice: from ``Content-Length`` before anything is
    read, and by counting bytes as ``receive`` hands them out (chunked uploads
    have no length), so no more than the cap is ever buffered.
    """

    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics,
                 admission: Callable[[], Admission | None], path: str = "/analyze") -> None:
        self.app = app
        self.upload_limit = settings.max_upload_bytes
        self.body_limit = settings.max_upload_bytes + MULTIPART_OVERHEAD
        self.metrics = metrics
        self.admission = admission
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != self.path \
                or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        admission = self.admission()
        if admission is not None and admission.full():
            # Don't make the client upload megabytes only to be told to come back later.
            self.metrics.rejected.inc("busy")
            self.metrics.analyses.inc("http", "rejected")
            await send_json(send, 429, error_body(BUSY_MESSAGE), {"Retry-After": "1"})
            return
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await send_json(send, 400, error_body("invalid Content-Length header"))
                return
            if declared > self.body_limit:
                await self._too_large(send)
                return

        received = 0
        overflow = False
        response_started = False

        async def counted_receive() -> Message:
            nonlocal received, overflow
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.body_limit:
                    overflow = True
                    raise UploadTooLarge(self.upload_limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if overflow:
                # Whatever the app makes of the aborted body, the answer is 413.
                if message["type"] == "http.response.start" and not response_started:
                    response_started = True
                    await self._too_large(send)
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except UploadTooLarge:
            if response_started:
                raise
            await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        self.metrics.rejected.inc("too_large")
        await send_json(send, 413, error_body(
            "upload too large",
            f"the request body exceeds the {self.upload_limit / 1024 / 1024:g} MB limit"
            f" ({UPLOAD_SETTING})"),
            {"Connection": "close"})
