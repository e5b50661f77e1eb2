"""FTCP (models/ftcp): the plugin contract, the paper preset against its published table, the
network's shapes and TensorFlow padding, the released loss on a hand example, the learning-rate
callbacks, inverse design, and (slow) that it learns to reconstruct a few perovskites."""

from __future__ import annotations

import dataclasses
import importlib.util
import math

import numpy as np
import pytest
import torch

from benchmark.models.ftcp.network import FTCPNet, SameConv1d, SameConvTranspose1d, kl_per_sample, vae_loss
from benchmark.models.ftcp.plugin import FTCPModel, decode_steps
from benchmark.testing import ModelContract, check_published, contract_crystals

HAVE_REPRESENTATION = importlib.util.find_spec("benchmark.representations.ftcp") is not None


def _atom_init_found() -> bool:
    """Whether CGCNN's atom_init.json (the FTCP arrays' element features) is in an oracle directory."""
    try:
        from benchmark.elements import find_atom_init
    except ImportError:
        return False
    return find_atom_init() is not None


#: encoding needs the representation and CGCNN's element vectors (never downloaded by the tests)
needs_encoding = pytest.mark.skipif(not (HAVE_REPRESENTATION and _atom_init_found()),
                                    reason="needs benchmark.representations.ftcp and CGCNN's atom_init.json "
                                           "(python -m benchmark oracle fetch con-cdvae, or BENCHMARK_ORACLE_DIR)")
#: a network small enough for the contract's fits to take seconds
TINY = {"latent_dim": 8, "conv_filters": (4, 4, 8), "dense_width": 32, "property_widths": (8, 4)}


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ------------------------------------------------------------------------------ contract
@needs_encoding
class TestFTCPContract(ModelContract):
    """The contract on the tiny network, 2 epochs of batch 8 on the 16 contract crystals, with the
    computed ``num_atoms`` as the property (the contract crystals carry no property columns)."""

    model_class = FTCPModel
    overrides = {**TINY, "properties": ("num_atoms",), "batch_size": 8, "max_epochs": 2}
    conditions = {"num_atoms": 5.0}

    def test_optimize_gives_step_major_lists(self, tmp_path_factory):
        """Model.optimize's layout: one list per decode (CDVAE's released schedule), one crystal per
        start; the branch's prediction falls along the trajectory."""
        model, _ = self._fitted(tmp_path_factory)
        starts = contract_crystals(3)
        rows = model.optimize(starts, seed=0, steps=40, lr=1e-2, n_decode=2)
        assert len(rows) == len(decode_steps(40, 2)) == 2 and all(len(r) == 3 for r in rows)
        summary = model.last_optimize_summary
        assert summary["steps"] == [1, 40] and summary["property"] == "num_atoms"
        first, last = np.mean(summary["predicted"][0]), np.mean(summary["predicted"][-1])
        assert last < first, f"the predicted property did not fall: {first} -> {last}"

    def test_undecodable_arrays_keep_their_place(self, tmp_path_factory):
        """An all-zero (unscaled) array has no occupied site: a zero-atom crystal with the reason,
        in its place between two encoded crystals, which decode."""
        model, _ = self._fitted(tmp_path_factory)
        x, ok, _ = model.encode_scaled(contract_crystals(2))
        arrays = np.stack([x[0], model.scaler.transform(np.zeros_like(x[0])), x[1]])
        crystals, failed = model.to_crystals(arrays)
        assert ok == [0, 1] and len(crystals) == 3 and failed == 1
        assert crystals[0].num_atoms == 5 and crystals[2].num_atoms == 5
        assert crystals[1].num_atoms == 0 and crystals[1].properties["decode_error"]
        assert np.all(np.isfinite(crystals[1].lengths)) and np.all(crystals[1].lengths > 0)

    def test_without_properties_optimize_and_conditioning_are_refused(self, tmp_path):
        from benchmark.models.base import NotSupported
        from benchmark.testing import fit_model

        model, summary = fit_model(FTCPModel, tmp_path, overrides={**TINY, "batch_size": 8, "max_epochs": 1})
        assert model.net.property_head is None and summary["n_train"] == 16
        with pytest.raises(NotSupported):
            model.optimize(contract_crystals(1), seed=0, steps=1, n_decode=1)
        with pytest.raises(NotSupported):
            model.conditional_sample(1, {"num_atoms": 5.0}, seed=0)


