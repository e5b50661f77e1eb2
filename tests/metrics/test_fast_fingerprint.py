"""The fast CrystalNN "ops" fingerprint backend equals matminer's, site by site.

* hand-built crystals (the contract crystals of ``benchmark.testing`` and odd cells: one atom, a
  slab with vacuum, random positions, coordinates far outside the cell, a sheared cell), no data;
* the routing: a site the fast path cannot vouch for goes to matminer, an exception sends the whole
  crystal to matminer with the reason recorded, a time limit is not swallowed;
* the wiring: ``evaluate_crystal`` uses the fast backend by default, ``fp_backend="matminer"``
  gives the same fingerprint, and the reference cache records the backend (old caches read back);
* a small sample of every shared dataset, with perturbed copies (needs the data directory);
* ``slow``: every crystal of every shared dataset split.

Equality is to 1e-9 absolute, per site and feature (observed: a few 1e-15).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark.crystal import Crystal
from benchmark.datasets.base import sample_csv
from benchmark.metrics import fast_fingerprint as ff
from benchmark.metrics.crystal_eval import evaluate_crystal
from benchmark.metrics.featurize import results_from_arrays, results_to_arrays
from benchmark.metrics.profiles import get_profile
from benchmark.testing import contract_crystals

ATOL = 1e-9
CDVAE = get_profile("cdvae")
DATA_SETS = ("perov_5/val", "perov_5/test", "carbon_24/val", "carbon_24/test", "supercon/val", "supercon/test", "mp_20_sample/val", "mp_20_sample/test")


def assert_same(crystal: Crystal) -> ff.FingerprintOutcome:
    """Fast and matminer per-site fingerprints of ``crystal`` agree to ATOL; returns the fast outcome."""
    s = crystal.to_structure()
    out = ff.site_fingerprints(s, "fast")
    ref = ff.reference_fingerprints(s)
    assert out.sites.shape == ref.shape == (len(s), ff.N_FEATURES)
    diff = np.abs(out.sites - ref)
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
    assert diff.max() <= ATOL, f"{crystal.label}: site {worst[0]} feature {worst[1]}: fast {out.sites[worst]} vs matminer {ref[worst]}"
    return out


def odd_crystals() -> list[Crystal]:
    """Cells that take the fast path's other branches: a one-atom cell (the 7 Å sphere is larger
    than the cell diagonal), a slab (cells beyond the 3.5 Å the shared tessellation can prove, so
    per-site tessellation), random positions, far-away images, a sheared triclinic cell."""
    rng = np.random.default_rng(3)
    sc = Crystal([84], [[0, 0, 0]], [3.35, 3.35, 3.35], [90, 90, 90], label="Po simple cubic")
    fcc = Crystal([29], [[0, 0, 0]], [2.55, 2.55, 2.55], [60, 60, 60], label="Cu fcc primitive")
    base = contract_crystals(1)[0]
    slab = Crystal(base.atomic_numbers, base.frac_coords, base.lengths * np.array([1, 1, 4.0]), base.angles, label="SrTiO3 slab")
    rand = Crystal([8, 8, 14, 12, 26, 8], rng.uniform(0, 1, (6, 3)), [5.1, 6.3, 4.7], [84, 97, 103], label="random positions")
    far = Crystal(base.atomic_numbers, base.frac_coords + rng.integers(-3, 4, (5, 3)), base.lengths, base.angles, label="unwrapped")
    sheared = Crystal(base.atomic_numbers, base.frac_coords + rng.normal(0, 0.03, (5, 3)), [3.9, 4.2, 4.0], [75, 100, 110], label="sheared")
    # A15 V3Si with its c axis stretched 2.2x: CrystalNN finds tied 8-neighbour shells whose order
    # changes bcc (the one order-dependent order parameter), so those sites go to matminer
    a15 = Crystal(
        [23] * 6 + [14] * 2,
        [[0.75, 0, 0.5], [0.25, 0, 0.5], [0, 0.5, 0.25], [0, 0.5, 0.75], [0.5, 0.25, 0], [0.5, 0.75, 0], [0, 0, 0], [0.5, 0.5, 0.5]],
        [4.64872, 4.64872, 10.227184],
        [90, 90, 90],
        label="V3Si A15 stretched",
    )
    return [sc, fcc, slab, rand, far, sheared, a15]


# ------------------------------------------------------------------ no data
@pytest.mark.parametrize("crystal", contract_crystals(13), ids=lambda c: c.label)
def test_contract_crystals_equal_matminer(crystal: Crystal) -> None:
    out = assert_same(crystal)
    # ideal perovskites and rock salts: no crystal, site or order parameter left to the reference
    assert out.backend == "fast" and out.fallback_reason is None
    assert out.stats.sites_reference == 0 and out.stats.ops_reference == 0


@pytest.mark.parametrize("crystal", odd_crystals(), ids=lambda c: c.label)
def test_odd_cells_equal_matminer(crystal: Crystal) -> None:
    assert assert_same(crystal).backend == "fast"


def test_slab_takes_the_per_site_tessellation() -> None:
    """The 4x stretched perovskite has Voronoi cells reaching beyond 3.5 Å: the shared tessellation
    cannot prove them equal to pymatgen's, so they are tessellated per site (still fast, still equal)."""
    slab = odd_crystals()[2]
    out = assert_same(slab)
    assert any("per-site tessellation" in why for why in out.stats.reasons)


