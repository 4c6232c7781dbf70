"""The malformed-audio corpus: hostile and broken inputs, generated on the fly.

Every case names the exception the library must raise, the HTTP status and
``error`` label the server must answer with, and why the file is nasty. Nothing
is checked in: ``build_corpus(directory)`` writes the files (a few MB in well
under a second), and the 1-hour MP3 (~5 MB, ~6 s of LAME time) is written once
per session by :func:`write_hour_mp3`.

Run it by hand to look at the files::

    python tests/reliability/make_corpus.py /tmp/corpus
"""

from __future__ import annotations

import io
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from deepfake_audio.exceptions import (
    AudioDecodeError,
    AudioTooLongError,
    AudioTooShortError,
    EmptyAudioError,
    InputError,
    InvalidAudioError,
    NoSpeechError,
    SilentAudioError,
    UnsupportedFormatError,
)

SR = 16_000
HOUR_MP3 = "hour_8khz.mp3"
HOUR_MP3_NO_LENGTH = "hour_8khz_no_xing.mp3"
HOUR_SECONDS = 3600
HOUR_RATE = 8_000


@dataclass(frozen=True)
class Case:
    """One corpus file and what every entry point must make of it."""

    name: str
    data: bytes
    error: type[InputError]
    status: int          # POST /analyze
    label: str           # the server's "error" string (HTTP and /ws)
    why: str

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix


