"""Energy models behind one relaxer interface (issue 18): ASE's EMT relaxes, refuses what it cannot
compute, runs in worker processes with the serial results, and drives the stability task through
the command line; checkpoints name the weights; the optional MACE adapter reads a local file only
(tested with the package missing and with a stand-in ``mace.calculators`` module)."""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
import types

import numpy as np
import pytest

from benchmark.crystal import Crystal
from benchmark.metrics.oracles.base import RelaxSettings
from benchmark.metrics.oracles.emt import EMTOracle

Z = {"Li": 3, "Cu": 29, "Ag": 47, "Au": 79}


def fcc(symbol: str, a: float, label: str | None = None) -> Crystal:
    """The one-atom primitive cell of fcc ``symbol`` with conventional lattice constant ``a`` (Å)."""
    edge = a / math.sqrt(2)
    return Crystal(np.array([Z[symbol]]), np.array([[0.0, 0.0, 0.0]]), np.array([edge] * 3), np.array([60.0] * 3), label=label or symbol)


def l12(a: float, label: str = "Cu3Au") -> Crystal:
    """Cu3Au in the L1_2 structure (simple cubic cell of edge ``a`` Å, Au at the corner)."""
    frac = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]])
    return Crystal(np.array([79, 29, 29, 29]), frac, np.array([a] * 3), np.array([90.0] * 3), label=label)


def simple_cubic(symbol: str, a: float) -> Crystal:
    return Crystal(np.array([Z[symbol]]), np.array([[0.0, 0.0, 0.0]]), np.array([a] * 3), np.array([90.0] * 3), label=f"{symbol} sc")


# ---------------------------------------------------------------------------------------- EMT
def test_emt_relaxes_strained_copper_to_its_own_lattice_constant():
    """fcc Cu strained to a = 3.8 Å relaxes (cell and positions, FIRE) back to the minimum of EMT's
    own energy-volume curve, converged, with a lower energy; ``predict`` agrees with the relaxation's
    energies."""
    oracle = EMTOracle()
    grid = np.linspace(3.50, 3.70, 201)
    energies = oracle.predict([fcc("Cu", a) for a in grid], progress=False)
    a_min = float(grid[int(np.argmin(energies))])
    assert 3.58 < a_min < 3.61  # EMT's Cu (ASE's parameters): 3.59 Å

    strained = fcc("Cu", 3.8)
    (r,) = oracle.relax([strained], RelaxSettings(fmax=0.01, steps=200), progress=False)
    assert r.converged and r.relaxed is not None and r.reason == "", r.reason
    a_relaxed = r.relaxed.lengths[0] * math.sqrt(2)
    assert abs(a_relaxed - a_min) < 0.005
    assert np.allclose(r.relaxed.angles, 60.0, atol=1e-6)  # the fcc cell only shrank
    assert r.energy_final < r.energy_initial and 0 < r.steps < 200 and r.fmax_final < 0.01
    assert r.volume_final < r.volume_initial
    (e_strained,) = oracle.predict([strained], progress=False)
    assert r.energy_initial == pytest.approx(e_strained, abs=1e-12)
    assert r.energy_final == pytest.approx(min(energies), abs=1e-5)


def test_emt_refuses_an_element_it_has_no_parameters_for():
    """Li: a failed Relaxation naming the element (no exception), None from predict, and the same
    reason from ``problem``; unreadable input keeps its own reason."""
    oracle = EMTOracle()
    lithium = fcc("Li", 4.3)
    (r, bad) = oracle.relax([lithium, object()], progress=False)
    assert r.relaxed is None and not r.converged and not r.ok
    assert "EMT has no parameters for Li" in r.reason
    assert oracle.predict([lithium], progress=False) == [None]
    assert oracle.problem(lithium) == r.reason and oracle.problem(fcc("Cu", 3.6)) is None
    assert bad.relaxed is None and bad.reason.startswith("unreadable")


