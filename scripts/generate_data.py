#!/usr/bin/env python3
"""Generate extra, reproducible training data for the deepfake-audio detector.

Two kinds of synthetic (label ``fake``) speech and one of genuine speech are written
under ``--out``:

1. **Matched resyntheses of genuine corpus clips** (``fake/resynth/<source>/<generator>/``).
   A deterministic subset of the genuine clips listed in the training manifest
   (LibriSpeech, VCTK, LJSpeech, FSDD, LibriTTS ground truth, Hi-Fi TTS; never the
   ``librispeech-resampled`` copies) is cut to at most 8 s and resynthesised at the
   clip's own sample rate and container (FLAC/WAV/MP3) by

   * ``griffinlim``      - STFT magnitude -> ``librosa.griffinlim`` (32 iterations);
   * ``mel-griffinlim``  - 80-band mel power spectrogram -> NNLS mel inversion ->
     Griffin-Lim, i.e. ``librosa.feature.inverse.mel_to_audio`` (a crude stand-in
     for mel-bottleneck neural vocoders);
   * ``world``           - WORLD vocoder (pyworld harvest + CheapTrick + D4C) analysis
     and resynthesis;
   * ``world-f0shift``   - the same WORLD parameters resynthesised with the f0 contour
     scaled by a seeded factor (0.85-1.2), a voice-conversion-like manipulation.

   Each fake keeps the genuine clip's ``source`` and ``speaker`` so that a detector sees
   genuine and synthetic speech of the same speaker over the same channel, and has to
   learn the synthesis artefacts rather than the corpus.

2. **Extra classic TTS** (``fake/tts-extra/<generator>/``, ``source`` = ``tts-extra``):
   espeak-ng with its own formant English voices and ``+f``/``+m`` variants, flite
   (kal, kal16, awb, rms, slt) and festival ``text2wave`` (kal_diphone), with seeded
   rate/pitch variation, speaking sentences written for this script. A seeded third of
   these clips is resampled (soxr HQ) to 8, 11.025 or 22.05 kHz so that rates are mixed.

3. **8 kHz copies of genuine sentence-length clips** (``real/tel8k/<source>/``, label
   ``real``, ``source`` = ``<source>-tel8k``): the same genuine subset (all but FSDD,
   which is 8 kHz already) resampled to 8 kHz, so that telephone-band speech is not
   a cue that only fakes carry (the shared corpus has 8 kHz fakes in ``fake/tel8k``).

``manifest.csv`` in ``--out`` uses the columns of the shared training manifest
(``path,label,source,generator,speaker,samplerate,seconds,licence``), with paths
relative to ``--out``, plus ``corpus`` and ``family``: the genuine corpus and generator
family a clip is held out with (an 8 kHz copy belongs to its source's corpus).

Reserved tools are NOT used: no Debian non-free voices (pico, RHVoice, MBROLA - including
espeak-ng's ``mb-*`` voices, which :func:`_espeak_voice_ok` refuses), no piper voices,
no codec2 or neural codecs (EnCodec, DAC, ...), and only genuine clips that are already
in the training manifest (no other LibriSpeech or VCTK speakers, no CMU ARCTIC).

The run is deterministic (sorted inputs, fixed seeds) and idempotent: existing outputs
are kept and only listed again in the manifest.

Example::

    python scripts/generate_data.py --data ../shared/data --out build/generated --jobs 2
    python scripts/generate_data.py --limit 2 --out /tmp/gen-smoke   # quick smoke run
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import librosa
import numpy as np
import pyworld
import soundfile as sf
import soxr

MANIFEST_COLUMNS = (
    "path",
    "label",
    "source",
    "generator",
    "speaker",
    "samplerate",
    "seconds",
    "licence",
    "corpus",
    "family",
)

MAX_SECONDS = 8.0
GL_ITERS = 32
N_MELS = 80

# How many genuine clips to resynthesise per source (None = all of them).
RESYNTH_SUBSET: dict[str, int | None] = {
    "librispeech": 60,
    "vctk": None,
    "ljspeech": 15,
    "fsdd": 30,
    "libritts": None,
    "hifitts": None,
}
# Only these folders feed the resynthesis (ljspeech: the coqui clips, not the PWG demo).
RESYNTH_PREFIXES: dict[str, str] = {
    "librispeech": "real/librispeech/",
    "vctk": "real/vctk/",
    "ljspeech": "real/ljspeech-coqui/",
    "fsdd": "real/fsdd/",
    "libritts": "real/libritts-vocos/gt/",
    "hifitts": "real/bigvgan-demo/",
}
RESYNTH_LICENCE: dict[str, str] = {
    "librispeech": "derived:CC-BY-4.0 (LibriSpeech)",
    "vctk": "derived:CC-BY-4.0 (VCTK corpus via yl4579/StarGANv2-VC)",
    "ljspeech": "derived:public-domain (LJSpeech via coqui-ai/TTS tests)",
    "fsdd": "derived:CC-BY-SA-4.0 (Jakobovski/free-spoken-digit-dataset)",
    "libritts": "derived:CC-BY-4.0 (LibriTTS via gemelo-ai/vocos demo)",
    "hifitts": "derived:CC-BY-4.0 (Hi-Fi TTS via NVIDIA/BigVGAN demo)",
}
F0_SHIFT_FACTORS = (0.85, 0.9, 1.1, 1.15, 1.2)
# 8 kHz copies of genuine sentence-length clips: the shared corpus has 8 kHz fakes
# (fake/tel8k) but only digit-length genuine 8 kHz speech (FSDD), which teaches
# "telephone-band sentence = fake".
TEL_RATE = 8000
TEL_SOURCES = ("librispeech", "vctk", "ljspeech", "libritts", "hifitts")

# --- TTS ------------------------------------------------------------------------------
ESPEAK_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc")
ESPEAK_VARIANTS = ("", "+f1", "+f2", "+f3", "+f4", "+m1", "+m2", "+m3", "+m4", "+m5", "+m6", "+m7")
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
N_ESPEAK = 80
N_FLITE_PER_VOICE = 9
N_FESTIVAL = 25
TTS_RESAMPLE_RATES = (8000, 11025, 22050)
# rates the engines write (flite "kal" is an 8 kHz voice); resampling picks a different one
TTS_NATIVE_RATE: dict[str, int] = {"espeak": 22050, "flite": 16000, "festival": 16000, "kal": 8000}
TTS_LICENCE = "generated"

SENTENCES = (
    "The old lighthouse keeper climbed the stairs every evening at dusk.",
    "Please remember to bring your umbrella, the forecast says heavy rain.",
    "Seven hundred and twelve passengers boarded the ferry before noon.",
    "Why would anyone leave a perfectly good sandwich on the park bench?",
    "The committee will publish its final report on the fourth of March.",
    "A gentle breeze carried the smell of fresh bread down the narrow street.",
    "He counted the coins twice and still came up three pennies short.",
    "Our train was delayed for forty minutes because of a signal failure.",
    "She painted the fence blue, then changed her mind and painted it green.",
    "Turn left at the second roundabout and follow the signs to the harbour.",
    "The museum's new exhibition covers the history of early printing presses.",
    "I have never seen so many stars as on that night in the desert.",
    "The recipe calls for two eggs, a cup of flour, and a pinch of salt.",
    "Could you spell your surname for me, one letter at a time?",
    "Heavy snow closed the mountain pass for most of the winter.",
    "The children built a small raft from driftwood and old rope.",
    "Nobody expected the quiet student to win the chess tournament.",
    "Prices rose by nearly nine percent over the course of the year.",
    "The orchestra tuned their instruments while the audience found their seats.",
    "A stray cat has been sleeping in our garden shed since Tuesday.",
    "The bridge was designed to withstand winds of over one hundred miles an hour.",
    "Keep the receipt in case you need to return the jacket.",
    "The library closes early on Sundays and public holidays.",
    "After the storm, the beach was covered in seaweed and broken shells.",
    "My grandfather repaired clocks in a tiny workshop behind the church.",
    "The scientists measured the temperature of the lake every morning.",
    "What time does the last bus leave for the airport tonight?",
    "The farmer sold apples, pears, and plums at the Saturday market.",
    "It took three attempts before the engine finally started.",
    "Visitors are asked not to feed the ducks in the pond.",
    "The captain ordered the crew to lower the sails before the squall.",
    "His handwriting was so small that the letter needed a magnifying glass.",
    "The annual meeting will be held in the main hall at half past six.",
    "We walked along the canal until the path disappeared into the reeds.",
    "A single candle lit the room, throwing long shadows on the walls.",
    "The new software update fixes several problems with the printer.",
    "Listen carefully, because I will only say this once.",
    "The mayor promised to repair every pothole in the town by autumn.",
    "Fresh tracks in the snow showed that a fox had passed in the night.",
    "The parcel arrived damaged, so we asked the shop for a replacement.",
    "Thirty two students signed up for the evening pottery class.",
    "The river rose steadily throughout the afternoon and flooded the fields.",
    "Do you prefer tea or coffee with your breakfast?",
    "The detective noticed that the clock on the mantelpiece had stopped.",
    "A flock of geese flew south in a long, uneven line.",
    "The bakery on the corner sells the best cinnamon rolls in the city.",
    "Every morning she cycled eleven kilometres to the laboratory.",
    "The ancient map showed an island that no sailor had ever found.",
    "Please switch off your phone before the performance begins.",
    "The wind turbine on the hill turned slowly in the evening breeze.",
    "He wrapped the gift in brown paper and tied it with red string.",
    "The hospital opened a new wing for children last spring.",
    "Lightning struck the old oak tree but it is still standing.",
    "The hikers reached the summit just as the clouds began to clear.",
    "Her speech was short, clear, and received with loud applause.",
    "The warehouse stores more than five thousand boxes of spare parts.",
    "Would you mind closing the window, it is getting rather cold?",
    "The village celebrates its harvest festival in late September.",
    "A young owl watched us silently from the branch above the path.",
    "The final chapter of the book answers every question but one.",
)


@dataclass(frozen=True)
class Output:
    """One file a job writes, with its manifest metadata (samplerate/seconds are measured)."""

    rel: str
    source: str
    generator: str
    speaker: str
    licence: str
    label: str = "fake"
    corpus: str = ""  # held-out group of a derived copy; default: source
    family: str = ""  # default: generator


@dataclass(frozen=True)
class ResynthJob:
    """Resynthesise one genuine clip with all four vocoders."""

    src: str  # absolute path of the genuine clip
    source: str
    speaker: str
    f0_factor: float
    seed: int
    outputs: tuple[Output, ...]
    cost: float = 0.0


@dataclass(frozen=True)
class TTSJob:
    """Synthesise one sentence with one classic TTS engine/voice."""

    engine: str  # espeak | flite | festival
    voice: str
    text: str
    params: tuple[tuple[str, float], ...]
    target_sr: int | None  # resample to this rate, or None to keep the engine's rate
    output: Output
    cost: float = 0.0


Job = ResynthJob | TTSJob


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _stable_seed(base: int, key: str) -> int:
    return (base * 1_000_003 + zlib.crc32(key.encode("utf-8"))) % (2**31 - 1)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text).strip("-")


def _espeak_voice_ok(voice: str) -> bool:
    """Refuse MBROLA voices (reserved for evaluation); allow espeak-ng's own voices only."""
    base = voice.split("+", 1)[0].lower()
    return not (base.startswith("mb") or "mbrola" in base)


