"""``deepfake-audio check`` on a Dask cluster and/or into a results file (CLI side).

Part of the command line (it parses and prints); the work is
:func:`deepfake_audio.batch.scan` and :mod:`deepfake_audio.batch_output`.
``cli.py`` adds :func:`add_options` to ``check`` and hands over to :func:`run`
when ``--scheduler`` or ``--output`` is given; otherwise ``check`` runs as before.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from typing import Any

from .config import env_value, parse_bool


def add_options(check: argparse.ArgumentParser) -> None:
    """``--scheduler``, ``--output``, ``--resume`` (env ``DEEPFAKE_AUDIO_<OPTION>``)."""
    group = check.add_argument_group("archives (Dask cluster, results file)")
    group.add_argument("--scheduler", metavar="ADDR", default=env_value("scheduler"),
                       help="run on this Dask scheduler, e.g. tcp://host:8786; paths must be"
                            " visible to the workers, URLs (s3://, gs://, http(s)://, file://)"
                            " are read by them (needs the [dask] extra)")
    group.add_argument("--output", metavar="FILE", default=env_value("output"),
                       help="write one row per file to FILE (.jsonl, .csv or .parquet) as"
                            " results arrive; without --scheduler: --jobs local processes")
    group.add_argument("--resume", action="store_true", default=None,
                       help="continue FILE: skip inputs already in it with the same content"
                            " hash and model id")


def wanted(args: argparse.Namespace) -> bool:
    """Whether ``check`` should run here instead of its classic path."""
    return bool(args.scheduler or args.output or args.resume)


def _count_in_background(paths: list[str], bar: Any) -> None:
    """Give the progress bar a total (hence an ETA) once a second listing pass ends."""
    from .batch import iter_sources

    def count() -> None:
        try:
            total = sum(1 for _ in iter_sources(paths))
        except Exception:  # the scan itself reports unreadable sources
            return
        bar.total = total
        bar.refresh()

    threading.Thread(target=count, name="count-inputs", daemon=True).start()


def run(args: argparse.Namespace) -> int:
    """Scan ``args.paths``; rows to ``--output`` (or lines on stdout); summary on stderr."""
    from tqdm.auto import tqdm

    from . import batch, batch_output
    from .cli import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, _human_line

    resume = args.resume
    if resume is None:
        try:
            resume = parse_bool(env_value("resume") or "")
        except ValueError as exc:
            print(f"error: DEEPFAKE_AUDIO_RESUME: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if resume and not args.output:
        print("error: --resume needs --output FILE", file=sys.stderr)
        return EXIT_USAGE
    try:
        sink = batch_output.open_output(args.output, resume=resume) if args.output else None
    except FileExistsError as exc:
        print(f"error: {exc} (pass --resume)", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    client = None
    counts: Counter[str] = Counter()
    started = time.perf_counter()
    try:
        if args.scheduler:
            try:
                client = batch.connect(args.scheduler)
            except OSError as exc:
                print(f"error: cannot reach the scheduler {args.scheduler}: {exc}",
                      file=sys.stderr)
                return EXIT_USAGE
            link = batch.dashboard_link(client)
            if link and not args.quiet:
                print(f"dask dashboard: {link}", file=sys.stderr)
        records = batch.scan(
            args.paths, client=client, model_dir=args.model, threshold=args.threshold,
            max_duration_s=args.max_duration, allow_unverified=args.allow_unverified_model,
            resume=sink.completed if sink else None,
            processes=args.jobs if args.jobs > 0 else None,
        )
        with tqdm(unit="file", file=sys.stderr, disable=args.quiet or None, leave=False,
                  smoothing=0.1) as bar:
            _count_in_background(args.paths, bar)
            for record in records:
                counts[record.status] += 1
                bar.update()
                bar.set_postfix_str(f"error {counts['error']} failed {counts['failed']}"
                                    f" skipped {counts['skipped']}", refresh=False)
                if sink is not None:
                    sink.write(record)
                elif record.status == batch.OK:
                    print(_human_line({"path": record.source, **(record.result or {})}),
                          flush=True)
                if (record.error or "").startswith("internal error"):
                    counts["internal"] += 1
                if record.status in (batch.ERROR, batch.FAILED) and not args.quiet:
                    tqdm.write(f"error: {record.source}: {record.error}", file=sys.stderr)
    except ImportError as exc:  # no [dask] extra here: a scheduler, or URLs to list
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if sink is not None:
            sink.close()
        if client is not None:
            client.close()
    seconds = time.perf_counter() - started
    done = sum(counts[status] for status in (batch.OK, batch.ERROR, batch.FAILED, batch.SKIPPED))
    if not done:
        print("error: no audio files found in the given paths", file=sys.stderr)
        return EXIT_BAD_INPUT
    analysed = done - counts["skipped"]
    print(f"{done} files: {counts['ok']} ok, {counts['error']} error, {counts['failed']} failed,"
          f" {counts['skipped']} skipped (already in the output) in {seconds:.1f} s"
          f" ({analysed / max(seconds, 1e-9):.1f} files/s)"
          + (f"; results in {args.output}" if args.output else ""), file=sys.stderr)
    if counts["internal"]:
        return EXIT_INTERNAL
    return EXIT_BAD_INPUT if counts["error"] or counts["failed"] else EXIT_OK
