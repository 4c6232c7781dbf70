"""Command line: ``deepfake-audio check | evaluate | train | serve``.

Every option can also come from an environment variable named
``DEEPFAKE_AUDIO_<OPTION>`` (e.g. ``DEEPFAKE_AUDIO_MODEL``, ``DEEPFAKE_AUDIO_JOBS``,
``DEEPFAKE_AUDIO_API_KEY``); a flag on the command line wins.

Exit codes: 0 success; 1 internal error (a bug: please report it); 2 usage
error; 3 at least one input could not be analysed; 4 the model could not be
loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from . import cli_scan
from ._version import __version__
from .audio import SUPPORTED_EXTENSIONS
from .exceptions import DeepfakeAudioError, InputError, ModelLoadError

logger = logging.getLogger("deepfake_audio")

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
EXIT_MODEL = 4
SERVER_HINT = 'the server needs the [server] extra: pip install "deepfake-audio[server]"'


def env(name: str, default: Any = None) -> Any:
    """Default for option ``name`` from ``DEEPFAKE_AUDIO_<NAME>``."""
    return os.environ.get("DEEPFAKE_AUDIO_" + name.upper().replace("-", "_"), default)


def env_flag(name: str) -> bool:
    return str(env(name, "")).strip().lower() in {"1", "true", "yes", "on"}


# --------------------------------------------------------------------------- stderr hygiene

# What libmpg123 prints while resyncing after a damaged MP3 frame.
_DECODER_NOISE = (b"[src/libmpg123", b"Note: Illegal Audio-MPEG-Header", b"Note: Trying to resync",
                  b"Note: Skipped ", b"Warning: Encountered more data", b"Warning: Big change")


@contextlib.contextmanager
def _without_decoder_noise() -> Iterator[None]:
    """Drop libmpg123's own warnings (printed by C code inside libsndfile) from fd 2.

    They look like our ``error:`` lines but are only the MP3 decoder resyncing after a
    damaged frame; the CLI promises one clear line per bad file. Everything else on
    stderr (our messages, progress bars, workers' output) passes through unchanged.
    """
    try:
        sys.stderr.flush()
        original = os.dup(2)
        read_fd, write_fd = os.pipe()
    except (OSError, ValueError):
        yield
        return
    os.dup2(write_fd, 2)
    os.close(write_fd)

    def pump() -> None:
        pending = b""
        with os.fdopen(read_fd, "rb", buffering=0) as source:
            while chunk := source.read(65536):
                *lines, pending = (pending + chunk).split(b"\n")
                out = b"".join(line + b"\n" for line in lines
                               if not line.startswith(_DECODER_NOISE))
                # Hold back only what could still become a noise line (keeps \r bars live).
                if pending and not any(noise.startswith(pending[: len(noise)])
                                       for noise in _DECODER_NOISE):
                    out, pending = out + pending, b""
                if out:
                    os.write(original, out)
        if pending and not pending.startswith(_DECODER_NOISE):
            os.write(original, pending)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # closes our last write end of the pipe: the pump sees EOF
        thread.join(timeout=2)
        os.close(original)


# --------------------------------------------------------------------------- check


def iter_audio_files(paths: Sequence[str]) -> Iterator[Path]:
    """Expand folders recursively (sorted); files are passed through as given."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS
            )
        else:
            yield path


_worker_detector: Any = None


def _init_worker(options: dict[str, Any], quiet: bool = False) -> None:
    global _worker_detector
    from .detector import Detector

    if quiet:  # pool workers: the parent already logged the model's warnings once
        logging.getLogger("deepfake_audio").setLevel(logging.ERROR)
    _worker_detector = Detector(**options)


