#!/usr/bin/env python
"""Screen: does the 8–10.5 kHz band add to the bundled detector? Unseen protocol.

    python scripts/top_band_screen.py --data ../shared/data

(about 20 s on one core once ``scripts/fit_band.py`` has stored the bundled recipe's window
scores and the blocks are cached, see below.)

Only recordings whose native rate is at least 22.05 kHz have this band. Each such clip is
resampled to exactly 22 050 Hz (so every native rate sees the same band and stays below
the rates' different anti-alias roll-offs), cut into Hann frames (n_fft 1024, hop 256),
and frames whose 0–8 kHz energy is within 50 dB of the loudest frame are kept. Per frame:

- log energy ratio 8–10.5 kHz vs 4–8 kHz (dB);
- spectral flatness inside 8–10.5 kHz (dB);
- spectral slope of the band's log spectrum (dB/kHz);
- 8 linear-filterbank cepstral coefficients of the band (DCT of 16 log band energies,
  c0 dropped: it is the level, which the ratio already carries gain-free);

and the block is their mean and std over the kept frames, plus the correlation over time
of the 8–10.5 kHz and 4–8 kHz log-energy envelopes (23 numbers).

Empty-band gate: a clip whose median (over its frames within 20 dB of the loudest, where
a recorded band stands above any floor) per-frame 8–10.5 kHz energy is more than ``GATE_DB``
below its 0–8 kHz energy has no usable band (16 kHz material upsampled): it gets no block
score and keeps the bundled one. Over all kept frames the median is pulled down by quiet
frames whose top band sits at the log floor, so it does not separate the upsampled
LibriSpeech copies (-101 to -76 dB on the loud frames) from recorded bands; 65 dB leaves a
10 dB margin to the least-empty copy. Gate counts at other thresholds are printed too.

The block is scored under the project's unseen protocol (as ``held_out.leave_one_out``
holds groups out: a genuine corpus with every clip of that corpus, a fake family) by
StandardScaler + ``SVC(C=10, gamma="scale", class_weight="balanced")``, and averaged with
the bundled model's held-out scores (its window models' every-window scores from
``build/window-components.npz`` joined with its clip view, as
``scripts/window_fusion_check.py --clip-view --all-windows`` computes them; standardised
over all clips) at block weights 0.2, 0.35 and 0.5; clips without a block keep the bundled
score. The weights are not fitted. It then checks rate invariance (genuine 44.1/48 kHz
clips resampled to 22.05, 24, 44.1 and 48 kHz and scored by a block SVM fitted on every
usable clip) and prints what the block costs per minute of audio.

Blocks are cached in ``--cache`` (``build/top-band-blocks.npz``) so a rerun only scores.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft
from scipy.signal import get_window

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from fit_band import DEFAULT_COMPONENTS  # noqa: E402
from fusion_check import report, standardised  # noqa: E402
from window_fusion_check import clip_view_scores, window_components  # noqa: E402

from deepfake_audio.audio import load_audio, probe, resample  # noqa: E402
from deepfake_audio.datasets import Clip, load_dataset  # noqa: E402
from deepfake_audio.model import Calibration, load_model  # noqa: E402

RATE = 22_050
N_FFT = 1024
HOP = 256
KEEP_DB = 50.0  # frames within this of the loudest frame's 0–8 kHz energy
GATE_DB = 65.0  # top band this far below 0–8 kHz: treated as empty (upsampled)
GATE_FRAMES_DB = 20.0  # the gate looks at frames within this of the loudest
FLOOR_DB = 120.0  # log floor below the clip's loudest bin: keeps log() finite, gain-free
N_BANDS = 16
N_CEPS = 8
WEIGHTS = (0.2, 0.35, 0.5)
TEST_RATES = (22_050, 24_000, 44_100, 48_000)
MAX_INVARIANCE_CLIPS = 40

FREQS = np.arange(N_FFT // 2 + 1) * RATE / N_FFT
LOW = FREQS < 8000
MID = (FREQS >= 4000) & (FREQS < 8000)
TOP = (FREQS >= 8000) & (FREQS < 10_500)
N_BINS = int(np.flatnonzero(TOP)[-1]) + 1  # no bin above 10.5 kHz is needed
WINDOW = get_window("hann", N_FFT).astype(np.float32)
TOP_F = FREQS[TOP] / 1000.0
TOP_F_CENTRED = TOP_F - TOP_F.mean()
# Start index of each of the N_BANDS contiguous linear bands inside the top band.
BAND_STARTS = np.array([b[0] for b in np.array_split(np.arange(TOP.sum()), N_BANDS)])
DCT = scipy.fft.dct(np.eye(N_BANDS), type=2, norm="ortho", axis=0)[1:N_CEPS + 1]

MEASURES = ["ratio_db", "flatness_db", "slope_db_per_khz"] + [f"ceps{k}" for k in
                                                                range(1, N_CEPS + 1)]
BLOCK_NAMES = [f"{m}_{s}" for s in ("mean", "std") for m in MEASURES] + ["env_corr"]


def power_frames(samples: np.ndarray) -> np.ndarray:
    """``(frames, N_BINS)`` power spectrum of 22.05 kHz audio, bins up to 10.5 kHz."""
    x = np.asarray(samples, dtype=np.float32)
    if len(x) < N_FFT:
        x = np.pad(x, (0, N_FFT - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP]
    spectrum = scipy.fft.rfft(frames * WINDOW, axis=1)[:, :N_BINS]
    return np.asarray(spectrum.real**2 + spectrum.imag**2, dtype=np.float64)


def top_band_block(samples: np.ndarray, rate: int) -> tuple[np.ndarray, float]:
    """The clip's block (``BLOCK_NAMES``) and its gate level (median top vs 0–8 kHz, dB)."""
    power = power_frames(resample(samples, rate, RATE))
    power = power + power.max() * 10 ** (-FLOOR_DB / 10)
    e_low = power[:, LOW[:N_BINS]].sum(axis=1)
    db_low = 10 * np.log10(e_low)
    kept = db_low >= db_low.max() - KEEP_DB
    loud = db_low[kept] >= db_low.max() - GATE_FRAMES_DB
    power, db_low = power[kept], db_low[kept]
    top = power[:, TOP[:N_BINS]]
    db_top = 10 * np.log10(top.sum(axis=1))
    db_mid = 10 * np.log10(power[:, MID[:N_BINS]].sum(axis=1))
    gate = float(np.median((db_top - db_low)[loud]))

    log_top = np.log(top)
    flatness = 10 / np.log(10) * (log_top.mean(axis=1) - np.log(top.mean(axis=1)))
    # Least-squares slope of the band's dB spectrum against frequency, all frames at once.
    slope = (10 / np.log(10) * log_top) @ TOP_F_CENTRED / (TOP_F_CENTRED**2).sum()
    bands = np.log(np.add.reduceat(top, BAND_STARTS, axis=1))
    ceps = bands @ DCT.T
    per_frame = np.column_stack([db_top - db_mid, flatness, slope, ceps])
    if len(per_frame) >= 3 and db_top.std() > 0 and db_mid.std() > 0:
        corr = float(np.corrcoef(db_top, db_mid)[0, 1])
    else:
        corr = 0.0
    block = np.concatenate([per_frame.mean(axis=0), per_frame.std(axis=0), [corr]])
    return block, gate


