"""Scan results on disk: JSON lines, CSV or Parquet, appended as records arrive.

A sink is opened on one file (the format follows the suffix: ``.jsonl``/``.ndjson``,
``.csv``, ``.parquet``) and is the only writer of it. With ``resume=True`` it first
reads what an earlier, possibly interrupted run wrote: :attr:`ResultSink.completed`
tells :func:`deepfake_audio.batch.scan` which inputs need no new analysis, and a
half-written last line (client killed mid-write) is cut off.

Exactly once: every row is one input. When a resumed run writes a new row for an
input that already had one (it had ``failed``, or its bytes changed), the older
row is dropped when the sink closes, and so are duplicates an earlier interrupted
run may have left; after any run that ends (normally, by an exception or Ctrl-C)
the file holds each input once.

JSON lines and CSV rows are flushed to the file as they arrive. Parquet cannot be
appended to, so its rows go to ``<output>.journal.jsonl`` as they arrive and are
folded into the Parquet file when the sink closes; a run killed before that leaves
the journal, which the next ``resume=True`` picks up.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from .batch import DASK_HINT, ERROR, FIELD_TYPES, OK, RECORD_FIELDS, SKIPPED, ScanRecord

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
_BATCH_ROWS = 10_000


def output_format(path: str | os.PathLike[str]) -> str:
    """``"jsonl"``, ``"csv"`` or ``"parquet"`` from the file name.

    Raises
    ------
    ValueError
        Any other suffix.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"output {os.fspath(path)!r}: use a .jsonl, .csv or .parquet file")
    return FORMATS[suffix]


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError(f"Parquet output {DASK_HINT}") from exc
    return pa, pq


def _arrow_schema() -> Any:
    pa, _ = _pyarrow()
    types = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
    return pa.schema([(name, types[FIELD_TYPES[name]]) for name in RECORD_FIELDS])


def _typed(row: dict[str, Any]) -> dict[str, Any]:
    """A CSV row (all strings) with its column types back; empty cells are ``None``."""
    out: dict[str, Any] = {}
    for name in RECORD_FIELDS:
        value = row.get(name)
        kind = FIELD_TYPES[name]
        if value in (None, ""):
            out[name] = None
        elif kind is bool:
            out[name] = value == "True"
        else:
            out[name] = kind(value)
    return out


