"""Evaluating many crystals: in parallel (joblib, any backend), with a cache for reference splits.

Featurisation (CrystalNN fingerprints) is nearly all of the published evaluation's time, so:

* crystals are evaluated in chunks by ``joblib.Parallel``; the backend is configurable
  (``loky`` processes by default, ``threading``, ``sequential``, or ``dask`` with a running
  ``dask.distributed`` client, through joblib's ``parallel_config``);
* the results for a reference split are cached on disk (:class:`benchmark.files.ArrayCache`, a plain
  ``.npz`` read with ``allow_pickle=False``), keyed by the dataset file's SHA-256, the split, the
  metric profile and its settings, the evaluation version and the versions of pymatgen, matminer
  and SMACT, so a warm evaluation featurises only the samples.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from benchmark.crystal import Crystal
from benchmark.metrics.crystal_eval import (
    DEFAULT_FINGERPRINT_BACKEND,
    EVAL_VERSION,
    CrystalResult,
    check_fingerprint_backend,
    evaluate_crystal,
    unreadable_result,
)
from benchmark.files import ArrayCache, library_versions
from benchmark.metrics.profiles import MetricProfile, get_profile

N_STRUCT_FP = 61
N_COMP_FP = 132
BACKENDS = ("loky", "threading", "sequential", "dask")


def check_backend(backend: str) -> None:
    """Fail early, with what to do, when a backend cannot run here."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "dask":
        try:
            from distributed import get_client
        except ImportError:
            raise ValueError("the dask backend needs dask.distributed: pip install 'crystal-gen-benchmark[dask]'") from None
        try:
            get_client()
        except ValueError:
            raise ValueError("the dask backend needs a running dask.distributed Client in this process: use --scheduler "
                             "(local, local:N, tcp://host:port or a scheduler file), which opens one") from None


def _chunk_eval(items: list[tuple[int, Crystal]], profile_name: str, fp_backend: str = DEFAULT_FINGERPRINT_BACKEND) -> list[CrystalResult]:
    profile = get_profile(profile_name)
    return [evaluate_crystal(c, profile, index=i, fp_backend=fp_backend) for i, c in items]


def evaluate_entries(
    entries: Sequence[object],
    profile: MetricProfile,
    n_jobs: int | None = None,
    backend: str = "loky",
    progress: bool = True,
    desc: str = "featurising",
    chunk_size: int = 16,
    fp_backend: str = DEFAULT_FINGERPRINT_BACKEND,
) -> list[CrystalResult]:
    """Evaluate a list of Crystals (anything else counts as unreadable) in input order.

    Args:
        entries: ``Crystal`` or an object with ``source`` and ``reason`` (an unreadable entry).
        n_jobs: worker count (default: all cores); 1 runs in this process. Ignored by the ``dask``
            backend, which uses every worker of the process's Dask client.
        fp_backend: who computes the CrystalNN fingerprints, "fast" or "matminer" (same numbers).
    """
    check_fingerprint_backend(fp_backend)
    from tqdm.auto import tqdm

    results: list[CrystalResult | None] = [None] * len(entries)
    todo: list[tuple[int, Crystal]] = []
    for i, e in enumerate(entries):
        if isinstance(e, Crystal):
            todo.append((i, e))
        else:
            results[i] = unreadable_result(i, getattr(e, "source", None), getattr(e, "reason", "unreadable entry"))
    # on Dask the cluster's workers are the parallelism: n_jobs (a local core count) does not apply
    n_jobs = -1 if backend == "dask" else (n_jobs or os.cpu_count() or 1)
    check_backend(backend)
    chunks = [todo[k : k + chunk_size] for k in range(0, len(todo), chunk_size)]
    bar = tqdm(total=len(todo), desc=desc, unit="crystal", disable=not progress)
    if n_jobs == 1 or backend == "sequential" or len(chunks) <= 1:
        for chunk in chunks:
            for r in _chunk_eval(chunk, profile.name, fp_backend):
                results[r.index] = r
            bar.update(len(chunk))
    else:
        from joblib import Parallel, delayed, parallel_config

        with parallel_config(backend=backend, n_jobs=n_jobs):
            gen = Parallel(return_as="generator")(delayed(_chunk_eval)(chunk, profile.name, fp_backend) for chunk in chunks)
            for chunk_results in gen:
                for r in chunk_results:
                    results[r.index] = r
                bar.update(len(chunk_results))
    bar.close()
    return [r for r in results if r is not None]


# ---------------------------------------------------------------- reference cache
def reference_cache(file_sha256: str, split: str, profile: MetricProfile, limit: int | None) -> ArrayCache:
    """The cache of a reference split's results: keyed by the dataset file's SHA-256, the split,
    ``limit``, the profile (name and settings), :data:`EVAL_VERSION` and the versions of the
    libraries that compute validity and fingerprints. Not by the fingerprint backend: "fast" and
    "matminer" give the same numbers (to ~1e-12), so a cache written by either serves both; the
    arrays record which backend computed each crystal (``fp_backend``)."""
    key = {
        "file_sha256": file_sha256,
        "split": split,
        "limit": limit,
        "profile": profile.as_dict(),
        "eval_version": EVAL_VERSION,
        "libraries": library_versions("pymatgen", "pymatgen-core", "matminer", "smact"),
    }
    return ArrayCache("fingerprints", key)