# ------------------------------------------------------------------------------ configuration
def test_paper_preset_is_the_published_table():
    """Every field of the paper preset equals PUBLISHED (models/ftcp/config.py), each with a source."""
    from benchmark.config import resolve
    from benchmark.models.ftcp.config import PUBLISHED

    config = resolve(FTCPModel.Config, "paper")
    check_published(config, PUBLISHED)
    assert set(PUBLISHED) <= {f.name for f in dataclasses.fields(config)}  # no stale rows


def test_dataset_presets_learn_the_dataset_target():
    """The property branch learns each dataset's target column, the one property optimisation scores."""
    from benchmark.config import resolve

    for preset in ("paper", "smoke"):
        assert resolve(FTCPModel.Config, preset, "perov_5").properties == ("heat_ref",)
        assert resolve(FTCPModel.Config, preset, "carbon_24").properties == ("energy_per_atom",)
        assert resolve(FTCPModel.Config, preset, "mp_20").properties == ("formation_energy_per_atom",)


def test_registered():
    from benchmark.registry import get_plugins

    assert get_plugins()["models"].get("ftcp") is FTCPModel


# ------------------------------------------------------------------------------ network
def test_network_shapes_as_released():
    """model.py shapes: (B, R, C) -> Conv1D over the R rows with C channels -> L = R / 4 positions
    of 128 filters -> Dense 1024 -> mu, log_var (B, 256); property (B, n_props) in [0, 1]; decoder
    (B, 256) -> (B, R, C) in [0, 1]."""
    torch.manual_seed(0)
    net = FTCPNet(208, 62, 2)
    assert net.map_size == 52
    assert net.encoder_dense.in_features == 52 * 128 and net.encoder_dense.out_features == 1024
    assert net.decoder_dense.out_features == 52 * 128
    convs = [m for m in net.encoder_convs if isinstance(m, SameConv1d)]
    assert [(m.conv.in_channels, m.conv.out_channels, m.kernel_size, m.stride) for m in convs] == [(62, 32, 5, 2), (32, 64, 3, 2), (64, 128, 3, 1)]
    ups = [m for m in net.decoder_convs if isinstance(m, SameConvTranspose1d)]
    assert [(m.conv.in_channels, m.conv.out_channels, m.kernel_size, m.stride) for m in ups] == [(128, 64, 3, 1), (64, 32, 3, 2), (32, 62, 5, 2)]
    x = torch.rand(3, 208, 62)
    out = net(x)
    assert out["x_hat"].shape == (3, 208, 62) and out["mu"].shape == (3, 256) and out["log_var"].shape == (3, 256)
    assert out["y_hat"].shape == (3, 2)
    for key in ("x_hat", "y_hat"):
        assert float(out[key].min()) >= 0 and float(out[key].max()) <= 1
    assert FTCPNet(208, 62, 0)(x)["y_hat"] is None
    with pytest.raises(ValueError, match="multiple of"):
        FTCPNet(210, 62, 1)


