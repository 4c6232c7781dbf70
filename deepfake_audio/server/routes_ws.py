"""WebSocket routes: ``/ws`` (one JSON request, one JSON answer) and ``/ws/stream``."""

from __future__ import annotations

import contextlib
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ..detector import AnalysisResult, Detector
from ..exceptions import InputError
from .admission import AnalysisTimeout, ServerBusy
from .errors import BUSY_MESSAGE, TIMEOUT_MESSAGE, error_body, input_error_body
from .faults import FaultHook
from .logs import logger
from .messages import MessageError, decode_message, send_json
from .runtime import release_freed_memory
from .state import ServiceState, service
from .streaming import stream_loop

#: A ``/ws`` message at least this large is followed by :func:`release_freed_memory`.
TRIM_AFTER_BYTES = 1024 * 1024

router = APIRouter()


def _analyze_message(detector: Detector, text: str, max_bytes: int,
                     fault_hook: FaultHook | None = None) -> AnalysisResult:
    # JSON parsing and base64 decoding of a 30 MB message are CPU work too: in the thread.
    data, file_type = decode_message(text, max_bytes)
    if fault_hook is not None:
        fault_hook(data[:256])
    return detector.analyze(data, file_type=file_type)


async def _answer(state: ServiceState, text: str) -> dict[str, Any]:
    detector, max_bytes = state.loaded_detector, state.settings.max_upload_bytes
    try:
        result = await state.run_analysis(
            "ws", lambda: _analyze_message(detector, text, max_bytes, state.fault_hook))
    except MessageError as exc:
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


@router.websocket("/ws")
async def ws_analyze(websocket: WebSocket) -> None:
    """One JSON request → one JSON answer, any number per connection."""
    state = service(websocket)
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                await send_json(websocket, error_body(
                    "send a JSON text message", '{"audio_data": base64, "file_type": ".wav"}'))
                continue
            answer = await _answer(state, text)
            large = len(text) >= TRIM_AFTER_BYTES
            del text, message  # the last references to the (possibly huge) message
            await send_json(websocket, answer)
            if large:
                await anyio.to_thread.run_sync(release_freed_memory)
    except WebSocketDisconnect:
        return


@router.websocket("/ws/stream")
async def ws_stream(websocket: WebSocket) -> None:
    """Raw PCM in, a rolling verdict every ``stream_hop_s`` out."""
    state = service(websocket)
    await websocket.accept()
    try:
        await stream_loop(websocket, state)
    except WebSocketDisconnect:
        return
    finally:
        if websocket.application_state == WebSocketState.CONNECTED \
                and websocket.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close()