def results_to_arrays(results: Sequence[CrystalResult]) -> dict[str, np.ndarray]:
    """Per-structure results as plain arrays (what :func:`results_from_arrays` reads back)."""
    n = len(results)
    struct = np.full((n, N_STRUCT_FP), np.nan)
    comp = np.full((n, N_COMP_FP), np.nan)
    has_fp = np.zeros(n, dtype=bool)
    for k, r in enumerate(results):
        if r.struct_fp is not None and r.comp_fp is not None:
            struct[k], comp[k], has_fp[k] = r.struct_fp, r.comp_fp, True

    def col(name: str, default: float) -> np.ndarray:
        return np.array([default if getattr(r, name) is None else getattr(r, name) for r in results], dtype=np.float64)

    return {
        "index": np.array([r.index for r in results], dtype=np.int64),
        "label": np.array(["" if r.label is None else str(r.label) for r in results], dtype=str),
        "n_atoms": np.array([r.n_atoms for r in results], dtype=np.int64),
        "formula": np.array([r.formula for r in results], dtype=str),
        "flags": np.array([[r.constructed, r.comp_valid, r.struct_valid, r.valid] for r in results], dtype=bool).reshape(n, 4),
        "reason": np.array([r.reason for r in results], dtype=str),
        "struct_fp": struct,
        "comp_fp": comp,
        "has_fp": has_fp,
        "density": col("density", np.nan),
        "n_elems": col("n_elems", np.nan),
        "min_dist": col("min_dist", np.nan),
        "volume": col("volume", np.nan),
        "fp_backend": np.array(["" if r.fp_backend is None else r.fp_backend for r in results], dtype=str),
        "fp_fallback": np.array(["" if r.fp_fallback is None else r.fp_fallback for r in results], dtype=str),
    }


def results_from_arrays(a: dict[str, np.ndarray]) -> list[CrystalResult] | None:
    """The results :func:`results_to_arrays` stored, or None if the arrays do not fit together."""

    def opt(x: float) -> float | None:
        return None if np.isnan(x) else float(x)

    try:
        n = len(a["index"])
        if a["flags"].shape != (n, 4) or a["struct_fp"].shape != (n, N_STRUCT_FP) or a["comp_fp"].shape != (n, N_COMP_FP):
            return None
        # caches written before the fast backend have no fp_backend: matminer computed them
        backends = a["fp_backend"] if "fp_backend" in a else np.array(["matminer" if h else "" for h in a["has_fp"]])
        fallbacks = a["fp_fallback"] if "fp_fallback" in a else np.array([""] * n)
        if len(backends) != n or len(fallbacks) != n:
            return None
        out = []
        for k in range(n):
            constructed, comp_valid, struct_valid, valid = (bool(x) for x in a["flags"][k])
            out.append(
                CrystalResult(
                    index=int(a["index"][k]),
                    label=str(a["label"][k]) or None,
                    n_atoms=int(a["n_atoms"][k]),
                    formula=str(a["formula"][k]),
                    constructed=constructed,
                    comp_valid=comp_valid,
                    struct_valid=struct_valid,
                    valid=valid,
                    reasons=[x for x in str(a["reason"][k]).split("; ") if x],
                    struct_fp=a["struct_fp"][k] if a["has_fp"][k] else None,
                    comp_fp=a["comp_fp"][k] if a["has_fp"][k] else None,
                    density=opt(a["density"][k]),
                    n_elems=None if np.isnan(a["n_elems"][k]) else int(a["n_elems"][k]),
                    min_dist=opt(a["min_dist"][k]),
                    volume=opt(a["volume"][k]),
                    fp_backend=str(backends[k]) or None,
                    fp_fallback=str(fallbacks[k]) or None,
                )
            )
        return out
    except (KeyError, IndexError, ValueError, TypeError):  # an array missing or of the wrong shape: recompute
        return None


def evaluate_reference(
    crystals: Sequence[Crystal],
    file_sha256: str,
    split: str,
    profile: MetricProfile,
    limit: int | None = None,
    n_jobs: int | None = None,
    backend: str = "loky",
    progress: bool = True,
    use_cache: bool = True,
    fp_backend: str = DEFAULT_FINGERPRINT_BACKEND,
) -> tuple[list[CrystalResult], bool]:
    """Results for a reference split, from the cache when present. Returns (results, was_cached)."""
    cache = reference_cache(file_sha256, split, profile, limit)
    if use_cache:
        arrays = cache.load()
        cached = None if arrays is None else results_from_arrays(arrays)
        if cached is not None and len(cached) == len(crystals):
            return cached, True
    results = evaluate_entries(crystals, profile, n_jobs=n_jobs, backend=backend, progress=progress, desc=f"featurising reference {split}",
                               fp_backend=fp_backend)
    if use_cache:
        cache.save(results_to_arrays(results))
    return results, False