def _tone(seconds: float, sr: int = SR, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    y = amplitude * np.sin(2 * np.pi * (180 + 20 * np.sin(2 * np.pi * 3 * t)) * t)
    return y.astype(np.float32)


def _encode(samples: np.ndarray, sr: int = SR, fmt: str = "WAV",
            subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, sr, format=fmt, subtype=subtype)
    return buffer.getvalue()


def wav_header(sample_rate: int, channels: int, bits: int, data_bytes: int,
               riff_bytes: int | None = None) -> bytes:
    """A canonical 44-byte PCM WAV header; every field as given, however absurd."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, sample_rate & 0xFFFFFFFF,
                      (sample_rate * block) & 0xFFFFFFFF, block & 0xFFFF, bits)
    if riff_bytes is None:
        riff_bytes = 4 + 8 + len(fmt) + 8 + data_bytes
    return (b"RIFF" + struct.pack("<I", riff_bytes & 0xFFFFFFFF) + b"WAVE"
            + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", data_bytes & 0xFFFFFFFF))


def _pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def cases() -> list[Case]:
    """Every corpus case except the two 1-hour MP3s (see :func:`hour_cases`)."""
    rng = np.random.default_rng(20240605)
    two_s = _tone(2.0)
    pcm = _pcm16(two_s)
    mp3 = _encode(two_s, fmt="MP3")
    spiky = two_s.copy()
    spiky[::100] = np.nan
    infinite = two_s.copy()
    infinite[::100] = np.inf
    loud_64 = np.repeat(_tone(1.0, 8_000)[:, None], 64, axis=1)
    decode = (AudioDecodeError, 400, "could not decode audio")
    return [
        Case("empty.wav", b"", EmptyAudioError, 400, "empty audio", "0 bytes"),
        Case("header_only.wav", wav_header(SR, 1, 16, 0), EmptyAudioError, 400, "empty audio",
             "a valid 44-byte WAV header and no samples"),
        Case("declares_4gib.wav", wav_header(SR, 1, 16, 0xFFFFFFF0, 0xFFFFFFFF) + pcm[:2048],
             AudioTooShortError, 400, "audio too short",
             "RIFF and data chunk claim 4 GiB; 2 KB follow (nothing may be sized from the"
             " header: the 2 KB are decoded and refused)"),
        Case("truncated.mp3", mp3[:400], *decode,
             "a valid MP3 cut after 400 bytes (inside the first frames)"),
        Case("random.wav", rng.bytes(48_000), *decode, "48 KB of random bytes named .wav"),
        Case("random.mp3", rng.bytes(48_000), *decode, "48 KB of random bytes named .mp3"),
        Case("riff_random.wav", b"RIFF" + struct.pack("<I", 48_004) + b"WAVE" + rng.bytes(48_000),
             *decode, "a RIFF/WAVE magic followed by random bytes"),
        Case("id3_random.mp3", b"ID3\x03\x00\x00\x00\x00\x00\x00" + rng.bytes(48_000),
             *decode, "an ID3 tag header followed by random bytes"),
        Case("nan.wav", _encode(spiky, subtype="FLOAT"), InvalidAudioError, 400, "invalid audio",
             "32-bit float WAV, every 100th sample NaN"),
        Case("inf.wav", _encode(infinite, subtype="FLOAT"), InvalidAudioError, 400,
             "invalid audio", "32-bit float WAV, every 100th sample +inf"),
        Case("rate_0hz.wav", wav_header(0, 1, 16, len(pcm)) + pcm, *decode,
             "header says 0 Hz"),
        Case("rate_4ghz.wav", wav_header(0xFFFFFFFF, 1, 16, len(pcm)) + pcm, *decode,
             "header says 4 294 967 295 Hz (negative as a signed int)"),
        Case("rate_2ghz.wav", wav_header(2_000_000_000, 1, 16, len(pcm)) + pcm,
             InvalidAudioError, 400, "invalid audio", "header says 2 GHz"),
        Case("channels_64.wav", _encode(loud_64, 8_000, subtype="PCM_16"), UnsupportedFormatError,
             415, "unsupported audio format", "64 channels, 1 s at 8 kHz (1 MB)"),
        Case("one_sample.wav", _encode(two_s[:1], subtype="PCM_16"), AudioTooShortError, 400,
             "audio too short", "a single sample"),
        Case("silence.wav", _encode(np.zeros(2 * SR, np.float32), subtype="PCM_16"),
             SilentAudioError, 400, "silent audio", "2 s of digital zero"),
        Case("aiff_named.wav", _encode(two_s, fmt="AIFF", subtype="PCM_16"),
             NoSpeechError, 400, "no speech",
             "an AIFF file named .wav: decoded (the content decides), and a tone is no speech"),
    ]


def write_hour_mp3(path: Path) -> Path:
    """1 hour of 8 kHz mono tone + noise as VBR MP3 (~5.2 MB, ~6 s to encode)."""
    rng = np.random.default_rng(7)
    block = HOUR_RATE * 60
    t = np.arange(block) / HOUR_RATE
    minute = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(block))
    minute = minute.astype(np.float32)
    tmp = path.with_suffix(".part")
    with sf.SoundFile(tmp, "w", samplerate=HOUR_RATE, channels=1, format="MP3",
                      compression_level=0.99) as handle:
        for _ in range(HOUR_SECONDS // 60):
            handle.write(minute)
    tmp.replace(path)
    return path


def hour_cases(hour_mp3: Path) -> list[Case]:
    """The 1-hour MP3 as written, and with its Xing length header defaced.

    Without the Xing frame libsndfile estimates the length from the bitrate; the
    estimate is still far over the limit here, and if a file ever understated it the
    decoder's own guard stops at the limit (``tests/test_audio.py`` covers that path).
    """
    data = hour_mp3.read_bytes()
    at = data.find(b"Xing", 0, 200)
    if at < 0:
        at = data.find(b"Info", 0, 200)
    no_length = data[:at] + b"Zzzz" + data[at + 4:] if at >= 0 else data
    why = "1 hour of 8 kHz audio in a ~5 MB MP3 (limit: 600 s)"
    return [
        Case(HOUR_MP3, data, AudioTooLongError, 413, "audio too long",
             why + "; refused from the Xing header before decoding"),
        Case(HOUR_MP3_NO_LENGTH, no_length, AudioTooLongError, 413, "audio too long",
             why + "; Xing header defaced, length estimated from the bitrate"),
    ]


def build_corpus(directory: Path, hour_mp3: Path | None = None) -> list[tuple[Case, Path]]:
    """Write every case into ``directory``; returns ``(case, path)`` pairs."""
    directory.mkdir(parents=True, exist_ok=True)
    all_cases = cases() + (hour_cases(hour_mp3) if hour_mp3 is not None else [])
    written = []
    for case in all_cases:
        path = directory / case.name
        path.write_bytes(case.data)
        written.append((case, path))
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/reliability/make_corpus.py OUTPUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    hour = write_hour_mp3(out / HOUR_MP3)
    for case, path in build_corpus(out, hour):
        print(f"{path}  {len(case.data):>9,d} B  -> {case.error.__name__} / {case.status}:"
              f" {case.why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
