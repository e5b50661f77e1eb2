"""Energy above the convex hull, through pymatgen's ``PhaseDiagram`` (issue 18, the hull core).

A :class:`Hull` is built from entries ``(composition, total energy, label)`` whose energies are
all on one energy model's scale (the same potential and settings as the samples'). The energy above
the hull of a crystal with composition ``c`` and energy ``E`` per atom is

    E_hull(c, E) = E - E_hull_surface(c),

where ``E_hull_surface(c)`` is the lowest energy per atom of any mixture of hull entries with the
overall composition ``c`` (the lower convex envelope of formation energies; pymatgen's
``PhaseDiagram.get_decomp_and_e_above_hull(entry, allow_negative=True)``). A crystal below the
hull gets a negative value.

Chemical space: pymatgen needs an elemental entry for every element of the phase diagram. An
element without one is left out of the hull (with every entry that contains it), and a crystal
that holds an element outside the hull's space gets no value, only a reason: it lowers the share
of samples placed on the hull and never stops a run (:meth:`Hull.e_above_hull` does not raise for
it). :attr:`Hull.excluded` says which entries were dropped and why.

The hull's identity is :attr:`Hull.sha256`: a hash of its entries (reduced formula, atoms,
energy rounded to 1e-8 eV, label), so a record can say which hull a number came from.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

#: energies are hashed rounded to this many decimals (eV): far below any physical difference, far
#: above float noise from a JSON round trip
HASH_DECIMALS = 8


@dataclass(frozen=True)
class HullEntry:
    """One crystal or reference of a hull: its composition (element symbol -> amount, any scale),
    its total energy in eV for exactly that amount, and a label (where it came from)."""

    composition: Mapping[str, float]
    energy: float
    label: str = ""

    @property
    def n_atoms(self) -> float:
        return float(sum(self.composition.values()))

    @property
    def energy_per_atom(self) -> float:
        return self.energy / self.n_atoms


@dataclass(frozen=True)
class HullResult:
    """The energy above the hull of one composition and energy.

    Attributes:
        e_above_hull: eV/atom (negative below the hull), or None when it cannot be placed.
        reason: why it cannot be placed (None when it can).
        decomposition: label -> fraction of atoms, the hull phases the composition decomposes into.
    """

    e_above_hull: float | None
    reason: str | None = None
    decomposition: dict[str, float] = field(default_factory=dict)


def _clean_composition(composition: Mapping[str, float]) -> dict[str, float]:
    return {str(el): float(x) for el, x in composition.items() if float(x) > 0}


class Hull:
    """A convex hull of formation energies over the entries' chemical space (see module doc).

    Args:
        entries: the hull's entries (at least one elemental entry per element to cover).
        name: the hull source's name for records (e.g. ``reference`` or an entries file's name).
    """

    def __init__(self, entries: Sequence[HullEntry], name: str = "hull") -> None:
        from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
        from pymatgen.core import Composition

        self.name = name
        self.excluded: list[tuple[str, str]] = []  # (label, reason)
        usable: list[HullEntry] = []
        for e in entries:
            comp = _clean_composition(e.composition)
            if not comp or not math.isfinite(e.energy):
                self.excluded.append((e.label, "no atoms or a non-finite energy"))
                continue
            usable.append(HullEntry(comp, float(e.energy), e.label))
        with_reference = {next(iter(e.composition)) for e in usable if len(e.composition) == 1}
        self.entries: list[HullEntry] = []
        for e in usable:
            missing = sorted(set(e.composition) - with_reference)
            if missing:
                self.excluded.append((e.label, f"no elemental reference for {', '.join(missing)}"))
            else:
                self.entries.append(e)
        if not self.entries:
            raise ValueError(f"hull {name!r}: no entries left (each element needs an elemental entry); excluded: {self.excluded[:5]}")
        self.elements = frozenset(with_reference)
        self._pd_entries = [PDEntry(Composition(e.composition), e.energy, name=e.label) for e in self.entries]
        self._labels = {id(p): e.label for p, e in zip(self._pd_entries, self.entries)}
        self.phase_diagram = PhaseDiagram(self._pd_entries)
        self.sha256 = hashlib.sha256(json.dumps(self._hash_rows(), separators=(",", ":")).encode()).hexdigest()

    def _hash_rows(self) -> list[list[Any]]:
        from pymatgen.core import Composition

        rows = []
        for e in self.entries:
            comp = Composition(e.composition)
            rows.append([comp.reduced_formula, round(comp.num_atoms, HASH_DECIMALS), round(e.energy, HASH_DECIMALS), e.label])
        return sorted(rows)

    def __len__(self) -> int:
        return len(self.entries)

    def e_above_hull(self, composition: Mapping[str, float], energy_per_atom: float) -> HullResult:
        """E_hull in eV/atom of a crystal with this composition (symbol -> amount) and energy per
        atom; a :class:`HullResult` with a reason, never an exception, when it cannot be placed."""
        from pymatgen.analysis.phase_diagram import PDEntry
        from pymatgen.core import Composition

        comp = _clean_composition(composition)
        if not comp:
            return HullResult(None, "empty composition")
        if not math.isfinite(energy_per_atom):
            return HullResult(None, "non-finite energy")
        outside = sorted(set(comp) - self.elements)
        if outside:
            return HullResult(None, f"element{'s' if len(outside) > 1 else ''} {', '.join(outside)} outside the hull's chemical space "
                                    f"({self.name}: {len(self.elements)} elements)")
        c = Composition(comp)
        entry = PDEntry(c, energy_per_atom * c.num_atoms)
        try:
            decomp, e_hull = self.phase_diagram.get_decomp_and_e_above_hull(entry, allow_negative=True)
        except ValueError as exc:  # pymatgen could not decompose it (a degenerate hull): a reason, not a crash
            return HullResult(None, f"no decomposition on the hull: {exc}")
        fractions = {self._label(p): float(x) for p, x in decomp.items()}
        return HullResult(float(e_hull), None, fractions)

    def _label(self, entry: Any) -> str:
        """The hull entry's label. pymatgen hands back the queried entry itself when it equals a
        stable entry (same composition and energy): then the label of that stable entry."""
        if id(entry) in self._labels:
            return self._labels[id(entry)]
        formula, e_atom = entry.composition.reduced_formula, entry.energy_per_atom
        for p in self.phase_diagram.stable_entries:
            if p.composition.reduced_formula == formula and abs(p.energy_per_atom - e_atom) < 1e-9 and id(p) in self._labels:
                return self._labels[id(p)]
        return str(entry.name)

    def describe(self) -> dict[str, Any]:
        """What a record says about the hull: name, hash, size, elements, excluded entries."""
        return {"name": self.name, "sha256": self.sha256, "n_entries": len(self.entries), "elements": sorted(self.elements),
                "n_excluded": len(self.excluded), "excluded": [{"label": lab, "reason": why} for lab, why in self.excluded[:20]]}
