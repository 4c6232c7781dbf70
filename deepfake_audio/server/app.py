"""The FastAPI application: routes, error handlers, lifespan.

``create_app()`` builds a fresh app; ``uvicorn deepfake_audio.server.app:app`` uses a
module-level ``app`` that is only built on first access (PEP 562), so importing
this module stays cheap and loads no model.

Life cycle: the model loads during startup (a broken model stops the server
before it listens); the warm-up inference then runs in a thread while the server
already answers ``/health/live``; ``/health/ready`` turns 200 once it passed and
503 again as soon as SIGTERM arrives (see :func:`_install_drain_handler`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ctypes
import ctypes.util
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import anyio.to_thread
from fastapi import FastAPI, Request, WebSocket
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.websockets import WebSocketDisconnect, WebSocketState

from .._version import __version__
from ..detector import AnalysisResult, Detector
from ..exceptions import InputError
from .admission import Admission, AnalysisTimeout, ServerBusy
from .errors import (
    BUSY_MESSAGE,
    TIMEOUT_MESSAGE,
    error_body,
    input_error_body,
    input_error_status,
)
from .faults import FaultHook, hook_from_env
from .logs import install_redaction, logger
from .metrics import Metrics
from .middleware import (
    AccessMiddleware,
    AnalyzeGuardMiddleware,
    RequestContextMiddleware,
    request_id_of,
)
from .schemas import (
    AnalysisResponse,
    ErrorResponse,
    InfoResponse,
    LiveResponse,
    ReadyResponse,
)
from .settings import Settings
from .streaming import StreamFormat, StreamProtocolError, StreamSession

STATIC_DIR = Path(__file__).parent / "static"
#: A ``/ws`` message at least this large is followed by :func:`release_freed_memory`.
TRIM_AFTER_BYTES = 1024 * 1024
MAX_STREAM_FRAME_BYTES = 1024 * 1024
API_NAME = "Deepfake Audio Detection API"
API_DESCRIPTION = "API for real-time detection of deepfake audio"
ENDPOINTS = {
    "POST /analyze": "Upload an audio file for deepfake detection",
    "WebSocket /ws": "Stream audio data for real-time deepfake detection",
    "WebSocket /ws/stream": "Stream raw PCM and get a verdict every second (rolling window)",
    "GET /health/live": "Liveness probe",
    "GET /health/ready": "Readiness probe (model loaded and warmed up)",
    "GET /metrics": "Prometheus metrics",
    "GET /demo/client_example.html": "Upload demo page",
    "GET /demo/realtime_client.html": "Microphone streaming demo page",
}
_ERROR = {"model": ErrorResponse}
_ANALYZE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": AnalysisResponse, "description": "The verdict"},
    400: {**_ERROR, "description": "Undecodable, empty, silent, too short or invalid audio"},
    401: {**_ERROR, "description": "Invalid or missing API key"},
    413: {**_ERROR, "description": "Upload or audio duration over the limit"},
    415: {**_ERROR, "description": "Unsupported audio format"},
    422: {**_ERROR, "description": "Missing form field 'file'"},
    429: {**_ERROR, "description": "Server busy; retry after the Retry-After header"},
}
_ANALYZE_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary",
                                    "description": "WAV, MP3, FLAC or OGG audio"}},
        }}},
    },
}


@dataclass
class ServiceState:
    """Mutable state shared by the routes of one app instance."""

    settings: Settings
    detector: Detector | None = None
    admission: Admission | None = None
    metrics: Metrics = field(default_factory=Metrics)
    warmed: bool = False
    draining: bool = False
    warm_up_error: str | None = None
    started: float = field(default_factory=time.monotonic)
    #: Test-only fault injection (``DEEPFAKE_AUDIO_TEST_FAULTS=1``), see :mod:`.faults`.
    fault_hook: FaultHook | None = None

    @property
    def ready(self) -> bool:
        return self.detector is not None and self.warmed and not self.draining

    @property
    def status(self) -> str:
        if self.draining:
            return "shutting down"
        if self.warm_up_error:
            return "warm-up failed"
        return "ready" if self.ready else "starting"


class _MessageError(ValueError):
    """A WebSocket message that is not a valid request."""


def load_detector(settings: Settings) -> Detector:
    """Load the configured model (blocking; call from a thread or before serving)."""
    return Detector(settings.model, max_duration_s=settings.max_duration_s,
                    allow_unverified=settings.allow_unverified_model)


# --------------------------------------------------------------------------- lifespan


def _install_drain_handler(state: ServiceState,
                           loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """Chain a SIGTERM handler in front of uvicorn's: readiness turns 503 at once, and
    uvicorn's shutdown (listener closed, in-flight requests finished) starts only after
    ``shutdown_drain_s`` so a load balancer has time to notice. SIGINT stays immediate.

    Returns a function restoring the previous handler. A no-op outside the main thread
    (signals cannot be handled there, e.g. under a test client).
    """
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except ValueError:
        return lambda: None
    if not callable(previous):
        return lambda: None
    delay = state.settings.shutdown_drain_s
    fired = False

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        state.draining = True
        if fired or delay <= 0:
            previous(signum, frame)  # a second SIGTERM: stop draining, shut down now
            return
        fired = True
        logger.info("SIGTERM: readiness is now 503; shutting down in %.1f s", delay)
        loop.call_soon_threadsafe(loop.call_later, delay, previous, signum, None)

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:
        return lambda: None

    def restore() -> None:
        with contextlib.suppress(ValueError):
            if signal.getsignal(signal.SIGTERM) is on_sigterm:
                signal.signal(signal.SIGTERM, previous)

    return restore


async def _warm_up(state: ServiceState) -> None:
    assert state.detector is not None
    started = time.perf_counter()
    try:
        await anyio.to_thread.run_sync(state.detector.warm_up)
    except Exception as exc:  # readiness stays 503 and says why
        state.warm_up_error = f"{type(exc).__name__}: {exc}"
        logger.exception("warm-up inference failed; readiness stays 503")
        return
    state.warmed = True
    logger.info("ready: model %s warmed up in %.0f ms", state.detector.model_id,
                (time.perf_counter() - started) * 1000)


def _single_threaded_blas() -> Any:
    """Pin BLAS/OpenMP pools to one thread; returns a handle to undo it (or ``None``).

    The server already runs one analysis per CPU in parallel; letting each of them
    also fan out over every core oversubscribes the CPUs and burns time in spin-waits
    (measured: ~2x CPU per request under load).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        return None
    return threadpool_limits(limits=1)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServiceState = app.state.service
    settings = state.settings
    blas_limit = _single_threaded_blas()
    state.admission = Admission(settings.concurrency, settings.max_queue,
                                settings.analysis_timeout_s)
    if state.detector is None:
        state.detector = await anyio.to_thread.run_sync(load_detector, settings)
    logger.info("model %s loaded; %d analysis slots, queue %d, upload cap %g MB, API key %s,"
                " CORS origins %s", state.detector.model_id, settings.concurrency,
                settings.max_queue, settings.max_upload_mb,
                "required" if settings.api_key_required else "off",
                ",".join(settings.cors_origins) or "none")
    warm = asyncio.create_task(_warm_up(state))
    restore = _install_drain_handler(state, asyncio.get_running_loop())
    try:
        yield
    finally:
        state.draining = True
        restore()
        if not warm.done():
            warm.cancel()
        if blas_limit is not None:
            blas_limit.restore_original_limits()


