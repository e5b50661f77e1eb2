"""Bad input never crashes a run: each bad crystal gets a reason, a bad file one clear error line.

The project's promise (metrics/crystal_eval.py, tasks/evaluation.py, benchmark/samples.py):

* ``evaluate_crystal`` never raises, whatever numbers a ``Crystal`` holds; an invalid crystal
  always says why (``reason``), a valid one never carries a reason;
* ``evaluate_entries`` returns one result per entry, in input order, serially and with loky
  workers, and scores unreadable entries as invalid instead of dropping them;
* ``evaluate`` scores a sample file with bad crystals among good ones to the end, with one row per
  input in the per-structure table and a stored run record;
* a whole sample file (or a name) that cannot be used ends ``python -m benchmark evaluate`` with
  exit code 2 and exactly one ``error:`` line on stderr, never a traceback.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from benchmark.crystal import Crystal
from benchmark.metrics.crystal_eval import CrystalResult, evaluate_crystal
from benchmark.metrics.featurize import evaluate_entries
from benchmark.metrics.profiles import get_profile
from benchmark.samples import Unreadable, write_cifs, write_extxyz
from tests.conftest import srtio3

CDVAE = get_profile("cdvae")
NAN, INF = float("nan"), float("inf")
BAD_Z = (0, 119, 200, -1, -38)

# ============================================================================ strategies
_bad_lengths = st.sampled_from([NAN, INF, -INF, -3.9, -1e-6, 0.0, 1e-6, 1e4])
_bad_angles = st.sampled_from([0.0, 180.0, NAN, INF, -90.0, 360.0, 1e-6, 179.9999])
# (alpha, beta, gamma) with no volume: three cell vectors in one plane
_degenerate_angles = st.sampled_from([(120.0, 120.0, 120.0), (90.0, 90.0, 180.0), (10.0, 10.0, 20.0), (60.0, 60.0, 120.0), (0.0, 0.0, 0.0)])
_bad_coords = st.sampled_from([NAN, INF, -INF, 1e10, -1e10, 1e300, 1.0, -0.5])
_known_z = st.sampled_from([1, 6, 8, 11, 17, 22, 26, 38, 61, 92, 118])


PARTS = ("length", "angle", "coord", "element", "overlap")


@st.composite
def malformed_crystals(
    draw: Any,
    max_atoms: int = 6,
    lengths_ok: tuple[float, float] = (0.5, 20.0),
    bad_coords: Any = _bad_coords,
) -> Crystal:
    """Crystals broken in a few chosen places (maybe none): lattice lengths, angles, coordinates,
    elements, overlapping sites, and 0 to ``max_atoms`` atoms."""
    broken = draw(st.sets(st.sampled_from(PARTS), max_size=3))
    n = draw(st.integers(0, max_atoms))

    def some(good: Any, bad: Any, part: str, size: int) -> list[Any]:
        values = [draw(good) for _ in range(size)]
        if part in broken and size:
            for k in draw(st.sets(st.integers(0, size - 1), min_size=1)):
                values[k] = draw(bad)
        return values

    lengths = some(st.floats(*lengths_ok), _bad_lengths, "length", 3)
    if "angle" in broken and draw(st.booleans()):
        angles = list(draw(_degenerate_angles))
    else:
        angles = some(st.floats(60.0, 120.0), _bad_angles, "angle", 3)
    flat = some(st.floats(0.0, 1.0), bad_coords, "coord", 3 * n)
    frac = np.array(flat, dtype=np.float64).reshape(n, 3)
    if "overlap" in broken and n >= 2:  # a duplicate site
        i, j = draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
        frac[j] = frac[i]
    zs = some(_known_z, st.sampled_from(BAD_Z), "element", n)
    return Crystal(np.array(zs, dtype=np.int64), frac, lengths, angles, label="hyp")


def check_invariants(crystal: Crystal, r: CrystalResult, fingerprints: bool) -> None:
    assert isinstance(r, CrystalResult)
    event("valid" if r.valid else "constructed, invalid" if r.constructed else "not constructed")
    for reason in r.reasons:
        event(f"reason {reason.split(':')[0]}")
    assert r.n_atoms == crystal.num_atoms
    if r.valid:
        assert r.constructed and r.comp_valid and r.struct_valid
        assert r.reason == "" and r.reasons == []
        if fingerprints:
            assert r.struct_fp is not None and r.comp_fp is not None
    else:
        assert r.reason.strip(), f"invalid crystal without a reason: {crystal!r} -> {r}"
    if r.struct_valid:
        assert r.constructed
    if not r.constructed:
        assert not r.valid and not r.struct_valid
        assert r.struct_fp is None and r.comp_fp is None
    # the reason names the problem the input certainly has
    if crystal.num_atoms == 0:
        assert "no_atoms" in r.reason
    elif not (np.isfinite(crystal.lengths).all() and np.isfinite(crystal.angles).all() and np.isfinite(crystal.frac_coords).all()):
        assert not r.constructed and "non_finite" in r.reason
    elif float(np.min(crystal.lengths)) <= 0:
        assert not r.constructed and "non_positive_lattice" in r.reason
    if any(z < 1 or z > 118 for z in crystal.atomic_numbers.tolist()):
        assert not r.comp_valid and not r.valid and "unknown_element" in r.reason
    assert "evaluation_failed" not in r.reason, f"evaluate_crystal fell back to its last line of defence: {r.reason}"


# ============================================================================ 1. evaluate_crystal, property-based
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(malformed_crystals())
def test_evaluate_crystal_never_raises_and_always_says_why(crystal: Crystal) -> None:
    r = evaluate_crystal(crystal, CDVAE, index=7, fingerprints=False)
    assert r.index == 7 and r.label == "hyp"
    check_invariants(crystal, r, fingerprints=False)


@st.composite
def cells(draw: Any) -> tuple[list[float], list[float]]:
    """(lengths, angles): sound, or with some lengths and/or angles replaced by bad values."""
    lengths = [draw(st.floats(2.0, 10.0)) for _ in range(3)]
    angles = [draw(st.floats(60.0, 120.0)) for _ in range(3)]
    if draw(st.booleans()):
        for k in draw(st.sets(st.integers(0, 2), min_size=1)):
            lengths[k] = draw(_bad_lengths)
    how = draw(st.sampled_from(["sound", "values", "degenerate"]))
    if how == "values":
        for k in draw(st.sets(st.integers(0, 2), min_size=1)):
            angles[k] = draw(_bad_angles)
    elif how == "degenerate":
        angles = list(draw(_degenerate_angles))
    return lengths, angles


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 6), cell=cells())
def test_lattice_problems_alone_are_reported(n: int, cell: tuple[list[float], list[float]]) -> None:
    """Good elements and coordinates, only the cell is (maybe) bad: construction decides."""
    lengths, angles = cell
    zs = ([38, 22, 8, 8, 8] * 2)[:n]
    frac = np.random.default_rng(n).random((n, 3))
    crystal = Crystal(zs, frac, lengths, angles)
    r = evaluate_crystal(crystal, CDVAE, fingerprints=False)
    check_invariants(crystal, r, fingerprints=False)
    finite = np.isfinite(lengths).all() and np.isfinite(angles).all()
    if finite and min(lengths) > 0:
        # constructed exactly when pymatgen's volume reaches the profile's minimum
        if r.constructed:
            assert r.volume is not None and r.volume >= CDVAE.min_volume
        else:
            assert "unrealistically_small_lattice" in r.reason or "construction_raises_exception" in r.reason


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    zs=st.lists(st.one_of(st.sampled_from(BAD_Z), _known_z), min_size=1, max_size=6),
    dup=st.booleans(),
)
def test_element_and_overlap_problems_alone_are_reported(zs: list[int], dup: bool) -> None:
    """A sound cubic cell; only the elements and (maybe) a duplicated site are bad."""
    n = len(zs)
    frac = (np.arange(n * 3, dtype=np.float64).reshape(n, 3) * 0.137) % 1.0
    if dup and n >= 2:
        frac[-1] = frac[0]
    crystal = Crystal(zs, frac, [6.0, 6.0, 6.0], [90.0, 90.0, 90.0])
    r = evaluate_crystal(crystal, CDVAE, fingerprints=False)
    check_invariants(crystal, r, fingerprints=False)
    if dup and n >= 2:
        assert not r.struct_valid and not r.valid
        if r.constructed:
            assert "atoms_too_close" in r.reason


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(malformed_crystals(max_atoms=4, lengths_ok=(3.0, 8.0), bad_coords=st.sampled_from([NAN, INF, -INF, -0.5, 1.0, 2.25])))
def test_evaluate_crystal_with_fingerprints_never_raises(crystal: Crystal) -> None:
    # Finite cells here are >= 3 Å and coordinates small: CrystalNN on sub-Å cells or on
    # coordinates ~1e10 takes minutes (see test_huge_fractional_coordinate_does_not_hang).
    r = evaluate_crystal(crystal, CDVAE, fingerprints=True)
    check_invariants(crystal, r, fingerprints=True)
    if r.constructed and "fingerprint_failed" not in r.reason:
        assert r.struct_fp is not None and r.struct_fp.shape == (61,)
        assert r.comp_fp is not None and r.comp_fp.shape == (132,)


_HANG_SCRIPT = textwrap.dedent(
    """
    from benchmark.crystal import Crystal
    from benchmark.metrics.crystal_eval import evaluate_crystal
    from benchmark.metrics.profiles import get_profile
    c = Crystal([11, 17], [[0.0, 0.0, 0.0], [1e10, 0.5, 0.5]], [5.0, 5.0, 5.0], [90.0, 90.0, 90.0])
    r = evaluate_crystal(c, get_profile("cdvae"), fingerprints=True)
    print("done", r.valid, r.reason)
    """
)


def test_huge_fractional_coordinate_does_not_hang(tmp_path: Path) -> None:
    """A fractional coordinate of 1e10 (a model that diverged) must give a result in seconds, not
    hang the run: pymatgen's neighbour search behind CrystalNN loops over every periodic image
    between the sites. 1e7..1e9 and 1e20 give 'fingerprint_failed' within ~3 s; 1e10..1e15 hang."""
    env = dict(os.environ, BENCHMARK_OFFLINE="1")
    try:
        proc = subprocess.run([sys.executable, "-c", _HANG_SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("evaluate_crystal(fingerprints=True) on a crystal with a fractional coordinate of 1e10 did not finish within 15 s")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("done"), proc.stdout


# ============================================================================ 2. evaluate_entries on a mixed list
def _mixed_entries() -> list[object]:
    good = srtio3(label="good")
    nan_lattice = Crystal([11, 17], [[0, 0, 0], [0.5, 0.5, 0.5]], [NAN, 5.64, 5.64], [90, 90, 90], label="nan")
    overlap = Crystal([11, 17, 11, 17], [[0, 0, 0], [0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0]], [5.64] * 3, [90] * 3, label="overlap")
    unknown = Crystal([0, 17], [[0, 0, 0], [0.5, 0.5, 0.5]], [5.64] * 3, [90] * 3, label="z0")
    unreadable = Unreadable("x.cif", "malformed CIF: no _cell_length_a")
    return [good, nan_lattice, overlap, unknown, unreadable, srtio3(label="good2")]


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_evaluate_entries_mixed_list_keeps_order_and_reasons(n_jobs: int) -> None:
    entries = _mixed_entries()
    # chunk_size=1 so that n_jobs=2 really spreads the entries over loky workers
    results = evaluate_entries(entries, CDVAE, n_jobs=n_jobs, backend="loky", progress=False, chunk_size=1)
    assert len(results) == len(entries)
    assert [r.index for r in results] == list(range(len(entries)))
    assert [r.label for r in results] == ["good", "nan", "overlap", "z0", "x.cif", "good2"]

    for r in (results[0], results[5]):
        assert r.valid and r.reason == ""
        assert r.struct_fp is not None and r.struct_fp.shape == (61,) and np.isfinite(r.struct_fp).all()
        assert r.comp_fp is not None and r.comp_fp.shape == (132,)
    np.testing.assert_allclose(results[0].struct_fp, results[5].struct_fp)

    expected = {1: "non_finite", 2: "atoms_too_close", 3: "unknown_element", 4: "unreadable"}
    for k, word in expected.items():
        r = results[k]
        assert not r.valid, r
        assert word in r.reason, (k, r.reason)
    assert results[1].constructed is False and results[1].comp_valid is True
    assert results[2].constructed and results[2].comp_valid and not results[2].struct_valid
    assert results[2].min_dist == pytest.approx(0.0)
    assert not results[3].comp_valid
    assert results[4].reason.startswith("unreadable: malformed CIF")
    assert results[4].n_atoms == 0 and not results[4].constructed


def test_evaluate_entries_empty_and_all_unreadable() -> None:
    assert evaluate_entries([], CDVAE, n_jobs=2, progress=False) == []
    res = evaluate_entries([Unreadable("a", "r1"), Unreadable("b", "r2")], CDVAE, n_jobs=2, progress=False)
    assert [r.reason for r in res] == ["unreadable: r1", "unreadable: r2"]


# ============================================================================ 3. end to end
def _perov_val(n: int) -> list[Crystal]:
    from benchmark.registry import get_plugins

    return list(get_plugins()["datasets"].get("perov_5_dev").load("val", progress=False)[:n])


def _options(samples: Path, runs: Path) -> Any:
    from benchmark.tasks.evaluation import EvaluateOptions

    return EvaluateOptions(
        task="generation",
        dataset="perov_5_dev",
        samples=samples,
        store=True,
        runs_dir=str(runs),
        n_jobs=1,
        progress=False,
        task_options={"n_property_samples": 5},
        metrics=["validity", "coverage", "property_statistics"],
    )


def test_evaluate_sample_file_with_bad_crystals_finishes(shared_data: Path, tmp_path: Path) -> None:
    import json

    from benchmark.tasks.evaluation import evaluate

    good = _perov_val(6)
    assert len(good) == 6
    a = good[0]
    overlap = Crystal(a.atomic_numbers, np.vstack([a.frac_coords[:-1], a.frac_coords[:1]]), a.lengths, a.angles, label="overlap")
    nan_lattice = Crystal(a.atomic_numbers, a.frac_coords, [NAN, *a.lengths[1:].tolist()], a.angles, label="nan_lattice")
    crystals = good[:3] + [overlap] + good[3:] + [nan_lattice]
    samples = write_extxyz(crystals, tmp_path / "samples.xyz")
    runs = tmp_path / "runs"

    result = evaluate(_options(samples, runs))

    table = result.per_structure
    assert len(table) == len(crystals)
    assert table["index"].tolist() == list(range(len(crystals)))
    good_rows = [0, 1, 2, 4, 5, 6]
    assert table.loc[good_rows, "valid"].all(), table.loc[good_rows, ["label", "reason"]]
    assert (table.loc[good_rows, "reason"] == "").all()
    assert table.loc[3, "label"] == "overlap"
    assert not table.loc[3, "struct_valid"] and "atoms_too_close" in table.loc[3, "reason"]
    # the NaN lattice is either refused by the reader (no periodic cell) or by the evaluation
    assert not table.loc[7, "valid"] and not table.loc[7, "constructed"]
    assert table.loc[7, "reason"].startswith("unreadable") or "non_finite" in table.loc[7, "reason"], table.loc[7, "reason"]
    for k in (3, 7):
        assert table.loc[k, "reason"].strip()

    n = len(crystals)
    flat = result.flat()
    assert flat["comp_valid"] == pytest.approx(table["comp_valid"].sum() / n)
    assert flat["struct_valid"] == pytest.approx(table["struct_valid"].sum() / n)
    assert flat["valid"] == pytest.approx(table["valid"].sum() / n)
    assert flat["struct_valid"] == pytest.approx(6 / 8)
    assert flat["valid"] == pytest.approx(6 / 8)
    # the other metrics were computed too: no bad crystal lost them
    for key in ("cov_recall", "cov_precision", "wdist_density", "wdist_num_elems"):
        assert key in flat and flat[key] is not None and math.isfinite(flat[key]), (key, flat, result.notes)
    assert not any("failed" in note for note in result.notes), result.notes

    # a stored record with the per-structure table beside it
    assert result.run_dir is not None and result.run_dir.is_dir()
    assert str(result.run_dir).startswith(str(runs))
    assert (result.run_dir / "per_structure.csv").is_file()
    records = [p for p in runs.rglob("*.json")]
    assert records, list(runs.rglob("*"))
    stored = [json.loads(p.read_text()) for p in records]
    mine = [r for r in stored if isinstance(r, dict) and r.get("run_id") == result.record["run_id"]]
    assert mine and mine[0]["samples"]["n"] == n
    assert mine[0]["metrics"]["struct_valid"]["value"] == pytest.approx(6 / 8)


def test_evaluate_cif_zip_with_a_malformed_cif(shared_data: Path, tmp_path: Path) -> None:
    from benchmark.tasks.evaluation import evaluate

    good = _perov_val(4)
    cif_dir = write_cifs(good, tmp_path / "cifs")
    names = sorted(p.name for p in cif_dir.glob("*.cif"))
    assert len(names) == 4
    bad_text = "data_broken\n_cell_length_a 4.0\n_cell_length_b\nloop_\n_atom_site_label\n_atom_site_fract_x\nSr 0.0 0.5\n#garbage ][\n"
    zpath = tmp_path / "samples.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for name in names[:2]:
            zf.writestr(name, (cif_dir / name).read_text())
        zf.writestr("02_broken.cif", bad_text)
        for name in names[2:]:
            zf.writestr(name, (cif_dir / name).read_text())

    result = evaluate(_options(zpath, tmp_path / "runs"))
    table = result.per_structure
    assert len(table) == 5
    assert table["reason"][2].startswith("unreadable"), table.loc[2].to_dict()
    assert "02_broken.cif" in str(table["label"][2])
    assert not table["valid"][2] and not table["comp_valid"][2] and not table["struct_valid"][2]
    others = [0, 1, 3, 4]
    assert table.loc[others, "valid"].all(), table.loc[others, ["label", "reason"]]
    assert result.flat()["valid"] == pytest.approx(4 / 5)
    assert any("could not be read" in note for note in result.notes), result.notes
    assert result.run_dir is not None and (result.run_dir / "per_structure.csv").is_file()


# ============================================================================ whole-file errors through the CLI
def _cli_env(tmp_path: Path, data: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        BENCHMARK_DATA_DIR=str(data),
        BENCHMARK_OFFLINE="1",
        BENCHMARK_CACHE_DIR=str(tmp_path / "cache"),
        BENCHMARK_RUNS_DIR=str(tmp_path / "runs"),
    )
    return env


def _write_bad_file(tmp_path: Path, kind: str) -> str:
    if kind == "empty":
        (tmp_path / "empty.xyz").write_bytes(b"")
        return "empty.xyz"
    if kind == "png":
        png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00" + bytes(range(256)) * 4
        (tmp_path / "samples.xyz").write_bytes(png)
        return "samples.xyz"
    if kind == "missing":
        return "does_not_exist.xyz"
    if kind == "csv_no_cif":
        (tmp_path / "table.csv").write_text("material_id,formation_energy\nmp-1,0.5\nmp-2,-1.0\n")
        return "table.csv"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind, task, dataset, extra, must_name",
    [
        ("empty", "generation", "perov_5_dev", [], "empty.xyz"),
        ("png", "generation", "perov_5_dev", [], "samples.xyz"),
        ("missing", "generation", "perov_5_dev", [], "does_not_exist.xyz"),
        ("csv_no_cif", "generation", "perov_5_dev", [], "table.csv"),
        ("empty", "generation", "perov5_dev", [], "'perov5_dev'"),
        ("empty", "genration", "perov_5_dev", [], "'genration'"),
        ("csv_no_cif", "generation", "perov_5_dev", ["--metric", "validty"], "'validty'"),
        ("csv_no_cif", "generation", "perov_5_dev", ["--profile", "cdvea"], "'cdvea'"),
    ],
    ids=["empty", "png", "missing", "csv_no_cif", "unknown_dataset", "unknown_task", "unknown_metric", "unknown_profile"],
)
def test_cli_whole_file_errors_are_one_line(
    shared_data: Path, tmp_path: Path, kind: str, task: str, dataset: str, extra: list[str], must_name: str
) -> None:
    samples = _write_bad_file(tmp_path, kind)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmark", "evaluate", "--task", task, "--dataset", dataset, "--samples", samples, "--no-progress", "--jobs", "1", *extra],
        cwd=tmp_path,
        env=_cli_env(tmp_path, shared_data),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:"), lines
    assert must_name in lines[0], lines
    if dataset == "perov5_dev":
        assert "Did you mean 'perov_5_dev'" in lines[0]
    if task == "genration":
        assert "Did you mean 'generation'" in lines[0]
    if "validty" in extra:
        assert "Did you mean 'validity'" in lines[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.json")), "a failed evaluation stored a run"
