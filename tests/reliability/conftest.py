"""Fixtures of the reliability suites: the malformed corpus and a private temp directory
(the inspectable servers and budgets are in :mod:`tests.reliability.servers`)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .make_corpus import HOUR_MP3, Case, build_corpus, write_hour_mp3


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
