"""CDVAE core network: shapes, losses and gradients, noise schedule, the Langevin sampler against an
exact mock score, determinism, property optimisation and a tiny overfit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark.crystal import Crystal
from benchmark.models.cdvae.config import CDVAEConfig
from benchmark.models.cdvae.network import CDVAE, sample_composition, sanitize_lattice
from benchmark.nn.batch import CrystalBatch
from benchmark.nn.crystalnn import build_graph
from benchmark.nn.periodic import lattice_from_params, min_image_displacement, scale_lengths
from benchmark.nn.schedules import GeometricSigmas


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny graphs: intra-op threads only add contention on a 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def crystals() -> list[Crystal]:
    """Four small cubic crystals of different sizes: CsCl (2), fcc Cu (4), SrTiO3 (5), NaCl (8)."""
    fcc = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    anion = [[0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5], [0.5, 0.5, 0.5]]
    return [
        Crystal([55, 17], [[0, 0, 0], [0.5, 0.5, 0.5]], [4.12] * 3, [90] * 3, label="CsCl"),
        Crystal([29] * 4, fcc, [3.61] * 3, [90] * 3, label="Cu"),
        Crystal([38, 22, 8, 8, 8], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                [3.905] * 3, [90] * 3, label="SrTiO3"),
        Crystal([11] * 4 + [17] * 4, fcc + anion, [5.64] * 3, [90] * 3, label="NaCl"),
    ]


@pytest.fixture(scope="module")
def batch() -> CrystalBatch:
    graphs = [build_graph(c) for c in crystals()]
    assert all(g is not None for g in graphs)
    return CrystalBatch.from_graphs(graphs, y=[0.5, -1.0, 1.5, -0.5])


def tiny_config(**overrides) -> CDVAEConfig:
    """The tiny configuration: latent 16, hidden 16, one encoder and one decoder block, 5 noise
    levels (``property="y"`` adds the property head)."""
    kwargs = dict(
        latent_dim=16, hidden_dim=16, max_atoms=10, num_noise_level=5,
        encoder_hidden=16, encoder_blocks=1, encoder_int_emb_size=8, encoder_basis_emb_size=4,
        encoder_out_emb_size=16, encoder_num_spherical=3, encoder_num_radial=4,
        decoder_hidden=16, decoder_blocks=1, decoder_emb_size_trip=8, decoder_emb_size_rbf=4,
        decoder_emb_size_cbf=4, decoder_emb_size_bil_trip=8, decoder_num_spherical=3, decoder_num_radial=4,
        decoder_num_atom=1,
    )
    kwargs.update(overrides)
    return CDVAEConfig(**kwargs)


def lattice_stats(b: CrystalBatch) -> dict[str, tuple[float, ...]]:
    """The lattice standardisation fitted on the batch (the network's statistics arguments)."""
    raw = torch.cat([scale_lengths(b.lengths, b.num_atoms), b.angles], dim=-1).double()
    return {"lattice_mean": tuple(raw.mean(0).tolist()), "lattice_std": tuple(max(s, 0.1) for s in raw.std(0).tolist())}


def tiny_model(b: CrystalBatch, seed: int = 0, **overrides) -> CDVAE:
    torch.manual_seed(seed)
    return CDVAE(tiny_config(**overrides), **lattice_stats(b))


# ------------------------------------------------------------------------------------ shapes


def test_batch_from_graphs(batch: CrystalBatch) -> None:
    assert batch.num_graphs == 4
    assert batch.num_atoms.tolist() == [2, 4, 5, 8]
    assert batch.atom_types.shape == (19,) and batch.frac_coords.shape == (19, 3)
    assert batch.batch.tolist() == sum(([i] * n for i, n in enumerate([2, 4, 5, 8])), [])
    assert torch.allclose(batch.lengths[:, 0], torch.tensor([4.12, 3.61, 3.905, 5.64]))
    assert torch.allclose(batch.angles, torch.full((4, 3), 90.0))
    assert batch.edge_index.shape[0] == 2 and batch.images.shape == (batch.edge_index.shape[1], 3)
    # edges stay within their crystal
    assert torch.equal(batch.batch[batch.edge_index[0]], batch.batch[batch.edge_index[1]])
    moved = batch.to("cpu")
    assert torch.equal(moved.frac_coords, batch.frac_coords) and moved.y is not None


def test_shapes(batch: CrystalBatch) -> None:
    model = tiny_model(batch, property="y")
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    mu, log_var, z = model.encode(batch, g)
    assert mu.shape == log_var.shape == z.shape == (4, 16)

    agg = model.predict_aggregates(z)
    assert agg["num_atoms_logits"].shape == (4, cfg.max_atoms + 1)
    assert agg["num_atoms"].shape == (4,) and bool((agg["num_atoms"] >= 1).all())
    assert agg["lattice_scaled"].shape == (4, 6)
    assert agg["lengths"].shape == agg["angles"].shape == (4, 3)
    assert agg["composition_logits"].shape == (4, cfg.max_atomic_num)
    assert agg["property"].shape == (4,)
    forced = model.predict_aggregates(z, batch.num_atoms, batch.lengths, batch.angles, teacher_forcing=True)
    assert torch.equal(forced["lengths"], batch.lengths) and torch.equal(forced["num_atoms"], batch.num_atoms)

    losses = model.losses(batch, teacher_forcing=True, generator=g)
    assert set(losses) == {"natom", "lattice", "composition", "coord", "type", "kld", "property", "loss"}
    assert all(v.shape == () for v in losses.values())

    lattice = lattice_from_params(batch.lengths, batch.angles)
    pred, logits = model.decode(z, batch.frac_coords, batch.atom_types, lattice, batch.num_atoms, batch.batch)
    assert pred.shape == (19, 3) and logits.shape == (19, cfg.max_atomic_num)

    out = model.langevin(z, n_step_each=2, generator=g)
    n = int(out["num_atoms"].sum())
    assert out["frac_coords"].shape == (n, 3) and out["atom_types"].shape == (n,)
    assert out["lengths"].shape == out["angles"].shape == (4, 3)
    assert out["model_evaluations"] == cfg.num_noise_level * 2
    assert bool((out["frac_coords"] >= 0).all() and (out["frac_coords"] < 1).all())
    assert bool((out["atom_types"] >= 1).all() and (out["atom_types"] <= cfg.max_atomic_num).all())

    forced_out = model.langevin(z, num_atoms=batch.num_atoms, lengths=batch.lengths, angles=batch.angles,
                                n_step_each=1, min_sigma=0.2, generator=g)
    assert torch.equal(forced_out["num_atoms"], batch.num_atoms)
    assert forced_out["frac_coords"].shape == (19, 3)
    assert forced_out["model_evaluations"] == 3  # sigmas 10, 1.78, 0.32 are >= 0.2

    sampled = model.sample(3, torch.Generator().manual_seed(1), n_step_each=1)
    assert sampled["num_atoms"].shape == (3,) and sampled["frac_coords"].shape == (int(sampled["num_atoms"].sum()), 3)
    recon = model.reconstruct(batch, torch.Generator().manual_seed(1), n_step_each=1)
    assert recon["num_atoms"].shape == (4,) and recon["lengths"].shape == (4, 3)


def test_loss_finite_and_all_parameters_get_gradients(batch: CrystalBatch) -> None:
    model = tiny_model(batch, property="y")
    for forcing in (True, False):
        model.zero_grad(set_to_none=True)
        losses = model.losses(batch, teacher_forcing=forcing, generator=torch.Generator().manual_seed(3))
        assert all(bool(torch.isfinite(v)) for v in losses.values()), losses
        cfg = model.config
        total = (cfg.cost_natom * losses["natom"] + cfg.cost_lattice * losses["lattice"]
                 + cfg.cost_composition * losses["composition"] + cfg.cost_coord * losses["coord"]
                 + cfg.cost_type * losses["type"] + cfg.beta * losses["kld"] + cfg.cost_property * losses["property"])
        assert torch.allclose(losses["loss"], total)
        losses["loss"].backward()
        missing = [name for name, p in model.named_parameters() if p.grad is None]
        assert not missing, missing
        assert all(bool(torch.isfinite(p.grad).all()) for p in model.parameters())


def test_config_and_statistics_are_checked() -> None:
    """The checks of the network's hyper-parameters live in the config; the lattice statistics are
    checked by the network."""
    for bad in (dict(num_noise_level=0), dict(sigma_end=20.0), dict(type_sigma_end=0.0), dict(max_atoms=0),
                dict(fourier_n_min=9)):
        with pytest.raises(ValueError):
            CDVAEConfig(**bad)
    assert CDVAEConfig().predict_property is False and CDVAEConfig(property="heat_ref").predict_property
    assert CDVAEConfig().num_fourier == 36
    with pytest.raises(ValueError, match="6 values"):
        CDVAE(tiny_config(), lattice_mean=[0.0] * 5)
    with pytest.raises(ValueError, match="positive"):
        CDVAE(tiny_config(), lattice_std=[1.0] * 5 + [0.0])


def test_losses_reject_too_many_atoms(batch: CrystalBatch) -> None:
    model = tiny_model(batch, max_atoms=5)
    with pytest.raises(ValueError, match="max_atoms"):
        model.losses(batch, teacher_forcing=True)


# ------------------------------------------------------------------------------ noise schedule


def test_noise_schedule_published_values() -> None:
    cfg = CDVAEConfig()
    published = (cfg.num_noise_level, cfg.sigma_begin, cfg.sigma_end, cfg.type_sigma_begin, cfg.type_sigma_end)
    assert published == (50, 10.0, 0.01, 5.0, 0.01)
    for begin, end in ((cfg.sigma_begin, cfg.sigma_end), (cfg.type_sigma_begin, cfg.type_sigma_end)):
        s = GeometricSigmas(begin, end, cfg.num_noise_level).sigmas().double()
        assert s.shape == (50,)
        assert math.isclose(float(s[0]), begin, rel_tol=1e-6) and math.isclose(float(s[-1]), end, rel_tol=1e-6)
        ratio = s[:-1] / s[1:]
        assert torch.allclose(ratio, torch.full_like(ratio, (begin / end) ** (1 / 49)), rtol=1e-5)
        assert bool((ratio > 1).all())


def test_model_noise_buffers(batch: CrystalBatch) -> None:
    model = tiny_model(batch)
    assert torch.allclose(model.sigmas, GeometricSigmas(10.0, 0.01, 5).sigmas())
    assert torch.allclose(model.type_sigmas, GeometricSigmas(5.0, 0.01, 5).sigmas())
    assert math.isclose(float(model.sigmas[1]), 10 * 1000 ** -0.25, rel_tol=1e-5)
    assert "sigmas" not in model.state_dict()


# ------------------------------------------------------------------------------------ Langevin


def _mock_targets(seed: int = 0):
    """Three cells (one triclinic) with 40 random atoms each and random target types."""
    g = torch.Generator().manual_seed(seed)
    num_atoms = torch.tensor([40, 40, 40])
    lengths = torch.tensor([[6.0, 6.0, 6.0], [5.0, 6.0, 7.0], [7.5, 7.5, 9.0]])
    angles = torch.tensor([[90.0, 90.0, 90.0], [80.0, 95.0, 105.0], [90.0, 90.0, 120.0]])
    target = torch.rand(120, 3, generator=g)
    types = torch.randint(1, 101, (120,), generator=g)
    return num_atoms, lengths, angles, target, types


def _install_mock_score(model: CDVAE, monkeypatch: pytest.MonkeyPatch, target: torch.Tensor, types: torch.Tensor,
                        n_step_each: int) -> list[float]:
    """Replace the decoder by the exact score of a point mass at ``target``: the raw output is
    ``d_min(X_true, X) / sigma_j`` (what Eq. 2 trains it to be), sigma_j known from the call count
    (levels run largest first, ``n_step_each`` calls each). Types: logits peaked at ``types``."""
    sigmas = model.sigmas.tolist()
    seen: list[float] = []

    def mock_decode(z, frac, atom_types, lattice, num_atoms, batch):
        sigma = sigmas[len(seen) // n_step_each]
        seen.append(sigma)
        pred = min_image_displacement(target, frac, lattice, num_atoms) / sigma  # (N, 3)
        logits = torch.nn.functional.one_hot(types - 1, model.config.max_atomic_num).float() * 10.0
        return pred, logits

    monkeypatch.setattr(model, "decode", mock_decode)
    return seen


def _periodic_error(target, frac, lengths, angles, num_atoms) -> torch.Tensor:
    """(N, 3) Cartesian minimum-image error of the sampled coordinates."""
    return min_image_displacement(frac, target, lattice_from_params(lengths, angles), num_atoms)


def test_langevin_alpha_and_noise_scale_with_exact_score(batch: CrystalBatch, monkeypatch: pytest.MonkeyPatch) -> None:
    """With step_lr = sigma_L^2 the force term alpha_j s_X = (eps / sigma_L^2) d_min is exactly
    d_min: every step lands on the target plus sqrt(2 alpha_j) noise. Stopping after the level
    sigma_j = 0.056 (min_sigma = 0.05) the error has std sqrt(2 eps) sigma_j / sigma_L per
    Cartesian component: this checks the sign of the score, alpha_j and the noise scale."""
    model = tiny_model(batch)
    num_atoms, lengths, angles, target, types = _mock_targets()
    seen = _install_mock_score(model, monkeypatch, target, types, n_step_each=3)
    step_lr = float(model.sigmas[-1]) ** 2
    out = model.langevin(torch.zeros(3, 16), num_atoms=num_atoms, lengths=lengths, angles=angles, n_step_each=3,
                         step_lr=step_lr, min_sigma=0.05, generator=torch.Generator().manual_seed(0))
    sigmas = model.sigmas.tolist()
    assert seen == [s for s in sigmas[:4] for _ in range(3)]
    assert out["model_evaluations"] == 12
    assert torch.equal(out["atom_types"], types)
    err = _periodic_error(target, out["frac_coords"], lengths, angles, num_atoms)
    expected = math.sqrt(2 * step_lr) * sigmas[3] / sigmas[-1]  # 0.0795 Å
    rms = float(err.pow(2).mean().sqrt())
    assert 0.85 * expected < rms < 1.15 * expected, (rms, expected)
    assert abs(float(err.mean())) < 0.02  # no drift


def test_langevin_converges_to_target_with_exact_score(batch: CrystalBatch, monkeypatch: pytest.MonkeyPatch) -> None:
    """The full annealing (5 levels, 10 steps each) with the published step size: the sampler
    pulls uniformly random coordinates onto the target up to the last level's noise."""
    model = tiny_model(batch)
    num_atoms, lengths, angles, target, types = _mock_targets(seed=1)
    _install_mock_score(model, monkeypatch, target, types, n_step_each=10)
    out = model.langevin(torch.zeros(3, 16), num_atoms=num_atoms, lengths=lengths, angles=angles, n_step_each=10,
                         step_lr=1e-4, generator=torch.Generator().manual_seed(0))
    dist = _periodic_error(target, out["frac_coords"], lengths, angles, num_atoms).norm(dim=-1)
    # steady state at the last level: error std sqrt(2 * 1e-4) = 0.014 Å per component
    assert float(dist.max()) < 0.1 and float(dist.mean()) < 0.04
    # the same with a weaker pull (k = eps / sigma_L^2 = 0.5)
    _install_mock_score(model, monkeypatch, target, types, n_step_each=10)
    out = model.langevin(torch.zeros(3, 16), num_atoms=num_atoms, lengths=lengths, angles=angles, n_step_each=10,
                         step_lr=0.5e-4, generator=torch.Generator().manual_seed(0))
    dist = _periodic_error(target, out["frac_coords"], lengths, angles, num_atoms).norm(dim=-1)
    assert float(dist.max()) < 0.1 and float(dist.mean()) < 0.04


def test_same_seed_same_samples(batch: CrystalBatch) -> None:
    model = tiny_model(batch)
    a = model.sample(4, torch.Generator().manual_seed(7), n_step_each=2)
    b = model.sample(4, torch.Generator().manual_seed(7), n_step_each=2)
    c = model.sample(4, torch.Generator().manual_seed(8), n_step_each=2)
    for key in ("frac_coords", "atom_types", "num_atoms", "lengths", "angles"):
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["frac_coords"], c["frac_coords"])
    r1 = model.reconstruct(batch, torch.Generator().manual_seed(3), n_step_each=1)
    r2 = model.reconstruct(batch, torch.Generator().manual_seed(3), n_step_each=1)
    assert torch.equal(r1["frac_coords"], r2["frac_coords"]) and torch.equal(r1["atom_types"], r2["atom_types"])
    l1 = model.losses(batch, True, torch.Generator().manual_seed(5))["loss"]
    l2 = model.losses(batch, True, torch.Generator().manual_seed(5))["loss"]
    assert torch.equal(l1, l2)


def test_sample_composition() -> None:
    probs = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.2, 0.0, 0.8, 0.0], [0.0, 0.0, 0.0, 1.0]])
    num_atoms = torch.tensor([4, 3, 2])
    types = sample_composition(probs, num_atoms, torch.Generator().manual_seed(0))
    assert types.shape == (9,)
    assert sorted(types[:4].tolist()) == [1, 1, 2, 2]
    assert types[4:7].tolist().count(3) >= 2 and set(types[4:7].tolist()) <= {1, 3}
    assert types[7:].tolist() == [4, 4]
    # the expected count of each element is n c_k
    many = sample_composition(torch.tensor([[0.3, 0.7]]).repeat(2000, 1), torch.full((2000,), 2),
                              torch.Generator().manual_seed(1))
    assert abs(float((many == 1).float().mean()) - 0.3) < 0.03


