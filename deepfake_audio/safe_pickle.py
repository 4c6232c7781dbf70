"""Guarded loading of pickled model artefacts.

Pickles can run arbitrary code when loaded; :func:`safe_load_pickle` unpickles
through an allow-list, so only numpy arrays, plain containers and scikit-learn
classes may be created and a crafted pickle that names ``os.system`` or similar
fails instead of running. :mod:`deepfake_audio.model` checks every artefact's
SHA-256 (:func:`sha256_file`) against ``model.json`` before it gets here.
Plain-array weights (the speaker encoder, the speech detector) need no unpickling:
:func:`load_checked_arrays` hash-checks them against their JSON and loads them with
``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import ModelIntegrityError, ModelLoadError

logger = logging.getLogger("deepfake_audio")

_SAFE_GLOBALS = {
    "builtins": {"dict", "list", "tuple", "set", "frozenset", "slice", "float", "int",
                 "complex", "bytearray", "bytes", "str", "bool", "object"},
    "copyreg": {"_reconstructor"},
    "_codecs": {"encode"},
    "collections": {"OrderedDict"},
    "joblib.numpy_pickle": {"NumpyArrayWrapper"},
    "numpy": {"dtype", "ndarray"},
    "numpy.core.multiarray": {"_reconstruct", "scalar"},
    "numpy._core.multiarray": {"_reconstruct", "scalar"},
    "numpy.core.numeric": {"_frombuffer"},
    "numpy._core.numeric": {"_frombuffer"},
}


def _is_allowed_global(module: str, name: str, obj: Any | None) -> bool:
    # Protocol 4+ resolves dotted names attribute by attribute, so "sklearn.x" +
    # "io.FileIO" would reach any class a scikit-learn module happens to import.
    # Estimators are top-level classes: refuse dotted names outright.
    if "." in name:
        return False
    if name in _SAFE_GLOBALS.get(module, ()):
        return True
    if module.startswith("numpy.dtypes") and name.endswith("DType"):
        return True
    if not module.startswith("sklearn."):
        return False
    # Only classes defined in scikit-learn, not whatever one of its modules imported.
    return obj is None or (
        inspect.isclass(obj) and str(getattr(obj, "__module__", "")).startswith("sklearn.")
    )


def _check_global(module: str, name: str, obj: Any | None = None) -> None:
    if not _is_allowed_global(module, name, obj):
        raise ModelIntegrityError(
            f"refusing to unpickle {module}.{name}: not a numpy or scikit-learn type"
            " (the file may be malicious)"
        )


def _safe_unpickler_class() -> type:
    from joblib.numpy_pickle import NumpyUnpickler

    class SafeUnpickler(NumpyUnpickler):
        def find_class(self, module: str, name: str) -> Any:
            _check_global(module, name)
            obj = super().find_class(module, name)
            _check_global(module, name, obj)
            return obj

    return SafeUnpickler


def safe_load_pickle(path: Path) -> Any:
    """Unpickle a joblib or plain pickle file, allowing only numpy/scikit-learn types.

    Raises
    ------
    ModelIntegrityError
        The pickle names anything else.
    ModelLoadError
        The file cannot be read as a pickle.
    """
    unpickler_class = _safe_unpickler_class()
    params = inspect.signature(unpickler_class).parameters
    with open(path, "rb") as handle:
        kwargs: dict[str, Any] = {"mmap_mode": None}
        if "ensure_native_byte_order" in params:
            kwargs["ensure_native_byte_order"] = True
        unpickler = unpickler_class(str(path), handle, **kwargs)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                obj = unpickler.load()
        except ModelIntegrityError:
            raise
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError,
                TypeError, IndexError, KeyError) as exc:
            raise ModelLoadError(f"{path.name} is not a readable model pickle: {exc}") from None
    for warning in caught:
        logger.warning("%s: %s", path.name, warning.message)
    return obj


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_checked_arrays(directory: Path, meta_name: str, what: str,
                        ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON ``meta_name`` in ``directory`` and the ``.npz`` it names, hash-checked.

    Raises
    ------
    ModelLoadError
        The JSON or the arrays are missing or unreadable (``what`` names them).
    ModelIntegrityError
        The arrays' SHA-256 differs from the JSON's ``sha256``.
    """
    import json

    try:
        meta: dict[str, Any] = json.loads((directory / meta_name).read_text())
        path = directory / meta["file"]
        if sha256_file(path) != meta["sha256"]:
            raise ModelIntegrityError(f"{path} does not match the SHA-256 in {meta_name}")
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, KeyError, ValueError) as exc:
        raise ModelLoadError(f"cannot load {what} from {directory}: {exc}") from exc
    return meta, arrays


def save_checked_arrays(directory: Path, name: str, arrays: dict[str, np.ndarray], *,
                        identity: tuple[str, str], details: dict[str, Any]) -> dict[str, Any]:
    """Write ``name.npz`` and ``name.json`` into ``directory`` as :func:`load_checked_arrays`
    reads them back: format 1, ``identity`` (key and value, e.g. ``("model_id", ...)``),
    the file name and its SHA-256, then ``details``. Returns the JSON written."""
    import json

    directory.mkdir(parents=True, exist_ok=True)
    npz = directory / f"{name}.npz"
    np.savez(npz, **arrays)  # type: ignore[arg-type]  # stub confuses **kw with allow_pickle
    meta = {"format": 1, identity[0]: identity[1], "file": npz.name,
            "sha256": sha256_file(npz), **details}
    (directory / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta
