"""Distribution tests every generative model gets in the ``modern`` profile: two-sample
Kolmogorov-Smirnov statistics (``scipy.stats.ks_2samp``, the largest gap between the two empirical
CDFs, 0 for identical samples, 1 for samples that do not overlap) between the generated crystals
and the reference split, of the lattice lengths a, b, c, the angles alpha, beta, gamma, the
space-group number (pymatgen ``SpacegroupAnalyzer``, ``symprec`` :data:`SYMPREC` Å, default angle
tolerance 5°; a failed analysis counts as P1) and the atomic numbers (pooled over all atoms of all
crystals), as the CrysTens paper compares its models with Pearson's Crystal Data in its figures
(Alverson et al. 2024; the paper gives these statistics only in figures, so no reported row).

Samples: every entry of the sample file that is a crystal with a finite lattice and positive
lengths (validity is not required: the test is about what the model generated). The profile's
``distribution_tests`` switch turns the metric on (``modern``); in ``cdvae``, the published
protocol, it reports nothing.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from benchmark.crystal import Crystal
from benchmark.metrics.base import EvalContext, MetricValue

SYMPREC = 0.1
"""SpacegroupAnalyzer tolerance (Å) for the space-group distributions (a common choice for
generated crystals, looser than pymatgen's 0.01 default, so that slightly noisy symmetric crystals
still get their group)."""

QUANTITIES = ("a", "b", "c", "alpha", "beta", "gamma", "space_group", "atomic_number")
KEYS = tuple(f"ks_{q}" for q in QUANTITIES)


def _usable(entry: Any) -> bool:
    return (isinstance(entry, Crystal) and entry.num_atoms > 0 and bool(np.all(np.isfinite(entry.lengths)))
            and bool(np.all(np.isfinite(entry.angles))) and bool(np.all(entry.lengths > 0)) and bool(np.all(np.isfinite(entry.frac_coords))))


def space_group_number(crystal: Crystal, symprec: float = SYMPREC) -> int:
    """International space-group number, or 1 when pymatgen/spglib cannot analyse the crystal."""
    try:
        from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

        return int(SpacegroupAnalyzer(crystal.to_structure(), symprec=symprec).get_space_group_number())
    except Exception:  # noqa: BLE001 - any failure of the analysis means "no symmetry found"
        return 1


def distributions(crystals: Sequence[Crystal], symprec: float = SYMPREC) -> dict[str, np.ndarray]:
    """Per quantity of :data:`QUANTITIES`, the values over ``crystals`` (atomic numbers pooled)."""
    lengths = np.array([c.lengths for c in crystals], dtype=np.float64).reshape(-1, 3)
    angles = np.array([c.angles for c in crystals], dtype=np.float64).reshape(-1, 3)
    out = {"a": lengths[:, 0], "b": lengths[:, 1], "c": lengths[:, 2], "alpha": angles[:, 0], "beta": angles[:, 1], "gamma": angles[:, 2]}
    out["space_group"] = np.array([space_group_number(c, symprec) for c in crystals], dtype=np.float64)
    out["atomic_number"] = np.concatenate([c.atomic_numbers for c in crystals]).astype(np.float64) if crystals else np.zeros(0)
    return out


def ks_statistics(samples: Sequence[Crystal], reference: Sequence[Crystal], symprec: float = SYMPREC) -> dict[str, float]:
    """``ks_<quantity>`` -> two-sample KS statistic of ``samples`` against ``reference``."""
    from scipy.stats import ks_2samp

    if not samples or not reference:
        return {}
    gen, ref = distributions(samples, symprec), distributions(reference, symprec)
    return {f"ks_{q}": float(ks_2samp(gen[q], ref[q]).statistic) for q in QUANTITIES}


def distribution_ks(ctx: EvalContext) -> dict[str, MetricValue]:
    """KS statistics of the generated against the reference crystals (module doc); {} outside ``modern``."""
    if not getattr(ctx.profile, "distribution_tests", False):
        return {}
    samples = [c for c in ctx.sample_crystals if _usable(c)]
    reference = [c for c in ctx.reference_crystals if _usable(c)]
    if not samples or not reference:
        ctx.notes.append("distribution tests: no usable generated or reference crystal; KS statistics not computed")
        return {}
    stats = ks_statistics(samples, reference)
    return {key: MetricValue(value, len(samples)) for key, value in stats.items()}