def test_sanitize_lattice() -> None:
    lengths, angles = sanitize_lattice(torch.tensor([[-1.0, 0.5, 4.0], [4.0, 4.0, 4.0]]),
                                       torch.tensor([[90.0, 90.0, 200.0], [150.0, 150.0, 60.0]]))
    assert lengths.tolist()[0] == [1.0, 1.0, 4.0]
    assert angles.tolist()[0] == [90.0, 90.0, 150.0]
    assert angles.tolist()[1] == [90.0, 90.0, 90.0]  # 150 + 150 + 60 = 360: flat cell
    assert bool((torch.linalg.det(lattice_from_params(lengths, angles)).abs() > 1.0).all())


# ---------------------------------------------------------------------------------- training


def _train(model: CDVAE, b: CrystalBatch, steps: int, lr: float, seed: int = 0) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        model.losses(b, teacher_forcing=True, generator=g)["loss"].backward()
        opt.step()


def _eval_loss(model: CDVAE, b: CrystalBatch, repeats: int = 8) -> float:
    """Total loss averaged over fixed noise draws."""
    with torch.no_grad():
        return float(np.mean([float(model.losses(b, True, torch.Generator().manual_seed(100 + r))["loss"])
                              for r in range(repeats)]))


def test_optimize_decreases_property(batch: CrystalBatch) -> None:
    model = tiny_model(batch, property="y")
    _train(model, batch, steps=20, lr=3e-3)
    results = model.optimize(batch, steps=30, lr=0.05, n_decode=3, generator=torch.Generator().manual_seed(0),
                             n_step_each=1, latent="mean", schedule="even")
    assert len(results) == 3
    assert [r["step"] for r in results] == [10, 20, 30]
    released = model.optimize(batch, steps=30, lr=0.05, n_decode=3, generator=torch.Generator().manual_seed(0), n_step_each=1)
    assert [r["step"] for r in released] == [1, 16, 30]  # CDVAE's evaluate.py: i % (30 // 2) == 0 or i == 29
    with torch.no_grad():
        start = model.fc_property(model.encode(batch)[0]).squeeze(-1)
    props = torch.stack([r["property"] for r in results])  # (3, B)
    assert bool((props[0] < start).all() and (props[1:] < props[:-1]).all()), (start, props)
    for r in results:
        assert r["z"].shape == (4, 16)
        assert r["frac_coords"].shape == (int(r["num_atoms"].sum()), 3)
        assert r["model_evaluations"] == model.config.num_noise_level


