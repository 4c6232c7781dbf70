"""Command line: ``deepfake-audio check | profile | evaluate | train | serve | remote``.

The only module that parses arguments and prints: each sub-command is a handler
registered with :func:`command`, its options declared beside it; the handler calls
the library and prints what it returns.

Every option can also come from an environment variable named
``DEEPFAKE_AUDIO_<OPTION>`` (e.g. ``DEEPFAKE_AUDIO_MODEL``, ``DEEPFAKE_AUDIO_JOBS``,
``DEEPFAKE_AUDIO_API_KEY``); a flag on the command line wins.

Exit codes: 0 success; 1 internal error (a bug: please report it); 2 usage
error, or data that cannot support a training/evaluation run; 3 at least one input
could not be analysed; 4 the model could not be loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, cast

from ._version import __version__
from .config import env_name, env_value, parse_band, parse_bool, parse_float_or_none
from .exceptions import ConfigurationError, DeepfakeAudioError, ModelLoadError, TrainingError

logger = logging.getLogger("deepfake_audio")

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
EXIT_MODEL = 4
SERVER_HINT = 'the server needs the [server] extra: pip install "deepfake-audio[server]"'


Handler = Callable[[argparse.Namespace], int]


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Option:
    """One ``add_argument`` call; options (not positionals) default to ``DEEPFAKE_AUDIO_<DEST>``."""

    flags: tuple[str, ...]
    kwargs: dict[str, Any]
    env: bool = True
    #: Options sharing this name exclude each other.
    exclusive: str | None = None


def option(*flags: str, env: bool = True, exclusive: str | None = None, **kwargs: Any) -> Option:
    """An option of a sub-command: ``add_argument``'s arguments, plus where its default
    may come from (``env``) and which options it excludes (``exclusive``)."""
    return Option(flags, kwargs, env, exclusive)


@dataclass(frozen=True)
class Command:
    """A registered sub-command (see :func:`command`)."""

    name: str
    help: str
    handler: Handler
    options: tuple[Option, ...]
    #: Builds options that need an optional extra, on first use of this sub-command only.
    lazy_options: Callable[[], Sequence[Option]] | None = None
    #: Filter the MP3 decoder's own warnings off stderr while it runs.
    quiet_decoder: bool = False


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, *options: Option,
            lazy_options: Callable[[], Sequence[Option]] | None = None,
            quiet_decoder: bool = False) -> Callable[[Handler], Handler]:
    """Register the decorated handler as sub-command ``name`` with ``options``."""

    def register(handler: Handler) -> Handler:
        COMMANDS[name] = Command(name, help, handler, options, lazy_options, quiet_decoder)
        return handler

    return register


def _dest(opt: Option) -> str:
    if "dest" in opt.kwargs:
        return str(opt.kwargs["dest"])
    long = next((f for f in opt.flags if f.startswith("--")), opt.flags[0])
    return long.lstrip("-").replace("-", "_")


class _Parser(argparse.ArgumentParser):
    """Adds a sub-command's lazy options on first use (so ``check`` never imports the server)
    and turns the raw ``DEEPFAKE_AUDIO_*`` defaults of yes/no flags into booleans."""

    lazy: Callable[[], Sequence[Option]] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bools: set[str] = set()
        self.exclusive_groups: dict[str, Any] = {}

    def add(self, opt: Option) -> None:
        kwargs = dict(opt.kwargs)
        dest = _dest(opt)
        raw = env_value(dest) if opt.env and opt.flags[0].startswith("-") else None
        action = kwargs.get("action")
        if action == "store_true":
            self.bools.add(dest)  # a raw variable is checked by parse_bool after parsing
            if raw is not None:
                kwargs["default"] = raw
        elif action == "append":
            if raw:
                kwargs["default"] = [item.strip() for item in raw.split(",") if item.strip()]
            kwargs.setdefault("default", [])
        elif raw is not None:
            kwargs["default"] = raw  # argparse applies ``type`` to string defaults
            kwargs.pop("required", None)
        target: Any = self
        if opt.exclusive is not None:
            if opt.exclusive not in self.exclusive_groups:
                self.exclusive_groups[opt.exclusive] = self.add_mutually_exclusive_group()
            target = self.exclusive_groups[opt.exclusive]
        target.add_argument(*opt.flags, **kwargs)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self.lazy is not None:
            lazy, self.lazy = self.lazy, None
            for opt in lazy():
                self.add(opt)
        parsed, extras = super().parse_known_args(args, namespace)
        for dest in self.bools:
            value = getattr(parsed, dest, None)
            if isinstance(value, str):
                try:
                    setattr(parsed, dest, parse_bool(value))
                except ValueError as exc:
                    self.error(f"{env_name(dest)}: {exc}")
        return parsed, extras


MODEL = (
    option("--model", metavar="DIR", help="model folder (default: the bundled model)"),
    option("--allow-unverified-model", action="store_true",
           help="load a legacy model folder without model.json (unverified pickles)"),
)
JOBS = option("--jobs", "-j", type=int, default="1",
              help="parallel worker processes (0: one per CPU)")
QUIET = option("-q", "--quiet", action="store_true", help="no progress bars")
DATA = option("data", nargs="+", metavar="DATA",
              help="manifest CSV, folder with manifest.csv, or folder with real/ fake/")
EXCLUDE = option("--exclude-generator", action="append", metavar="NAME",
                 help="leave out clips of this generator (repeatable; variable: comma-separated)")
CACHE = option("--cache", metavar="DIR", help="cache window features here between runs")
NO_SPEECH_GATE = option("--no-speech-gate", action="store_true",
                        help="score every window, also silence, noise, music and tones")


# --------------------------------------------------------------------------- check


@command(
    "check", "classify audio files or folders",
    option("paths", nargs="+", metavar="PATH", help="audio files or folders"),
    option("--json", action="store_true", exclusive="format",
           help="JSON output (an object for one file, else a list)"),
    option("--csv", action="store_true", exclusive="format", help="CSV output"),
    JOBS,
    option("--threshold", type=parse_float_or_none,
           help="decision threshold on raw_score (default: the model's)"),
    option("--max-duration", type=parse_float_or_none, default="none",
           help="longest audio accepted, seconds (default: no limit; long files are"
                " analysed block by block in bounded memory)"),
    option("--channels", choices=["auto", "mix", "separate"], default="auto",
           help="analyse channels one by one (a call) or mixed; auto: separately when"
                " they differ"),
    NO_SPEECH_GATE,
    option("--band", nargs=2, metavar=("LOW", "HIGH"),
           help="inconclusive band on raw_score, containing the threshold (default: the"
                " model's; variable: \"LOW HIGH\")"),
    option("--timeline", action="store_true", help="also print per-window scores"),
    option("--report", metavar="HTML",
           help="also write a self-contained HTML report of every file to HTML"),
    option("-q", "--quiet", action="store_true",
           help="no progress bar; human output gives only each file's verdict"),
    option("--scheduler", metavar="ADDR",
           help="run on this Dask scheduler, e.g. tcp://host:8786; paths must be visible to"
                " the workers, URLs (s3://, gs://, http(s)://, file://) are read by them"
                " (needs the [dask] extra)"),
    option("--output", metavar="FILE",
           help="write one row per file to FILE (.jsonl, .csv or .parquet) as results arrive"),
    option("--resume", action="store_true",
           help="continue --output FILE: skip inputs already in it with the same content"
                " hash and model id"),
    option("--reference", "-r", action="append", metavar="REF_OR_PROFILE",
           help="genuine recording of the claimed speaker, or a saved .profile (repeatable;"
                " variable: comma-separated): adds the speaker check and fuses it"),
    *MODEL,
    quiet_decoder=True,
)
def cmd_check(args: argparse.Namespace) -> int:
    if args.scheduler or args.output or args.resume:
        from . import cli_scan

        return cli_scan.run(
            args.paths, scheduler=args.scheduler, output=args.output, resume=args.resume,
            jobs=args.jobs, quiet=args.quiet, model_dir=args.model, threshold=args.threshold,
            max_duration_s=args.max_duration, allow_unverified=args.allow_unverified_model)
    from .pool import iter_audio_files

    band = parse_band(args.band)  # ConfigurationError: exit 2 (main)
    files = list(iter_audio_files(args.paths))
    if not files:
        print("error: no audio files found in the given paths", file=sys.stderr)
        return EXIT_BAD_INPUT
    options = {"model_dir": args.model, "threshold": args.threshold, "band": band,
               "max_duration_s": args.max_duration, "allow_unverified": args.allow_unverified_model,
               "channels": args.channels, "speech_gate": False if args.no_speech_gate else None}
    # Decided before stderr went through the decoder-noise pipe, which is never a terminal.
    show_progress = len(files) > 1 and not args.quiet and args.stderr_is_terminal
    from .cli_tasks import check_files, speaker_profile

    profile = speaker_profile(args.reference, options) if args.reference else None
    single = len(args.paths) == 1 and not Path(args.paths[0]).is_dir()
    return check_files(files, options, jobs=args.jobs, profile=profile, as_csv=args.csv,
                       as_json=args.json, single=single, timeline=args.timeline,
                       quiet=args.quiet, show_progress=show_progress, report=args.report)


# --------------------------------------------------------------------------- speaker profiles


@command(
    "profile", "create a speaker profile from genuine recordings (for check --reference)",
    option("action", choices=["create"], help="what to do"),
    option("name", help="who the recordings are of"),
    option("references", nargs="+", metavar="REF", help="genuine recordings of that person"),
    option("-o", "--output", metavar="FILE", help="where to write it (default: NAME.profile)"),
    *MODEL,
    quiet_decoder=True,
)
def cmd_profile(args: argparse.Namespace) -> int:
    options = {"model_dir": args.model, "allow_unverified": args.allow_unverified_model,
               "max_duration_s": None}
    from .cli_tasks import speaker_profile

    profile = speaker_profile(args.references, options, name=args.name)
    path = profile.save(args.output or f"{args.name}.profile")
    print(f"profile {profile.name!r}: {profile.count} reference(s), "
          f"{profile.speech_seconds:.1f} s of speech -> {path}")
    return EXIT_OK


# --------------------------------------------------------------------------- train / evaluate


@command(
    "train", "train a model from labelled data",
    DATA,
    option("-o", "--output", required=True, metavar="DIR", help="where to write the model"),
    option("--C", type=float, default="100.0", help="the window SVM's C"),
    option("--augment", type=int, default="1", help="augmented copies per clip"),
    option("--seed", type=int, default="0"),
    option("--calibration", choices=["unseen", "speaker-cv"], default="unseen",
           help="scores the threshold and Platt calibration are fitted on: genuine clips"
                " leave-one-corpus-out and fakes leave-one-generator-out (default), or"
                " speaker-grouped cross-validation"),
    option("--prior-deepfake", type=float, default="0.4", metavar="SHARE",
           help="share of synthetic recordings the calibrated probability assumes"),
    option("--no-boosting", action="store_true",
           help="SVM only: no gradient-boosted trees fused beside it (faster to train)"),
    option("--clip-view", type=float, default="0.35", metavar="WEIGHT",
           help="weight of the clip view (an SVM on each clip's mean window features) in"
                " the raw score, 0-1; 0 trains none"),
    JOBS, CACHE,
    option("--model-id"),
    option("--reliability-plot", metavar="PNG",
           help="also write a reliability diagram of the calibration scores (needs matplotlib)"),
    EXCLUDE, QUIET,
    quiet_decoder=True,
)
def cmd_train(args: argparse.Namespace) -> int:
    from . import training
    from .datasets import load_datasets

    settings = training.TrainSettings(C=args.C, augment_copies=args.augment, seed=args.seed,
                                      calibration=args.calibration,
                                      prior_deepfake=args.prior_deepfake,
                                      boosting=not args.no_boosting, clip_view=args.clip_view)
    clips = load_datasets(args.data, exclude_generators=args.exclude_generator)
    metadata = training.train(
        clips, args.output, settings=settings, jobs=args.jobs, progress=not args.quiet,
        cache_dir=Path(args.cache) if args.cache else None, model_id=args.model_id,
    )
    from .cli_tasks import print_training_summary

    print_training_summary(metadata, args.output, reliability_plot=args.reliability_plot)
    return EXIT_OK


@command(
    "evaluate", "score a labelled dataset: accuracy, EER, ROC-AUC",
    DATA,
    option("--protocol", default="model",
           choices=["model", "leave-one-generator-out", "leave-one-corpus-out", "unseen",
                    "speaker-cv", "reference"],
           help="'model' scores the given model; 'reference' runs the speaker-reference"
                " check leave-one-recording-out; the others retrain fold models with the"
                " model's settings"),
    option("--plot", metavar="PNG", help="write a ROC plot (needs matplotlib)"),
    option("--json", action="store_true",
           help="print all figures as JSON instead of the text report"),
    option("-o", "--output", metavar="FILE", help="also write all figures as JSON to FILE"),
    EXCLUDE, JOBS,
    option("--cache", metavar="DIR",
           help="cache window features here between runs (held-out protocols)"),
    NO_SPEECH_GATE, QUIET, *MODEL,
    quiet_decoder=True,
)
def cmd_evaluate(args: argparse.Namespace) -> int:
    from .datasets import load_datasets
    from .evaluation import evaluate

    clips = load_datasets(args.data, exclude_generators=args.exclude_generator)
    if args.protocol == "reference":
        from .cli_tasks import evaluate_reference

        return evaluate_reference(
            clips, model_dir=args.model, allow_unverified=args.allow_unverified_model,
            cache_dir=args.cache, quiet=args.quiet, as_json=args.json, output=args.output,
            data=args.data)
    report = evaluate(clips, args.protocol, model_dir=args.model,
                      allow_unverified=args.allow_unverified_model, jobs=args.jobs,
                      speech_gate=False if args.no_speech_gate else None,
                      cache_dir=Path(args.cache) if args.cache else None,
                      progress=not args.quiet)
    figures = {**report.to_dict(), "data": args.data}
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(report.to_text())
    if args.plot:
        from .plots import plot_roc

        plot_roc(args.plot, report.labels, report.scores, report.title)
        print(f"plot written to {args.plot}", file=sys.stderr if args.json else sys.stdout)
    if args.output:
        Path(args.output).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return EXIT_OK


# --------------------------------------------------------------------------- serve / remote


def _missing_extra_message(exc: ImportError) -> str:
    text = str(exc)
    return text if "deepfake-audio[server]" in text else f"{SERVER_HINT} ({text})"


def _serve_options() -> list[Option]:
    """``serve``'s flags, one per :class:`~deepfake_audio.server.settings.Settings` field."""
    try:
        from .server.settings import Settings
    except ImportError as exc:
        print(f"error: {_missing_extra_message(exc)}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    return [option(flag, env=False, **kwargs) for flag, kwargs in Settings.command_line_flags()]


@command("serve", "run the HTTP + WebSocket API (needs the [server] extra)",
         lazy_options=_serve_options)
def cmd_serve(args: argparse.Namespace) -> int:
    from .server.run import serve
    from .server.settings import Settings

    flags = {f.name: getattr(args, f.name, None) for f in fields(Settings)}
    try:
        settings = Settings.resolve(flags)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    serve(settings)
    return EXIT_OK


REMOTE_COMMON = (
    option("--ws", action="store_true", help="use the WebSocket API"),
    option("--json", action="store_true", help="JSON output"),
    option("--api-key", help="API key (X-API-Key header)"),
)


@command(
    "remote", "send files to a running server",
    option("url", help="server base URL, e.g. http://127.0.0.1:8000"),
    option("files", nargs="+", metavar="FILE"),
    *REMOTE_COMMON,
)
def cmd_remote(args: argparse.Namespace) -> int:
    """Exit codes: 0 every file analysed; 1 server unreachable or failing (5xx); 2 usage
    error or API key refused; 3 at least one file rejected or unreadable."""
    from .cli_tasks import remote

    return remote(args.url, args.files, ws=args.ws, as_json=args.json, api_key=args.api_key)


def client_main(argv: Sequence[str] | None = None) -> int:
    """``python -m deepfake_audio.client --file X [--url URL] [--ws] [--json]``."""
    from .client import DEFAULT_URL

    parser = _Parser(prog="python -m deepfake_audio.client",
                     description="Send audio files to a deepfake-audio server.")
    parser.add(option("--file", "-f", action="append", required=True, metavar="FILE",
                      env=False, help="audio file to analyse (repeat for several)"))
    parser.add(option("--url", default=DEFAULT_URL,
                      help=f"server base URL (default {DEFAULT_URL})"))
    for opt in REMOTE_COMMON:
        parser.add(opt)
    args = parser.parse_args(argv)
    from .cli_tasks import remote

    return remote(args.url, args.file, ws=args.ws, as_json=args.json, api_key=args.api_key)


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    """The parser of every registered sub-command."""
    parser = _Parser(
        prog="deepfake-audio",
        description="Tell genuine speech from synthetic speech.",
        epilog="Every option can also be set with DEEPFAKE_AUDIO_<OPTION> environment variables."
               " Exit codes: 0 ok, 1 internal error, 2 usage, 3 bad input, 4 model not loadable.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)
    for cmd in COMMANDS.values():
        child = cast(_Parser, sub.add_parser(cmd.name, help=cmd.help))
        child.lazy = cmd.lazy_options
        for opt in cmd.options:
            child.add(opt)
        child.set_defaults(func=cmd.handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    args.stderr_is_terminal = sys.stderr.isatty()
    from .pool import without_decoder_noise  # numpy and the audio stack

    noise_filter = (without_decoder_noise() if COMMANDS[args.command].quiet_decoder
                    else contextlib.nullcontext())
    try:
        with noise_filter:
            return int(args.func(args))
    except BrokenPipeError:
        # The reader went away (``check … | head``): stop quietly, as Unix tools do. Point
        # stdout at /dev/null so the interpreter's final flush does not fail again.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ModelLoadError as exc:
        print(f"error: cannot load model: {exc}", file=sys.stderr)
        return EXIT_MODEL
    except (ConfigurationError, TrainingError) as exc:  # bad settings, or data too thin
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
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
