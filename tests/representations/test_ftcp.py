"""FTCP (Ren et al., Matter 5, 314, 2022; released PV-Lab/FTCP): layout, hand-checked blocks, the
reciprocal points and "Fourier" term, the release's scaler, decoding (garbage included) and the
encode -> decode round trip on the shared datasets."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from benchmark.crystal import Crystal
from benchmark.representations import ftcp as F
from tests.conftest import REPO, data_dir, nacl, srtio3

ORACLES = Path(os.environ.get("BENCHMARK_ORACLE_DIR") or REPO.parent / "shared" / "oracles")
ATOM_INIT_FILE = ORACLES / "con_cdvae_cgcnn" / "atom_init.json"
needs_atom_init = pytest.mark.skipif(not ATOM_INIT_FILE.is_file(),
                                     reason="needs CGCNN's atom_init.json (BENCHMARK_ORACLE_DIR with con_cdvae_cgcnn/)")


def fake_features() -> dict[int, list[float]]:
    """Element Z's 92 features: Z + 0.01 * p, easy to check by hand."""
    return {z: [z + 0.01 * p for p in range(92)] for z in range(1, 101)}


def cscl(a: float = 4.0) -> Crystal:
    """CsCl-type NaCl: Na at the origin, Cl at the body centre, 2 atoms."""
    return Crystal([11, 17], [[0, 0, 0], [0.5, 0.5, 0.5]], [a, a, a], [90, 90, 90], label="CsCl-type")


@pytest.fixture
def oracle_dir(monkeypatch: pytest.MonkeyPatch) -> Path:
    if not ATOM_INIT_FILE.is_file():
        pytest.skip("needs CGCNN's atom_init.json (BENCHMARK_ORACLE_DIR with con_cdvae_cgcnn/)")
    monkeypatch.setenv("BENCHMARK_ORACLE_DIR", str(ORACLES))
    return ORACLES


# ------------------------------------------------------------------------------------------ layout
def test_layout_of_the_released_run_and_its_dict() -> None:
    # main.py: max_elms 4, max_sites 40 -> 103 + 2 + 40 + 40 + 1 + 92 = 278 rows, padded by 2 to 280
    lay = F.FTCPLayout(4, 40)
    assert lay.n_rows_unpadded == 278 and lay.n_rows == 280 and lay.n_cols == 4 + 59
    assert (lay.row_abc, lay.row_angles, lay.row_coords, lay.row_occupancy, lay.row_lengths, lay.row_features) == (
        103, 104, 105, 145, 185, 186)
    assert lay.row_features_imag is None and lay.col_recip == 4
    small = F.FTCPLayout(1, 24)  # Carbon-24: E = max(1, 3) = 3 columns
    assert small.n_cols == 62 and small.n_rows_unpadded == 103 + 2 + 48 + 1 + 92 and small.n_rows % 4 == 0
    sf = F.FTCPLayout(4, 40, "ftcp_sf")
    assert sf.row_features_imag == 186 + 92 and sf.n_rows_unpadded == 278 + 92 and sf.n_rows == 372
    for layout in (lay, small, sf):
        assert F.FTCPLayout.from_dict(json.loads(json.dumps(layout.to_dict()))) == layout
    with pytest.raises(ValueError, match="n_rows"):
        F.FTCPLayout.from_dict({**lay.to_dict(), "n_rows": 278})
    for bad in ({"max_elms": 0, "max_sites": 5}, {"max_elms": 3, "max_sites": 2.5}, {"max_elms": 3, "max_sites": 5, "variant": "sf"}):
        with pytest.raises(ValueError):
            F.FTCPLayout(**bad)


def test_dataset_limits() -> None:
    assert F.dataset_limits([nacl(), srtio3(), cscl()]) == (3, 8)
    with pytest.raises(ValueError):
        F.dataset_limits([])


