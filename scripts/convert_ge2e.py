"""Convert Resemblyzer's GE2E speaker-encoder weights to numpy, once.

Resemblyzer (https://github.com/resemble-ai/Resemblyzer, Apache-2.0) ships a
3-layer LSTM speaker encoder trained with the GE2E loss as ``pretrained.pt``
inside its wheel. The library runs it with numpy (``deepfake_audio/ge2e.py``),
so torch is needed only here, in a throw-away environment::

    python3 -m venv /tmp/convvenv
    /tmp/convvenv/bin/pip install torch==2.13.0 resemblyzer webrtcvad-wheels soxr soundfile
    /tmp/convvenv/bin/python scripts/convert_ge2e.py

Writes ``deepfake_audio/models/speaker/ge2e.npz`` (plain arrays, loaded with
``allow_pickle=False``), ``ge2e.json`` (hashes and attribution) and the golden
embeddings ``tests/data/ge2e_golden.json`` that ``tests/test_ge2e.py`` compares
the numpy port against. Golden inputs are decoded and resampled exactly as the
library does (soundfile, mono mean, soxr HQ to 16 kHz) and then go through
Resemblyzer's own ``preprocess_wav`` and ``VoiceEncoder.embed_utterance``.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import resemblyzer
import soundfile as sf
import soxr
import torch
from resemblyzer import VoiceEncoder, preprocess_wav

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "deepfake_audio" / "models" / "speaker"
sys.path.insert(0, str(ROOT))  # this checkout, not whichever is installed

from deepfake_audio.safe_pickle import save_checked_arrays, sha256_file  # noqa: E402

GOLDEN = ROOT / "tests" / "data" / "ge2e_golden.json"
GOLDEN_CLIPS = ("real_librispeech.flac", "real_librispeech_150.flac", "fake_espeak.wav")


def convert() -> None:
    source = Path(resemblyzer.__file__).parent / "pretrained.pt"
    state = torch.load(source, map_location="cpu", weights_only=True)["model_state"]
    arrays = {
        key.replace(".", "_"): value.numpy().astype(np.float32)
        for key, value in state.items()
        if key.startswith(("lstm.", "linear."))
    }
    meta = save_checked_arrays(OUT_DIR, "ge2e", arrays,
                               identity=("encoder_id", "ge2e-resemblyzer-0.1.4"),
                               details={
        "source": {
            "package": f"resemblyzer=={version('resemblyzer')}",
            "file": "resemblyzer/pretrained.pt",
            "sha256": sha256_file(source),
        },
        "attribution": (
            "GE2E speaker encoder weights from Resemblyzer by Corentin Jemine / Resemble AI, "
            "https://github.com/resemble-ai/Resemblyzer, Apache License 2.0. "
            "Converted to numpy arrays unchanged by scripts/convert_ge2e.py."
        ),
        "license": "Apache-2.0",
    })
    npz = OUT_DIR / meta["file"]
    print(f"wrote {npz} ({npz.stat().st_size} bytes) sha256={meta['sha256']}")


def golden() -> None:
    encoder = VoiceEncoder(device="cpu", verbose=False)
    clips = {}
    for name in GOLDEN_CLIPS:
        data, sr = sf.read(ROOT / "tests" / "data" / name, dtype="float32", always_2d=True)
        wav = soxr.resample(data.mean(axis=1), sr, 16_000, quality="HQ").astype(np.float32)
        embedding = encoder.embed_utterance(preprocess_wav(wav))
        clips[name] = [round(float(v), 7) for v in embedding]
    payload = {
        "encoder": f"resemblyzer=={version('resemblyzer')} / torch=={torch.__version__}",
        "embeddings": clips,
    }
    GOLDEN.write_text(json.dumps(payload) + "\n")
    print(f"wrote {GOLDEN} ({len(clips)} clips)")


if __name__ == "__main__":
    convert()
    golden()
