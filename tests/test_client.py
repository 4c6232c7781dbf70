"""``deepfake_audio.client``: ``deepfake-audio remote`` and ``python -m deepfake_audio.client``
against a real server on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepfake_audio.cli import main as cli_main
from deepfake_audio.client import RemoteError, analyze_file, analyze_files_ws
from tests.helpers import ROOT
from tests.helpers.audio import FAKE_CLIP, clip, wav_bytes
from tests.helpers.server import ServerProcess, free_port

pytestmark = [pytest.mark.server, pytest.mark.timeout(120)]

KEY = "client-test-key"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess({"DEEPFAKE_AUDIO_API_KEY": KEY}) as started:
        started.wait_ready()
        yield started


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("audio")
    good, other, bad = folder / "good.wav", folder / "other.wav", folder / "bad.wav"
    good.write_bytes(wav_bytes(2.0))
    other.write_bytes(wav_bytes(3.0, seed=4))
    bad.write_bytes(b"not audio" * 100)
    return {"good": good, "other": other, "bad": bad}


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("transport", [[], ["--ws"]], ids=["http", "ws"])
def test_remote_prints_one_line_per_file(server: ServerProcess, files: dict[str, Path],
                                         capsys: pytest.CaptureFixture[str],
                                         transport: list[str]) -> None:
    code, out, err = _run(capsys, "remote", server.url, str(files["good"]), str(files["other"]),
                          "--api-key", KEY, *transport)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{files['good']}: ") and "confidence" in lines[0]


@pytest.mark.parametrize("transport", [[], ["--ws"]], ids=["http", "ws"])
def test_remote_json_and_rejected_files(server: ServerProcess, files: dict[str, Path],
                                        capsys: pytest.CaptureFixture[str],
                                        transport: list[str]) -> None:
    code, out, err = _run(capsys, "remote", server.url, str(files["good"]), "--json",
                          "--api-key", KEY, *transport)
    assert code == 0, err
    single = json.loads(out)
    assert single["path"] == str(files["good"]) and single["classification"] in ("real", "deepfake")

    code, out, err = _run(capsys, "remote", server.url, str(files["bad"]), str(files["good"]),
                          "--json", "--api-key", KEY, *transport)
    assert code == 3
    rows = json.loads(out)
    assert rows[0]["error"] == "could not decode audio" and "classification" in rows[1]
    assert f"error: {files['bad']}" in err


def test_remote_without_key_or_server(server: ServerProcess, files: dict[str, Path],
                                      capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPFAKE_AUDIO_API_KEY", raising=False)
    for transport in ([], ["--ws"]):
        code, _, err = _run(capsys, "remote", server.url, str(files["good"]), *transport)
        assert code == 2 and "API key" in err, err
    code, _, err = _run(capsys, "remote", f"http://127.0.0.1:{free_port()}", str(files["good"]))
    assert code == 1 and "cannot reach" in err
    code, _, err = _run(capsys, "remote", "ftp://nowhere", str(files["good"]))
    assert code == 2


def test_library_functions(server: ServerProcess, files: dict[str, Path]) -> None:
    result = analyze_file(server.url + "/", files["good"], api_key=KEY)
    assert result["classification"] in ("real", "deepfake")
    with pytest.raises(RemoteError) as info:
        analyze_file(server.url, files["bad"], api_key=KEY)
    assert info.value.status == 400 and info.value.body["error"] == "could not decode audio"
    answers = list(analyze_files_ws(server.ws_url + "/ws", [files["good"], files["bad"]],
                                    api_key=KEY))
    assert "classification" in answers[0][1]  # type: ignore[operator]
    assert isinstance(answers[1][1], RemoteError)


def test_python_m_client_keeps_the_spec_usage(server: ServerProcess) -> None:
    path = clip(FAKE_CLIP)
    for extra in ([], ["--ws"]):
        result = subprocess.run(
            [sys.executable, "-m", "deepfake_audio.client", "--file", str(path),
             "--url", server.url, *extra],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
            env={"DEEPFAKE_AUDIO_API_KEY": KEY, "PATH": "/usr/bin:/bin"},
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"{path}: deepfake (confidence ")


def test_missing_extra_gives_install_hint(files: dict[str, Path]) -> None:
    code = ("import sys; sys.modules['httpx'] = None; sys.modules['websockets'] = None\n"
            "from deepfake_audio.cli import main\n"
            f"sys.exit(main(['remote', 'http://127.0.0.1:1', {str(files['good'])!r}]))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.returncode == 2
    assert 'pip install "deepfake-audio[server]"' in result.stderr