def test_emt_relax_in_two_worker_processes_gives_the_serial_results_in_input_order():
    oracle = EMTOracle()
    crystals = [fcc("Cu", 3.8), fcc("Li", 4.3), l12(3.9), object(), fcc("Ag", 4.0), simple_cubic("Au", 2.8)]
    settings = RelaxSettings(fmax=0.02, steps=150)
    serial = oracle.relax(crystals, settings, progress=False, n_jobs=1)
    parallel = oracle.relax(crystals, settings, progress=False, n_jobs=2)
    assert [r.reason for r in parallel] == [r.reason for r in serial]
    assert [r.relaxed is None for r in serial] == [False, True, False, True, False, False]
    for c, a, b in zip(crystals, serial, parallel):
        assert (a.converged, a.steps, a.energy_initial, a.energy_final, a.volume_final) == (b.converged, b.steps, b.energy_initial, b.energy_final, b.volume_final)
        if a.relaxed is not None:
            assert b.relaxed.label == c.label  # in input order, not in the workers' order (biggest first)
            assert np.array_equal(a.relaxed.frac_coords, b.relaxed.frac_coords) and np.array_equal(a.relaxed.lengths, b.relaxed.lengths)


def test_emt_checkpoint_is_the_hash_of_ases_parameter_table(monkeypatch):
    from ase.calculators import emt

    oracle = EMTOracle()
    ck = oracle.checkpoint()
    assert ck["name"] == "EMT parameters" and re.fullmatch(r"[0-9a-f]{64}", ck["sha256"])
    import ase

    assert ck["package"] == f"ase=={ase.__version__}" and oracle.checkpoint() == ck
    assert oracle.describe() == "ASE EMT (for tests and demonstrations; not a universal potential)"
    changed = dict(emt.parameters)
    changed["Cu"] = tuple(x * 1.01 for x in changed["Cu"])
    monkeypatch.setattr(emt, "parameters", changed)
    assert oracle.checkpoint()["sha256"] != ck["sha256"]  # other parameters, another hash


def test_emt_and_mace_are_registered_energy_models():
    from benchmark.metrics.oracles.base import RELAX
    from benchmark.registry import get_plugins

    oracles = get_plugins()["oracles"]
    assert {"emt", "mace", "chgnet"} <= set(oracles.names())
    assert oracles.get("emt").supports(RELAX)


# ---------------------------------------------------------------------------- the stability task
def _entries_file(path, energies: dict[str, float]) -> None:
    """A pymatgen ComputedEntry list of one-atom elemental entries (eV/atom = eV per entry)."""
    data = [{"@module": "pymatgen.entries.computed_entries", "@class": "ComputedEntry", "composition": {el: 1.0}, "energy": e,
             "correction": 0.0, "energy_adjustments": [], "parameters": {}, "data": {}, "entry_id": f"emt-{el}"} for el, e in energies.items()]
    path.write_text(json.dumps(data))


def test_stability_task_with_emt_through_the_cli(tmp_path):
    """``evaluate --task stability --energy-model emt`` on Cu/Ag/Au samples against a hull of EMT's
    own elemental energies: the record names EMT and its parameter hash, the E_hull values are the
    hand-computed ones, and the protocol fingerprint is not a CHGNet run's."""
    from benchmark.cli import main
    from benchmark.metrics.elemental_refs import standard_candidates
    from benchmark.metrics.stability import fingerprint
    from benchmark.samples import write_extxyz

    emt = EMTOracle()
    settings = RelaxSettings()  # the task's defaults: FIRE to 0.05 eV/Å, 500 steps, 0 GPa
    elemental = {}
    for el in ("Cu", "Ag", "Au"):
        elemental[el] = min(r.energy_final for r in emt.relax(standard_candidates(el), settings, progress=False))
    hull_file = tmp_path / "emt_hull.json"
    _entries_file(hull_file, elemental)
    samples = [fcc("Cu", 3.7, "cu"), l12(3.8, "cu3au"), simple_cubic("Ag", 2.8)]
    sample_file = tmp_path / "samples.extxyz"
    write_extxyz(samples, sample_file)
    out = tmp_path / "m.json"
    assert main(["evaluate", "--task", "stability", "--dataset", "toy", "--samples", str(sample_file), "--hull", str(hull_file),
                 "--energy-model", "emt", "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--jobs", "1", "--json", str(out)]) == 0
    (run,) = [p for p in (tmp_path / "runs").iterdir() if (p / "record.json").is_file()]
    record = json.loads((run / "record.json").read_text())
    st = record["stability"]
    assert st["energy_model"] == emt.describe() and st["checkpoint"] == emt.checkpoint()
    assert st["hull"]["source"] == "file" and st["hull"]["sha256"] == hashlib.sha256(hull_file.read_bytes()).hexdigest()
    assert all(abs(v) < 1e-3 for v in st["hull"]["elemental_differences"].values())
    fields = record["protocol"]["fields"]
    assert fields["energy_model"].startswith("ASE EMT") and fields["checkpoint_sha256"] == emt.checkpoint()["sha256"]
    assert fields["potential_package"].startswith("ase==") and record["protocol"]["fingerprint"] == fingerprint(fields)

    # E_hull by hand: relaxed energies per atom against the elemental line of the file
    import pandas as pd

    relaxed = emt.relax(samples, settings, progress=False)
    expected = [relaxed[0].energy_final - elemental["Cu"],
                relaxed[1].energy_final - (3 * elemental["Cu"] + elemental["Au"]) / 4,
                relaxed[2].energy_final - elemental["Ag"]]
    table = pd.read_csv(run / "per_structure.csv")
    assert np.allclose(table["e_above_hull"], expected, atol=1e-9)
    assert expected[1] < -0.01 and expected[2] > 0.1  # EMT binds Cu3Au; simple cubic Ag is far above fcc
    m = json.loads(out.read_text())
    assert m["hull_coverage"] == 1.0 and m["n_stable"] >= 2

    # the same run's protocol with CHGNet's energy model and checkpoint is another protocol
    pytest.importorskip("chgnet")
    from benchmark.metrics.oracles.chgnet import CHGNetOracle

    chgnet = CHGNetOracle()
    chgnet_fields = {**fields, "energy_model": chgnet.describe(), "checkpoint_sha256": chgnet.checkpoint()["sha256"],
                     "potential_package": chgnet.checkpoint()["package"]}
    assert chgnet_fields["checkpoint_sha256"] != fields["checkpoint_sha256"]
    assert fingerprint(chgnet_fields) != record["protocol"]["fingerprint"]


