"""CrysTens (Alverson et al. 2024, sections 3.1-3.2, Tables 1-2): layout, normalisation, decoding,
consistency statistics and the encode -> decode round trip on the shared datasets."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from benchmark.crystal import Crystal
from benchmark.representations import crystens as ct
from tests.conftest import data_dir, nacl, srtio3


# ------------------------------------------------------------------------------------------ layout
def test_layout_positions_and_symmetry_on_nacl() -> None:
    c = nacl()
    t = ct.encode(c, normalise=False)
    assert t.shape == (64, 64, 4) and t.dtype == np.float32
    z = [11] * 4 + [17] * 4
    for i in range(8):
        for ch in range(4):
            assert t[0, 12 + i, ch] == t[12 + i, 0, ch] == z[i]
            for k in range(3):
                assert t[1 + k, 12 + i, ch] == t[12 + i, 1 + k, ch] == pytest.approx(c.frac_coords[i, k])
            for k, v in zip(range(4, 10), [5.64, 5.64, 5.64, 90, 90, 90]):
                assert t[k, 12 + i, ch] == t[12 + i, k, ch] == pytest.approx(v)
            assert t[10, 12 + i, ch] == t[12 + i, 10, ch] == 225  # Fm-3m
    assert not t[11].any() and not t[:, 11].any()  # the separator
    assert not t[20:].any() and not t[:, 20:].any()  # padding after 8 atoms
    assert not t[:11, :11].any()
    pair = t[12:20, 12:20]
    np.testing.assert_allclose(pair[..., 0], pair[..., 0].T)
    np.testing.assert_allclose(pair[..., 1:], -np.transpose(pair[..., 1:], (1, 0, 2)))
    # atom 0 at (0, 0, 0), atom 4 (Cl) at (0.5, 0, 0), atom 1 at (0.5, 0.5, 0): differences f_i - f_j
    assert pair[0, 4, 1] == pytest.approx(-0.5) and pair[4, 0, 1] == pytest.approx(0.5)
    assert pair[0, 1, 0] == pytest.approx(math.sqrt(0.5))  # raw fractional distance, as released
    assert np.all(np.diag(pair[..., 0]) == 0)


def test_normalise_on_and_off() -> None:
    c = nacl()
    raw = ct.encode(c, normalise=False).astype(np.float64)
    norm = ct.encode(c).astype(np.float64)
    lo, hi = ct.PAPER.header_ranges()
    for k in range(11):
        np.testing.assert_allclose(norm[k, 12:20, :], (raw[k, 12:20, :] - lo[k]) / (hi[k] - lo[k]), rtol=1e-6, atol=1e-7)
    plo, phi = ct.PAPER.pair_ranges()
    np.testing.assert_allclose(norm[12:20, 12:20], (raw[12:20, 12:20] - plo) / (phi - plo), atol=1e-6)
    assert norm.min() >= 0 and norm.max() <= 1
    assert not norm[20:].any() and not norm[:, 20:].any()  # padding stays 0
    assert norm[12, 12, 1] == pytest.approx(0.5, abs=1e-6)  # zero difference maps to the middle
    back = ct.to_raw(norm)
    np.testing.assert_allclose(back[:11, 12:20], raw[:11, 12:20], atol=1e-4)
    np.testing.assert_allclose(back[12:20, 12:20], raw[12:20, 12:20], atol=1e-6)


def test_paper_layout_is_the_released_avg_std_map() -> None:
    d = ct.PAPER.to_dict()["ranges"]
    assert d["Z"] == pytest.approx([1, 99]) and d["space_group"] == pytest.approx([1, 230])
    assert d["a"] == pytest.approx([1.7624, 42.664], abs=1e-3) and d["c"] == pytest.approx([2.168, 116.195], abs=1e-3)
    assert d["difference"] == pytest.approx([-1, 1], abs=1e-5) and d["distance"] == pytest.approx([0, 1.6547], abs=1e-4)
    # the released arithmetic ((v - p0) / p1 + p2) / (p2 + p3), for a sample value of each quantity
    for key, (p0, p1, p2, p3) in ct._AVG_STD.items():
        lo, hi = d[key]
        v = (lo + hi) / 3
        shift = ct._DIRECTION_FIX if key == "difference" else 0.0
        assert (v - lo) / (hi - lo) == pytest.approx(((v + shift - p0) / p1 + p2) / (p2 + p3))


def test_layout_dict_round_trip_and_fit() -> None:
    assert ct.Layout.from_dict(ct.PAPER.to_dict()) == ct.PAPER
    with pytest.raises(ValueError):
        ct.Layout.from_dict({"name": "x", "ranges": {"Z": [1, 2]}})
    fitted = ct.Layout.fit([nacl(), srtio3()])
    assert fitted.a == (3.905, 5.64) and fitted.Z == (8.0, 38.0) and fitted.alpha[0] == 0.0
    for c in (nacl(), srtio3()):
        t = ct.encode(c, layout=fitted)
        assert t.min() >= 0 and t.max() <= 1 + 1e-6
        d = ct.decode(t, layout=fitted)
        assert d.crystal is not None and sorted(d.crystal.atomic_numbers.tolist()) == sorted(c.atomic_numbers.tolist())


def test_more_than_52_atoms_is_an_error_and_encode_many_skips_it() -> None:
    rng = np.random.default_rng(0)
    big = Crystal([6] * 53, rng.random((53, 3)), [20, 20, 20], [90, 90, 90], label="big")
    with pytest.raises(ValueError, match="at most 52 atoms.*53"):
        ct.encode(big)
    arr, reasons = ct.encode_many([nacl(), big, srtio3()], progress=False)
    assert arr.shape == (2, 64, 64, 4) and arr.dtype == np.float32
    assert len(reasons) == 1 and "crystal 1 (big)" in reasons[0] and "52" in reasons[0]


# ------------------------------------------------------------------------------------------ decode
@pytest.mark.parametrize("maker", [nacl, srtio3])
def test_decode_of_an_encoded_crystal_gives_it_back(maker) -> None:
    c = maker()
    for normalise in (True, False):
        d = ct.decode(ct.encode(c, normalise=normalise), normalised=normalise)
        assert d.reason is None and d.crystal is not None and d.num_atoms == c.num_atoms
        assert d.crystal.atomic_numbers.tolist() == c.atomic_numbers.tolist()
        diff = d.crystal.frac_coords - c.frac_coords
        assert np.abs(diff - np.rint(diff)).max() < 1e-5
        np.testing.assert_allclose(d.crystal.lengths, c.lengths, rtol=1e-5)
        np.testing.assert_allclose(d.crystal.angles, c.angles, rtol=1e-5)
    assert ct.decode(ct.encode(nacl())).space_group == 225
    assert ct.decode(ct.encode(srtio3())).space_group == 221
    # the paper's K = 6 coordinate clustering keeps rock salt (two distinct values) intact
    assert ct.decode(ct.encode(nacl()), coord_clusters=6).crystal.num_atoms == 8


@pytest.mark.parametrize(
    "garbage, reason",
    [
        (np.full((64, 64, 4), np.nan), "non-finite"),
        (np.zeros((64, 64, 4)), "all zeros"),
        (np.ones((64, 64)), "shape"),
        ("not an array", "numeric"),
        (np.full((64, 64, 4), np.inf), "non-finite"),
    ],
)
def test_decode_gives_reasons_for_garbage(garbage, reason) -> None:
    d = ct.decode(garbage)
    assert d.crystal is None and reason in d.reason


def test_decode_never_raises_on_noise_and_says_why_when_it_fails() -> None:
    rng = np.random.default_rng(1)
    outcomes = []
    for scale in (1.0, 3.0, -1.0):
        for _ in range(8):
            d = ct.decode(rng.random((64, 64, 4)) * scale)
            assert (d.crystal is None) != (d.reason is None)
            if d.crystal is not None:
                assert d.crystal.num_atoms >= 1 and np.all((d.crystal.frac_coords >= 0) & (d.crystal.frac_coords < 1))
            outcomes.append(d.reason)
    assert any(r is not None for r in outcomes)


def test_decode_reasons_for_impossible_lattice_and_no_atoms() -> None:
    raw = ct.encode(nacl(), normalise=False).astype(np.float64)
    bad = raw.copy()
    for k in (7, 8, 9):
        bad[k, 12:20, :] = bad[12:20, k, :] = 170.0
    assert "describe no cell" in ct.decode(bad, normalised=False).reason
    none = raw.copy()
    none[12:, 7, 0] = 0.0
    assert "no atoms" in ct.decode(none, normalised=False).reason
    z = raw.copy()
    z[0, 12:20, :] = z[12:20, 0, :] = 150.0
    assert "atomic numbers outside" in ct.decode(z, normalised=False).reason


def test_atom_count_stops_where_alpha_stops_agreeing() -> None:
    raw = ct.encode(srtio3(), normalise=False).astype(np.float64)
    assert ct.count_atoms(raw) == 5
    raw[12 + 3, 7, 0] = 90 * 1.19  # still within 20 %
    assert ct.count_atoms(raw) == 5
    raw[12 + 3, 7, 0] = 90 * 1.2  # not
    assert ct.count_atoms(raw) == 3


def test_atomic_number_kmeans_gives_the_papers_parsimonious_list() -> None:
    # section 3.2: (12.2, 12.6, 12.4, 12.5, 7.7, 7.4, 8.4, 8.5) should become Mg4 O4, not Mg Al N O F
    rng = np.random.default_rng(0)
    c = Crystal([12] * 4 + [8] * 4, rng.random((8, 3)), [6, 6, 6], [90, 90, 90])
    raw = ct.encode(c, normalise=False).astype(np.float64)
    for i, v in enumerate([12.2, 12.6, 12.4, 12.5, 7.7, 7.4, 8.4, 8.5]):
        raw[0, 12 + i, :] = raw[12 + i, 0, :] = v
    assert ct.decode(raw, normalised=False).crystal.atomic_numbers.tolist() == [12] * 4 + [8] * 4
    rounded = ct.decode(raw, normalised=False, atom_clusters=None).crystal.atomic_numbers.tolist()
    assert rounded == [12, 13, 12, 12, 8, 7, 8, 8]  # np.rint rounds 12.5 to even


def test_coordinates_combine_own_entries_with_the_direction_graphs() -> None:
    # section 3.2, Fig. 3: a shifted own entry of atom 0 is outvoted by the other atoms' guesses
    raw = ct.encode(srtio3(), normalise=False).astype(np.float64)
    raw[1, 12, :] = raw[12, 1, :] = 0.1  # atom 0's x: 0 -> 0.1; the pair block still says 0
    d = ct.decode(raw, normalised=False)
    assert d.crystal.frac_coords[0, 0] == pytest.approx(0.1 / 5)  # mean of 5 guesses: own 0.1 and four 0.0
    assert d.crystal.frac_coords[1, 0] == pytest.approx(0.5 + 0.1 / 5)  # atom 1's guess from atom 0 moves too
    released_weight = ct.decode(raw, normalised=False, own_weight=1 / (5 + 12)).crystal.frac_coords[0, 0]
    assert released_weight == pytest.approx(0.1 / 17 + (16 / 17) * (0.1 / 5))


def test_duplicate_sites_are_dropped() -> None:
    c = Crystal([11, 11, 17], [[0, 0, 0], [0.001, 0, 0], [0.5, 0.5, 0.5]], [5, 5, 5], [90, 90, 90])
    d = ct.decode(ct.encode(c))
    assert d.num_atoms == 3 and d.crystal.atomic_numbers.tolist() == [11, 17]


# ------------------------------------------------------------------------------------------ Tables 1-2
def test_consistency_of_perfect_tensors_is_zero() -> None:
    arr, _ = ct.encode_many([nacl(), srtio3()], progress=False)
    s = ct.consistency(arr)
    for key in ("var_lattice_lengths", "var_angles", "var_space_group", "var_frac_coords"):
        assert s[key] == pytest.approx(0, abs=1e-6), key
    assert s["coord_disagreement_per_atom"] == pytest.approx(0, abs=1e-5)
    assert s["pairwise_disagreement_per_atom"] == pytest.approx(0, abs=1e-5)
    assert s["decode_share"] == 1.0 and s["n_scored"] == 2


def test_consistency_by_hand() -> None:
    raw = ct.encode(nacl(), normalise=False).astype(np.float64)  # A = 8
    raw[4, 12, 0] += 8.0  # one of the 8A = 64 copies of a, off by 8 Å
    raw[10, 12, 0] += 16.0  # one of the 64 space-group copies, off by 16
    raw[1, 12, 0] += 0.8  # one of the 8 copies of atom 0's x
    s = ct.consistency(raw[None], normalised=False)
    var64 = lambda delta: delta**2 * (1 / 64) * (1 - 1 / 64)  # noqa: E731 - variance of one outlier among 64
    assert s["var_lattice_lengths"] == pytest.approx(var64(8.0) / 3)  # mean over a, b, c
    assert s["var_space_group"] == pytest.approx(var64(16.0))
    assert s["var_angles"] == pytest.approx(0, abs=1e-9)
    assert s["var_frac_coords"] == pytest.approx(0.8**2 * (1 / 8) * (7 / 8) / 24)  # mean over 8 atoms x 3 axes
    # atom 0's own x is now 0.1 (mean of 8 copies) and the other atoms' guesses say 0: 0.1; each of
    # the 7 others gets one guess from atom 0 that is 0.1 off, 0.1 / 7 in their mean: 7 x 0.1 / 7.
    # The mean over 8 atoms x 3 axes: (0.1 + 0.1) / 24
    assert s["coord_disagreement_per_atom"] == pytest.approx(0.2 / 24)
    assert s["decode_share"] == 1.0


def test_consistency_grows_with_noise_and_rejects_wrong_shapes() -> None:
    arr, _ = ct.encode_many([nacl()] * 4, progress=False)
    noisy = np.clip(arr + np.random.default_rng(0).normal(0, 0.01, arr.shape) * (arr > 0), 0, 1)
    s = ct.consistency(noisy)
    assert s["var_lattice_lengths"] > 0.01 and s["var_frac_coords"] > 1e-6 and s["pairwise_disagreement_per_atom"] > 0
    with pytest.raises(ValueError):
        ct.consistency(np.zeros((2, 32, 32, 4)))
    garbage = ct.consistency(np.full((2, 64, 64, 4), np.nan))
    assert garbage["decode_share"] == 0 and garbage["n_scored"] == 0 and math.isnan(garbage["var_angles"])


# ------------------------------------------------------------------------------------------ round trip
ROUND_TRIP_FILES = [
    "perov_5/test.csv",
    "carbon_24/test.csv",
    "perov_5/val.csv",
    "carbon_24/val.csv",
    "perov_5_dev/train.csv",
    "perov_5_dev/val.csv",
    "perov_5_dev/test.csv",
    "supercon/train.csv",
    "supercon/val.csv",
    "supercon/test.csv",
    "mp_20_sample/train.csv",
    "mp_20_sample/val.csv",
    "mp_20_sample/test.csv",
]


def _round_trip(path: Path, limit: int | None) -> tuple[int, int, int, list[str]]:
    """(crystals of at most 52 atoms, matched with the default decoder, matched in all, failures).

    Crystals with more than three elements cannot survive the release's K = 3 atomic-number
    clustering; they are decoded with ``atom_clusters=None`` (rounding only) and counted apart.
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from benchmark.datasets.base import load_csv

    matcher = StructureMatcher(ltol=0.5, stol=0.3, angle_tol=10)
    crystals = [c for c in load_csv(path, progress=False) if c.num_atoms <= ct.MAX_ATOMS][:limit]
    default_ok = total_ok = 0
    failures: list[str] = []
    for c in crystals:
        many = len(set(c.atomic_numbers.tolist())) > ct.ATOM_CLUSTERS
        d = ct.decode(ct.encode(c), atom_clusters=None if many else ct.ATOM_CLUSTERS)
        ok = d.crystal is not None and matcher.fit(d.crystal.to_structure(), c.to_structure())
        total_ok += ok
        default_ok += ok and not many
        if not ok:
            failures.append(f"{c.label}: {d.reason}")
    return len(crystals), default_ok, total_ok, failures


