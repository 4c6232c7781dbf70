"""Where the training corpus (shared/data beside the checkout) is, for tests on real clips."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import ROOT

# Beside the checkout (CI's layout), or one level up for a git worktree in a subfolder.
CANDIDATES = (ROOT.parent / "shared" / "data", ROOT.parent.parent / "shared" / "data")


def corpus_dir() -> Path:
    """The corpus folder; skips the calling test when it is not there."""
    for candidate in CANDIDATES:
        if (candidate / "manifest.csv").is_file():
            return candidate
    pytest.skip("the training corpus (shared/data) is not beside this checkout")


def corpus_clip(relative: str) -> Path:
    return corpus_dir() / relative
