"""Servers the reliability suites (and ``scripts/reliability_report.py``) inspect from
outside, and the budgets and caps they are checked against."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.server import ServerProcess, wait_all

from . import probes

#: Every server-side limit in these suites is a multiple of this (seconds).
# A hang guard, not a speed bar (scripts/reliability_report.py prints the real per-file
# times): process start-up alone takes ~1 s and CI machines are shared.
PER_FILE_BUDGET_S = 15.0
#: How long a refusal (401, 413) may take before a test calls the server hung; the
#: bytes the server read before answering are what shows it refused early.
REPLY_HANG_GUARD_S = 10.0
RSS_BUDGET_MB = 50.0


class InspectableServer(ServerProcess):
    """A ``deepfake-audio serve`` subprocess with its own ``TMPDIR``.

    Spooled uploads are unlinked temp files (``O_TMPFILE``), invisible in a directory
    listing, so leaks are looked for both in ``tmpdir`` and among the open descriptors.
    """

    def __init__(self, tmpdir: Path, env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        tmpdir.mkdir(parents=True, exist_ok=True)
        self.tmpdir = tmpdir
        super().__init__({"TMPDIR": str(tmpdir), **(env or {})}, args)

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def rss_mb(self) -> float:
        return probes.rss_mb(self.pid)

    def leftovers(self) -> list[str]:
        """Temp files still in ``tmpdir`` or still open in the server, after a grace period."""
        open_ones = probes.wait_for_quiet_fds(self.pid, self.tmpdir)
        return sorted(os.listdir(self.tmpdir)) + open_ones


def start_inspectable(tmp_path_factory: pytest.TempPathFactory,
                      *configs: dict[str, str]) -> list[InspectableServer]:
    """Start several servers at once and wait until every one is ready."""
    return wait_all([InspectableServer(tmp_path_factory.mktemp("server-tmp"), cfg)
                     for cfg in configs])


#: ``DEEPFAKE_AUDIO_MAX_UPLOAD_MB`` of the size-cap suite, and that cap in bytes.
CAP_MB = 1
CAP = CAP_MB * 1024 * 1024
