"""Con-CDVAE core network: the condition embeddings (Eqs. 8-10, 13), hyper-parameter round trip,
Step-one losses and gradients (Eqs. 11, 12), the latent Prior (Eq. 14) on a toy distribution, the
Langevin sampler against CDVAE's, the Predictor filter and the ``less`` strategy's row drawing."""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.crystal import Crystal
from benchmark.config import build
from benchmark.models.cdvae.network import CDVAE
from benchmark.models.con_cdvae.config import ConCDVAEConfig
from benchmark.models.con_cdvae.network import (
    ConCDVAE,
    ConditionSpec,
    DiscreteEmbedding,
    FormulaEmbedding,
    GaussianBasis,
    Predictor,
    PropEmb,
    condition_columns,
    continuous,
    discrete,
    draw_condition_rows,
    formula,
    formula_fractions,
    select_best,
)
from benchmark.models.con_cdvae.prior import LatentPrior, ResidualMLPDenoiser
from benchmark.nn.batch import CrystalBatch
from benchmark.nn.crystalnn import build_graph
from benchmark.nn.diffusion import respaced_timesteps
from benchmark.nn.periodic import lattice_from_params, scale_lengths


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny graphs: intra-op threads only add contention on a 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


BG = continuous("band_gap", -0.5, 9.0, 20)
CS = discrete("CS_type", 7)
FE = continuous("formation_energy_per_atom", -5.0, 0.5, 12)
NA = continuous("num_atoms", 0.0, 20.0, 21)


def crystals() -> list[Crystal]:
    """Four small cubic crystals with made-up band gaps, formation energies and crystal systems."""
    fcc = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    anion = [[0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5], [0.5, 0.5, 0.5]]
    props = [dict(band_gap=bg, formation_energy_per_atom=fe, CS_type=cs)
             for bg, fe, cs in ((0.0, -0.5, 6), (0.0, 0.0, 6), (3.2, -3.4, 2), (5.0, -2.1, 0))]
    return [
        Crystal([55, 17], [[0, 0, 0], [0.5, 0.5, 0.5]], [4.12] * 3, [90] * 3, props[0], label="CsCl"),
        Crystal([29] * 4, fcc, [3.61] * 3, [90] * 3, props[1], label="Cu"),
        Crystal([38, 22, 8, 8, 8], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                [3.905] * 3, [90] * 3, props[2], label="SrTiO3"),
        Crystal([11] * 4 + [17] * 4, fcc + anion, [5.64] * 3, [90] * 3, props[3], label="NaCl"),
    ]


@pytest.fixture(scope="module")
def batch() -> CrystalBatch:
    cs = crystals()
    graphs = [build_graph(c) for c in cs]
    assert all(g is not None for g in graphs)
    cols = condition_columns(cs, [BG, CS, FE])
    return CrystalBatch.from_graphs(graphs, conditions=cols)


TINY_CONDITIONS = (BG, CS)
TINY_FULL_CONDITIONS = (BG, FE, CS, NA, formula("formula", 8))


def tiny_config(**overrides) -> ConCDVAEConfig:
    """Latent 16, one encoder/decoder block, 5 noise levels, small condition blocks, T = 20 for the
    priors; conditions band gap + crystal system; plain MLPs, no encoder tanh, clamped grids (the
    released BatchNorm, tanh and unclamped grids are tested on their own)."""
    kwargs = dict(
        latent_dim=16, hidden_dim=16, max_atoms=10, num_noise_level=5,
        encoder_hidden=16, encoder_blocks=1, encoder_int_emb_size=8, encoder_basis_emb_size=4,
        encoder_out_emb_size=16, encoder_num_spherical=3, encoder_num_radial=4,
        decoder_hidden=16, decoder_blocks=1, decoder_emb_size_trip=8, decoder_emb_size_rbf=4,
        decoder_emb_size_cbf=4, decoder_emb_size_bil_trip=8, decoder_num_spherical=3, decoder_num_radial=4,
        decoder_num_atom=1, decoder_cutoff=7.0,
        conditions=TINY_CONDITIONS, cond_feature_dim=8, cond_layers=1, cond_class_emb_dim=4, prop_dim=8, prop_layers=1,
        predictor_hidden_dim=8, predictor_layers=1, decoder_time_dim=8, prior_timesteps=20, prior_time_dim=8,
        mlp_batchnorm=False, encoder_tanh=False, condition_clamp=True,
    )
    kwargs.update(overrides)
    return ConCDVAEConfig(**kwargs)


