#!/usr/bin/env python
"""Does a synthetic insert in a genuine call survive the file verdict? Before and after segments.

    python scripts/insert_eval.py ../shared/data --scores build/unseen-windows.npz

1. **Calls.** For every genuine speaker of DATA with at least ``--min-call`` seconds of
   speech (FSDD's single digits left out; a LibriSpeech speaker's clips are one utterance
   and its resampled copies), ``--calls`` calls are built by joining that speaker's clips
   in a seeded random order (at most ``--max-call`` seconds). Each call
   also gets a copy with a 5–15 s synthetic insert (excerpts of one fake clip of DATA, or
   of several of the same generator, loudness-matched) spliced in at a clip boundary.
   Every call is scored by the model (default: bundled) through ``Detector.analyze``.
   "Before" is the verdict from the mean score alone (``Detector.verdict(raw_score)``);
   "after" adds the segment rule (a flagged segment of at least ``min_s`` seconds with
   its mean score above the band). Printed: share of insert calls flagged (verdict not
   ``real``) and share of insert-free calls flagged (false alarms), for each candidate
   ``min_s``.
2. **Unseen protocol.** From the window-level held-out scores written by
   ``scripts/fit_band.py``, the EER of the file score before (the mean) and after (the
   mean, or a sustained segment's mean score when that is higher: what the rule acts on),
   and the share of genuine / fake clips flagged before and after.

The genuine clips of the first batches were seen by the bundled model in training, so
the false-alarm figures on them are optimistic; the script also prints them for the
third-batch speakers (manifest rows 1066 on) alone, which it never saw.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from fit_band import DEFAULT_SCORES, load_scores  # noqa: E402

from deepfake_audio import Detector  # noqa: E402
from deepfake_audio.audio import load_audio, probe  # noqa: E402
from deepfake_audio.datasets import Clip, load_dataset  # noqa: E402
from deepfake_audio.detector import (  # noqa: E402
    REAL,
    AnalysisResult,
    Segment,
    flagged_segments,
    sustained,
)
from deepfake_audio.exceptions import InputError  # noqa: E402
from deepfake_audio.metrics import equal_error_rate  # noqa: E402
from deepfake_audio.pool import without_decoder_noise  # noqa: E402

SR = 16_000
CANDIDATE_MIN_S = (4.5, 6.0, 7.5, 9.0)
#: First manifest row of the third batch (not seen by the bundled model).
NEW_BATCH_ROW = 1065


def _samples(clip: Clip) -> np.ndarray | None:
    try:
        audio = load_audio(clip.path, target_sr=SR, max_duration_s=None, min_duration_s=0.3)
    except InputError:
        return None
    samples = audio.samples.astype(np.float64)
    rms = np.sqrt(np.mean(samples ** 2)) or 1.0
    return samples * (0.05 / rms)  # same loudness for every piece: no level cue at a splice


def _seconds(clip: Clip) -> float:
    try:
        return probe(clip.path).duration_s
    except InputError:
        return 0.0


def build_calls(clips: list[Clip], *, n_calls: int, min_call_s: float, max_call_s: float,
                seed: int) -> list[tuple[str, bool, np.ndarray, np.ndarray]]:
    """``(speaker, new_speaker, call, call_with_insert)`` tuples."""
    rng = np.random.default_rng(seed)
    by_speaker: dict[tuple[str, str], list[tuple[int, Clip]]] = defaultdict(list)
    for i, clip in enumerate(clips):
        if clip.label == 0 and clip.corpus != "fsdd":
            by_speaker[(clip.corpus, clip.speaker)].append((i, clip))
    by_generator: dict[str, list[Clip]] = defaultdict(list)
    for clip in clips:
        if clip.label == 1:
            by_generator[clip.family].append(clip)
    generators = sorted(by_generator)
    calls = []
    for (corpus, speaker), members in sorted(by_speaker.items()):
        if sum(_seconds(c) for _, c in members) < min_call_s:  # header only: cheap
            continue
        decoded = [(i, s) for i, c in members if (s := _samples(c)) is not None]
        if sum(len(s) for _, s in decoded) < min_call_s * SR:
            continue
        for _ in range(n_calls):
            pieces: list[np.ndarray] = []
            for k in rng.permutation(len(decoded)):
                if sum(len(p) for p in pieces) >= max_call_s * SR:
                    break
                pieces.append(decoded[k][1])
            call = np.concatenate(pieces)[: int(max_call_s * SR)]
            insert_s = rng.uniform(5.0, 15.0)
            fakes = by_generator[generators[rng.integers(len(generators))]]
            parts: list[np.ndarray] = []
            for k in rng.permutation(len(fakes)):
                if sum(len(p) for p in parts) >= insert_s * SR:
                    break
                if (s := _samples(fakes[k])) is not None:
                    parts.append(s)
            if not parts:
                continue
            insert = np.concatenate(parts)[: int(insert_s * SR)]
            boundaries = np.cumsum([len(p) for p in pieces])[:-1]
            at = int(boundaries[rng.integers(len(boundaries))]) if len(boundaries) else 0
            with_insert = np.concatenate([call[:at], insert, call[at:]])
            new = min(i for i, _ in decoded) >= NEW_BATCH_ROW
            calls.append((f"{corpus}/{speaker}", new, call, with_insert))
    return calls


def _flag_rate(flags: list[bool]) -> str:
    return f"{np.mean(flags) * 100:5.1f}% ({sum(flags)}/{len(flags)})" if flags else "-"


def _flagged(detector: Detector, raw: float, segments: Sequence[Segment],
             min_s: float | None) -> bool:
    """Verdict not ``real``: from the mean alone (``min_s`` None), or with the segment rule
    at a candidate length (``SEGMENT_MIN_S`` gives exactly ``Detector.verdict``'s rule)."""
    if detector.verdict(raw).verdict != REAL:
        return True
    return min_s is not None and sustained(segments, min_s, detector.band[1])


RULES = [("mean only (before)", None), *((f"+ segment >= {m:.1f} s", m) for m in CANDIDATE_MIN_S)]


def _describe(detector: Detector) -> str:
    low, high = detector.band
    return f"threshold {detector.threshold:+.3f}, band [{low:+.3f}, {high:+.3f}]"


def insert_table(detectors: Sequence[Detector],
                 calls: list[tuple[str, bool, np.ndarray, np.ndarray]]) -> None:
    results = []
    for _, new, call, with_insert in calls:
        clean = detectors[0].analyze((call.astype(np.float32), SR))
        fake = detectors[0].analyze((with_insert.astype(np.float32), SR))
        results.append((new, clean, fake))
    print(f"{len(calls)} calls from {len({c[0] for c in calls})} speakers"
          f" ({sum(c[1] for c in calls)} calls of third-batch speakers), model"
          f" {detectors[0].model_id}; 'flagged' = verdict not real")
    for detector in detectors:
        print(f"\n{_describe(detector)}")
        print(f"{'rule':<28} {'inserts flagged':>18} {'false alarms (all)':>20}"
              f" {'false alarms (new)':>20}")
        for label, min_s in RULES:
            def rate(which: list[AnalysisResult], min_s: float | None = min_s,
                     detector: Detector = detector) -> str:
                return _flag_rate([_flagged(detector, r.raw_score, r.segments, min_s)
                                   for r in which])
            print(f"{label:<28} {rate([f for _, _, f in results]):>18}"
                  f" {rate([c for _, c, _ in results]):>20}"
                  f" {rate([c for n, c, _ in results if n]):>20}")


def unseen_table(detectors: Sequence[Detector], scores_path: Path) -> None:
    scores, _, model_id = load_scores(scores_path)
    reference = detectors[0]
    keep = [i for i, w in enumerate(scores.windows) if len(w)]
    labels = scores.labels[keep]
    mean = np.array([float(np.mean(scores.windows[i])) for i in keep])
    segments = [flagged_segments([tuple(s) for s in scores.spans[i]], scores.windows[i],
                                 reference.threshold, reference.metadata.calibration)
                for i in keep]
    print(f"\nunseen protocol, window-level ({len(keep)} clips, fold models of {model_id})")
    print("EER 'after' ranks clips by the mean, or by a sustained segment's mean score (at"
          " least that long, above the band) when that is higher")
    for detector in detectors:
        print(f"\n{_describe(detector)}")
        print(f"{'rule':<28} {'EER':>7} {'real flagged':>14} {'fake flagged':>14}")
        for label, min_s in RULES:
            after = mean.copy()
            for k, segs in enumerate(segments):
                strong = [s.raw_score for s in segs if min_s and s.duration_s >= min_s
                          and s.raw_score > detector.band[1]]
                after[k] = max([after[k], *strong])
            flagged = np.array([_flagged(detector, m, segs, min_s)
                                for m, segs in zip(mean, segments, strict=True)])
            eer = equal_error_rate(labels, after)[0]
            print(f"{label:<28} {eer * 100:6.2f}% {flagged[labels == 0].mean() * 100:13.1f}%"
                  f" {flagged[labels == 1].mean() * 100:13.1f}%")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="labelled data with a manifest (../shared/data)")
    parser.add_argument("--model", help="model folder (default: the bundled model)")
    parser.add_argument("--scores", type=Path, default=DEFAULT_SCORES,
                        help="window scores from scripts/fit_band.py (skipped if missing)")
    parser.add_argument("--calls", type=int, default=3, help="calls per speaker")
    parser.add_argument("--min-call", type=float, default=20.0)
    parser.add_argument("--max-call", type=float, default=45.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    detector = Detector(args.model, max_duration_s=None)
    # The same model with the threshold as its band: the segment rule on its own.
    point = Detector(args.model, max_duration_s=None, band=(detector.threshold,) * 2)
    detectors = [detector, point] if detector.band != point.band else [detector]
    clips = load_dataset(args.data)
    with without_decoder_noise():
        calls = build_calls(clips, n_calls=args.calls, min_call_s=args.min_call,
                            max_call_s=args.max_call, seed=args.seed)
    insert_table(detectors, calls)
    if args.scores.is_file():
        unseen_table(detectors, args.scores)
    else:
        print(f"\n{args.scores} missing: run scripts/fit_band.py for the unseen-protocol rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
