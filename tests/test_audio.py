"""Decoding, downmix, resampling and input validation (deepfake_audio.audio)."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest

from deepfake_audio import audio as audio_mod
from deepfake_audio import load_audio, probe
from deepfake_audio.exceptions import (
    AudioDecodeError,
    AudioFileNotFoundError,
    AudioTooLongError,
    AudioTooShortError,
    EmptyAudioError,
    InputError,
    InvalidAudioError,
    SilentAudioError,
    UnsupportedFormatError,
)

RATES = (8000, 22050, 44100, 48000)
FORMATS = (("WAV", None), ("FLAC", None), ("OGG", "VORBIS"), ("MP3", None))


def _forbid_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("samples were decoded although the header already decides")

    monkeypatch.setattr(audio_mod.AudioReader, "_native_blocks", fail)


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("sr", RATES)
@pytest.mark.parametrize(("fmt", "subtype"), FORMATS)
def test_every_format_decodes_to_16k_mono(gen, fmt, subtype, sr, channels):
    data = gen.encode(gen.tone(sr, 1.5, 1000.0, channels=channels), sr, fmt, subtype)
    audio = load_audio(data)
    assert audio.format == fmt
    assert audio.sample_rate == 16_000
    assert audio.original_sample_rate == sr
    assert audio.channels == channels
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    lossy = fmt in ("OGG", "MP3")
    assert len(audio.samples) == pytest.approx(24_000, abs=240 if lossy else 1)
    assert gen.dominant_hz(audio.samples, 16_000) == pytest.approx(1000.0, abs=5)
    assert np.isfinite(audio.samples).all()


@pytest.mark.parametrize("sr", [8000, 48000])
def test_ogg_opus_decodes(gen, sr):
    audio = load_audio(gen.encode(gen.tone(sr, 1.0, 700.0), sr, "OGG", "OPUS"))
    assert audio.format == "OGG"
    assert gen.dominant_hz(audio.samples, 16_000) == pytest.approx(700.0, abs=5)


@pytest.mark.parametrize(("suffix", "fmt"), [(".wav", "WAV"), (".flac", "FLAC"),
                                             (".ogg", "OGG"), (".mp3", "MP3")])
def test_files_on_disk_by_path(gen, tmp_path, suffix, fmt):
    path = gen.write(tmp_path / f"clip{suffix}", gen.speechlike(22050, 1.0), 22050)
    assert load_audio(path).format == fmt
    assert load_audio(str(path)).format == fmt
    assert probe(path).format == fmt


def test_content_decides_not_the_name(gen, tmp_path):
    """A FLAC stream named .wav is still decoded as FLAC."""
    path = tmp_path / "actually_flac.wav"
    path.write_bytes(gen.encode(gen.tone(16000), 16000, "FLAC"))
    assert load_audio(path).format == "FLAC"


# --------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("sr", [8000, 11025, 22050, 44100, 48000, 96000])
def test_resampling_keeps_duration_and_frequency(gen, sr):
    y = gen.tone(sr, 2.0, 1234.0).astype(np.float32)
    audio = load_audio((y, sr))
    assert len(audio.samples) == pytest.approx(32_000, abs=1)
    assert audio.duration_s == pytest.approx(2.0, abs=1e-3)
    assert gen.dominant_hz(audio.samples, 16_000) == pytest.approx(1234.0, abs=2)
    # soxr HQ: the tone keeps its level (no gross gain change)
    assert np.max(np.abs(audio.samples[1000:-1000])) == pytest.approx(0.5, abs=0.02)


def test_no_resampling_at_target_rate_is_bit_exact(gen):
    y = gen.speechlike(16000, 1.0).astype(np.float32)
    audio = load_audio(gen.encode(y, 16000, "WAV", "FLOAT"))
    np.testing.assert_array_equal(audio.samples, y)


def test_other_target_rate(gen):
    audio = load_audio((gen.tone(16000, 1.0, 500.0), 16000), target_sr=22050)
    assert audio.sample_rate == 22050
    assert len(audio.samples) == pytest.approx(22050, abs=1)


# --------------------------------------------------------------------------- downmix


def test_stereo_downmix_is_the_channel_mean(gen):
    sr = 16000
    left, right = gen.tone(sr, 1.0, 440.0, 0.4), gen.tone(sr, 1.0, 1500.0, 0.2)
    stereo = np.stack([left, right], axis=1).astype(np.float32)
    audio = load_audio(gen.encode(stereo, sr, "WAV", "FLOAT"))
    assert audio.channels == 2
    np.testing.assert_allclose(audio.samples, (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize("channels", [3, 6, 16])
def test_multichannel_downmix(gen, channels):
    sr = 16000
    columns = [gen.tone(sr, 1.0, 200.0 * (k + 1), 0.5 / channels) for k in range(channels)]
    multi = np.stack(columns, axis=1).astype(np.float32)
    audio = load_audio(gen.encode(multi, sr, "WAV", "FLOAT"))
    assert audio.channels == channels
    np.testing.assert_allclose(audio.samples, multi.mean(axis=1), atol=1e-6)


def test_downmix_runs_block_by_block(gen, monkeypatch):
    """Several decode blocks are stitched without losing or repeating samples."""
    monkeypatch.setattr(audio_mod, "BLOCK_FRAMES", 1000)
    sr = 16000
    stereo = np.stack([gen.speechlike(sr, 1.3, seed=1), gen.noise(sr, 1.3)], axis=1)
    stereo = stereo.astype(np.float32)
    audio = load_audio(gen.encode(stereo, sr, "WAV", "FLOAT"))
    np.testing.assert_allclose(audio.samples, stereo.mean(axis=1), atol=1e-6)


# --------------------------------------------------------------------------- array input


def test_array_layouts_agree(gen):
    sr = 22050
    stereo = np.stack([gen.tone(sr, 1.0, 300.0), gen.tone(sr, 1.0, 900.0)], axis=1)
    frames_first = load_audio((stereo.astype(np.float32), sr))
    channels_first = load_audio((stereo.T.astype(np.float32), sr))  # librosa layout
    np.testing.assert_allclose(frames_first.samples, channels_first.samples, atol=1e-7)
    assert frames_first.channels == channels_first.channels == 2
    assert frames_first.format == "array"
    mono = load_audio(((stereo.mean(axis=1)).astype(np.float32), sr))
    np.testing.assert_allclose(frames_first.samples, mono.samples, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 16000), (16000, 1)])
def test_single_channel_2d_arrays(gen, shape):
    y = gen.tone(16000, 1.0).reshape(shape)
    audio = load_audio((y, 16000))
    assert audio.samples.shape == (16000,)
    assert audio.channels == 1


def test_int16_array_is_scaled_to_float(gen):
    y = gen.tone(16000, 1.0, 440.0, 0.5)
    pcm = np.round(y * 32767).astype(np.int16)
    audio = load_audio((pcm, 16000))
    np.testing.assert_allclose(audio.samples, y, atol=2 / 32768)
    stereo = load_audio((np.stack([pcm, pcm], axis=1), 16000))
    np.testing.assert_allclose(stereo.samples, audio.samples, atol=1e-7)


def test_uint8_and_int32_arrays(gen):
    y = gen.tone(16000, 1.0, 440.0, 0.5)
    u8 = np.round(y * 127 + 128).astype(np.uint8)
    np.testing.assert_allclose(load_audio((u8, 16000)).samples, y, atol=2 / 128)
    i32 = np.round(y * (2**31 - 1)).astype(np.int32)
    np.testing.assert_allclose(load_audio((i32, 16000)).samples, y, atol=1e-6)


def test_plain_list_and_numpy_rate(gen):
    y = gen.tone(8000, 1.0)
    audio = load_audio((y.tolist(), np.int64(8000)))
    assert audio.original_sample_rate == 8000


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ((np.zeros((2, 2, 2)), 16000), InvalidAudioError),
        ((np.ones(16000, dtype=bool), 16000), InvalidAudioError),
        ((np.full(16000, np.nan), 16000), InvalidAudioError),
        ((np.full(16000, 0.1), 0), InvalidAudioError),
        ((np.full(16000, 0.1), -16000), InvalidAudioError),
        ((np.full(16000, 0.1), 10**7), InvalidAudioError),
        ((np.full((16000, 17), 0.1), 16000), UnsupportedFormatError),
        ((np.zeros(16000), 16000), SilentAudioError),
        ((np.full(100, 0.1), 16000), AudioTooShortError),
        ((np.zeros(0), 16000), EmptyAudioError),
    ],
)
def test_bad_arrays(source, error):
    with pytest.raises(error):
        load_audio(source)


def test_array_too_long(gen):
    with pytest.raises(AudioTooLongError):
        load_audio((gen.tone(8000, 3.0), 8000), max_duration_s=2.0)


def test_malformed_tuple_and_source_types():
    with pytest.raises(TypeError):
        load_audio((np.zeros(10),))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        load_audio(12345)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- byte sources


def test_bytes_file_objects_and_paths_agree(gen, tmp_path):
    data = gen.encode(gen.speechlike(44100, 1.0), 44100, "FLAC")
    path = tmp_path / "x.flac"
    path.write_bytes(data)
    reference = load_audio(data).samples
    with open(path, "rb") as handle:
        from_handle = load_audio(handle).samples
        assert not handle.closed, "load_audio must not close the caller's file object"
    for other in (load_audio(bytearray(data)).samples, load_audio(memoryview(data)).samples,
                  load_audio(io.BytesIO(data)).samples, from_handle,
                  load_audio(path).samples, load_audio(str(path)).samples):
        np.testing.assert_array_equal(other, reference)


def test_non_seekable_stream(gen):
    data = gen.encode(gen.tone(16000), 16000, "WAV")

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self._inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def readinto(self, buffer) -> int:
            chunk = self._inner.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    assert load_audio(io.BufferedReader(Pipe())).format == "WAV"


def test_probe_reads_the_header_only(gen, monkeypatch):
    _forbid_decode(monkeypatch)
    info = probe(gen.encode(gen.tone(22050, 2.0, channels=2), 22050, "FLAC"))
    assert (info.format, info.sample_rate, info.channels, info.frames) == ("FLAC", 22050, 2, 44100)
    assert info.duration_s == pytest.approx(2.0)


# --------------------------------------------------------------------------- errors


def test_errors_are_input_errors():
    for error in (AudioDecodeError, AudioFileNotFoundError, AudioTooLongError,
                  AudioTooShortError, EmptyAudioError, InvalidAudioError, SilentAudioError,
                  UnsupportedFormatError):
        assert issubclass(error, InputError)
    assert issubclass(AudioFileNotFoundError, FileNotFoundError)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(EmptyAudioError):
        load_audio(path)
    with pytest.raises(EmptyAudioError):
        load_audio(b"")


def test_header_only_wav(gen):
    header = gen.encode(np.zeros(0, dtype=np.int16), 16000, "WAV")
    assert len(header) == 44
    with pytest.raises(EmptyAudioError):
        load_audio(header)


def test_random_bytes_named_wav(tmp_path):
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(AudioDecodeError):
        load_audio(path)


def test_riff_header_with_garbage_after_it():
    data = b"RIFF" + struct.pack("<I", 1000) + b"WAVE" + np.random.default_rng(1).bytes(200)
    with pytest.raises(AudioDecodeError):
        load_audio(data)


@pytest.mark.parametrize(("fmt", "subtype", "keep", "errors"), [
    ("WAV", None, 30, AudioDecodeError),             # cut inside the header
    ("FLAC", None, 100, AudioDecodeError),           # cut inside the first frame
    ("FLAC", None, 0.5, AudioDecodeError),           # cut mid-stream
    ("OGG", "VORBIS", 60, AudioDecodeError),
    ("OGG", "OPUS", 0.5, AudioDecodeError),
    # libsndfile finds no granule position in a half Vorbis stream and reports 0 frames
    ("OGG", "VORBIS", 0.5, (AudioDecodeError, EmptyAudioError)),
    ("MP3", None, 50, AudioDecodeError),
])
def test_truncated_files(gen, fmt, subtype, keep, errors):
    data = gen.encode(gen.speechlike(16000, 2.0), 16000, fmt, subtype)
    cut = data[: int(len(data) * keep) if isinstance(keep, float) else keep]
    with pytest.raises(errors):
        load_audio(cut)


def test_truncated_wav_data_decodes_what_is_there(gen):
    """libsndfile trusts the file size over a WAV data chunk that claims more."""
    data = gen.encode(gen.tone(16000, 2.0), 16000, "WAV")
    audio = load_audio(data[: 44 + 2 * 16000])
    assert audio.duration_s == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("fmt", ["AIFF", "AU", "CAF"])
def test_libsndfile_containers_take_the_fast_path(gen, fmt):
    audio = load_audio(gen.encode(gen.tone(16000, 1.0, 500.0), 16000, fmt))
    assert audio.format == fmt
    assert gen.dominant_hz(audio.samples, 16_000) == pytest.approx(500.0, abs=5)


@pytest.mark.parametrize("head", [
    b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00",  # MP4/M4A
    b"\x1a\x45\xdf\xa3\x01\x00\x00\x00",          # WebM/Matroska
])
def test_damaged_media_containers_are_decode_errors(head):
    with pytest.raises(AudioDecodeError):
        load_audio(head + bytes(512))


@pytest.mark.parametrize("hint", [".exe", "txt", ".pdf"])
def test_unsupported_file_type_hint(gen, hint, monkeypatch):
    _forbid_decode(monkeypatch)
    with pytest.raises(UnsupportedFormatError, match="unsupported file type"):
        load_audio(gen.encode(gen.tone(16000), 16000, "WAV"), file_type=hint)


@pytest.mark.parametrize("hint", [".wav", "WAV", ".mp3", "flac", ".Opus", "audio/mpeg", None, ""])
def test_supported_file_type_hints(gen, hint):
    assert load_audio(gen.encode(gen.tone(16000), 16000, "WAV"), file_type=hint).format == "WAV"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_non_finite_float_wav(gen, bad, subtype):
    y = gen.tone(16000, 1.0).astype(np.float32)
    y[1234] = bad
    with pytest.raises(InvalidAudioError, match="NaN or infinite"):
        load_audio(gen.encode(y, 16000, "WAV", subtype))


def _wav_with_rate(gen, rate: int) -> bytes:
    data = bytearray(gen.encode(gen.tone(16000, 1.0), 16000, "WAV"))
    struct.pack_into("<II", data, 24, rate, rate * 2)  # sample rate, byte rate
    return bytes(data)


@pytest.mark.parametrize("rate", [1, 500, 999, 384_001, 1_000_000, 2**31 - 1])
def test_absurd_sample_rate_in_header(gen, rate, monkeypatch):
    _forbid_decode(monkeypatch)
    with pytest.raises(InvalidAudioError, match="sample rate"):
        load_audio(_wav_with_rate(gen, rate))


@pytest.mark.parametrize("rate", [1000, 384_000])
def test_extreme_but_valid_rates(gen, rate):
    audio = load_audio(_wav_with_rate(gen, rate), max_duration_s=None, min_duration_s=0.01)
    assert audio.original_sample_rate == rate


def test_too_many_channels(gen, monkeypatch):
    data = gen.encode(np.full((8000, 17), 0.1, dtype=np.float32), 16000, "WAV", "FLOAT")
    _forbid_decode(monkeypatch)
    with pytest.raises(UnsupportedFormatError, match="17 channels"):
        load_audio(data)


def test_too_short(gen):
    with pytest.raises(AudioTooShortError):
        load_audio(gen.encode(gen.tone(16000, 0.1), 16000, "WAV"))
    assert load_audio(gen.encode(gen.tone(16000, 0.1), 16000, "WAV"), min_duration_s=0.05)


@pytest.mark.parametrize("peak_db", [-200, -80, -71])
def test_silent(gen, peak_db):
    y = gen.tone(16000, 1.0, amplitude=10 ** (peak_db / 20)).astype(np.float32)
    with pytest.raises(SilentAudioError):
        load_audio(gen.encode(y, 16000, "WAV", "FLOAT"))


def test_quiet_but_not_silent(gen):
    y = gen.tone(16000, 1.0, amplitude=10 ** (-60 / 20)).astype(np.float32)
    assert load_audio(gen.encode(y, 16000, "WAV", "FLOAT")).samples.size == 16000


def test_digital_zero_pcm_is_silent(gen):
    with pytest.raises(SilentAudioError):
        load_audio(gen.encode(np.zeros(16000, dtype=np.int16), 16000, "WAV"))


@pytest.mark.parametrize(("fmt", "subtype"), FORMATS)
def test_too_long_is_refused_from_the_header(gen, monkeypatch, fmt, subtype):
    data = gen.encode(gen.tone(8000, 3.0), 8000, fmt, subtype)
    _forbid_decode(monkeypatch)
    with pytest.raises(AudioTooLongError, match="limit is 2 s") as info:
        load_audio(data, max_duration_s=2.0)
    assert "--max-duration" in str(info.value)
    assert "DEEPFAKE_AUDIO_MAX_DURATION" in str(info.value)


def _flac_declaring(gen, total_frames: int) -> bytes:
    """A 1 s FLAC whose STREAMINFO claims ``total_frames`` samples."""
    data = bytearray(gen.encode(gen.tone(8000, 1.0), 8000, "FLAC"))
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO comes first
    offset = 8 + 10  # sample rate (20 bits) | channels (3) | bps (5) | total samples (36)
    packed = int.from_bytes(data[offset : offset + 8], "big")
    packed = (packed & ~((1 << 36) - 1)) | total_frames
    data[offset : offset + 8] = packed.to_bytes(8, "big")
    return bytes(data)


def test_header_declaring_a_huge_length_is_refused_without_decoding(gen, monkeypatch):
    data = _flac_declaring(gen, (1 << 36) - 1)  # ~99 days at 8 kHz, 1 s of real data
    assert probe(data).frames == (1 << 36) - 1
    _forbid_decode(monkeypatch)
    with pytest.raises(AudioTooLongError):
        load_audio(data, max_duration_s=3600.0)


def test_no_length_limit_by_default(gen):
    data = gen.encode(gen.tone(8000, 3.0), 8000, "WAV")
    assert load_audio(data).duration_s == pytest.approx(3.0)
    assert load_audio(data, max_duration_s=None).duration_s == pytest.approx(3.0)


def test_decode_guard_stops_when_the_header_understated(gen, monkeypatch):
    """The streaming decoder itself enforces the limit, whatever the header said."""
    data = gen.encode(gen.tone(8000, 4.0), 8000, "WAV")
    real_open = audio_mod.AudioReader._open

    def understating(self, source):
        info = real_open(self, source)
        return audio_mod.AudioInfo(info.format, info.sample_rate, info.channels, 8000)

    monkeypatch.setattr(audio_mod.AudioReader, "_open", understating)
    with pytest.raises(AudioTooLongError, match="understated") as info:
        load_audio(data, max_duration_s=2.0)
    assert "--max-duration" in str(info.value)


def test_missing_path(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(AudioFileNotFoundError) as info:
        load_audio(missing)
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(FileNotFoundError):
        load_audio(str(missing))
    with pytest.raises(AudioFileNotFoundError):
        load_audio(tmp_path)  # a directory is not an audio file


@pytest.mark.parametrize(("head", "expected"), [
    (b"RIFF\x00\x00\x00\x00WAVEfmt ", "WAV"),
    (b"RF64\xff\xff\xff\xffWAVEds64", "WAV"),
    (b"fLaC\x00\x00\x00\x22", "FLAC"),
    (b"OggS\x00\x02", "OGG"),
    (b"ID3\x04\x00", "MP3"),
    (b"\xff\xfb\x90\x64", "MP3"),
    (b"FORM\x00\x00\x00\x00AIFF", "AIFF"),
    (b"caff\x00\x01\x00\x00", "CAF"),
    (b"\xff\xf1\x50\x80\x02\x1f\xfc", "media"),  # ADTS AAC: FFmpeg's
    (b"\x00\x00\x00\x20ftypM4A ", "media"),
])
def test_sniff_format(head, expected):
    assert audio_mod.sniff_format(head) == expected
