"""The published CrystalNN crystal graph (CDVAE's encoder and property-model input) and its on-disk cache.

Graphs are built as the published pipeline built them: pymatgen ``CrystalNN(distance_cutoffs=None,
x_diff_weight=-1, porous_adjustment=False)`` through ``StructureGraph.from_local_env_strategy`` on
the crystal as given (pass Niggli-reduced cells, which :meth:`Dataset.load` returns), each bond
``(i, j, image)`` becoming the edges j -> i with ``image`` and i -> j with ``-image``.

:func:`build_graph` builds one graph; :func:`build_graphs` builds a list in parallel (joblib) and,
with a ``cache_key``, reads / writes the whole list as one ``.npz`` under ``<cache dir>/graphs/``
(:func:`graph_cache`: the project's one cached-array helper, keyed by the graph version, the
pymatgen version and :func:`crystals_digest` of the inputs). The CDVAE family of models
(encoder graphs) and the CDVAE property oracles share it.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from typing import Any, Sequence

import numpy as np

from benchmark.crystal import Crystal
from benchmark.files import ArrayCache, library_versions

__all__ = [
    "GRAPH_VERSION",
    "build_graph",
    "build_graphs",
    "crystals_digest",
    "graph_cache",
    "graphs_from_arrays",
    "graphs_to_arrays",
]

_CNN = None


def _crystal_nn() -> Any:
    global _CNN
    if _CNN is None:
        from pymatgen.analysis.local_env import CrystalNN

        _CNN = CrystalNN(distance_cutoffs=None, x_diff_weight=-1, porous_adjustment=False)
    return _CNN


def build_graph(crystal: Crystal) -> dict[str, np.ndarray] | None:
    """The published CrystalNN graph of one crystal, or None if it cannot be built or has no edges.

    Returns a dict with ``atom_types`` (n,), ``frac_coords`` (n, 3), ``lattice`` (3, 3),
    ``edge_index`` (2, e: row 0 source j, row 1 target i) and ``images`` (e, 3, integer
    translations of the source).
    """
    from pymatgen.analysis.graphs import StructureGraph

    if crystal.num_atoms == 0 or not (np.all(np.isfinite(crystal.frac_coords)) and np.all(np.isfinite(crystal.lengths)) and np.all(np.isfinite(crystal.angles))):
        return None
    try:
        structure = crystal.to_structure()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sg = StructureGraph.from_local_env_strategy(structure, _crystal_nn())
        edges, images = [], []
        for i, j, image in sg.graph.edges(data="to_jimage"):
            edges.append((j, i))
            images.append(tuple(image))
            edges.append((i, j))
            images.append(tuple(-t for t in image))
    except Exception:  # CrystalNN fails on some unphysical samples: no prediction for them
        return None
    if not edges:
        return None
    return {
        "atom_types": crystal.atomic_numbers.copy(),
        "frac_coords": np.array(structure.frac_coords, dtype=np.float64),
        "lattice": np.array(structure.lattice.matrix, dtype=np.float64),
        "edge_index": np.asarray(edges, dtype=np.int64).T.copy(),
        "images": np.asarray(images, dtype=np.float64),
    }


#: bump when build_graph's output changes: cached graphs of older versions are then never read
GRAPH_VERSION = 1


def _build_chunk(crystals: Sequence[Crystal]) -> list[dict[str, np.ndarray] | None]:
    return [build_graph(c) for c in crystals]


def crystals_digest(crystals: Sequence[Crystal]) -> str:
    """SHA-256 of every crystal's atoms, coordinates and cell, in order: what a graph depends on."""
    h = hashlib.sha256(str(len(crystals)).encode())
    for c in crystals:
        h.update(np.int64(c.num_atoms).tobytes())
        for a in (np.asarray(c.atomic_numbers, dtype=np.int64), np.asarray(c.frac_coords, dtype=np.float64),
                  np.asarray(c.lengths, dtype=np.float64), np.asarray(c.angles, dtype=np.float64)):
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def graph_cache(cache_key: str, crystals: Sequence[Crystal]) -> ArrayCache:
    """The cache of the graphs of exactly these crystals under ``cache_key`` (e.g. a dataset file's
    SHA-256 and split): ``<cache dir>/graphs/``, keyed by the key, :func:`crystals_digest`, the
    graph version and the versions of pymatgen and networkx, so another CrystalNN never reads them."""
    return ArrayCache("graphs", {"graph_version": GRAPH_VERSION, "cache_key": cache_key, "crystals_sha256": crystals_digest(crystals),
                                 "libraries": library_versions("pymatgen", "pymatgen-core", "networkx")})


