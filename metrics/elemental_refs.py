"""Candidate structures for the elemental references of a hull (issue 18, item 2).

A hull needs every element's ground state on the energy model's own scale. The ``reference`` hull
takes, per element, the lowest energy (after relaxation with the same model and settings) among:

* the dataset's own elemental crystals (given by the caller);
* ASE's reference state of the element (``ase.data.reference_states``: fcc, bcc, hcp, diamond, sc,
  bct ..., built with ``ase.build.bulk``) where ASE can build it;
* for the elements that are gases at room conditions (H, N, O, F, Cl and the noble gases), the
  molecule (or atom) alone in a large periodic box, as the issue and the usual hull conventions
  (the Materials Project's O2, N2, H2 references) ask;
* for Br and I, whose solids are molecular crystals, the molecule in a box as well;
* only when none of those exists (and for Br and I): simple prototypes (fcc, bcc, sc) at a lattice set from the
  covalent radius, so that the relaxation finds some low-energy elemental solid. Their label says
  so, and the record names which candidate each element got.

This module only builds the candidates (pure, no energy model); the hull builder relaxes them.
"""

from __future__ import annotations

from typing import Iterator

from benchmark.crystal import Crystal

#: diatomic gases and their bond lengths (Å; ASE's reference states, Cl2 from its g2 set)
DIATOMIC_GASES = {"H": 0.74, "N": 1.10, "O": 1.21, "F": 1.42, "Cl": 1.99}
#: elements whose solid is a crystal of diatomic molecules (bond lengths in Å, gas-phase experiment):
#: the molecule in a box is a candidate beside the prototypes (a simple-cubic Br at the covalent
#: radius is 2 eV/atom above Br2 with CHGNet as a single point)
MOLECULAR_SOLIDS = {"Br": 2.28, "I": 2.67}
#: monatomic gases
NOBLE_GASES = ("He", "Ne", "Ar", "Kr", "Xe", "Rn")
#: edge of the cubic box a gas molecule sits in (Å): the molecule's periodic images are far beyond
#: the cutoffs of the universal potentials (CHGNet 5-6 Å, MACE 6 Å)
GAS_BOX = 15.0
PROTOTYPES = ("fcc", "bcc", "sc")


def _gas(symbol: str, box: float) -> Crystal | None:
    from ase.data import atomic_numbers

    z = atomic_numbers[symbol]
    half = box / 2.0
    bonds = {**DIATOMIC_GASES, **MOLECULAR_SOLIDS}
    if symbol in bonds:
        d = bonds[symbol] / box  # fractional bond length along x
        frac = [[0.5 - d / 2.0, 0.5, 0.5], [0.5 + d / 2.0, 0.5, 0.5]]
        return Crystal([z, z], frac, [box, box, box], [90.0, 90.0, 90.0], label=f"{symbol}2 molecule in a {box:g} Å box")
    if symbol in NOBLE_GASES:
        return Crystal([z], [[half / box] * 3], [box, box, box], [90.0, 90.0, 90.0], label=f"{symbol} atom in a {box:g} Å box")
    return None


def _ase_reference(symbol: str) -> Crystal | None:
    """ASE's reference state of the element as a crystal, or None where ASE cannot build it."""
    from ase.build import bulk
    from ase.data import atomic_numbers, reference_states

    state = reference_states[atomic_numbers[symbol]]
    if state is None or state.get("symmetry") in ("diatom", "atom"):
        return None
    try:
        atoms = bulk(symbol)
    except (ValueError, RuntimeError, KeyError):  # orthorhombic, tetragonal ... states ASE does not build
        return None
    return Crystal.from_atoms(atoms, label=f"{symbol} {state['symmetry']} (ASE reference state)")


def _prototypes(symbol: str) -> Iterator[Crystal]:
    from ase.build import bulk
    from ase.data import atomic_numbers, covalent_radii

    r = float(covalent_radii[atomic_numbers[symbol]])
    # nearest-neighbour distance 2r: fcc a = 2r*sqrt(2), bcc a = 4r/sqrt(3), sc a = 2r
    for kind, a in (("fcc", 2 * r * 2 ** 0.5), ("bcc", 4 * r / 3 ** 0.5), ("sc", 2 * r)):
        yield Crystal.from_atoms(bulk(symbol, kind, a=a), label=f"{symbol} {kind} prototype (a = {a:.3f} Å from the covalent radius)")


def standard_candidates(symbol: str, box: float = GAS_BOX, *, have_dataset_crystal: bool = False) -> list[Crystal]:
    """The standard candidates for element ``symbol`` (see module doc): ASE's reference state and,
    for a gas, the molecule or atom in a box; the prototypes only when neither exists and the
    dataset has no elemental crystal of it either. Each candidate's ``label`` says what it is."""
    out = [c for c in (_ase_reference(symbol), _gas(symbol, box)) if c is not None]
    if (not out or symbol in MOLECULAR_SOLIDS) and not have_dataset_crystal:
        out.extend(_prototypes(symbol))
    return out
