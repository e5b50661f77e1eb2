"""Energy above the convex hull, through pymatgen's ``PhaseDiagram`` (issue 18, the hull core).

A :class:`Hull` is built from entries ``(composition, total energy, label)`` whose energies are
all on one energy model's scale (the same potential and settings as the samples'). The energy above
the hull of a crystal with composition ``c`` and energy ``E`` per atom is

    E_hull(c, E) = E - E_hull_surface(c),

where ``E_hull_surface(c)`` is the lowest energy per atom of any mixture of hull entries with the
overall composition ``c`` (the lower convex envelope of formation energies; pymatgen's
``PhaseDiagram.get_decomp_and_e_above_hull(entry, allow_negative=True)``). A crystal below the
hull gets a negative value. Above :data:`PATCHED_ABOVE` elements (Perov-5 has 56, MP-20 89) the
hull is a ``PatchedPhaseDiagram``: one phase diagram per chemical space, as MatterGen and Matbench
Discovery build theirs.

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
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

#: above this many elements the hull is pymatgen's PatchedPhaseDiagram (per chemical space) instead
#: of one PhaseDiagram (one convex hull in as many dimensions as elements)
PATCHED_ABOVE = 4
#: an E_hull within this of a threshold counts as at it (eV/atom; the stability thresholds and the
#: dataset's own distribution). CHGNet's energies are float32, and relaxing the same crystal twice (a
#: training crystal replayed, read back from a sample file) gave E_hull between -1.1e-4 and +9.9e-5
#: against its own hull entry in 12 of 20 cases (perov_5_dev); 0.1 meV/atom is far below any
#: physical difference (potential errors are tens of meV/atom)
TOLERANCE = 1e-4
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
        if len(self.elements) > PATCHED_ABOVE:
            # one qhull over 50+ elements never finishes; pymatgen's PatchedPhaseDiagram builds one
            # PhaseDiagram per chemical space the entries span (the same lower envelope within each),
            # and for a composition spanning several of them solves for the decomposition over the
            # stable entries of its space (SLSQP), the same value up to the solver's tolerance
            from pymatgen.analysis.phase_diagram import PatchedPhaseDiagram

            self.phase_diagram = PatchedPhaseDiagram(self._pd_entries)
        else:
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
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*Using SLSQP.*")  # a patched hull across spaces: expected
                decomp, e_hull = self.phase_diagram.get_decomp_and_e_above_hull(entry, allow_negative=True)
        except ValueError as exc:  # pymatgen could not decompose it (a degenerate hull): a reason, not a crash
            return HullResult(None, f"no decomposition on the hull: {exc}")
        fractions = {self.label_of(p): float(x) for p, x in decomp.items()}
        return HullResult(float(e_hull), None, fractions)

    def competitors(self, composition: Mapping[str, float]) -> int:
        """How many compounds of the hull (entries of two or more elements) lie in the chemical space
        of ``composition`` (their elements a subset of its elements). Zero: the hull can only compare
        a crystal of this composition with the elements, so a negative E_hull there says "below its
        elements", not "below the known phases"."""
        if not hasattr(self, "_compound_spaces"):
            self._compound_spaces = [frozenset(e.composition) for e in self.entries if len(e.composition) > 1]
        space = frozenset(_clean_composition(composition))
        return sum(1 for s in self._compound_spaces if s <= space)

    def label_of(self, entry: Any) -> str:
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


# ------------------------------------------------------------------ a hull from a file of entries
#: what the energies of an entries file are taken as: ``as_given`` (each entry's energy plus its
#: stated correction, e.g. the Materials Project's MP2020-corrected energies) or ``uncorrected``
#: (the raw energies, corrections dropped); the user says which matches the energy model's scale
CORRECTIONS = ("as_given", "uncorrected")
#: the entry kinds read (by their "@class"); anything else in the file is refused, not imported
ENTRY_CLASSES = ("ComputedEntry", "ComputedStructureEntry", "PDEntry", "GibbsComputedStructureEntry", "TransformedPDEntry")


class HullFileError(ValueError):
    """An entries file that cannot be read as a hull (not JSON, no entries, an unknown kind)."""


