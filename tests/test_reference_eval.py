"""The reference protocol: recording keys, leave-one-recording-out trials, the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deepfake_audio import DeepfakeAudioError
from deepfake_audio.datasets import Clip, load_dataset
from deepfake_audio.reference_eval import (
    evaluate_reference,
    recording_key,
    reference_trials,
    synthesis_kind,
)

DATA = Path(__file__).parent / "data"


def test_platform_and_noise_copies_are_one_recording():
    stem = "online-2_clean-noisy-real_clean-3588_F_theam_07_anony_56_real"
    copies = [Clip(Path(f"real/rtcfake/{stem}{suffix}.flac"), 0, "rtcfake", speaker="3588")
              for suffix in ("", "_zoom", "_rain_wechat")]
    assert len({recording_key(c) for c in copies}) == 1
    other = Clip(Path("real/rtcfake/offline-1_TTS-test-EN-2827_M_furth_04_defoe_62_real.flac"), 0,
                 "rtcfake", speaker="3588")
    assert recording_key(other) != recording_key(copies[0])


def test_trials_leave_the_own_recording_out():
    clips = [Clip(Path("a1.wav"), 0, speaker="a"), Clip(Path("a2.wav"), 0, speaker="a"),
             Clip(Path("b1.wav"), 0, speaker="b"),
             Clip(Path("a-clone.wav"), 1, generator="xtts", speaker="a"),
             Clip(Path("b-clone.wav"), 1, generator="xtts", speaker="b"),
             Clip(Path("c-clone.wav"), 1, generator="xtts", speaker="c")]
    trials = {t.index: t.references for t in reference_trials(clips, np.ones(6, bool))}
    assert trials == {0: (1,), 1: (0,), 3: (0, 1), 4: (2,)}  # b1 alone, c has no genuine clip


def test_synthesis_kinds():
    assert synthesis_kind(Clip(Path("x"), 1, generator="kan-bayashi_hifigan",
                               speaker="ljspeech")) == "neural vocoder"
    assert synthesis_kind(Clip(Path("x"), 1, generator="matcha-tts",
                               speaker="ljspeech")) == "neural TTS"
    assert synthesis_kind(Clip(Path("x"), 1, generator="xtts", speaker="vctk-p363")) \
        == "voice cloning"


@pytest.fixture
def small_dataset(tmp_path) -> Path:
    samples, sr = sf.read(DATA / "real_librispeech_150.flac", dtype="float32")
    third = len(samples) // 3
    for k in range(3):
        sf.write(tmp_path / f"s150_{k}.wav", samples[k * third:(k + 1) * third], sr)
    (tmp_path / "espeak.wav").write_bytes((DATA / "fake_espeak.wav").read_bytes())
    rows = ["path,label,source,generator,speaker"]
    rows += [f"s150_{k}.wav,real,librispeech,human,150" for k in range(3)]
    rows += ["espeak.wav,fake,tts,espeak_us,150"]
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_evaluate_reference_on_a_small_dataset(small_dataset, detector):
    report = evaluate_reference(load_dataset(small_dataset), detector, progress=False,
                                cache=small_dataset / "emb.npz")
    assert (report.genuine_trials, report.synthetic_trials, report.speakers) == (3, 1, 1)
    assert [row.family for row in report.families] == ["espeak_us"]
    assert [row.family for row in report.kinds] == ["voice cloning"]
    data = report.to_dict()
    assert data["protocol"] == "reference" and data["pooled"]["n"] == 1
    assert "espeak_us" in report.format()
    assert (small_dataset / "emb.npz").is_file()
    again = evaluate_reference(load_dataset(small_dataset), detector, progress=False,
                               cache=small_dataset / "emb.npz")
    assert again.to_dict() == data


def test_evaluate_reference_needs_two_recordings_of_a_speaker(small_dataset, detector):
    (small_dataset / "manifest.csv").write_text(
        "path,label,source,generator,speaker\ns150_0.wav,real,x,human,150\n"
        "espeak.wav,fake,tts,espeak_us,150\n")
    with pytest.raises(DeepfakeAudioError, match="two genuine recordings"):
        evaluate_reference(load_dataset(small_dataset), detector, progress=False)