def test_chgnet_checkpoint_names_its_weights_file():
    pytest.importorskip("chgnet")
    from benchmark.metrics.oracles.chgnet import CHGNetOracle

    ck = CHGNetOracle().checkpoint()
    assert ck is not None and ck["name"].endswith(".pth.tar") and re.fullmatch(r"[0-9a-f]{64}", ck["sha256"])
    assert ck["package"].startswith("chgnet==") and CHGNetOracle().checkpoint() == ck
    assert ck["sha256"] != EMTOracle().checkpoint()["sha256"]


# ---------------------------------------------------------------------------------------- MACE
def test_mace_without_the_package_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    from benchmark.cli import main
    from benchmark.metrics.oracles.mace import MACEOracle
    from benchmark.samples import write_extxyz

    monkeypatch.setitem(sys.modules, "mace", None)  # as if mace-torch were not installed
    monkeypatch.delitem(sys.modules, "mace.calculators", raising=False)
    with pytest.raises(ImportError, match=r"pip install mace-torch.*optional"):
        MACEOracle(oracle_dir=tmp_path)
    sample_file = tmp_path / "s.extxyz"
    write_extxyz([fcc("Cu", 3.6)], sample_file)
    capsys.readouterr()
    assert main(["evaluate", "--task", "stability", "--dataset", "toy", "--samples", str(sample_file), "--energy-model", "mace",
                 "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--jobs", "1"]) == 2
    assert "pip install mace-torch" in capsys.readouterr().err


@pytest.fixture
def fake_mace(monkeypatch):
    """A stand-in ``mace`` package whose ``MACECalculator`` records its arguments and computes
    with EMT underneath (no ``mace_mp``: calling it would fail the test)."""
    from ase.calculators.emt import EMT

    calls: list[dict] = []

    class MACECalculator(EMT):
        def __init__(self, model_paths=None, device="cpu", default_dtype="", **kwargs):
            calls.append({"model_paths": model_paths, "device": device, "default_dtype": default_dtype, **kwargs})
            super().__init__()

    package = types.ModuleType("mace")
    package.__version__ = "0.0.0-fake"
    calculators = types.ModuleType("mace.calculators")
    calculators.MACECalculator = MACECalculator
    package.calculators = calculators
    monkeypatch.setitem(sys.modules, "mace", package)
    monkeypatch.setitem(sys.modules, "mace.calculators", calculators)
    monkeypatch.delenv("BENCHMARK_MACE_MODEL", raising=False)
    return calls