# ------------------------------------------------------------------------------------------ encode
def test_two_atom_crystal_blocks_by_hand() -> None:
    feats = fake_features()
    a = F.encode(cscl(), max_elms=2, max_sites=4, element_features=feats)
    lay = F.FTCPLayout(2, 4)
    # 103 + 2 + 4 + 4 + 1 + 92 = 206 rows, padded to 208; E = 3 real columns + 59
    assert a.shape == lay.shape == (208, 62) and a.dtype == np.float32
    real = a[:, :3]
    one_hot = real[:103]
    assert one_hot[10, 0] == 1 and one_hot[16, 1] == 1 and one_hot.sum() == 2  # Na (Z 11) column 0, Cl column 1
    np.testing.assert_array_equal(real[103], [4, 4, 4])
    np.testing.assert_array_equal(real[104], [90, 90, 90])
    np.testing.assert_array_equal(real[105:109], [[0, 0, 0], [0.5, 0.5, 0.5], [0, 0, 0], [0, 0, 0]])  # 2 padding sites
    np.testing.assert_array_equal(real[109:113], [[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]])
    assert not real[113].any()  # the zero row facing the point lengths
    np.testing.assert_allclose(real[114:206, 0], feats[11], rtol=1e-6)
    np.testing.assert_allclose(real[114:206, 1], feats[17], rtol=1e-6)
    assert not real[114:206, 2].any()
    assert not a[206:].any()  # padding rows
    assert not a[:113, 3:].any()  # reciprocal part is zero above the point lengths
    # first-appearance order, not atomic-number order: Cl first makes Cl column 0
    b = F.encode(Crystal([17, 11], [[0, 0, 0], [0.5, 0.5, 0.5]], [4, 4, 4], [90, 90, 90]), 2, 4, element_features=feats)
    assert b[16, 0] == 1 and b[10, 1] == 1


def test_reciprocal_points_by_hand_and_as_pymatgen_finds_them() -> None:
    from pymatgen.core import Lattice

    hkl, g = F.reciprocal_points([4, 4, 4], [90, 90, 90])
    assert hkl.shape == (59, 3) and g.shape == (59,)
    assert not np.any(np.all(hkl == 0, axis=1))  # (000) dropped
    assert len({tuple(r) for r in hkl.tolist()}) == 59
    # |h|+|k|+|l| = 1 first, h then k then l descending: (100), (010), (001), (00-1), (0-10), (-100)
    assert hkl[:6].tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, -1], [0, -1, 0], [-1, 0, 0]]
    np.testing.assert_allclose(g[:6], 0.25)  # crystallographic: 1 / a, no 2 pi
    np.testing.assert_allclose(g, np.linalg.norm(hkl, axis=1) / 4)
    l1 = np.abs(hkl).sum(axis=1)
    assert np.all(np.diff(l1) >= 0)
    # random triclinic cells: the set and order the release gets from pymatgen (data.py:167-187)
    rng = np.random.default_rng(0)
    checked = 0
    while checked < 12:
        lengths, angles = rng.uniform(2.5, 16, 3), rng.uniform(65, 115, 3)
        if F.lattice_problem(lengths, angles) is not None:
            continue
        recip = Lattice.from_parameters(*lengths, *angles).reciprocal_lattice_crystallographic
        pts, dist, _, _ = recip.get_points_in_sphere([[0, 0, 0]], [0, 0, 0], 1.297, zip_results=False)
        if len(pts) < 60:
            pts, dist, _, _ = recip.get_points_in_sphere([[0, 0, 0]], [0, 0, 0], 1.4, zip_results=False)
        pts, dist = pts[dist != 0].astype(np.int16), dist[dist != 0]
        order = np.lexsort((-pts[:, 2], -pts[:, 1], -pts[:, 0], np.abs(pts).sum(axis=1)))[:59]
        ours_hkl, ours_g = F.reciprocal_points(lengths, angles)
        assert ours_hkl.tolist() == pts[order].tolist()
        np.testing.assert_allclose(ours_g, dist[order], rtol=1e-10)
        checked += 1
    with pytest.raises(ValueError, match="FTCP needs 59"):
        F.reciprocal_points([1.5, 1.5, 1.5], [90, 90, 90])  # 3.4 Å^3: too few points within 1.4 Å^-1


