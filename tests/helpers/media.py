"""Build real media files with PyAV's own FFmpeg encoders (no system ffmpeg needed)."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np

# (name, container, audio codec, sample rate, channels): every container/codec pair
# users send that the bundled FFmpeg can also *write*. AMR-WB cannot be built:
# the wheel ships its decoder but no encoder.
FORMATS = (
    ("M4A AAC", "ipod", "aac", 44_100, 2),
    ("M4A ALAC", "ipod", "alac", 44_100, 1),
    ("MP4 AAC", "mp4", "aac", 48_000, 2),
    ("MOV AAC", "mov", "aac", 22_050, 1),
    ("MOV ALAC", "mov", "alac", 48_000, 2),
    ("WebM Opus", "webm", "libopus", 48_000, 1),
    ("MKV Opus", "matroska", "libopus", 48_000, 2),
    ("MKV Vorbis", "matroska", "vorbis", 44_100, 2),
    ("WebM Vorbis", "webm", "vorbis", 44_100, 2),
    ("AMR-NB", "amr", "libopencore_amrnb", 8_000, 1),
    ("3GP AMR-NB", "3gp", "libopencore_amrnb", 8_000, 1),
    ("3GP AAC", "3gp", "aac", 16_000, 1),
    ("WMA", "asf", "wmav2", 44_100, 2),
    ("AIFF", "aiff", "pcm_s16be", 22_050, 1),
    ("CAF PCM", "caf", "pcm_s16le", 16_000, 1),
    ("CAF ALAC", "caf", "alac", 44_100, 2),
    ("AC-3", "ac3", "ac3", 48_000, 2),
    ("ADTS AAC", "adts", "aac", 32_000, 1),
    ("MP3 (FFmpeg)", "mp3", "libmp3lame", 44_100, 2),
)


def encode(samples: np.ndarray, sample_rate: int, container: str, codec: str,
           *, video: str | None = None, audio: bool = True) -> bytes:
    """Encode ``samples`` (``(frames,)`` or ``(frames, channels)`` float) with FFmpeg.

    ``video`` adds a small video stream of that codec (``"mpeg4"``, ``"libvpx"``);
    ``audio=False`` leaves the audio stream out (a silent video file).
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 1:
        samples = samples[:, None]
    channels = samples.shape[1]
    layout = "mono" if channels == 1 else "stereo"
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        vstream = None
        if video:
            vstream = out.add_stream(video, rate=10)
            vstream.width, vstream.height, vstream.pix_fmt = 64, 48, "yuv420p"
        astream = None
        if audio:
            astream = out.add_stream(codec, rate=sample_rate, layout=layout)
            if codec == "vorbis":  # FFmpeg's own Vorbis encoder is flagged experimental
                astream.codec_context.options = {"strict": "experimental"}
            if codec.startswith("wma"):
                astream.bit_rate = 64_000
        if astream is not None:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.T), format="fltp",
                                               layout=layout)
            frame.sample_rate = sample_rate
            resampler = av.AudioResampler(format=astream.codec_context.format, layout=layout,
                                          rate=sample_rate,
                                          frame_size=astream.codec_context.frame_size or None)
            for converted in [*resampler.resample(frame), *resampler.resample(None)]:
                out.mux(astream.encode(converted))
            out.mux(astream.encode(None))
        if vstream is not None:
            seconds = len(samples) / sample_rate
            for i in range(max(1, int(seconds * 10))):
                image = np.full((48, 64, 3), (i * 7) % 255, dtype=np.uint8)
                vframe = av.VideoFrame.from_ndarray(image, format="rgb24")
                vframe.pts, vframe.time_base = i, Fraction(1, 10)
                out.mux(vstream.encode(vframe))
            out.mux(vstream.encode(None))
    return buffer.getvalue()


def tone(sample_rate: int, seconds: float, hz: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    y = (0.4 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return y if channels == 1 else np.repeat(y[:, None], channels, axis=1)
