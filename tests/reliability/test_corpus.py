"""Suite 1: the malformed-audio corpus through the library, the CLI, ``POST /analyze``
and ``/ws`` of a real server.

Every file must get its specific exception / exit code 3 / 4xx / ``{"error"}`` with a
clear message in under 2 s; never a 5xx or a traceback; the server's memory may not
grow by 50 MB over the whole corpus and no temp file may be left behind anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deepfake_audio import Detector, exceptions
from tests.helpers.audio import wav_bytes

from . import probes, runs
from .make_corpus import Case
from .servers import PER_FILE_BUDGET_S, RSS_BUDGET_MB, InspectableServer, start_inspectable

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(300)]


def _check(rows: list[runs.Row]) -> None:
    problems = [f"{r.entry} {r.case.name}: {r.problem} ({r.outcome}: {r.message[:120]})"
                for r in rows if not r.ok]
    slow = [f"{r.entry} {r.case.name}: {r.seconds:.2f} s" for r in rows
            if r.seconds >= PER_FILE_BUDGET_S]
    assert not problems, "\n".join(problems)
    assert not slow, f"over the {PER_FILE_BUDGET_S:.0f} s hang guard:\n" + "\n".join(slow)


def test_corpus_is_complete(corpus: list[tuple[Case, Path]]) -> None:
    names = {case.name for case, _ in corpus}
    for required in ("empty.wav", "header_only.wav", "declares_4gib.wav", "truncated.mp3",
                     "random.wav", "random.mp3", "nan.wav", "inf.wav", "rate_0hz.wav",
                     "rate_4ghz.wav", "channels_64.wav", "one_sample.wav", "silence.wav",
                     "hour_8khz.mp3"):
        assert required in names
    hour = next(p for c, p in corpus if c.name == "hour_8khz.mp3")
    assert 4_000_000 < hour.stat().st_size < 6_500_000


# The library has no duration limit by default; the corpus's long cases are about the cap.
CAP_S = 600.0


def test_library(corpus: list[tuple[Case, Path]], private_tempdir: Path) -> None:
    detector = Detector(max_duration_s=CAP_S)
    detector.warm_up()  # joins the speech detector's background build (it opens its model file)
    fds_before = sorted(probes.fd_targets())
    rows = runs.run_library(detector, corpus)
    _check(rows)
    assert sorted(probes.fd_targets()) == fds_before, "file descriptors leaked"
    assert list(private_tempdir.iterdir()) == []


def test_messages_are_clear(corpus: list[tuple[Case, Path]]) -> None:
    """No libsndfile jargon that misleads about an upload ("file does not exist")."""
    detector = Detector(max_duration_s=CAP_S)
    for case, _ in corpus:
        with pytest.raises(case.error) as info:
            detector.analyze(case.data)
        text = str(info.value)
        for jargon in ("SF_INFO", "does not exist", "possibly a pipe", "Internal error",
                       "BytesIO", "0x"):
            assert jargon not in text, (case.name, text)


@pytest.mark.slow
def test_cli_one_process_per_file(corpus: list[tuple[Case, Path]], tmp_path: Path) -> None:
    tmpdir = tmp_path / "cli-tmp"
    tmpdir.mkdir()
    _check(runs.run_cli(corpus, tmpdir))
    assert list(tmpdir.iterdir()) == []


def test_cli_batch(corpus: list[tuple[Case, Path]], tmp_path: Path) -> None:
    """One ``check --json`` over the whole corpus: an error row per file, exit 3, and one
    clear ``error:`` line per file on stderr."""
    tmpdir = tmp_path / "cli-tmp"
    tmpdir.mkdir()
    started = time.perf_counter()
    proc, rows = runs.run_cli_batch(corpus, tmpdir)
    elapsed = time.perf_counter() - started
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert len(rows) == len(corpus)
    for (case, path), row in zip(corpus, rows, strict=True):
        assert row["path"] == str(path)
        # A subclass names the problem more precisely (NotMediaError is an AudioDecodeError).
        assert issubclass(getattr(exceptions, row["error_type"]), case.error), row
        assert row["error"] and "internal" not in row
        assert f"error: {path}: {row['error']}" in proc.stderr
    # Process start + model load is ~1 s; the corpus itself must not add much to it.
    assert elapsed < PER_FILE_BUDGET_S + 0.5 * len(corpus), f"{elapsed:.1f} s"
    assert list(tmpdir.iterdir()) == []


def test_cli_sample_one_process_per_file(corpus: list[tuple[Case, Path]],
                                         tmp_path: Path) -> None:
    """The per-process path (exit code, one line, < 2 s including start-up) on a few
    representative files; the slow suite runs it on all of them."""
    tmpdir = tmp_path / "cli-tmp"
    tmpdir.mkdir()
    sample = [(c, p) for c, p in corpus
              if c.name in ("empty.wav", "truncated.mp3", "rate_0hz.wav", "hour_8khz.mp3")]
    _check(runs.run_cli(sample, tmpdir))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InspectableServer]:
    (started,) = start_inspectable(tmp_path_factory, {"DEEPFAKE_AUDIO_MAX_CONCURRENCY": "2"})
    with started:
        yield started


@pytest.mark.server
def test_server_http_and_ws(server: InspectableServer, corpus: list[tuple[Case, Path]]) -> None:
    # Baseline once the server has done one real analysis over each transport.
    with httpx.Client(base_url=server.url, timeout=30) as client:
        files = {"file": ("ok.wav", wav_bytes(3.0), "audio/wav")}
        assert client.post("/analyze", files=files).status_code == 200
    rss_before = server.rss_mb()

    http_rows = runs.run_http(server.url, corpus)
    ws_rows = runs.run_ws(server.ws_url, corpus)
    rss_after = server.rss_mb()

    _check(http_rows + ws_rows)
    assert not [r for r in http_rows if r.outcome.startswith("HTTP 5")]
    assert rss_after - rss_before < RSS_BUDGET_MB, (rss_before, rss_after)
    assert server.leftovers() == []
    # The server is still fine, and said nothing alarming about any of it.
    assert httpx.get(server.url + "/health/ready").status_code == 200
    log = server.log()
    assert probes.server_errors(log) == [], log[-3000:]