def test_fourier_term_by_hand_both_variants() -> None:
    feats = fake_features()
    c = cscl()
    hkl, g = F.reciprocal_points(c.lengths, c.angles)
    lay = F.FTCPLayout(2, 3)
    a = F.encode(c, 2, 3, element_features=feats).astype(np.float64)
    recip = a[:, 3:]
    np.testing.assert_allclose(recip[lay.row_lengths], g, rtol=1e-6)
    na, cl = np.array(feats[11]), np.array(feats[17])
    s = hkl.sum(axis=1)  # hkl . (0.5, 0.5, 0.5) = s / 2; Na at the origin adds nothing
    # released: sum over sites of f * pi * (hkl . r), linear in r (data.py:189-193)
    np.testing.assert_allclose(recip[lay.row_features : lay.row_features + 92], np.outer(cl, math.pi * s / 2), rtol=1e-5)
    assert recip[lay.row_features + 5, 0] == pytest.approx(cl[5] * math.pi * 0.5, rel=1e-6)  # (100): pi / 2
    # structure factors: F = f_Na + f_Cl exp(i pi (h + k + l)) = f_Na +- f_Cl, imaginary part 0
    sf_lay = F.FTCPLayout(2, 3, "ftcp_sf")
    b = F.encode(c, 2, 3, "ftcp_sf", element_features=feats).astype(np.float64)
    assert b.shape == sf_lay.shape
    np.testing.assert_array_equal(b[: lay.row_features + 92, :3], a[: lay.row_features + 92, :3])  # real space unchanged
    re = b[sf_lay.row_features : sf_lay.row_features + 92, 3:]
    im = b[sf_lay.row_features_imag : sf_lay.row_features_imag + 92, 3:]
    np.testing.assert_allclose(re, na[:, None] + cl[:, None] * np.where(s % 2 == 0, 1.0, -1.0), rtol=1e-5)
    np.testing.assert_allclose(im, 0, atol=1e-4)
    assert not b[sf_lay.row_features_imag :, :3].any()
    # a general position gives a non-zero sine part: Cl at (0.25, 0, 0), point (100): sin(pi / 2) = 1
    shifted = Crystal([11, 17], [[0, 0, 0], [0.25, 0, 0]], [4, 4, 4], [90, 90, 90])
    im = F.encode(shifted, 2, 3, "ftcp_sf", element_features=feats)[sf_lay.row_features_imag :, 3:]
    np.testing.assert_allclose(im[:92, 0], cl, rtol=1e-5)


def test_coordinates_are_wrapped_before_the_linear_term() -> None:
    feats = fake_features()
    c = cscl()
    moved = Crystal([11, 17], [[1, 0, -1], [-0.5, 1.5, 0.5]], [4, 4, 4], [90, 90, 90])
    np.testing.assert_allclose(F.encode(moved, 2, 3, element_features=feats), F.encode(c, 2, 3, element_features=feats), atol=1e-6)


def test_encode_many_skips_what_does_not_fit_with_reasons() -> None:
    feats = fake_features()
    lay = F.FTCPLayout(2, 5)
    crystals = [
        cscl(),
        nacl(),  # 8 sites
        srtio3(),  # 3 elements
        Crystal([101, 8], [[0, 0, 0], [0.5, 0.5, 0.5]], [4, 4, 4], [90, 90, 90], label="Md"),  # no CGCNN features
        Crystal([11], [[0, 0, 0]], [1.5, 1.5, 1.5], [90, 90, 90], label="tiny"),
        Crystal([11], [[0, 0, 0]], [4, -4, 4], [90, 90, 90], label="negative"),
        Crystal([11], [[np.nan, 0, 0]], [4, 4, 4], [90, 90, 90], label="nan"),
        Crystal(np.zeros(0, dtype=int), np.zeros((0, 3)), [4, 4, 4], [90, 90, 90], label="empty"),
        Crystal([120], [[0, 0, 0]], [4, 4, 4], [90, 90, 90], label="Z120"),
    ]
    arr, skipped = F.encode_many(crystals, lay, progress=False, element_features=feats)
    assert arr.shape == (1, *lay.shape) and arr.dtype == np.float32
    reasons = dict(skipped)
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert "8 sites, more than max_sites=5" in reasons[1]
    assert "3 elements, more than max_elms=2" in reasons[2]
    assert "Md: no CGCNN element features for Z = [101]" == reasons[3]
    assert "FTCP needs 59" in reasons[4] and "not all positive" in reasons[5] and "not finite" in reasons[6]
    assert "no atoms" in reasons[7] and "outside H..Lr" in reasons[8]
    empty, none = F.encode_many([], lay, progress=False, element_features=feats)
    assert empty.shape == (0, *lay.shape) and none == []


