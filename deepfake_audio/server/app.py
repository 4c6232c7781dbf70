"""The application factory: lifespan, error handlers, middleware, routers.

``create_app()`` builds a fresh app; ``uvicorn deepfake_audio.server.app:app`` uses a
module-level ``app`` that is only built on first access (PEP 562), so importing
this module stays cheap and loads no model. The routes live in
:mod:`.routes_http` and :mod:`.routes_ws` and read the :class:`~.state.ServiceState`
from ``app.state.service``.

Life cycle: the model loads during startup (a broken model stops the server
before it listens); the warm-up inference then runs in a thread while the server
already answers ``/health/live``; ``/health/ready`` turns 200 once it passed and
503 again as soon as SIGTERM arrives (see :func:`.runtime.install_drain_handler`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._version import __version__
from ..detector import Detector
from ..exceptions import InputError
from . import routes_docs, routes_http, routes_ws
from .admission import Admission, AnalysisTimeout, ServerBusy
from .errors import (
    BUSY_MESSAGE,
    TIMEOUT_MESSAGE,
    WORKER_CRASHED_MESSAGE,
    error_body,
    input_error_body,
    input_error_status,
)
from .faults import hook_from_env
from .logs import install_redaction, logger
from .middleware import (
    AccessMiddleware,
    AnalyzeGuardMiddleware,
    RequestContextMiddleware,
    request_id_of,
)
from .runtime import install_drain_handler, single_threaded_blas
from .settings import Settings
from .state import ServiceState, launch_workers, load_detector
from .workers import WorkerCrashed

_ROUTERS = (routes_http.router, routes_ws.router, routes_docs.router)


async def _warm_up(state: ServiceState) -> None:
    detector = state.loaded_detector
    started = time.perf_counter()
    try:
        await anyio.to_thread.run_sync(detector.warm_up)
    except Exception as exc:  # readiness stays 503 and says why
        state.warm_up_error = f"{type(exc).__name__}: {exc}"
        logger.exception("warm-up inference failed; readiness stays 503")
        return
    state.warmed = True
    logger.info("ready: model %s warmed up in %.0f ms", detector.model_id,
                (time.perf_counter() - started) * 1000)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServiceState = app.state.service
    settings = state.settings
    blas_limit = single_threaded_blas()
    # Workers load their models while this process loads its own (for /ws/stream).
    # A detector handed to create_app() is used as is, in this process.
    isolate = settings.isolate and state.detector is None
    # Isolated, as many jobs again wait at the worker pool, which sends the next one in
    # the same turn of the event loop that reads a worker's answer.
    state.admission = Admission(settings.concurrency, settings.max_queue,
                                settings.analysis_timeout_s,
                                ahead=settings.concurrency if isolate else 0)
    workers = launch_workers(settings, state.fault_hook is not None) if isolate else None
    try:
        if state.detector is None:
            state.detector = await anyio.to_thread.run_sync(load_detector, settings)
        if workers is not None:
            await anyio.to_thread.run_sync(workers.wait_ready)
            await workers.open()
    except BaseException:
        if workers is not None:
            await workers.close()
        raise
    state.workers = workers
    logger.info("model %s loaded; %d analysis slots (%s), HTTP queue %d, %d WebSocket"
                " connections, upload cap %g MB, API key %s, CORS origins %s",
                state.detector.model_id, settings.concurrency,
                "worker processes" if state.workers else "threads", settings.max_queue,
                settings.max_ws_connections, settings.max_upload_mb,
                "required" if settings.api_key_required else "off",
                ",".join(settings.cors_origins) or "none")
    warm = asyncio.create_task(_warm_up(state))
    restore = install_drain_handler(state.mark_draining, settings.shutdown_drain_s,
                                    asyncio.get_running_loop())
    try:
        yield
    finally:
        state.mark_draining()
        restore()
        if not warm.done():
            warm.cancel()
        if blas_limit is not None:
            blas_limit.restore_original_limits()
        if state.workers is not None:
            await state.workers.close()


def create_app(settings: Settings | None = None, detector: Detector | None = None) -> FastAPI:
    """Build the API application.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to :meth:`Settings.from_env`.
    detector : Detector, optional
        An already loaded detector (its own ``max_duration_s`` applies), used in this
        process (no worker isolation); by default the model named in ``settings`` is
        loaded during startup, and with ``settings.isolate`` uploads are analysed by
        worker processes that load it too.

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
    app = FastAPI(title=routes_http.API_NAME, version=__version__,
                  description=routes_http.API_DESCRIPTION, lifespan=_lifespan,
                  docs_url=None, redoc_url=None)  # routes_docs serves them offline
    app.state.service = state
    install_redaction()
    state.metrics.add_gauge(
        "analysis_queue_depth", "Analyses admitted and not finished (running + waiting).",
        lambda: [((), float(state.admission.pending if state.admission else 0))])
    state.metrics.add_gauge(
        "analysis_workers", "Analysis worker processes up (ready or busy; isolate mode).",
        lambda: [((), float(state.workers.alive if state.workers else 0))])
    state.metrics.add_gauge(
        "analysis_worker_restarts", "Analysis workers replaced after a crash, hang or OOM.",
        lambda: [((), float(state.workers.replaced if state.workers else 0))])
    state.metrics.add_gauge("ready", "1 when the model is loaded, warmed up and not draining.",
                            lambda: [((), 1.0 if state.ready else 0.0)])
    state.metrics.add_gauge("info", "Model and library version.",
                            lambda: [((state.detector.model_id if state.detector else "",
                                       __version__), 1.0)], labels=("model", "version"))

    _add_error_handlers(app)
    for router in _ROUTERS:
        app.include_router(router)
    app.mount("/demo", routes_http.demo_pages(), name="demo")
    app.mount(routes_docs.ASSETS_PATH, routes_docs.docs_assets(), name="docs-assets")

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
    # Included routers show up in app.routes as one opaque entry each: list their own routes.
    known = frozenset(str(getattr(r, "path", "")) for router in (app, *_ROUTERS)
                      for r in router.routes) - {""}
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

    async def worker_crashed(request: Request, exc: Exception) -> Response:
        return JSONResponse(error_body(WORKER_CRASHED_MESSAGE, str(exc)), 503,
                            headers={"Retry-After": "1"})

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
    app.add_exception_handler(WorkerCrashed, worker_crashed)
    app.add_exception_handler(Exception, internal)


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