def decode_native(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 at the file's own rate (``load_audio`` does not resample at it)."""
    rate = probe(path).sample_rate
    audio = load_audio(path, target_sr=rate, max_duration_s=None)
    return audio.samples, rate


def compute_blocks(clips: Sequence[Clip], cache: Path) -> dict[str, np.ndarray]:
    """Block, gate level, native rate, seconds and compute time of each >= 22.05 kHz clip."""
    paths = np.array([str(c.path) for c in clips])
    if cache.is_file():
        stored = dict(np.load(cache))
        if np.array_equal(stored["paths"], paths):
            print(f"blocks read from {cache}")
            return stored
    n = len(clips)
    out: dict[str, np.ndarray] = {
        "paths": paths, "rate": np.zeros(n, int), "blocks": np.full((n, len(BLOCK_NAMES)), np.nan),
        "gate_db": np.full(n, np.nan), "seconds": np.zeros(n), "cost_s": np.zeros(n),
        "decode_s": np.zeros(n)}
    for i, clip in enumerate(clips):
        rate = probe(clip.path).sample_rate
        out["rate"][i] = rate
        if rate < RATE:
            continue
        started = time.perf_counter()
        samples, rate = decode_native(clip.path)
        decoded = time.perf_counter()
        out["blocks"][i], out["gate_db"][i] = top_band_block(samples, rate)
        out["cost_s"][i] = time.perf_counter() - decoded
        out["decode_s"][i] = decoded - started
        out["seconds"][i] = len(samples) / rate
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def fit_block_svm(x: np.ndarray, y: np.ndarray) -> Any:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    return make_pipeline(StandardScaler(), SVC(C=10, gamma="scale",
                                               class_weight="balanced")).fit(x, y)


def unseen_block_scores(clips: Sequence[Clip], x: np.ndarray) -> np.ndarray:
    """Held-out block scores; groups held out as ``held_out.leave_one_out`` does.

    A genuine corpus is held out with every clip of that corpus (fakes made from it too);
    a fake family with its fakes. Each fold model scores only the group's own label.
    """
    labels = np.array([c.label for c in clips])
    corpora = np.array([c.corpus for c in clips])
    families = np.array([c.family for c in clips])
    folds = [(corpora == name, (corpora == name) & (labels == 0))
             for name in sorted(set(corpora[labels == 0].tolist()))]
    folds += [((families == name) & (labels == 1),) * 2
              for name in sorted(set(families[labels == 1].tolist()))]
    scores = np.full(len(clips), np.nan)
    for held, scored in folds:
        model = fit_block_svm(x[~held], labels[~held])
        scores[scored] = model.decision_function(x[scored])
    return scores


def platt_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold ``report`` uses for real->real and fake->fake."""
    return Calibration.fit(scores, labels).raw_score_at(0.5)


def group_auc(own: np.ndarray, other: np.ndarray, label: int) -> float:
    """P(a clip of the group is ranked on its own side of a clip of the other class)."""
    diff = own[:, None] - other[None, :]
    right = (diff > 0) if label == 1 else (diff < 0)
    return float(right.mean() + 0.5 * (diff == 0).mean())


def header() -> None:
    print(f"{'scores':30s} {'clips':>5s} {'EER':>7s} {'balanced':>9s} {'ROC-AUC':>8s}"
          f" {'real->real':>10s} {'fake->fake':>10s}")


def bundled_scores(clips: list[Clip], features: Path, jobs: int) -> np.ndarray:
    """The bundled recipe's unseen-protocol clip scores, window mean joined with its view."""
    windows = window_components(clips, DEFAULT_COMPONENTS, jobs)
    metadata = load_model().metadata
    fusion, view_rule = metadata.fusion, metadata.clip_view
    assert fusion is not None and view_rule is not None, "the bundled model changed shape"
    mean = np.array([fusion.combine(*w.T).mean() if len(w) else np.nan for w in windows])
    view = clip_view_scores(clips, features, jobs, all_windows=True)
    return np.asarray((1 - view_rule.weight) * standardised(mean)
                      + view_rule.weight * standardised(view))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--cache", type=Path, default=ROOT / "build" / "top-band-blocks.npz")
    parser.add_argument("--features", type=Path, default=ROOT / "build" / "feature-cache")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()

    clips = load_dataset(args.data)
    bundled = bundled_scores(clips, args.features, args.jobs)
    labels = np.array([c.label for c in clips])
    data = compute_blocks(clips, args.cache)
    blocks, gate = data["blocks"], data["gate_db"]

    # ---------------------------------------------------------------- gate
    wide = data["rate"] >= RATE
    usable = wide & (gate >= -GATE_DB)
    print(f"clips: {len(clips)}; native rate >= {RATE}: {wide.sum()}"
          f" ({(wide & (labels == 0)).sum()} genuine, {(wide & (labels == 1)).sum()} fake)")
    print(f"empty-band gate: median (frames within {GATE_FRAMES_DB:.0f} dB of the loudest)"
          f" 8-10.5 kHz energy more than {GATE_DB:.0f} dB below 0-8 kHz")
    print(f"{'label':5s} {'source (corpus)':34s} {'n':>4s} {'gated':>5s}"
          f" {'gate dB min':>11s} {'median':>7s} {'max':>6s}")
    sources = sorted({(c.label, c.source, c.corpus) for c, w in zip(clips, wide, strict=True)
                      if w})
    src = np.array([c.source for c in clips])
    for label, source, corpus in sources:
        rows = wide & (src == source) & (labels == label)
        g = gate[rows]
        print(f"{'real' if label == 0 else 'fake':5s} {f'{source} ({corpus})':34s}"
              f" {rows.sum():4d} {(rows & ~usable).sum():5d} {g.min():11.1f}"
              f" {np.median(g):7.1f} {g.max():6.1f}")
    print("gated out at other thresholds (genuine/fake; upsampled LibriSpeech among the"
          " genuine):", ", ".join(
              f"{x} dB: {(wide & (gate < -x) & (labels == 0)).sum()}/"
              f"{(wide & (gate < -x) & (labels == 1)).sum()}"
              f" ({(wide & (gate < -x) & np.char.startswith(src, 'librispeech-resampled')).sum()})"
              for x in (50, 55, 60, 65, 70, 75)))
    print(f"gated out: {(wide & ~usable & (labels == 0)).sum()} genuine,"
          f" {(wide & ~usable & (labels == 1)).sum()} fake; usable top band:"
          f" {usable.sum()} ({(usable & (labels == 0)).sum()} genuine,"
          f" {(usable & (labels == 1)).sum()} fake)")

    # ---------------------------------------------------------------- unseen scores
    sub = np.flatnonzero(usable)
    sub_clips = [clips[i] for i in sub]
    started = time.perf_counter()
    held = unseen_block_scores(sub_clips, blocks[sub])
    print(f"(unseen block scores: {time.perf_counter() - started:.0f} s)")
    block_z = np.full(len(clips), np.nan)
    block_z[sub] = standardised(held)  # over the clips that have a block
    fused = {w: np.where(usable, (1 - w) * bundled + w * np.nan_to_num(block_z), bundled)
             for w in WEIGHTS}
    # Extra check: the band's mean level vs 4-8 kHz is a recording-chain cue as much as a
    # synthesis one; the same block without it shows how much of the gain rides on it.
    no_level = [k for k, name in enumerate(BLOCK_NAMES) if name != "ratio_db_mean"]
    level_free = np.full(len(clips), np.nan)
    level_free[sub] = standardised(unseen_block_scores(sub_clips, blocks[sub][:, no_level]))
    level_free_fused = np.where(usable, 0.8 * bundled + 0.2 * np.nan_to_num(level_free), bundled)

    print(f"\nsubset with a usable top band ({len(sub)} clips), unseen protocol")
    header()
    report("bundled alone", bundled[sub], sub_clips)
    report("top-band block alone", block_z[sub], sub_clips)
    for w in WEIGHTS:
        report(f"bundled + block, w={w}", fused[w][sub], sub_clips)
    report("block w/o mean level, alone", level_free[sub], sub_clips)
    report("bundled + that, w=0.2", level_free_fused[sub], sub_clips)

    print(f"\nall {len(clips)} clips (no block: bundled score kept)")
    header()
    report("bundled alone", bundled, clips)
    for w in WEIGHTS:
        report(f"bundled + block, w={w}", fused[w], clips)
    report("bundled + block w/o level, 0.2", level_free_fused, clips)

    # ---------------------------------------------------------------- per group
    columns = {"bundled": bundled[sub], "block": block_z[sub]}
    columns.update({f"w={w}": fused[w][sub] for w in WEIGHTS})
    sub_labels = labels[sub]
    thresholds = {k: platt_threshold(v, sub_labels) for k, v in columns.items()}
    print("\nper group in the subset: % on the right side of each score's threshold (as in"
          " real->real / fake->fake above) | AUC of the group vs all subset clips of the other"
          " class")
    print(f"{'group':36s} {'n':>4s} " + " ".join(f"{k:>8s}" for k in columns) + " | "
          + " ".join(f"{k:>8s}" for k in columns))
    keys = np.array([f"real:{c.corpus}" if c.label == 0 else f"fake:{c.family}"
                     for c in sub_clips])
    for key in sorted(set(keys.tolist())):
        rows = keys == key
        label = int(sub_labels[rows][0])
        right = [np.mean((v[rows] > thresholds[k]) == bool(label)) for k, v in columns.items()]
        aucs = [group_auc(v[rows], v[sub_labels != label], label) for v in columns.values()]
        print(f"{key:36s} {rows.sum():4d} " + " ".join(f"{r:8.0%}" for r in right) + " | "
              + " ".join(f"{a:8.3f}" for a in aucs))

    # ---------------------------------------------------------------- rate invariance
    full = fit_block_svm(blocks[sub], sub_labels)
    train_scores = full.decision_function(blocks[sub])
    centre, scale = train_scores.mean(), train_scores.std()
    candidates = [i for i in sub if labels[i] == 0 and data["rate"][i] in (44_100, 48_000)]
    # Round-robin over corpora so the 40 ttsdb clips do not fill every slot.
    by_corpus: dict[str, list[int]] = {}
    for i in candidates:
        by_corpus.setdefault(clips[i].corpus, []).append(i)
    chosen: list[int] = []
    while len(chosen) < min(MAX_INVARIANCE_CLIPS, len(candidates)):
        for members in by_corpus.values():
            if members and len(chosen) < MAX_INVARIANCE_CLIPS:
                chosen.append(members.pop(0))
    z = np.zeros((len(chosen), len(TEST_RATES)))
    gates = np.zeros_like(z)
    for row, i in enumerate(chosen):
        samples, rate = decode_native(clips[i].path)
        for col, target in enumerate(TEST_RATES):
            block, gates[row, col] = top_band_block(resample(samples, rate, target), target)
            z[row, col] = (full.decision_function(block[None])[0] - centre) / scale
    spread = z.max(axis=1) - z.min(axis=1)
    print(f"\nrate invariance: {len(chosen)} genuine 44.1/48 kHz clips"
          f" ({', '.join(f'{k} {sum(clips[i].corpus == k for i in chosen)}' for k in by_corpus)})"
          f" resampled to {', '.join(str(r) for r in TEST_RATES)} Hz; block SVM fitted on all"
          f" {len(sub)} subset clips, score standardised by its scores on them")
    print(f"max-min of the standardised block score across the 4 rates, per clip: median"
          f" {np.median(spread):.3f}, max {spread.max():.3f}")
    native_col = np.array([TEST_RATES.index(int(data["rate"][i])) for i in chosen])
    for col, target in enumerate(TEST_RATES):
        change = np.abs(z[:, col] - z[np.arange(len(chosen)), native_col])
        same = " (the same soxr call as the native clip's own path: 0 by construction)"
        print(f"  |change| vs native rate at {target:5d} Hz: median {np.median(change):.3f},"
              f" max {change.max():.3f}{same if target == RATE else ''}")
    print(f"gate levels of these clips across rates: max spread"
          f" {(gates.max(axis=1) - gates.min(axis=1)).max():.2f} dB; none gated:"
          f" {bool((gates >= -GATE_DB).all())}")
    print(f"for scale: held-out block score (standardised) mean genuine"
          f" {block_z[sub][sub_labels == 0].mean():.2f}, fake"
          f" {block_z[sub][sub_labels == 1].mean():.2f}; full model on the subset:"
          f" genuine {((train_scores - centre) / scale)[sub_labels == 0].mean():.2f},"
          f" fake {((train_scores - centre) / scale)[sub_labels == 1].mean():.2f}")
    for corpus in ("librispeech-resampled-22k", "librispeech-resampled-24k-mp3"):
        rows = wide & (src == corpus)
        if rows.any():
            would = (full.decision_function(blocks[rows]) - centre) / scale
            print(f"{corpus}: {rows.sum()} clips, gated {(rows & ~usable).sum()}; gate level"
                  f" median {np.median(gate[rows]):.1f} dB (max {gate[rows].max():.1f});"
                  f" if scored anyway: median standardised block score {np.median(would):.2f}"
                  f" ({np.mean(would > 0):.0%} on the fake side of the full model's 0)")

    # ---------------------------------------------------------------- timing
    seconds, cost = data["seconds"][wide], data["cost_s"][wide]
    minutes = seconds.sum() / 60
    print(f"\ntiming ({wide.sum()} clips, {minutes:.1f} min of audio, one process, shared"
          f" machine): block (resample to 22.05 kHz + STFT + measures) {cost.sum():.2f} s ="
          f" {cost.sum() / minutes:.3f} s per minute of audio ="
          f" {1000 * cost.sum() / seconds.sum():.2f}"
          f" ms per second ({seconds.sum() / cost.sum():.0f}x real time); decoding at the"
          f" native rate (not part of the block) {data['decode_s'][wide].sum():.2f} s")
    # Warm repeats on one long clip of each wide rate: the resampling share is the part
    # that depends on the native rate.
    print("warm repeats, best of 5 (ms per second of audio): resample to 22.05 kHz |"
          " STFT + measures | whole block")
    for rate in sorted(set(data["rate"][wide].tolist())):
        bench = int(np.argmax(np.where(data["rate"] == rate, data["seconds"], 0)))
        samples, _ = decode_native(clips[bench].path)
        length = len(samples) / rate
        resampled = resample(samples, rate, RATE)
        parts = {"resample": lambda s=samples, r=rate: resample(s, r, RATE),
                 "measures": lambda x=resampled: top_band_block(x, RATE),
                 "block": lambda s=samples, r=rate: top_band_block(s, r)}
        best = {}
        for name, call in parts.items():
            runs = []
            for _ in range(5):
                started = time.perf_counter()
                call()
                runs.append(time.perf_counter() - started)
            best[name] = 1000 * min(runs) / length
        print(f"  {rate:5d} Hz ({length:4.1f} s clip): {best['resample']:.2f} |"
              f" {best['measures']:.2f} | {best['block']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
