"""Generation metrics of the published protocol (CDVAE, Section 5.2 and Appendix G).

* validity: fraction of ALL samples that are compositionally / structurally / fully valid;
* coverage: COV-R, COV-P and AMSD/AMCD-R/P (Equations 10-12 of the paper) from the Euclidean
  distances between structure fingerprints and between scaled composition fingerprints. As in
  the published ``compute_cov``: samples without fingerprints are left out of the search but
  COV-P still divides by the number of ALL samples, and a pair is covered when both distances are
  ``<=`` their cutoffs;
* property statistics: Wasserstein-1 distances between 1,000 valid samples (drawn without
  replacement with ``numpy.random.RandomState(seed).choice``, which is what
  ``np.random.seed(seed); np.random.choice(...)`` draws in the published script) and the
  reference split, of density, number of distinct elements and an oracle's property;
* diversity: mean pairwise fingerprint distance over the same 1,000 valid samples.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from benchmark.metrics.base import EvalContext, MetricValue
from benchmark.metrics.crystal_eval import CrystalResult


def validity(ctx: EvalContext) -> dict[str, MetricValue]:
    n = len(ctx.samples)
    if n == 0:
        return {}
    comp = np.mean([r.comp_valid for r in ctx.samples])
    struct = np.mean([r.struct_valid for r in ctx.samples])
    valid = np.mean([r.valid for r in ctx.samples])
    return {
        "comp_valid": MetricValue(float(comp), n),
        "struct_valid": MetricValue(float(struct), n),
        "valid": MetricValue(float(valid), n),
    }


def _fps(results: Sequence[CrystalResult]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices with both fingerprints, structure fps (M, 61), raw composition fps (M, 132))."""
    idx = np.array([k for k, r in enumerate(results) if r.struct_fp is not None and r.comp_fp is not None], dtype=np.int64)
    if len(idx) == 0:
        return idx, np.zeros((0, 61)), np.zeros((0, 132))
    return idx, np.stack([results[k].struct_fp for k in idx]), np.stack([results[k].comp_fp for k in idx])  # type: ignore[misc]


def coverage_cutoffs(ctx: EvalContext) -> tuple[float, float] | None:
    override = ctx.options.get("cov_cutoffs")
    if override:
        return float(override[0]), float(override[1])
    if ctx.family and ctx.family in ctx.profile.cov_cutoffs:
        return ctx.profile.cov_cutoffs[ctx.family]
    return None


COVERAGE_BLOCK = 1024  # samples per block of the sample x reference distance matrices


