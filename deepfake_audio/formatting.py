"""Plain-text and CSV renderings of analysis rows (``AnalysisResult.to_dict()`` plus ``path``).

Pure functions used by the CLI's ``check`` output; no argument parsing here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

#: Columns of ``deepfake-audio check --csv``, in order.
CSV_FIELDS = ("path", "classification", "verdict", "confidence", "raw_score",
              "probability_deepfake", "duration_s", "sample_rate", "model", "channel", "error")


def spans_text(items: Sequence[dict[str, Any]]) -> str:
    """``0.0–3.6 s, 9.0–12.0 s`` for items with ``start_s``/``end_s``."""
    return ", ".join(f"{s['start_s']:.1f}\u2013{s['end_s']:.1f} s" for s in items)


def summary(row: dict[str, Any]) -> str:
    """``deepfake  p=0.98  3.6 s audio  4 of 5 windows flagged (0.0–3.6 s)``."""
    text = (f"{row.get('verdict', row['classification']):<12}"
            f" p={row['probability_deepfake']:.2f}  {row.get('duration_s', 0.0):.1f} s audio")
    timeline = row.get("timeline")
    if timeline:
        flagged = sum(w["classification"] == "deepfake" for w in timeline)
        text += f"  {flagged} of {len(timeline)} windows flagged"
    if row.get("segments"):
        text += f" ({spans_text(row['segments'])})"
    speaker = row.get("speaker")
    return f"{text}  {speaker['summary']}" if speaker else text


def _window_line(window: dict[str, Any]) -> str:
    probability = window.get("probability_deepfake")
    score = "      " if probability is None else f"p={probability:.2f}"  # no-speech window
    return (f"  {window['start_s']:6.1f}\u2013{window['end_s']:.1f} s"
            f"  {score}  {window['classification']}")


def human_lines(row: dict[str, Any], *, timeline: bool = False,
                brief: bool = False) -> list[str]:
    """One labelled line per file (``brief``: just the verdict), then its channels (when
    analysed separately) and, with ``timeline``, one line per window."""
    if brief:
        return [f"{row['path']}: {row.get('verdict', row['classification'])}"]
    lines = [f"{row['path']}: {summary(row)}"]
    for i, channel in enumerate(row.get("channels") or []):
        if isinstance(channel, dict) and "probability_deepfake" in channel:
            lines.append(f"  channel {channel.get('channel', i)}: {summary(channel)}")
    if timeline:
        lines += [_window_line(w) for w in row.get("timeline") or []]
    return lines


def json_text(rows: list[dict[str, Any]], *, single: bool, timeline: bool) -> str:
    """``check --json``: one object (``single``) or a list; windows only with ``timeline``."""
    if not timeline:
        rows = [{k: v for k, v in row.items() if k != "timeline"} for row in rows]
    return json.dumps(rows[0] if single else rows, indent=2)
