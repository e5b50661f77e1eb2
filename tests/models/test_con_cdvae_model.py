"""The ``con_cdvae`` plugin: the model contract (conditioned on the number of atoms, which every
contract crystal has), condition specs completed from the data, the two-step training on the
MP-20 sample with a stored conditions table, and the three strategies."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.config import resolve
from benchmark.models.con_cdvae.plugin import ConCDVAEModel, resolve_condition_specs
from benchmark.testing import ModelContract, contract_crystals


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


class TestConCDVAEContract(ModelContract):
    model_class = ConCDVAEModel
    overrides = {"conditions": ("num_atoms",), "prior_epochs": 3, "n_candidates": 20, "keep": 5, "max_epochs": 3}
    conditions = {"num_atoms": 5.0}
    sampling_change = {"n_step_each": 3}


def test_condition_specs_from_the_data():
    crystals = [c.with_properties(band_gap=float(k % 4), BG_type=int(k % 2)) for k, c in enumerate(contract_crystals(8))]
    specs = resolve_condition_specs(["band_gap", "BG_type", "x:discrete:3"], crystals)
    assert specs[1] == "BG_type:discrete:2" and specs[2] == "x:discrete:3"
    name, kind, lo, hi, n = specs[0].split(":")
    assert (name, kind) == ("band_gap", "continuous") and float(lo) <= -0.15 and float(hi) >= 3.15 and int(n) >= 7
    with pytest.raises(ValueError, match="no training crystal has a numeric 'nope'"):
        resolve_condition_specs(["nope"], crystals)


def test_two_steps_on_the_mp20_sample_and_the_strategies(tmp_path: Path):
    from benchmark.registry import get_plugins
    from tests.conftest import data_dir

    if data_dir() is None or not (data_dir() / "mp_20_sample" / "train.csv").is_file():
        pytest.skip("needs the MP-20 sample (BENCHMARK_DATA_DIR)")
    ds = get_plugins()["datasets"].get("mp_20_sample")
    train = ds.load("train", data_dir(), progress=False)
    cfg = resolve(ConCDVAEModel.Config, "smoke", "mp_20_sample", None, {
        "conditions": ("formation_energy_per_atom", "BG_type"), "max_epochs": 2, "prior_epochs": 4,
        "n_candidates": 30, "keep": 3, "n_step_each": 2, "num_noise_level": 3})
    model = ConCDVAEModel(cfg)
    summary = model.fit(train, [], tmp_path / "fit", seed=0)
    assert summary["full_prior"] and set(summary) >= {"prior_default_loss_curve", "prior_full_loss_curve"}
    assert len(model.condition_table["formation_energy_per_atom"]) == summary["n_train"] == len(train)
    out = model.conditional_sample(4, {"formation_energy_per_atom": -2.0, "BG_type": 1}, seed=0)
    assert len(out.crystals) == 4 and all(c.num_atoms > 0 for c in out.crystals)
    less = model.conditional_sample(3, {"CS_type": 6}, seed=0, strategy="less")
    assert len(less.crystals) == 3
    with pytest.raises(ValueError, match="full strategy needs every condition"):
        model.conditional_sample(2, {"formation_energy_per_atom": -2.0}, seed=0, strategy="full")
    with pytest.raises(ValueError, match="not trained on the conditions"):
        model.conditional_sample(2, {"critical_temperature": 30.0}, seed=0)
    model.save(tmp_path / "m.pt")
    loaded = ConCDVAEModel.load(tmp_path / "m.pt")
    assert set(loaded.condition_table) == set(model.condition_table)
    a = loaded.conditional_sample(2, {"formation_energy_per_atom": -1.0, "BG_type": 0}, seed=3).crystals
    b = model.conditional_sample(2, {"formation_energy_per_atom": -1.0, "BG_type": 0}, seed=3).crystals
    assert all(np.allclose(x.frac_coords, y.frac_coords, atol=1e-5) for x, y in zip(a, b))
    # a crystal without the condition values cannot be reconstructed: an empty crystal in its place
    bare = train[0].__class__(train[0].atomic_numbers, train[0].frac_coords, train[0].lengths, train[0].angles, label="bare")
    rec = model.reconstruct([train[1], bare], seed=0)
    assert rec[0].num_atoms > 0 and rec[1].num_atoms == 0


@pytest.mark.slow
def test_tiny_conditional_model_moves_toward_the_condition(tmp_path: Path):
    """Con-CDVAE trained on 8 crystals labelled with the CGCNN formation energy that later checks
    them (elements about 0, CsCl and NaCl about -2, MgO -3 eV/atom): crystals asked for -2 eV/atom
    meet that target far more often than the same model's unconditional samples, by the real
    conditional_generation metric. A few minutes on one core (slow; CI runs it)."""
    from benchmark.metrics.conditional import build_targets, check, load_oracles
    from tests.models.test_cdvae_model import eight_crystals

    oracle_dir = Path(__file__).resolve().parents[2].parent / "shared" / "oracles"
    oracle_dir = Path(os.environ.get("BENCHMARK_ORACLE_DIR") or oracle_dir)
    if not (oracle_dir / "con_cdvae_cgcnn" / "mpall20_fm.pth.tar").is_file():
        pytest.skip("needs the Con-CDVAE CGCNN weights (BENCHMARK_ORACLE_DIR)")
    (target,) = build_targets({"formation_energy_per_atom": -2.0})
    oracles = load_oracles([target], str(oracle_dir))
    crystals = eight_crystals()
    labels = oracles[target.oracle].predict(crystals, progress=False)
    crystals = [c.with_properties(formation_energy_per_atom=float(e)) for c, e in zip(crystals, labels)]

    cfg = resolve(ConCDVAEModel.Config, "smoke", None, None, {
        "conditions": ("formation_energy_per_atom",), "max_epochs": 40, "batch_size": 8, "lr": 2e-3, "gradient_clip_val": 1.0,
        "lr_patience": 1000, "teacher_forcing_max_epoch": 40, "beta": 0.001, "num_noise_level": 10, "n_step_each": 10,
        "prior_epochs": 300, "n_candidates": 2000, "keep": 200})
    model = ConCDVAEModel(cfg)
    summary = model.fit(crystals * 25, [], tmp_path / "fit", seed=0)  # 25 steps per epoch
    curve = summary["train_loss_curve"]
    assert curve[max(curve)] < curve[0] / 5

    def scored(samples: list) -> tuple[float, float, float]:
        """(success rate, mean |prediction - (-2)|, mean prediction) by the real metric's checker."""
        c = check(target, samples, [s.num_atoms > 0 for s in samples], oracles)
        preds = np.array([p for p in c.raw if p is not None], dtype=float)
        return float(c.success.mean()), float(np.abs(preds + 2.0).mean()), float(preds.mean())

    # measured (one thread): asked for -2, 33 % within 0.5 eV/atom, MAD 1.13, mean -1.02 eV/atom;
    # unconditional 12.5 %, MAD 1.79, mean -0.21; asked for 0, metals only, mean +0.21. Bounds sit
    # about halfway; a model that ignores its condition gives alike numbers for all three and fails.
    cond = scored(model.conditional_sample(24, {"formation_energy_per_atom": -2.0}, seed=1).crystals)
    free = scored(model.sample(24, seed=1).crystals)
    zero = scored(model.conditional_sample(24, {"formation_energy_per_atom": 0.0}, seed=1).crystals)
    assert cond[0] >= free[0] + 0.1, (cond, free, zero)
    assert cond[1] < 0.8 * free[1], (cond, free, zero)
    assert cond[2] < zero[2] - 0.5, (cond, free, zero)
