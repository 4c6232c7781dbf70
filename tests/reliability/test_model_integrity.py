"""Suite 7: model integrity at the process level.

``tests/test_model.py`` covers the loader itself (hash check before unpickling, the
allow-list, every malformed ``model.json``). Here the same attacks go through the
two programs an operator runs — ``deepfake-audio check --model DIR`` and
``deepfake-audio serve --model DIR`` — which must refuse with exit code 4 and one
clear line, run no payload and (for the server) never listen. And the shipped default
model must load without a single warning on the installed scikit-learn.
"""

from __future__ import annotations

import pickle
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepfake_audio.model import MODEL_FILE, SCALER_FILE
from tests.helpers import ROOT
from tests.helpers.artefacts import RunsShell, copy_default, replace_artefact
from tests.helpers.audio import FAKE_CLIP, clip
from tests.helpers.server import free_port

from .runs import cli_env

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(120)]


def _tampered(tmp_path: Path, marker: Path) -> Path:
    """A payload pickle dropped in place, ``model.json`` left alone: hash mismatch."""
    directory = copy_default(tmp_path, "tampered")
    (directory / SCALER_FILE).write_bytes(pickle.dumps(RunsShell(f"touch {marker}")))
    return directory


def _crafted(tmp_path: Path, marker: Path) -> Path:
    """A payload pickle *and* its hash in ``model.json``: only the allow-list stands."""
    directory = copy_default(tmp_path, "crafted")
    replace_artefact(directory, MODEL_FILE, pickle.dumps(RunsShell(f"touch {marker}")))
    return directory


ATTACKS = {
    "tampered": (_tampered, "does not match model.json"),
    "crafted": (_crafted, "refusing to unpickle"),
}


def _one_clear_line(stderr: str, expected: str) -> None:
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: cannot load model: "), lines[0]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in stderr


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_cli_refuses_the_model(tmp_path: Path, attack: str) -> None:
    make, expected = ATTACKS[attack]
    marker = tmp_path / "payload-ran"
    directory = make(tmp_path, marker)
    proc = subprocess.run(
        [sys.executable, "-m", "deepfake_audio", "check", "--model", str(directory),
         str(clip(FAKE_CLIP))], capture_output=True, text=True, env=cli_env(), cwd=ROOT,
        timeout=60)
    assert proc.returncode == 4, proc.stderr
    assert proc.stdout == ""
    _one_clear_line(proc.stderr, expected)
    assert not marker.exists(), "the pickle payload ran"


@pytest.mark.server
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_server_refuses_the_model_and_never_listens(tmp_path: Path, attack: str) -> None:
    make, expected = ATTACKS[attack]
    marker = tmp_path / "payload-ran"
    directory = make(tmp_path, marker)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "deepfake_audio", "serve", "--host", "127.0.0.1", "--port",
         str(port), "--model", str(directory)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=ROOT)
    try:
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 4, stderr
    assert stdout == ""
    _one_clear_line(stderr, expected)
    assert not marker.exists(), "the pickle payload ran"
    with socket.socket() as sock, pytest.raises(OSError):
        sock.settimeout(1)
        sock.connect(("127.0.0.1", port))


@pytest.mark.server
def test_server_refuses_a_model_from_the_environment(tmp_path: Path) -> None:
    """Same through ``DEEPFAKE_AUDIO_MODEL`` (how containers configure it)."""
    marker = tmp_path / "payload-ran"
    directory = _tampered(tmp_path, marker)
    env = {**cli_env(), "DEEPFAKE_AUDIO_MODEL": str(directory)}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "deepfake_audio", "serve", "--port", str(free_port())],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert proc.returncode == 4, proc.stderr
    _one_clear_line(proc.stderr, "does not match model.json")
    assert time.monotonic() - started < 30
    assert not marker.exists()


def test_shipped_model_loads_without_any_warning() -> None:
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c",
         "from deepfake_audio import Detector; d = Detector(); print(d.model_id)"],
        capture_output=True, text=True, env={**cli_env(), "PYTHONWARNINGS": "error"},
        cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    assert proc.stdout.strip()