def _cut_partial_line(path: Path) -> None:
    """Drop a last line without its newline: the client died while writing it."""
    with open(path, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        block = 1 << 16
        end = size
        while end > 0:
            start = max(0, end - block)
            handle.seek(start)
            newline = handle.read(end - start).rfind(b"\n")
            if newline >= 0:
                handle.truncate(start + newline + 1)
                return
            end = start
        handle.truncate(0)


class _LineFile:
    """Rows as JSON lines or CSV lines in one file (one row per line: messages are one line)."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path, self.fmt = path, fmt

    def exists(self) -> bool:
        return self.path.is_file() and self.path.stat().st_size > 0

    def rows(self) -> Iterator[dict[str, Any]]:
        if not self.path.is_file():
            return
        with open(self.path, encoding="utf-8", newline="") as handle:
            if self.fmt == "jsonl":
                yield from (json.loads(line) for line in handle if line.strip())
                return
            reader = csv.DictReader(handle)
            if reader.fieldnames and tuple(reader.fieldnames) != RECORD_FIELDS:
                raise ValueError(f"{self.path} has other columns than a scan writes")
            yield from (_typed(row) for row in reader)

    def open_append(self) -> _LineAppender:
        return _LineAppender(self.path, self.fmt)

    def rewrite(self, rows: Iterable[dict[str, Any]]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        with _LineAppender(tmp, self.fmt) as out:
            for row in rows:
                out.write(row)
        os.replace(tmp, self.path)


class _LineAppender:
    def __init__(self, path: Path, fmt: str) -> None:
        fresh = not path.is_file() or path.stat().st_size == 0
        # Open for the appender's whole life (closed by close()), not one write.
        self._handle: IO[str] = open(path, "a", encoding="utf-8", newline="")  # noqa: SIM115
        self._csv = None
        if fmt == "csv":
            self._csv = csv.DictWriter(self._handle, fieldnames=RECORD_FIELDS)
            if fresh:
                self._csv.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        if self._csv is not None:
            self._csv.writerow(row)
        else:
            self._handle.write(json.dumps(row) + "\n")
        self._handle.flush()  # a killed client loses at most the line being written

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> _LineAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ResultSink:
    """Append scan records to one output file, resumably, each input once.

    Use :func:`open_output` to make one.

    Attributes
    ----------
    path : pathlib.Path
        The output file.
    completed : dict
        ``source -> (sha256, model)`` of inputs already settled in the file
        (``ok`` or ``error`` with a content hash); pass it as ``resume`` to
        :func:`deepfake_audio.batch.scan`.
    written : int
        Rows written by this sink.
    """

    def __init__(self, path: str | os.PathLike[str], *, resume: bool = False) -> None:
        self.path = Path(path)
        self.format = output_format(self.path)
        if self.format == "parquet":
            _pyarrow()
            self._lines = _LineFile(self.path.with_name(self.path.name + ".journal.jsonl"),
                                    "jsonl")
        else:
            self._lines = _LineFile(self.path, self.format)
        if not resume and (self._lines.exists() or self._parquet_exists()):
            raise FileExistsError(
                f"{self.path} exists: resume it, or choose another output"
            )
        self.completed: dict[str, tuple[str, str]] = {}
        self.written = 0
        self._known: set[str] = set()
        self._drop: Counter[str] = Counter()  # older rows of an input to leave out
        if resume:
            if self._lines.path.is_file():
                _cut_partial_line(self._lines.path)
            for row in self._old_rows():
                self._remember(row)
        self._append = self._lines.open_append()

    def _parquet_exists(self) -> bool:
        return self.format == "parquet" and self.path.is_file()

    def _old_rows(self) -> Iterator[dict[str, Any]]:
        if self._parquet_exists():
            _, pq = _pyarrow()
            for batch in pq.ParquetFile(self.path).iter_batches(batch_size=_BATCH_ROWS):
                yield from batch.to_pylist()
        yield from self._lines.rows()

    def _remember(self, row: dict[str, Any]) -> None:
        source = row["source"]
        if source in self._known:
            self._drop[source] += 1
        self._known.add(source)
        if row["status"] in (OK, ERROR) and row.get("sha256") and row.get("model"):
            self.completed[source] = (row["sha256"], row["model"])
        else:
            self.completed.pop(source, None)

    def write(self, record: ScanRecord) -> None:
        """Append ``record`` (``skipped`` records are already in the file: ignored)."""
        if record.status == SKIPPED:
            return
        row = record.to_dict()
        self._remember(row)
        self._append.write(row)
        self.written += 1

    def _kept(self, rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Rows minus the older ones of inputs written again (the last row of each stays)."""
        drop = Counter(self._drop)
        for row in rows:
            if drop[row["source"]] > 0:
                drop[row["source"]] -= 1
            else:
                yield row

    def close(self) -> None:
        """Flush, drop superseded rows, and (Parquet) fold the journal into the file."""
        self._append.close()
        if self.format == "parquet":
            self._write_parquet()
        elif self._drop:
            self._lines.rewrite(self._kept(self._lines.rows()))
        self._drop.clear()

    def _write_parquet(self) -> None:
        journal = self._lines.path
        if self._parquet_exists() and not self._lines.exists() and not self._drop:
            journal.unlink(missing_ok=True)
            return
        pa, pq = _pyarrow()
        schema = _arrow_schema()
        tmp = self.path.with_name(self.path.name + ".tmp")
        with pq.ParquetWriter(tmp, schema) as writer:
            chunk: list[dict[str, Any]] = []
            for row in self._kept(self._old_rows()):
                chunk.append(row)
                if len(chunk) >= _BATCH_ROWS:
                    writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                    chunk = []
            if chunk:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
        os.replace(tmp, self.path)
        journal.unlink(missing_ok=True)

    def __enter__(self) -> ResultSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_output(path: str | os.PathLike[str], *, resume: bool = False) -> ResultSink:
    """Open ``path`` for scan records (see the module docstring).

    Raises
    ------
    FileExistsError
        The file exists and ``resume`` is false (a finished scan is never overwritten).
    ValueError
        Unknown suffix, or a CSV with other columns.
    ImportError
        Parquet without the ``[dask]`` extra (pyarrow).
    """
    return ResultSink(path, resume=resume)


def read_rows(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The rows of a scan output (any format), typed, in file order."""
    fmt = output_format(path)
    if fmt == "parquet":
        _, pq = _pyarrow()
        for batch in pq.ParquetFile(path).iter_batches(batch_size=_BATCH_ROWS):
            yield from batch.to_pylist()
        return
    yield from _LineFile(Path(path), fmt).rows()


__all__ = ["FORMATS", "ResultSink", "open_output", "output_format", "read_rows"]
