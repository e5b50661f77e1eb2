"""Speed of the CrystalNN "ops" fingerprints: the fast backend vs matminer, per crystal.

The same 20 crystals of each dataset (a fixed random sample of the test split; MP-20: the 69-row
sample's test and val rows) are fingerprinted site by site by each backend; the benchmark records
the seconds per crystal and, once both backends ran, the ratio in ``extra_info``. The backends
must agree to 1e-9 (tests/metrics/test_fast_fingerprint.py checks that in depth).

    bash scripts/test.sh tests/benchmarks/test_fingerprint_speed.py --benchmark-enable --benchmark-columns=min,rounds -p no:xdist
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmark.metrics.fast_fingerprint import site_fingerprints

CASES = {"perov_5": ("perov_5", "test.csv"), "carbon_24": ("carbon_24", "test.csv"), "mp_20_sample": ("mp_20_sample", "test.csv")}
N_CRYSTALS = 20
BACKENDS = ("matminer", "fast")
_RESULTS: dict[tuple[str, str], tuple[float, list[np.ndarray]]] = {}
_STRUCTURES: dict[str, list[Any]] = {}


def _structures(case: str, data: Path) -> list[Any]:
    """The case's crystals as the evaluation builds them (``Crystal.to_structure``)."""
    if case not in _STRUCTURES:
        import pandas as pd

        from benchmark.crystal import Crystal
        from benchmark.datasets.base import parse_cif_published

        df = pd.read_csv(data.joinpath(*CASES[case]))
        if case == "mp_20_sample":  # only 10 test rows: add the 10 val rows
            df = pd.concat([df, pd.read_csv(data / "mp_20_sample" / "val.csv")])
        df = df.sample(n=min(N_CRYSTALS, len(df)), random_state=0)
        parsed = [parse_cif_published(cif) for cif in df["cif"]]  # as load_csv parses them
        _STRUCTURES[case] = [
            Crystal([site.specie.Z for site in s], s.frac_coords, s.lattice.abc, s.lattice.angles).to_structure() for s in parsed
        ]
    return _STRUCTURES[case]


def _run(structures: list[Any], backend: str) -> tuple[float, list[np.ndarray]]:
    t = time.perf_counter()
    sites = [site_fingerprints(s, backend).sites for s in structures]
    return (time.perf_counter() - t) / len(structures), sites


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.data
def test_fingerprint_speed(benchmark, shared_data: Path, case: str, backend: str) -> None:
    structures = _structures(case, shared_data)
    site_fingerprints(structures[0], backend)  # imports and presets out of the timing
    benchmark.group = f"CrystalNN ops fingerprints, {case}"
    per_crystal, sites = benchmark.pedantic(_run, args=(structures, backend), rounds=1, iterations=1)
    _RESULTS[(case, backend)] = (per_crystal, sites)
    benchmark.extra_info.update({"backend": backend, "crystals": len(structures), "s_per_crystal": per_crystal})
    other = "matminer" if backend == "fast" else "fast"
    if (case, other) in _RESULTS:
        t_other, sites_other = _RESULTS[(case, other)]
        for a, b in zip(sites, sites_other):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)
        t_fast, t_matminer = (per_crystal, t_other) if backend == "fast" else (t_other, per_crystal)
        benchmark.extra_info["speedup_vs_matminer"] = t_matminer / t_fast
        # the goal is >= 3x (measured 4-5x on 2 shared cores); a looser bound keeps a loaded machine from failing it
        assert t_matminer / t_fast > 1.5, f"{case}: fast {t_fast:.4f} s vs matminer {t_matminer:.4f} s per crystal"