def test_cgcnn_file_is_required_and_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCHMARK_ORACLE_DIR", str(tmp_path / "nothing"))
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="atom_init.json.*oracle fetch con-cdvae"):
        F.encode(cscl(), 2, 3)
    with pytest.raises(FileNotFoundError, match="atom_init.json"):
        F.encode_many([], F.FTCPLayout(2, 3), progress=False)
    fake = tmp_path / "oracles" / "con_cdvae_cgcnn" / "atom_init.json"
    fake.parent.mkdir(parents=True)
    fake.write_text(json.dumps(fake_features()))
    monkeypatch.setenv("BENCHMARK_ORACLE_DIR", str(tmp_path / "oracles"))
    with pytest.raises(ValueError, match="sha256"):
        F.encode(cscl(), 2, 3)


def test_cgcnn_features_are_the_pinned_file(oracle_dir: Path) -> None:
    raw = json.loads(ATOM_INIT_FILE.read_text())
    a = F.encode(cscl(), 2, 3)
    lay = F.FTCPLayout(2, 3)
    np.testing.assert_allclose(a[lay.row_features : lay.row_features + 92, 0], raw["11"], rtol=1e-6)
    np.testing.assert_allclose(a[lay.row_features : lay.row_features + 92, 1], raw["17"], rtol=1e-6)
    assert F.cgcnn_table().shape == (104, 92) and np.isnan(F.cgcnn_table()[101:]).all()


# ------------------------------------------------------------------------------------------ scaling
def _released_minmax(ftcp: np.ndarray):
    """utils.py:27-54 restated with scikit-learn, for comparison."""
    from sklearn.preprocessing import MinMaxScaler

    n, rows, cols = ftcp.shape
    flat = np.transpose(ftcp, (1, 0, 2)).reshape(rows, n * cols).T
    scaler = MinMaxScaler()
    scaled = scaler.fit_transform(flat).T.reshape(rows, n, cols)
    return np.transpose(scaled, (1, 0, 2)), scaler


def test_scaler_is_the_released_minmax_and_round_trips() -> None:
    feats = fake_features()
    lay = F.FTCPLayout(3, 8)
    arr, _ = F.encode_many([nacl(), srtio3(), cscl(), nacl(5.0)], lay, progress=False, element_features=feats)
    arr64 = arr.astype(np.float64)
    scaler = F.FTCPScaler.fit(arr64)
    expected, sk = _released_minmax(arr64)
    np.testing.assert_allclose(scaler.transform(arr64), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(scaler.data_min, sk.data_min_)
    np.testing.assert_allclose(scaler.scale, sk.scale_)
    np.testing.assert_allclose(scaler.offset, sk.min_)
    scaled = scaler.transform(arr)
    assert scaled.dtype == np.float32 and scaled.min() >= -1e-6 and scaled.max() <= 1 + 1e-6
    assert scaled.shape == arr.shape and scaler.transform(arr[0]).shape == arr[0].shape
    np.testing.assert_allclose(scaler.inverse_transform(scaled), arr, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(arr64)), arr64, atol=1e-10)
    # one scale per row over all matrices and columns: the zero columns set the a, b, c row's
    # minimum, so a = 3.905 (SrTiO3) maps to 3.905 / 5.64, not to 0
    row = lay.row_abc
    assert scaled[:, row].min() == 0 and scaled[:, row].max() == pytest.approx(1)
    assert scaled[1, row, 0] == pytest.approx(3.905 / 5.64, rel=1e-6)
    assert not scaled[:, -1].any()  # zero padding row: range 0 treated as 1, stays 0
    again = F.FTCPScaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    np.testing.assert_array_equal(again.transform(arr64), scaler.transform(arr64))
    with pytest.raises(ValueError):
        scaler.transform(np.zeros((2, 7, 62)))
    with pytest.raises(ValueError):
        F.FTCPScaler.fit(np.zeros((0, lay.n_rows, lay.n_cols)))


# ------------------------------------------------------------------------------------------ decode
@pytest.mark.parametrize("maker", [cscl, nacl, srtio3])
def test_decode_of_an_encoded_crystal_gives_it_back(maker) -> None:
    c = maker()
    for variant in F.VARIANTS:
        lay = F.FTCPLayout(3, 10, variant)
        d = F.decode(F.encode(c, 3, 10, variant, element_features=fake_features()), lay)
        assert d.reason is None and d.crystal is not None
        assert d.crystal.atomic_numbers.tolist() == c.atomic_numbers.tolist()
        np.testing.assert_allclose(d.crystal.frac_coords, c.frac_coords, atol=1e-6)
        np.testing.assert_allclose(d.crystal.lengths, c.lengths, rtol=1e-6)
        np.testing.assert_allclose(d.crystal.angles, c.angles, rtol=1e-6)