def _entry_dicts(data: Any) -> list[Mapping[str, Any]]:
    """The entry dicts of a JSON document: a list of entries, a PhaseDiagram's ``as_dict()``
    (``computed_data.all_entries``), or a dict with ``entries`` / ``all_entries``."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for path in (("computed_data", "all_entries"), ("all_entries",), ("entries",)):
            node: Any = data
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            if isinstance(node, list):
                return node
    raise HullFileError("expected a JSON list of pymatgen entries, a PhaseDiagram.as_dict() or {\"entries\": [...]}")


def read_entries_file(path: str, corrections: str = "as_given") -> tuple[list[HullEntry], str]:
    """The entries of a pymatgen entries JSON file (ComputedEntry / PDEntry dicts, e.g. exported
    from the Materials Project) as :class:`HullEntry` values, and the file's SHA-256.

    The JSON is read as data: each entry's ``composition``, ``energy`` and ``correction`` (or the sum
    of its ``energy_adjustments``) are taken from the dict; no class named in the file is imported
    or instantiated (monty's decoder would import whatever module a file names). ``corrections``:
    see :data:`CORRECTIONS`.
    """
    from pathlib import Path

    from benchmark.files import sha256_file

    if corrections not in CORRECTIONS:
        raise HullFileError(f"corrections {corrections!r}: choose {' or '.join(CORRECTIONS)} (what the file's energies are taken as)")
    p = Path(path)
    if not p.is_file():
        raise HullFileError(f"{path}: no such file")
    try:
        data = json.loads(p.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HullFileError(f"{path}: not a JSON file of pymatgen entries ({exc})") from exc
    out: list[HullEntry] = []
    for k, d in enumerate(_entry_dicts(data)):
        if not isinstance(d, dict):
            raise HullFileError(f"{path}: entry {k} is not an object")
        kind = d.get("@class", "PDEntry")
        if kind not in ENTRY_CLASSES:
            raise HullFileError(f"{path}: entry {k} is a {kind!r}; entries of kinds {', '.join(ENTRY_CLASSES)} are read")
        try:
            comp = {str(el): float(x) for el, x in dict(d["composition"]).items()}
            energy = float(d["energy"])
        except (KeyError, TypeError, ValueError) as exc:
            raise HullFileError(f"{path}: entry {k} has no readable composition and energy ({exc})") from exc
        if corrections == "as_given":
            if "correction" in d and d["correction"] is not None:
                energy += float(d["correction"])
            else:
                energy += sum(float(a.get("value", 0.0)) for a in d.get("energy_adjustments") or [] if isinstance(a, dict))
        label = str(d.get("entry_id") or d.get("name") or f"entry {k}")
        out.append(HullEntry(comp, energy, label))
    if not out:
        raise HullFileError(f"{path}: no entries")
    return out, sha256_file(p)


def energy_scale_differences(hull: Hull, elemental_energies: Mapping[str, float]) -> dict[str, float]:
    """Per element, the hull's elemental ground-state energy per atom minus the energy model's own
    (``elemental_energies``: symbol -> eV/atom of the model's elemental reference), for the
    elements both have. Energies from two scales (e.g. MP2020-corrected DFT against a potential's
    raw predictions, or another functional) differ here by far more than either's error."""
    out: dict[str, float] = {}
    for el, e_model in elemental_energies.items():
        if el in hull.elements and math.isfinite(e_model):
            ref = hull.phase_diagram.el_refs
            for element, entry in ref.items():
                if element.symbol == el:
                    out[el] = float(entry.energy_per_atom) - float(e_model)
    return out


def check_energy_scale(hull: Hull, elemental_energies: Mapping[str, float], tolerance: float = 0.5) -> dict[str, float]:
    """Raise :class:`HullFileError` when the hull's elemental references and the energy model's
    differ by more than ``tolerance`` eV/atom on average (the file's energies are not on the model's
    scale: a different functional, potential or reference); else the differences. A correction
    scheme that moves only compounds' energies (MP2020's anion and U corrections leave the elements
    alone) does not show here, which is why the user states the scheme (:data:`CORRECTIONS`)."""
    diffs = energy_scale_differences(hull, elemental_energies)
    if diffs:
        mean_abs = sum(abs(v) for v in diffs.values()) / len(diffs)
        if mean_abs > tolerance:
            shown = ", ".join(f"{el} {v:+.3f}" for el, v in sorted(diffs.items(), key=lambda kv: -abs(kv[1]))[:8])
            raise HullFileError(f"hull {hull.name!r}: its elemental energies differ from the energy model's by {mean_abs:.3f} eV/atom on average "
                                f"(more than {tolerance:g}; {shown}): the file's energies are not on the model's scale. State how they were "
                                f"corrected (corrections: {' or '.join(CORRECTIONS)}) or use a hull computed with the same model")
    return diffs
