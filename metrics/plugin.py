"""Built-in metrics: the published CDVAE protocol, plus uniqueness and novelty.

Each entry is cheap to list; the metric's code is imported when the entry is loaded.
"""

from __future__ import annotations

from benchmark.hookspecs import hookimpl
from benchmark.registry import Entry

FRACTION = "fraction"
DIST = "fingerprint distance"

# name -> (task, module, function, {key: (higher_is_better, unit)}, description, default)
_SPECS = {
    "validity": ("generation", "generation", "validity",
                 {"comp_valid": (True, FRACTION), "struct_valid": (True, FRACTION), "valid": (True, FRACTION)},
                 "compositional (SMACT), structural (>= 0.5 Å) and overall validity over all samples", True),
    "coverage": ("generation", "generation", "coverage",
                 {"cov_recall": (True, FRACTION), "cov_precision": (True, FRACTION), "amsd_recall": (False, DIST),
                  "amsd_precision": (False, DIST), "amcd_recall": (False, DIST), "amcd_precision": (False, DIST)},
                 "COV-R/P and AMSD/AMCD-R/P against the reference split (CrystalNN + Magpie fingerprints)", True),
    "property_statistics": ("generation", "generation", "property_statistics",
                            {"wdist_density": (False, "g/cm^3"), "wdist_num_elems": (False, "elements"), "wdist_prop": (False, None)},
                            "Wasserstein distances of density, #elements and oracle property, 1,000 valid samples vs reference", True),
    "diversity": ("generation", "generation", "diversity",
                  {"comp_div": (True, DIST), "struct_div": (True, DIST)},
                  "mean pairwise composition / structure fingerprint distance of 1,000 valid samples", True),
    "uniqueness": ("generation", "novelty", "uniqueness", {"uniqueness": (True, FRACTION)},
                   "fraction of valid samples matching no earlier valid sample (StructureMatcher)", True),
    "novelty": ("generation", "novelty", "novelty", {"novelty": (True, FRACTION)},
                "fraction of valid samples matching no training crystal (StructureMatcher)", True),
    "reconstruction": ("reconstruction", "reconstruction", "reconstruction",
                       {"match_rate": (True, FRACTION), "rms_dist": (False, "normalised RMS")},
                       "match rate and RMSE vs the input crystals, StructureMatcher(0.5, 10, 0.3)", True),
    "reconstruction_validity": ("reconstruction", "generation", "validity",
                                {"comp_valid": (True, FRACTION), "struct_valid": (True, FRACTION), "valid": (True, FRACTION)},
                                "validity of the reconstructed crystals", True),
    "success_rate": ("property_optimization", "optimization", "success_rates",
                     {"SR5": (True, FRACTION), "SR10": (True, FRACTION), "SR15": (True, FRACTION)},
                     "SR5/SR10/SR15: best property per trajectory at or below the 5/10/15th percentile", True),
    "optimization_validity": ("property_optimization", "generation", "validity",
                              {"comp_valid": (True, FRACTION), "struct_valid": (True, FRACTION), "valid": (True, FRACTION)},
                              "validity of the optimised crystals", True),
    "ground_state": ("ground_state", "ground_state", "ground_state",
                     {"gs_match_rate": (True, FRACTION), "gs_mean_rms": (False, "normalised RMS"),
                      "gs_rms_dvolume_per_atom": (False, "Å^3/atom"), "gs_rms_denergy_per_atom": (False, "eV/atom")},
                     "relax each sample (CHGNet by default); match rate, <δ_rms>, ΔV_rms, ΔE_rms vs its relaxed crystal (DP-CDVAE Table III)", True),
    "ground_state_validity": ("ground_state", "generation", "validity",
                              {"comp_valid": (True, FRACTION), "struct_valid": (True, FRACTION), "valid": (True, FRACTION)},
                              "validity of the crystals that are relaxed", True),
    "conditional_success": ("conditional_generation", "conditional", "conditional_success",
                            {"success[<conditions>]": (True, FRACTION), "success[<conditions>].<property>": (True, FRACTION),
                             "predicted[<conditions>]": (True, FRACTION), "mad[<conditions>].<property>": (False, None),
                             "median[<conditions>].<property>": (None, None)},
                            "fraction of samples meeting every target (and each), checked by CGCNN oracles / symmetry analysis (Con-CDVAE Tables 2, B1)", True),
    "conditional_validity": ("conditional_generation", "generation", "validity",
                             {"comp_valid": (True, FRACTION), "struct_valid": (True, FRACTION), "valid": (True, FRACTION)},
                             "validity of the conditionally generated crystals", True),
}


def _load(name: str):
    import importlib

    from benchmark.metrics.base import Metric

    task, module, func, keys, desc, default = _SPECS[name]
    fn = getattr(importlib.import_module(f"benchmark.metrics.{module}"), func)
    return Metric(name=name, task=task, keys=keys, description=desc, compute=fn, default=default)


@hookimpl
def benchmark_metrics() -> list[Entry]:
    return [Entry(name, f"[{spec[0]}] {spec[4]}", (lambda n=name: _load(n))) for name, spec in _SPECS.items()]
