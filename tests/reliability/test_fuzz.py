"""Suite 2: fuzzing.

- Default run: a hypothesis harness around ``load_audio`` (a few hundred inputs: raw
  bytes and mutated WAV/FLAC/OGG/MP3 files) and schemathesis against the server's
  OpenAPI description (when schemathesis is installed).
- Slow run: ≥ 100 000 executions of the plain random-mutation loop, atheris/libFuzzer
  when atheris is installed, and a longer schemathesis run with a random seed.

Contract: ``load_audio`` ends every input with a result or an ``InputError`` subclass,
never another exception or a crash, in under 2 s; the API never answers 5xx or
anything its OpenAPI description does not list.
"""

from __future__ import annotations

import importlib.util
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepfake_audio.audio import load_audio
from deepfake_audio.exceptions import InputError
from tests.helpers.server import ServerProcess

from . import probes
from .fuzz_load_audio import INTERESTING_U32, seeds

pytestmark = [pytest.mark.reliability]

HERE = Path(__file__).parent
FUZZER = HERE / "fuzz_load_audio.py"
SEEDS = seeds()


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    """A valid seed file with a few header-biased edits drawn by hypothesis."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, min(len(data), 160) - 1)) if data else 0
        kind = draw(st.sampled_from(["byte", "u32", "cut", "insert", "delete"]))
        if not data:
            data.extend(draw(st.binary(min_size=1, max_size=32)))
        elif kind == "byte":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "u32" and pos + 4 <= len(data):
            data[pos:pos + 4] = struct.pack("<I", draw(st.sampled_from(INTERESTING_U32)))
        elif kind == "cut":
            del data[max(1, draw(st.integers(0, len(data)))):]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=32))
        else:
            del data[pos:pos + draw(st.integers(1, 32))]
    return bytes(data)


MAGICS = [b"RIFF\x24\x00\x00\x00WAVE", b"RF64\xff\xff\xff\xffWAVE", b"fLaC", b"OggS",
          b"ID3\x04\x00", b"\xff\xfb", b"\xff\xf1", b"FORM", b"\x00\x00\x00\x18ftyp"]


@settings(max_examples=400, deadline=2000, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.one_of(
    st.binary(max_size=2048),
    st.builds(lambda magic, rest: magic + rest, st.sampled_from(MAGICS), st.binary(max_size=512)),
    mutated_files(),
))
def test_load_audio_only_raises_input_errors(data: bytes) -> None:
    started = time.perf_counter()
    try:
        audio = load_audio(data)
    except InputError as exc:
        assert str(exc).strip(), "an error without a message"
    else:
        assert audio.samples.dtype.name == "float32" and audio.samples.ndim == 1
        assert audio.sample_rate == 16_000 and len(audio.samples) > 0
    # A hang guard (scripts/reliability_report.py prints the fuzz throughput).
    assert time.perf_counter() - started < 15.0


def _run_fuzzer(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    # A subprocess: a native crash in a decoder fails this test instead of killing pytest.
    return subprocess.run([sys.executable, str(FUZZER), *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_random_mutation_loop_100k() -> None:
    proc = _run_fuzzer("random", "--runs", "100000", "--max-time", "300", "--seed",
                       str(int(time.time())), timeout=360)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = proc.stdout.strip().splitlines()[-1]
    executions = int(summary.split("fuzz: ")[1].split()[0])
    assert executions >= 100_000, summary


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_atheris_libfuzzer(tmp_path: Path) -> None:
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed (pip install atheris); the random-mutation"
                    " loop covers the 100k executions")
    proc = _run_fuzzer("atheris", "--runs", "300000", "--max-time", "240", "--workdir",
                       str(tmp_path), "--seed", str(int(time.time()) % 100_000), timeout=360)
    tail = "\n".join(line for line in proc.stderr.splitlines()
                     if not line.startswith(("Note:", "Warning:")))[-3000:]
    assert proc.returncode == 0, tail
    assert "Done " in proc.stderr, tail
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("timeout-*")), tail


# --------------------------------------------------------------------------- schemathesis


@pytest.fixture(scope="module")
def api_server() -> Iterator[ServerProcess]:
    server = ServerProcess({"DEEPFAKE_AUDIO_MAX_CONCURRENCY": "2",
                            "DEEPFAKE_AUDIO_MAX_QUEUE": "64"})
    with server:
        yield server.wait_ready()


def _schemathesis(server: ServerProcess, workdir: Path, *extra: str, timeout: float) -> str:
    if importlib.util.find_spec("schemathesis") is None:
        pytest.skip("schemathesis is not installed (pip install schemathesis)")
    st_cli = Path(sys.executable).parent / "st"
    command = [str(st_cli)] if st_cli.is_file() else [sys.executable, "-m", "schemathesis.cli"]
    # positive_data_acceptance is left out on purpose: the schema can only say "binary",
    # and arbitrary bytes are not valid audio (400 is the documented answer for them).
    proc = subprocess.run(
        [*command, "run", server.url + "/openapi.json", "--checks", "all",
         "--exclude-checks", "positive_data_acceptance", "--workers", "2",
         "--request-timeout", "10", "--max-response-time", "5", "--suppress-health-check",
         "all", *extra],
        capture_output=True, text=True, timeout=timeout,
        cwd=workdir)  # its .schemathesis/ and hypothesis database go there, not into the repo
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "passed" in proc.stdout
    log = server.log()
    assert probes.server_errors(log) == [], log[-3000:]
    return proc.stdout


@pytest.mark.server
@pytest.mark.timeout(180)
def test_schemathesis_openapi(api_server: ServerProcess, tmp_path: Path) -> None:
    _schemathesis(api_server, tmp_path, "--max-examples", "200", "--seed", "1", timeout=150)


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.timeout(400)
def test_schemathesis_openapi_long(api_server: ServerProcess, tmp_path: Path) -> None:
    _schemathesis(api_server, tmp_path, "--max-examples", "2000", "--max-time", "60",
                  timeout=180)
