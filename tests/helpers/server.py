"""Real ``deepfake-audio serve`` processes on 127.0.0.1 and a free port.

:class:`ServerProcess` starts one, waits for ``/health/ready`` and stops it again;
:func:`running_servers` starts several at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any, TypeVar

from . import ROOT

READY_TIMEOUT_S = 45.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A ``deepfake-audio serve`` subprocess on a free loopback port.

    Parameters
    ----------
    env : dict
        ``DEEPFAKE_AUDIO_*`` settings; inherited ``DEEPFAKE_AUDIO_*`` variables are dropped
        so the developer's environment cannot leak into a test.
    """

    def __init__(self, env: dict[str, str] | None = None, args: list[str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        clean = {k: v for k, v in os.environ.items() if not k.startswith("DEEPFAKE_AUDIO_")}
        clean.update({"PYTHONUNBUFFERED": "1", "DEEPFAKE_AUDIO_SHUTDOWN_DRAIN": "0",
                      "DEEPFAKE_AUDIO_LOG_LEVEL": "info"})
        clean.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "deepfake_audio", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), *(args or [])],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, env=clean,
        )

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> ServerProcess:
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                if httpx.get(self.url + "/health/ready", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server not ready after {timeout:.0f} s:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # SIGINT skips the SIGTERM drain delay
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return int(self.proc.returncode)

    def close(self) -> None:
        self.stop()
        self._log.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@contextlib.contextmanager
def running_servers(*configs: dict[str, str]) -> Iterator[list[ServerProcess]]:
    """Start several servers at once (startup is mostly imports: overlap it); close on exit."""
    started = wait_all([ServerProcess(cfg) for cfg in configs])
    try:
        yield started
    finally:
        for server in started:
            server.close()


S = TypeVar("S", bound="ServerProcess")


def wait_all(servers: list[S]) -> list[S]:
    """Wait until every already-started server is ready; close them all on failure."""
    try:
        for server in servers:
            server.wait_ready()
    except Exception:
        for server in servers:
            server.close()
        raise
    return servers
