"""Exactness harness: the fast CrystalNN "ops" backend against matminer, site by site.

For every dataset CSV given (``<data>/<name>/<split>.csv``), a sample of crystals is built as the
evaluation builds them (``Crystal.to_structure``) and, with ``--perturb``, also perturbed copies
(noisy fractional coordinates, strained and sheared cells, stretched vacuum). Prints, per set, the
crystals and sites compared, the largest absolute difference, how many sites/order parameters the
fast path computed with the reference and why, and the crystals handed to matminer entirely.

    .venv/bin/python scripts/compare_fingerprints.py --data /work/shared/data --n 50 --perturb
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.crystal import Crystal
from benchmark.datasets.base import sample_csv
from benchmark.metrics.fast_fingerprint import FastStats, reference_fingerprints, site_fingerprints

SETS = ("perov_5/val", "perov_5/test", "carbon_24/val", "carbon_24/test", "supercon/test", "supercon/val", "mp_20_sample/test", "mp_20_sample/val")


def perturbed(c: Crystal, rng: np.random.Generator) -> list[Crystal]:
    """Copies of ``c`` that a generative model might produce: noisy coordinates, strained and
    sheared cells, a stretched c axis (porous/layered: cells beyond the 3.5 Å that the shared
    tessellation can prove), coordinates outside the unit cell."""
    z, f, L, A = c.atomic_numbers, c.frac_coords, c.lengths, c.angles
    out = [
        Crystal(z, f + rng.normal(0, 0.02, f.shape), L, A, label=f"{c.label}+noise"),
        Crystal(z, f + rng.normal(0, 0.002, f.shape), L * rng.uniform(0.9, 1.2, 3), A + rng.normal(0, 4, 3), label=f"{c.label}+strain"),
        Crystal(z, f, L * np.array([1.0, 1.0, 2.2]), A, label=f"{c.label}+vacuum"),
        Crystal(z, f + rng.integers(-2, 3, f.shape), L, A, label=f"{c.label}+unwrapped"),
        Crystal(z, f, L * np.array([1.0, 1.0, 4.0]), A, label=f"{c.label}+slab"),
        Crystal(z, f, L * 0.7, A, label=f"{c.label}+compressed"),
        Crystal(z[:1], f[:1], L, A, label=f"{c.label}+one-atom"),
        Crystal(z, rng.uniform(0, 1, f.shape), L, A, label=f"{c.label}+random-positions"),
    ]
    return [x for x in out if x.to_structure().volume > 1.0]


def compare(crystals: list[Crystal]) -> dict[str, Any]:
    """Fast vs matminer on each crystal: counts, max |diff|, fallbacks, time."""
    stats = FastStats()
    worst, n_sites, t_fast, t_ref = 0.0, 0, 0.0, 0.0
    fallback: Counter = Counter()
    mismatches = []
    for c in crystals:
        s = c.to_structure()
        t = time.perf_counter()
        try:
            out = site_fingerprints(s, "fast")
        except Exception as exc:  # noqa: BLE001 - matminer raised: compare exceptions
            t_fast += time.perf_counter() - t
            try:
                reference_fingerprints(s)
                mismatches.append((c.label, f"fast raised {exc!r}, matminer did not"))
            except Exception:  # noqa: BLE001
                fallback["both raise"] += 1
            continue
        t_fast += time.perf_counter() - t
        t = time.perf_counter()
        ref = reference_fingerprints(s)
        t_ref += time.perf_counter() - t
        stats.add(out.stats)
        if out.backend != "fast":
            fallback[out.fallback_reason or "?"] += 1
        d = float(np.abs(out.sites - ref).max()) if ref.size else 0.0
        if not math.isfinite(d) or d > 1e-9:
            mismatches.append((c.label, d))
        worst = max(worst, d)
        n_sites += len(s)
    return {"crystals": len(crystals), "sites": n_sites, "max_abs_diff": worst, "stats": stats, "crystal_fallbacks": fallback,
            "mismatches": mismatches, "t_fast": t_fast, "t_ref": t_ref}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--n", type=int, default=50, help="crystals per set (0: all)")
    ap.add_argument("--perturb", action="store_true")
    ap.add_argument("--sets", nargs="*", default=list(SETS))
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    bad = 0
    warm = sample_csv(args.data / "perov_5" / "test.csv", 1) if (args.data / "perov_5" / "test.csv").is_file() else []
    compare(warm)  # imports and first-call set-up out of the timings
    for name in args.sets:
        csv = args.data / f"{name}.csv"
        if not csv.is_file():
            continue
        crystals = sample_csv(csv, args.n or None)
        groups = [(name, crystals)]
        if args.perturb:
            groups.append((f"{name} perturbed", [p for c in crystals[: max(1, len(crystals) // 2)] for p in perturbed(c, rng)]))
        for label, cs in groups:
            r = compare(cs)
            st = r["stats"]
            print(f"{label}: {r['crystals']} crystals, {r['sites']} sites, max|diff| {r['max_abs_diff']:.2e}, "
                  f"sites by reference {st.sites_reference}, ops by reference {st.ops_reference}, "
                  f"crystals to matminer {sum(r['crystal_fallbacks'].values())}, "
                  f"speed-up {r['t_ref'] / max(r['t_fast'], 1e-9):.2f}x", flush=True)
            for why, k in sorted(st.reasons.items()):
                print(f"    {k:6d}  {why}")
            for why, k in r["crystal_fallbacks"].items():
                print(f"    {k:6d}  crystal: {why}")
            for m in r["mismatches"]:
                print(f"    MISMATCH {m}")
            bad += len(r["mismatches"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