def test_same_padding_is_tensorflows():
    """TensorFlow's SAME: a stride-2 kernel-5 convolution of 8 positions pads 1 left and 2 right
    (PyTorch's symmetric padding would pad 2 and 1), and the transposed convolution is its adjoint:
    <conv(x), y> = <x, conv^T(y)> with the same weights."""
    torch.manual_seed(0)
    for k, s in ((5, 2), (3, 2), (3, 1)):
        conv = SameConv1d(1, 1, k, s)
        up = SameConvTranspose1d(1, 1, k, s)
        with torch.no_grad():
            up.conv.weight.copy_(conv.conv.weight)
            conv.conv.bias.zero_()
            up.conv.bias.zero_()
        x = torch.randn(1, 1, 8)
        y = torch.randn(1, 1, 8 // s)
        assert conv(x).shape[-1] == 8 // s and up(y).shape[-1] == 8
        assert torch.allclose((conv(x) * y).sum(), (x * up(y)).sum(), atol=1e-5)
    conv = SameConv1d(1, 1, 5, 2)
    with torch.no_grad():
        conv.conv.weight.copy_(torch.tensor([[[0.0, 0.0, 1.0, 0.0, 0.0]]]))
        conv.conv.bias.zero_()
    x = torch.arange(8.0).view(1, 1, 8)
    # padded (1, 2): output i's window starts at padded position 2 i, its centre tap reads input 2 i + 1
    assert conv(x).flatten().tolist() == [1.0, 3.0, 5.0, 7.0]


def test_property_branch_reads_the_mean():
    """model.py:70: the branch is fed ReLU(z_mean), so y_hat does not depend on the sampling noise."""
    torch.manual_seed(0)
    net = FTCPNet(16, 8, 1, latent_dim=4, conv_filters=(2, 2, 4), dense_width=8, property_widths=(4, 2)).eval()
    x = torch.rand(2, 16, 8)
    a = net(x, generator=torch.Generator().manual_seed(0))
    b = net(x, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(a["z"], b["z"]) and torch.equal(a["y_hat"], b["y_hat"])


def test_loss_terms_on_a_hand_example():
    """model.py:114-124 by hand: recon = sum over batch and array of squared errors; KL per sample
    the mean over latent dims of -0.5 (1 + lv - mu^2 - e^lv), averaged over the batch; property the
    batch sum of squared errors; loss = recon + 2 KL + 10 prop."""
    x = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 0.0], [1.0, 1.0]]])  # (2, 2, 2)
    x_hat = torch.tensor([[[0.5, 0.0], [0.5, 0.0]], [[0.0, 1.0], [1.0, 1.0]]])
    recon = 0.25 + 0.25 + 1.0  # 1.5
    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    log_var = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    # sample 1: dims (mu 1, lv 0) -> 0.5; (mu 0, lv ln2) -> -0.5 (1 + ln2 - 2) = 0.5 - 0.5 ln2; mean over 2 dims
    kl1 = (0.5 + 0.5 - 0.5 * math.log(2.0)) / 2
    kl2 = (0.0 + 2.0) / 2  # (mu 0, lv 0) -> 0; (mu 2, lv 0) -> 2
    assert torch.allclose(kl_per_sample(mu, log_var), torch.tensor([kl1, kl2]), atol=1e-6)
    y = torch.tensor([[0.0], [1.0]])
    y_hat = torch.tensor([[0.5], [0.5]])
    prop = 0.25 + 0.25
    out = vae_loss(x, x_hat, mu, log_var, y, y_hat, 2.0, 10.0)
    assert float(out["recon"]) == pytest.approx(recon)
    assert float(out["kl"]) == pytest.approx((kl1 + kl2) / 2)
    assert float(out["prop"]) == pytest.approx(prop)
    assert float(out["loss"]) == pytest.approx(recon + 2.0 * (kl1 + kl2) / 2 + 10.0 * prop)
    no_prop = vae_loss(x, x_hat, mu, log_var, None, None)
    assert float(no_prop["prop"]) == 0.0 and float(no_prop["loss"]) == pytest.approx(recon + (kl1 + kl2))


def test_decode_steps_are_cdvaes():
    assert decode_steps(5000, 10) == [1] + [1 + 555 * k for k in range(1, 9)] + [4996, 5000]
    assert decode_steps(100, 2) == [1, 100]
    assert decode_steps(10, 1) == [10]


def _train_on_noise(run_dir, max_epochs: int, **overrides):
    """The plugin's Lightning module on 8 random arrays (no representation needed): the epoch
    hooks' learning rates by epoch."""
    from torch.utils.data import DataLoader, TensorDataset

    from benchmark.config import resolve
    from benchmark.models.ftcp.plugin import _lightning_module
    from benchmark.training import epoch_losses, train_module

    cfg = resolve(FTCPModel.Config, "smoke", None, None, {"properties": ("num_atoms",), "batch_size": 4, "max_epochs": max_epochs, **overrides})
    model = FTCPModel(cfg)
    torch.manual_seed(0)
    model.build(16, 8)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(8, 16, 8, generator=g), torch.rand(8, 1, generator=g))
    module = _lightning_module(model, {"model": "ftcp"})
    summary = train_module(module, DataLoader(data, batch_size=4, shuffle=True, generator=g), None, run_dir,
                           max_epochs=max_epochs, progress=False, keep="last")
    return summary, epoch_losses(run_dir, "lr")


def test_learning_rate_callbacks_follow_keras_and_resume(tmp_path):
    """main.py:45-52 as Keras 2.3.1 runs them: the scheduler sets the rate at the start of its
    epoch, ReduceLROnPlateau multiplies it by the factor after ``patience`` epochs without a drop of
    ``min_delta`` (here never, after the first); the plateau's state comes back with a resumed run."""
    settings = {"lr_schedule_epochs": (2,), "lr_schedule_values": (1e-4,), "plateau_patience": 1, "plateau_min_delta": 1e9}
    _, lrs = _train_on_noise(tmp_path / "once", 3, **settings)
    assert lrs == pytest.approx({0: 5e-4, 1: 1.5e-4, 2: 3e-5})
    _train_on_noise(tmp_path / "twice", 2, **settings)
    summary, lrs = _train_on_noise(tmp_path / "twice", 3, **settings)
    assert summary["resumed_from"] and lrs == pytest.approx({0: 5e-4, 1: 1.5e-4, 2: 3e-5})


