"""What ``deepfake-audio check`` shows people: the labelled line, --timeline, --quiet, --band,
the progress bar on a terminal (and not in a pipe), a closed pipe, --report."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

TIMEOUT = 120
CLI = [sys.executable, "-m", "deepfake_audio"]


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env,
                          timeout=TIMEOUT)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, gen, real_clip, fake_clip) -> Path:
    """Five files: the two bundled clips and three generated signals."""
    import shutil

    root = tmp_path_factory.mktemp("files")
    shutil.copy(real_clip, root / real_clip.name)
    shutil.copy(fake_clip, root / fake_clip.name)
    for i in range(3):
        gen.write(root / f"speech{i}.wav", gen.speechlike(16000, 4.0, seed=i), 16000)
    return root


def _json(path: Path, env: dict[str, str], *extra: str) -> dict:
    proc = run("check", str(path), "--json", "--timeline", *extra, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_human_line_is_labelled(cli_env, fake_clip):
    proc = run("check", str(fake_clip), env=cli_env)
    assert proc.returncode == 0, proc.stderr
    data = _json(fake_clip, cli_env)
    flagged = sum(w["classification"] == "deepfake" for w in data["timeline"])
    spans = ", ".join(f"{s['start_s']:.1f}\u2013{s['end_s']:.1f} s" for s in data["segments"])
    assert re.fullmatch(
        rf"{re.escape(str(fake_clip))}: {data['verdict']} +p={data['probability_deepfake']:.2f}"
        rf"  {data['duration_s']:.1f} s audio  {flagged} of {len(data['timeline'])} windows"
        rf" flagged \({re.escape(spans)}\)", proc.stdout.strip()), proc.stdout
    assert data["verdict"] == "deepfake" and flagged >= 1


def test_timeline_in_human_mode(cli_env, fake_clip):
    proc = run("check", str(fake_clip), "--timeline", env=cli_env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    timeline = _json(fake_clip, cli_env)["timeline"]
    assert len(lines) == 1 + len(timeline)
    for line, window in zip(lines[1:], timeline, strict=True):
        assert line.split() == [f"{window['start_s']:.1f}\u2013{window['end_s']:.1f}", "s",
                                f"p={window['probability_deepfake']:.2f}",
                                window["classification"]]


def test_quiet_prints_only_the_verdicts(cli_env, folder):
    proc = run("check", str(folder), "--quiet", env=cli_env)
    assert proc.returncode == 0, proc.stderr
    rows = _json(folder, cli_env)
    assert proc.stdout.splitlines() == [f"{r['path']}: {r['verdict']}" for r in rows]
    assert proc.stderr == ""


@pytest.mark.parametrize("how", ["flag", "env"])
def test_band_override(cli_env, fake_clip, real_clip, how):
    wide = ["-100", "100"]
    env = dict(cli_env)
    args = ["--band", *wide] if how == "flag" else []
    if how == "env":
        env["DEEPFAKE_AUDIO_BAND"] = " ".join(wide)
    proc = run("check", str(real_clip), str(fake_clip), "--json", *args, env=env)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["verdict"] for r in rows] == ["inconclusive", "inconclusive"]
    assert [r["classification"] for r in rows] == ["real", "deepfake"]  # binary, unchanged
    assert all(r["band"] == [-100.0, 100.0] for r in rows)


@pytest.mark.parametrize("band", [["5", "9"], ["low", "high"]])
def test_bad_band_is_a_usage_error(cli_env, fake_clip, band):
    proc = run("check", str(fake_clip), "--band", *band, env=cli_env)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "band" in proc.stderr
    assert "internal error" not in proc.stderr


def test_closed_pipe_ends_quietly_with_exit_0(cli_env, folder):
    """``check … | head -n 1``: the reader leaves after one line."""
    proc = subprocess.Popen([*CLI, "check", str(folder), "--timeline"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=cli_env)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=TIMEOUT) == 0, err
    assert first.strip() and err == ""


def test_closed_pipe_with_a_shell_pipeline(cli_env, folder):
    proc = subprocess.run(f"{' '.join(CLI)} check '{folder}' --timeline | head -n 2",
                          shell=True, capture_output=True, text=True, env=cli_env,
                          timeout=TIMEOUT, executable="/bin/bash")
    assert len(proc.stdout.splitlines()) == 2
    assert "Error" not in proc.stderr and "error" not in proc.stderr


def _read_tty(fd: int, proc: subprocess.Popen) -> bytes:
    out = b""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


def test_progress_bar_on_a_terminal_not_in_a_pipe(cli_env, folder):
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([*CLI, "check", str(folder)], stdout=subprocess.PIPE,
                                stderr=slave, env=cli_env)
        os.close(slave)
        tty = _read_tty(master, proc)
        proc.communicate(timeout=TIMEOUT)
    finally:
        os.close(master)
    assert proc.returncode == 0
    assert re.search(rb"\d+/5 \[", tty), tty  # tqdm's "n/total [elapsed" on stderr
    piped = run("check", str(folder), env=cli_env)
    assert piped.returncode == 0 and piped.stderr == ""
    quiet_master, quiet_slave = pty.openpty()
    try:
        proc = subprocess.Popen([*CLI, "check", str(folder), "-q"], stdout=subprocess.PIPE,
                                stderr=quiet_slave, env=cli_env)
        os.close(quiet_slave)
        assert _read_tty(quiet_master, proc) == b""
        proc.communicate(timeout=TIMEOUT)
    finally:
        os.close(quiet_master)


def test_report_lists_every_file_and_loads_nothing(cli_env, folder, tmp_path, gen):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(np.random.default_rng(0).bytes(3000))
    report = tmp_path / "report.html"
    proc = run("check", str(folder), str(broken), "--report", str(report), env=cli_env)
    assert proc.returncode == 3  # the broken file
    page = report.read_text(encoding="utf-8")
    rows = _json(folder, cli_env)
    for row in rows:
        assert Path(row["path"]).name in page
    assert "broken.wav" in page and "not analysed" in page
    assert page.count("<svg") == len(rows)
    for needle in ("<script", "<link", "src=", "url(", "@import"):
        assert needle not in page