def _n_fft(sr: int) -> int:
    """Power-of-two FFT size of about 40 ms (512 at 8 kHz, 1024 at 16-22 kHz, 2048 at 44+)."""
    return int(2 ** np.ceil(np.log2(0.04 * sr)))


def _format_for(path: str) -> tuple[str, str]:
    ext = Path(path).suffix.lower()
    if ext == ".mp3":
        return "MP3", "MPEG_LAYER_III"
    if ext == ".wav":
        return "WAV", "PCM_16"
    return "FLAC", "PCM_16"


def _finalise(y: np.ndarray, ref_rms: float) -> np.ndarray:
    """Match the reference RMS, keep the peak below full scale, check for NaN/silence."""
    y = np.asarray(y, dtype=np.float64)
    if not np.all(np.isfinite(y)):
        raise ValueError("non-finite samples in output")
    rms = float(np.sqrt(np.mean(y**2))) if y.size else 0.0
    if rms < 1e-5:
        raise ValueError("output is silent")
    if ref_rms > 0:
        y = y * (ref_rms / rms)
    peak = float(np.max(np.abs(y)))
    if peak > 0.99:
        y = y * (0.99 / peak)
    return y


def _write_atomic(path: Path, y: np.ndarray, sr: int) -> None:
    fmt, subtype = _format_for(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    sf.write(str(tmp), y.astype(np.float32), sr, format=fmt, subtype=subtype)
    os.replace(tmp, path)


def _done(path: Path) -> bool:
    if not path.is_file() or path.stat().st_size == 0:
        return False
    try:
        sf.info(str(path))
    except RuntimeError:  # unreadable leftover (LibsndfileError): regenerate it
        return False
    return True


def _row(out_dir: Path, o: Output) -> dict[str, str]:
    info = sf.info(str(out_dir / o.rel))
    return {
        "path": o.rel,
        "label": o.label,
        "source": o.source,
        "generator": o.generator,
        "speaker": o.speaker,
        "samplerate": str(info.samplerate),
        "seconds": f"{info.frames / info.samplerate:.3f}".rstrip("0").rstrip("."),
        "licence": o.licence,
        "corpus": o.corpus or o.source,
        "family": o.family or o.generator,
    }


# --------------------------------------------------------------------------------------
# resynthesis
# --------------------------------------------------------------------------------------
def _load_clip(path: str) -> tuple[np.ndarray, int]:
    x, sr = sf.read(path, dtype="float64", always_2d=True)
    x = x.mean(axis=1)
    n_max = int(MAX_SECONDS * sr)
    if x.size > n_max:
        x = x[:n_max].copy()
        fade = min(int(0.01 * sr), x.size)
        x[-fade:] *= np.linspace(1.0, 0.0, fade)
    return np.ascontiguousarray(x), int(sr)


def _griffinlim(x: np.ndarray, sr: int, seed: int) -> np.ndarray:
    n_fft = _n_fft(sr)
    hop = n_fft // 4
    mag = np.abs(librosa.stft(x.astype(np.float32), n_fft=n_fft, hop_length=hop))
    return librosa.griffinlim(
        mag, n_iter=GL_ITERS, hop_length=hop, n_fft=n_fft, length=x.size, random_state=seed
    )


def _mel_griffinlim(x: np.ndarray, sr: int, seed: int) -> np.ndarray:
    """Same as ``librosa.feature.inverse.mel_to_audio`` (power 2, NNLS, Griffin-Lim).

    librosa's ``mel_to_stft`` gives L-BFGS a history of ``n_fft/2+1`` vectors, which needs
    tens of GB at 44.1/48 kHz, so the NNLS step is called directly with ``m=10``.
    """
    n_fft = _n_fft(sr)
    hop = n_fft // 4
    mel = librosa.feature.melspectrogram(
        y=x.astype(np.float32), sr=sr, n_fft=n_fft, hop_length=hop, n_mels=N_MELS, power=2.0
    )
    basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=N_MELS)
    power = librosa.util.nnls(basis, mel, m=10)
    mag = np.sqrt(np.maximum(power, 0.0))
    return librosa.griffinlim(
        mag, n_iter=GL_ITERS, hop_length=hop, n_fft=n_fft, length=x.size, random_state=seed
    )


