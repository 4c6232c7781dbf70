"""``POST /analyze`` with speaker references or a named profile, on a real uvicorn server."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import soundfile as sf

from deepfake_audio import SpeakerProfile
from tests.helpers.audio import REAL_CLIP
from tests.helpers.server import ServerProcess, running_servers

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]

SPEAKER_150 = Path(__file__).parent / "data" / "real_librispeech_150.flac"


def _halves() -> tuple[bytes, bytes]:
    samples, sr = sf.read(SPEAKER_150, dtype="float32")
    half = len(samples) // 2
    out = []
    for part in (samples[:half], samples[half:]):
        buffer = io.BytesIO()
        sf.write(buffer, part, sr, format="WAV", subtype="PCM_16")
        out.append(buffer.getvalue())
    return out[0], out[1]


@pytest.fixture(scope="module")
def clips() -> tuple[bytes, bytes]:
    return _halves()


@pytest.fixture(scope="module")
def servers(tmp_path_factory, clips) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    folder = tmp_path_factory.mktemp("profiles")
    SpeakerProfile.from_sources([clips[0]], name="speaker150").save(folder / "speaker150.profile")
    (folder.parent / "outside.profile").write_text("{}")
    with running_servers({"DEEPFAKE_AUDIO_PROFILES": str(folder)}, {}) as started:
        yield started[0], started[1]


@pytest.fixture(scope="module")
def http(servers) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=servers[0].url, timeout=120) as client:
        yield client


def test_reference_files_in_the_same_request(http, clips):
    files = [("file", ("probe.wav", clips[1], "audio/wav")),
             ("reference", ("ref.wav", clips[0], "audio/wav"))]
    response = http.post("/analyze", files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body)[:3] == ["classification", "confidence", "raw_score"]
    speaker = body["speaker"]
    assert speaker["references"]["count"] == 1
    assert speaker["probability_same_speaker"] > 0.5
    assert speaker["summary"].startswith("voice matches the references: ")


def test_named_profile(http, clips):
    same = http.post("/analyze", files={"file": ("probe.wav", clips[1], "audio/wav")},
                     data={"profile": "speaker150"})
    assert same.status_code == 200, same.text
    other = http.post("/analyze", files={"file": ("other.flac", REAL_CLIP.read_bytes())},
                      data={"profile": "speaker150"})
    assert other.status_code == 200, other.text
    assert same.json()["speaker"]["profile"] == "speaker150"
    assert same.json()["speaker"]["similarity"] > other.json()["speaker"]["similarity"]


@pytest.mark.parametrize("name, status", [
    ("../outside", 422), ("speaker150/../speaker150", 422), ("no-such-voice", 404),
    ("/etc/passwd", 422), (".hidden", 422),
])
def test_profile_names_cannot_leave_the_folder(http, clips, name, status):
    response = http.post("/analyze", files={"file": ("probe.wav", clips[1], "audio/wav")},
                         data={"profile": name})
    assert response.status_code == status, response.text
    assert "error" in response.json()


def test_without_references_the_reply_is_unchanged(http, clips):
    body = http.post("/analyze", files={"file": ("probe.wav", clips[1], "audio/wav")}).json()
    assert "speaker" not in body


def test_unusable_references(http, clips):
    files = [("file", ("probe.wav", clips[1], "audio/wav")),
             ("reference", ("ref.wav", clips[0][: 44 + 12800], "audio/wav"))]
    response = http.post("/analyze", files=files)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "unusable speaker references"
    files[1] = ("reference", ("ref.wav", b"not audio at all" * 100, "audio/wav"))
    broken = http.post("/analyze", files=files)
    assert broken.status_code == 400, broken.text
    assert broken.json()["detail"].startswith("reference 1: ")


def test_server_without_profile_folder(servers, clips):
    with httpx.Client(base_url=servers[1].url, timeout=120) as client:
        response = client.post("/analyze", files={"file": ("p.wav", clips[1], "audio/wav")},
                               data={"profile": "speaker150"})
    assert response.status_code == 422
    assert response.json()["error"] == "no speaker profiles"
