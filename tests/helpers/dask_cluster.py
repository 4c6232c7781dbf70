"""A real Dask cluster for tests and benchmarks: ``dask scheduler`` + ``dask worker`` processes.

Plain subprocesses on 127.0.0.1 with random ports, each in its own session (a Ctrl-C
meant for the test run does not reach them; the kernel schedules each worker as its
own group, as separately started services are). Workers run without a nanny, so
``kill -9`` of a worker really removes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from distributed import Client

DASK = str(Path(sys.executable).parent / "dask")


class DaskCluster:
    """``dask scheduler`` + ``dask worker`` subprocesses (no nanny: kill -9 kills the worker)."""

    def __init__(self, workdir: Path, workers: int = 0) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        scheduler_file = workdir / "scheduler.json"
        self.scheduler = self._spawn("scheduler", [
            DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
            "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(scheduler_file)])
        deadline = time.monotonic() + 60
        while not scheduler_file.is_file() or not scheduler_file.read_text().strip():
            assert self.scheduler.poll() is None and time.monotonic() < deadline, \
                (workdir / "scheduler.log").read_text()
            time.sleep(0.1)
        time.sleep(0.2)  # the file may still be being written
        self.address = json.loads(scheduler_file.read_text())["address"]
        self.client = Client(self.address, timeout=60, set_as_default=False)
        for i in range(workers):
            self.add_worker(f"w{i + 1}")
        if workers:
            self.wait_for_workers(workers)

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        with open(self.workdir / f"{name}.log", "ab") as log:
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                    start_new_session=True)

    def add_worker(self, name: str) -> None:
        self.workers[name] = self._spawn(name, [
            DASK, "worker", self.address, "--name", name, "--nthreads", "1", "--no-nanny",
            "--no-dashboard", "--host", "127.0.0.1", "--death-timeout", "60",
            "--local-directory", str(self.workdir / name)])

    def wait_for_workers(self, n: int) -> None:
        self.client.wait_for_workers(n, timeout=120)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Freeze every live worker (SIGSTOP) inside the block: no task finishes there."""
        live = [proc for proc in self.workers.values() if proc.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            for proc in live:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGCONT)

    def address_of(self, name: str) -> str:
        return next(addr for addr, info in self.client.scheduler_info()["workers"].items()
                    if info["name"] == name)

    def __enter__(self) -> DaskCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()
        for proc in [*self.workers.values(), self.scheduler]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [*self.workers.values(), self.scheduler]:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