def tiny_model(b: CrystalBatch, seed: int = 0, conditions=TINY_CONDITIONS, full_conditions=TINY_FULL_CONDITIONS,
               element_features=None, **overrides) -> ConCDVAE:
    """:func:`tiny_config`'s network with the lattice standardisation fitted on the batch, the given
    conditions and a full prior on band gap, formation energy, crystal system, number of atoms and
    formula (8-long element vectors: learnable, or ``element_features``)."""
    raw = torch.cat([scale_lengths(b.lengths, b.num_atoms), b.angles], dim=-1).double()
    torch.manual_seed(seed)
    return ConCDVAE(tiny_config(conditions=conditions, **overrides), lattice_mean=tuple(raw.mean(0).tolist()),
                    lattice_std=tuple(max(s, 0.1) for s in raw.std(0).tolist()), conditions=conditions,
                    full_conditions=full_conditions, element_features=element_features)


# ------------------------------------------------------------------------------ embeddings


def test_gaussian_basis_hand_values() -> None:
    """Grid 0..4 with 5 Gaussians: sigma = 1, centres 0, 1, 2, 3, 4 (Eq. 8)."""
    basis = GaussianBasis(0.0, 4.0, 5)
    out = basis(torch.tensor([2.0, 2.5, -3.0, 0.0, 10.0, 4.0]))
    assert out.shape == (6, 5)
    # a = 2: peak 1 on the third function, exp(-1/2) on its neighbours, exp(-2) two away
    assert torch.allclose(out[0], torch.tensor([math.exp(-2), math.exp(-0.5), 1.0, math.exp(-0.5), math.exp(-2)]))
    assert int(out[0].argmax()) == 2
    # a = 2.5: halfway between centres 2 and 3, both exp(-(0.5)^2 / 2)
    assert torch.allclose(out[1, 2:4], torch.full((2,), math.exp(-0.125)))
    # clamping into [min, max]
    assert torch.equal(out[2], out[3]) and int(out[2].argmax()) == 0 and float(out[2, 0]) == 1.0
    assert torch.equal(out[4], out[5]) and int(out[4].argmax()) == 4


def test_condition_spec_strings() -> None:
    spec = ConditionSpec.parse(BG)
    assert (spec.name, spec.kind, spec.low, spec.high, spec.n_basis) == ("band_gap", "continuous", -0.5, 9.0, 20)
    assert spec.spacing == pytest.approx(0.5) and str(spec) == BG
    assert ConditionSpec.parse("spacegroup.number:discrete:231").n_classes == 231
    assert ConditionSpec.parse(formula()).dim == 92
    for bad in ("x:continuous:1:0:5", "x:continuous:0:1:1", "x:discrete:1", "x:unknown:3", "x:discrete"):
        with pytest.raises(ValueError):
            ConditionSpec.parse(bad)


