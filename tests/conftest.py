"""Shared fixtures: the bundled clips, the default detector and synthetic audio.

Only fixtures live here; the helpers behind them are in :mod:`tests.helpers`.

Everything here is offline and generated in-process (numpy + soundfile), so the
core suite needs neither the training corpus nor a network.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.helpers.audio import FAKE_CLIP, REAL_CLIP, AudioGen
from tests.helpers.tiny_dataset import split_in_two_corpora, write_tiny_dataset


@pytest.fixture(scope="session")
def gen() -> type[AudioGen]:
    return AudioGen


@pytest.fixture(scope="session")
def real_clip() -> Path:
    return REAL_CLIP


@pytest.fixture(scope="session")
def fake_clip() -> Path:
    return FAKE_CLIP


@pytest.fixture(scope="session")
def detector():
    """The bundled default model, loaded once per session (Detector is read-only)."""
    from deepfake_audio import Detector

    return Detector()


@pytest.fixture
def cli_env() -> dict[str, str]:
    """Environment for CLI subprocesses: no DEEPFAKE_AUDIO_* leaking in from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPFAKE_AUDIO_")}
    env["PYTHONWARNINGS"] = "ignore"
    return env


@pytest.fixture(scope="session")
def cli_commands() -> dict[str, list[str]]:
    """Both ways of starting the CLI: ``python -m deepfake_audio`` and the entry point."""
    commands = {"module": [sys.executable, "-m", "deepfake_audio"]}
    script = Path(sys.executable).parent / "deepfake-audio"
    if script.is_file():
        commands["script"] = [str(script)]
    return commands


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, gen) -> Path:
    """12 noise-like "real" and 12 tone-like "fake" clips, 4 speakers each, with a manifest."""
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny_data"), gen)


@pytest.fixture(scope="session")
def two_corpora(tiny_data):
    """The tiny data split into two genuine corpora and two generators (by speaker)."""
    from deepfake_audio.datasets import load_dataset

    return split_in_two_corpora(load_dataset(tiny_data))
