"""The server's worker pool on its own: real worker processes, real fault commands.

The HTTP-level behaviour (status codes, metrics) is in tests/reliability/test_faults.py;
these pin down the dispatching: waiting jobs go to whichever worker frees first, a
hung or dead worker fails only the job it was running, ``/ws`` messages are decoded in
the worker, and closing the pool answers every waiting job.
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from deepfake_audio.exceptions import InputError
from deepfake_audio.server.faults import MAGIC
from deepfake_audio.server.messages import MessageError
from deepfake_audio.server.workers import (
    Job,
    WorkerConfig,
    WorkerCrashed,
    WorkerPool,
    WorkerTimeout,
)
from tests.helpers.audio import wav_bytes

pytestmark = pytest.mark.server

CLIP = wav_bytes(2.0)
WORKER_NAME = "deepfake-audio-worker"


def hang(seconds: float) -> Job:
    return Job(MAGIC + f"hang={seconds}".encode())


def with_pool(body: Callable[[WorkerPool], Awaitable[Any]], size: int = 2,
              timeout_s: float = 4.0) -> Any:
    async def run() -> Any:
        pool = WorkerPool(WorkerConfig(model=None, max_duration_s=None, faults=True),
                          size=size, timeout_s=timeout_s)
        await pool.start()
        try:
            return await body(pool)
        finally:
            await pool.close()

    return asyncio.run(run())


def workers_alive() -> list[str]:
    return [p.name for p in multiprocessing.active_children() if p.name == WORKER_NAME]


async def wait_for_workers(pool: WorkerPool, count: int) -> None:
    deadline = time.monotonic() + 60  # a successor loads the model first
    while pool.alive < count and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


def test_waiting_jobs_are_all_answered_by_whichever_worker_is_free() -> None:
    async def body(pool: WorkerPool) -> None:
        results = await asyncio.gather(*(pool.analyze(Job(CLIP)) for _ in range(12)))
        assert {r.classification for r in results} <= {"real", "deepfake"}
        assert len({r.raw_score for r in results}) == 1  # the same clip, the same score
        assert pool.alive == 2 and pool.replaced == 0

    with_pool(body)


def test_a_ws_message_is_decoded_in_the_worker() -> None:
    message = json.dumps({"audio_data": base64.b64encode(CLIP).decode(), "file_type": ".wav"})

    async def body(pool: WorkerPool) -> None:
        result = await pool.analyze(Job(message, message_limit=len(CLIP)))
        assert result.classification in ("real", "deepfake")
        with pytest.raises(MessageError, match="not valid JSON"):
            await pool.analyze(Job("{", message_limit=len(CLIP)))
        with pytest.raises(MessageError, match="larger than"):
            await pool.analyze(Job(message, message_limit=1000))
        with pytest.raises(InputError):
            await pool.analyze(Job(b"not audio at all"))
        assert pool.replaced == 0  # refusing bad input costs no worker

    with_pool(body)


def test_a_hung_worker_fails_only_its_job_and_the_others_keep_flowing() -> None:
    async def body(pool: WorkerPool) -> None:
        stuck = asyncio.ensure_future(pool.analyze(hang(30)))
        await asyncio.sleep(0.3)  # the hang is running in one worker
        started = time.perf_counter()
        for _ in range(6):  # none of these waits behind the hung job
            await pool.analyze(Job(CLIP))
        assert time.perf_counter() - started < 4.0
        with pytest.raises(WorkerTimeout, match="exceeded 4 s"):
            await stuck
        assert pool.replaced == 1  # counted before the caller hears of it
        await wait_for_workers(pool, 2)
        assert pool.alive == 2
        assert (await pool.analyze(Job(CLIP))).classification in ("real", "deepfake")

    with_pool(body)


def test_a_dead_worker_fails_only_its_job() -> None:
    async def body(pool: WorkerPool) -> None:
        aborted = asyncio.ensure_future(pool.analyze(Job(MAGIC + b"abort")))
        others = [asyncio.ensure_future(pool.analyze(Job(CLIP))) for _ in range(4)]
        with pytest.raises(WorkerCrashed, match="SIGABRT"):
            await aborted
        assert all(r.classification in ("real", "deepfake") for r in await asyncio.gather(*others))
        assert pool.replaced == 1

    with_pool(body)


def test_a_job_no_worker_takes_in_time_fails_without_running() -> None:
    async def body(pool: WorkerPool) -> None:
        stuck = asyncio.ensure_future(pool.analyze(hang(5)))
        await asyncio.sleep(0.3)
        with pytest.raises(WorkerTimeout, match="no analysis worker free"):
            await pool.analyze(Job(CLIP))
        with pytest.raises(WorkerTimeout):
            await stuck

    with_pool(body, size=1, timeout_s=1.5)


def test_closing_answers_waiting_jobs() -> None:
    async def body(pool: WorkerPool) -> None:
        running = asyncio.ensure_future(pool.analyze(hang(1)))
        await asyncio.sleep(0.3)
        waiting = asyncio.ensure_future(pool.analyze(Job(CLIP)))
        await asyncio.sleep(0.3)
        await pool.close()
        with pytest.raises(WorkerCrashed, match="shutting down"):
            await waiting
        with pytest.raises(InputError):  # the running job is answered as usual: the
            await running                # fault command is no audio once the hang ends
        with pytest.raises(WorkerCrashed, match="not running"):
            await pool.analyze(Job(CLIP))
        deadline = time.monotonic() + 10  # the worker that was busy is stopped too
        while workers_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not workers_alive()

    with_pool(body, size=1, timeout_s=10.0)


def test_observed_seconds_are_the_analysis_not_the_wait_for_a_worker() -> None:
    async def body(pool: WorkerPool) -> None:
        seen: list[float] = []
        blocker = asyncio.ensure_future(pool.analyze(hang(1.0), seen.append))
        await asyncio.sleep(0.2)
        waited = time.perf_counter()
        await pool.analyze(Job(CLIP), seen.append)  # waits for the only worker first
        waited = time.perf_counter() - waited
        with pytest.raises(InputError):
            await blocker
        assert len(seen) == 2
        assert seen[0] >= 1.0  # the hang itself
        assert waited >= 0.7 and seen[1] < waited - 0.5  # not the ~0.8 s it waited

    with_pool(body, size=1, timeout_s=10.0)


def test_jobs_queued_behind_a_crash_are_answered_by_the_successor() -> None:
    async def body(pool: WorkerPool) -> None:
        # Submitted together: the clips wait in the only worker's pipe behind the abort.
        aborted = asyncio.ensure_future(pool.analyze(Job(MAGIC + b"abort")))
        clips = [asyncio.ensure_future(pool.analyze(Job(CLIP))) for _ in range(2)]
        with pytest.raises(WorkerCrashed, match="SIGABRT"):
            await aborted
        results = await asyncio.gather(*clips)
        assert all(r.classification in ("real", "deepfake") for r in results)
        assert pool.replaced == 1

    with_pool(body, size=1, timeout_s=60.0)


def test_no_job_waits_behind_a_hung_one_while_another_worker_runs() -> None:
    async def body(pool: WorkerPool) -> None:
        stuck = asyncio.ensure_future(pool.analyze(hang(30)))
        await asyncio.sleep(0.7)  # the hang has run for a while when the burst arrives
        started = time.perf_counter()
        results = await asyncio.gather(*(pool.analyze(Job(CLIP)) for _ in range(8)))
        assert all(r.classification in ("real", "deepfake") for r in results)
        assert time.perf_counter() - started < 2.5  # not held until the hang's 4 s timeout
        with pytest.raises(WorkerTimeout, match="exceeded 4 s"):
            await stuck

    with_pool(body)
