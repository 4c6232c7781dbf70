"""Labelled datasets: a manifest CSV or ``real/`` + ``fake/`` folders → :class:`Clip` lists.

Manifest columns: ``path,label`` and optionally ``source,generator,speaker,corpus,family``
(paths relative to the CSV's folder). ``corpus`` and ``family`` name the genuine corpus
and the generator family a clip belongs to, so that copies derived from a clip (an 8 kHz
or resampled version) are held out together with it. Manifests without those columns
(the shared training corpus) mark derived copies by suffix: see :func:`base_name`.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .audio import SUPPORTED_EXTENSIONS
from .exceptions import DatasetError

LABELS = {"real": 0, "bonafide": 0, "genuine": 0, "fake": 1, "deepfake": 1, "spoof": 1}

#: Suffixes the shared corpus's manifest uses for copies derived from another source or
#: generator (``librispeech-resampled-22k``, ``bigvgan-tel8k``).
DERIVED_SUFFIXES = ("-tel8k", "-resampled")

#: Generator names the shared corpus's second batch used before its third batch settled on
#: canonical names: the same system, so leave-one-generator-out holds them out together
#: (``../shared/data/README.md``, "Third batch").
FAMILY_ALIASES = {
    "tensorflowtts-fastspeech2": "fastspeech2",
    "tensorflowtts-fastspeech": "fastspeech",
}


@dataclass(frozen=True)
class Clip:
    """One labelled recording of a dataset.

    ``corpus`` and ``family`` default to ``source`` and ``generator``.
    """

    path: Path
    label: int  # 0 real, 1 deepfake
    source: str = "unknown"
    generator: str = "unknown"
    speaker: str = "unknown"
    corpus: str = ""
    family: str = ""

    def __post_init__(self) -> None:
        # Frozen: fill the defaults in place so equality and hashing see the final values.
        if not self.corpus:
            object.__setattr__(self, "corpus", self.source)
        if not self.family:
            object.__setattr__(self, "family", self.generator)


def base_name(name: str) -> str:
    """``name`` with a derived-copy suffix and what follows it removed.

    For manifests without ``corpus``/``family`` columns: ``librispeech-resampled-22k`` →
    ``librispeech``, ``bigvgan-tel8k`` → ``bigvgan``.
    """
    for suffix in DERIVED_SUFFIXES:
        index = name.find(suffix)
        if index > 0:
            return name[:index]
    return name


def family_name(generator: str) -> str:
    """Hold-out family of a generator: :func:`base_name`, then :data:`FAMILY_ALIASES`."""
    base = base_name(generator)
    return FAMILY_ALIASES.get(base, base)


def _read_manifest(manifest: Path) -> list[Clip]:
    root = manifest.parent
    clips = []
    with open(manifest, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            label = LABELS.get(row["label"].strip().lower())
            if label is None:
                raise DatasetError(f"{manifest}: unknown label {row['label']!r}")
            source = row.get("source") or "unknown"
            generator = row.get("generator") or ("human" if label == 0 else "unknown")
            clips.append(Clip(
                path=root / row["path"], label=label, source=source, generator=generator,
                speaker=row.get("speaker") or row["path"],
                corpus=row.get("corpus") or base_name(source),
                family=row.get("family") or family_name(generator),
            ))
    return clips


def _walk_folder(folder: Path) -> list[Clip]:
    clips = []
    for label_name, label in (("real", 0), ("fake", 1)):
        base = folder / label_name
        for path in sorted(base.rglob("*")):
            if path.suffix.lower() in SUPPORTED_EXTENSIONS and path.is_file():
                parts = path.relative_to(base).parts
                sub = parts[0] if len(parts) > 1 else label_name
                clips.append(Clip(path, label, source=sub,
                                  generator="human" if label == 0 else sub, speaker=str(path)))
    return clips


def load_dataset(data: str | Path) -> list[Clip]:
    """Read a dataset: a manifest CSV, a folder holding ``manifest.csv``, or ``real/`` + ``fake/``.

    Parameters
    ----------
    data : str or Path
        The manifest, or the folder.

    Returns
    -------
    list of Clip
        In manifest order (folders: sorted, genuine first).

    Raises
    ------
    DatasetError
        Nothing readable at ``data``, an unknown label, or no clips.
    """
    path = Path(data)
    if path.is_file():
        clips = _read_manifest(path)
    elif (path / "manifest.csv").is_file():
        clips = _read_manifest(path / "manifest.csv")
    elif (path / "real").is_dir() or (path / "fake").is_dir():
        clips = _walk_folder(path)
    else:
        raise DatasetError(
            f"{path}: expected a manifest CSV or a folder with manifest.csv or real/ and fake/"
        )
    if not clips:
        raise DatasetError(f"{path}: no audio clips found")
    return clips


def load_datasets(data: Sequence[str | Path], *,
                  exclude_generators: Sequence[str] = ()) -> list[Clip]:
    """:func:`load_dataset` of each entry, concatenated, without clips of ``exclude_generators``."""
    excluded = set(exclude_generators)
    return [clip for item in data for clip in load_dataset(item)
            if clip.generator not in excluded]


def dataset_summary(clips: Sequence[Clip]) -> dict[str, Any]:
    """Counts of clips, classes, speakers and ``source/generator`` pairs."""
    return {
        "clips": len(clips),
        "real": sum(c.label == 0 for c in clips),
        "deepfake": sum(c.label == 1 for c in clips),
        "speakers": len({c.speaker for c in clips}),
        "by_source": dict(sorted(Counter(f"{c.source}/{c.generator}" for c in clips).items())),
    }


def can_hold_out_groups(clips: Sequence[Clip]) -> bool:
    """Whether there are at least two genuine corpora and two generator families."""
    return (len({c.corpus for c in clips if c.label == 0}) >= 2
            and len({c.family for c in clips if c.label == 1}) >= 2)


__all__ = [
    "DERIVED_SUFFIXES",
    "FAMILY_ALIASES",
    "LABELS",
    "Clip",
    "base_name",
    "can_hold_out_groups",
    "dataset_summary",
    "family_name",
    "load_dataset",
    "load_datasets",
]