def test_optimize_needs_property_head(batch: CrystalBatch) -> None:
    with pytest.raises(RuntimeError, match="predict_property"):
        tiny_model(batch).optimize(batch, steps=1, lr=0.1, n_decode=1, generator=None, n_step_each=1)


def test_tiny_overfit(batch: CrystalBatch) -> None:
    """Four crystals, a few hundred steps: the total loss (Eq. 9, averaged over fixed noise draws)
    falls by more than 5x."""
    model = tiny_model(batch, seed=1)
    before = _eval_loss(model, batch)
    _train(model, batch, steps=300, lr=3e-3)
    after = _eval_loss(model, batch)
    assert after < before / 5, (before, after)


def test_validation_and_training_losses_as_released(batch: CrystalBatch) -> None:
    """CDVAE's released compute_stats: the validation loss is cost_coord * coord + cost_type * type;
    training minimises Eq. 9's total, with the coordinate weight boosted after coord_boost_epoch
    when that is set (DP-CDVAE's mul_cost_coord_epoch)."""
    import dataclasses

    model = tiny_model(batch)
    parts = model.losses(batch, teacher_forcing=False, generator=torch.Generator().manual_seed(0))
    cfg = model.config
    assert float(model.validation_loss(parts)) == pytest.approx(float(cfg.cost_coord * parts["coord"] + cfg.cost_type * parts["type"]))
    assert float(model.training_loss(parts, epoch=10_000)) == pytest.approx(float(parts["loss"]))  # no boost in CDVAE
    model.config = dataclasses.replace(cfg, coord_boost_epoch=5)
    assert float(model.training_loss(parts, epoch=5)) == pytest.approx(float(parts["loss"]))
    assert float(model.training_loss(parts, epoch=6)) == pytest.approx(float(parts["loss"] + 9 * cfg.cost_coord * parts["coord"]))