def test_inverse_design_perturbs_the_nearest_training_latents():
    """main.py:147-161: the ``design_nearest`` training crystals nearest the target, tiled (np.tile),
    each latent plus N(0, 1) x ``design_scale``; the same seed gives the same latents."""
    from benchmark.config import resolve

    cfg = resolve(FTCPModel.Config, "smoke", None, None, {"properties": ("heat_ref",), "latent_dim": 4, "design_nearest": 2})
    model = FTCPModel(cfg)
    model.train_latents = np.arange(6 * 4, dtype=np.float32).reshape(6, 4) * 100
    model.train_properties = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]])
    model.prop_min, model.prop_max = np.array([0.0]), np.array([5.0])
    z = model.design_latents(5, {"heat_ref": 3.2}, seed=0)
    base = model.train_latents[[3, 4, 3, 4, 3]]  # nearest 3 (0.2 away), then 4 (0.8 away), cycled
    noise = (z - base) / cfg.design_scale
    assert z.shape == (5, 4) and np.abs(noise).max() < 6 and noise.std() > 0.3
    assert np.array_equal(z, model.design_latents(5, {"heat_ref": 3.2}, seed=0))
    assert not np.array_equal(z, model.design_latents(5, {"heat_ref": 3.2}, seed=1))
    with pytest.raises(ValueError, match="not \\['band_gap'\\]"):
        model.design_latents(2, {"band_gap": 1.0}, seed=0)


# ------------------------------------------------------------------------------ learning (slow)
def _reconstruction_error(model: FTCPModel, crystals) -> float:
    """Mean squared error between the scaled arrays of ``crystals`` and their reconstructions
    from the mean latent."""
    x, ok, _ = model.encode_scaled(crystals)
    assert len(ok) == len(crystals)
    x_hat, _ = model.decode_latents(model._latents(x, seed=0, sampled=False))
    return float(np.mean((x.astype(np.float64) - x_hat) ** 2))


def _matches(model: FTCPModel, crystals) -> int:
    """Reconstructions StructureMatcher matches to their inputs (CDVAE's tolerances)."""
    from benchmark.metrics.reconstruction import rms_distances

    out = model.reconstruct(crystals, seed=0)
    return sum(r is not None for r in rms_distances(out, crystals, [c.num_atoms > 0 for c in out], (0.5, 10.0, 0.3)))


@pytest.mark.slow
@needs_encoding
def test_learns_to_reconstruct_sixteen_perovskites(tmp_path):
    """On 16 cubic perovskites (the contract's 7, repeated with 1% and 2% larger cells), the smoke
    network with the released loss and optimiser halves the reconstruction error of the scaled
    arrays and matches more reconstructions to their inputs than the untrained network."""
    from benchmark.testing import fit_model

    crystals = [c for i, c in enumerate(contract_crystals(39)) if i % 13 < 7][:16]
    assert len(crystals) == 16 and all(c.num_atoms == 5 for c in crystals)
    settings = {"properties": ("num_atoms",), "batch_size": 16}

    def fitted(epochs: int, run: str) -> tuple[FTCPModel, dict]:
        model = FTCPModel(FTCPModel.Config(**{**dict(FTCPModel.Config.presets["smoke"]), **settings, "max_epochs": epochs}))
        summary = model.fit(crystals, [], tmp_path / run, seed=0)
        return model, summary

    untrained, _ = fitted(0, "untrained")
    trained, summary = fitted(LEARNING_EPOCHS, "trained")
    before, after = _reconstruction_error(untrained, crystals), _reconstruction_error(trained, crystals)
    matched_before, matched_after = _matches(untrained, crystals), _matches(trained, crystals)
    curve = summary["train_loss_curve"]
    print(f"loss {curve[min(curve)]:.1f} -> {curve[max(curve)]:.1f}; scaled-array MSE {before:.4f} -> {after:.4f}; "
          f"matched {matched_before} -> {matched_after} of 16")
    assert after < before / 2
    assert matched_after > matched_before


#: epochs of one batch of 16 for the learning test
LEARNING_EPOCHS = 600
