"""Writing files and caching arrays: the one place the project replaces a file on disk.

Every file the project writes goes through this module:

* one atomic write, :func:`replace_atomically`: a temporary file in the destination's directory,
  written by the caller, fsynced, renamed over the destination (``os.replace``), the directory
  fsynced. A reader sees the old file or the new one, never half of one; an interrupted write
  leaves at most a hidden ``.<name>.*.tmp`` file. :func:`atomic_write_bytes`,
  :func:`atomic_write_text` and :func:`write_json_atomic` are built on it;
  :func:`replace_directory` does the same for a directory built in a staging folder;
* one file hash, :func:`sha256_file`;
* one way to turn a cache key (a JSON-able mapping of everything a cached result depends on: input
  file hashes, the code's version, library versions, options) into a stable name,
  :func:`key_digest`, with :func:`library_versions` for the library part;
* one cached-array helper, :class:`ArrayCache`: ``.npz`` files under
  ``<cache dir>/<kind>/<digest>.npz`` that store their key, read with ``allow_pickle=False``; a
  damaged file or one whose stored key differs is treated as missing (rebuilt), never trusted.

This module is core: it imports nothing from the plugin folders.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ArrayCache",
    "atomic_write_bytes",
    "atomic_write_text",
    "canonical_json",
    "key_digest",
    "library_versions",
    "move_aside",
    "replace_atomically",
    "replace_directory",
    "sha256_file",
    "to_jsonable",
    "write_json_atomic",
]

PathLike = str | os.PathLike[str]

# ============================================================================ atomic writes
_FILE_MODE: int | None = None


def _file_mode() -> int:
    """The mode ``open()`` gives a new file here (0o666 less the umask).

    ``mkstemp`` creates its file with mode 0o600; without this, every atomically written file (a
    sample file, a model checkpoint) would be private to its owner, unlike a plainly written one.
    The umask can only be read by setting it, so it is read once and put back at once.
    """
    global _FILE_MODE
    if _FILE_MODE is None:
        mask = os.umask(0o022)
        os.umask(mask)
        _FILE_MODE = 0o666 & ~mask
    return _FILE_MODE


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX only; elsewhere renames need no directory sync)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(str(directory), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems do not support fsync on directories
    finally:
        os.close(fd)


def replace_atomically(path: PathLike, write: Callable[[Path], None]) -> Path:
    """Create or replace the file ``path`` atomically with what ``write`` writes.

    ``write(tmp)`` receives the name of an (empty) temporary file in the same directory and must
    write the complete content to that name; this suits writers that want a file name (ASE's,
    ``zipfile``, ``torch.save``, a model's ``save``). Then the temporary file is fsynced and renamed
    over ``path``. If ``write`` raises, the temporary file is removed, ``path`` is left as it was and
    the exception propagates. Parent directories are created.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    tmp = Path(name)
    try:
        if hasattr(os, "fchmod"):  # not on Windows, where mkstemp's mode is not owner-only anyway
            os.fchmod(fd, _file_mode())
        os.close(fd)
        write(tmp)
        # fsync through a fresh descriptor: ``write`` may have used its own (or a library's) handle
        sync_fd = os.open(name, os.O_RDONLY)
        try:
            os.fsync(sync_fd)
        finally:
            os.close(sync_fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`replace_atomically`)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    return replace_atomically(path, write)


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically, encoded with ``encoding`` (no newline translation)."""
    return atomic_write_bytes(path, text.encode(encoding))


def write_json_atomic(path: PathLike, obj: Any) -> Path:
    """Write ``obj`` as pretty JSON (indent 2, UTF-8, trailing newline) to ``path`` atomically.

    numpy scalars and arrays, paths, tuples and sets are converted (:func:`to_jsonable`); NaN and
    infinities are written as ``null``, so the file is strict JSON.
    """
    text = json.dumps(to_jsonable(obj), indent=2, ensure_ascii=False, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def write_npz_atomic(path: PathLike, arrays: Mapping[str, Any]) -> Path:
    """Write ``arrays`` to a compressed ``.npz`` atomically (:func:`replace_atomically`); returns the file.

    Raises:
        ValueError: an array holds Python objects (it could only be read back with pickle).
    """
    out: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise ValueError(f"array {name!r} holds Python objects; an .npz written here holds plain numbers and strings only")
        out[str(name)] = array
    buf = io.BytesIO()
    np.savez_compressed(buf, **out)
    return atomic_write_bytes(path, buf.getvalue())


def read_npz(path: PathLike) -> dict[str, np.ndarray] | None:
    """The arrays of an ``.npz`` (opened with ``allow_pickle=False``), or None when it is missing or damaged."""
    try:
        with np.load(Path(path), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except Exception:  # missing, truncated, a bad CRC, a member that is not an array
        return None


def replace_directory(path: PathLike, build: Callable[[Path], None]) -> Path:
    """Create or replace the directory ``path`` with one that ``build`` fills.

    ``build(staging)`` receives an empty staging directory next to ``path`` and fills it. Only when
    it returns is the staging directory renamed to ``path`` (an existing ``path`` is first renamed
    aside and deleted afterwards, since a rename cannot replace a non-empty directory). If ``build``
    raises, the staging directory is deleted and ``path`` is left as it was.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".staging", dir=str(path.parent)))
    old: Path | None = None
    try:
        build(staging)
        if path.exists():
            old = path.with_name(f".{path.name}.{secrets.token_hex(4)}.old")
            os.replace(path, old)
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None and not path.exists():
            os.replace(old, path)  # put the previous directory back
        raise
    if old is not None:  # only once the new directory is in place
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(path.parent)
    return path