def test_discrete_and_formula_embeddings() -> None:
    torch.manual_seed(0)
    emb = DiscreteEmbedding(ConditionSpec.parse(discrete("cs", 7)), emb_dim=4, out_dim=6, num_layers=2)
    assert emb(torch.tensor([0, 3, 6])).shape == (3, 6)
    assert emb.vectors.weight.shape == (7, 4)  # one learnable vector per class (Eq. 9)
    with pytest.raises(ValueError, match="class indices"):
        emb(torch.tensor([7]))
    # Eq. 13: the MLP input is sum_el n_el v_el
    f = FormulaEmbedding(ConditionSpec.parse(formula("f", 3)), max_atomic_num=10, out_dim=4, num_layers=1)
    f.set_element_features({1: [1.0, 0.0, 0.0], 8: [0.0, 2.0, 1.0]})
    assert not f.elements.requires_grad
    f.mlp = nn.Identity()
    water = torch.as_tensor(formula_fractions("H2O", 10)).float().unsqueeze(0)
    assert torch.allclose(f(water), torch.tensor([[2 / 3, 2 / 3, 1 / 3]]))
    prop = PropEmb([BG, CS, formula("f", 3)], feature_dim=5, num_layers=1, class_emb_dim=4, out_dim=7,
                   mix_layers=1, max_atomic_num=10)
    out = prop({"band_gap": torch.tensor([0.0, 1.5]), "CS_type": torch.tensor([1, 2]), "f": water.expand(2, -1)})
    assert out.shape == (2, 7)
    with pytest.raises(KeyError, match="CS_type"):
        prop({"band_gap": torch.tensor([0.0]), "f": water})


def test_config_survives_a_weights_only_checkpoint(batch: CrystalBatch) -> None:
    cfg = tiny_config(prior_widths=[8, 4])
    assert cfg.prior_widths == (8, 4) and isinstance(cfg.conditions, tuple)
    buf = io.BytesIO()
    torch.save({"config": dataclasses.asdict(cfg)}, buf)
    buf.seek(0)
    data = torch.load(buf, weights_only=True)
    restored = build(ConCDVAEConfig, data["config"])
    assert restored == cfg
    assert ConCDVAEConfig(conditions=list(cfg.conditions)).conditions == cfg.conditions
    # the network keeps its conditions as canonical spec strings, whatever form they are given in
    model = tiny_model(batch, conditions=[ConditionSpec.parse(BG), "CS_type:discrete:7"], full_conditions=[NA])
    assert model.conditions == (BG, CS) and model.full_conditions == (NA,)
    assert [s.name for s in model.condition_specs] == ["band_gap", "CS_type"]
    for bad in (dict(conditions=()), dict(decoder_time_dim=3), dict(alpha=-1.0)):
        with pytest.raises(ValueError):
            tiny_config(**bad)
    with pytest.raises(ValueError, match="at least one condition"):
        ConCDVAE(tiny_config(), conditions=())


def test_batch_carries_conditions(batch: CrystalBatch) -> None:
    assert batch.conditions is not None
    assert batch.conditions["CS_type"].dtype == torch.long and batch.conditions["band_gap"].dtype == torch.float32
    moved = batch.to("cpu")
    assert torch.equal(moved.conditions["band_gap"], batch.conditions["band_gap"])
    model = tiny_model(batch)
    conds = model.batch_conditions(batch, model.full_condition_specs)  # formula, num_atoms derived
    assert torch.equal(conds["num_atoms"], batch.num_atoms.float())
    assert torch.allclose(conds["formula"][2, [7, 21, 37]], torch.tensor([0.6, 0.2, 0.2]))  # SrTiO3: O, Ti, Sr


# ------------------------------------------------------------------------------ losses


@pytest.mark.parametrize("time_dim,detach", [(8, False), (0, True)])
def test_losses_finite_and_all_parameters_get_gradients(batch: CrystalBatch, time_dim: int, detach: bool) -> None:
    model = tiny_model(batch, decoder_time_dim=time_dim, decoder_detach_z=detach)
    assert (model.time_mlp is None) == (time_dim == 0)
    step_one = {id(p) for p in model.step_one_parameters()}
    for forcing in (True, False):
        model.zero_grad(set_to_none=True)
        losses = model.losses(batch, teacher_forcing=forcing, generator=torch.Generator().manual_seed(3))
        assert set(losses) == {"natom", "lattice", "composition", "coord", "type", "kld", "predictor", "loss"}
        assert all(bool(torch.isfinite(v)) for v in losses.values()), losses
        cfg = model.config
        total = (cfg.cost_natom * losses["natom"] + cfg.cost_lattice * losses["lattice"]
                 + cfg.cost_composition * losses["composition"] + cfg.cost_coord * losses["coord"]
                 + cfg.cost_type * losses["type"] + cfg.beta * losses["kld"] + 3.0 * losses["predictor"])
        assert torch.allclose(losses["loss"], total)
        losses["loss"].backward()
        missing = [name for name, p in model.named_parameters() if id(p) in step_one and p.grad is None]
        assert not missing, missing
        assert all(p.grad is None for p in model.prior_parameters("default") + model.prior_parameters("full"))
    # L_pre by hand: normalised MSE (Eq. 12) + cross entropy, on the encoder's z
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
    preds = model.predictor(z)
    conds = model.batch_conditions(batch)
    expected = (((preds["band_gap"] - (conds["band_gap"] + 0.5) / 9.5) ** 2).mean()
                + torch.nn.functional.cross_entropy(preds["CS_type"], conds["CS_type"]))
    assert torch.allclose(model.predictor.loss(z, conds), expected)


