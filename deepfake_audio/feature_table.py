"""Window features of a whole dataset, for training and the held-out protocols.

Each clip gives at most ``max_windows`` windows (plus as many again per augmented
copy); rows can be cached on disk between runs, keyed by the clip, the settings and
a digest of the feature code, so a change to that code never reuses stale rows.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .audio import load_audio
from .augment import AUGMENTATIONS, augment
from .datasets import Clip
from .exceptions import DatasetError, DeepfakeAudioError
from .features import FeatureConfig, extract

logger = logging.getLogger("deepfake_audio")


@dataclass(frozen=True)
class FeatureTable:
    """Window-level features of a dataset."""

    matrix: np.ndarray
    clip_index: np.ndarray  # row -> index into the clip list
    augmented: np.ndarray  # row came from an augmented copy
    failed: tuple[tuple[str, str], ...] = ()


def _clip_rows(
    clip: Clip, index: int, config: FeatureConfig, augment_copies: int, max_windows: int, seed: int
) -> tuple[list[np.ndarray], list[bool], str | None]:
    try:
        audio = load_audio(clip.path, target_sr=config.sample_rate, max_duration_s=None,
                           min_duration_s=0.1)
    except DeepfakeAudioError as exc:
        return [], [], str(exc)
    rng = np.random.default_rng([seed, index])
    rows, flags = [], []
    variants = [("none", audio.samples)]
    for _ in range(augment_copies):
        kind = str(rng.choice(AUGMENTATIONS[1:]))
        variants.append((kind, augment(audio.samples, config.sample_rate, kind, rng)))
    for kind, samples in variants:
        matrix = extract(samples, config).matrix
        if max_windows and len(matrix) > max_windows:
            matrix = matrix[np.sort(rng.choice(len(matrix), max_windows, replace=False))]
        rows.append(matrix)
        flags.append(kind != "none")
    return rows, flags, None


#: The modules that turn a clip into feature rows.
_FEATURE_CODE = ("audio.py", "media.py", "augment.py", "feature_config.py", "filterbanks.py",
                 "spectra.py", "windows.py", "features.py")


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    """Digest of the code that makes feature rows: a change there invalidates cached rows."""
    digest = hashlib.sha256()
    package = Path(__file__).parent
    for name in _FEATURE_CODE:
        digest.update((package / name).read_bytes())
    digest.update(inspect.getsource(_clip_rows).encode())
    return digest.hexdigest()[:16]


def _cache_key(clip: Clip, config: FeatureConfig, augment_copies: int, max_windows: int,
               seed: int, index: int) -> str:
    stat = clip.path.stat()
    text = repr((str(clip.path), stat.st_size, int(stat.st_mtime), config.to_dict(),
                 augment_copies, max_windows, seed, index, _code_digest()))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def extract_dataset(
    clips: Sequence[Clip],
    config: FeatureConfig,
    *,
    augment_copies: int = 0,
    max_windows: int = 0,
    seed: int = 0,
    jobs: int = 1,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> FeatureTable:
    """Window features of every clip (plus ``augment_copies`` augmented copies each).

    Clips that cannot be decoded are skipped and listed in ``failed``.
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    def work(i: int, clip: Clip) -> tuple[list[np.ndarray], list[bool], str | None]:
        if cache_dir is None:
            return _clip_rows(clip, i, config, augment_copies, max_windows, seed)
        cached = cache_dir / f"{_cache_key(clip, config, augment_copies, max_windows, seed, i)}.npz"
        if cached.is_file():
            with np.load(cached) as data:
                n = int(data["n"])
                return [data[f"m{k}"] for k in range(n)], list(data["flags"]), None
        rows, flags, error = _clip_rows(clip, i, config, augment_copies, max_windows, seed)
        if error is None:
            arrays: dict[str, Any] = {f"m{k}": m for k, m in enumerate(rows)}
            np.savez(cached, n=len(rows), flags=np.array(flags), **arrays)
        return rows, flags, error

    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
    tasks = (delayed(work)(i, clip) for i, clip in enumerate(clips))
    results: Iterable[Any] = Parallel(n_jobs=jobs, return_as="generator")(tasks)
    matrices, owners, flags_out, failed = [], [], [], []
    for i, (rows, flags, error) in enumerate(
        tqdm(results, total=len(clips), desc="features", unit="clip", disable=not progress)
    ):
        if error is not None:
            failed.append((str(clips[i].path), error))
            logger.warning("skipping %s: %s", clips[i].path, error)
            continue
        for matrix, flag in zip(rows, flags, strict=True):
            matrices.append(matrix)
            owners.append(np.full(len(matrix), i))
            flags_out.append(np.full(len(matrix), flag))
    if not matrices:
        raise DatasetError("no clip could be decoded")
    return FeatureTable(np.vstack(matrices), np.concatenate(owners), np.concatenate(flags_out),
                        tuple(failed))
