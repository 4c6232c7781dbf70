"""Where a scan's inputs come from: local paths and folders, or fsspec URLs.

Listing is lazy (a generator over folders, bucket prefixes and HTTP index pages),
so a scan of millions of files starts at once and holds no full listing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from .audio import SUPPORTED_EXTENSIONS

DASK_HINT = 'needs the [dask] extra: pip install "deepfake-audio[dask]"'


def is_url(source: str) -> bool:
    return "://" in source


def _fsspec() -> Any:
    try:
        import fsspec
    except ImportError as exc:
        raise ImportError(f"reading URLs {DASK_HINT}") from exc
    return fsspec


def _audio_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in SUPPORTED_EXTENSIONS


def _walk_local(source: str) -> Iterator[str]:
    path = os.path.abspath(source)
    if not os.path.isdir(path):
        yield path
        return
    for root, dirs, files in os.walk(path):
        dirs.sort()
        yield from (os.path.join(root, name) for name in sorted(files) if _audio_name(name))


def _walk_url(url: str) -> Iterator[str]:
    fs, path = _fsspec().core.url_to_fs(url)
    if url.split("://", 1)[0].lower() in ("http", "https"):
        # An HTTP "folder" is a page of links: only a URL ending in "/" is listed (one
        # level); asking whether any other URL is a folder would download it here.
        if url.endswith("/"):
            yield from sorted(u for u in fs.ls(url, detail=False) if _audio_name(u))
        else:
            yield url
        return
    if not fs.isdir(path):
        yield url
        return
    for root, dirs, files in fs.walk(path):
        dirs.sort()
        base = root.rstrip("/")
        yield from (fs.unstrip_protocol(f"{base}/{name}") for name in sorted(files)
                    if _audio_name(name))


def iter_sources(sources: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]
                 ) -> Iterator[str]:
    """Expand folders, bucket prefixes and HTTP index pages (``.../``) lazily.

    Local paths become absolute; files are passed through as given (a missing one
    becomes an error record later). Folders are walked in sorted order and keep
    only :data:`~deepfake_audio.audio.SUPPORTED_EXTENSIONS`.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    for raw in sources:
        text = os.fspath(raw)
        yield from (_walk_url(text) if is_url(text) else _walk_local(text))


def read_source(source: str) -> bytes:
    """The bytes of a local path or an fsspec URL."""
    if is_url(source):
        fs, path = _fsspec().core.url_to_fs(source)
        return bytes(fs.cat_file(path))
    with open(source, "rb") as handle:
        return handle.read()
