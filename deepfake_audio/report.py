"""A self-contained HTML report of analysed files (``deepfake-audio check --report``).

One HTML string, no external requests (inline CSS and hand-written SVG, no script): a
summary table of every file, then per file its verdict, a timeline of window
probabilities with the threshold and the inconclusive band drawn and flagged segments
shaded, its channels when they were analysed separately, and the model id.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._version import __version__
from .model import Calibration, load_model

#: Colour of each verdict (the demo pages use the same: green, red, amber).
VERDICT_COLOURS = {"real": "#1b7f3b", "deepfake": "#b3261e", "inconclusive": "#b26a00"}
_WIDTH, _HEIGHT, _LEFT, _RIGHT, _TOP, _BOTTOM = 720, 180, 44, 24, 10, 28

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;
max-width:780px;padding:0 1rem;color:#1d1d1f;background:#fff}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.1rem;margin:2rem 0 .3rem;
word-break:break-all}.meta,.guide{color:#555;font-size:.9rem}
.guide{border-left:4px solid #b26a00;padding:.3rem .8rem;background:#fff8ec}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:.7rem;color:#fff;
font-weight:600;font-size:.85rem}
.error{color:#b3261e}svg{display:block;margin:.4rem 0;max-width:100%;height:auto}
svg text{font:11px system-ui,sans-serif;fill:#444}
"""


def _badge(verdict: str) -> str:
    colour = VERDICT_COLOURS.get(verdict, "#555")
    return f'<span class="badge" style="background:{colour}">{html.escape(verdict)}</span>'


def _flagged(row: Mapping[str, Any]) -> str:
    timeline = row.get("timeline") or []
    flagged = sum(w["classification"] == "deepfake" for w in timeline)
    return f"{flagged} of {len(timeline)}"


def _segments_text(row: Mapping[str, Any]) -> str:
    return ", ".join(f"{s['start_s']:.1f}\u2013{s['end_s']:.1f} s"
                     f" (p={s['probability_deepfake']:.2f})"
                     for s in row.get("segments") or []) or "none"


