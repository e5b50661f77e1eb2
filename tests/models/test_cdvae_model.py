"""The ``cdvae`` plugin: the contract every model passes, the CLI path a user runs, and a tiny
config that learns to reconstruct a handful of crystals (scored by the real metrics)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmark.config import resolve
from benchmark.crystal import Crystal
from benchmark.models.cdvae.plugin import CHECKPOINT_FORMAT, CDVAEConfig, CDVAEModel
from benchmark.testing import ModelContract, check_published, contract_crystals

FCC = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
FCC_SHIFTED = [[0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5], [0.5, 0.5, 0.5]]
BCC = [[0, 0, 0], [0.5, 0.5, 0.5]]


@pytest.fixture(autouse=True)
def one_thread():
    # two torch threads on two busy cores are slower than one for these small graphs
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


class TestCDVAEContract(ModelContract):
    model_class = CDVAEModel
    sampling_change = {"n_step_each": 3}


def cubic(z: list[int], frac: list[list[float]], a: float, label: str) -> Crystal:
    return Crystal(np.array(z), np.array(frac, dtype=float), np.array([a] * 3), np.array([90.0] * 3), label=label)


def eight_crystals() -> list[Crystal]:
    """Eight small cubic crystals: elements, and binaries whose two sites differ in geometry."""
    return [
        cubic([29] * 4, FCC, 3.61, "Cu"), cubic([13] * 4, FCC, 4.05, "Al"), cubic([26] * 2, BCC, 2.87, "Fe"),
        cubic([74] * 2, BCC, 3.16, "W"), cubic([84], [[0, 0, 0]], 3.35, "Po"), cubic([55, 17], BCC, 4.12, "CsCl"),
        cubic([11] * 4 + [17] * 4, FCC + FCC_SHIFTED, 5.64, "NaCl"), cubic([12] * 4 + [8] * 4, FCC + FCC_SHIFTED, 4.21, "MgO"),
    ]


def test_unencodable_inputs_keep_outputs_aligned(tmp_path):
    cfg = resolve(CDVAEConfig, "smoke", None, None, {"max_epochs": 1, "num_noise_level": 2, "n_step_each": 2})
    model = CDVAEModel(cfg)
    model.fit(contract_crystals(8), [], tmp_path / "fit", seed=0)
    broken = cubic([6], [[np.nan, 0, 0]], 3.0, "NaN coordinate: no graph, cannot be encoded")
    starts = [contract_crystals(1)[0], broken, contract_crystals(2)[1]]
    out = model.reconstruct(starts, seed=0)
    assert len(out) == 3 and out[1].num_atoms == 0 and out[0].num_atoms > 0 and out[2].num_atoms > 0
    with pytest.raises(Exception, match="property"):
        model.optimize(starts, seed=0, steps=2, n_decode=1)  # trained without a property head


def test_property_head_and_optimisation(tmp_path):
    crystals = [c.with_properties(e=float(k % 5)) for k, c in enumerate(contract_crystals(10))]
    cfg = resolve(CDVAEConfig, "smoke", None, None, {"max_epochs": 2, "num_noise_level": 2, "n_step_each": 2, "property": "e"})
    model = CDVAEModel(cfg)
    model.fit(crystals, [], tmp_path / "fit", seed=0)
    model.save(tmp_path / "m.pt")
    loaded = CDVAEModel.load(tmp_path / "m.pt")
    assert loaded.prop_scale == pytest.approx((2.0, np.std([k % 5 for k in range(10)])))
    assert loaded.config == model.config and loaded.net.config == model.net.config
    # the checkpoint: the config as a plain dict and the training statistics the network is rebuilt from
    data = torch.load(tmp_path / "m.pt", weights_only=True)
    assert data["format"] == CHECKPOINT_FORMAT == 2 and data["config"]["property"] == "e"
    assert set(data["statistics"]) == {"lattice_mean", "lattice_std"} and len(data["statistics"]["lattice_std"]) == 6
    torch.testing.assert_close(loaded.net.lattice_std, model.net.lattice_std)
    data["format"] = 1  # an older checkpoint is refused with a clear message
    torch.save(data, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="format 1; this version reads format 2"):
        CDVAEModel.load(tmp_path / "old.pt")
    steps = loaded.optimize(crystals[:3], seed=0, steps=6, n_decode=2)
    assert len(steps) == 2 and all(len(s) == 3 for s in steps)


def test_cli_run_generation_on_toy(tmp_path):
    from benchmark.cli import main

    out = tmp_path / "m.json"
    code = main(["run", "--model", "cdvae", "--task", "generation", "--dataset", "toy", "--preset", "smoke",
                 "--set", "model.max_epochs=2", "--set", "task.n_samples=16", "--set", "task.batch_size=16",
                 "--runs-dir", str(tmp_path / "runs"), "--json", str(out), "--no-progress", "--jobs", "1"])
    assert code == 0
    metrics = json.loads(out.read_text())
    assert 0.0 <= metrics["struct_valid"] <= 1.0 and "cov_recall" in metrics
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*generation*/record.json")]
    assert record["model"]["name"] == "cdvae" and record["model"]["checkpoint_sha256"]
    assert record["fit"]["epochs"] == 2


@pytest.mark.slow
def test_tiny_config_learns_to_reconstruct_eight_crystals(tmp_path):
    """Train the smoke network on 8 crystals until it reconstructs them: scored with the real
    reconstruction metric (StructureMatcher 0.5, 10, 0.3) and validity; samples must be valid.

    The bound has a margin measured over seeds, not over one lucky run (issue 13): at lr 2e-3 the
    match rate after 120 epochs was 0.75 / 0.625 / 0.75 / 0.625 / 0.25 for seeds 0 / 1 / 2 / 4 / 5
    and seed 3 diverged (the encoder's log-variance jumped from 14 to 281 in one step, exp
    overflowed); at the released lr 1e-3 it is 0.75 / 0.625 / 0.75 / 0.75 / 0.75 / 0.625 for
    seeds 0-5 with no divergence. So lr 1e-3, and the bound 0.5 sits one crystal below the worst
    seed. About three and a half minutes on one core, so it is slow; CI runs it after the default
    suite."""
    from benchmark.metrics.crystal_eval import evaluate_crystal
    from benchmark.metrics.profiles import get_profile
    from benchmark.metrics.reconstruction import rms_distances

    crystals = eight_crystals()
    cfg = resolve(CDVAEConfig, "smoke", None, None, {
        "max_epochs": 120, "batch_size": 8, "lr": 1e-3, "gradient_clip_val": 1.0, "lr_patience": 1000, "teacher_forcing_max_epoch": 120,
        "beta": 0.001, "num_noise_level": 10, "n_step_each": 20,
    })
    model = CDVAEModel(cfg)
    summary = model.fit(crystals * 25, [], tmp_path / "fit", seed=0)  # 25 steps per epoch
    curve = summary["train_loss_curve"]
    assert curve[max(curve)] < curve[0] / 10
    recon = model.reconstruct(crystals, seed=0)
    profile = get_profile("cdvae")
    valid = [evaluate_crystal(c, profile).valid for c in recon]
    rms = rms_distances(recon, crystals, valid, (0.5, 10.0, 0.3), n_jobs=1)
    match_rate = sum(r is not None for r in rms) / len(rms)
    assert summary["skipped_steps"] == 0
    assert match_rate >= 0.5, (match_rate, recon)
    samples = model.sample(16, seed=0).crystals
    assert np.mean([evaluate_crystal(c, profile).struct_valid for c in samples]) >= 0.5


def test_decoder_score_rotates_ignores_a_common_shift_and_follows_a_permutation():
    """The CDVAE decoder on its own on-the-fly periodic graph: rotating the crystal (its lattice)
    rotates the coordinate score; shifting every atom by one vector changes nothing; permuting the
    atoms permutes the outputs."""
    from benchmark.models.cdvae.network import CDVAE
    from benchmark.nn.periodic import lattice_from_params

    torch.manual_seed(0)
    cfg = resolve(CDVAEConfig, "smoke", None, None, {})
    net = CDVAE(cfg, lattice_mean=[3.0] * 3 + [90.0] * 3, lattice_std=[1.0] * 6).double().eval()
    gen = torch.Generator().manual_seed(1)
    frac = torch.rand(5, 3, generator=gen, dtype=torch.float64)
    types = torch.tensor([38, 22, 8, 8, 8])
    lattice = lattice_from_params(torch.tensor([[4.1, 4.3, 3.9]], dtype=torch.float64), torch.tensor([[85.0, 95.0, 100.0]], dtype=torch.float64))
    n, batch = torch.tensor([5]), torch.zeros(5, dtype=torch.long)
    z = torch.randn(1, cfg.latent_dim, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        score, logits = net.decode(z, frac, types, lattice, n, batch)
        q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
        rot_score, rot_logits = net.decode(z, frac, types, lattice @ q.T, n, batch)  # rows a, b, c rotated
        shifted, shift_logits = net.decode(z, (frac + torch.tensor([0.31, -0.12, 0.77], dtype=torch.float64)) % 1.0, types, lattice, n, batch)
        perm = torch.tensor([3, 0, 4, 1, 2])
        perm_score, perm_logits = net.decode(z, frac[perm], types[perm], lattice, n, batch)
    assert score.abs().max() > 1e-6  # not trivially zero
    torch.testing.assert_close(rot_score, score @ q.T, atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(rot_logits, logits, atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(shifted, score, atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(shift_logits, logits, atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(perm_score, score[perm], atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(perm_logits, logits[perm], atol=1e-8, rtol=1e-6)


def test_teacher_forcing_lattice_switch():
    """``teacher_forcing_lattice`` (on by default) lets the first ``teacher_forcing_max_epoch``
    epochs decode on the true lattice; off, every epoch decodes on the predicted one."""
    from types import SimpleNamespace

    from benchmark.models.cdvae.plugin import _lightning_module

    seen = []

    class Net(torch.nn.Module):
        def losses(self, batch, teacher_forcing):
            seen.append(teacher_forcing)
            return {"loss": torch.zeros(()), "coord": torch.zeros(()), "type": torch.zeros(())}

        def training_loss(self, parts, epoch):
            return parts["loss"]

        def validation_loss(self, parts):
            return parts["coord"]

    for flag in (True, False):
        cfg = CDVAEConfig(teacher_forcing_lattice=flag)
        module = _lightning_module(Net(), cfg, {"config": {}, "monitor": "train_loss"})
        module.training_step(SimpleNamespace(num_graphs=1), 0)  # epoch 0 <= teacher_forcing_max_epoch
        module.validation_step(SimpleNamespace(num_graphs=1), 0)  # validation: never teacher-forced (released)
    assert seen == [True, False, False, False]


@pytest.mark.parametrize("dataset", ["perov_5", "carbon_24", "mp_20"])
def test_paper_preset_is_the_published_table(dataset):
    """Every value of the paper preset equals the table of published values with its sources
    (models/cdvae/config.py PUBLISHED), so a later edit of either cannot drift silently."""
    from benchmark.config import resolve
    from benchmark.models.cdvae.config import PUBLISHED, CDVAEConfig

    config = resolve(CDVAEConfig, "paper", dataset)
    expected = {**PUBLISHED["*"], **PUBLISHED[dataset]}
    check_published(config, expected, unused=("fourier_n_min", "fourier_n_max"))  # (used only with decoder_fourier)


@pytest.mark.parametrize("dataset", ["perov_5", "carbon_24", "mp_20"])
def test_cdvae_fourier_paper_is_cdvae_with_the_released_frequencies(dataset):
    """CDVAE+Fourier's paper preset is CDVAE's published table with the Fourier features at
    DP-CDVAE's released frequencies (2 pi 2^n, n = 3..8, i.e. pi 2^n, n = 4..9 here): every field
    covered; smoke keeps n = 3..8."""
    from benchmark.config import resolve
    from benchmark.models.cdvae.config import PUBLISHED, PUBLISHED_FOURIER, CDVAEFourierConfig

    config = resolve(CDVAEFourierConfig, "paper", dataset)
    expected = {**PUBLISHED["*"], **PUBLISHED[dataset], **PUBLISHED_FOURIER}
    check_published(config, expected)
    smoke = resolve(CDVAEFourierConfig, "smoke", dataset)
    assert (smoke.fourier_n_min, smoke.fourier_n_max, smoke.decoder_fourier) == (3, 8, True)


def test_released_decode_schedule():
    """The released evaluate.py decodes after 1, 556, ..., 4996 and 5000 of 5,000 steps (11 decodes);
    the even schedule every 500."""
    from benchmark.models.cdvae.network import decode_steps

    released = decode_steps(5000, 10, "released")
    assert released == [1 + 555 * k for k in range(10)] + [5000]
    assert decode_steps(5000, 10, "even") == list(range(500, 5001, 500))
    assert decode_steps(100, 2, "released") == [1, 100]
    assert decode_steps(100, 3, "released") == [1, 51, 100]