def test_mace_reads_the_local_model_file_and_hashes_it(fake_mace, tmp_path):
    from benchmark.registry import get_plugins

    folder = tmp_path / "oracles" / "mace"
    folder.mkdir(parents=True)
    model = folder / "mace-test.model"
    model.write_bytes(b"not a real model, hashed only" * 100)
    oracle = get_plugins()["oracles"].entry("mace").factory(oracle_dir=str(tmp_path / "oracles"))
    assert oracle.describe() == "MACE mace-test.model"
    ck = oracle.checkpoint()
    assert ck == {"name": "mace-test.model", "sha256": hashlib.sha256(model.read_bytes()).hexdigest(), "package": "mace-torch==0.0.0-fake"}

    crystals = [fcc("Cu", 3.8), fcc("Cu", 3.5)]
    got = oracle.relax(crystals, RelaxSettings(fmax=0.02), progress=False)
    want = EMTOracle().relax(crystals, RelaxSettings(fmax=0.02), progress=False)
    assert [(r.energy_final, r.steps) for r in got] == [(r.energy_final, r.steps) for r in want]
    assert oracle.predict(crystals, progress=False) == EMTOracle().predict(crystals, progress=False)
    # the local file, on CPU in float64, loaded once for all crystals
    assert fake_mace == [{"model_paths": str(model), "device": "cpu", "default_dtype": "float64"}]


def test_mace_finds_its_file_by_environment_and_refuses_none_or_two(fake_mace, tmp_path, monkeypatch):
    from benchmark.metrics.oracles.cdvae import OracleWeightsNotFound
    from benchmark.metrics.oracles.mace import MACEOracle

    monkeypatch.setenv("BENCHMARK_ORACLE_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(OSError, match=r"no MACE model file.*mace-mp.*never downloads"):
        MACEOracle()
    named = tmp_path / "elsewhere.model"
    named.write_bytes(b"x")
    monkeypatch.setenv("BENCHMARK_MACE_MODEL", str(named))
    assert MACEOracle().model_file == named
    monkeypatch.setenv("BENCHMARK_MACE_MODEL", str(tmp_path / "missing.model"))
    with pytest.raises(OracleWeightsNotFound, match="is not a file"):
        MACEOracle()
    monkeypatch.delenv("BENCHMARK_MACE_MODEL")
    folder = tmp_path / "empty" / "mace"
    folder.mkdir(parents=True)
    (folder / "a.model").write_bytes(b"a")
    assert MACEOracle().model_file == folder / "a.model"
    (folder / "b.model").write_bytes(b"b")
    with pytest.raises(OracleWeightsNotFound, match="2 MACE model files"):
        MACEOracle()


def test_stability_task_gives_oracle_dir_to_mace(fake_mace, tmp_path):
    """``evaluate --task stability --energy-model mace --oracle-dir D``: the model file of D/mace/
    is the one loaded and named, with its hash, in the record's protocol."""
    from benchmark.cli import main
    from benchmark.metrics.elemental_refs import standard_candidates
    from benchmark.samples import write_extxyz

    folder = tmp_path / "oracles" / "mace"
    folder.mkdir(parents=True)
    model = folder / "stand-in.model"
    model.write_bytes(b"stand-in")
    (e_cu,) = [r.energy_final for r in EMTOracle().relax(standard_candidates("Cu"), RelaxSettings(), progress=False)]
    hull_file = tmp_path / "hull.json"
    _entries_file(hull_file, {"Cu": e_cu})
    sample_file = tmp_path / "s.extxyz"
    write_extxyz([fcc("Cu", 3.7)], sample_file)
    assert main(["evaluate", "--task", "stability", "--dataset", "toy", "--samples", str(sample_file), "--hull", str(hull_file),
                 "--energy-model", "mace", "--oracle-dir", str(tmp_path / "oracles"), "--runs-dir", str(tmp_path / "runs"),
                 "--no-progress", "--jobs", "1"]) == 0
    (run,) = [p for p in (tmp_path / "runs").iterdir() if (p / "record.json").is_file()]
    fields = json.loads((run / "record.json").read_text())["protocol"]["fields"]
    assert fields["energy_model"] == "MACE stand-in.model" and fields["checkpoint_sha256"] == hashlib.sha256(b"stand-in").hexdigest()
    assert fields["potential_package"] == "mace-torch==0.0.0-fake"
    assert [c["model_paths"] for c in fake_mace] == [str(model)]
