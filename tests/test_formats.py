"""Every container and codec users hold decodes; what is not audio says what it is.

The files are built with PyAV's bundled FFmpeg encoders (``tests/media_gen.py``).
"""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from deepfake_audio import load_audio, probe
from deepfake_audio.exceptions import (
    AudioDecodeError,
    NoAudioStreamError,
    NotMediaError,
    UnsupportedFormatError,
)
from tests.helpers.media import FORMATS, encode, tone


def _dominant_hz(samples: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * sr / len(samples))


@pytest.mark.parametrize(("name", "container", "codec", "sr", "channels"), FORMATS,
                         ids=[f[0] for f in FORMATS])
def test_ffmpeg_formats_decode(name, container, codec, sr, channels):
    data = encode(tone(sr, 1.5, 1000.0, channels), sr, container, codec)
    audio = load_audio(data)
    assert audio.sample_rate == 16_000 and audio.original_sample_rate == sr
    assert audio.channels == channels
    # Lossy codecs add encoder priming/padding of a few frames.
    assert audio.duration_s == pytest.approx(1.5, abs=0.12)
    assert _dominant_hz(audio.samples, 16_000) == pytest.approx(1000.0, abs=5)
    info = probe(data)
    assert (info.sample_rate, info.channels) == (sr, channels)


#: AMR-WB speech-frame sizes in bytes, by mode (3GPP TS 26.201; RFC 4867 storage format).
AMR_WB_FRAME_BYTES = (17, 23, 32, 36, 40, 46, 50, 58, 60)


@pytest.mark.parametrize("mode", [0, 2, 8])
def test_amr_wb_decodes(mode):
    """FFmpeg has no AMR-WB encoder, so the file is written by hand: the storage format's
    magic, then 20 ms frames (a table-of-contents byte and the speech bits, random here).
    The decoder turns any bit pattern into audio; what matters is that every frame is."""
    rng = np.random.default_rng(mode)
    frames = 150
    toc = bytes([(mode << 3) | 0x04])  # frame type, quality bit set
    data = b"#!AMR-WB\n" + b"".join(
        toc + rng.integers(0, 256, AMR_WB_FRAME_BYTES[mode], dtype=np.uint8).tobytes()
        for _ in range(frames))
    audio = load_audio(data, file_type=".amr")
    assert audio.format == "AMR_WB" and audio.original_sample_rate == 16_000
    assert audio.duration_s == pytest.approx(frames * 0.02, abs=0.04)
    assert np.isfinite(audio.samples).all() and np.abs(audio.samples).max() > 0
    info = probe(data)
    assert (info.format, info.sample_rate, info.channels) == ("AMR_WB", 16_000, 1)


@pytest.mark.parametrize("suffix", [".m4a", ".webm", ".amr", ".3gp", ".wma", ".caf", ".aiff"])
def test_new_extensions_are_accepted_hints(suffix):
    data = encode(tone(16_000, 1.0, 700.0), 16_000, "ipod", "aac")
    assert load_audio(data, file_type=suffix).format == "AAC"  # content decides


@pytest.mark.parametrize("subtype", ["ULAW", "ALAW", "IMA_ADPCM", "MS_ADPCM", "GSM610"])
def test_wav_codecs(subtype):
    buffer = io.BytesIO()
    sf.write(buffer, tone(8000, 1.5, 1000.0), 8000, format="WAV", subtype=subtype)
    audio = load_audio(buffer.getvalue())
    assert audio.format == "WAV"
    assert _dominant_hz(audio.samples, 16_000) == pytest.approx(1000.0, abs=5)


@pytest.mark.parametrize(("container", "video", "codec"), [
    ("mp4", "mpeg4", "aac"), ("webm", "libvpx", "libopus"), ("matroska", "mpeg4", "ac3"),
])
def test_video_is_analysed_through_its_audio_stream(container, video, codec):
    data = encode(tone(48_000, 2.0, 1000.0), 48_000, container, codec, video=video)
    audio = load_audio(data)
    assert audio.duration_s == pytest.approx(2.0, abs=0.12)
    assert _dominant_hz(audio.samples, 16_000) == pytest.approx(1000.0, abs=5)


