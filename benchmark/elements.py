"""CGCNN's element feature vectors (``atom_init.json``), read from the oracle directories.

CGCNN (Xie and Grossman, PRL 120, 145301, 2018) describes each element by 92 numbers (one-hot bins
of group, period, electronegativity, covalent radius, valence electrons, first ionisation energy,
electron affinity, block and atomic volume). Several parts of the project read the same file:
Con-CDVAE's formula embedding, and the FTCP representation (Ren et al., Matter 5, 314, 2022; its
released ``data.py`` reads ``data/atom_init.json`` from CGCNN). The file is the one Con-CDVAE ships
(``cgcnn/data/mptest/atom_init.json`` at commit 0c35a16), which ``python -m benchmark oracle fetch
con-cdvae`` stores as ``con_cdvae_cgcnn/atom_init.json`` in the oracle cache; it is checked against
its pinned sha256 and never copied into the project (the licence note of those files asks users to
download them from the pinned commit). Elements 1-100 have vectors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

ATOM_INIT_DIR = "con_cdvae_cgcnn"
"""The folder of an oracle directory (:func:`benchmark.settings.oracle_dirs`) holding the file."""
ATOM_INIT = "atom_init.json"
ATOM_INIT_SHA256 = "cb90bd2257dbf8cfc4e6b2b6d4348d4616e8e9680f1339b1461137032e0f1894"
"""sha256 of Con-CDVAE's ``atom_init.json`` (the same pin as ``oracle fetch con-cdvae``)."""
HOW_TO_GET = ("get it with `python -m benchmark oracle fetch con-cdvae` (or set BENCHMARK_ORACLE_DIR / --oracle-dir "
              f"to a directory holding {ATOM_INIT_DIR}/{ATOM_INIT})")


def atom_init_candidates() -> list[Path]:
    """Where ``atom_init.json`` is looked for, in order: ``<dir>/con_cdvae_cgcnn/atom_init.json``
    for each oracle directory (``BENCHMARK_ORACLE_DIR``, then the cache)."""
    from benchmark import settings

    return [d / ATOM_INIT_DIR / ATOM_INIT for d in settings.oracle_dirs()]


def find_atom_init() -> Path | None:
    """The first existing :func:`atom_init_candidates` entry, or None."""
    return next((p for p in atom_init_candidates() if p.is_file()), None)


def read_atom_init(path: str | os.PathLike[str] | None = None, dim: int = 92) -> dict[int, np.ndarray]:
    """``{Z: (dim,) float64 vector}`` from ``atom_init.json`` (``path``, else :func:`find_atom_init`),
    after checking the file's sha256 against :data:`ATOM_INIT_SHA256`.

    Raises:
        FileNotFoundError: no file, naming the places looked at and how to get it.
        ValueError: the file's hash is not the pinned one, or a vector is not ``dim`` long.
    """
    from benchmark.files import sha256_file

    if path is None:
        found = find_atom_init()
        if found is None:
            tried = ", ".join(str(p) for p in atom_init_candidates())
            raise FileNotFoundError(f"CGCNN's element vectors ({ATOM_INIT}) not found at {tried}; {HOW_TO_GET}")
        path = found
    path = Path(path)
    digest = sha256_file(path)
    if digest != ATOM_INIT_SHA256:
        raise ValueError(f"{path}: sha256 {digest} is not that of Con-CDVAE's atom_init.json ({ATOM_INIT_SHA256})")
    raw = json.loads(path.read_text())
    table: dict[int, np.ndarray] = {}
    for key, vec in raw.items():
        if len(vec) != dim:
            raise ValueError(f"{path}: element {key} has {len(vec)} features, expected {dim}")
        table[int(key)] = np.asarray(vec, dtype=np.float64)
    return table


__all__ = ["ATOM_INIT", "ATOM_INIT_DIR", "ATOM_INIT_SHA256", "atom_init_candidates", "find_atom_init", "read_atom_init"]