def test_bcc_with_tied_neighbours_goes_to_matminer() -> None:
    """bcc counts each neighbour pair once, with the first of the two as the pole, so the value
    depends on the order of neighbours with equal weights; that order is not reproduced, so such a
    site is computed by matminer whenever swapping tied neighbours would change bcc."""
    out = assert_same(odd_crystals()[-1])
    assert out.stats.reasons["op bcc: the order of tied neighbours changes the value"] >= 1


def test_site_left_to_reference_is_matminers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A site the fast path cannot vouch for is computed by matminer and counted; the rest stay fast."""
    real = ff._nn_data

    def refuse_site_1(structure, n, cell):  # type: ignore[no-untyped-def]
        if n == 1:
            raise ff.NeedsReference("test: site 1")
        return real(structure, n, cell)

    monkeypatch.setattr(ff, "_nn_data", refuse_site_1)
    out = assert_same(contract_crystals(1)[0])
    assert out.backend == "fast"
    assert out.stats.sites_reference == 1 and out.stats.reasons["test: site 1"] == 1


def test_order_parameter_left_to_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """An order parameter at a branch threshold is computed by pymatgen on the same neighbours."""
    real = ff._op_value

    def refuse_oct(geo, typ, p, tied=None):  # type: ignore[no-untyped-def]
        if typ == "oct_max":
            raise ff.NeedsReference("test: oct_max")
        return real(geo, typ, p, tied)

    monkeypatch.setattr(ff, "_op_value", refuse_oct)
    out = assert_same(contract_crystals(1)[0])  # SrTiO3: Ti is octahedral, so oct_max is evaluated
    assert out.backend == "fast" and out.stats.ops_reference >= 1


def test_exception_sends_crystal_to_matminer(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(structure, stats=None):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("test")

    monkeypatch.setattr(ff, "crystalnn_ops_fingerprints", boom)
    s = contract_crystals(1)[0].to_structure()
    out = ff.site_fingerprints(s, "fast")
    assert out.backend == "matminer" and out.fallback_reason == "ZeroDivisionError: test"
    np.testing.assert_array_equal(out.sites, ff.reference_fingerprints(s))


def test_reraise_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    class Timeout(Exception):
        pass

    def slow(structure, stats=None):  # type: ignore[no-untyped-def]
        raise Timeout()

    monkeypatch.setattr(ff, "crystalnn_ops_fingerprints", slow)
    with pytest.raises(Timeout):
        ff.site_fingerprints(contract_crystals(1)[0].to_structure(), "fast", reraise=(Timeout,))


def test_unknown_backend_is_an_error() -> None:
    with pytest.raises(ValueError, match="fingerprint backend"):
        ff.site_fingerprints(contract_crystals(1)[0].to_structure(), "numba")
    with pytest.raises(ValueError, match="fingerprint backend"):
        evaluate_crystal(contract_crystals(1)[0], CDVAE, fp_backend="numba")


def test_evaluate_crystal_default_is_fast_and_equal() -> None:
    for c in contract_crystals(3) + odd_crystals()[3:4]:
        fast = evaluate_crystal(c, CDVAE)
        slow = evaluate_crystal(c, CDVAE, fp_backend="matminer")
        assert fast.fp_backend == "fast" and slow.fp_backend == "matminer"
        assert fast.struct_fp is not None and slow.struct_fp is not None
        np.testing.assert_allclose(fast.struct_fp, slow.struct_fp, rtol=0, atol=ATOL)
        np.testing.assert_array_equal(fast.comp_fp, slow.comp_fp)
        assert (fast.valid, fast.reasons) == (slow.valid, slow.reasons)


def test_cache_arrays_record_backend_and_read_old_caches() -> None:
    results = [evaluate_crystal(c, CDVAE, index=i) for i, c in enumerate(contract_crystals(2))]
    results[1].fp_backend, results[1].fp_fallback = "matminer", "ValueError: test"
    arrays = results_to_arrays(results)
    back = results_from_arrays(arrays)
    assert back is not None
    assert [(r.fp_backend, r.fp_fallback) for r in back] == [("fast", None), ("matminer", "ValueError: test")]
    # a cache written before the fast backend existed: matminer computed it, and it is still read
    old = {k: v for k, v in arrays.items() if k not in ("fp_backend", "fp_fallback")}
    back = results_from_arrays(old)
    assert back is not None and [r.fp_backend for r in back] == ["matminer", "matminer"]
    np.testing.assert_array_equal(back[0].struct_fp, results[0].struct_fp)


def test_cli_accepts_fingerprint_backend() -> None:
    from benchmark.cli import build_parser

    argv = ["evaluate", "--task", "generation", "--dataset", "perov_5", "--samples", "x.csv"]
    assert build_parser(argv).parse_args(argv).fingerprint_backend == "fast"
    args = build_parser(argv).parse_args([*argv, "--fingerprint-backend", "matminer"])
    assert args.fingerprint_backend == "matminer"
    with pytest.raises(SystemExit):
        build_parser(argv).parse_args([*argv, "--fingerprint-backend", "numba"])


def test_run_records_the_fingerprint_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run --fingerprint-backend matminer` scores with matminer and its record says so; the
    default run says fast (the toy dataset: no data directory needed)."""
    import json

    from benchmark.cli import main

    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    records = {}
    for backend in ("matminer", "fast"):
        runs = tmp_path / backend
        argv = ["run", "--model", "replay", "--task", "generation", "--runs-dir", str(runs), "--no-progress",
                "--set", "task.n_samples=12"]
        assert main([*argv, "--fingerprint-backend", backend] if backend == "matminer" else argv) == 0
        (record,) = runs.glob("2*/record.json")
        records[backend] = json.loads(record.read_text())["fingerprints"]
    assert records["matminer"]["backend"] == "matminer"
    assert records["matminer"]["samples"]["by_backend"] == {"matminer": 12}
    assert records["fast"]["backend"] == "fast"
    assert records["fast"]["samples"]["by_backend"].get("fast", 0) == 12