def test_released_decoder_lattice_trains_the_lattice_head_through_the_decoder(batch: CrystalBatch) -> None:
    """After teacher forcing, the released CDVAE builds the noisy input on the predicted cell without
    detaching it, so the decoder's coordinate loss reaches the lattice head; ``detached`` cuts it off."""
    import dataclasses

    grads = {}
    for mode in ("released", "detached"):
        model = tiny_model(batch)
        model.config = dataclasses.replace(model.config, decoder_lattice=mode)
        parts = model.losses(batch, teacher_forcing=False, generator=torch.Generator().manual_seed(0))
        head = [p for p in model.fc_lattice.parameters()]
        g = torch.autograd.grad(parts["coord"], head, allow_unused=True)
        grads[mode] = sum(float(x.abs().sum()) for x in g if x is not None)
    assert grads["released"] > 0 and grads["detached"] == 0


def test_a_diverged_encoder_is_a_clear_error(batch: CrystalBatch) -> None:
    """When the encoder's log-variance overflows exp, encode says so with the numbers (it used to
    surface as torch.multinomial's 'probability tensor contains inf or nan' two calls later)."""
    net = CDVAE(tiny_config()).train()
    with torch.no_grad():
        net.fc_var.bias.fill_(300.0)  # exp(150) overflows float32
    with pytest.raises(FloatingPointError, match="log-variance"):
        net.encode(batch)
    with torch.no_grad():
        net.fc_var.bias.fill_(0.0)
    assert torch.isfinite(net.encode(batch)[2]).all()
