"""The server's worker pool on its own: real worker processes, real fault commands.

The HTTP-level behaviour (status codes, metrics) is in tests/reliability/test_faults.py;
these pin down the dispatching: queued jobs go to whichever worker frees first, a
hung or dead worker fails only the job it was running, and closing the pool answers
every queued job instead of leaving its caller blocked.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from deepfake_audio.exceptions import InputError
from deepfake_audio.server.faults import MAGIC
from deepfake_audio.server.workers import (
    WorkerConfig,
    WorkerCrashed,
    WorkerPool,
    WorkerTimeout,
)
from tests.helpers.audio import wav_bytes

pytestmark = pytest.mark.server


def hang(seconds: float) -> bytes:
    return MAGIC + f"hang={seconds}".encode()


@pytest.fixture(scope="module")
def clip() -> bytes:
    return wav_bytes(2.0)


@pytest.fixture
def pool():
    workers = WorkerPool(WorkerConfig(model=None, max_duration_s=None, faults=True),
                         size=2, timeout_s=4.0)
    workers.start()
    yield workers
    workers.close()


def test_queued_jobs_are_all_answered_by_whichever_worker_is_free(pool: WorkerPool,
                                                                  clip: bytes) -> None:
    with ThreadPoolExecutor(6) as threads:
        results = list(threads.map(lambda _: pool.analyze(clip), range(12)))
    assert len(results) == 12
    assert {r.classification for r in results} <= {"real", "deepfake"}
    assert len({r.raw_score for r in results}) == 1  # the same clip, the same score
    assert pool.alive == 2 and pool.replaced == 0


def test_a_hung_worker_fails_only_its_job_and_the_others_keep_flowing(pool: WorkerPool,
                                                                      clip: bytes) -> None:
    with ThreadPoolExecutor(2) as threads:
        stuck = threads.submit(pool.analyze, hang(30))
        time.sleep(0.3)  # the hang is running in one worker
        started = time.perf_counter()
        for _ in range(6):  # none of these waits behind the hung job
            pool.analyze(clip)
        assert time.perf_counter() - started < 4.0
        with pytest.raises(WorkerTimeout, match="exceeded 4 s"):
            stuck.result()
    deadline = time.monotonic() + 60  # the successor loads the model meanwhile
    while pool.alive < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pool.replaced == 1 and pool.alive == 2
    assert pool.analyze(clip).classification in ("real", "deepfake")


def test_a_dead_worker_fails_only_its_job(pool: WorkerPool, clip: bytes) -> None:
    with ThreadPoolExecutor(3) as threads:
        aborted = threads.submit(pool.analyze, MAGIC + b"abort")
        others = [threads.submit(pool.analyze, clip) for _ in range(4)]
        with pytest.raises(WorkerCrashed, match="SIGABRT"):
            aborted.result()
        assert all(f.result().classification in ("real", "deepfake") for f in others)
    assert pool.replaced == 1


def test_a_job_no_worker_takes_in_time_fails_without_running(clip: bytes) -> None:
    pool = WorkerPool(WorkerConfig(model=None, max_duration_s=None, faults=True),
                      size=1, timeout_s=1.5)
    pool.start()
    try:
        with ThreadPoolExecutor(1) as threads:
            stuck = threads.submit(pool.analyze, hang(5))
            time.sleep(0.3)
            with pytest.raises(WorkerTimeout, match="no analysis worker free"):
                pool.analyze(clip)
            with pytest.raises(WorkerTimeout):
                stuck.result()
    finally:
        pool.close()


def test_closing_answers_queued_jobs(clip: bytes) -> None:
    pool = WorkerPool(WorkerConfig(model=None, max_duration_s=None, faults=True),
                      size=1, timeout_s=10.0)
    pool.start()
    outcomes: list[str] = []

    def queued() -> None:
        try:
            pool.analyze(clip)
            outcomes.append("answered")
        except WorkerCrashed as exc:
            outcomes.append(str(exc))

    with ThreadPoolExecutor(1) as threads:
        running = threads.submit(pool.analyze, hang(1))
        time.sleep(0.3)
        waiter = threading.Thread(target=queued)
        waiter.start()
        time.sleep(0.3)
        pool.close()
        waiter.join(5)
        assert not waiter.is_alive()
        assert outcomes == ["the server is shutting down"]
        with pytest.raises(InputError):  # the running job is answered as usual: the
            running.result(5)            # fault command is no audio once the hang ends
    with pytest.raises(WorkerCrashed, match="shutting down"):
        pool.analyze(clip)
