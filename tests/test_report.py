"""The HTML report: its content, and that it renders in real headless Chromium with no requests."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest

from deepfake_audio.report import VERDICT_COLOURS, render_report, timeline_svg

CHROMIUM = os.environ.get("DEEPFAKE_AUDIO_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "build" / "screenshots"


@pytest.fixture(scope="module")
def rows(detector, real_clip, fake_clip) -> list[dict]:
    from deepfake_audio.audio import load_audio

    real = load_audio(real_clip, target_sr=16000).samples
    fake = load_audio(fake_clip, target_sr=16000).samples
    call = np.concatenate([real] * 3 + [fake, fake] + [real] * 3)
    results = [(str(real_clip), detector.analyze(real_clip)),
               (str(fake_clip), detector.analyze(fake_clip)),
               ("call with <insert> & more.wav", detector.analyze((call, 16000)))]
    return [*({"path": path, **r.to_dict()} for path, r in results),
            {"path": "broken.wav", "error": "not an audio file"}]


def test_report_holds_every_file_and_is_self_contained(rows, detector):
    page = render_report(rows, calibration=detector.metadata.calibration)
    assert page.startswith("<!DOCTYPE html>")
    for row in rows:
        assert Path(row["path"]).name.replace("<", "&lt;").replace("&", "&amp;")[:10] in page
    assert "call with &lt;insert&gt; &amp; more.wav" in page  # escaped, not markup
    assert page.count("<svg") == 3 and "not an audio file" in page
    assert detector.model_id in page
    for needle in ("<script", "<link", "src=", "url(", "@import"):
        assert needle not in page


def test_timeline_plot_draws_windows_segments_band_and_threshold(rows, detector):
    call = rows[2]
    t = detector.threshold
    svg = timeline_svg({**call, "band": [t - 0.5, t + 0.5]}, detector.metadata.calibration)
    assert svg.count('class="window"') == len(call["timeline"])
    assert svg.count('class="segment"') == len(call["segments"]) >= 1
    assert svg.count('class="band"') == 1 and svg.count('class="threshold"') == 1
    # no band drawn when the band is the threshold alone
    assert 'class="band"' not in timeline_svg({**call, "band": [t, t]},
                                              detector.metadata.calibration)
    # the shaded segment spans the merged windows' time range
    plot_w = 720 - 44 - 24
    seg = call["segments"][0]
    x = float(re.search(r'class="segment" x="([\d.]+)"', svg).group(1))
    assert x == pytest.approx(44 + plot_w * seg["start_s"] / call["duration_s"], abs=0.1)


def test_channels_get_their_own_plot(rows, detector):
    row = {**rows[0], "channels": [{**rows[0], "channel": 0}, {**rows[1], "channel": 1}]}
    page = render_report([row], calibration=detector.metadata.calibration)
    assert page.count("<svg") == 3 and "channel 0" in page and "channel 1" in page


@pytest.mark.browser
@pytest.mark.timeout(120)
def test_report_renders_in_chromium(rows, detector, tmp_path):
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no Chromium binary at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    image = pytest.importorskip("PIL.Image")
    report = tmp_path / "report.html"
    report.write_text(render_report(rows, calibration=detector.metadata.calibration),
                      encoding="utf-8")
    with sync_api.sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=["--no-sandbox", "--disable-gpu",
                                               "--disable-dev-shm-usage"])
        except sync_api.Error as exc:  # pragma: no cover - environment problem
            pytest.skip(f"cannot launch {CHROMIUM}: {exc}")
        try:
            page = browser.new_page(viewport={"width": 900, "height": 900})
            requested: list[str] = []
            page.on("request", lambda req: requested.append(req.url))
            page.goto(report.as_uri())
            page.wait_for_load_state("networkidle")
            assert requested == [report.as_uri()]
            text = page.inner_text("body")
            for row in rows:
                assert Path(row["path"]).name in text
            assert page.locator("table tbody tr").count() == len(rows)
            # every plot was laid out with a real size
            sizes = page.evaluate("() => Array.from(document.querySelectorAll('svg'))"
                                  ".map(s => s.getBoundingClientRect().height)")
            assert len(sizes) == 3 and all(h > 50 for h in sizes)
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            png = page.screenshot(full_page=True, path=str(SCREENSHOTS / "report.png"))
        finally:
            browser.close()
    picture = image.open(io.BytesIO(png)).convert("RGB")
    colours = picture.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 20  # not a blank page
    # every verdict's badge colour is on screen
    pixels = np.asarray(picture).reshape(-1, 3)
    for verdict in {r["verdict"] for r in rows if "verdict" in r}:
        rgb = tuple(int(VERDICT_COLOURS[verdict][i:i + 2], 16) for i in (1, 3, 5))
        assert (pixels == rgb).all(axis=1).any(), verdict