def _world_analysis(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    f0, t = pyworld.harvest(x, sr, f0_floor=60.0, f0_ceil=600.0, frame_period=5.0)
    sp = pyworld.cheaptrick(x, f0, t, sr)
    ap = pyworld.d4c(x, f0, t, sr)
    return f0, sp, ap


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    return y[:n] if y.size >= n else np.pad(y, (0, n - y.size))


def run_resynth(job: ResynthJob, out_dir: Path) -> list[dict[str, str]]:
    todo = [o for o in job.outputs if not _done(out_dir / o.rel)]
    if todo:
        x, sr = _load_clip(job.src)
        ref_rms = float(np.sqrt(np.mean(x**2)))
        world: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        for o in todo:
            if o.generator == "griffinlim":
                y = _griffinlim(x, sr, job.seed)
            elif o.generator == "mel-griffinlim":
                y = _mel_griffinlim(x, sr, job.seed)
            elif o.generator == "human":  # genuine speech, band-limited to 8 kHz
                y = _fit_length(soxr.resample(x, sr, TEL_RATE, quality="HQ"),
                                round(x.size * TEL_RATE / sr))
                _write_atomic(out_dir / o.rel, _finalise(y, ref_rms), TEL_RATE)
                continue
            elif o.generator in ("world", "world-f0shift"):
                if world is None:
                    world = _world_analysis(x, sr)
                f0, sp, ap = world
                if o.generator == "world-f0shift":
                    f0 = f0 * job.f0_factor
                y = _fit_length(pyworld.synthesize(f0, sp, ap, sr, frame_period=5.0), x.size)
            else:  # pragma: no cover - planning only emits the generators above
                raise ValueError(f"unknown generator {o.generator}")
            _write_atomic(out_dir / o.rel, _finalise(y, ref_rms), sr)
    return [_row(out_dir, o) for o in job.outputs]


# --------------------------------------------------------------------------------------
# TTS
# --------------------------------------------------------------------------------------
def _synth_tts(job: TTSJob, tmp: Path) -> tuple[np.ndarray, int]:
    text_file = tmp / "text.txt"
    text_file.write_text(job.text + "\n", encoding="utf-8")
    wav = tmp / "out.wav"
    p = dict(job.params)
    if job.engine == "espeak":
        if not _espeak_voice_ok(job.voice):
            raise ValueError(f"refusing reserved voice {job.voice}")
        cmd = ["espeak-ng", "-v", job.voice, "-s", str(int(p["rate"])), "-p", str(int(p["pitch"]))]
        cmd += ["-w", str(wav), "-f", str(text_file)]
    elif job.engine == "flite":
        cmd = ["flite", "-voice", job.voice, "-f", str(text_file), "-o", str(wav)]
        cmd += ["--setf", f"duration_stretch={p['stretch']:.3f}"]
        cmd += ["--setf", f"int_f0_target_mean={p['f0']:.1f}"]
    elif job.engine == "festival":
        int_params = (
            f"(set! int_lr_params '((target_f0_mean {p['f0']:.1f}) (target_f0_std 20)"
            " (model_f0_mean 170) (model_f0_std 34)))"
        )
        cmd = ["text2wave", "-eval", f"(voice_{job.voice})", "-eval", int_params]
        cmd += ["-eval", f"(Parameter.set 'Duration_Stretch {p['stretch']:.3f})"]
        cmd += ["-o", str(wav), str(text_file)]
    else:  # pragma: no cover
        raise ValueError(f"unknown engine {job.engine}")
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    y, sr = sf.read(str(wav), dtype="float64", always_2d=True)
    return y.mean(axis=1), int(sr)


def run_tts(job: TTSJob, out_dir: Path) -> list[dict[str, str]]:
    path = out_dir / job.output.rel
    if not _done(path):
        with tempfile.TemporaryDirectory(prefix="gen-tts-") as d:
            y, sr = _synth_tts(job, Path(d))
        if job.target_sr and job.target_sr != sr:
            y = soxr.resample(y, sr, job.target_sr, quality="HQ")
            sr = job.target_sr
        rms = float(np.sqrt(np.mean(y**2))) if y.size else 0.0
        _write_atomic(path, _finalise(y, rms), sr)
    return [_row(out_dir, job.output)]


def run_job(args: tuple[Job, Path]) -> tuple[str, list[dict[str, str]], str, float]:
    """Worker entry point: returns (label, rows, error, seconds)."""
    job, out_dir = args
    t0 = time.perf_counter()
    label = job.src if isinstance(job, ResynthJob) else job.output.rel
    try:
        rows = run_resynth(job, out_dir) if isinstance(job, ResynthJob) else run_tts(job, out_dir)
    except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
        # report and continue with the other jobs
        return label, [], f"{type(exc).__name__}: {exc}", time.perf_counter() - t0
    return label, rows, "", time.perf_counter() - t0


# --------------------------------------------------------------------------------------
# planning
# --------------------------------------------------------------------------------------
def plan_resynth(data: Path, seed: int, limit: int | None) -> list[ResynthJob]:
    with open(data / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["path"])
    jobs: list[ResynthJob] = []
    for source, prefix in RESYNTH_PREFIXES.items():
        cands = [
            r
            for r in rows
            if r["label"] == "real" and r["source"] == source and r["path"].startswith(prefix)
        ]
        n = RESYNTH_SUBSET[source]
        if source == "fsdd" and n is not None:
            cands = _balanced_by_speaker(cands, n, random.Random(_stable_seed(seed, source)))
        elif source == "librispeech" and n is not None:
            # one clip per speaker, then a seeded sample of speakers
            first: dict[str, dict[str, str]] = {}
            for r in cands:
                first.setdefault(r["speaker"], r)
            cands = sorted(first.values(), key=lambda r: r["path"])
            rng = random.Random(_stable_seed(seed, source))
            cands = sorted(rng.sample(cands, min(n, len(cands))), key=lambda r: r["path"])
        elif n is not None:
            rng = random.Random(_stable_seed(seed, source))
            cands = sorted(rng.sample(cands, min(n, len(cands))), key=lambda r: r["path"])
        if limit is not None:
            cands = cands[:limit]
        for r in cands:
            stem = Path(r["path"]).stem
            ext = Path(r["path"]).suffix.lower()
            ext = ext if ext in (".flac", ".wav", ".mp3") else ".flac"
            rng = random.Random(_stable_seed(seed, r["path"]))
            factor = rng.choice(F0_SHIFT_FACTORS)
            licence = RESYNTH_LICENCE[source]
            outs = []
            for gen in ("griffinlim", "mel-griffinlim", "world", "world-f0shift"):
                suffix = f"_f0x{round(factor * 100):03d}" if gen == "world-f0shift" else ""
                name = f"{stem}{suffix}{ext}"
                rel = f"fake/resynth/{source}/{gen}/{name}"
                outs.append(Output(rel, source, gen, r["speaker"], licence))
            if source in TEL_SOURCES:
                outs.append(Output(f"real/tel8k/{source}/{stem}.wav", f"{source}-tel8k", "human",
                                   r["speaker"], licence + " (8 kHz copy)", label="real",
                                   corpus=source))
            cost = float(r["samplerate"]) * min(float(r["seconds"]), MAX_SECONDS)
            jobs.append(
                ResynthJob(
                    src=str(data / r["path"]),
                    source=source,
                    speaker=r["speaker"],
                    f0_factor=factor,
                    seed=_stable_seed(seed, r["path"]),
                    outputs=tuple(outs),
                    cost=cost,
                )
            )
    return jobs


def _balanced_by_speaker(
    rows: list[dict[str, str]], n: int, rng: random.Random
) -> list[dict[str, str]]:
    by_spk: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_spk.setdefault(r["speaker"], []).append(r)
    per = max(1, n // max(1, len(by_spk)))
    out: list[dict[str, str]] = []
    for spk in sorted(by_spk):
        group = by_spk[spk]
        out.extend(rng.sample(group, min(per, len(group))))
    return sorted(out, key=lambda r: r["path"])


def plan_tts(seed: int, limit: int | None) -> list[TTSJob]:
    rng = random.Random(_stable_seed(seed, "tts"))
    specs: list[tuple[str, str, str, tuple[tuple[str, float], ...]]] = []
    params: tuple[tuple[str, float], ...]

    espeak_voices = [v + var for v in ESPEAK_VOICES for var in ESPEAK_VARIANTS]
    assert all(_espeak_voice_ok(v) for v in espeak_voices)
    # every base voice equally often, variants drawn with a seeded RNG
    n_espeak = N_ESPEAK if limit is None else min(N_ESPEAK, limit)
    for i in range(n_espeak):
        base = ESPEAK_VOICES[i % len(ESPEAK_VOICES)]
        voice = base + rng.choice(ESPEAK_VARIANTS)
        params = (("rate", float(rng.randint(120, 210))), ("pitch", float(rng.randint(20, 85))))
        specs.append(("espeak", voice, "espeak_extra", params))

    n_flite = N_FLITE_PER_VOICE if limit is None else min(N_FLITE_PER_VOICE, limit)
    for voice in FLITE_VOICES:
        lo, hi = (150, 220) if voice == "slt" else (85, 140)
        for _ in range(n_flite):
            params = (("stretch", round(rng.uniform(0.85, 1.25), 3)), ("f0", rng.uniform(lo, hi)))
            specs.append(("flite", voice, "flite_extra", params))

    n_fest = N_FESTIVAL if limit is None else min(N_FESTIVAL, limit)
    for _ in range(n_fest):
        params = (("stretch", round(rng.uniform(0.85, 1.2), 3)), ("f0", rng.uniform(85, 150)))
        specs.append(("festival", "kal_diphone", "festival_extra", params))

    # a seeded third of the clips gets resampled
    idx = list(range(len(specs)))
    resampled = set(rng.sample(idx, len(idx) // 3))
    jobs: list[TTSJob] = []
    counters: Counter[str] = Counter()
    for i, (engine, voice, generator, params) in enumerate(specs):
        text = SENTENCES[rng.randrange(len(SENTENCES))]
        native = TTS_NATIVE_RATE.get(voice, TTS_NATIVE_RATE[engine])
        rates = [r for r in TTS_RESAMPLE_RATES if r != native]
        target = rng.choice(rates) if i in resampled else None
        counters[generator] += 1
        rel = f"fake/tts-extra/{generator}/{_slug(voice)}_{counters[generator]:03d}.flac"
        speaker = {"espeak": "espeak-ng", "flite": "flite", "festival": "festival"}[engine]
        out = Output(rel, "tts-extra", generator, f"{speaker}:{voice}", TTS_LICENCE)
        jobs.append(TTSJob(engine, voice, text, params, target, out, cost=1.0))
    return jobs


def _check_tools(need_tts: bool) -> None:
    if not need_tts:
        return
    missing = [t for t in ("espeak-ng", "flite", "text2wave") if shutil.which(t) is None]
    if missing:
        raise SystemExit(f"missing TTS binaries: {', '.join(missing)} (apt-get install ...)")


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"), help="training corpus")
    ap.add_argument("--out", type=Path, default=Path("build/generated"), help="output folder")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument(
        "--limit",
        type=int,
        default=None,
        help="smoke run: at most N clips per corpus / TTS voice group",
    )
    ap.add_argument("--seed", type=int, default=20240601, help="base random seed")
    ap.add_argument("--skip-resynth", action="store_true", help="only generate TTS")
    ap.add_argument("--skip-tts", action="store_true", help="only generate resyntheses")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data: Path = args.data.resolve()
    out_dir: Path = args.out.resolve()
    if not (data / "manifest.csv").is_file():
        raise SystemExit(f"no manifest.csv in {data}")
    _check_tools(not args.skip_tts)

    jobs: list[Job] = []
    if not args.skip_resynth:
        jobs.extend(plan_resynth(data, args.seed, args.limit))
    if not args.skip_tts:
        jobs.extend(plan_tts(args.seed, args.limit))
    # longest jobs first for better load balancing; results are sorted afterwards anyway
    jobs.sort(key=lambda j: -j.cost)
    out_dir.mkdir(parents=True, exist_ok=True)
    _log(f"generate_data: {len(jobs)} jobs -> {out_dir} ({args.jobs} workers)")

    t0 = time.perf_counter()
    rows: list[dict[str, str]] = []
    errors: list[str] = []
    tasks = [(j, out_dir) for j in jobs]
    with Pool(processes=max(1, args.jobs)) as pool:
        for k, (label, job_rows, err, secs) in enumerate(
            pool.imap_unordered(run_job, tasks, chunksize=1), start=1
        ):
            if err:
                errors.append(f"{label}: {err}")
                _log(f"[{k}/{len(jobs)}] FAILED {label}: {err}")
            else:
                rows.extend(job_rows)
                _log(f"[{k}/{len(jobs)}] {label} ({len(job_rows)} files, {secs:.1f} s)")

    rows.sort(key=lambda r: r["path"])
    manifest = out_dir / "manifest.csv"
    tmp = manifest.with_name("manifest.csv.part")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(MANIFEST_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, manifest)

    counts = Counter((r["source"], r["generator"]) for r in rows)
    for (source, generator), n in sorted(counts.items()):
        _log(f"  {source:12s} {generator:16s} {n:4d}")
    _log(f"wrote {len(rows)} rows to {manifest} in {time.perf_counter() - t0:.1f} s")
    if errors:
        _log(f"{len(errors)} job(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