def test_prior_losses_train_only_the_prior(batch: CrystalBatch) -> None:
    model = tiny_model(batch)
    for which in ("default", "full"):
        model.zero_grad(set_to_none=True)
        out = model.prior_losses(batch, which, torch.Generator().manual_seed(0))
        assert bool(torch.isfinite(out["loss"]))
        out["loss"].backward()
        assert all(p.grad is not None for p in model.prior_parameters(which)), which
        assert all(p.grad is None for p in model.step_one_parameters())
    cached = model.encode_means(batch)
    a = model.prior_losses(batch, "full", torch.Generator().manual_seed(5), latents=cached)["loss"]
    b = model.prior_losses(batch, "full", torch.Generator().manual_seed(5))["loss"]
    assert torch.allclose(a, b)


def test_missing_batch_condition_is_reported(batch: CrystalBatch) -> None:
    model = tiny_model(batch, conditions=(BG, continuous("density", 0.0, 10.0, 5)))
    with pytest.raises(KeyError, match="density"):
        model.losses(batch, teacher_forcing=True)


# ------------------------------------------------------------------------------ prior


def test_denoiser_layout() -> None:
    net = ResidualMLPDenoiser(latent_dim=256, cond_dim=128, time_dim=64)
    assert [m.out_features for m in net.down] == [128, 64, 32]
    assert [m.out_features for m in net.up] == [64, 128, 256]
    assert net.middle.out_features == 32 and net.out.out_features == 256
    assert net(torch.zeros(3, 256), torch.zeros(3, 128), torch.zeros(3, 64)).shape == (3, 256)
    assert respaced_timesteps(300) == list(range(300, 0, -1))
    assert respaced_timesteps(300, 4) == [300, 200, 101, 1]


