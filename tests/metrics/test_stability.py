"""The stability task and metric (issue 18): hand-computed E_hull, counts, rates and S.U.N. with a
fake energy model on a synthetic Li-Na-O hull; entries-file hulls through the command line; and
the whole task with CHGNet on the toy dataset."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmark.crystal import Crystal
from benchmark.metrics.base import EvalContext
from benchmark.metrics.crystal_eval import evaluate_crystal
from benchmark.metrics.hull import Hull, HullEntry
from benchmark.metrics.oracles.base import PREDICT, RELAX, Oracle, Relaxation, input_problem
from benchmark.metrics.profiles import get_profile
from benchmark.metrics.reference_hull import EnergySettings
from benchmark.metrics.stability import TOLERANCE, classify, fingerprint, stability, summarise

Z = {"Li": 3, "O": 8, "Na": 11, "K": 19}


def crystal(formula: list[str], label: str, a: float = 5.0) -> Crystal:
    """Atoms of ``formula`` spread over a cubic cell of edge ``a`` (2+ Å apart: structurally valid)."""
    spots = [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.5], [0.5, 0.5, 0.0]]
    return Crystal(np.array([Z[s] for s in formula]), np.array(spots[: len(formula)]), np.array([a] * 3), np.array([90.0] * 3), label=label)


#: energy per atom (eV/atom) the fake model gives each sample, by label
ENERGIES = {"li2o": -2.0, "li2o_b": -1.95, "na2o": -1.3, "linao": -1.8, "k2o": -1.0}


class FakeEnergyModel(Oracle):
    """Energies by the crystal's label (:data:`ENERGIES`); a crystal labelled ``fail`` does not relax."""

    name = "fake-energy"
    capabilities = frozenset({RELAX, PREDICT})

    def describe(self) -> str:
        return "FakePotential 1.0"

    def checkpoint(self) -> dict:
        return {"name": "fake.ckpt", "sha256": "ab" * 32, "package": "fake==1.0"}

    def predict(self, crystals, *, progress=True, n_jobs=None, cache_key=None):
        return [ENERGIES.get(getattr(c, "label", None)) for c in crystals]

    def relax(self, crystals, settings=None, *, progress=False, n_jobs=1):
        out = []
        for c in crystals:
            problem = input_problem(c)
            if problem or c.label not in ENERGIES:
                out.append(Relaxation(None, False, problem or "relaxation failed: the fake potential diverged"))
            else:
                out.append(Relaxation(c, True, "", steps=7, energy_initial=ENERGIES[c.label] + 0.1, energy_final=ENERGIES[c.label]))
        return out


def li_na_o_hull() -> Hull:
    """Elements at 0 eV/atom; Li2O at -2.0 and Na2O at -1.5 eV/atom."""
    return Hull([HullEntry({"Li": 1}, 0.0, "Li"), HullEntry({"Na": 1}, 0.0, "Na"), HullEntry({"O": 1}, 0.0, "O"),
                 HullEntry({"Li": 2, "O": 1}, -6.0, "Li2O"), HullEntry({"Na": 2, "O": 1}, -4.5, "Na2O")], name="li-na-o")


def samples() -> list[Crystal]:
    overlapping = Crystal(np.array([3, 3, 8]), np.array([[0, 0, 0], [0.01, 0, 0], [0.5, 0.5, 0.5]]), np.array([5.0] * 3), np.array([90.0] * 3), label="li2o")
    return [crystal(["Li", "Li", "O"], "li2o"), crystal(["Li", "Li", "O"], "li2o_b"), crystal(["Na", "Na", "O"], "na2o"),
            crystal(["Li", "Na", "O"], "linao"), crystal(["K", "K", "O"], "k2o"), overlapping, crystal(["Li", "Li", "O"], "fail")]


def context(unique=None, novel=None, **options) -> EvalContext:
    profile = get_profile("cdvae")
    cs = samples()
    ctx = EvalContext(task="stability", dataset="toy", family=None, profile=profile, seed=0,
                      samples=[evaluate_crystal(c, profile, fingerprints=False) for c in cs], sample_crystals=cs,
                      options={"energy_model_object": FakeEnergyModel(), "hull_object": li_na_o_hull(), "progress": False, **options})
    if unique is not None:
        ctx.per_structure["unique"], ctx.per_structure["novel"] = unique, novel
    return ctx