@pytest.mark.parametrize(("container", "video", "found"), [
    ("mp4", "mpeg4", "video (mpeg4)"), ("webm", "libvpx", "video (vp8)"),
])
def test_video_without_audio_says_what_it_holds(container, video, found):
    data = encode(tone(48_000, 1.0, 1000.0), 48_000, container, "aac", video=video, audio=False)
    with pytest.raises(NoAudioStreamError, match="no audio stream") as info:
        load_audio(data)
    assert found in str(info.value)
    assert isinstance(info.value, AudioDecodeError)


@pytest.mark.parametrize(("data", "found"), [
    (b"%PDF-1.7\n" + bytes(2000), "PDF document"),
    (b"\x89PNG\r\n\x1a\n" + bytes(2000), "PNG image"),
    (b"PK\x03\x04" + bytes(2000), "ZIP archive"),
    (b"Dear user, this is a plain text file.\n" * 40, "text"),
    (np.random.default_rng(3).bytes(5000), "unrecognised binary data"),
])
def test_not_media_says_what_was_found(data, found):
    with pytest.raises(NotMediaError, match="not an audio or video file") as info:
        load_audio(data)
    assert found in str(info.value)


def test_unknown_extension_hint_is_refused():
    with pytest.raises(UnsupportedFormatError, match="unsupported file type"):
        load_audio(encode(tone(16_000, 1.0, 700.0), 16_000, "ipod", "aac"), file_type=".docx")


def test_truncated_m4a_fails_cleanly():
    data = encode(tone(44_100, 2.0, 1000.0), 44_100, "ipod", "aac")
    with pytest.raises(AudioDecodeError):
        load_audio(data[: len(data) // 3])


def _damaged_mp3() -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(44_100, 4.0, 440.0), 44_100, format="MP3")
    data = bytearray(buffer.getvalue())
    rng = np.random.default_rng(0)
    for start in range(3000, len(data) - 500, 4000):  # smash a few frames mid-stream
        data[start : start + 300] = rng.bytes(300)
    return bytes(data)


def test_mp3_resync_chatter_never_reaches_stderr(tmp_path):
    """libmpg123 prints resync notes from C straight to fd 2; the library must not."""
    path = tmp_path / "damaged.mp3"
    path.write_bytes(_damaged_mp3())
    code = ("import sys, deepfake_audio\n"
            "audio = deepfake_audio.load_audio(sys.argv[1])\n"
            "print(round(audio.duration_s, 1))\n")
    run = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert float(run.stdout) == pytest.approx(4.0, abs=0.6)  # damaged frames dropped
    assert run.stderr == ""


def test_64_bit_pcm_wav_decodes():
    """64-bit PCM (FFmpeg's pcm_s64le) has no numpy type in PyAV: it is converted by
    libswresample instead of escaping as a KeyError (found by the random-mutation fuzzer)."""
    sr = 8000
    t = np.arange(sr) / sr
    pcm = (0.5 * np.sin(2 * np.pi * 440 * t) * (2**63 - 1)).astype("<i8")
    payload = pcm.tobytes()
    fmt = (b"fmt " + (16).to_bytes(4, "little") + (1).to_bytes(2, "little")
           + (1).to_bytes(2, "little") + sr.to_bytes(4, "little") + (sr * 8).to_bytes(4, "little")
           + (8).to_bytes(2, "little") + (64).to_bytes(2, "little"))
    data = b"data" + len(payload).to_bytes(4, "little") + payload
    wav = b"RIFF" + (4 + len(fmt) + len(data)).to_bytes(4, "little") + b"WAVE" + fmt + data
    audio = load_audio(wav, target_sr=sr)
    assert audio.original_sample_rate == sr
    assert len(audio.samples) == sr
    assert _dominant_hz(audio.samples, sr) == pytest.approx(440, abs=2)
    assert np.max(np.abs(audio.samples)) == pytest.approx(0.5, abs=0.01)
