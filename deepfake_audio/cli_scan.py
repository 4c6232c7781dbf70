"""``deepfake-audio check`` on a Dask cluster and/or into a results file (CLI side).

Part of the command-line shell (it prints progress and a summary; ``cli.py`` parses
the options and calls :func:`run` when ``--scheduler``, ``--output`` or ``--resume``
is given); the work is :func:`deepfake_audio.batch.scan` and
:mod:`deepfake_audio.batch_output`.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any


def _count_in_background(paths: list[str], bar: Any) -> None:
    """Give the progress bar a total (hence an ETA) once a second listing pass ends."""
    from .sources import iter_sources

    def count() -> None:
        try:
            total = sum(1 for _ in iter_sources(paths))
        except Exception:  # the scan itself reports unreadable sources
            return
        bar.total = total
        bar.refresh()

    threading.Thread(target=count, name="count-inputs", daemon=True).start()


def run(paths: Sequence[str], *, scheduler: str | None, output: str | None, resume: bool,
        jobs: int, quiet: bool, model_dir: str | None, threshold: float | None,
        max_duration_s: float | None, allow_unverified: bool) -> int:
    """Scan ``paths``; rows to ``output`` (or lines on stdout); summary on stderr.

    Returns the ``check`` exit code.
    """
    from tqdm.auto import tqdm

    from . import batch, batch_output
    from .cli import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE
    from .formatting import human_lines

    if resume and not output:
        print("error: --resume needs --output FILE", file=sys.stderr)
        return EXIT_USAGE
    try:
        sink = batch_output.open_output(output, resume=resume) if output else None
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
        if scheduler:
            try:
                client = batch.connect(scheduler)
            except OSError as exc:
                print(f"error: cannot reach the scheduler {scheduler}: {exc}",
                      file=sys.stderr)
                return EXIT_USAGE
            link = batch.dashboard_link(client)
            if link and not quiet:
                print(f"dask dashboard: {link}", file=sys.stderr)
        records = batch.scan(
            paths, client=client, model_dir=model_dir, threshold=threshold,
            max_duration_s=max_duration_s, allow_unverified=allow_unverified,
            resume=sink.completed if sink else None,
            processes=jobs if jobs > 0 else None,
        )
        with tqdm(unit="file", file=sys.stderr, disable=quiet or None, leave=False,
                  smoothing=0.1) as bar:
            _count_in_background(list(paths), bar)
            for record in records:
                counts[record.status] += 1
                bar.update()
                bar.set_postfix_str(f"error {counts['error']} failed {counts['failed']}"
                                    f" skipped {counts['skipped']}", refresh=False)
                if sink is not None:
                    sink.write(record)
                elif record.status == batch.OK:
                    for line in human_lines({"path": record.source, **(record.result or {})},
                                             timeline=False, brief=quiet):
                        print(line, flush=True)
                if (record.error or "").startswith("internal error"):
                    counts["internal"] += 1
                if record.status in (batch.ERROR, batch.FAILED) and not quiet:
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
          + (f"; results in {output}" if output else ""), file=sys.stderr)
    if counts["internal"]:
        return EXIT_INTERNAL
    return EXIT_BAD_INPUT if counts["error"] or counts["failed"] else EXIT_OK
