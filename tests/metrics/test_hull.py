"""The hull core of the stability task (issue 18, item 5): a synthetic hull of a few entries with
known energies gives the hand-computed energy above the hull through pymatgen's PhaseDiagram."""

from __future__ import annotations

import pytest

from benchmark.metrics.hull import Hull, HullEntry

# A binary Li-O-like system written with real symbols (pymatgen needs elements), energies in eV/atom:
# elemental Li -1, elemental O -2, LiO (2 atoms) -2.5 per atom: 1 eV/atom below the Li-O line
# (-1.5 at x_O = 1/2). Ternary with Na -3.
ENTRIES = [
    HullEntry({"Li": 1}, -1.0, "Li"),
    HullEntry({"O": 2}, -4.0, "O2"),  # -2 eV/atom, given per formula unit of two atoms
    HullEntry({"Li": 1, "O": 1}, -5.0, "LiO"),  # -2.5 eV/atom
    HullEntry({"Li": 2, "O": 2}, -4.0, "LiO-high"),  # -1.0 eV/atom: a metastable polymorph above the hull
    HullEntry({"Na": 1}, -3.0, "Na"),
]


@pytest.fixture(scope="module")
def hull() -> Hull:
    return Hull(ENTRIES, name="synthetic")


@pytest.mark.parametrize(
    "composition, energy, expected, phases",
    [
        ({"Li": 1, "O": 1}, -2.4, 0.1, {"LiO"}),  # the compound's composition, 0.1 eV/atom above it
        ({"Li": 1, "O": 1}, -2.5, 0.0, {"LiO"}),  # on the hull
        ({"Li": 3, "O": 1}, -1.70, 0.05, {"Li", "LiO"}),  # hull at x_O = 1/4: (-1 - 2.5) / 2 = -1.75
        ({"Li": 3, "O": 1}, -1.80, -0.05, {"Li", "LiO"}),  # below the hull: negative
        ({"Li": 1, "O": 2}, -2.0, 1.0 / 3.0, {"LiO", "O2"}),  # hull at x_O = 2/3: (2 * -2.5 - 2) / 3 = -7/3
        ({"Li": 1, "O": 1, "Na": 1}, -2.6, 0.2 / 3.0, {"LiO", "Na"}),  # (2 * -2.5 - 3) / 3 = -8/3
        ({"Na": 2}, -2.9, 0.1, {"Na"}),  # an element above its own reference
    ],
)
def test_energy_above_a_synthetic_hull_is_the_hand_computed_value(hull: Hull, composition, energy, expected, phases) -> None:
    result = hull.e_above_hull(composition, energy)
    assert result.reason is None
    assert result.e_above_hull == pytest.approx(expected, abs=1e-9)
    assert set(result.decomposition) == phases
    assert sum(result.decomposition.values()) == pytest.approx(1.0)


def test_amounts_may_be_on_any_scale(hull: Hull) -> None:
    """A composition given per cell (Li4O4) is the same point as per formula unit."""
    assert hull.e_above_hull({"Li": 4, "O": 4}, -2.4).e_above_hull == pytest.approx(0.1, abs=1e-9)


def test_an_element_outside_the_hull_gets_a_reason_not_an_error(hull: Hull) -> None:
    out = hull.e_above_hull({"Li": 1, "Fe": 1}, -3.0)
    assert out.e_above_hull is None and "Fe" in out.reason and "outside" in out.reason
    assert hull.e_above_hull({}, -1.0).reason == "empty composition"
    assert hull.e_above_hull({"Li": 1}, float("nan")).reason == "non-finite energy"


def test_entries_without_an_elemental_reference_leave_the_hull_and_say_why() -> None:
    h = Hull(ENTRIES + [HullEntry({"Li": 1, "F": 1}, -8.0, "LiF"), HullEntry({"Li": 1}, float("inf"), "bad")], name="x")
    assert "F" not in h.elements and len(h) == len(ENTRIES)
    assert ("LiF", "no elemental reference for F") in h.excluded
    assert any(label == "bad" for label, _ in h.excluded)
    # the entry that could not be used does not change any number
    assert h.e_above_hull({"Li": 1, "O": 1}, -2.4).e_above_hull == pytest.approx(0.1, abs=1e-9)
    assert h.e_above_hull({"Li": 1, "F": 1}, -8.0).e_above_hull is None


def test_the_hash_names_the_entries_not_their_order(hull: Hull) -> None:
    assert Hull(list(reversed(ENTRIES)), name="synthetic").sha256 == hull.sha256
    moved = [HullEntry(e.composition, e.energy - (0.01 if e.label == "LiO" else 0.0), e.label) for e in ENTRIES]
    assert Hull(moved).sha256 != hull.sha256
    info = hull.describe()
    assert info["sha256"] == hull.sha256 and info["n_entries"] == 5 and info["elements"] == ["Li", "Na", "O"]


def test_a_hull_with_nothing_usable_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="elemental entry"):
        Hull([HullEntry({"Li": 1, "O": 1}, -5.0, "LiO")])