def timeline_svg(row: Mapping[str, Any], calibration: Calibration) -> str:
    """SVG plot of one result's window probabilities over time.

    Parameters
    ----------
    row : mapping
        :meth:`AnalysisResult.to_dict` output (with its timeline).
    calibration : Calibration
        The model's calibration, to draw the threshold and band (stored on the raw score)
        on the probability axis.

    Returns
    -------
    str
        An ``<svg>`` element: flagged segments shaded red, the band amber, the threshold
        dashed, one dot per window at its centre joined by a line.
    """
    timeline = row.get("timeline") or []
    duration = max(float(row.get("duration_s") or 0.0),
                   max((w["end_s"] for w in timeline), default=0.0), 1e-3)
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM

    def x(t: float) -> float:
        return _LEFT + plot_w * t / duration

    def y(p: float) -> float:
        return _TOP + plot_h * (1.0 - p)

    def prob(raw: float) -> float:
        return float(calibration.probability_deepfake(raw))

    low, high = (prob(v) for v in row.get("band", (row["threshold"], row["threshold"])))
    threshold = prob(row["threshold"])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}"'
             f' viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" aria-label="window probabilities'
             f' over time">',
             f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa"'
             ' stroke="#ccc"/>']
    for seg in row.get("segments") or []:
        parts.append(f'<rect class="segment" x="{x(seg["start_s"]):.1f}" y="{_TOP}"'
                     f' width="{max(x(seg["end_s"]) - x(seg["start_s"]), 1):.1f}"'
                     f' height="{plot_h}" fill="#b3261e" fill-opacity="0.13"/>')
    if high > low:
        parts.append(f'<rect class="band" x="{_LEFT}" y="{y(high):.1f}" width="{plot_w}"'
                     f' height="{y(low) - y(high):.1f}" fill="#b26a00" fill-opacity="0.15"/>')
    parts.append(f'<line class="threshold" x1="{_LEFT}" x2="{_LEFT + plot_w}"'
                 f' y1="{y(threshold):.1f}" y2="{y(threshold):.1f}" stroke="#333"'
                 ' stroke-dasharray="5 4"/>')
    for p in (0.0, 0.5, 1.0):
        parts.append(f'<text x="{_LEFT - 6}" y="{y(p) + 4:.1f}" text-anchor="end">{p:.1f}</text>')
    for i in range(6):
        t = duration * i / 5
        parts.append(f'<text x="{x(t):.1f}" y="{_HEIGHT - 10}" text-anchor="middle">'
                     f'{t:.1f} s</text>')
    points = [(x((w["start_s"] + w["end_s"]) / 2), y(w["probability_deepfake"]),
               w["classification"]) for w in timeline]
    if len(points) > 1:
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#555" stroke-width="1.2"/>')
    for px, py, label in points:
        parts.append(f'<circle class="window" cx="{px:.1f}" cy="{py:.1f}" r="3"'
                     f' fill="{VERDICT_COLOURS.get(label, "#555")}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _file_section(index: int, row: Mapping[str, Any], calibration: Calibration) -> str:
    path = html.escape(str(row.get("path", f"file {index + 1}")))
    if "error" in row:
        return (f'<section id="file-{index}"><h2>{path}</h2>'
                f'<p class="error">not analysed: {html.escape(str(row["error"]))}</p></section>')
    verdict = str(row.get("verdict", row["classification"]))
    low, high = row.get("band", (row["threshold"], row["threshold"]))
    out = [f'<section id="file-{index}"><h2>{path}</h2>',
           f'<p>{_badge(verdict)} p(deepfake) = {row["probability_deepfake"]:.2f} \u00b7'
           f' {row.get("duration_s", 0.0):.1f} s audio \u00b7 {_flagged(row)} windows flagged'
           f' \u00b7 segments: {html.escape(_segments_text(row))}</p>',
           timeline_svg(row, calibration),
           f'<p class="meta">raw_score {row["raw_score"]:+.3f} \u00b7 threshold'
           f' {row["threshold"]:+.3f} \u00b7 band [{low:+.3f}, {high:+.3f}] \u00b7 sample rate'
           f' {row.get("sample_rate", "?")} Hz \u00b7 model {html.escape(str(row.get("model")))}'
           '</p>']
    for i, channel in enumerate(row.get("channels") or []):
        if isinstance(channel, Mapping) and "probability_deepfake" in channel:
            name = html.escape(str(channel.get("channel", i)))
            verdict = str(channel.get("verdict", channel.get("classification", "?")))
            out += [f'<h3>channel {name}: {_badge(verdict)}'
                    f' p(deepfake) = {channel["probability_deepfake"]:.2f}</h3>',
                    timeline_svg({**row, **channel}, calibration)]
    out.append("</section>")
    return "".join(out)


def render_report(rows: Sequence[Mapping[str, Any]], *, calibration: Calibration,
                  title: str = "deepfake-audio report") -> str:
    """Render analysed files as one self-contained HTML page.

    Parameters
    ----------
    rows : sequence of mapping
        Per file ``{"path": ..., **AnalysisResult.to_dict()}`` (timeline included), or
        ``{"path": ..., "error": ...}`` for a file that could not be analysed.
    calibration : Calibration
        The model's calibration (``Detector.metadata.calibration``), used to draw the
        threshold and band on the probability axis.
    title : str
        Page title.

    Returns
    -------
    str
        A complete HTML document that loads nothing from elsewhere.
    """
    models = sorted({str(r["model"]) for r in rows if "model" in r})
    summary = []
    for i, row in enumerate(rows):
        path = html.escape(str(row.get("path", f"file {i + 1}")))
        link = f'<a href="#file-{i}">{path}</a>'
        if "error" in row:
            summary.append(f'<tr><td>{link}</td><td colspan="4" class="error">'
                           f'{html.escape(str(row["error"]))}</td></tr>')
            continue
        summary.append(
            f'<tr><td>{link}</td><td>{_badge(str(row.get("verdict", row["classification"])))}'
            f'</td><td class="num">{row["probability_deepfake"]:.2f}</td>'
            f'<td class="num">{row.get("duration_s", 0.0):.1f} s</td>'
            f'<td class="num">{_flagged(row)}</td></tr>')
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "".join([
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">{len(rows)} files \u00b7 model {html.escape(", ".join(models) or "?")}'
        f" \u00b7 deepfake-audio {__version__} \u00b7 {created}</p>",
        '<p class="guide"><b>How to read this.</b> Each file is <b>real</b>, <b>deepfake</b> or'
        " <b>inconclusive</b> (its score fell in the amber band, or a sustained run of flagged"
        " windows disagrees with the average).<br>In each plot a dot is one analysis window's"
        " probability of synthetic speech; red shading marks runs of flagged windows, the"
        " dashed line is the threshold. A verdict is a reason to look closer, not proof.</p>",
        '<table><thead><tr><th>file</th><th>verdict</th><th>p(deepfake)</th><th>audio</th>'
        "<th>windows flagged</th></tr></thead><tbody>",
        *summary,
        "</tbody></table>",
        *(_file_section(i, row, calibration) for i, row in enumerate(rows)),
        "</body></html>\n",
    ])


__all__ = ["VERDICT_COLOURS", "render_report", "timeline_svg", "write_report"]


def write_report(path: str | Path, rows: Sequence[Mapping[str, Any]], *,
                 model_dir: str | Path | None = None, allow_unverified: bool = False) -> None:
    """:func:`render_report` with the calibration of the model in ``model_dir``, to ``path``."""
    calibration = load_model(model_dir, allow_unverified=allow_unverified).metadata.calibration
    Path(path).write_text(render_report(rows, calibration=calibration), encoding="utf-8")
