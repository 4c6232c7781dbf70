"""Heap thresholds (deepfake_audio.heap): analyses stop faulting their memory back in.

Each case runs in a fresh interpreter: mallopt() settings are per process and last.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

_CHILD = """
import io, resource, sys
import numpy as np
import soundfile as sf
from deepfake_audio import Detector, heap
if sys.argv[1] == "default":
    heap._state["applied"] = False
detector = Detector()
rng = np.random.default_rng(0)
t = np.arange(5 * 16000) / 16000
voice = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 12))
clip = (0.2 * voice * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
        + 0.003 * rng.standard_normal(len(t))).astype(np.float32)
buffer = io.BytesIO()
sf.write(buffer, clip, 16000, format="WAV", subtype="PCM_16")
data = buffer.getvalue()
for _ in range(5):
    detector.analyze(data)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    detector.analyze(data)
print(heap.keep_freed_memory(), (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def _run(mode: str, **env: str) -> tuple[bool, float]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True,
                         check=True, env={**clean, **env}).stdout.split()
    return out[0] == "True", float(out[1])


def test_detector_keeps_freed_memory_so_repeated_analyses_do_not_fault() -> None:
    applied, kept = _run("kept")
    _, default = _run("default")
    assert applied
    # glibc's self-adjusting thresholds hand a short clip's arrays back to the kernel
    # after every analysis (about a thousand faults each); kept, almost none remain.
    assert default > 300
    assert kept < default / 10


def test_the_environment_choice_of_malloc_thresholds_wins() -> None:
    applied, _ = _run("kept", MALLOC_TRIM_THRESHOLD_="131072")
    assert not applied
    applied, _ = _run("kept", GLIBC_TUNABLES="glibc.malloc.trim_threshold=131072")
    assert not applied
