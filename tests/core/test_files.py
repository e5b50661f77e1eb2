"""benchmark.files: the one atomic write, the one file hash, cache-key digests and ArrayCache."""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest

from benchmark import files
from benchmark.files import (
    ArrayCache,
    atomic_write_bytes,
    atomic_write_text,
    canonical_json,
    key_digest,
    library_versions,
    move_aside,
    replace_atomically,
    replace_directory,
    sha256_file,
)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache directory for this test only."""
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ----------------------------------------------------------------------------- atomic writes


def test_atomic_write_creates_parents_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "x.txt"
    assert atomic_write_text(target, "one\n") == target
    assert atomic_write_bytes(target, b"two") == target
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.txt"]  # no temporary file left


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    atomic_write_bytes(target, b"old")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_bytes(b"half of the new")
        raise RuntimeError("writer crashed")

    with pytest.raises(RuntimeError, match="writer crashed"):
        replace_atomically(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_failed_rename_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.bin"
    atomic_write_bytes(target, b"old")

    def boom(src: object, dst: object) -> None:
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(OSError, match="simulated"):
        atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_replace_atomically_gives_a_file_name_to_writers_that_need_one(tmp_path: Path) -> None:
    target = tmp_path / "cifs.zip"

    def write(tmp: Path) -> None:
        assert tmp.parent == tmp_path and tmp != target and tmp.name.startswith(".cifs.zip.")
        with zipfile.ZipFile(tmp, "w") as zf:
            zf.writestr("0_x.cif", "data_x\n")

    replace_atomically(target, write)
    with zipfile.ZipFile(target) as zf:
        assert zf.namelist() == ["0_x.cif"]


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_atomic_files_get_the_mode_a_plain_write_gets(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    atomic = atomic_write_bytes(tmp_path / "atomic", b"x")
    assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_replace_directory_swaps_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "models"

    def build(version: str) -> object:
        def fill(staging: Path) -> None:
            (staging / "sub").mkdir()
            (staging / "sub" / "w.txt").write_text(version)

        return fill

    replace_directory(target, build("v1"))
    assert (target / "sub" / "w.txt").read_text() == "v1"

    def fail(staging: Path) -> None:
        (staging / "partial.txt").write_text("half")
        raise RuntimeError("extraction failed")

    with pytest.raises(RuntimeError):
        replace_directory(target, fail)
    assert sorted(p.name for p in target.iterdir()) == ["sub"]  # the old directory, untouched
    replace_directory(target, build("v2"))
    assert (target / "sub" / "w.txt").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]  # no staging or old copy left


def test_move_aside_keeps_the_file_under_a_new_name(tmp_path: Path) -> None:
    bad = tmp_path / "index.sqlite"
    bad.write_bytes(b"garbage")
    moved = move_aside(bad, "corrupt")
    assert not bad.exists() and moved.read_bytes() == b"garbage"
    assert moved.name.startswith("index.sqlite.corrupt-")


# ----------------------------------------------------------------------------- hashes and keys


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)  # several read chunks
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_key_digest_is_canonical() -> None:
    a = {"file_sha256": "ab" * 32, "sizes": (256, 64), "version": np.int64(3), "libraries": {"x": "1.0", "y": None}}
    b = {"libraries": {"y": None, "x": "1.0"}, "version": 3, "sizes": [256, 64], "file_sha256": "ab" * 32}
    assert canonical_json(a) == canonical_json(b)
    assert key_digest(a) == key_digest(b)
    assert len(key_digest(a)) == 64
    assert key_digest(a) != key_digest({**b, "version": 4})


def test_key_must_be_explicit_data() -> None:
    with pytest.raises(TypeError):
        key_digest({"what": object()})
    with pytest.raises(TypeError):
        key_digest(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_library_versions() -> None:
    versions = library_versions("numpy", "definitely-not-installed-pkg")
    assert versions == {"numpy": np.__version__, "definitely-not-installed-pkg": None}


# ----------------------------------------------------------------------------- ArrayCache


def _arrays() -> dict[str, np.ndarray]:
    return {"counts": np.array([2, 3], dtype=np.int64), "coords": np.arange(15.0).reshape(5, 3), "labels": np.array(["a", "bc"])}


def test_array_cache_round_trip(cache_dir: Path) -> None:
    key = {"file_sha256": "cd" * 32, "parse_version": 1}
    cache = ArrayCache("parsed", key)
    assert cache.load() is None
    path = cache.save(_arrays())
    assert path == cache_dir / "parsed" / f"{key_digest(key)}.npz" == cache.path
    got = ArrayCache("parsed", dict(key)).load()
    assert got is not None and set(got) == set(_arrays())
    for name, value in _arrays().items():
        np.testing.assert_array_equal(got[name], value)
        assert got[name].dtype == value.dtype
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # written atomically


def test_array_cache_other_key_misses(cache_dir: Path) -> None:
    ArrayCache("parsed", {"file_sha256": "cd" * 32, "parse_version": 1}).save(_arrays())
    assert ArrayCache("parsed", {"file_sha256": "cd" * 32, "parse_version": 2}).load() is None
    assert ArrayCache("other", {"file_sha256": "cd" * 32, "parse_version": 1}).load() is None


def test_array_cache_refuses_a_file_stored_under_another_key(cache_dir: Path) -> None:
    stale = ArrayCache("parsed", {"file_sha256": "00" * 32})
    stale.save(_arrays())
    cache = ArrayCache("parsed", {"file_sha256": "11" * 32})
    cache.path.write_bytes(stale.path.read_bytes())  # e.g. a copied or renamed cache file
    assert cache.load() is None


@pytest.mark.parametrize("damage", ["truncate", "garbage", "no_key", "pickled_object"])
def test_damaged_cache_is_rebuilt_not_trusted(cache_dir: Path, damage: str) -> None:
    cache = ArrayCache("fingerprints", {"split": "test", "n": 2})
    cache.save(_arrays())
    raw = cache.path.read_bytes()
    if damage == "truncate":
        cache.path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        cache.path.write_bytes(b"not an npz at all" * 10)
    elif damage == "no_key":
        np.savez(cache.path, **_arrays())
    else:  # an object array needs pickle to load, which the cache never allows
        np.savez(cache.path, __cache_key__=np.array(cache.key), counts=np.array([{"x": 1}], dtype=object))
    assert cache.load() is None
    cache.save(_arrays())  # rebuilding overwrites the damaged file
    got = cache.load()
    assert got is not None and np.array_equal(got["counts"], _arrays()["counts"])


def test_array_cache_rejects_what_it_could_not_read_back(cache_dir: Path) -> None:
    cache = ArrayCache("parsed", {"k": 1})
    with pytest.raises(ValueError, match="Python objects"):
        cache.save({"x": np.array([object()], dtype=object)})
    with pytest.raises(ValueError, match="reserved"):
        cache.save({"__cache_key__": np.zeros(1)})
    with pytest.raises(ValueError, match="directory name"):
        ArrayCache("../escape", {"k": 1})
    assert not cache.path.exists()
