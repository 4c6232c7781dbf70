"""``deepfake-audio profile create`` and ``check --reference``, as real subprocesses."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import soundfile as sf

from deepfake_audio import SpeakerProfile
from deepfake_audio.speaker import SpeakerVerifier

DATA = Path(__file__).parent / "data"
TIMEOUT = 300


def run(command: list[str], *args: str, env: dict[str, str], cwd: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env,
                          timeout=TIMEOUT, cwd=cwd)


def test_profile_create_then_check_with_it(cli_commands, cli_env, tmp_path, real_clip):
    command = cli_commands["module"]
    samples, sr = sf.read(DATA / "real_librispeech_150.flac", dtype="float32")
    half = len(samples) // 2
    sf.write(tmp_path / "ref.wav", samples[:half], sr)
    sf.write(tmp_path / "probe.wav", samples[half:], sr)

    made = run(command, "profile", "create", "speaker150", str(tmp_path / "ref.wav"),
               "-o", str(tmp_path / "s150.profile"), env=cli_env)
    assert made.returncode == 0, made.stderr
    assert "speaker150" in made.stdout and "1 reference(s)" in made.stdout
    profile = SpeakerProfile.load(tmp_path / "s150.profile")
    assert profile.name == "speaker150" and profile.count == 1

    human = run(command, "check", str(tmp_path / "probe.wav"), str(real_clip),
                "--reference", str(tmp_path / "s150.profile"), env=cli_env)
    assert human.returncode == 0, human.stderr
    lines = human.stdout.strip().splitlines()
    assert len(lines) == 2
    assert all("voice matches the references: " in line and " · synthesis artefacts: " in line
               for line in lines)

    as_json = run(command, "check", str(tmp_path / "probe.wav"), "--json",
                  "-r", str(tmp_path / "s150.profile"), env=cli_env)
    assert as_json.returncode == 0, as_json.stderr
    row = json.loads(as_json.stdout)
    speaker = row["speaker"]
    assert speaker["references"]["count"] == 1
    assert speaker["summary"].startswith("voice matches the references: ")
    assert speaker["probability_same_speaker"] > 0.5
    # the fitted rule applied to the two printed signals (a match only ever lowers it)
    assert row["probability_deepfake"] <= speaker["probability_artefacts"] + 1e-4
    assert row["probability_deepfake"] == pytest.approx(SpeakerVerifier().fuse(
        speaker["probability_artefacts"], speaker["probability_same_speaker"],
        speaker["speech_seconds"]), abs=1e-3)


def test_reference_from_the_environment_and_short_reference_warning(cli_commands, cli_env,
                                                                   tmp_path, real_clip):
    samples, sr = sf.read(DATA / "real_librispeech_150.flac", dtype="float32")
    sf.write(tmp_path / "short.wav", samples[: 2 * sr], sr)
    env = {**cli_env, "DEEPFAKE_AUDIO_REFERENCE": str(tmp_path / "short.wav")}
    out = run(cli_commands["module"], "check", str(real_clip), "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert "warning: the references hold only" in out.stderr
    assert json.loads(out.stdout)["speaker"]["references"]["count"] == 1


def test_without_references_nothing_changes(cli_commands, cli_env, real_clip):
    out = run(cli_commands["module"], "check", str(real_clip), "--json", env=cli_env)
    assert out.returncode == 0
    assert "speaker" not in json.loads(out.stdout)


def test_unusable_profile_is_bad_input(cli_commands, cli_env, tmp_path, real_clip):
    bad = tmp_path / "bad.profile"
    bad.write_text('{"format": "deepfake-audio-speaker-profile", "version": 7}')
    out = run(cli_commands["module"], "check", str(real_clip), "-r", str(bad), env=cli_env)
    assert out.returncode == 3
    assert "version 7" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_evaluate_reference_protocol(cli_commands, cli_env, tmp_path):
    samples, sr = sf.read(DATA / "real_librispeech_150.flac", dtype="float32")
    third = len(samples) // 3
    for k in range(3):
        sf.write(tmp_path / f"s{k}.wav", samples[k * third:(k + 1) * third], sr)
    (tmp_path / "fake.wav").write_bytes((DATA / "fake_espeak.wav").read_bytes())
    (tmp_path / "manifest.csv").write_text(
        "path,label,source,generator,speaker\n"
        + "".join(f"s{k}.wav,real,librispeech,human,150\n" for k in range(3))
        + "fake.wav,fake,tts,espeak_us,150\n")
    out = run(cli_commands["module"], "evaluate", str(tmp_path), "--protocol", "reference",
              "--json", "-q", env=cli_env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["protocol"] == "reference"
    assert (report["genuine_trials"], report["synthetic_trials"]) == (3, 1)
    text = run(cli_commands["module"], "evaluate", str(tmp_path), "--protocol", "reference",
               "-q", env=cli_env)
    assert "espeak_us" in text.stdout and "all families" in text.stdout
