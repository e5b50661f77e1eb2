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