def _files_present() -> list[Path]:
    d = data_dir()
    if d is None:
        pytest.skip("no data directory: set BENCHMARK_DATA_DIR to the published CSVs")
    present = [d / f for f in ROUND_TRIP_FILES if (d / f).is_file()]
    if not present:
        pytest.skip(f"none of {ROUND_TRIP_FILES} in {d}")
    return present


@pytest.mark.data
def test_round_trip_subset() -> None:
    """100 Perov-5 and 100 Carbon-24 test crystals (the full sets are the slow test below)."""
    d = data_dir()
    files = [d / f for f in ("perov_5/test.csv", "carbon_24/test.csv")] if d is not None else []
    files = [f for f in files if f.is_file()]
    if not files:
        pytest.skip("no Perov-5 or Carbon-24 test split in the data directory")
    for f in files:
        n, _, ok, failures = _round_trip(f, 100)
        assert ok == n, f"{f}: {n - ok} of {n} did not round-trip: {failures[:5]}"


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("name", ROUND_TRIP_FILES)
def test_round_trip_every_crystal(name: str) -> None:
    files = {p.relative_to(p.parents[1]).as_posix(): p for p in _files_present()}
    if name not in files:
        pytest.skip(f"{name} not in the data directory")
    n, default_ok, ok, failures = _round_trip(files[name], None)
    print(f"{name}: {n} crystals of <= 52 atoms, {default_ok} matched with K = 3, {ok} in all")
    assert ok == n, f"{name}: {n - ok} of {n} did not round-trip: {failures[:5]}"
