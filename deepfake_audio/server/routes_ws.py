"""WebSocket routes: ``/ws`` (one JSON request, one JSON answer) and ``/ws/stream``.

Each connection reads its next message only once the previous one is answered, so
it has at most one analysis in flight; those analyses wait for a slot however long
the queue (backpressure, never "server busy"). The backlog is bounded instead by
``max_ws_connections``: a connection over that cap is accepted, told
``server busy, retry later`` and closed with 1013 (try again later).
"""

from __future__ import annotations

import contextlib
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ..exceptions import InputError
from .admission import AnalysisTimeout
from .errors import (
    BUSY_MESSAGE,
    TIMEOUT_MESSAGE,
    WORKER_CRASHED_MESSAGE,
    error_body,
    input_error_body,
)
from .logs import logger
from .messages import MessageError, send_json, stream_error
from .runtime import release_freed_memory
from .state import ServiceState, service
from .streaming import stream_loop
from .workers import WorkerCrashed

#: A ``/ws`` message at least this large is followed by :func:`release_freed_memory`.
TRIM_AFTER_BYTES = 1024 * 1024
#: Close code for a connection over the cap: "Try Again Later" (RFC 6455 registry).
TRY_AGAIN_LATER = 1013

router = APIRouter()


async def _answer(state: ServiceState, text: str) -> dict[str, Any]:
    max_bytes = state.settings.max_upload_bytes
    try:
        result = await state.analyze_message(text, max_bytes)
    except MessageError as exc:
        return error_body(str(exc))
    except InputError as exc:
        return input_error_body(exc)
    except AnalysisTimeout:
        return error_body(TIMEOUT_MESSAGE)
    except WorkerCrashed as exc:
        return error_body(WORKER_CRASHED_MESSAGE, str(exc))
    except Exception:  # a bug: report it, keep the connection (and the server) going
        logger.exception("unhandled error on /ws")
        return error_body("internal server error")
    return result.to_dict()


async def _refuse(websocket: WebSocket, body: dict[str, Any]) -> None:
    # Accept first: a browser only learns why from a message or a close reason.
    await websocket.accept()
    await send_json(websocket, body)
    await websocket.close(TRY_AGAIN_LATER, "too many WebSocket connections")


def _cap_detail(state: ServiceState) -> str:
    return (f"{state.settings.max_ws_connections} WebSocket connections are open"
            " (the server's MAX_WS_CONNECTIONS)")


@router.websocket("/ws")
async def ws_analyze(websocket: WebSocket) -> None:
    """One JSON request → one JSON answer, any number per connection, one at a time."""
    state = service(websocket)
    with state.websocket_slot() as admitted:
        if not admitted:
            await _refuse(websocket, error_body(BUSY_MESSAGE, _cap_detail(state)))
            return
        await _serve_ws(websocket, state)


async def _serve_ws(websocket: WebSocket, state: ServiceState) -> None:
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
    with state.websocket_slot() as admitted:
        if not admitted:
            await _refuse(websocket, stream_error(BUSY_MESSAGE, detail=_cap_detail(state)))
            return
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
