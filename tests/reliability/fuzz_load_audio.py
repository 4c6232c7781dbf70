"""Fuzz ``deepfake_audio.audio.load_audio`` with bytes: no crash, only ``InputError``s,
no input slower than 2 s.

Run in a subprocess by ``test_fuzz.py`` (so a native crash in a decoder fails the
test instead of killing pytest), or by hand::

    python tests/reliability/fuzz_load_audio.py random --runs 100000 --max-time 300
    python tests/reliability/fuzz_load_audio.py atheris --runs 100000 --max-time 300

``random`` is a plain mutation loop (no dependency); ``atheris`` runs libFuzzer with
coverage feedback from ``deepfake_audio.audio`` (``pip install atheris``). Both start
from the same seeds: small valid WAV (PCM and float), FLAC, OGG/Vorbis and MP3 files.
Exit status 0 means every execution ended in a result or an ``InputError``.
"""

from __future__ import annotations

import argparse
import io
import random
import struct
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf

PER_INPUT_LIMIT_S = 2.0
#: 4-byte values that break size and rate fields.
INTERESTING_U32 = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
                   0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)


def seeds() -> list[bytes]:
    """Small valid files of every supported container (0.4 s, decoding is cheap)."""
    sr = 8_000
    t = np.arange(int(0.4 * sr)) / sr
    mono = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    stereo = np.stack([mono, -mono], axis=1)
    out = []
    for data, fmt, subtype in ((mono, "WAV", "PCM_16"), (stereo, "WAV", "FLOAT"),
                               (mono, "WAV", "PCM_U8"), (mono, "FLAC", None),
                               (stereo, "OGG", "VORBIS"), (mono, "MP3", None)):
        buffer = io.BytesIO()
        sf.write(buffer, data, sr, format=fmt, subtype=subtype)
        out.append(buffer.getvalue())
    return out


def mutate(data: bytes, rng: random.Random) -> bytes:
    """1-4 random edits, biased towards the header where the dangerous fields live."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            buf.extend(rng.randbytes(rng.randint(1, 64)))
            continue
        head = min(len(buf), 128)
        pos = rng.randrange(head) if rng.random() < 0.7 else rng.randrange(len(buf))
        kind = rng.randrange(7)
        if kind == 0:  # flip a bit
            buf[pos] ^= 1 << rng.randrange(8)
        elif kind == 1:  # random byte
            buf[pos] = rng.randrange(256)
        elif kind == 2 and pos + 4 <= len(buf):  # a 32-bit field set to an extreme
            buf[pos:pos + 4] = struct.pack("<I", rng.choice(INTERESTING_U32))
        elif kind == 3:  # truncate
            del buf[rng.randrange(len(buf)) or 1:]
        elif kind == 4:  # insert junk
            buf[pos:pos] = rng.randbytes(rng.randint(1, 32))
        elif kind == 5:  # delete a run
            del buf[pos:pos + rng.randint(1, 32)]
        else:  # duplicate a run (repeated chunks)
            run = bytes(buf[pos:pos + rng.randint(1, 64)])
            buf[pos:pos] = run * rng.randint(1, 4)
    return bytes(buf)


def check_one(data: bytes) -> str:
    """Run ``load_audio`` on ``data``; return the outcome's name. Anything but a result
    or an ``InputError`` propagates."""
    from deepfake_audio.audio import load_audio
    from deepfake_audio.exceptions import InputError

    try:
        load_audio(data)
    except InputError as exc:
        return type(exc).__name__
    return "decoded"


def run_random(runs: int, max_time: float, seed: int) -> int:
    rng = random.Random(seed)
    pool = seeds()
    outcomes: Counter[str] = Counter()
    slowest = (0.0, b"")
    started = time.monotonic()
    done = 0
    for done in range(1, runs + 1):  # noqa: B007 - the count is reported below
        base = rng.choice(pool)
        data = mutate(base, rng) if rng.random() < 0.95 else rng.randbytes(rng.randint(0, 512))
        t0 = time.perf_counter()
        try:
            outcomes[check_one(data)] += 1
        except Exception:
            return _report_crash(data, traceback.format_exc())
        elapsed = time.perf_counter() - t0
        if elapsed > slowest[0]:
            slowest = (elapsed, data)
        if elapsed > PER_INPUT_LIMIT_S:
            return _report_crash(data, f"took {elapsed:.2f} s (limit {PER_INPUT_LIMIT_S} s)")
        if time.monotonic() - started > max_time:
            break
    total = time.monotonic() - started
    print(f"random-mutation fuzz: {done} executions in {total:.1f} s"
          f" ({done / total:.0f}/s); slowest input {slowest[0] * 1000:.1f} ms;"
          f" outcomes {dict(outcomes.most_common())}")
    return 0


def _report_crash(data: bytes, what: str) -> int:
    path = Path(tempfile.gettempdir()) / f"fuzz-crash-{int(time.time())}.bin"
    path.write_bytes(data)
    print(f"FAILURE on a {len(data)}-byte input saved to {path}:\n{what}", file=sys.stderr)
    return 1


def run_atheris(runs: int, max_time: float, seed: int, workdir: Path) -> int:
    import atheris

    with atheris.instrument_imports():
        import deepfake_audio.audio  # noqa: F401 - instrumented for coverage feedback

    corpus = workdir / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(seeds()):
        (corpus / f"seed{i}").write_bytes(data)

    def one_input(data: bytes) -> None:
        check_one(data)

    argv = [sys.argv[0], f"-runs={runs}", f"-max_total_time={int(max_time)}",
            f"-timeout={int(PER_INPUT_LIMIT_S)}", f"-seed={seed}", "-rss_limit_mb=3072",
            "-max_len=65536", f"-artifact_prefix={workdir}/", "-print_final_stats=1",
            str(corpus)]
    atheris.Setup(argv, one_input)
    atheris.Fuzz()  # exits the process: 0 when every run passed
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engine", choices=["random", "atheris"])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--max-time", type=float, default=300.0, help="seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.engine == "atheris":
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fuzz-"))
        return run_atheris(args.runs, args.max_time, args.seed, workdir)
    return run_random(args.runs, args.max_time, args.seed)


if __name__ == "__main__":
    raise SystemExit(main())