def graphs_to_arrays(graphs: Sequence[dict[str, np.ndarray] | None]) -> dict[str, np.ndarray]:
    """Graphs (None entries included) as concatenated arrays with per-crystal atom and edge offsets."""
    n = len(graphs)
    has = np.array([g is not None for g in graphs], dtype=bool)
    n_atoms = np.array([0 if g is None else len(g["atom_types"]) for g in graphs], dtype=np.int64)
    n_edges = np.array([0 if g is None else g["edge_index"].shape[1] for g in graphs], dtype=np.int64)
    present = [g for g in graphs if g is not None]

    def cat(key: str, empty: np.ndarray, axis: int = 0) -> np.ndarray:
        return np.concatenate([np.asarray(g[key]) for g in present], axis=axis) if present else empty

    return {
        "has_graph": has,
        "atom_offsets": np.concatenate([[0], np.cumsum(n_atoms)]).astype(np.int64),
        "edge_offsets": np.concatenate([[0], np.cumsum(n_edges)]).astype(np.int64),
        "atom_types": cat("atom_types", np.zeros(0, dtype=np.int64)),
        "frac_coords": cat("frac_coords", np.zeros((0, 3))),
        "lattice": np.stack([g["lattice"] if g is not None else np.full((3, 3), np.nan) for g in graphs]) if n else np.zeros((0, 3, 3)),
        "edge_index": cat("edge_index", np.zeros((2, 0), dtype=np.int64), axis=1),
        "images": cat("images", np.zeros((0, 3))),
    }


def graphs_from_arrays(a: dict[str, np.ndarray] | None, n: int) -> list[dict[str, np.ndarray] | None] | None:
    """The graphs of :func:`graphs_to_arrays`, or None when the arrays are missing, inconsistent
    with each other, or not for ``n`` crystals (a cache file is then rebuilt, never trusted)."""
    if a is None:
        return None
    try:
        has, ao, eo = a["has_graph"], a["atom_offsets"], a["edge_offsets"]
        count = len(has)
        if count != n or has.dtype != bool or ao.shape != (count + 1,) or eo.shape != (count + 1,) or ao[0] != 0 or eo[0] != 0:
            return None
        na, ne = np.diff(ao), np.diff(eo)
        if np.any(na < 0) or np.any(ne < 0) or np.any((na == 0) == has) or np.any((ne == 0) == has):  # a graph has atoms and edges, a None has neither
            return None
        if (a["atom_types"].shape != (ao[-1],) or a["frac_coords"].shape != (ao[-1], 3) or a["lattice"].shape != (count, 3, 3)
                or a["edge_index"].shape != (2, eo[-1]) or a["images"].shape != (eo[-1], 3)):
            return None
        out: list[dict[str, np.ndarray] | None] = []
        for k in range(count):
            if not has[k]:
                out.append(None)
                continue
            a0, a1, e0, e1 = int(ao[k]), int(ao[k + 1]), int(eo[k]), int(eo[k + 1])
            edge_index = a["edge_index"][:, e0:e1].copy()
            if edge_index.size and (edge_index.min() < 0 or edge_index.max() >= a1 - a0):
                return None
            out.append({
                "atom_types": a["atom_types"][a0:a1].copy(),
                "frac_coords": a["frac_coords"][a0:a1].copy(),
                "lattice": a["lattice"][k].copy(),
                "edge_index": edge_index,
                "images": a["images"][e0:e1].copy(),
            })
        return out
    except (KeyError, IndexError, ValueError, TypeError):  # a missing array, a wrong dtype: rebuild
        return None


def build_graphs(
    crystals: Sequence[Crystal],
    n_jobs: int | None = None,
    cache_key: str | None = None,
    progress: bool = True,
    chunk_size: int = 8,
    desc: str = "CrystalNN graphs",
) -> list[dict[str, np.ndarray] | None]:
    """:func:`build_graph` of every crystal, in input order, built in parallel with joblib.

    Args:
        n_jobs: worker count (default: all cores); 1 builds them in this process. The backend is
            joblib's current one (``loky`` processes unless set with ``joblib.parallel_config``).
        cache_key: when given (e.g. a dataset file's SHA-256 and split), the graphs of this whole
            list are read from / written to ``<cache dir>/graphs/`` (see :func:`graph_cache`);
            a cache file that is unreadable or not for these crystals is ignored and rewritten.
            The graphs do not depend on the oracle, so one key serves all of them.
    """
    crystals = list(crystals)
    cache = graph_cache(cache_key, crystals) if cache_key is not None else None
    if cache is not None:
        cached = graphs_from_arrays(cache.load(), len(crystals))
        if cached is not None:
            return cached
    from tqdm import tqdm

    n_jobs = n_jobs or os.cpu_count() or 1
    chunks = [crystals[k:k + chunk_size] for k in range(0, len(crystals), chunk_size)]
    graphs: list[dict[str, np.ndarray] | None] = []
    with tqdm(total=len(crystals), desc=desc, unit="crystal", leave=False, disable=not progress) as bar:
        if n_jobs == 1 or len(chunks) <= 1:
            for c in crystals:
                graphs.append(build_graph(c))
                bar.update(1)
        else:
            from joblib import Parallel, delayed

            for part in Parallel(n_jobs=n_jobs, return_as="generator")(delayed(_build_chunk)(ch) for ch in chunks):
                graphs.extend(part)
                bar.update(len(part))
    if cache is not None:
        try:
            cache.save(graphs_to_arrays(graphs))
        except OSError as exc:  # a read-only cache must not lose the predictions
            warnings.warn(f"could not write the graph cache {cache.path}: {exc}", RuntimeWarning, stacklevel=2)
    return graphs
