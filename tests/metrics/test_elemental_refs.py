"""Candidate elemental references of the reference hull (issue 18, item 2)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.metrics.elemental_refs import GAS_BOX, standard_candidates


def _nearest(c) -> float:
    s = c.to_structure()
    d = s.distance_matrix + np.eye(len(s)) * 1e9
    return float(d.min()) if len(s) > 1 else float(min(c.lengths))


@pytest.mark.parametrize("symbol, kind, nn", [("Cu", "fcc", 2.553), ("Fe", "bcc", 2.482), ("Si", "diamond", 2.352), ("Ti", "hcp", 2.896)])
def test_ase_reference_states_are_built(symbol, kind, nn) -> None:
    (c,) = standard_candidates(symbol)
    assert kind in c.label and "ASE reference state" in c.label
    assert set(c.atomic_numbers.tolist()) == {c.atomic_numbers[0]}
    assert _nearest(c) == pytest.approx(nn, abs=0.01)  # ASE's lattice constants, e.g. Cu a = 3.61 Å


@pytest.mark.parametrize("symbol, bond", [("O", 1.21), ("N", 1.10), ("H", 0.74), ("Cl", 1.99)])
def test_diatomic_gases_are_molecules_in_a_large_box(symbol, bond) -> None:
    cands = standard_candidates(symbol)
    gas = [c for c in cands if "molecule" in c.label]
    assert len(gas) == 1 and gas[0].num_atoms == 2
    assert _nearest(gas[0]) == pytest.approx(bond, abs=1e-9)
    assert np.allclose(gas[0].lengths, GAS_BOX) and np.allclose(gas[0].angles, 90.0)


def test_noble_gases_are_atoms_in_a_box_and_ase_solids_where_it_has_them() -> None:
    he = standard_candidates("He")
    assert [c.num_atoms for c in he] == [1] and "atom in a" in he[0].label
    ar = standard_candidates("Ar")
    assert {"fcc (ASE reference state)" in c.label or "atom in a" in c.label for c in ar} == {True} and len(ar) == 2


def test_prototypes_only_where_nothing_else_exists() -> None:
    s = standard_candidates("S")  # orthorhombic in ASE's table, which it cannot build
    assert [c.label.split()[1] for c in s] == ["fcc", "bcc", "sc"] and all("prototype" in c.label for c in s)
    assert standard_candidates("S", have_dataset_crystal=True) == []  # the dataset's own sulphur crystals suffice
    for c in s:  # nearest neighbours at twice the covalent radius (1.05 Å)
        assert _nearest(c) == pytest.approx(2.10, abs=0.01)


def test_every_element_up_to_plutonium_gets_a_candidate() -> None:
    from ase.data import chemical_symbols

    for symbol in chemical_symbols[1:95]:
        cands = standard_candidates(symbol)
        assert cands, symbol
        assert all(c.label and c.label.startswith(symbol) for c in cands), symbol


@pytest.mark.parametrize("symbol, bond", [("Br", 2.28), ("I", 2.67)])
def test_molecular_solids_get_the_molecule_beside_the_prototypes(symbol, bond):
    labels = [c.label for c in standard_candidates(symbol)]
    assert labels[0] == f"{symbol}2 molecule in a 15 Å box" and any("prototype" in x for x in labels[1:])
    (mol,) = [c for c in standard_candidates(symbol) if "molecule" in c.label]
    assert abs(mol.frac_coords[1, 0] - mol.frac_coords[0, 0]) * 15.0 == pytest.approx(bond)
    # a dataset's own elemental crystal replaces the prototypes, not the molecule
    assert [c.label for c in standard_candidates(symbol, have_dataset_crystal=True)] == labels[:1]
