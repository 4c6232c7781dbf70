"""HTTP routes: API information, ``POST /analyze``, health probes, metrics, demo pages."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from .._version import __version__
from .errors import UPLOAD_SETTING, error_body
from .metrics import Metrics
from .schemas import AnalysisResponse, ErrorResponse, InfoResponse, LiveResponse, ReadyResponse
from .state import service

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
STATIC_DIR = Path(__file__).parent / "static"
_ERROR = {"model": ErrorResponse}
_ANALYZE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": AnalysisResponse, "description": "The verdict"},
    400: {**_ERROR, "description": "Undecodable, empty, silent, too short or invalid audio"},
    401: {**_ERROR, "description": "Invalid or missing API key"},
    413: {**_ERROR, "description": "Upload or audio duration over the limit"},
    415: {**_ERROR, "description": "Unsupported audio format"},
    404: {**_ERROR, "description": "Unknown speaker profile"},
    422: {**_ERROR, "description": "Missing form field 'file', unusable speaker references or"
                                   " an invalid profile name"},
    429: {**_ERROR, "description": "Server busy; retry after the Retry-After header"},
}
_ANALYZE_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {
                "file": {"type": "string", "format": "binary",
                         "description": "WAV, MP3, FLAC or OGG audio"},
                "reference": {"type": "array", "maxItems": 8,
                              "items": {"type": "string", "format": "binary"},
                              "description": "genuine recordings of the claimed speaker"
                                             " (optional; adds the speaker check)"},
                "profile": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                            "description": "name of a saved profile in the server's"
                                           " --profiles folder (optional)"},
            },
        }}},
    },
}
_READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": ReadyResponse, "description": "Model loaded and warmed up"},
    503: {"model": ReadyResponse, "description": "Starting up or shutting down"},
}

router = APIRouter()


def demo_pages() -> StaticFiles:
    """The browser demo clients, to mount at ``/demo``."""
    return StaticFiles(directory=STATIC_DIR, html=True)


@router.get("/", summary="API information", responses={200: {"model": InfoResponse}})
async def info(request: Request) -> dict[str, Any]:
    detector = service(request).detector
    return {"name": API_NAME, "version": __version__, "description": API_DESCRIPTION,
            "endpoints": ENDPOINTS, "model": detector.model_id if detector else None}


@router.get("/health/live", summary="Liveness probe", responses={200: {"model": LiveResponse}})
async def live() -> dict[str, Any]:
    return {"status": "alive"}


# Decorators apply bottom-up: /health/ready is registered first.
@router.get("/health", summary="Alias of /health/ready", responses=_READY_RESPONSES)
@router.get("/health/ready", summary="Readiness probe", responses=_READY_RESPONSES)
async def ready(request: Request) -> Response:
    state = service(request)
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


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    return Response(service(request).metrics.render(), media_type=Metrics.CONTENT_TYPE)


MAX_REFERENCES = 8
_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _profile_path(profiles_dir: str | None, name: str) -> Path | JSONResponse:
    """The saved profile ``name`` names, or the error response to send instead."""
    if profiles_dir is None:
        return JSONResponse(error_body(
            "no speaker profiles", "this server has no profile folder (serve --profiles DIR)"),
            422)
    if not _PROFILE_NAME.fullmatch(name) or ".." in name:
        return JSONResponse(error_body(
            "invalid profile name", "letters, digits, '_', '-' and '.', at most 64"), 422)
    folder = Path(profiles_dir).resolve()
    path = (folder / f"{name}.profile").resolve()
    if path.parent != folder or not path.is_file():
        return JSONResponse(error_body("unknown profile", f"no profile named {name!r}"), 404)
    return path


@router.post("/analyze", summary="Analyse an uploaded audio file",
             openapi_extra=_ANALYZE_OPENAPI, responses=_ANALYZE_RESPONSES)
async def analyze(request: Request) -> Response:
    state = service(request)
    try:
        form = await request.form(max_files=1 + MAX_REFERENCES, max_fields=16,
                                  max_part_size=64 * 1024)
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
                f"the file exceeds the {state.settings.max_upload_mb:g} MB limit"
                f" ({UPLOAD_SETTING})"), 413)
        references: list[UploadFile | Path] = []
        profile = form.get("profile")
        if isinstance(profile, str) and profile:
            found = _profile_path(state.settings.profiles_dir, profile)
            if isinstance(found, JSONResponse):
                return found
            references.append(found)
        for ref in form.getlist("reference"):
            if not isinstance(ref, UploadFile):
                continue
            if ref.size is not None and ref.size > state.settings.max_upload_bytes:
                return JSONResponse(error_body(
                    "upload too large",
                    f"a reference exceeds the {state.settings.max_upload_mb:g} MB limit"
                    f" ({UPLOAD_SETTING})"), 413)
            references.append(ref)
        result = await state.analyze_upload("http", upload, references)
        return JSONResponse(result.to_dict())
    finally:
        await form.close()