# --------------------------------------------------------------------------- analysis jobs


def _timed(state: ServiceState, source: str, func: Callable[[], AnalysisResult]) -> AnalysisResult:
    started = time.perf_counter()
    try:
        return func()
    finally:
        state.metrics.analysis_seconds.observe(time.perf_counter() - started, source)


async def _run_analysis(state: ServiceState, source: str,
                        func: Callable[[], AnalysisResult]) -> AnalysisResult:
    """Run ``func`` through admission control and count the outcome."""
    assert state.admission is not None
    try:
        result = await state.admission.run(_timed, state, source, func)
    except ServerBusy:
        state.metrics.rejected.inc("busy")
        state.metrics.analyses.inc(source, "rejected")
        raise
    except Exception:  # bad input, timeout, or a bug (rendered as 500 by the caller)
        state.metrics.analyses.inc(source, "error")
        raise
    state.metrics.analyses.inc(source, result.classification)
    return result


def _analyze_file(detector: Detector, handle: IO[bytes],
                  fault_hook: FaultHook | None = None) -> AnalysisResult:
    if fault_hook is not None:
        handle.seek(0)
        fault_hook(handle.read(256))
    handle.seek(0)
    # The content decides the format; a browser blob's file name ("blob") says nothing.
    return detector.analyze(handle)


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return None
    return trim