def test_prior_learns_a_conditional_toy_distribution() -> None:
    """2-D latents, c in {0, 1}: z ~ N((+2, -2), 0.1^2) for c = 0 and N((-2, +2), 0.1^2) for c = 1.
    After a short training (1200 Adam steps; T = 100 with betas 1e-3 -> 0.1 so that alpha_bar_T is
    ~0.006 with few steps) the prior's samples given c are centred on the right point."""
    torch.manual_seed(0)
    emb = PropEmb([discrete("c", 2)], feature_dim=16, num_layers=1, class_emb_dim=8, out_dim=16, mix_layers=1)
    prior = LatentPrior(2, emb, 16, num_timesteps=100, beta_start=1e-3, beta_end=0.1, time_dim=16,
                        widths=(64, 64, 64))
    opt = torch.optim.Adam(prior.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    centres = torch.tensor([[2.0, -2.0], [-2.0, 2.0]])
    for _ in range(1200):
        c = torch.randint(2, (128,), generator=g)
        z0 = centres[c] + 0.1 * torch.randn(128, 2, generator=g)
        opt.zero_grad(set_to_none=True)
        prior.loss(z0, {"c": c}, g).backward()
        opt.step()
    for label in (0, 1):
        z = prior.sample({"c": torch.full((300,), label)}, torch.Generator().manual_seed(2))
        mean = z.mean(0)
        assert torch.equal(torch.sign(mean), torch.sign(centres[label])), (label, mean)
        assert float((mean - centres[label]).abs().max()) < 0.5, (label, mean)
    # same seed, same latents; respaced sampling runs the requested number of steps
    c = {"c": torch.tensor([0, 1])}
    assert torch.equal(prior.sample(c, torch.Generator().manual_seed(4)), prior.sample(c, torch.Generator().manual_seed(4)))
    assert prior.sample(c, torch.Generator().manual_seed(4), num_steps=10).shape == (2, 2)


# ------------------------------------------------------------------------------ generation


def test_langevin_is_cdvae_langevin_without_time_input(batch: CrystalBatch) -> None:
    model = tiny_model(batch, decoder_time_dim=0)
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    ours = model.langevin(z, n_step_each=2, generator=torch.Generator().manual_seed(1))
    ref = CDVAE.langevin(model, z, n_step_each=2, generator=torch.Generator().manual_seed(1))
    for key in ("frac_coords", "atom_types", "num_atoms", "lengths", "angles"):
        assert torch.equal(ours[key], ref[key]), key
    assert ours["model_evaluations"] == ref["model_evaluations"] == 10


def test_decoder_sees_the_noise_level(batch: CrystalBatch) -> None:
    model = tiny_model(batch)
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(0))
    args = (batch.frac_coords, batch.atom_types, lattice_from_params(batch.lengths, batch.angles), batch.num_atoms,
            batch.batch)
    with torch.no_grad():
        a, _ = model.decode(z, *args, level=torch.zeros(4, dtype=torch.long))
        b, _ = model.decode(z, *args, level=torch.full((4,), 4))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="level"):
        model.decode(z, *args)