def fingerprint_blocks(results: Sequence[CrystalResult], size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The results with both fingerprints, ``size`` at a time: (indices into ``results``, structure
    fps (m, 61), raw composition fps (m, 132)). A sequence that keeps its fingerprints elsewhere
    (:class:`~benchmark.metrics.result_store.CompactResults`) hands them over block by block."""
    blocks = getattr(results, "fingerprint_blocks", None)
    if blocks is not None:
        yield from blocks(size)
        return
    idx, struct, comp = _fps(list(results))
    for a in range(0, len(idx), size):
        yield idx[a : a + size], struct[a : a + size], comp[a : a + size]


def coverage(ctx: EvalContext, block: int | None = None) -> dict[str, MetricValue]:
    """COV-R/P and AMSD/AMCD-R/P (see the module doc).

    The (samples x reference) distance matrices are computed ``block`` (default
    :data:`COVERAGE_BLOCK`) samples at a time, keeping
    each sample's row minimum and a running minimum per reference crystal: 100,000 samples against
    a 3,785-crystal test split would otherwise take two 3 GB matrices. Each distance is computed
    by the same ``cdist`` from the same two rows, and a minimum is exact, so the numbers are those
    of the whole matrices bit for bit."""
    from scipy.spatial.distance import cdist

    cutoffs = coverage_cutoffs(ctx)
    if ctx.reference is None:
        ctx.notes.append("coverage skipped: no reference split")
        return {}
    if cutoffs is None:
        ctx.notes.append(f"coverage skipped: the papers define no coverage cutoffs for {ctx.dataset}; pass --cov-cutoffs STRUC,COMP")
        return {}
    struc_cut, comp_cut = cutoffs
    n_gen = len(ctx.samples)
    r_idx, r_struct, r_comp = _fps(ctx.reference)
    if len(r_idx) < len(ctx.reference):
        ctx.notes.append(f"coverage: {len(ctx.reference) - len(r_idx)} reference crystals have no fingerprint and were left out")
    g_parts: list[np.ndarray] = []
    prec_s: list[np.ndarray] = []
    prec_c: list[np.ndarray] = []
    if len(r_idx):
        r_comp_s = ctx.profile.scale_composition(r_comp)
        struc_recall = np.full(len(r_idx), np.inf)
        comp_recall = np.full(len(r_idx), np.inf)
        for g_idx_b, g_struct, g_comp in fingerprint_blocks(ctx.samples, block or COVERAGE_BLOCK):
            struc_d = cdist(g_struct, r_struct)  # (block, n_ref_fp)
            comp_d = cdist(ctx.profile.scale_composition(g_comp), r_comp_s)
            np.minimum(struc_recall, struc_d.min(axis=0), out=struc_recall)
            np.minimum(comp_recall, comp_d.min(axis=0), out=comp_recall)
            g_parts.append(g_idx_b)
            prec_s.append(struc_d.min(axis=1))
            prec_c.append(comp_d.min(axis=1))
    g_idx = np.concatenate(g_parts) if g_parts else np.zeros(0, dtype=np.int64)
    if len(g_idx) == 0 or len(r_idx) == 0:
        ctx.notes.append("coverage: no sample has fingerprints; COV is 0 and AMSD/AMCD are undefined")
        return {
            "cov_recall": MetricValue(0.0, len(r_idx)),
            "cov_precision": MetricValue(0.0, n_gen),
        }
    struc_prec, comp_prec = np.concatenate(prec_s), np.concatenate(prec_c)
    cov_r = np.mean(np.logical_and(struc_recall <= struc_cut, comp_recall <= comp_cut))
    cov_p = np.sum(np.logical_and(struc_prec <= struc_cut, comp_prec <= comp_cut)) / n_gen
    # per-structure: distance of each sample to its nearest reference crystal
    near_s = [None] * n_gen
    near_c = [None] * n_gen
    for j, k in enumerate(g_idx.tolist()):
        near_s[k], near_c[k] = float(struc_prec[j]), float(comp_prec[j])
    ctx.column("nearest_ref_struct_dist", near_s)
    ctx.column("nearest_ref_comp_dist", near_c)
    ctx.cache["coverage_cutoffs"] = cutoffs
    return {
        "cov_recall": MetricValue(float(cov_r), len(r_idx)),
        "cov_precision": MetricValue(float(cov_p), n_gen),
        "amsd_recall": MetricValue(float(np.mean(struc_recall)), len(r_idx)),
        "amsd_precision": MetricValue(float(np.mean(struc_prec)), len(g_idx)),
        "amcd_recall": MetricValue(float(np.mean(comp_recall)), len(r_idx)),
        "amcd_precision": MetricValue(float(np.mean(comp_prec)), len(g_idx)),
    }


def property_sample(ctx: EvalContext) -> np.ndarray:
    """Indices (into ctx.samples) of the valid samples used for property statistics and diversity.

    ``RandomState(seed).choice(n_valid, n, replace=False)`` over the valid samples in file order,
    as the published ``GenEval``; when fewer than ``n`` are valid, all of them (the published code
    raises instead), and a note says so.
    """
    if "property_sample" in ctx.cache:
        return ctx.cache["property_sample"]
    valid_idx = np.array([k for k, r in enumerate(ctx.samples) if r.valid], dtype=np.int64)
    n = int(ctx.options.get("n_property_samples") or ctx.profile.n_property_samples)
    if len(valid_idx) >= n:
        chosen = valid_idx[np.random.RandomState(ctx.seed).choice(len(valid_idx), n, replace=False)]
    else:
        chosen = valid_idx
        if len(ctx.samples):
            ctx.notes.append(f"property statistics and diversity over all {len(valid_idx)} valid samples (fewer than {n}; the published script stops here)")
    ctx.cache["property_sample"] = chosen
    flags = np.zeros(len(ctx.samples), dtype=bool)
    flags[chosen] = True
    ctx.column("in_property_sample", flags.tolist())
    return chosen


def property_statistics(ctx: EvalContext) -> dict[str, MetricValue]:
    from scipy.stats import wasserstein_distance

    if ctx.reference is None:
        return {}
    chosen = property_sample(ctx)
    if len(chosen) == 0:
        ctx.notes.append("property statistics skipped: no valid sample")
        return {}
    out: dict[str, MetricValue] = {}
    gen_d = [ctx.samples[k].density for k in chosen]
    ref_d = [r.density for r in ctx.reference if r.density is not None]
    out["wdist_density"] = MetricValue(float(wasserstein_distance(gen_d, ref_d)), len(chosen))
    gen_n = [ctx.samples[k].n_elems for k in chosen]
    ref_n = [r.n_elems for r in ctx.reference if r.n_elems is not None]
    out["wdist_num_elems"] = MetricValue(float(wasserstein_distance(gen_n, ref_n)), len(chosen))
    if ctx.properties is not None and ctx.reference_properties is not None:
        gp = np.asarray(ctx.properties, dtype=np.float64)[chosen]
        rp = np.asarray(ctx.reference_properties, dtype=np.float64)
        gp, rp = gp[np.isfinite(gp)], rp[np.isfinite(rp)]
        if len(gp) and len(rp):
            out["wdist_prop"] = MetricValue(float(wasserstein_distance(gp, rp)), len(gp), unit=ctx.options.get("property_unit"), oracle=ctx.options.get("oracle"))
    else:
        ctx.notes.append("wdist_prop not computed: no property oracle predictions for samples and reference")
    return out


def diversity(ctx: EvalContext) -> dict[str, MetricValue]:
    from scipy.spatial.distance import pdist

    chosen = property_sample(ctx)
    chosen = [k for k in chosen if ctx.samples[k].struct_fp is not None]
    if len(chosen) < 2:
        return {}
    comp = ctx.profile.scale_composition(np.stack([ctx.samples[k].comp_fp for k in chosen]))  # type: ignore[misc]
    struct = np.stack([ctx.samples[k].struct_fp for k in chosen])  # type: ignore[misc]
    return {
        "comp_div": MetricValue(float(pdist(comp).mean()), len(chosen)),
        "struct_div": MetricValue(float(pdist(struct).mean()), len(chosen)),
    }
