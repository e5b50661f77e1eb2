"""Datasets in the published CSV format (CDVAE's ``data/<name>/<split>.csv``).

Each row holds a ``cif`` column (pymatgen CIF text, P1) and property columns. A crystal is read as
the published pipeline reads it (CDVAE ``build_crystal`` with ``niggli=True, primitive=False``):
parse the CIF, take the Niggli-reduced cell (``Structure.get_reduced_structure()``), and rebuild it
from its lattice parameters (``Lattice.from_parameters``), which fixes the orientation.

Files are looked up in the data directories of :func:`benchmark.settings.data_dirs`
(``--data-dir``, ``BENCHMARK_DATA_DIR``, the user cache); an official file that is missing
everywhere is downloaded from the pinned commit of the CDVAE repository into the cache and checked
byte for byte against its git blob id. Parsed splits are cached (:class:`benchmark.files.ArrayCache`,
keyed by the file's SHA-256, :data:`PARSE_VERSION` and pymatgen's version), so CIFs are parsed once.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmark import settings
from benchmark.crystal import Crystal
from benchmark.files import ArrayCache, atomic_write_bytes, library_versions, sha256_file

CDVAE_COMMIT = "f857f598d6f6cca5dc1ea0582d228f12dcc2c2ea"
CDVAE_RAW = "https://raw.githubusercontent.com/txie-93/cdvae/{commit}/data/{name}/{split}.csv"
PARSE_VERSION = 1  # bump when the parsing/reduction below changes, to invalidate caches


class DatasetNotFound(FileNotFoundError):
    """A dataset file is in none of the data directories and could not be downloaded."""


def git_blob_id(data: bytes) -> str:
    """Git's object id of a file's content: SHA-1 of ``b"blob <size>\\0" + content``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def parse_cif_published(cif: str, niggli: bool = True) -> Any:
    """pymatgen Structure of a CIF as CDVAE's ``build_crystal(niggli=True, primitive=False)`` makes it."""
    from pymatgen.core import Lattice, Structure

    with warnings.catch_warnings():
        # the published CSVs are pymatgen's own CIFs; its note that it snapped coordinates within
        # 1e-4 of ideal values, printed for most rows, says nothing a user can act on
        warnings.filterwarnings("ignore", message="Issues encountered while parsing CIF", category=UserWarning)
        structure = Structure.from_str(cif, fmt="cif")
    if niggli:
        structure = structure.get_reduced_structure()
    return Structure(
        lattice=Lattice.from_parameters(*structure.lattice.parameters),
        species=structure.species,
        coords=structure.frac_coords,
        coords_are_cartesian=False,
    )


@dataclass(frozen=True)
class Dataset:
    """A dataset of crystals stored as CSV splits.

    Attributes:
        name: registry name (``perov_5``); ``folder`` is its directory name under a data directory.
        description: one line for ``list``.
        splits: split names available (``train``, ``val``, ``test``).
        properties: property columns (numbers or class labels) kept on each crystal.
        target: the property the published property-optimisation task minimises, if any.
        official_blobs: git blob id per split of the official files (downloadable), if any.
        upstream_name: the folder name in the CDVAE repository, when it differs from ``folder``.
        citation: where the data come from.
        protocol_family: whose published constants (coverage cutoffs, SR percentiles, oracle) apply:
            ``perov_5``, ``carbon_24``, ``mp_20``, or None when the papers define none.
        cov_cutoffs: (structure, composition) coverage cutoffs for a dataset without a protocol
            family (a run can still override them).
    """

    name: str
    description: str
    folder: str
    splits: tuple[str, ...] = ("train", "val", "test")
    properties: tuple[str, ...] = ()
    target: str | None = None
    official_blobs: dict[str, str] = field(default_factory=dict)
    upstream_name: str | None = None
    citation: str = ""
    protocol_family: str | None = None
    cov_cutoffs: tuple[float, float] | None = None

    # -------------------------------------------------------------- files
    def candidate_paths(self, split: str, data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
        return [d / self.folder / f"{split}.csv" for d in settings.data_dirs(data_dir)]

    def file_path(self, split: str, data_dir: str | os.PathLike[str] | None = None, download: bool = True) -> Path:
        """The CSV of ``split``: found in a data directory, or downloaded if official and allowed."""
        self._check_split(split)
        candidates = self.candidate_paths(split, data_dir)
        for path in candidates:
            if path.is_file():
                return path
        if download and split in self.official_blobs and not settings.offline():
            return self._download(split)
        searched = "\n  ".join(str(p) for p in candidates)
        how = (
            "It is downloaded automatically on a machine with network access (unset BENCHMARK_OFFLINE)."
            if split in self.official_blobs
            else "This file is not downloadable; obtain it from the source in the dataset's description."
        )
        raise DatasetNotFound(
            f"dataset {self.name!r}: no {split}.csv found. Searched:\n  {searched}\n"
            f"Point --data-dir or BENCHMARK_DATA_DIR at a directory containing {self.folder}/{split}.csv. {how}"
        )

    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise DatasetNotFound(f"dataset {self.name!r} has no split {split!r}; splits: {', '.join(self.splits)}")

    def _download(self, split: str) -> Path:
        import urllib.request

        from tqdm.auto import tqdm

        url = CDVAE_RAW.format(commit=CDVAE_COMMIT, name=self.upstream_name or self.folder, split=split)
        target = settings.download_dir() / self.folder / f"{split}.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                chunks = []
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"{self.name}/{split}.csv") as bar:
                    while True:
                        chunk = response.read(1 << 16)
                        if not chunk:
                            break
                        chunks.append(chunk)
                        bar.update(len(chunk))
        except OSError as exc:
            raise DatasetNotFound(
                f"dataset {self.name!r}: {split}.csv is not in any data directory and downloading {url} failed ({exc}). "
                f"Download it by hand into {target} or point --data-dir/BENCHMARK_DATA_DIR at a copy."
            ) from exc
        data = b"".join(chunks)
        blob = git_blob_id(data)
        if blob != self.official_blobs[split]:
            raise DatasetNotFound(f"downloaded {url} does not match the official file (git blob {blob}, expected {self.official_blobs[split]}); not saved")
        atomic_write_bytes(target, data)
        return target

    # -------------------------------------------------------------- crystals
    def load(self, split: str, data_dir: str | os.PathLike[str] | None = None, limit: int | None = None, progress: bool = True) -> list[Crystal]:
        """Crystals of ``split`` (Niggli-reduced as published), with their property columns."""
        path = self.file_path(split, data_dir)
        crystals = load_csv(path, self.properties, progress=progress, desc=f"{self.name}/{split}")
        return crystals[:limit] if limit is not None else crystals



