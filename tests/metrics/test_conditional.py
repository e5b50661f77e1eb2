"""Conditional generation scoring (Con-CDVAE, Section 2.3, Tables 2 and B1): targets, checkers, success."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmark.crystal import Crystal
from benchmark.metrics import conditional as cond
from benchmark.metrics.base import EvalContext
from benchmark.metrics.oracles.base import PREDICT, Oracle
from benchmark.metrics.crystal_eval import CrystalResult, unreadable_result
from benchmark.metrics.profiles import get_profile
from benchmark.samples import Unreadable
from tests.conftest import data_dir, nacl


def zno(u: float = 0.382) -> Crystal:
    """Wurtzite ZnO, P6_3mc: hexagonal."""
    return Crystal([30, 30, 8, 8], [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, u], [2 / 3, 1 / 3, 0.5 + u]],
                   [3.25, 3.25, 5.21], [90, 90, 120], label="ZnO")


def triclinic() -> Crystal:
    coords = np.random.default_rng(0).random((3, 3))
    return Crystal([11, 17, 8], coords, [4.1, 5.3, 6.7], [81, 97, 103], label="P1")


class FakeOracle(Oracle):
    """An oracle answering from a table keyed by crystal label; label "bad" cannot be featurised."""

    capabilities = frozenset({PREDICT})

    def __init__(self, name: str, unit: str, table: dict[str, float]) -> None:
        self.name, self.unit, self.property, self.table = name, unit, name, table
        self.calls = 0

    def problem(self, crystal: Crystal) -> str | None:
        return "cannot featurise (ValueError: cell volume is zero)" if crystal.label == "bad" else None

    def predict(self, crystals: Sequence[Crystal], *, progress: bool = True, n_jobs: int | None = None,
                cache_key: str | None = None) -> list[float | None]:
        self.calls += 1
        return [None if c.label == "bad" else self.table[c.label] for c in crystals]


def result(i: int, crystal: Any) -> CrystalResult:
    if not isinstance(crystal, Crystal):
        return unreadable_result(i, None, crystal.reason)
    return CrystalResult(i, crystal.label, crystal.num_atoms, "", True, True, True, True)


def context(crystals: list[Any], targets: list[cond.Target], oracles: dict[str, Any]) -> EvalContext:
    return EvalContext(task="conditional_generation", dataset="mp_20_sample", family="mp_20", profile=get_profile("cdvae"), seed=0,
                       samples=[result(i, c) for i, c in enumerate(crystals)], sample_crystals=crystals,
                       options={"condition_targets": targets, "condition_oracle_objects": oracles, "progress": False})


# ---------------------------------------------------------------- names, labels, targets
def test_class_labels_and_codes_parse_both_ways() -> None:
    bg, fm, cs = (cond.PROPERTIES[k] for k in ("BG_type", "FM_type", "CS_type"))
    assert cond.class_label(bg, "zero") == ("zero", 0) and cond.class_label(bg, "Non-Zero") == ("non-zero", 1)
    assert cond.class_label(bg, "nonzero") == ("non-zero", 1) and cond.class_label(bg, 1) == ("non-zero", 1)
    assert cond.class_label(fm, "low") == ("low", 1) and cond.class_label(fm, "0") == ("high", 0)
    assert cond.class_label(cs, "cubic") == ("cubic", 6) and cond.class_label(cs, 1) == ("trigonal", 1)
    assert cond.class_label(cs, 5.0) == ("hexagonal", 5)  # an integral TOML float
    for spec, bad in ((bg, "maybe"), (fm, 2), (cs, "cubical"), (cs, -1), (bg, True)):
        with pytest.raises(cond.ConditionError) as err:
            cond.class_label(spec, bad)
        assert spec.labels[0] in str(err.value) and "(0)" in str(err.value)  # the valid labels and codes are listed


def test_conditions_normalise_to_canonical_names_and_labels() -> None:
    a = cond.normalize_conditions({"crystal_system": 6, "bg_type": "1", "formation_energy": "-2"})
    assert a == {"BG_type": "non-zero", "CS_type": "cubic", "formation_energy_per_atom": -2.0}
    assert list(a) == sorted(a)
    assert cond.normalize_conditions({"CS_type": "cubic", "BG_type": "non-zero", "formation_energy_per_atom": -2}) == a
    with pytest.raises(cond.ConditionError, match="band_gap, formation_energy_per_atom, BG_type, FM_type, CS_type"):
        cond.normalize_conditions({"bandgap": 3})
    with pytest.raises(cond.ConditionError, match="twice"):
        cond.normalize_conditions({"crystal_system": 6, "CS_type": 6})
    with pytest.raises(cond.ConditionError, match="expected a number"):
        cond.normalize_conditions({"band_gap": "wide"})
    # a property the task does not know is fine with an oracle named for it
    assert cond.normalize_conditions({"heat_ref": "-0.5"}, {"heat_ref": "cdvae-perov_5"}) == {"heat_ref": -0.5}


def test_assignments_parse_and_reject() -> None:
    assert cond.parse_assignments(["band_gap=3.0", " FM_type = low "]) == {"band_gap": "3.0", "FM_type": "low"}
    for bad in (["band_gap"], ["=3"], ["band_gap="]):
        with pytest.raises(cond.ConditionError, match="NAME=VALUE"):
            cond.parse_assignments(bad)
    with pytest.raises(cond.ConditionError, match="twice"):
        cond.parse_assignments(["a=1", "a=2"])


def test_targets_defaults_keys_and_model_values() -> None:
    targets = cond.build_targets({"FM_type": "high", "BG_type": "zero"})
    assert [t.oracle for t in targets] == ["cgcnn-mpall20-Cbg", "cgcnn-mpall20-Cfm"]
    assert cond.success_key(targets) == "success[BG_type=zero,FM_type=high]"
    assert cond.model_conditions(targets) == {"BG_type": 0, "FM_type": 0}
    t = cond.build_targets({"band_gap": 3, "formation_energy_per_atom": -0.0, "crystal_system": "cubic"}, dataset="oqmd_20")
    assert [x.oracle for x in t] == ["symmetry", "cgcnn-oqmd-bg", "cgcnn-oqmd-fm"]
    assert [x.tolerance for x in t] == [None, 0.5, 0.5]  # the documented defaults
    assert cond.condition_text(t) == "CS_type=cubic,band_gap=3,formation_energy_per_atom=0"  # -0 printed as 0
    assert cond.model_conditions(t) == {"CS_type": 6, "band_gap": 3.0, "formation_energy_per_atom": 0.0}
    assert cond.build_targets({"band_gap": 3}, {"band_gap": 0.25})[0].tolerance == 0.25
    assert cond.parse_key("success[BG_type=zero,FM_type=high]") == ("success", {"BG_type": "zero", "FM_type": "high"}, None)
    assert cond.parse_key("mad[band_gap=3].band_gap") == ("mad", {"band_gap": "3"}, "band_gap")
    assert cond.parse_key("valid") is None and cond.parse_key("SR5") is None
    for conditions, tolerances, oracles, match in (
        ({}, None, None, "no conditions"),
        ({"band_gap": 3}, {"band_gap": 0}, None, "positive"),
        ({"BG_type": 0}, {"BG_type": 0.1}, None, "class target"),
        ({"band_gap": 3}, {"bandgap": 0.1}, None, "unknown property"),
        ({"heat_ref": 1}, None, {"heat_ref": "cdvae-perov_5"}, "needs a tolerance"),
        ({"band_gap": 3}, None, {"band_gap": "symmetry"}, "only check CS_type"),
        ({"CS_type": 6}, None, {"CS_type": "cgcnn-mpall20-bg"}, "symmetry analysis"),
    ):
        with pytest.raises(cond.ConditionError, match=match):
            cond.build_targets(conditions, tolerances, oracles)


def test_oracles_must_fit_their_targets() -> None:
    with pytest.raises(cond.ConditionError, match="unknown oracle"):
        cond.load_oracles(cond.build_targets({"band_gap": 3}, oracles={"band_gap": "no-such-oracle"}))


# ---------------------------------------------------------------- checkers
def test_crystal_system_of_known_crystals() -> None:
    assert cond.crystal_system(nacl()) == "cubic"  # rock salt, Fm-3m
    assert cond.crystal_system(zno()) == "hexagonal"  # wurtzite, P6_3mc
    assert cond.crystal_system(triclinic()) == "triclinic"
    # the paper's loose tolerance (0.2 Å) still sees a slightly distorted rock salt as cubic
    jitter = np.random.default_rng(1).normal(0.0, 0.005, (8, 3))
    shaken = Crystal(nacl().atomic_numbers, nacl().frac_coords + jitter, [5.64] * 3, [90] * 3)
    assert cond.crystal_system(shaken) == "cubic" and cond.crystal_system(shaken, symprec=1e-4) != "cubic"


def test_cs_type_numbering_matches_the_data() -> None:
    """CS_type of Con-CDVAE's rows is the crystal system of their space group under the documented
    numbering (triclinic 0, trigonal 1, monoclinic 2, orthorhombic 3, tetragonal 4, hexagonal 5, cubic 6)."""
    import pandas as pd

    d = data_dir()
    if d is None or not (d / "mp_20_sample" / "train.csv").is_file():
        pytest.skip("mp_20_sample not available")
    bounds = [(2, "triclinic"), (15, "monoclinic"), (74, "orthorhombic"), (142, "tetragonal"), (167, "trigonal"), (194, "hexagonal"), (230, "cubic")]
    frames = [pd.read_csv(d / "mp_20_sample" / f"{s}.csv") for s in ("train", "val", "test")]
    rows = pd.concat(frames)
    for number, code in zip(rows["spacegroup.number"], rows["CS_type"]):
        system = next(name for top, name in bounds if number <= top)
        assert cond.CRYSTAL_SYSTEMS[int(code)] == system, (number, code)
    assert set(rows["CS_type"]) == set(range(7))


def test_judge_by_hand() -> None:
    gap = cond.build_targets({"band_gap": 3})[0]
    c = cond.judge(gap, [3.0, 3.5, 2.5, 2.49, 6.0, None], [None] * 5 + ["cgcnn: cannot featurise"])
    assert c.success.tolist() == [True, True, True, False, False, False]  # |d| <= 0.5, both edges inclusive
    assert c.answered.tolist() == [True] * 5 + [False]
    bg = cond.build_targets({"BG_type": "non-zero"})[0]
    c = cond.judge(bg, [0.9, 0.5, 0.4999, None], [None, None, None, None])
    assert c.label == ["non-zero", "non-zero", "zero", None] and c.success.tolist() == [True, True, False, False]
    assert c.reason[3] == "cgcnn-mpall20-Cbg: no answer"
    cs = cond.build_targets({"CS_type": "cubic"})[0]
    c = cond.judge(cs, ["cubic", "hexagonal", None], [None, None, "symmetry analysis failed"])
    assert c.success.tolist() == [True, False, False] and c.label == ["cubic", "hexagonal", None]


def test_joint_success_with_fake_oracles_failures_and_figures(tmp_path: Path) -> None:
    """Six samples, targets band gap 3 eV (±0.5) and cubic, every number checked by hand:

    ========  =========  ==========  ===========  =====
    sample    band gap   system      gap ok       joint
    ========  =========  ==========  ===========  =====
    NaCl      3.2        cubic       yes          yes
    NaCl2     4.0        cubic       no           no
    ZnO       2.6        hexagonal   yes          no
    P1        3.0        triclinic   yes          no
    bad       (none)     cubic       no (reason)  no
    unread.   -          -           no (reason)  no
    ========  =========  ==========  ===========  =====
    """
    a, b, h, t = nacl(), nacl(5.7), zno(), triclinic()
    a, b = Crystal(a.atomic_numbers, a.frac_coords, a.lengths, a.angles, label="NaCl"), Crystal(b.atomic_numbers, b.frac_coords, b.lengths, b.angles, label="NaCl2")
    bad = Crystal(a.atomic_numbers, a.frac_coords, a.lengths, a.angles, label="bad")
    crystals: list[Any] = [a, b, h, t, bad, Unreadable("x.cif", "not a CIF")]
    oracle = FakeOracle("fake-bg", "eV", {"NaCl": 3.2, "NaCl2": 4.0, "ZnO": 2.6, "P1": 3.0})
    targets = cond.build_targets({"band_gap": 3.0, "crystal_system": "cubic"}, oracles={"band_gap": "fake-bg"})
    ctx = context(crystals, targets, {"fake-bg": oracle})
    values = cond.conditional_success(ctx)
    key = "CS_type=cubic,band_gap=3"
    assert values[f"success[{key}]"].value == pytest.approx(1 / 6) and values[f"success[{key}]"].n == 6
    assert values[f"success[{key}].band_gap"].value == pytest.approx(3 / 6)
    assert values[f"success[{key}].CS_type"].value == pytest.approx(3 / 6)  # NaCl, NaCl2, bad
    assert values[f"predicted[{key}]"].value == pytest.approx(4 / 6)
    assert values[f"mad[{key}].band_gap"].value == pytest.approx((0.2 + 1.0 + 0.4 + 0.0) / 4) and values[f"mad[{key}].band_gap"].n == 4
    assert values[f"median[{key}].band_gap"].value == pytest.approx(3.1)
    assert oracle.calls == 1  # one batch call over the usable crystals
    col = ctx.per_structure
    assert col["success"] == [True, False, False, False, False, False]
    assert col["pred_band_gap"][:5] == [3.2, 4.0, 2.6, 3.0, None] and col["class_CS_type"][:3] == ["cubic", "cubic", "hexagonal"]
    assert col["condition_reason"][:4] == [None] * 4
    assert "cannot featurise" in col["condition_reason"][4] and "cell volume is zero" in col["condition_reason"][4]
    assert col["condition_reason"][5].startswith("not scored: unreadable")
    assert any("counted as failures" in n for n in ctx.notes)
    written = {}
    for name, writer in ctx.cache["artifact_writers"].items():
        writer(tmp_path / name)
        written[name] = (tmp_path / name).read_bytes()[:8]
    assert set(written) == {"conditional_band_gap_hist.png", "conditional_CS_type_classes.png"}
    assert all(head == b"\x89PNG\r\n\x1a\n" for head in written.values())


def test_class_probabilities_and_fe_bg_scatter(tmp_path: Path) -> None:
    """Two class targets from classifier probabilities (Table 2 style), and the Figure 4 scatter."""
    crystals = [Crystal([11, 17], [[0, 0, 0], [0.5, 0.5, 0.5]], [4.0] * 3, [90] * 3, label=f"c{i}") for i in range(4)]
    p_bg = FakeOracle("fake-Cbg", "probability", {"c0": 0.9, "c1": 0.1, "c2": 0.7, "c3": 0.5})
    p_fm = FakeOracle("fake-Cfm", "probability", {"c0": 0.2, "c1": 0.3, "c2": 0.8, "c3": 0.49})
    targets = cond.build_targets({"BG_type": "non-zero", "FM_type": "high"}, oracles={"BG_type": "fake-Cbg", "FM_type": "fake-Cfm"})
    values = cond.conditional_success(context(crystals, targets, {"fake-Cbg": p_bg, "fake-Cfm": p_fm}))
    assert values["success[BG_type=non-zero,FM_type=high]"].value == pytest.approx(2 / 4)  # c0 and c3 (0.5 -> non-zero, 0.49 -> high)
    assert values["success[BG_type=non-zero,FM_type=high].BG_type"].value == pytest.approx(3 / 4)
    assert values["success[BG_type=non-zero,FM_type=high].FM_type"].value == pytest.approx(3 / 4)
    assert not any(k.startswith(("mad", "median")) for k in values)

    fe = FakeOracle("fake-fm", "eV/atom", {"c0": -2.1, "c1": -1.0, "c2": -2.4, "c3": 0.0})
    bg = FakeOracle("fake-bg", "eV", {"c0": 2.8, "c1": 3.0, "c2": 3.1, "c3": 0.0})
    targets = cond.build_targets({"band_gap": 3, "formation_energy_per_atom": -2}, oracles={"band_gap": "fake-bg", "formation_energy_per_atom": "fake-fm"})
    ctx = context(crystals, targets, {"fake-bg": bg, "fake-fm": fe})
    values = cond.conditional_success(ctx)
    assert values["success[band_gap=3,formation_energy_per_atom=-2]"].value == pytest.approx(2 / 4)  # c0, c2
    writers = ctx.cache["artifact_writers"]
    assert "conditional_fe_bg_scatter.png" in writers
    writers["conditional_fe_bg_scatter.png"](tmp_path / "scatter.png")
    assert (tmp_path / "scatter.png").stat().st_size > 1000


def test_symmetry_failure_is_a_failure_with_a_reason() -> None:
    overlapping = Crystal([11, 11], [[0, 0, 0], [0, 0, 0]], [4.0] * 3, [90] * 3, label="overlap")
    targets = cond.build_targets({"CS_type": "cubic"})
    ctx = context([nacl(), overlapping], targets, {})
    values = cond.conditional_success(ctx)
    assert values["success[CS_type=cubic]"].value == pytest.approx(0.5)
    assert values["predicted[CS_type=cubic]"].value == pytest.approx(0.5)
    assert "symmetry analysis failed" in ctx.per_structure["condition_reason"][1]