@pytest.mark.parametrize(
    "garbage, reason",
    [
        (np.full((208, 62), np.nan), "non-finite"),
        (np.full((208, 62), np.inf), "non-finite"),
        (np.zeros((208, 62)), "all zeros"),
        (np.zeros((0, 62)), "shape"),
        (np.zeros((206, 62)), "shape"),
        ("not an array", "numeric"),
    ],
)
def test_decode_gives_reasons_for_garbage(garbage, reason) -> None:
    d = F.decode(garbage, F.FTCPLayout(2, 4))
    assert d.crystal is None and reason in d.reason


def test_decode_reasons_for_lattice_and_empty_sites() -> None:
    lay = F.FTCPLayout(2, 3)
    base = F.encode(cscl(), 2, 3, element_features=fake_features()).astype(np.float64)
    cases = {
        "not all positive": (lay.row_abc, [4, 0, 4]),
        "describe no cell": (lay.row_angles, [170, 170, 170]),
        "not all in (0, 180)": (lay.row_angles, [90, 190, 90]),
    }
    for reason, (row, values) in cases.items():
        bad = base.copy()
        bad[row, :3] = values
        assert reason in F.decode(bad, lay).reason
    empty = base.copy()
    empty[lay.row_occupancy : lay.row_occupancy + 3] = 0.04  # all below the 0.05 threshold
    assert "no occupied site" in F.decode(empty, lay).reason
    # the released arithmetic decodes the same matrix to one hydrogen atom (sampling.py:88-89)
    quirk = F.decode(empty, lay, released_formula=True).crystal
    assert quirk.atomic_numbers.tolist() == [1] and quirk.num_atoms == 1
    nan_recip = base.copy()
    nan_recip[lay.row_features:, 3:] = np.nan  # the reciprocal part is not read
    assert F.decode(nan_recip, lay).crystal is not None


def test_decode_occupancy_rules_and_the_released_hydrogen_quirk() -> None:
    lay = F.FTCPLayout(2, 4)
    c = Crystal([8, 1, 8, 1], [[0, 0, 0], [0.1, 0.1, 0.1], [0.5, 0.5, 0.5], [0.6, 0.6, 0.6]], [5, 5, 5], [90, 90, 90])
    a = F.encode(c, 2, 4, element_features=fake_features()).astype(np.float64)
    occ = slice(lay.row_occupancy, lay.row_occupancy + 4)
    a[occ, :2] = [[0.9, 0.2], [0.3, 0.6], [0.1, 0.0], [0.2, 0.7]]  # each row's maximum, 0.1 is still a site
    d = F.decode(a, lay)
    assert d.crystal.atomic_numbers.tolist() == [8, 1, 8, 1]
    a[lay.row_occupancy + 1, :2] = [0.04, 0.01]  # now empty: left out by default
    d = F.decode(a, lay)
    assert d.crystal.atomic_numbers.tolist() == [8, 8, 1]
    np.testing.assert_allclose(d.crystal.frac_coords[1:], [[0.5, 0.5, 0.5], [0.6, 0.6, 0.6]])
    # released: H is element index 0 like an empty row, so the empty row 1 becomes H (at its
    # coordinates) and the trailing H site vanishes (sampling.py:86-94)
    released = F.decode(a, lay, released_formula=True).crystal
    assert released.atomic_numbers.tolist() == [8, 1, 8]
    np.testing.assert_allclose(released.frac_coords, [[0, 0, 0], [0.1, 0.1, 0.1], [0.5, 0.5, 0.5]], atol=1e-7)


def test_decode_wraps_and_drops_repeated_sites() -> None:
    lay = F.FTCPLayout(2, 3)
    a = F.encode(cscl(), 2, 3, element_features=fake_features()).astype(np.float64)
    a[lay.row_coords + 1, :3] = [1.5, -0.25, 2.0]
    assert F.decode(a, lay).crystal.frac_coords[1].tolist() == pytest.approx([0.5, 0.75, 0.0])
    a[lay.row_coords + 1, :3] = [0.9995, 0.0004, 0.0]  # within 1e-3 of Na at the origin (periodically)
    d = F.decode(a, lay)
    assert d.crystal.atomic_numbers.tolist() == [11]