_MALLOC_TRIM = _load_malloc_trim()


def release_freed_memory() -> None:
    """Give freed heap pages back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    A large ``/ws`` message exists several times over while it is handled (the frame,
    its text, the JSON string, base64 input and output: ~6x the audio size). All of it
    is freed right after, but glibc keeps much of it in its per-thread arenas: measured
    with the reliability corpus (a 7 MB message among others), the resident size grew
    ~37 MB per pass and drifted to ~+70 MB over 12 passes; with this call after each
    message of 1 MB or more, ~+23 MB and ~+50 MB.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _strip_data_url(text: str) -> str:
    if text.startswith("data:"):
        head, sep, rest = text.partition(",")
        if not sep or not head.endswith(";base64"):
            raise _MessageError("audio_data is a data URL but not a base64 one")
        return rest
    return text


def _decode_message(text: str, max_bytes: int) -> tuple[bytes, str | None]:
    """Parse a ``/ws`` message into audio bytes and the declared file type."""
    try:
        message = json.loads(text)
    except ValueError:
        raise _MessageError("message is not valid JSON") from None
    if not isinstance(message, dict):
        raise _MessageError("message must be a JSON object")
    missing = [k for k in ("audio_data", "file_type") if k not in message]
    if missing:
        raise _MessageError(f"message is missing {', '.join(missing)}"
                            ' (expected {"audio_data": base64, "file_type": ".wav"})')
    audio_data, file_type = message["audio_data"], message["file_type"]
    if not isinstance(audio_data, str) or not audio_data:
        raise _MessageError("audio_data must be a non-empty base64 string")
    if file_type is not None and not isinstance(file_type, str):
        raise _MessageError("file_type must be a string such as \".wav\" or \".mp3\"")
    payload = _strip_data_url(audio_data)
    if len(payload) > (max_bytes // 3 + 1) * 4 + 8:
        raise _MessageError(f"audio is larger than the {max_bytes / 1024 / 1024:g} MB limit")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        try:  # MIME-style base64 with line breaks is still base64
            data = base64.b64decode("".join(payload.split()), validate=True)
        except (binascii.Error, ValueError):
            raise _MessageError("audio_data is not valid base64") from None
    if len(data) > max_bytes:
        raise _MessageError(f"audio is larger than the {max_bytes / 1024 / 1024:g} MB limit")
    return data, file_type or None


def _analyze_message(detector: Detector, text: str, max_bytes: int,
                     fault_hook: FaultHook | None = None) -> AnalysisResult:
    # JSON parsing and base64 decoding of a 30 MB message are CPU work too: in the thread.
    data, file_type = _decode_message(text, max_bytes)
    if fault_hook is not None:
        fault_hook(data[:256])
    return detector.analyze(data, file_type=file_type)


# --------------------------------------------------------------------------- app factory


def create_app(settings: Settings | None = None, detector: Detector | None = None) -> FastAPI:
    """Build the API application.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to :meth:`Settings.from_env`.
    detector : Detector, optional
        An already loaded detector (its own ``max_duration_s`` applies); by default
        the model named in ``settings`` is loaded during startup.

    Returns
    -------
    fastapi.FastAPI
        Serve it with uvicorn; ``uvicorn --factory deepfake_audio.server.app:create_app``
        works too (settings then come from the environment).
    """
    settings = settings or Settings.from_env()
    state = ServiceState(settings=settings, detector=detector, fault_hook=hook_from_env())
    if state.fault_hook is not None:
        logger.warning("TEST FAULT INJECTION IS ON (DEEPFAKE_AUDIO_TEST_FAULTS):"
                       " never run a production server like this")
    app = FastAPI(title=API_NAME, version=__version__, description=API_DESCRIPTION,
                  lifespan=_lifespan)
    app.state.service = state
    install_redaction()
    state.metrics.add_gauge(
        "analysis_queue_depth", "Analyses admitted and not finished (running + waiting).",
        lambda: [((), float(state.admission.pending if state.admission else 0))])
    state.metrics.add_gauge("ready", "1 when the model is loaded, warmed up and not draining.",
                            lambda: [((), 1.0 if state.ready else 0.0)])
    state.metrics.add_gauge("info", "Model and library version.",
                            lambda: [((state.detector.model_id if state.detector else "",
                                       __version__), 1.0)], labels=("model", "version"))

    _add_error_handlers(app)
    _add_http_routes(app, state)
    _add_websocket_routes(app, state)
    app.mount("/demo", StaticFiles(directory=STATIC_DIR, html=True), name="demo")

    # add_middleware prepends: the last one added is the outermost.
    app.add_middleware(AnalyzeGuardMiddleware, settings=settings, metrics=state.metrics,
                       admission=lambda: state.admission)
    app.add_middleware(AccessMiddleware, settings=settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["X-API-Key", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"], max_age=600)
    known = frozenset(str(getattr(r, "path", "")) for r in app.routes) - {""}
    app.add_middleware(RequestContextMiddleware, metrics=state.metrics, known_paths=known)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else None
        error = {404: "not found", 405: "method not allowed"}.get(exc.status_code, detail or "")
        if exc.status_code == 404:
            detail = f"no endpoint at {request.url.path}; see GET / for the API"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return JSONResponse(error_body(error or "request failed", detail), exc.status_code,
                            headers=dict(exc.headers or {}))

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse(error_body("invalid request", jsonable_encoder(exc.errors())), 422)

    async def input_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, InputError)
        return JSONResponse(input_error_body(exc), input_error_status(exc)[0])

    async def busy(request: Request, exc: Exception) -> Response:
        return JSONResponse(error_body(BUSY_MESSAGE), 429, headers={"Retry-After": "1"})

    async def timeout(request: Request, exc: Exception) -> Response:
        return JSONResponse(error_body(TIMEOUT_MESSAGE, "the server is overloaded"), 503,
                            headers={"Retry-After": "5"})

    async def internal(request: Request, exc: Exception) -> Response:
        request_id = request_id_of(request.scope)
        logger.error("unhandled error", exc_info=exc, extra={"request_id": request_id})
        # Rendered by Starlette's outermost middleware, i.e. outside ours: add the id here.
        return JSONResponse(error_body("internal server error",
                                       f"please report request id {request_id}"), 500,
                            headers={"X-Request-ID": request_id} if request_id else None)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(InputError, input_error)
    app.add_exception_handler(ServerBusy, busy)
    app.add_exception_handler(AnalysisTimeout, timeout)
    app.add_exception_handler(Exception, internal)


def _add_http_routes(app: FastAPI, state: ServiceState) -> None:
    @app.get("/", summary="API information", responses={200: {"model": InfoResponse}})
    async def info() -> dict[str, Any]:
        return {"name": API_NAME, "version": __version__, "description": API_DESCRIPTION,
                "endpoints": ENDPOINTS,
                "model": state.detector.model_id if state.detector else None}

    @app.get("/health/live", summary="Liveness probe", responses={200: {"model": LiveResponse}})
    async def live() -> dict[str, Any]:
        return {"status": "alive"}

    async def ready() -> Response:
        body: dict[str, Any] = {
            "status": state.status, "version": __version__,
            "model": state.detector.model_id if state.detector else None,
            "uptime_s": round(time.monotonic() - state.started, 1)}
        if state.ready:
            return JSONResponse(body)
        body["error"] = "not ready"
        if state.warm_up_error:
            body["detail"] = state.warm_up_error
        return JSONResponse(body, 503)

    ready_responses: dict[int | str, dict[str, Any]] = {
        200: {"model": ReadyResponse, "description": "Model loaded and warmed up"},
        503: {"model": ReadyResponse, "description": "Starting up or shutting down"},
    }
    app.add_api_route("/health/ready", ready, methods=["GET"], summary="Readiness probe",
                      responses=ready_responses)
    app.add_api_route("/health", ready, methods=["GET"], summary="Alias of /health/ready",
                      responses=ready_responses)

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=Metrics.CONTENT_TYPE)

    @app.post("/analyze", summary="Analyse an uploaded audio file", openapi_extra=_ANALYZE_OPENAPI,
              responses=_ANALYZE_RESPONSES)
    async def analyze(request: Request) -> Response:
        assert state.detector is not None
        detector = state.detector
        try:
            form = await request.form(max_files=1, max_fields=16, max_part_size=64 * 1024)
        except MultiPartException as exc:
            return JSONResponse(error_body("malformed multipart body", exc.message), 400)
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                return JSONResponse(error_body(
                    "missing form field 'file'",
                    "send the audio as multipart/form-data with a file field named 'file'"), 422)
            if upload.size is not None and upload.size > state.settings.max_upload_bytes:
                return JSONResponse(error_body(
                    "upload too large",
                    f"the file exceeds the {state.settings.max_upload_mb:g} MB limit"), 413)
            file = upload.file
            result = await _run_analysis(
                state, "http", lambda: _analyze_file(detector, file, state.fault_hook))
            return JSONResponse(result.to_dict())
        finally:
            await form.close()


# --------------------------------------------------------------------------- WebSockets


async def _send_json(websocket: WebSocket, payload: dict[str, Any]) -> None:
    await websocket.send_text(json.dumps(payload))


def _add_websocket_routes(app: FastAPI, state: ServiceState) -> None:
    max_bytes = state.settings.max_upload_bytes

    @app.websocket("/ws")
    async def ws_analyze(websocket: WebSocket) -> None:
        """One JSON request → one JSON answer, any number per connection."""
        assert state.detector is not None
        detector = state.detector
        await websocket.accept()
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                if text is None:
                    await _send_json(websocket, error_body(
                        "send a JSON text message", '{"audio_data": base64, "file_type": ".wav"}'))
                    continue
                answer = await _ws_answer(state, detector, text, max_bytes)
                large = len(text) >= TRIM_AFTER_BYTES
                del text, message  # the last references to the (possibly huge) message
                await _send_json(websocket, answer)
                if large:
                    await anyio.to_thread.run_sync(release_freed_memory)
        except WebSocketDisconnect:
            return

    @app.websocket("/ws/stream")
    async def ws_stream(websocket: WebSocket) -> None:
        """Raw PCM in, a rolling verdict every ``stream_hop_s`` out."""
        assert state.detector is not None
        await websocket.accept()
        try:
            await _stream_loop(websocket, state, state.detector)
        except WebSocketDisconnect:
            return
        finally:
            if websocket.application_state == WebSocketState.CONNECTED \
                    and websocket.client_state == WebSocketState.CONNECTED:
                with contextlib.suppress(Exception):
                    await websocket.close()


async def _ws_answer(state: ServiceState, detector: Detector, text: str,
                     max_bytes: int) -> dict[str, Any]:
    try:
        result = await _run_analysis(
            state, "ws", lambda: _analyze_message(detector, text, max_bytes, state.fault_hook))
    except _MessageError as exc:
        return error_body(str(exc))
    except InputError as exc:
        return input_error_body(exc)
    except ServerBusy:
        return error_body(BUSY_MESSAGE)
    except AnalysisTimeout:
        return error_body(TIMEOUT_MESSAGE)
    except Exception:  # a bug: report it, keep the connection (and the server) going
        logger.exception("unhandled error on /ws")
        return error_body("internal server error")
    return result.to_dict()


def _stream_error(message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "error": message, **extra}


def _overall(detector: Detector, session: StreamSession) -> dict[str, Any]:
    raw = session.mean_score
    p_fake = float(detector.metadata.calibration.probability_deepfake(raw))
    label = "deepfake" if raw > detector.threshold else "real"
    return {"classification": label, "confidence": p_fake if label == "deepfake" else 1 - p_fake,
            "raw_score": raw, "probability_deepfake": p_fake, "windows": len(session.scores)}


async def _score_window(websocket: WebSocket, state: ServiceState, detector: Detector,
                        session: StreamSession, window: Any) -> None:
    rate = session.format.sample_rate
    samples = window.samples
    try:
        result = await _run_analysis(state, "stream", lambda: detector.analyze((samples, rate)))
    except Exception as exc:
        if isinstance(exc, InputError):
            text = f"{input_error_status(exc)[1]}: {exc}"
        elif isinstance(exc, (ServerBusy, AnalysisTimeout)):
            text = BUSY_MESSAGE if isinstance(exc, ServerBusy) else TIMEOUT_MESSAGE
        else:  # a bug: report it, keep the stream going
            logger.exception("unhandled error on /ws/stream")
            text = "internal server error"
        await _send_json(websocket, _stream_error(text, start_s=window.start_s, end_s=window.end_s))
        return
    session.add_score(result.raw_score)
    await _send_json(websocket, {
        "type": "window", "start_s": window.start_s, "end_s": window.end_s,
        "classification": result.classification, "confidence": result.confidence,
        "raw_score": result.raw_score, "probability_deepfake": result.probability_deepfake,
        "overall": _overall(detector, session)})


async def _stream_loop(websocket: WebSocket, state: ServiceState, detector: Detector) -> None:
    settings = state.settings
    session: StreamSession | None = None
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is not None:
            if len(data) > MAX_STREAM_FRAME_BYTES:
                # Cutting a huge frame into windows would hold the event loop; real-time
                # clients send 20-500 ms frames anyway.
                await _send_json(websocket, _stream_error(
                    f"binary frames must be at most {MAX_STREAM_FRAME_BYTES // 1024} KiB"))
                continue
            if session is None:
                await _send_json(websocket, _stream_error(
                    'send {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"} first'))
                continue
            # Slicing and decoding PCM is cheap (numpy); the scoring goes to the thread pool.
            for window in session.feed(data):
                await _score_window(websocket, state, detector, session, window)
            continue
        try:
            control = json.loads(message.get("text") or "")
            if not isinstance(control, dict):
                raise ValueError
        except ValueError:
            await _send_json(websocket, _stream_error("control messages must be JSON objects"))
            continue
        kind = control.get("type")
        if kind == "start":
            try:
                fmt = StreamFormat.from_message(control)
            except StreamProtocolError as exc:
                await _send_json(websocket, _stream_error(str(exc)))
                continue
            # No acknowledgement: the protocol's only answers are window/summary/error.
            session = StreamSession(fmt, window_s=settings.stream_window_s,
                                    hop_s=settings.stream_hop_s)
        elif kind == "end":
            if session is None:
                await _send_json(websocket, _stream_error("no stream in progress"))
                continue
            tail = session.tail(int(detector.min_duration_s * session.format.sample_rate) + 1)
            if tail is not None:
                await _score_window(websocket, state, detector, session, tail)
            if session.scores:
                await _send_json(websocket, {"type": "summary", **_overall(detector, session),
                                             "duration_s": round(session.duration_s, 3)})
            else:
                await _send_json(websocket, _stream_error(
                    "stream too short: no window could be scored",
                    duration_s=round(session.duration_s, 3)))
            session = None
        else:
            await _send_json(websocket, _stream_error(
                f"unknown message type {kind!r}; expected 'start' or 'end'"))


# --------------------------------------------------------------------------- lazy module app

_lazy_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    # PEP 562: `uvicorn deepfake_audio.server.app:app` builds the app on first access only.
    global _lazy_app
    if name == "app":
        if _lazy_app is None:
            _lazy_app = create_app()
        return _lazy_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