# ------------------------------------------------------------------ shared data
def perturb(c: Crystal, rng: np.random.Generator) -> list[Crystal]:
    """What a generative model might make of ``c``: noisy coordinates, a strained and sheared cell."""
    f, lengths, angles = c.frac_coords, c.lengths, c.angles
    return [
        Crystal(c.atomic_numbers, f + rng.normal(0, 0.02, f.shape), lengths, angles, label=f"{c.label}+noise"),
        Crystal(c.atomic_numbers, f, lengths * rng.uniform(0.9, 1.2, 3), angles + rng.normal(0, 4, 3), label=f"{c.label}+strain"),
    ]


@pytest.mark.data
@pytest.mark.parametrize("name", DATA_SETS)
def test_dataset_sample_equal_matminer(shared_data: Path, name: str) -> None:
    csv = shared_data / f"{name}.csv"
    if not csv.is_file():
        pytest.skip(f"{csv} not present")
    rng = np.random.default_rng(0)
    crystals = sample_csv(csv, 3)
    for crystal in crystals + perturb(crystals[0], rng):
        assert_same(crystal)


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.parametrize("name", DATA_SETS)
def test_every_dataset_crystal_equal_matminer(shared_data: Path, name: str) -> None:
    """Every crystal of the split; at most 1 % of the crystals may go to matminer entirely."""
    csv = shared_data / f"{name}.csv"
    if not csv.is_file():
        pytest.skip(f"{csv} not present")
    crystals = sample_csv(csv, None)
    to_matminer = sum(assert_same(c).backend != "fast" for c in crystals)
    assert to_matminer <= 0.01 * len(crystals)
