"""Command bodies that print, kept apart so ``cli.py`` stays the parser: ``check`` on this
machine, remote checks, speaker profiles, the speaker-reference protocol and the training
summary. Each takes typed parameters; ``cli.py`` maps its options onto them.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .cli import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE
from .formatting import CSV_FIELDS, human_lines, json_text
from .pool import analyze_paths


def speaker_profile(references: Sequence[str], options: dict[str, Any],
                     name: str | None = None) -> Any:
    """Build the profile once (recordings scored for artefacts too); warnings to stderr."""
    from .detector import Detector

    profile = Detector(**options).speaker_profile(list(references), name=name)
    for warning in profile.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return profile


def evaluate_reference(clips: Any, *, model_dir: str | None, allow_unverified: bool,
                       cache_dir: str | None, quiet: bool, as_json: bool,
                       output: str | None, data: Sequence[str]) -> int:
    """``evaluate --protocol reference``: print the report; returns the exit code."""
    from .detector import Detector
    from .reference_eval import evaluate_reference

    detector = Detector(model_dir, allow_unverified=allow_unverified,
                        max_duration_s=None)
    cache = Path(cache_dir) / "speaker-embeddings.npz" if cache_dir else None
    report = evaluate_reference(clips, detector, cache=cache, progress=not quiet)
    figures = {**report.to_dict(), "data": list(data), "model": detector.model_id}
    print(json.dumps(figures, indent=2) if as_json else report.format())
    if output:
        Path(output).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return EXIT_OK


def remote(url: str, files: Sequence[str], *, ws: bool, as_json: bool,
            api_key: str | None) -> int:
    from .client import RemoteError, ServerUnavailable, analyze_files

    rows: list[dict[str, Any]] = []
    rejected = False
    try:
        for path, outcome in analyze_files(url, files, ws=ws, api_key=api_key or None):
            if isinstance(outcome, RemoteError):
                rejected = True
                print(f"error: {path}: {outcome}", file=sys.stderr)
                rows.append({"path": str(path), **outcome.body,
                             **({"status": outcome.status} if outcome.status else {})})
            else:
                rows.append({"path": str(path), **outcome})
                if not as_json:
                    print("\n".join(human_lines(rows[-1])), flush=True)
    except ServerUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    # Missing extra, not a server URL, or handshake / API key refused: nothing will work.
    except (ImportError, ValueError, RemoteError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if as_json:
        print(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
    return EXIT_BAD_INPUT if rejected else EXIT_OK


def print_training_summary(metadata: Any, output: str, *,
                           reliability_plot: str | None = None) -> None:
    """What ``train`` prints: where the model went and its held-out figures."""
    print(f"model {metadata.model_id} written to {output}")
    for title, key in (("speaker-grouped cross-validation", "out_of_fold"),
                       ("calibration scores", "calibration")):
        summary = metadata.metrics[key]
        print(f"{title}: EER {summary['eer'] * 100:.2f}%  ROC-AUC {summary['roc_auc']:.4f}  "
              f"accuracy {summary['accuracy'] * 100:.2f}%  Brier {summary['brier']:.4f}")
    print(f"calibrated on: {metadata.metrics['protocol']}")
    if reliability_plot:
        from .plots import plot_reliability

        plot_reliability(metadata.metrics["reliability"], reliability_plot)
        print(f"plot written to {reliability_plot}")


def check_files(files: Sequence[Path], options: dict[str, Any], *, jobs: int,
                profile: Any, as_csv: bool, as_json: bool, single: bool, timeline: bool,
                quiet: bool, show_progress: bool, report: str | None) -> int:
    """``check`` on this machine: a row per file as it finishes (human, CSV or, at the
    end, JSON), errors on stderr, an optional HTML report; returns the exit code."""
    rows: list[dict[str, Any]] = []
    with analyze_paths(files, options, jobs=jobs, profile=profile) as results:
        csv_writer = None
        if as_csv:
            csv_writer = csv.DictWriter(sys.stdout, fieldnames=CSV_FIELDS, extrasaction="ignore")
            csv_writer.writeheader()
        write: Callable[..., None] = print
        if show_progress:  # tqdm is imported only here: it costs a one-file run's cold start
            from tqdm.auto import tqdm

            bar = tqdm(results, total=len(files), unit="file", file=sys.stderr, leave=False)
            results, write = bar, bar.write
        for row in results:
            rows.append(row)
            if "error" in row:
                write(f"error: {row['path']}: {row['error']}", file=sys.stderr)
            if csv_writer is not None:
                csv_writer.writerow(row)
                sys.stdout.flush()
            elif not as_json and "error" not in row:
                for line in human_lines(row, timeline=timeline, brief=quiet):
                    write(line, file=sys.stdout)
                sys.stdout.flush()
    if report:
        from .report import write_report

        write_report(report, rows, model_dir=options.get("model_dir"),
                     allow_unverified=bool(options.get("allow_unverified")))
    if as_json:
        print(json_text(rows, single=single, timeline=timeline))
    if any(row.get("internal") for row in rows):
        return EXIT_INTERNAL
    return EXIT_BAD_INPUT if any("error" in row for row in rows) else EXIT_OK
