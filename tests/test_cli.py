"""The command line, run as a real subprocess (exit codes, output formats, workers)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deepfake_audio import cli, formatting, pool
from tests.helpers import media
from tests.helpers.audio import speech

TIMEOUT = 120


def run(command: list[str], *args: str, env: dict[str, str],
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env,
                          timeout=TIMEOUT, cwd=cwd)


@pytest.fixture(scope="module")
def batch(tmp_path_factory, gen) -> Path:
    """Six generated files: every format, several rates and channel counts, one subfolder."""
    root = tmp_path_factory.mktemp("batch")
    gen.write(root / "a_speech.wav", gen.speechlike(16000, 2.0, seed=1), 16000)
    gen.write(root / "b_noise.flac",
              gen.speechlike(44100, 2.0, seed=7) + gen.noise(44100, 2.0, seed=2), 44100)
    gen.write(root / "c_tone.ogg", np.stack([gen.speechlike(22050, 2.0, seed=8)] * 2, axis=1),
              22050)
    gen.write(root / "d_speech.mp3", gen.speechlike(48000, 2.0, seed=3), 48000)
    gen.write(root / "sub" / "e_speech.wav",
              np.stack([gen.speechlike(8000, 2.5, seed=4)] * 2, axis=1), 8000)
    gen.write(root / "sub" / "f_mix.flac",
              gen.speechlike(32000, 3.5, seed=5) + gen.noise(32000, 3.5, seed=6), 32000)
    (root / "notes.txt").write_text("not audio, and not picked up by the folder scan")
    return root


@pytest.fixture(scope="module")
def bad_batch(tmp_path_factory, gen) -> Path:
    root = tmp_path_factory.mktemp("bad_batch")
    gen.write(root / "good1.wav", gen.speechlike(16000, 2.0, seed=1), 16000)
    (root / "broken.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    gen.write(root / "good2.flac",
              gen.speechlike(22050, 2.0, seed=2) + gen.noise(22050, 2.0, seed=2), 22050)
    return root


def _verdicts(rows: list[dict]) -> dict[str, tuple[str, float]]:
    return {Path(r["path"]).name: (r["classification"], round(r["raw_score"], 6)) for r in rows}


# --------------------------------------------------------------------------- check


@pytest.mark.parametrize("how", ["module", "script"])
def test_human_output_for_the_bundled_clips(cli_commands, cli_env, real_clip, fake_clip, how,
                                           detector):
    if how not in cli_commands:
        pytest.skip("the deepfake-audio entry point is not installed next to this Python")
    proc = run(cli_commands[how], "check", str(real_clip), str(fake_clip), env=cli_env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{real_clip}: {detector.analyze(real_clip).verdict} ")
    assert lines[1].startswith(f"{fake_clip}: deepfake ")
    assert " p=0." in lines[0] and " s audio" in lines[0] and "Traceback" not in proc.stderr


def test_json_one_file_is_an_object(cli_commands, cli_env, fake_clip):
    proc = run(cli_commands["module"], "check", str(fake_clip), "--json", env=cli_env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert isinstance(data, dict)
    assert {"classification", "confidence", "raw_score"} <= set(data)
    assert data["classification"] == "deepfake"
    assert 0.5 <= data["confidence"] <= 1.0
    assert "timeline" not in data  # only with --timeline


def test_json_folder_is_a_list_and_csv_with_two_jobs_agrees(cli_commands, cli_env, batch,
                                                            real_clip):
    serial = run(cli_commands["module"], "check", str(batch), "--json", "--jobs", "1",
                 "--timeline", env=cli_env)
    assert serial.returncode == 0, serial.stderr
    rows = json.loads(serial.stdout)
    assert isinstance(rows, list) and len(rows) == 6
    names = [Path(r["path"]).name for r in rows]
    assert names == ["a_speech.wav", "b_noise.flac", "c_tone.ogg", "d_speech.mp3",
                     "e_speech.wav", "f_mix.flac"]  # sorted recursive walk, .txt skipped
    assert all(r["timeline"] for r in rows)
    assert {r["sample_rate"] for r in rows} == {8000, 16000, 22050, 32000, 44100, 48000}

    parallel = run(cli_commands["module"], "check", str(batch), str(real_clip), "--csv",
                   "--jobs", "2", env=cli_env)
    assert parallel.returncode == 0, parallel.stderr
    table = list(csv.DictReader(io.StringIO(parallel.stdout)))
    assert list(table[0]) == list(formatting.CSV_FIELDS)
    assert len(table) == 7
    for row in table:
        assert row["classification"] in {"real", "deepfake"}
        assert 0.5 <= float(row["confidence"]) <= 1.0
        assert row["error"] == ""
    assert table[-1]["path"] == str(real_clip) and table[-1]["classification"] == "real"
    from_csv = {Path(r["path"]).name: (r["classification"], round(float(r["raw_score"]), 6))
                for r in table[:-1]}
    assert from_csv == _verdicts(rows)


def test_bad_file_in_a_batch(cli_commands, cli_env, bad_batch):
    proc = run(cli_commands["module"], "check", str(bad_batch), "--jobs", "2", env=cli_env)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    good = proc.stdout.strip().splitlines()
    assert [Path(line.split(":")[0]).name for line in good] == ["good1.wav", "good2.flac"]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "broken.wav" in errors[0]


def test_missing_model_dir_exits_4(cli_commands, cli_env, fake_clip, tmp_path):
    proc = run(cli_commands["module"], "check", str(fake_clip), "--model",
               str(tmp_path / "no-model"), env=cli_env)
    assert proc.returncode == 4
    assert "cannot load model" in proc.stderr and "Traceback" not in proc.stderr


def test_usage_error_exits_2(cli_commands, cli_env):
    proc = run(cli_commands["module"], env=cli_env)
    assert proc.returncode == 2
    assert "usage:" in proc.stderr and "Traceback" not in proc.stderr


def test_threshold_environment_variable(cli_commands, cli_env, fake_clip):
    proc = run(cli_commands["module"], "check", str(fake_clip), "--json",
               env={**cli_env, "DEEPFAKE_AUDIO_THRESHOLD": "1000"})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["threshold"] == 1000.0
    assert data["classification"] == "real"


# --------------------------------------------------------------------------- in-process
# Same entry point (cli.main), without paying a Python start-up per case.


def main(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_bad_file_in_a_batch_serial(capsys, bad_batch):
    code, out, err = main(capsys, "check", str(bad_batch), "-q")
    assert code == 3
    assert [Path(line.split(":")[0]).name for line in out.splitlines()] == [
        "good1.wav", "good2.flac"]
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: {bad_batch / 'broken.wav'}: not an audio or video file:"
        " found unrecognised binary data"]


def test_bad_file_json_keeps_an_error_row(capsys, bad_batch):
    code, out, _ = main(capsys, "check", str(bad_batch), "--json")
    assert code == 3
    rows = {Path(r["path"]).name: r for r in json.loads(out)}
    assert rows["broken.wav"]["error_type"] == "NotMediaError"  # an AudioDecodeError
    assert "classification" in rows["good1.wav"]


def test_missing_file_is_bad_input(capsys, tmp_path):
    code, out, err = main(capsys, "check", str(tmp_path / "nope.wav"))
    assert code == 3
    assert out == "" and err.count("error:") == 1 and "no such file" in err


@pytest.mark.parametrize("args", [["check"], ["check", "x.wav", "--jobs", "two"],
                                  ["frobnicate"], ["check", "x.wav", "--json", "--csv"]])
def test_usage_errors(capsys, args):
    code, _, err = main(capsys, *args)
    assert code == 2
    assert "usage:" in err


def test_bad_environment_value_is_a_usage_error(capsys, monkeypatch, fake_clip):
    monkeypatch.setenv("DEEPFAKE_AUDIO_JOBS", "many")
    code, _, err = main(capsys, "check", str(fake_clip))
    assert code == 2 and "invalid int value: 'many'" in err
    code, out, _ = main(capsys, "check", str(fake_clip), "--jobs", "1")  # the flag wins
    assert code == 0 and "deepfake" in out


def test_threshold_flag_wins_over_the_variable(capsys, monkeypatch, fake_clip):
    monkeypatch.setenv("DEEPFAKE_AUDIO_THRESHOLD", "1000")
    code, out, _ = main(capsys, "check", str(fake_clip), "--json", "--threshold", "-1000")
    assert code == 0
    assert json.loads(out)["classification"] == "deepfake"


def test_max_duration_option(capsys, real_clip):
    code, _, err = main(capsys, "check", str(real_clip), "--max-duration", "1")
    assert code == 3
    assert "limit is 1 s" in err


def test_verbose_reaches_the_library_log(capsys, caplog, fake_clip):
    caplog.set_level("DEBUG", logger="deepfake_audio")
    code, _, _ = main(capsys, "-vv", "check", str(fake_clip))
    assert code == 0
    assert "loaded model" in caplog.text


def test_version(capsys):
    from deepfake_audio import __version__

    code, out, _ = main(capsys, "--version")
    assert code == 0 and __version__ in out


def test_parser_defaults_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("DEEPFAKE_AUDIO_JOBS", "3")
    monkeypatch.setenv("DEEPFAKE_AUDIO_MAX_DURATION", "12.5")
    monkeypatch.setenv("DEEPFAKE_AUDIO_JSON", "yes")
    args = cli.build_parser().parse_args(["check", "x.wav"])
    assert (args.jobs, args.max_duration, args.json, args.threshold) == (3, 12.5, True, None)
    args = cli.build_parser().parse_args(["check", "x.wav", "-j", "1", "--threshold", "none"])
    assert (args.jobs, args.threshold) == (1, None)


def test_iter_audio_files(batch):
    files = list(pool.iter_audio_files([str(batch)]))
    assert len(files) == 6
    assert all(f.suffix in {".wav", ".flac", ".ogg", ".mp3"} for f in files)
    explicit = batch / "notes.txt"
    assert list(pool.iter_audio_files([str(explicit)])) == [explicit]  # files pass through


def _damaged_mp3(path: Path, gen) -> Path:
    buffer = io.BytesIO()
    import soundfile as sf

    sf.write(buffer, gen.speechlike(16000, 6.0, seed=11), 16000, format="MP3")
    data = bytearray(buffer.getvalue())
    rng = np.random.default_rng(1)
    for position in rng.integers(400, len(data), 200):
        data[position] = int(rng.integers(256))
    path.write_bytes(bytes(data))
    return path


def test_mp3_decoder_noise_stays_off_the_cli_stderr(cli_commands, cli_env, tmp_path, gen,
                                                     fake_clip):
    damaged = _damaged_mp3(tmp_path / "damaged.mp3", gen)
    # The decoder really does print its own warnings when this file is decoded directly...
    direct = subprocess.run(
        [sys.executable, "-c", "import soundfile, sys; soundfile.read(sys.argv[1])", str(damaged)],
        capture_output=True, text=True, timeout=TIMEOUT)
    assert "Note: " in direct.stderr or "libmpg123" in direct.stderr
    # ...but the CLI keeps stderr for its own messages.
    proc = run(cli_commands["module"], "check", str(damaged), str(fake_clip), "nope.wav",
               env=cli_env)
    assert proc.returncode == cli.EXIT_BAD_INPUT
    assert "libmpg123" not in proc.stderr and "Note: " not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == ["error: nope.wav: no such file: nope.wav"]
    assert proc.stdout.count("\n") == 2


# --------------------------------------------------------------------------- structure


def test_the_library_never_imports_argparse():
    code = ("import sys\n"
            "import deepfake_audio, deepfake_audio.client, deepfake_audio.datasets\n"
            "import deepfake_audio.evaluation, deepfake_audio.metrics, deepfake_audio.plots\n"
            "import deepfake_audio.training, deepfake_audio.server.run\n"
            "print(sorted(m for m in sys.modules if m == 'argparse'))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_check_does_not_import_the_server():
    code = ("import sys\n"
            "from deepfake_audio.cli import build_parser\n"
            "build_parser().parse_args(['check', 'x.wav'])\n"
            "print('deepfake_audio.server' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.stdout.strip() == "False", proc.stderr


# --------------------------------------------------------------------------- serve options


def test_serve_has_one_flag_per_settings_field(capsys):
    from dataclasses import fields

    from deepfake_audio.server.settings import Settings

    code, out, _ = main(capsys, "serve", "--help")
    assert code == 0
    for f in fields(Settings):
        flag = "--" + f.metadata["env"].lower().replace("_", "-")
        assert flag in out, flag
        assert f.metadata["help"].split()[0] in out


@pytest.fixture
def served(monkeypatch):
    """Settings ``serve`` would start the server with (uvicorn itself is not started)."""
    from deepfake_audio.server import run as server_run

    started = []
    monkeypatch.setattr(server_run, "serve", started.append)
    for name in ("PORT", "MAX_QUEUE", "ALLOW_UNVERIFIED_MODEL", "CORS_ORIGINS", "API_KEY"):
        monkeypatch.delenv(f"DEEPFAKE_AUDIO_{name}", raising=False)
    return started


def test_serve_flags_beat_variables_beat_defaults(capsys, monkeypatch, served):
    monkeypatch.setenv("DEEPFAKE_AUDIO_PORT", "1234")
    monkeypatch.setenv("DEEPFAKE_AUDIO_MAX_QUEUE", "3")
    code, _, err = main(capsys, "serve", "--port", "9001", "--allow-unverified-model",
                        "--cors-origins", "http://a/,http://b", "--stream-hop", "0.5")
    assert code == 0, err
    (settings,) = served
    assert (settings.port, settings.max_queue, settings.allow_unverified_model) == (9001, 3, True)
    assert settings.cors_origins == ("http://a", "http://b")
    assert (settings.stream_hop_s, settings.workers, settings.api_key) == (0.5, 1, None)


@pytest.mark.parametrize(("argv", "variables", "message"), [
    (["--port", "eighty"], {}, "invalid value 'eighty' for DEEPFAKE_AUDIO_PORT / --port"),
    ([], {"DEEPFAKE_AUDIO_ALLOW_UNVERIFIED_MODEL": "maybe"},
     "invalid value 'maybe' for DEEPFAKE_AUDIO_ALLOW_UNVERIFIED_MODEL"),
    (["--max-queue", "-1"], {}, "max_concurrency and max_queue must be >= 0"),
])
def test_bad_serve_values_are_usage_errors(capsys, monkeypatch, served, argv, variables,
                                           message):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    code, _, err = main(capsys, "serve", *argv)
    assert code == 2 and not served
    assert err.startswith("error: ") and message in err, err


def test_serve_without_the_server_extra(tmp_path):
    code = ("import sys; sys.modules['fastapi'] = None\n"
            "from deepfake_audio.cli import main\n"
            "sys.exit(main(['serve', '--port', '8123']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 2
    assert 'pip install "deepfake-audio[server]"' in proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_reads_media_files_and_splits_differing_channels(capsys, tmp_path):
    voice = speech(4.0, 48_000)
    call = np.stack([voice, np.zeros_like(voice) + 1e-4], axis=1)  # one side silent
    path = tmp_path / "memo.m4a"
    path.write_bytes(media.encode(call, 48_000, "ipod", "aac"))
    code, out, _ = main(capsys, "check", str(path), "--json")
    assert code == 0
    row = json.loads(out)
    assert row["channel"] == 0 and [c["channel"] for c in row["channels"]] == [0]
    code, out, _ = main(capsys, "check", str(path), "--json", "--channels", "mix")
    assert code == 0 and json.loads(out)["channels"] == []


def test_check_limit_error_names_the_setting(capsys, tmp_path):
    path = tmp_path / "long.wav"
    path.write_bytes(media.encode(speech(3.0), 16_000, "wav", "pcm_s16le"))
    code, _, err = main(capsys, "check", str(path), "--max-duration", "1")
    assert code == 3
    assert "--max-duration" in err and "DEEPFAKE_AUDIO_MAX_DURATION" in err