def move_aside(path: PathLike, tag: str = "corrupt") -> Path:
    """Rename a damaged file to ``<name>.<tag>-<random hex>`` in its directory and return the new
    path: it is kept for a person to inspect, and nothing reads it under its old name again."""
    path = Path(path)
    target = path.with_name(f"{path.name}.{tag}-{secrets.token_hex(3)}")
    os.replace(path, target)
    return target


# ============================================================================ hashes and keys
def sha256_file(path: PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, paths, tuples and sets to JSON types; NaN/inf become None.

    Mapping keys become strings. Raises ``TypeError`` for anything else that JSON cannot hold.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return to_jsonable(float(obj))
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    pd = sys.modules.get("pandas")  # only if already imported: never import pandas for this
    if pd is not None:
        if obj is pd.NA or obj is pd.NaT:
            return None
        if isinstance(obj, pd.Timestamp):
            return obj.isoformat()
    if hasattr(obj, "tolist"):
        return to_jsonable(obj.tolist())
    if hasattr(obj, "item"):
        return to_jsonable(obj.item())
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def canonical_json(key: Mapping[str, Any]) -> str:
    """The one text form of a cache key: compact JSON with sorted keys, ASCII only.

    Tuples become lists and numpy scalars plain numbers (:func:`to_jsonable`), so equal keys give
    equal text whatever container types they were built from. Objects JSON cannot hold raise
    ``TypeError``: a key must be explicit, never a ``repr``.
    """
    if not isinstance(key, Mapping):
        raise TypeError(f"a cache key is a mapping, got {type(key).__name__}")
    return json.dumps(to_jsonable(key), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def key_digest(key: Mapping[str, Any]) -> str:
    """Hex SHA-256 of :func:`canonical_json` of ``key``: the name of whatever is cached under it."""
    return hashlib.sha256(canonical_json(key).encode("ascii")).hexdigest()


def library_versions(*packages: str) -> dict[str, str | None]:
    """Installed version of each distribution (None if not installed), for cache keys.

    A cached result computed by a library (pymatgen's CIF parser, matminer's fingerprints) is only
    valid for the version that computed it; putting these in the key rebuilds it after an upgrade.
    """
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# ============================================================================ cached arrays
_KEY_ARRAY = "__cache_key__"
_KIND = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class ArrayCache:
    """Named numpy arrays cached on disk under a key, for results that are costly to recompute.

    The file is ``<cache dir>/<kind>/<key_digest(key)>.npz`` (the cache directory of
    :func:`benchmark.settings.cache_dir`, read when the cache is created). It stores the arrays and
    the key's :func:`canonical_json` text; :meth:`load` returns the arrays only if the file is a
    readable ``.npz`` (opened with ``allow_pickle=False``, so it can never run code) whose stored key
    equals this one, and None otherwise, so a missing, damaged, foreign or outdated file is rebuilt,
    never trusted. :meth:`save` writes atomically, so concurrent writers of the same key each leave
    a complete file.

    The key must hold everything the arrays depend on: the hashes of the input files
    (:func:`sha256_file`), a version of the code that computes them (bumped when its output
    changes), the versions of the libraries doing the work (:func:`library_versions`) and the
    options used. Callers still check that the arrays fit what they expect (lengths, offsets),
    since a key can only vouch for what it names.

    Example::

        cache = ArrayCache("parsed", {"file_sha256": sha256_file(csv), "parse_version": 1,
                                      "libraries": library_versions("pymatgen")})
        arrays = cache.load()
        if arrays is None:
            arrays = parse(csv)
            cache.save(arrays)

    Attributes:
        kind: the cache's sub-directory, e.g. ``"parsed"`` or ``"fingerprints"``.
        key: the key as canonical JSON text.
        digest: ``key_digest(key)``.
        path: the ``.npz`` file.
    """

    def __init__(self, kind: str, key: Mapping[str, Any]) -> None:
        if not _KIND.fullmatch(kind):
            raise ValueError(f"cache kind {kind!r} must be a plain directory name (letters, digits, '_', '-', '.')")
        from benchmark import settings

        self.kind = kind
        self.key = canonical_json(key)
        self.digest = key_digest(key)
        self.path = settings.cache_dir() / kind / f"{self.digest}.npz"

    def load(self) -> dict[str, np.ndarray] | None:
        """The cached arrays, or None when the file is missing, unreadable or for another key."""
        if not self.path.is_file():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as npz:
                if _KEY_ARRAY not in npz.files or str(npz[_KEY_ARRAY][()]) != self.key:
                    return None
                return {name: npz[name] for name in npz.files if name != _KEY_ARRAY}
        except Exception:  # a truncated zip, a bad CRC, a member that is not an array: rebuild
            return None

    def save(self, arrays: Mapping[str, np.ndarray]) -> Path:
        """Write ``arrays`` (compressed) with this cache's key, atomically; returns the file.

        Raises:
            ValueError: an array name is reserved (starts with ``__``) or an array holds Python
                objects (it could only be read back with pickle, which :meth:`load` refuses).
        """
        out: dict[str, np.ndarray] = {}
        for name, value in arrays.items():
            if name.startswith("__"):
                raise ValueError(f"array name {name!r} is reserved (names starting with '__')")
            array = np.asarray(value)
            if array.dtype.hasobject:
                raise ValueError(f"array {name!r} holds Python objects; a cache holds plain numbers and strings only")
            out[name] = array
        out[_KEY_ARRAY] = np.array(self.key)
        buf = io.BytesIO()
        np.savez_compressed(buf, **out)
        return atomic_write_bytes(self.path, buf.getvalue())

    def __repr__(self) -> str:
        return f"ArrayCache({self.kind!r}, digest={self.digest[:12]}..., path='{self.path}')"