def _analyze_one(path: Path) -> dict[str, Any]:
    """One file → a JSON-ready row; expected input problems become an ``error`` row."""
    try:
        result = _worker_detector.analyze(path)
    except InputError as exc:
        return {"path": str(path), "error": str(exc), "error_type": type(exc).__name__}
    except DeepfakeAudioError as exc:
        return {"path": str(path), "error": str(exc), "error_type": type(exc).__name__,
                "internal": True}
    except Exception as exc:  # a bug in us, not in the input: keep the batch going
        logger.debug("unexpected error on %s", path, exc_info=True)
        return {"path": str(path), "error": f"internal error: {type(exc).__name__}: {exc}",
                "error_type": type(exc).__name__, "internal": True}
    return {"path": str(path), **result.to_dict(timeline=True)}


def _human_line(row: dict[str, Any]) -> str:
    return (f"{row['path']}: {row['classification']} (confidence {row['confidence']:.3f},"
            f" raw_score {row['raw_score']:+.3f}, {row['duration_s']:.1f} s)")


CSV_FIELDS = ("path", "classification", "confidence", "raw_score", "probability_deepfake",
              "duration_s", "sample_rate", "model", "error")


def cmd_check(args: argparse.Namespace) -> int:
    # --- issue 15: --scheduler / --output / --resume run the archive scan (cli_scan.py) ---
    if cli_scan.wanted(args):
        return cli_scan.run(args)
    # --- end issue 15 ---
    from tqdm.auto import tqdm

    files = list(iter_audio_files(args.paths))
    if not files:
        print("error: no audio files found in the given paths", file=sys.stderr)
        return EXIT_BAD_INPUT
    options: dict[str, Any] = {
        "model_dir": args.model, "threshold": args.threshold,
        "max_duration_s": args.max_duration, "allow_unverified": args.allow_unverified_model,
    }
    try:
        _init_worker(options)  # also proves the model loads before any worker starts
    except ModelLoadError as exc:
        print(f"error: cannot load model: {exc}", file=sys.stderr)
        return EXIT_MODEL
    jobs = args.jobs if args.jobs > 0 else (os.cpu_count() or 1)
    jobs = min(jobs, len(files))
    show_progress = len(files) > 1 and not args.quiet
    if jobs > 1:
        executor = ProcessPoolExecutor(jobs, initializer=_init_worker,
                                       initargs=(options, True))
        rows_iter: Iterator[dict[str, Any]] = executor.map(_analyze_one, files, chunksize=1)
    else:
        executor = None
        rows_iter = map(_analyze_one, files)
    rows: list[dict[str, Any]] = []
    csv_writer = None
    if args.csv:
        csv_writer = csv.DictWriter(sys.stdout, fieldnames=CSV_FIELDS, extrasaction="ignore")
        csv_writer.writeheader()
    try:
        for row in tqdm(rows_iter, total=len(files), unit="file", disable=not show_progress or None,
                        file=sys.stderr, leave=False):
            rows.append(row)
            if "error" in row:
                print(f"error: {row['path']}: {row['error']}", file=sys.stderr)
            if csv_writer is not None:
                csv_writer.writerow(row)
                sys.stdout.flush()
            elif not args.json and "error" not in row:
                print(_human_line(row), flush=True)
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    if args.json:
        single = len(args.paths) == 1 and not Path(args.paths[0]).is_dir()
        payload: Any = rows[0] if single else rows
        if not args.timeline:
            for row in rows:
                row.pop("timeline", None)
        print(json.dumps(payload, indent=2))
    if any(row.get("internal") for row in rows):
        return EXIT_INTERNAL
    return EXIT_BAD_INPUT if any("error" in row for row in rows) else EXIT_OK


# --------------------------------------------------------------------------- train / evaluate


