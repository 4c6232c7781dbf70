"""Many files at once: folder expansion, worker processes, one JSON-ready row per file.

Used by ``deepfake-audio check``. Also keeps libmpg123's own C-level warnings off
stderr while a batch decodes (:func:`without_decoder_noise`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from .audio import SUPPORTED_EXTENSIONS
from .exceptions import DeepfakeAudioError, InputError

logger = logging.getLogger("deepfake_audio")


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


@contextlib.contextmanager
def analyze_paths(files: Sequence[Path], detector_options: Mapping[str, Any], *,
                  jobs: int = 1) -> Iterator[Iterator[dict[str, Any]]]:
    """Rows of :func:`_analyze_one` for ``files``, in order, from up to ``jobs`` processes.

    Parameters
    ----------
    files : sequence of Path
        The files (see :func:`iter_audio_files`).
    detector_options : mapping
        Keyword arguments of :class:`~deepfake_audio.detector.Detector`.
    jobs : int
        Worker processes; 0 means one per CPU. Never more than there are files.

    Raises
    ------
    ModelLoadError
        On entry, before any worker starts: the model cannot be loaded.
    """
    _init_worker(dict(detector_options))
    jobs = min(jobs if jobs > 0 else (os.cpu_count() or 1), len(files))
    if jobs <= 1:
        yield map(_analyze_one, files)
        return
    executor = ProcessPoolExecutor(jobs, initializer=_init_worker,
                                   initargs=(dict(detector_options), True))
    try:
        yield executor.map(_analyze_one, files, chunksize=1)
    finally:
        executor.shutdown(cancel_futures=True)


# What libmpg123 prints while resyncing after a damaged MP3 frame.
_DECODER_NOISE = (b"[src/libmpg123", b"Note: Illegal Audio-MPEG-Header", b"Note: Trying to resync",
                  b"Note: Skipped ", b"Warning: Encountered more data", b"Warning: Big change")


@contextlib.contextmanager
def without_decoder_noise() -> Iterator[None]:
    """Drop libmpg123's own warnings (printed by C code inside libsndfile) from fd 2.

    They look like our ``error:`` lines but are only the MP3 decoder resyncing after a
    damaged frame; the CLI promises one clear line per bad file. Everything else on
    stderr (our messages, progress bars, workers' output) passes through unchanged.
    Process-wide (it swaps file descriptor 2): for command-line programs only.
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


__all__ = ["analyze_paths", "iter_audio_files", "without_decoder_noise"]
