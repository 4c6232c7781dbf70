"""Copies of the bundled model folder and hostile replacements for its pickles."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from deepfake_audio.model import DEFAULT_MODEL_DIR, METADATA_FILE


class RunsShell:
    """Pickles to ``os.system(command)``: unpickling it runs the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


def copy_default(tmp_path: Path, name: str = "model") -> Path:
    target = tmp_path / name
    shutil.copytree(DEFAULT_MODEL_DIR, target)
    return target


def read_meta(directory: Path) -> dict:
    return json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))


def write_meta(directory: Path, meta: dict) -> None:
    (directory / METADATA_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")


def replace_artefact(directory: Path, name: str, payload: bytes) -> None:
    """Swap a pickle and make model.json list its real SHA-256 (a hash-consistent attack)."""
    (directory / name).write_bytes(payload)
    meta = read_meta(directory)
    meta["artefacts"][name] = hashlib.sha256(payload).hexdigest()
    write_meta(directory, meta)
