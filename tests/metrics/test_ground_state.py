"""Ground-state metrics (DP-CDVAE Table III) and the CHGNet relaxer."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest

from benchmark.crystal import Crystal
from benchmark.metrics.base import EvalContext
from benchmark.metrics.crystal_eval import evaluate_crystal
from benchmark.metrics.ground_state import ground_state, histogram_png, summarise
from benchmark.metrics.oracles.base import RELAX, Oracle, RelaxSettings, input_problem
from benchmark.metrics.profiles import get_profile


def diamond(a: float = 3.567, shift: float = 0.0) -> Crystal:
    """Conventional-primitive diamond as an fcc cell with two atoms (a: cubic lattice constant)."""
    lp = a / math.sqrt(2)
    return Crystal(np.array([6, 6]), np.array([[0.0, 0.0, 0.0], [0.25 + shift, 0.25, 0.25]]), np.array([lp] * 3), np.array([60.0] * 3))


@dataclass
class FakeRelaxation:
    relaxed: Crystal | None
    converged: bool
    reason: str = ""
    steps: int = 3
    seconds: float = 0.0
    energy_initial: float | None = None
    energy_final: float | None = None
    volume_initial: float | None = None
    volume_final: float | None = None


def test_summarise_by_hand():
    c = diamond()
    rel = [
        FakeRelaxation(c, True, energy_initial=-9.0, energy_final=-9.3, volume_initial=6.0, volume_final=5.5),
        FakeRelaxation(c, True, energy_initial=-8.0, energy_final=-8.4, volume_initial=5.0, volume_final=5.5),
        FakeRelaxation(None, False, "time limit"),
        FakeRelaxation(c, False, "not converged", energy_initial=-7.0, energy_final=-8.0, volume_initial=7.0, volume_final=5.0),
    ]
    rms = [0.02, None, None, 0.5]
    s = summarise([c] * 4, rel, rms)
    assert s["n_relaxed"] == 2 and s["n_matched"] == 1
    assert s["match_rate"] == pytest.approx(0.25)  # failed and unconverged count as not matched
    assert s["rms_dist"] == pytest.approx(0.02)
    assert s["dv_rms"] == pytest.approx(0.5)  # sqrt((0.5^2 + 0.5^2) / 2)
    assert s["de_rms"] == pytest.approx(math.sqrt((300.0 ** 2 + 400.0 ** 2) / 2))  # meV/atom
    np.testing.assert_allclose(s["delta_e_mev"], [300.0, 400.0])
    s2 = summarise([c] * 4, rel, rms, count_unconverged=True)
    assert s2["n_relaxed"] == 3 and s2["match_rate"] == pytest.approx(0.5)


def test_input_problems_are_reasons_not_crashes():
    assert input_problem(diamond()) is None
    squeezed = Crystal(np.array([6, 6]), np.array([[0.0, 0.0, 0.0], [0.01, 0.0, 0.0]]), np.array([3.0] * 3), np.array([90.0] * 3))
    assert "overlapping" in input_problem(squeezed)
    nan = Crystal(np.array([6]), np.array([[np.nan, 0.0, 0.0]]), np.array([3.0] * 3), np.array([90.0] * 3))
    assert "non-finite" in input_problem(nan)
    assert "unreadable" in input_problem(object())


class FakeRelaxer(Oracle):
    """Relaxes a crystal to diamond at a = 3.567 and reports energies from a made-up curve."""

    name = "fake"
    capabilities = frozenset({RELAX})

    def describe(self) -> str:
        return "FakePotential 1.0"

    def relax(self, crystals, settings=None, *, progress=False, n_jobs=1):
        out = []
        for c in crystals:
            if input_problem(c):
                out.append(FakeRelaxation(None, False, input_problem(c)))
                continue
            relaxed = diamond()
            e = lambda x: -9.0 + 0.1 * (x.lengths[0] - relaxed.lengths[0]) ** 2  # noqa: E731
            vol = lambda x: abs(np.linalg.det(x.lattice_matrix)) / x.num_atoms  # noqa: E731
            out.append(FakeRelaxation(relaxed, True, energy_initial=e(c), energy_final=e(relaxed), volume_initial=vol(c), volume_final=vol(relaxed)))
        return out


def test_ground_state_metric_with_a_fake_relaxer(tmp_path):
    samples = [diamond(), diamond(3.7), diamond(shift=0.02), Crystal(np.array([6]), np.array([[np.nan, 0, 0]]), np.array([3.0] * 3), np.array([90.0] * 3))]
    profile = get_profile("cdvae")
    ctx = EvalContext(task="ground_state", dataset="carbon_24", family="carbon_24", profile=profile, seed=0,
                      samples=[evaluate_crystal(c, profile) for c in samples], sample_crystals=samples,
                      options={"relaxer_object": FakeRelaxer(), "relax_settings": RelaxSettings(pressure_gpa=10.0), "progress": False})
    values = ground_state(ctx)
    assert values["gs_match_rate"].value == pytest.approx(0.75)  # the NaN crystal is not relaxed
    assert values["gs_match_rate"].oracle == "FakePotential 1.0"
    assert values["gs_mean_rms"].value < 0.05
    # ΔV per atom of diamond(3.7) vs diamond(3.567), the others zero
    dv = (3.7 ** 3 - 3.567 ** 3) / 8
    assert values["gs_rms_dvolume_per_atom"].value == pytest.approx(math.sqrt(dv ** 2 / 3))
    assert ctx.per_structure["relax_status"] == ["converged", "converged", "converged", "failed"]
    assert "non-finite" in ctx.per_structure["relax_reason"][3]
    png = histogram_png(ctx.cache["ground_state_delta_e_mev"], tmp_path / "h.png", "test")
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


chgnet = pytest.importorskip("chgnet")


@pytest.fixture(scope="module")
def oracle():
    from benchmark.registry import get_plugins

    return get_plugins()["oracles"].get("chgnet")


def test_chgnet_energy_and_relaxation_of_strained_diamond(oracle):
    strained, ideal = diamond(3.75), diamond()
    e = oracle.predict([ideal, strained, object()], progress=False)
    assert e[2] is None and e[0] < e[1] < e[0] + 1.0  # compressed or stretched costs energy
    assert -9.5 < e[0] < -8.5  # diamond: about -9.1 eV/atom in MP (PBE)
    (r,) = oracle.relax([strained], RelaxSettings(fmax=0.05, steps=200), progress=False)
    assert r.converged and r.relaxed is not None, r.reason
    a_relaxed = r.relaxed.lengths[0] * math.sqrt(2)
    assert 3.50 < a_relaxed < 3.65  # back near the diamond lattice constant
    assert r.energy_final < r.energy_initial and r.volume_final < r.volume_initial
    # a step cap that cannot be met is recorded, not raised
    (capped,) = oracle.relax([diamond(4.2)], RelaxSettings(fmax=1e-6, steps=2), progress=False)
    assert not capped.converged and "not converged in 2 steps" in capped.reason and capped.relaxed is not None


def test_pressure_shrinks_the_relaxed_cell(oracle):
    (r0,) = oracle.relax([diamond()], RelaxSettings(fmax=0.02, steps=200), progress=False)
    (r1,) = oracle.relax([diamond()], RelaxSettings(fmax=0.02, steps=200, pressure_gpa=50.0), progress=False)
    assert r0.converged and r1.converged
    # diamond's bulk modulus is ~440 GPa: 50 GPa compresses the volume by roughly 10 %
    ratio = r1.volume_final / r0.volume_final
    assert 0.85 < ratio < 0.97


def test_evaluate_ground_state_on_a_sample_file(tmp_path, oracle):
    from benchmark.cli import main
    from benchmark.samples import write_extxyz

    samples = tmp_path / "gen.extxyz"
    write_extxyz([diamond(3.65), diamond(shift=0.015), Crystal(np.array([6, 6]), np.array([[0, 0, 0], [0.001, 0, 0]]), np.array([3.0] * 3), np.array([90.0] * 3))], samples)
    out = tmp_path / "m.json"
    code = main(["evaluate", "--task", "ground_state", "--dataset", "carbon_24", "--samples", str(samples), "--relax-steps", "150",
                 "--runs-dir", str(tmp_path / "runs"), "--json", str(out), "--no-progress", "--jobs", "1"])
    assert code == 0
    m = json.loads(out.read_text())
    assert m["gs_match_rate"] == pytest.approx(2 / 3)
    assert m["gs_rms_denergy_per_atom"] > 0
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if (p / "record.json").is_file()]
    record = json.loads((run_dir / "record.json").read_text())
    assert record["metrics"]["gs_match_rate"]["oracle"].startswith("CHGNet")
    assert any("10 GPa" in n for n in record["notes"])  # carbon_24's pressure by default
    assert (run_dir / "ground_state_delta_e.png").read_bytes()[:4] == b"\x89PNG"
    assert (run_dir / "relaxed.extxyz").is_file()
    import pandas as pd

    table = pd.read_csv(run_dir / "per_structure.csv")
    assert list(table["relax_status"]) == ["converged", "converged", "failed"]
    assert "overlapping" in table["relax_reason"][2]


def test_parallel_relaxation_gives_the_serial_results_in_input_order(oracle):
    crystals = [diamond(3.7), object(), diamond(shift=0.02)]
    settings = RelaxSettings(fmax=0.05, steps=60)
    serial = oracle.relax(crystals, settings, progress=False, n_jobs=1)
    parallel = oracle.relax(crystals, settings, progress=False, n_jobs=2)
    assert [r.reason for r in parallel] == [r.reason for r in serial]
    assert parallel[1].relaxed is None and "unreadable" in parallel[1].reason
    for a, b in zip(serial, parallel):
        if a.relaxed is not None:
            assert a.steps == b.steps
            assert b.energy_final == pytest.approx(a.energy_final, abs=1e-4)


def test_histogram_bins_are_fig_s2s_unless_too_coarse():
    from benchmark.metrics.ground_state import histogram_bin_width

    assert histogram_bin_width(np.array([0.0, 900.0])) == 64.0  # wide: the paper's 64 meV/atom
    assert histogram_bin_width(np.array([10.0, 42.0])) == 4.0  # 32 meV span: 8 bins of 4
    assert histogram_bin_width(np.array([5.0])) == 1.0  # a single value: the finest width