def test_decode_never_raises_on_noise() -> None:
    lay = F.FTCPLayout(3, 6)
    rng = np.random.default_rng(1)
    outcomes = []
    for scale in (1.0, 100.0, -1.0):
        arrays = rng.random((8, *lay.shape)) * scale
        for released in (False, True):
            for d in F.decode_many(arrays, lay, released_formula=released):
                assert (d.crystal is None) != (d.reason is None)
                if d.crystal is not None:
                    assert np.all((d.crystal.frac_coords >= 0) & (d.crystal.frac_coords < 1))
                outcomes.append(d.reason)
    assert any(r is None for r in outcomes) and any(r is not None for r in outcomes)


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
SAMPLE_FILES = ["perov_5/test.csv", "carbon_24/test.csv", "supercon/train.csv", "mp_20_sample/train.csv"]
SAMPLE = 200


def _crystals(path: Path, sample: int | None) -> list[Crystal]:
    """The file's crystals as the datasets read them (CDVAE's Niggli-reduced parse); with ``sample``,
    that many rows drawn without replacement (seed 0), parsed alone to keep the default run short."""
    import warnings

    import pandas as pd

    from benchmark.datasets.base import load_csv, parse_cif_published

    if sample is None:
        return load_csv(path, progress=False)
    df = pd.read_csv(path)
    rows = np.sort(np.random.default_rng(0).choice(len(df), size=min(sample, len(df)), replace=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [Crystal.from_structure(parse_cif_published(df["cif"].iloc[i]), label=str(i)) for i in rows.tolist()]


def _round_trip(crystals: list[Crystal], variant: str = "ftcp") -> tuple[int, int, list[str]]:
    """(crystals encoded, matched after decoding, failures) with (max_elms, max_sites) of the crystals themselves."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher(ltol=0.5, stol=0.3, angle_tol=10)
    layout = F.FTCPLayout(*F.dataset_limits(crystals), variant)  # type: ignore[arg-type]
    arrays, skipped = F.encode_many(crystals, layout, progress=False)
    failures = [f"{crystals[i].label}: not encoded: {r}" for i, r in skipped]
    gone = {i for i, _ in skipped}
    kept = [c for i, c in enumerate(crystals) if i not in gone]
    ok = 0
    for c, d in zip(kept, F.decode_many(arrays, layout)):
        good = d.crystal is not None and matcher.fit(d.crystal.to_structure(), c.to_structure())
        ok += good
        if not good:
            failures.append(f"{c.label}: {d.reason or 'no match'}")
    return len(kept), ok, failures


def _data_root() -> Path:
    d = data_dir()
    if d is None:
        pytest.skip("no data directory: set BENCHMARK_DATA_DIR to the published CSVs")
    return d


@pytest.mark.data
def test_round_trip_sample(oracle_dir: Path) -> None:
    """200 crystals each of Perov-5 test, Carbon-24 test, SuperCon train and the MP-20 sample
    (all of a smaller file); the full files are the slow test below."""
    root = _data_root()
    files = [root / f for f in SAMPLE_FILES if (root / f).is_file()]
    if not files:
        pytest.skip(f"none of {SAMPLE_FILES} in {root}")
    for f in files:
        crystals = _crystals(f, SAMPLE)
        n, ok, failures = _round_trip(crystals)
        assert n == len(crystals) and ok == n, f"{f}: {n - ok} of {n} did not round-trip: {failures[:5]}"
    n, ok, failures = _round_trip(_crystals(files[0], 50), "ftcp_sf")  # the variant decodes the same real space
    assert ok == n, failures[:5]


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("name", ROUND_TRIP_FILES)
def test_round_trip_every_crystal(name: str, oracle_dir: Path) -> None:
    path = _data_root() / name
    if not path.is_file():
        pytest.skip(f"{name} not in the data directory")
    crystals = _crystals(path, None)
    n, ok, failures = _round_trip(crystals)
    print(f"{name}: {len(crystals)} crystals, limits {F.dataset_limits(crystals)}, {n} encoded, {ok} matched")
    assert n == len(crystals) and ok == n, f"{name}: {len(crystals) - ok} of {len(crystals)} did not round-trip: {failures[:5]}"