# ------------------------------------------------------------------ entries files
def _computed_entries_json(tmp_path):
    import json

    from pymatgen.entries.computed_entries import ComputedEntry, ConstantEnergyAdjustment

    entries = [ComputedEntry("Li", -1.0, entry_id="mp-Li"), ComputedEntry("O2", -4.0, entry_id="mp-O2"),
               ComputedEntry("LiO", -4.6, energy_adjustments=[ConstantEnergyAdjustment(-0.4, name="anion")], entry_id="mp-LiO")]
    path = tmp_path / "entries.json"
    path.write_text(json.dumps([e.as_dict() for e in entries]))
    return path


def test_a_computed_entries_file_gives_the_hull_with_its_corrections_as_stated(tmp_path) -> None:
    from benchmark.files import sha256_file
    from benchmark.metrics.hull import read_entries_file

    path = _computed_entries_json(tmp_path)
    entries, digest = read_entries_file(str(path))
    assert digest == sha256_file(path)
    by = {e.label: e for e in entries}
    assert by["mp-LiO"].energy == pytest.approx(-5.0)  # -4.6 plus its -0.4 correction: as given
    assert Hull(entries).e_above_hull({"Li": 1, "O": 1}, -2.4).e_above_hull == pytest.approx(0.1, abs=1e-9)
    raw, _ = read_entries_file(str(path), corrections="uncorrected")
    assert {e.label: e for e in raw}["mp-LiO"].energy == pytest.approx(-4.6)
    assert Hull(raw).e_above_hull({"Li": 1, "O": 1}, -2.4).e_above_hull == pytest.approx(-0.1, abs=1e-9)


def test_a_phase_diagram_file_is_read_too(tmp_path) -> None:
    import json

    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram

    from benchmark.metrics.hull import read_entries_file

    pd = PhaseDiagram([PDEntry("Li", -1.0, name="Li"), PDEntry("O2", -4.0, name="O2"), PDEntry("LiO", -5.0, name="LiO")])
    from monty.json import MontyEncoder

    path = tmp_path / "pd.json"
    path.write_text(json.dumps(pd.as_dict(), cls=MontyEncoder))  # as pymatgen writes one (dumpfn / MontyEncoder)
    entries, _ = read_entries_file(str(path))
    assert Hull(entries).e_above_hull({"Li": 3, "O": 1}, -1.70).e_above_hull == pytest.approx(0.05, abs=1e-9)


@pytest.mark.parametrize("content, message", [
    ("not json", "not a JSON file"),
    ('{"something": 1}', "expected a JSON list"),
    ('[{"@module": "os", "@class": "system", "composition": {"Li": 1}, "energy": 1}]', "'system'"),
    ('[{"composition": {"Li": 1}}]', "no readable composition and energy"),
    ("[]", "no entries"),
])
def test_a_bad_entries_file_is_a_clear_error_and_nothing_is_imported(tmp_path, content, message) -> None:
    from benchmark.metrics.hull import HullFileError, read_entries_file

    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(HullFileError, match=message):
        read_entries_file(str(path))
    with pytest.raises(HullFileError, match="no such file"):
        read_entries_file(str(tmp_path / "missing.json"))
    with pytest.raises(HullFileError, match="choose"):
        read_entries_file(str(path), corrections="mp2020")


def test_energies_on_another_scale_are_refused(hull: Hull) -> None:
    from benchmark.metrics.hull import HullFileError, check_energy_scale

    assert check_energy_scale(hull, {"Li": -1.02, "O": -1.97, "Fe": -8.0}) == pytest.approx({"Li": 0.02, "O": -0.03})
    with pytest.raises(HullFileError, match="not on the model's scale"):
        check_energy_scale(hull, {"Li": -3.0, "O": -6.5})


def test_patched_hull_of_many_elements_equals_the_single_phase_diagram(monkeypatch):
    """Above PATCHED_ABOVE elements the hull is pymatgen's PatchedPhaseDiagram (one qhull over 56
    elements never finishes); on a random 6-element hull it gives the single PhaseDiagram's E_hull,
    also for compositions spanning several of its chemical spaces."""
    import numpy as np

    from benchmark.metrics import hull as module

    rng = np.random.default_rng(0)
    els = ["Li", "Na", "K", "O", "F", "Cl"]
    entries = [HullEntry({e: 1.0}, -1.0 * (i + 1), e) for i, e in enumerate(els)]
    for k in range(120):
        sub = rng.choice(els, int(rng.integers(2, 4)), replace=False)
        comp = {str(e): float(rng.integers(1, 4)) for e in sub}
        ref = sum(-1.0 * (els.index(e) + 1) * x for e, x in comp.items())
        entries.append(HullEntry(comp, ref + float(rng.normal(-0.3, 0.4)) * sum(comp.values()), f"c{k}"))
    monkeypatch.setattr(module, "PATCHED_ABOVE", 99)
    single = Hull(entries)
    monkeypatch.setattr(module, "PATCHED_ABOVE", 4)
    patched = Hull(entries)
    assert type(single.phase_diagram).__name__ == "PhaseDiagram" and type(patched.phase_diagram).__name__ == "PatchedPhaseDiagram"
    assert patched.sha256 == single.sha256
    for _ in range(200):
        sub = rng.choice(els, int(rng.integers(1, 5)), replace=False)
        comp = {str(e): float(rng.integers(1, 4)) for e in sub}
        e = float(rng.normal(-2.0, 1.0))
        assert patched.e_above_hull(comp, e).e_above_hull == pytest.approx(single.e_above_hull(comp, e).e_above_hull, abs=1e-9)
