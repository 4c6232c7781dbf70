"""Fixtures of the reliability suites: the malformed corpus and real servers whose
memory, open files and temp directory can be inspected from outside."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_server_harness import ServerProcess, wait_all

from . import probes
from .make_corpus import HOUR_MP3, Case, build_corpus, write_hour_mp3

#: Every server-side limit in these suites is a multiple of this (seconds).
# A hang guard, not a speed bar (scripts/reliability_report.py prints the real per-file
# times): process start-up alone takes ~1 s and CI machines are shared.
PER_FILE_BUDGET_S = 15.0
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


@pytest.fixture(scope="session")
def hour_mp3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ~5 MB, 1-hour MP3: encoded once per session (~6 s)."""
    return write_hour_mp3(tmp_path_factory.mktemp("hour") / HOUR_MP3)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory, hour_mp3: Path) -> list[tuple[Case, Path]]:
    return build_corpus(tmp_path_factory.mktemp("corpus"), hour_mp3)


@pytest.fixture
def private_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point :mod:`tempfile` (and ``TMPDIR``) of this process at an empty directory."""
    directory = tmp_path / "tempdir"
    directory.mkdir()
    monkeypatch.setenv("TMPDIR", str(directory))
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)
