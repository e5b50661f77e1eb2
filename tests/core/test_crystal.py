"""The Crystal record and its converters."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.crystal import Crystal, crystals_from_arrays, from_pyg_batch, lattice_matrix_to_params, lattice_params_to_matrix, to_pyg_batch
from tests.conftest import nacl, srtio3


@pytest.mark.parametrize("params", [(3.9, 3.9, 3.9, 90, 90, 90), (2.5, 3.8, 6.0, 120.3, 78.0, 108.4), (5.0, 5.0, 5.0, 60, 60, 60)])
def test_lattice_matrix_matches_pymatgen(params) -> None:
    from pymatgen.core import Lattice

    ours = lattice_params_to_matrix(params[:3], params[3:])
    assert np.allclose(ours, Lattice.from_parameters(*params).matrix, atol=1e-10)
    lengths, angles = lattice_matrix_to_params(ours)
    assert np.allclose(lengths, params[:3]) and np.allclose(angles, params[3:])


def test_crystal_is_immutable_and_checks_shapes() -> None:
    c = srtio3()
    with pytest.raises(ValueError):
        c.frac_coords[0, 0] = 0.3
    with pytest.raises(AttributeError):
        c.label = "x"  # type: ignore[misc]
    with pytest.raises(ValueError, match="frac_coords"):
        Crystal([1, 2], [[0, 0, 0]], [1, 1, 1], [90, 90, 90])
    with pytest.raises(TypeError):
        c.properties["x"] = 1  # type: ignore[index]


def test_structure_and_atoms_round_trip() -> None:
    c = nacl().with_properties(energy=-3.2)
    s = c.to_structure()
    assert s.composition.reduced_formula == "NaCl"
    assert np.allclose(Crystal.from_structure(s).frac_coords, c.frac_coords)
    atoms = c.to_atoms()
    assert atoms.info["energy"] == -3.2 and atoms.info["label"] == "NaCl"
    back = Crystal.from_atoms(atoms, label="NaCl")
    assert back.properties["energy"] == -3.2
    assert np.allclose(back.lengths, c.lengths) and np.allclose(back.angles, c.angles)
    assert np.allclose(back.cart_coords, c.cart_coords)


def test_pyg_batch_layout_and_split() -> None:
    crystals = [srtio3(), nacl(), srtio3(4.0)]
    batch = to_pyg_batch(crystals)
    assert batch.frac_coords.shape == (18, 3) and batch.atom_types.shape == (18,)
    assert batch.lengths.shape == (3, 3) and batch.num_atoms.tolist() == [5, 8, 5]
    back = from_pyg_batch(batch)
    for a, b in zip(back, crystals):
        assert a.atomic_numbers.tolist() == b.atomic_numbers.tolist()
        assert np.allclose(a.frac_coords, b.frac_coords, atol=1e-6)
        assert np.allclose(a.lengths, b.lengths, atol=1e-5)


def test_crystals_from_arrays_checks_counts() -> None:
    with pytest.raises(ValueError, match="num_atoms"):
        crystals_from_arrays(np.zeros((4, 3)), np.ones(4), np.ones((2, 3)), np.ones((2, 3)) * 90, np.array([2, 3]))
