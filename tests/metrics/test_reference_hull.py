"""The reference hull with CHGNet (issue 18, items 2 and 5): a dataset's ground state sits on the
hull, a higher-energy polymorph above it, and a crystal with displaced atoms relaxes back to the
undisplaced crystal's energy above the hull."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.crystal import Crystal
from benchmark.metrics.reference_hull import EnergySettings, composition, model_energies, reference_hull

pytest.importorskip("chgnet")


def rock_salt(a: float = 5.64, displace: float = 0.0) -> Crystal:
    """Conventional NaCl (8 atoms); ``displace`` moves every atom by up to that many Å (seeded)."""
    na = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
    cl = [[0.5, 0, 0], [0.5, 0.5, 0.5], [0, 0, 0.5], [0, 0.5, 0]]
    frac = np.array(na + cl, dtype=float)
    frac += np.random.default_rng(0).uniform(-displace, displace, frac.shape) / a
    return Crystal([11] * 4 + [17] * 4, frac % 1.0, [a, a, a], [90, 90, 90], label="NaCl-rocksalt" + ("-displaced" if displace else ""))


def cscl_type_nacl(a: float = 3.4) -> Crystal:
    return Crystal([11, 17], [[0, 0, 0], [0.5, 0.5, 0.5]], [a, a, a], [90, 90, 90], label="NaCl-CsCl-type")


@pytest.fixture(scope="module")
def chgnet():
    from benchmark.metrics.oracles.chgnet import CHGNetOracle

    return CHGNetOracle()


@pytest.fixture(scope="module")
def built(chgnet):
    return reference_hull([rock_salt(), cscl_type_nacl()], chgnet, EnergySettings(), progress=False)


def test_the_ground_state_sits_on_the_hull_and_a_polymorph_above(built, chgnet) -> None:
    hull, info = built
    assert info["n_placed"] == 2 and info["left_out"] == {}
    assert set(info["elemental_references"]) == {"Na", "Cl"}
    assert "Cl2 molecule" in info["elemental_references"]["Cl"]["label"]  # the gas, relaxed in its box
    assert info["hull"]["sha256"] == hull.sha256 and info["energy"]["model"].startswith("CHGNet")
    energies = model_energies([rock_salt(), cscl_type_nacl()], chgnet, EnergySettings(), progress=False)
    e_rs, e_cscl = (hull.e_above_hull(composition(c), e.energy_per_atom).e_above_hull
                    for c, e in zip([rock_salt(), cscl_type_nacl()], energies))
    assert e_rs == pytest.approx(0.0, abs=1e-6)  # the lowest NaCl is on the hull
    assert e_cscl > 0.005  # the CsCl-type polymorph is above it
    # NaCl is strongly bound: the hull at NaCl lies far below its elements
    decomp = hull.e_above_hull({"Na": 1, "Cl": 1}, -1.0)
    assert decomp.e_above_hull > 1.0 and set(decomp.decomposition) == {"dataset:NaCl-rocksalt"}


def test_a_crystal_with_displaced_atoms_relaxes_back_to_the_same_energy_above_hull(built, chgnet) -> None:
    hull, _ = built
    settings = EnergySettings()
    (ref, moved) = model_energies([rock_salt(), rock_salt(displace=0.15)], chgnet, settings, progress=False)
    assert moved.reason is None and moved.steps > 0
    e0 = hull.e_above_hull(composition(rock_salt()), ref.energy_per_atom).e_above_hull
    e1 = hull.e_above_hull(composition(rock_salt()), moved.energy_per_atom).e_above_hull
    assert abs(e1 - e0) < 2e-3  # eV/atom: the same minimum, within the relaxation's force tolerance
    # ... and single-point energies of the displaced crystal lie above it: the relaxation did the work
    (sp,) = model_energies([rock_salt(displace=0.15)], chgnet, EnergySettings(mode="single_point"), progress=False)
    assert sp.energy_per_atom - moved.energy_per_atom > 0.005


def test_reference_energies_are_cached(chgnet, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path))
    crystals = [cscl_type_nacl()]
    key = {"file": "abc"}
    first, info1 = reference_hull(crystals, chgnet, EnergySettings(mode="single_point"), cache_key=key, progress=False)
    second, info2 = reference_hull(crystals, chgnet, EnergySettings(mode="single_point"), cache_key=key, progress=False)
    assert (info1["cached"], info2["cached"]) == (False, True) and first.sha256 == second.sha256