def test_classify_and_summarise_by_hand():
    assert [classify(e) for e in (-0.01, 0.0, 1e-9, 0.05, 0.1, 0.1 + 1e-7, 0.2, None)] == \
        ["stable", "stable", "stable", "metastable", "metastable", "metastable", "unstable", None]
    assert classify(2 * TOLERANCE) == "metastable"
    assert classify(9.9e-5) == "stable"  # a replayed training crystal relaxed again: float32 energies, a slightly different end
    e = [-0.05, 0.0, 0.05, 0.2, None]
    s = summarise(e, unique=[True, False, True, True, None], novel=[True, True, True, False, None])
    assert (s["n"], s["n_placed"], s["n_stable"], s["n_metastable"], s["n_sun"], s["n_msun"]) == (5, 4, 2, 3, 1, 2)
    assert s["stable_rate"] == pytest.approx(2 / 5) and s["placed_rate"] == pytest.approx(4 / 5)  # over all samples
    assert s["mean"] == pytest.approx(0.05) and s["median"] == pytest.approx(0.025)
    no_flags = summarise(e, None, None)
    assert no_flags["n_sun"] is None and no_flags["sun_rate"] is None
    assert summarise([], None, None)["stable_rate"] is None


def test_metric_by_hand_on_a_synthetic_hull(tmp_path):
    # samples: li2o, li2o_b, na2o, linao, k2o, overlapping, fail
    unique = [True, True, True, False, True, None, True]
    novel = [True, True, True, True, True, None, False]
    ctx = context(unique, novel, energy_settings=EnergySettings(mode="relax"))
    values = stability(ctx)
    got = ctx.per_structure["e_above_hull"]
    # Li2O on its own vertex; 0.05 above it; Na2O 0.2 above; LiNaO vs 1/2 Li2O + 1/2 Na2O (-1.75): -0.05
    for k, want in enumerate([0.0, 0.05, 0.2, -0.05]):
        assert got[k] == pytest.approx(want, abs=1e-12)
    assert got[4:] == [None, None, None]
    assert ctx.per_structure["stability"] == ["stable", "metastable", "unstable", "stable", None, None, None]
    reasons = ctx.per_structure["stability_reason"]
    assert reasons[:4] == [None] * 4
    assert "K outside the hull's chemical space" in reasons[4]
    assert reasons[5].startswith("invalid sample") and "overlapping" not in reasons[4]
    assert reasons[6].startswith("no energy: relaxation failed")
    assert ctx.per_structure["hull_decomposition"][3] == "Li2O 0.500; Na2O 0.500"
    # compounds of the hull in each sample's chemical space: Li2O for Li-O, Na2O for Na-O, both for Li-Na-O
    assert ctx.per_structure["hull_competitors"] == [1, 1, 1, 2, None, None, None]
    assert ctx.per_structure["relax_steps"][:4] == [7] * 4
    assert ctx.per_structure["sun"] == [True, False, False, False, False, False, False]
    assert ctx.per_structure["msun"] == [True, True, False, False, False, False, False]
    v = {k: x.value for k, x in values.items()}
    assert v["n_stable"] == 2 and v["n_metastable"] == 3 and v["n_sun"] == 1 and v["n_msun"] == 2
    assert v["stable_rate"] == pytest.approx(2 / 7) and v["metastable_rate"] == pytest.approx(3 / 7)
    assert v["sun_rate"] == pytest.approx(1 / 7) and v["msun_rate"] == pytest.approx(2 / 7)
    assert v["hull_coverage"] == pytest.approx(4 / 7)
    assert v["e_hull_mean"] == pytest.approx(0.05) and v["e_hull_median"] == pytest.approx(0.025)
    assert values["stable_rate"].n == 7 and values["e_hull_mean"].n == 4 and values["stable_rate"].oracle == "FakePotential 1.0"
    record = ctx.cache["stability_record"]
    assert record["stability"]["left_out"] == {"invalid sample": 1, next(r for r in reasons if r and "outside" in r).split(" (")[0]: 1,
                                               reasons[6].split(" (")[0]: 1}
    assert record["stability"]["n_stable_without_competitors"] == 0
    fields = record["protocol"]["fields"]
    assert record["protocol"]["fingerprint"] == fingerprint(fields)
    assert fields["energy_model"] == "FakePotential 1.0" and fields["checkpoint_sha256"] == "ab" * 32
    assert fields["hull"] == "li-na-o" and fields["hull_sha256"] == li_na_o_hull().sha256 and fields["thresholds"] == [0.0, 0.1]
    png = ctx.cache["artifact_writers"]["e_above_hull.png"](tmp_path / "h.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_a_sample_below_its_elements_with_no_compound_in_the_hull_is_counted_and_said():
    """A hull with only elements and Li2O: Na2O at -1.3 eV/atom is 'stable' (below Na and O) but has
    no competing compound; the record and a note say so."""
    hull = Hull([HullEntry({"Li": 1}, 0.0, "Li"), HullEntry({"Na": 1}, 0.0, "Na"), HullEntry({"O": 1}, 0.0, "O"),
                 HullEntry({"Li": 2, "O": 1}, -6.0, "Li2O")], name="li-na-o without Na2O")
    ctx = context(energy_settings=EnergySettings(mode="single_point"), hull_object=hull)
    stability(ctx)
    assert ctx.per_structure["e_above_hull"][2] == pytest.approx(-1.3)
    assert ctx.per_structure["hull_competitors"][:4] == [1, 1, 0, 1]
    assert ctx.cache["stability_record"]["stability"]["n_stable_without_competitors"] == 1  # Na2O; LiNaO has Li2O in its space
    assert any("below their elements" in n for n in ctx.notes)


def test_thresholds_single_point_and_missing_novelty_change_what_they_should():
    ctx = context(energy_settings=EnergySettings(mode="single_point"), metastable_threshold=0.2)
    values = stability(ctx)
    assert values["n_metastable"].value == 4  # Na2O at 0.2 now counts
    assert "sun_rate" not in values and any("S.U.N." in n for n in ctx.notes)
    assert "relax_steps" not in ctx.per_structure  # single point: nothing relaxed
    fields = ctx.cache["stability_record"]["protocol"]["fields"]
    assert fields["energy"]["mode"] == "single_point" and fields["thresholds"] == [0.0, 0.2]
    other = context(energy_settings=EnergySettings(mode="relax"))
    stability(other)
    assert other.cache["stability_record"]["protocol"]["fingerprint"] != ctx.cache["stability_record"]["protocol"]["fingerprint"]


def _entries_file(path, shift: float = 0.0):
    """Li-Na-O entries as a pymatgen ComputedEntry list (elements shifted by ``shift`` eV/atom)."""
    def entry(composition: dict, energy: float) -> dict:
        return {"@module": "pymatgen.entries.computed_entries", "@class": "ComputedEntry", "composition": composition, "energy": energy,
                "correction": 0.0, "energy_adjustments": [], "parameters": {}, "data": {}, "entry_id": str(composition)}
    data = [entry({"Li": 1.0}, -2.0 + shift), entry({"Na": 1.0}, -1.5 + shift), entry({"O": 1.0}, -1.0 + shift), entry({"Li": 2.0, "O": 1.0}, -11.0)]
    path.write_text(json.dumps(data))
    return path


def test_entries_file_hull_through_the_cli(tmp_path, monkeypatch, capsys):
    """``evaluate --task stability --hull FILE``: the file's hash in the record; a file whose elemental
    energies are off the model's scale is refused before any sample is read."""
    from benchmark.cli import main
    from benchmark.metrics import stability as module
    from benchmark.samples import write_extxyz

    class Model(FakeEnergyModel):
        # the model's elemental references: Li -2.0, Na -1.5, O -1.0 eV/atom (what the file says)
        def relax(self, crystals, settings=None, *, progress=False, n_jobs=1):
            refs = {3: -2.0, 11: -1.5, 8: -1.0}
            out = super().relax([c for c in crystals], settings)
            for k, c in enumerate(crystals):
                zs = set(c.atomic_numbers.tolist())
                if len(zs) == 1 and next(iter(zs)) in refs:
                    out[k] = Relaxation(c, True, "", steps=1, energy_final=refs[next(iter(zs))])
            return out

    monkeypatch.setattr(module, "energy_model_from_options", lambda options: Model())
    sample_file = tmp_path / "s.extxyz"
    write_extxyz([crystal(["Li", "Li", "O"], "li2o"), crystal(["Na", "Na", "O"], "na2o")], sample_file)
    good = _entries_file(tmp_path / "good.json")
    out = tmp_path / "m.json"
    args = ["evaluate", "--task", "stability", "--dataset", "toy", "--samples", str(sample_file), "--runs-dir", str(tmp_path / "runs"),
            "--no-progress", "--jobs", "1"]
    assert main(args + ["--hull", str(good), "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    # file hull: Li2O at -(6 + 5) / 3 = -3.667 eV/atom; the sample at -2.0 is 1.667 above; Na2O has no Na-O compound: vs elements
    (run,) = [p for p in (tmp_path / "runs").iterdir() if (p / "record.json").is_file()]
    record = json.loads((run / "record.json").read_text())
    hull = record["stability"]["hull"]
    import hashlib

    assert hull["source"] == "file" and hull["sha256"] == hashlib.sha256(good.read_bytes()).hexdigest()
    assert record["protocol"]["fields"]["hull_corrections"] == "as_given"
    import pandas as pd

    table = pd.read_csv(run / "per_structure.csv")
    assert table["e_above_hull"][0] == pytest.approx(-2.0 - (-11.0 / 3))
    assert table["e_above_hull"][1] == pytest.approx(-1.3 - (2 * -1.5 + -1.0) / 3)
    assert m["n_stable"] == 0 and m["hull_coverage"] == 1.0
    bad = _entries_file(tmp_path / "bad.json", shift=-3.0)
    capsys.readouterr()
    assert main(args + ["--hull", str(bad)]) == 2
    assert "not on the model's scale" in capsys.readouterr().err


chgnet = pytest.importorskip("chgnet")


def test_stability_run_on_toy_with_chgnet(tmp_path, capsys):
    """The task as a user runs it: replay's training crystals against the toy reference hull
    (single point, the smoke preset), record sections, the histogram and the leaderboard's note."""
    from benchmark.cli import main

    runs = str(tmp_path / "runs")
    assert main(["run", "--model", "replay", "--task", "stability", "--dataset", "toy", "--preset", "smoke", "--runs-dir", runs,
                 "--no-progress", "--jobs", "1"]) == 0
    (run,) = [p for p in (tmp_path / "runs").iterdir() if (p / "record.json").is_file()]
    record = json.loads((run / "record.json").read_text())
    st = record["stability"]
    assert st["energy_model"].startswith("CHGNet") and st["checkpoint"]["sha256"] and st["energy"]["mode"] == "single_point"
    assert st["hull"]["source"] == "reference" and set(st["hull"]["splits"]) == {"train", "val", "test"}
    assert st["hull"]["elemental_references"]["O"]["label"].startswith("standard:O2 molecule")
    dist = st["hull"]["dataset_e_above_hull"]
    assert dist["n"] == st["hull"]["n_placed"] and 0 < dist["share_le_0"] <= 1
    fields = record["protocol"]["fields"]
    assert record["protocol"]["fingerprint"] == fingerprint(fields) and fields["pymatgen"]
    m = {k: v["value"] for k, v in record["metrics"].items()}
    assert m["hull_coverage"] == 1.0  # replayed training crystals: every element is in the hull
    assert m["n_metastable"] >= m["n_stable"] and not math.isnan(m["e_hull_median"])
    assert (run / "e_above_hull.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert main(["leaderboard", "--task", "stability", "--dataset", "toy", "--runs-dir", runs, "--strict"]) == 0
    table = capsys.readouterr().out
    assert "Stable (%)" in table and record["protocol"]["fingerprint"][:12] in table
    # `hull` builds (here: reads from the cache) the same hull and shows it
    out = tmp_path / "hull.json"
    assert main(["hull", "--dataset", "toy", "--energy-mode", "single_point", "--no-progress", "--json", str(out)]) == 0
    shown = capsys.readouterr().out
    info = json.loads(out.read_text())
    assert info["hull"]["sha256"] == st["hull"]["hull"]["sha256"] and info["cached"] is True
    assert st["hull"]["hull"]["sha256"] in shown and "O2 molecule" in shown and "crystals against it" in shown
    assert main(["hull", "--dataset", "toy", "--hull", str(tmp_path / "missing.json")]) == 2
