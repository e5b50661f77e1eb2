"""Reconstruction metrics (CDVAE, Section 5.1): match rate and RMSE with pymatgen's StructureMatcher.

As the published ``RecEval``: each reconstructed crystal is compared with its input with
``StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3).get_rms_dist``; an invalid reconstruction (or
a comparison that raises) does not match; match rate = matched / all; RMSE = mean of the matcher's
normalised RMS distance over matched pairs (already divided by (V/N)^(1/3)).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from benchmark.crystal import Crystal
from benchmark.metrics.base import EvalContext, MetricValue


def _rms_chunk(pairs: list[tuple[int, Crystal, Crystal]], tolerances: tuple[float, float, float]) -> list[tuple[int, float | None]]:
    import warnings

    from pymatgen.analysis.structure_matcher import StructureMatcher

    stol, angle_tol, ltol = tolerances
    matcher = StructureMatcher(stol=stol, angle_tol=angle_tol, ltol=ltol)
    out: list[tuple[int, float | None]] = []
    for k, pred, gt in pairs:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rms = matcher.get_rms_dist(pred.to_structure(), gt.to_structure())
            out.append((k, None if rms is None else float(rms[0])))
        except Exception:
            out.append((k, None))
    return out


def rms_distances(
    preds: Sequence[Any], gts: Sequence[Any], valid: Sequence[bool], tolerances: tuple[float, float, float], n_jobs: int = 1, backend: str = "loky"
) -> list[float | None]:
    """Matcher RMS distance per pair (None: not matched, invalid, or not comparable)."""
    pairs = [(k, p, g) for k, (p, g, v) in enumerate(zip(preds, gts, valid)) if v and isinstance(p, Crystal) and isinstance(g, Crystal)]
    out: list[float | None] = [None] * len(preds)
    chunks = [pairs[i : i + 32] for i in range(0, len(pairs), 32)]
    # on Dask (--scheduler) the cluster's workers are the parallelism, whatever n_jobs
    n_jobs = -1 if backend == "dask" else (n_jobs or os.cpu_count() or 1)
    if n_jobs == 1 or len(chunks) <= 1 or backend == "sequential":
        results = [_rms_chunk(c, tolerances) for c in chunks]
    else:
        from joblib import Parallel, delayed, parallel_config

        with parallel_config(backend=backend, n_jobs=n_jobs):
            results = Parallel()(delayed(_rms_chunk)(c, tolerances) for c in chunks)
    for chunk in results:
        for k, rms in chunk:
            out[k] = rms
    return out


def reconstruction(ctx: EvalContext) -> dict[str, MetricValue]:
    if len(ctx.reference_crystals) != len(ctx.samples):
        ctx.notes.append(f"reconstruction skipped: {len(ctx.samples)} reconstructions but {len(ctx.reference_crystals)} ground-truth crystals")
        return {}
    rms = rms_distances(
        ctx.sample_crystals,
        ctx.reference_crystals,
        [r.valid for r in ctx.samples],
        ctx.profile.matcher,
        n_jobs=int(ctx.options.get("n_jobs") or 1),
        backend=str(ctx.options.get("backend") or "loky"),
    )
    ctx.column("matched", [r is not None for r in rms])
    ctx.column("rms_dist", rms)
    matched = np.array([r for r in rms if r is not None], dtype=np.float64)
    n = len(ctx.samples)
    out = {"match_rate": MetricValue(len(matched) / n if n else 0.0, n)}
    if len(matched):
        out["rms_dist"] = MetricValue(float(matched.mean()), len(matched))
    return out