def cmd_train(args: argparse.Namespace) -> int:
    from . import training

    clips = [clip for data in args.data for clip in training.load_dataset(data)
             if clip.generator not in args.exclude_generator]
    settings = training.TrainSettings(C=args.C, augment_copies=args.augment, seed=args.seed,
                                      calibration=args.calibration)
    metadata = training.train(
        clips, args.output, settings=settings, jobs=args.jobs, progress=not args.quiet,
        cache_dir=Path(args.cache) if args.cache else None, model_id=args.model_id,
    )
    print(f"model {metadata.model_id} written to {args.output}")
    for title, key in (("speaker-grouped cross-validation", "out_of_fold"),
                       ("calibration scores", "calibration")):
        summary = metadata.metrics[key]
        print(f"{title}: EER {summary['eer'] * 100:.2f}%  ROC-AUC {summary['roc_auc']:.4f}  "
              f"accuracy {summary['accuracy'] * 100:.2f}%  Brier {summary['brier']:.4f}")
    print(f"calibrated on: {metadata.metrics['protocol']}")
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import run_evaluation

    return run_evaluation(args)


# --------------------------------------------------------------------------- serve


def _missing_extra_message(exc: ImportError) -> str:
    text = str(exc)
    return text if "deepfake-audio[server]" in text else f"{SERVER_HINT} ({text})"


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from .server.run import serve
    except ImportError as exc:
        print(f"error: {_missing_extra_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    return serve(args)


def cmd_remote(args: argparse.Namespace) -> int:
    try:
        from .client import run_remote
    except ImportError as exc:
        print(f"error: {_missing_extra_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    return run_remote(args)


# --------------------------------------------------------------------------- parser


def _env_list(name: str) -> list[str]:
    value = env(name)
    return [item.strip() for item in value.split(",") if item.strip()] if value else []


def _float_or_none(value: str | None) -> float | None:
    return None if value in (None, "", "none") else float(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepfake-audio",
        description="Tell genuine speech from synthetic speech.",
        epilog="Every option can also be set with DEEPFAKE_AUDIO_<OPTION> environment variables."
               " Exit codes: 0 ok, 1 internal error, 2 usage, 3 bad input, 4 model not loadable.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def model_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", metavar="DIR", default=env("model"),
                       help="model folder (default: the bundled model)")
        p.add_argument("--allow-unverified-model", action="store_true",
                       default=env_flag("allow_unverified_model"),
                       help="load a legacy model folder without model.json (unverified pickles)")

    check = sub.add_parser("check", help="classify audio files or folders")
    check.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders")
    fmt = check.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", default=env_flag("json"),
                     help="JSON output (an object for one file, else a list)")
    fmt.add_argument("--csv", action="store_true", default=env_flag("csv"), help="CSV output")
    check.add_argument("--jobs", "-j", type=int, default=env("jobs", "1"),
                       help="parallel worker processes (0: one per CPU)")
    check.add_argument("--threshold", type=_float_or_none, default=env("threshold"),
                       help="decision threshold on raw_score (default: the model's)")
    check.add_argument("--max-duration", type=float, default=env("max_duration", "600"),
                       help="longest audio accepted, seconds (default 600)")
    check.add_argument("--timeline", action="store_true", default=env_flag("timeline"),
                       help="include per-window scores in --json output")
    check.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    model_options(check)
    cli_scan.add_options(check)  # issue 15: --scheduler, --output, --resume
    check.set_defaults(func=cmd_check)

    evaluate = sub.add_parser("evaluate", help="score a labelled dataset: accuracy, EER, ROC-AUC")
    evaluate.add_argument("data", nargs="+", metavar="DATA",
                          help="manifest CSV, folder with manifest.csv, or folder with real/ fake/")
    evaluate.add_argument("--protocol", default=env("protocol", "model"),
                          choices=["model", "leave-one-generator-out", "leave-one-corpus-out",
                                   "unseen", "speaker-cv"],
                          help="'model' scores the given model; the others retrain fold models"
                               " with the model's settings")
    evaluate.add_argument("--plot", metavar="PNG", default=env("plot"),
                          help="write a ROC/DET plot (needs matplotlib)")
    evaluate.add_argument("--json", metavar="FILE", default=env("json_out"),
                          help="also write all figures as JSON")
    evaluate.add_argument("--exclude-generator", action="append", metavar="NAME",
                          default=_env_list("exclude_generator"),
                          help="leave out clips of this generator (repeatable)")
    evaluate.add_argument("--jobs", "-j", type=int, default=env("jobs", "1"))
    evaluate.add_argument("--cache", metavar="DIR", default=env("cache"),
                          help="cache window features here between runs (held-out protocols)")
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    model_options(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    train = sub.add_parser("train", help="train a model from labelled data")
    train.add_argument("data", nargs="+", metavar="DATA",
                       help="manifest CSV, folder with manifest.csv, or folder with real/ fake/")
    train.add_argument("-o", "--output", required=env("output") is None, default=env("output"),
                       metavar="DIR", help="where to write the model")
    train.add_argument("--C", type=float, default=env("c", "10.0"), help="SVM C")
    train.add_argument("--augment", type=int, default=env("augment", "1"),
                       help="augmented copies per clip")
    train.add_argument("--seed", type=int, default=env("seed", "0"))
    train.add_argument("--calibration", choices=["unseen", "speaker-cv"],
                       default=env("calibration", "unseen"),
                       help="scores the threshold and Platt calibration are fitted on: genuine"
                            " clips leave-one-corpus-out and fakes leave-one-generator-out"
                            " (default), or speaker-grouped cross-validation")
    train.add_argument("--jobs", "-j", type=int, default=env("jobs", "1"))
    train.add_argument("--cache", metavar="DIR", default=env("cache"),
                       help="cache window features here between runs")
    train.add_argument("--model-id", default=env("model_id"))
    train.add_argument("--exclude-generator", action="append", metavar="NAME",
                       default=_env_list("exclude_generator"),
                       help="leave out clips of this generator (repeatable)")
    train.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=cmd_train)

    serve = sub.add_parser("serve", help="run the HTTP + WebSocket API (needs the [server] extra)")
    serve.add_argument("--host", default=env("host", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=env("port", "8000"))
    serve.add_argument("--workers", type=int, default=env("workers", "1"))
    serve.add_argument("--api-key", default=env("api_key"),
                       help="require this key (X-API-Key header or api_key query parameter)")
    serve.add_argument("--cors-origins", default=env("cors_origins", ""),
                       help="comma-separated allowed origins ('*' for any)")
    serve.add_argument("--max-upload-mb", type=float, default=env("max_upload_mb", "25"))
    serve.add_argument("--max-duration", type=float, default=env("max_duration", "600"))
    serve.add_argument("--max-concurrency", type=int, default=env("max_concurrency", "0"),
                       help="analyses in flight (0: number of CPUs)")
    serve.add_argument("--max-queue", type=int, default=env("max_queue", "16"),
                       help="requests allowed to wait before 429")
    serve.add_argument("--log-level", default=env("log_level", "info"))
    model_options(serve)
    serve.set_defaults(func=cmd_serve)

    remote = sub.add_parser("remote", help="send files to a running server")
    remote.add_argument("url", help="server base URL, e.g. http://127.0.0.1:8000")
    remote.add_argument("files", nargs="+", metavar="FILE")
    remote.add_argument("--ws", action="store_true", help="use the WebSocket API")
    remote.add_argument("--json", action="store_true", help="JSON output")
    remote.add_argument("--api-key", default=env("api_key"))
    remote.set_defaults(func=cmd_remote)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command in ("check", "evaluate", "train"):
            with _without_decoder_noise():
                return int(args.func(args))
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ModelLoadError as exc:
        print(f"error: cannot load model: {exc}", file=sys.stderr)
        return EXIT_MODEL
    except DeepfakeAudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # last resort: one line, not a traceback
        logger.debug("internal error", exc_info=True)
        print(f"internal error: {type(exc).__name__}: {exc} (run with -vv for details)",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())