# ------------------------------------------------------------------ CSV parsing with a cache


def _parse_row(cif: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    s = parse_cif_published(cif)
    lat = s.lattice
    return np.array([site.specie.Z for site in s]), np.array(s.frac_coords), np.array(lat.abc), np.array(lat.angles)


def _clean(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value)
    return value if isinstance(value, (int, str)) else str(value)


def load_csv(path: str | os.PathLike[str], properties: Sequence[str] = (), progress: bool = True, desc: str | None = None) -> list[Crystal]:
    """Crystals of a published-format CSV, parsed once and cached (see :func:`parsed_cache`)."""
    import pandas as pd

    path = Path(path)
    cache = parsed_cache(sha256_file(path))
    df = pd.read_csv(path)
    if "cif" not in df.columns:
        raise ValueError(f"{path}: no 'cif' column (columns: {', '.join(map(str, df.columns))})")
    ids = df["material_id"].astype(str).tolist() if "material_id" in df.columns else [str(i) for i in range(len(df))]
    props = [c for c in properties if c in df.columns]
    arrays = cache.load()
    if arrays is not None and not _parsed_arrays_fit(arrays, len(df)):
        arrays = None  # the key vouches for the input file, not for the arrays' shapes
    if arrays is None:
        from tqdm.auto import tqdm

        rows = [_parse_row(cif) for cif in tqdm(df["cif"].tolist(), desc=f"parsing {desc or path.name}", disable=not progress, leave=False)]
        counts = np.array([len(r[0]) for r in rows], dtype=np.int64)
        arrays = {
            "num_atoms": counts,
            "atomic_numbers": np.concatenate([r[0] for r in rows]).astype(np.int64),
            "frac_coords": np.concatenate([r[1] for r in rows]).astype(np.float64),
            "lengths": np.stack([r[2] for r in rows]),
            "angles": np.stack([r[3] for r in rows]),
        }
        cache.save(arrays)
    out: list[Crystal] = []
    start = 0
    records = df[props].to_dict("records") if props else [{} for _ in range(len(df))]
    for i, n in enumerate(arrays["num_atoms"].tolist()):
        p = {k: _clean(v) for k, v in records[i].items() if not (isinstance(v, float) and math.isnan(v))}
        out.append(
            Crystal(
                arrays["atomic_numbers"][start : start + n],
                arrays["frac_coords"][start : start + n],
                arrays["lengths"][i],
                arrays["angles"][i],
                p,
                ids[i],
            )
        )
        start += n
    return out


def sample_csv(path: str | os.PathLike[str], n: int | None, seed: int = 0) -> list[Crystal]:
    """``n`` rows of a published-format CSV drawn with pandas' ``sample(random_state=seed)`` (all
    rows if ``n`` is None or not smaller), parsed as :func:`load_csv` parses them (published CIF
    reading and Niggli reduction) but without its cache; labels ``<folder>/<split>#<row>``."""
    import pandas as pd

    path = Path(path)
    df = pd.read_csv(path)
    if n is not None and n < len(df):
        df = df.sample(n=n, random_state=seed)
    out = []
    for i, cif in zip(df.index, df["cif"]):
        z, frac, lengths, angles = _parse_row(cif)
        out.append(Crystal(z, frac, lengths, angles, label=f"{path.parent.name}/{path.stem}#{i}"))
    return out


def parsed_cache(file_sha256: str) -> ArrayCache:
    """The cache of a CSV's parsed crystals: keyed by the file's SHA-256, :data:`PARSE_VERSION`
    and the version of pymatgen, whose CIF parser and Niggli reduction produce them."""
    return ArrayCache(
        "parsed",
        {"file_sha256": file_sha256, "parse_version": PARSE_VERSION, "libraries": library_versions("pymatgen", "pymatgen-core")},
    )


def _parsed_arrays_fit(arrays: dict[str, np.ndarray], n_rows: int) -> bool:
    """Whether cached arrays describe ``n_rows`` crystals consistently."""
    try:
        counts = arrays["num_atoms"]
        n_atoms = int(counts.sum())
        return (
            counts.shape == (n_rows,)
            and bool((counts >= 0).all())
            and arrays["atomic_numbers"].shape == (n_atoms,)
            and arrays["frac_coords"].shape == (n_atoms, 3)
            and arrays["lengths"].shape == (n_rows, 3)
            and arrays["angles"].shape == (n_rows, 3)
        )
    except (KeyError, AttributeError, TypeError, ValueError):
        return False


__all__ = ["Dataset", "DatasetNotFound", "load_csv", "parse_cif_published", "parsed_cache", "git_blob_id"]