def test_predictor_score_by_hand() -> None:
    """Continuous: |a_hat - a_tilde|; discrete: 1 - p(target)."""
    pred = Predictor([continuous("x", 0.0, 10.0, 5), discrete("k", 2)], latent_dim=3)
    with torch.no_grad():
        pred.heads[0] = nn.Sequential(nn.Linear(3, 1))
        pred.heads[0][0].weight.copy_(torch.tensor([[1.0, 0.0, 0.0]]))
        pred.heads[0][0].bias.zero_()
        pred.heads[1].weight.copy_(torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
        pred.heads[1].bias.zero_()
    z = torch.tensor([[0.5, 0.0, 0.0], [0.2, 2.0, 0.0]])
    score = pred.score(z, {"x": 5.0, "k": 1})  # target x_tilde = 0.5, class 1
    p1 = 1 / (1 + math.exp(2.0))
    assert torch.allclose(score, torch.tensor([0.0 + 0.5, 0.3 + (1 - p1)]))
    assert select_best(torch.tensor([3.0, 1.0, 2.0, 1.0]), 3).tolist() == [1, 3, 2]


def test_filter_keeps_the_best_candidates(batch: CrystalBatch, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rounds of 8 candidates keep the 3 best (lowest Predictor score) until n = 5 are kept."""
    model = tiny_model(batch)
    drawn: list[torch.Tensor] = []
    real = model.prior_default.sample

    def spy(conditions, generator=None, num_steps=None):
        z = real(conditions, generator, num_steps)
        drawn.append(z)
        return z

    monkeypatch.setattr(model.prior_default, "sample", spy)
    out = model.conditional_sample(5, {"band_gap": 3.0, "CS_type": 2}, "default", torch.Generator().manual_seed(0),
                                   n_candidates=8, keep=3, n_step_each=1, prior_steps=5)
    assert len(drawn) == 2 and drawn[0].shape == (8, 16)
    targets = {"band_gap": 3.0, "CS_type": 2}
    for k, (cand, take) in enumerate(zip(drawn, (3, 2))):
        scores = model.predictor.score(cand, targets)
        best = torch.sort(scores).values[:take]
        kept = out["filter_score"][3 * k:3 * k + take]
        assert torch.allclose(kept, best), k
        assert float(kept.max()) <= float(torch.sort(scores).values[take]) + 1e-6
    assert out["z"].shape == (5, 16) and out["num_atoms"].shape == (5,)
    assert torch.equal(out["conditions"]["CS_type"], torch.full((5,), 2))
    assert out["model_evaluations"] == 5


def test_strategies_and_determinism(batch: CrystalBatch) -> None:
    model = tiny_model(batch)
    table = condition_columns(crystals(), model.full_condition_specs, model.config.max_atomic_num)
    full = {"band_gap": 0.0, "formation_energy_per_atom": -0.4, "CS_type": 6, "num_atoms": 4.0, "formula": "Cu"}
    kw = dict(n_step_each=1, prior_steps=4)
    a = model.conditional_sample(3, full, "full", torch.Generator().manual_seed(1), **kw)
    b = model.conditional_sample(3, full, "full", torch.Generator().manual_seed(1), **kw)
    for key in ("frac_coords", "atom_types", "num_atoms", "lengths", "angles", "z"):
        assert torch.equal(a[key], b[key]), key
    assert bool((a["frac_coords"] >= 0).all() and (a["frac_coords"] < 1).all())
    with pytest.raises(ValueError, match="missing"):
        model.conditional_sample(2, {"band_gap": 0.0}, "full", **kw)
    with pytest.raises(ValueError, match="condition_table"):
        model.conditional_sample(2, {"band_gap": 0.0}, "less", **kw)
    less = model.conditional_sample(4, {"CS_type": 6}, "less", torch.Generator().manual_seed(2),
                                    condition_table=table, **kw)
    # only CsCl and Cu have CS_type 6: every completed row is one of theirs
    rows = {(0.0, -0.5, 2.0), (0.0, 0.0, 4.0)}
    used = less["conditions"]
    assert torch.equal(used["CS_type"], torch.full((4,), 6))
    got = {(float(bg), round(float(fe), 4), float(na)) for bg, fe, na in
           zip(used["band_gap"], used["formation_energy_per_atom"], used["num_atoms"])}
    assert got <= rows
    with pytest.raises(ValueError, match="no training crystal"):
        model.conditional_sample(2, {"CS_type": 5}, "less", condition_table=table, **kw)
    d = model.conditional_sample(2, {"band_gap": 1.0, "CS_type": 3}, "default", torch.Generator().manual_seed(0), **kw)
    assert d["z"].shape == (2, 16)
    rec = model.reconstruct(batch, torch.Generator().manual_seed(0), n_step_each=1)
    assert rec["num_atoms"].shape == (4,) and rec["model_evaluations"] == 5
    with pytest.raises(NotImplementedError):
        model.sample(2, torch.Generator())


def test_draw_condition_rows_only_matching_rows() -> None:
    rng = np.random.default_rng(0)
    n_train = 200
    table = {
        "band_gap": rng.uniform(0, 8, n_train),
        "CS_type": rng.integers(0, 7, n_train),
        "formation_energy_per_atom": rng.uniform(-4, 0, n_train),
        "formula": rng.dirichlet(np.ones(100), n_train),
    }
    specs = [BG, CS, FE, formula("formula", 92)]
    given = {"CS_type": 2, "band_gap": 3.0}
    window = 0.1 / 2 * 9.5
    match = np.flatnonzero((table["CS_type"] == 2) & (np.abs(table["band_gap"] - 3.0) <= window))
    assert 0 < len(match) < n_train
    out = draw_condition_rows(table, given, specs, 300, torch.Generator().manual_seed(0))
    assert torch.equal(out["CS_type"], torch.full((300,), 2)) and torch.allclose(out["band_gap"], torch.full((300,), 3.0))
    assert out["formula"].shape == (300, 100)
    # use_one: the missing values of a row come from one matching training crystal
    fe = table["formation_energy_per_atom"].astype(np.float32)
    for k in range(300):
        j = np.flatnonzero(np.isclose(fe, float(out["formation_energy_per_atom"][k]), atol=0, rtol=0))
        assert len(j) and set(j) & set(match)
        assert np.allclose(out["formula"][k].numpy(), table["formula"][j[0]], atol=1e-6)
    assert len(set(out["formation_energy_per_atom"].tolist())) > 1  # several rows drawn
    # independent rows per missing condition still match the given ones
    loose = draw_condition_rows(table, given, specs, 50, torch.Generator().manual_seed(1), use_one=False)
    assert set(np.round(loose["formation_energy_per_atom"].numpy(), 5)) <= set(np.round(fe[match], 5))
    with pytest.raises(ValueError, match="no training crystal"):
        draw_condition_rows(table, {"band_gap": 20.0}, specs, 3)
    with pytest.raises(ValueError, match="unknown"):
        draw_condition_rows(table, {"density": 1.0}, specs, 3)
    same = draw_condition_rows(table, given, specs, 10, torch.Generator().manual_seed(3))
    again = draw_condition_rows(table, given, specs, 10, torch.Generator().manual_seed(3))
    assert all(torch.equal(same[k], again[k]) for k in same)


def test_fit_scale_factors_with_time_input(batch: CrystalBatch) -> None:
    factors = tiny_model(batch).fit_scale_factors(batch, torch.Generator().manual_seed(0))
    assert factors and all(math.isfinite(v) and v > 0 for v in factors.values())


# ------------------------------------------------------------------------------ released details


def test_full_conditions_are_the_released_grids_in_canonical_form() -> None:
    """The full prior's conditions: the released six in the released order and grids (n_rbf =
    ceil((max - min) / spacing) + 1), then the formula; the config's strings are canonical specs."""
    from benchmark.models.con_cdvae.config import FULL_CONDITIONS, grid_spec

    specs = [ConditionSpec.parse(s) for s in FULL_CONDITIONS]
    assert [str(s) for s in specs] == list(FULL_CONDITIONS)
    assert [s.name for s in specs] == ["CS_type", "spacegroup.number", "formation_energy_per_atom", "band_gap", "e_above_hull",
                                       "num_atoms", "formula"]
    assert [(s.low, s.high, s.n_basis) for s in specs if s.kind == "continuous"] == [
        (-5.0, 0.5, 12), (-0.5, 9.0, 20), (-0.01, 0.09, 11), (0.0, 20.0, 21)]
    assert [s.n_classes for s in specs if s.kind == "discrete"] == [7, 231] and specs[-1].dim == 92
    # the released grid rule: the last centre is min + spacing (n - 1), which may pass max
    assert grid_spec("x", 0.0, 1.0, 0.3) == "x:continuous:0.0:1.2:5"


def test_unclamped_gaussian_basis_as_released() -> None:
    """Released ScalarConditionEmbedding does not clamp: a value past the grid keeps decaying."""
    free = GaussianBasis(0.0, 4.0, 5, clamp=False)
    out = free(torch.tensor([6.0, 2.0]))
    assert torch.allclose(out[0], torch.exp(-((6.0 - torch.arange(5.0)) ** 2) / 2))
    assert torch.equal(out[1], GaussianBasis(0.0, 4.0, 5)(torch.tensor([2.0]))[0])
    assert float(out[0, 4]) == pytest.approx(math.exp(-2.0))  # clamped it would be 1


def test_released_batchnorm_and_tanh(batch: CrystalBatch) -> None:
    """``mlp_batchnorm``: a BatchNorm after the first layer of the Eq. 11 MLP, the N / lattice /
    composition heads and the Predictor's continuous heads (code build_mlp(norm=True)), none in
    the condition embeddings or priors; a one-crystal batch trains; in evaluation a crystal's
    outputs do not depend on its batch. ``encoder_tanh``: mu = fc_mu(tanh(encoder))."""
    from benchmark.nn.layers import BatchNorm

    model = tiny_model(batch, mlp_batchnorm=True, encoder_tanh=True)
    for name in ("fc_z_con", "fc_num_atoms", "fc_lattice", "fc_composition"):
        assert isinstance(getattr(model, name)[1], BatchNorm), name
    assert isinstance(model.predictor.heads[0][1], BatchNorm)  # band gap; CS_type is one linear layer
    assert isinstance(model.predictor.heads[1], nn.Linear)
    for part in (model.prop_emb, model.prior_default, model.prior_full, model.encoder, model.decoder):
        assert not any(isinstance(m, nn.BatchNorm1d) for m in part.modules())
    assert not any(isinstance(m, nn.BatchNorm1d) for m in tiny_model(batch).modules())  # off by default here
    model.train()
    one = CrystalBatch.from_graphs([build_graph(crystals()[2])], conditions=condition_columns(crystals()[2:3], [BG, CS, FE]))
    parts = model.losses(one, teacher_forcing=True, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(parts["loss"])
    parts = model.losses(batch, teacher_forcing=True, generator=torch.Generator().manual_seed(0))
    parts["loss"].backward()  # batch statistics in training
    model.eval()
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        alone = model.predictor(z[2:3])["band_gap"]
        together = model.predictor(z)["band_gap"][2:3]
    torch.testing.assert_close(alone, together)
    # tanh on the pooled encoder output, before fc_mu: the same weights without tanh give fc_mu(h)
    plain = tiny_model(batch, mlp_batchnorm=True, encoder_tanh=False)
    plain.load_state_dict(model.state_dict())
    plain.eval()
    captured = {}
    plain.fc_mu.register_forward_hook(lambda m, i, o: captured.setdefault("h", i[0]))
    with torch.no_grad():
        mu_tanh = model.encode_means(batch)
        plain.encode_means(batch)
        torch.testing.assert_close(mu_tanh, model.fc_mu(torch.tanh(captured["h"])))
        assert not torch.allclose(mu_tanh, plain.fc_mu(captured["h"]))


def test_released_decoder_lattice_in_step_one(batch: CrystalBatch) -> None:
    """Con-CDVAE's step one follows CDVAE's ``decoder_lattice``: released, the decoder's losses
    reach the lattice head after teacher forcing and the coordinate target is measured in the true
    cell (code model.py:282-300, 445-451); detached, neither."""
    import dataclasses

    grads, cells = {}, {}
    for mode in ("released", "detached"):
        model = tiny_model(batch)
        model.config = dataclasses.replace(model.config, decoder_lattice=mode)
        seen = []
        real = model.target_lattice
        model.target_lattice = lambda b, lattice: seen.append(real(b, lattice)) or seen[-1]
        parts = model.losses(batch, teacher_forcing=False, generator=torch.Generator().manual_seed(0))
        g = torch.autograd.grad(parts["coord"], list(model.fc_lattice.parameters()), allow_unused=True)
        grads[mode] = sum(float(x.abs().sum()) for x in g if x is not None)
        (cells[mode],) = seen
    assert grads["released"] > 0 and grads["detached"] == 0
    torch.testing.assert_close(cells["released"], lattice_from_params(batch.lengths, batch.angles))
    assert not torch.allclose(cells["detached"], cells["released"])


def test_fixed_element_vectors_of_the_formula_embedding(batch: CrystalBatch) -> None:
    """Given element vectors are fixed (a buffer outside the state dict, no gradient): Eq. 13's
    input is the fraction-weighted sum of them, i.e. their mean over the sites (code V1)."""
    table = torch.arange(100 * 8, dtype=torch.float32).reshape(100, 8) / 100
    model = tiny_model(batch, element_features=table)
    emb = model.prior_full.embedding.embeddings[-1]
    assert isinstance(emb, FormulaEmbedding) and emb.fixed and torch.equal(emb.elements, table)
    assert not any(k.endswith("elements") for k in model.state_dict())
    emb.mlp = nn.Identity()
    fr = torch.as_tensor(formula_fractions("SrTiO3", 100)).float().unsqueeze(0)
    sites = table[[37, 21, 7, 7, 7]].mean(0, keepdim=True)  # Sr, Ti, O, O, O
    torch.testing.assert_close(emb(fr), sites)
    learnt = tiny_model(batch).prior_full.embedding.embeddings[-1]
    assert not learnt.fixed and learnt.elements.requires_grad
    with pytest.raises(ValueError, match="element_features"):
        tiny_model(batch, element_features=table[:, :4])
