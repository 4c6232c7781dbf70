#!/usr/bin/env python
"""Speed of the speaker-reference check (prints the figures quoted in the docs).

    python benchmarks/bench_speaker.py

A 10 s recording of real speech (the first 10 s of
``tests/data/real_librispeech_150.flac``) analysed on one core (one BLAS thread)
from WAV bytes, without references and with a saved profile loaded from disk;
best of 5 runs, CPU time of this process (issue 14's target: >= 300x real time per
core with a saved profile). Also the cost of the speaker embedding alone, of the
checked recording (a few partials, ``speaker_scoring.probe_partials``) and of a reference
(every partial), and of building a profile from one reference.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # measure this checkout, not whichever copy is installed
CLIP = ROOT / "tests" / "data" / "real_librispeech_150.flac"
REFERENCE = ROOT / "tests" / "data" / "real_librispeech.flac"


def best_cpu(action: Callable[[], object], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        started = time.process_time()
        action()
        times.append(time.process_time() - started)
    return min(times)


def main() -> int:
    from threadpoolctl import threadpool_limits

    from deepfake_audio import Detector, SpeakerProfile
    from deepfake_audio.ge2e import SAMPLE_RATE

    threadpool_limits(1)
    samples, sr = sf.read(CLIP, dtype="float32")
    samples = samples[: 10 * sr]
    buffer = io.BytesIO()
    sf.write(buffer, samples, sr, format="WAV", subtype="PCM_16")
    data = buffer.getvalue()

    detector = Detector()
    detector.warm_up()
    with tempfile.TemporaryDirectory() as tmp:
        path = detector.speaker_profile([REFERENCE], name="bench").save(Path(tmp) / "b.profile")
        profile = SpeakerProfile.load(path)
    detector.analyze(data, references=profile)  # load the encoder

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, one BLAS thread")
    plain = best_cpu(lambda: detector.analyze(data))
    checked = best_cpu(lambda: detector.analyze(data, references=profile))
    verifier = detector._verifier()
    audio = detector.decode(data)
    probe = best_cpu(lambda: verifier.embed_probe(audio.samples))
    embed = best_cpu(lambda: verifier.embed(audio.samples))
    build = best_cpu(lambda: SpeakerProfile.from_sources([REFERENCE], verifier=verifier), 3)
    for label, cpu in (("10 s check, no references", plain),
                       ("10 s check, saved profile", checked),
                       ("embedding, checked recording", probe),
                       ("embedding, as a reference", embed)):
        print(f"{label:<34}{cpu * 1000:8.1f} ms CPU -> {10 / cpu:6.0f}x real time per core")
    ratio = 10 / checked
    print(f"target: 10 s check with a saved profile >= 300x: {ratio:.0f}x "
          f"[{'ok' if ratio >= 300 else 'MISSED'}]")
    seconds = sf.info(REFERENCE).duration
    print(f"profile from one {seconds:.1f} s reference: {build * 1000:8.1f} ms CPU "
          f"(sample rate {SAMPLE_RATE} Hz)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
