"""DP-CDVAE, the diffusion-probabilistic CDVAE, as a plain ``torch.nn.Module``.

Pakornchote, Choomphon-anomakhun, Arrerut, Atthapak, Khamkaeo, Chotibut, Bovornratanaraks,
"Diffusion probabilistic models enhance variational autoencoder for crystal structure generative
modeling" (arXiv:2308.02165). Equation numbers below are that paper's
(main text Eqs. 1-11, supplement Eq. S1, Fig. S1, section S3).

DP-CDVAE keeps CDVAE's VAE half unchanged (:class:`benchmark.models.cdvae.network.CDVAE`: periodic
DimeNet++ encoder, the heads for the number of atoms ``N_z``, the lattice ``L_z`` and the
composition ``A_z``) and replaces CDVAE's annealed-Langevin score model by a DDPM on the
*fractional* coordinates:

* **Noise schedule** (section IV A, "a sigmoid scheduler [40]"). Reference [40] (Kingma et al.,
  "Variational diffusion models") does not define a sigmoid *beta* schedule; the schedule the
  authors shipped (their ``diffalgo`` config: ``noise_schedule: sigmoid, beta_start: 1e-10,
  beta_end: 0.01, timesteps: 1000`` with the sigmoid argument running from -10 to 6) is the
  GeoDiff-style one, and it is used here::

      beta_t = beta_start + (beta_end - beta_start) * sigmoid(x_t),
      x_t = sigmoid_start + (sigmoid_end - sigmoid_start) * (t - 1) / (T - 1),   t = 1..T
      alpha_t = 1 - beta_t,   alpha_bar_t = prod_{i <= t} alpha_i

  With the defaults (T = 1000, 1e-10 -> 0.01, -10 -> 6) ``alpha_bar_T = 0.023``
  (``sqrt(alpha_bar_T) = 0.15``): at t = T the coordinates are mostly noise, and, once wrapped
  into the cell (Eq. 3), indistinguishable from uniform.
  :class:`benchmark.nn.schedules.SigmoidBetaSchedule`.
* **Forward process** (Eqs. 1-3): ``r_t = sqrt(alpha_bar_t) r_0 + sqrt(1 - alpha_bar_t) eps``
  on the fractional coordinates r_0 in [0, 1)^3 (eps ~ N(0, I), (N, 3)), then
  ``r_f_t = pi(r_t) = r_t - floor(r_t)``. One t per crystal, uniform in {min_timestep..T}
  (section IV C; ``min_timestep`` 2 is the released range, see "Choices" below).
* **Type perturbation** (Eq. 9): ``Z_s ~ M(p)``, a multinomial (categorical) draw per atom from
  the true one-hot ``A`` (N, 100) and the predicted composition ``A_z = softmax(MLP_AGG(z))`` of
  the crystal with the level ``sigma'_s``, geometric from ``type_sigma_end`` = 0.01 at s = 1 to
  ``type_sigma_begin`` = 5 at s = T (the paper: "selected from [0.01, 5]" as in CDVAE). The index
  s of the level (``type_noise_step``): ``"independent"`` (default), a second uniform draw per
  crystal, independent of the coordinates' t, as the released ``DDPM.perturb_sample``
  (``same_time_step=False``); ``"tied"``: s = t. ``type_noise`` chooses ``p``: ``"mix"``
  (default) ``p = (A + sigma'_s A_z) / (1 + sigma'_s)``, what the released code samples
  (``torch.multinomial`` normalises ``A + sigma' A_z``, the same draw as CDVAE's);
  ``"softmax"``: Eq. 9 read literally, ``p = softmax(A + sigma'_s A_z)``. Note that over 100
  classes the literal softmax keeps the true type with probability only ~e/(e + 99) even at
  sigma' = 0.01, which is why "mix" is the default.
* **Diffusion network** ``D_theta(L r_f_t, f_t)`` (section IV C): the GemNet-T of
  :class:`benchmark.nn.gemnet.GemNetTDecoder` on the periodic graph of the Cartesian
  positions ``r_c_t = r_f_t L`` (the true lattice with teacher forcing, else the predicted ``L_z``,
  through which the losses reach the lattice head with ``decoder_lattice="released"``, as the
  released ``forward``, or detached; at sampling time ``L_z``), with node features ``f_t = (Z_t, F_t, z, t)``: the element
  embedding of Z_t and z enter as in CDVAE, and ``extra_node_dim = 6 (n_max - n_min + 1) +
  time_dim`` more inputs carry ``F_t`` (section S3: ``sin(2^n pi r_t)`` and ``cos(2^n pi r_t)``
  for n = ``fourier_n_min``..``fourier_n_max`` and the three coordinates: 36 values per atom;
  since ``2^n`` is even these equal the features of ``pi(r_t)``; n = 4..9 by default, the released
  code's frequencies ``2 pi 2^n`` for its n = 3..8, in its order; S3 writes n = 3..8 of
  ``2^n pi``) and a sinusoidal embedding of t (``time_dim`` values, the Transformer's
  ``sin/cos(t / 10000^(2k / time_dim))``; the paper only says "t"). Outputs:

  - ``eps_theta`` (N, 3): the fractional noise of Eq. 2. GemNet's direct-force output ``v``
    (N, 3) is a Cartesian vector that rotates with the crystal; it is turned into a fractional
    vector by the inverse lattice, ``eps_theta = v L^-1`` (row vectors, as
    :func:`benchmark.nn.periodic.cart_to_frac`): the components of v along the cell vectors.
    Rotating the crystal (``L -> L R^T``) rotates v (``v -> v R^T``) and leaves ``eps_theta``
    unchanged, as the fractional noise it predicts is unchanged. The network thus has to produce
    a Cartesian vector of size ~|L| for unit fractional noise; its output layers are linear so the
    scale is learnt.
  - ``A_theta`` (N, 100): type logits (the summed atom outputs of the output blocks).
* **Losses** (Eqs. 10, 11, S1), each averaged over the atoms of a crystal and then over the
  crystals: ``coord = ||eps - eps_theta||^2`` (summed over the 3 components; Eq. 10),
  ``type = CE(A, A_theta) / sigma'_s`` (Eq. 11 with the released code's noise scaling, as
  CDVAE's type loss; ``type_loss_weight="none"``: Eq. 11 as written, without the division), and
  CDVAE's ``natom``, ``lattice``, ``composition`` and ``kld`` unchanged. ``loss = cost_coord coord
  + cost_type type + beta kld + cost_lattice lattice + cost_composition composition + cost_natom
  natom (+ cost_property property)``, i.e. Eq. S1 with ``lambda = cost_type / cost_coord``;
  ``cost_coord`` is 1 (Eq. S1 has no weight on L_simple). Training multiplies the coordinate term
  by ``coord_boost`` (10) after epoch ``coord_boost_epoch`` (:meth:`CDVAE.training_loss`, the
  released ``mul_cost_coord_epoch``); validation reports ``cost_coord coord + cost_type type``
  without teacher forcing and without the boost (:meth:`CDVAE.validation_loss`).
* **Reverse process** (Eqs. 6, 7), ``reverse_step``: ``"eq6"``, the DDPM step on the unwrapped
  r_t (the network sees ``pi(r_t)``)::

      r_{t-1} = (r_t - (1 - alpha_t) / sqrt(1 - alpha_bar_t) eps_theta) / sqrt(alpha_t) + sigma_t eps'

  ``"eq7"`` (default, the paper's main results): ``r_{t-1} = (pi(r_t) - sqrt(1 - alpha_bar_t)
  eps_theta) / sqrt(alpha_bar_t) + sigma_t eps'``, wrapped again before the next step; both with
  ``sigma_t^2 = (1 - alpha_bar_{t-1}) (1 - alpha_t) / (1 - alpha_bar_t)`` (Eq. 5) and
  ``alpha_bar_0 = 1``. The steps run from T down to ``min_timestep``, the last one to
  ``min_timestep - 1``: with 1 it goes to t = 0 (no noise added) and returns ``pi(r_0)``; with
  the released 2 (999 steps) it goes to t = 1 and returns ``pi(r_1)``.
  :func:`benchmark.nn.diffusion.ddpm_reverse_step`.
* **Generation / reconstruction** (section IV C): z ~ N(0, I) (generation) or, for
  reconstruction, a draw of q(z | M) (Eq. 8; the released evaluate.py) or the encoder mean
  (``latent_from``); N, lattice and composition are predicted from z; ``r_T ~ N(0, I)``; ``Z_T``
  (``initial_types``): drawn from ``A_z`` with CDVAE's
  :func:`~benchmark.models.cdvae.network.sample_composition` (``composition``, what the released
  sampler does) or the most probable element of ``A_z`` for every atom (``argmax``, the paper's
  "sampled from the highest probability of A_z"); the types are replaced by ``argmax(A_theta)``
  after every step.

Choices where the paper is silent (and why):

* Fewer reverse steps (``num_steps < T``, for smoke runs) use *respacing* (Nichol & Dhariwal
  2021): the evenly spaced time steps ``t_1 = T > ... > t_K = min_timestep`` of the same schedule, each step
  with the effective ``alpha = alpha_bar_t / alpha_bar_t'`` (t' the next step, ``alpha_bar_0 =
  1``) in Eqs. 5-7; the network is still told the original t. With ``num_steps = T`` this is
  exactly Eqs. 6/7. (A smaller T, ``num_timesteps``, is a different model that must be trained
  with it.)
* The encoder variants of Fig. S1: ``encoder_num_atoms`` adds an MLP (``fc_num_layers`` hidden
  layers of ``hidden_dim``) on the one-hot N_a (0..max_atoms; one-hot because N_a is decoded as a
  class); ``encoder_gine`` adds ``gine_num_layers`` torch_geometric ``GINEConv`` layers (hidden
  ``gine_hidden_dim``, element embedding input, ReLU, mean pooling, a linear readout) on the
  encoder's CrystalNN graph with the edge attribute ``|r_cj + T - r_ci|`` (the paper's
  E = {|dr|}), through ``Linear(1, H)-ReLU-Linear(H, H)`` (``gine_edge="distance"``, the
  released GINE's edge input) or expanded in ``gine_num_rbf`` Gaussians on [0, encoder_cutoff]
  (``"gaussian"``). Each branch gives ``latent_dim`` features; with any extra branch they are
  concatenated and passed through one fully connected layer (Linear + ReLU, the "FC" box of
  Fig. S1) before ``fc_mu``/``fc_var``. Without extras the encoder is CDVAE's exactly (Fig. S1 (g)).
* The fractional noise eps is not re-centred per crystal (the released code removes its mean; the
  paper does not mention it, and Eq. 2 has plain N(0, I) noise).
* The time range (``min_timestep``): the released code draws t in 1..T-1 and samples T-1..1, on
  ``alpha_bar_t = prod_{i=1..t} (1 - beta_i)`` with beta indexed from 0, so its t is this
  module's t + 1 (``alpha_bar`` equal up to the factor ``1 - beta_1`` = 1 - 4.5e-7) and its last
  step goes to this module's t = 1; ``min_timestep = 2`` reproduces that range (T-1 = 999 steps,
  type levels sigma'_2..sigma'_T); 1 trains and samples 1..T (Eq. 2 as written).
* Property optimisation (CDVAE's ``optimize``) is not part of the paper and not provided.

What the released network does differently and this one does not reproduce (the README's DP-CDVAE
section gives the reasons): the time enters as the score-SDE sinusoid of t/T through a
``Linear(128, 512)-ReLU-Linear(512, 128)`` (here the Transformer sinusoid of the integer t, no
MLP); its GemNet-T keeps the atom features at the width of their concatenated inputs (hidden +
latent + time + Fourier = 548) through every block (here they are projected to
``decoder_hidden``, as CDVAE's decoder); its noise prediction is GemNet's Cartesian output compared
with the fractional noise as it is (here ``v L^-1``); the GemNet scale factors are read from a
fixed file (here fitted on a training batch); the coordinates are re-centred per crystal
(``recenter``) and eps has its per-crystal mean removed; the N_a branch is an ``nn.Embedding``
concatenated to DimeNet++ and followed by a two- or three-layer MLP, and the GINE branch has a
softplus message, no trained epsilon, residual connections, max pooling and an MLP readout.

Random numbers take the explicit ``generator`` everywhere (same seed, same crystals).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GINEConv, global_mean_pool

from benchmark.models.cdvae.network import CDVAE, gemnet_decoder, sample_composition
from benchmark.models.dp_cdvae.config import DPCDVAEConfig
from benchmark.nn.batch import CrystalBatch
from benchmark.nn.diffusion import ddpm_reverse_step, respaced_timesteps, timestep_embedding
from benchmark.nn.dimenet import GraphBatch
from benchmark.nn.layers import mlp
from benchmark.nn.periodic import (
    cart_to_frac,
    fourier_features,
    frac_to_cart,
    lattice_from_params,
    radius_graph_pbc,
    wrap_frac,
)
from benchmark.nn.rng import multinomial, randint, randn
from benchmark.nn.schedules import GeometricSigmas, SigmoidBetaSchedule

__all__ = ["DPCDVAE", "GINEEncoder"]


class GINEEncoder(nn.Module):
    """GINE branch of the encoder (Fig. S1 (d)): ``GINEConv`` layers (Hu et al. 2020) on the
    crystal graph with the interatomic distances as edge input, mean-pooled.

    Args:
        max_atomic_num: element classes (types 1..max_atomic_num).
        hidden_dim: node width.
        out_dim: output features per crystal.
        num_layers: GINE layers.
        num_rbf: Gaussians on [0, cutoff] for the distances (``edge="gaussian"``).
        cutoff: Å.
        edge: ``"distance"``: the distance (a scalar, the paper's E = {|dr|}) through one
            ``Linear(1, H)-ReLU-Linear(H, H)`` shared by the layers (the released GINE);
            ``"gaussian"``: its expansion in ``num_rbf`` Gaussians, mapped by each layer's own
            linear edge layer.
    """

    def __init__(self, max_atomic_num: int, hidden_dim: int, out_dim: int, num_layers: int, num_rbf: int,
                 cutoff: float, edge: Literal["distance", "gaussian"] = "gaussian") -> None:
        super().__init__()
        if edge not in ("distance", "gaussian"):
            raise ValueError(f"edge must be 'distance' or 'gaussian', got {edge!r}")
        self.edge = edge
        self.embedding = nn.Embedding(max_atomic_num, hidden_dim)
        self.edge_mlp = (nn.Sequential(nn.Linear(1, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim))
                         if edge == "distance" else None)
        self.convs = nn.ModuleList(
            GINEConv(nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim)),
                     train_eps=True, edge_dim=num_rbf if edge == "gaussian" else None)
            for _ in range(num_layers)
        )
        self.readout = nn.Linear(hidden_dim, out_dim)
        self.register_buffer("centers", torch.linspace(0.0, cutoff, num_rbf), persistent=False)
        self.width = cutoff / max(num_rbf - 1, 1)

    def edge_features(self, dist: Tensor) -> Tensor:
        """(E, H) for ``"distance"`` or (E, num_rbf) for ``"gaussian"``, from dist (E,) Å."""
        if self.edge_mlp is not None:
            return self.edge_mlp(dist.unsqueeze(-1))  # (E, H)
        return torch.exp(-((dist.unsqueeze(-1) - self.centers) / self.width) ** 2)  # (E, R)

    def forward(self, atom_types: Tensor, edge_index: Tensor, dist: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        """Args: atom_types (N,) long, edge_index (2, E) (row 0 source), dist (E,) Å, batch (N,).

        Returns:
            (B, out_dim).
        """
        x = self.embedding(atom_types - 1)  # (N, H)
        edge_attr = self.edge_features(dist)  # (E, H) or (E, R)
        for conv in self.convs:
            x = F.relu(conv(x, edge_index, edge_attr))  # (N, H)
        return self.readout(global_mean_pool(x, batch, size=num_graphs))  # (B, out)


# ------------------------------------------------------------------------------------- model


class DPCDVAE(CDVAE):
    """The DP-CDVAE network: CDVAE's VAE, a DDPM on fractional coordinates with a GemNet-T noise
    network, and the encoder variants of Fig. S1 (see the module docstring).

    Args:
        config: the hyper-parameters (:class:`~benchmark.models.dp_cdvae.config.DPCDVAEConfig`).
        lattice_mean, lattice_std: the training split's lattice standardisation (as :class:`CDVAE`).
    """

    config: DPCDVAEConfig

    def __init__(self, config: DPCDVAEConfig, lattice_mean: Sequence[float] = (0.0,) * 6,
                 lattice_std: Sequence[float] = (1.0,) * 6) -> None:
        super().__init__(config, lattice_mean, lattice_std)
        cfg = config
        latent = cfg.latent_dim
        # the diffusion network: CDVAE's GemNet-T with the extra node features (F_t, t)
        self.decoder = gemnet_decoder(cfg, latent, (cfg.num_fourier if cfg.decoder_fourier else 0) + cfg.time_dim)
        # encoder variants (Fig. S1)
        self.na_encoder = (mlp(cfg.max_atoms + 1, cfg.hidden_dim, cfg.fc_num_layers, latent)
                           if cfg.encoder_num_atoms else None)
        self.gine_encoder = (GINEEncoder(cfg.max_atomic_num, cfg.gine_hidden_dim, latent, cfg.gine_num_layers,
                                         cfg.gine_num_rbf, cfg.encoder_cutoff, cfg.gine_edge) if cfg.encoder_gine else None)
        branches = 1 + int(cfg.encoder_num_atoms) + int(cfg.encoder_gine)
        self.fc_combine = (nn.Sequential(nn.Linear(branches * latent, latent), nn.ReLU())
                           if branches > 1 else None)
        # the schedule (derived from the config, not in the state dict); index t - 1 for t = 1..T
        self.schedule = SigmoidBetaSchedule(cfg.num_timesteps, cfg.beta_start, cfg.beta_end, cfg.sigmoid_start,
                                            cfg.sigmoid_end)
        self.register_buffer("betas", self.schedule.betas().float(), persistent=False)  # (T,)
        self.register_buffer("alpha_bars", self.schedule.alphas_cumprod().float(), persistent=False)  # (T,)
        # sigma'_t, 0.01 at t = 1 to 5 at t = T (geometric)
        type_sigmas_t = GeometricSigmas(cfg.type_sigma_end, cfg.type_sigma_begin, cfg.num_timesteps).sigmas()  # (T,)
        self.register_buffer("type_sigmas_t", type_sigmas_t, persistent=False)

    # ------------------------------------------------------------------------------ encoder

    def _encode_stats(self, b: CrystalBatch) -> tuple[Tensor, Tensor]:
        """``(mu, log_var)``, each (B, latent): DimeNet++ (and the N_a / GINE branches, Fig. S1)."""
        lattice = lattice_from_params(b.lengths, b.angles)  # (B, 3, 3)
        pos = frac_to_cart(b.frac_coords, lattice, b.num_atoms)  # (N, 3)
        edge_lattice = lattice[b.batch[b.edge_index[0]]]  # (E, 3, 3)
        offsets = torch.einsum("ei,eij->ej", b.images.to(pos.dtype), edge_lattice)  # (E, 3)
        graph = GraphBatch(b.atom_types, pos, b.edge_index, offsets, b.batch, b.num_graphs)
        feats = [self.encoder(graph)]  # (B, latent)
        if self.na_encoder is not None:
            na = F.one_hot(b.num_atoms.clamp(0, self.config.max_atoms), self.config.max_atoms + 1).to(pos.dtype)  # (B, M+1)
            feats.append(self.na_encoder(na))  # (B, latent)
        if self.gine_encoder is not None:
            src, dst = b.edge_index
            dist = (pos[src] + offsets - pos[dst]).norm(dim=-1)  # (E,)
            feats.append(self.gine_encoder(b.atom_types, b.edge_index, dist, b.batch, b.num_graphs))  # (B, latent)
        hidden = feats[0] if self.fc_combine is None else self.fc_combine(torch.cat(feats, dim=-1))  # (B, latent)
        return self.fc_mu(hidden), self.fc_var(hidden)

    # ------------------------------------------------------------------------------ diffusion

    def q_sample(self, r0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """Eq. 2: ``r_t = sqrt(alpha_bar_t) r_0 + sqrt(1 - alpha_bar_t) eps`` (unwrapped).

        Args:
            r0: (N, 3) fractional coordinates; t: (N,) long in 1..T; eps: (N, 3).
        """
        ab = self.alpha_bars[t - 1].to(r0.dtype).unsqueeze(-1)  # (N, 1)
        return ab.sqrt() * r0 + (1 - ab).sqrt() * eps

    def node_features(self, frac_t: Tensor, t: Tensor) -> Tensor | None:  # type: ignore[override]
        """(N, num_fourier + time_dim) extra node inputs ``(F_t, emb(t))`` of the diffusion network
        (None when both are switched off)."""
        cfg = self.config
        parts = [fourier_features(frac_t, cfg.fourier_n_min, cfg.fourier_n_max)] if cfg.decoder_fourier else []  # (N, 36)
        if cfg.time_dim > 0:
            parts.append(timestep_embedding(t, cfg.time_dim).to(frac_t.dtype))  # (N, time_dim)
        return torch.cat(parts, dim=-1) if parts else None

    def decode_cartesian(self, z: Tensor, frac: Tensor, atom_types: Tensor, lattice: Tensor, num_atoms: Tensor,
                         batch: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """``D_theta(L r_f_t, f_t)`` raw: (N, 3) Cartesian vector output v and (N, A) type logits.

        Args:
            z: (B, latent); frac: (N, 3) wrapped ``r_f_t``; atom_types: (N,) ``Z_t``;
            lattice: (B, 3, 3) rows; num_atoms: (B,); batch: (N,); t: (N,) long in 1..T.
        """
        graph = radius_graph_pbc(frac, lattice, num_atoms, self.config.decoder_cutoff, self.config.decoder_max_neighbors,
                                 min_distance=self.config.decoder_min_distance)
        feats = self.node_features(frac, t)
        return self.decoder(z, atom_types, batch, graph.edge_index, graph.edge_vec, graph.images, feats)

    def decode(self, z: Tensor, frac: Tensor, atom_types: Tensor, lattice: Tensor, num_atoms: Tensor,
               batch: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        """``(eps_theta, A_theta)``: (N, 3) fractional noise prediction ``v L^-1`` and (N, A) logits
        (arguments as :meth:`decode_cartesian`)."""
        vec, logits = self.decode_cartesian(z, frac, atom_types, lattice, num_atoms, batch, t)
        return cart_to_frac(vec, lattice, num_atoms), logits  # (N, 3), (N, A)

    def sample_timesteps(self, num_graphs: int, generator: torch.Generator | None, like: Tensor) -> Tensor:
        """(num_graphs,) long time steps, uniform in ``min_timestep``..T (one per crystal)."""
        low = self.config.min_timestep
        return randint(self.config.num_timesteps - low + 1, (num_graphs,), generator, like) + low

    def _noisy_structure(self, b: CrystalBatch, composition_logits: Tensor, lattice: Tensor,  # type: ignore[override]
                         generator: torch.Generator | None) -> dict[str, Tensor]:
        """Forward process (Eqs. 2, 3, 9) with one t per crystal, uniform in ``min_timestep``..T,
        and the type-noise level s of each crystal: drawn the same way, independently of t
        (``type_noise_step="independent"``, the released code), or s = t (``"tied"``).

        Returns:
            dict with ``t`` (N,) long, ``s`` (N,) long, ``eps`` (N, 3), ``frac`` (N, 3) wrapped
            ``r_f_t``, ``atom_types`` (N,) ``Z_s`` and ``type_sigma`` (N,) sigma'_s.
        """
        cfg = self.config
        n = b.frac_coords.shape[0]
        t_graph = self.sample_timesteps(b.num_graphs, generator, b.num_atoms)  # (B,)
        s_graph = (self.sample_timesteps(b.num_graphs, generator, b.num_atoms)
                   if cfg.type_noise_step == "independent" else t_graph)  # (B,)
        t, s = t_graph[b.batch], s_graph[b.batch]  # (N,), (N,)
        eps = randn((n, 3), generator, b.frac_coords)  # (N, 3)
        frac_t = wrap_frac(self.q_sample(b.frac_coords, t, eps))  # (N, 3) Eq. 3
        sig = self.type_sigmas_t[s - 1].to(b.frac_coords.dtype).unsqueeze(-1)  # (N, 1) sigma'_s
        p_c = torch.softmax(composition_logits.detach(), dim=-1)[b.batch]  # (N, A) A_z
        one_hot = F.one_hot(b.atom_types - 1, cfg.max_atomic_num).to(p_c.dtype)  # (N, A) A
        if cfg.type_noise == "softmax":
            probs = torch.softmax(one_hot + sig * p_c, dim=-1)  # Eq. 9 literally
        else:
            probs = (one_hot + sig * p_c) / (1 + sig)
        types_t = multinomial(probs, 1, generator).squeeze(-1) + 1  # (N,)
        return {"t": t, "s": s, "eps": eps, "frac": frac_t, "atom_types": types_t, "type_sigma": sig.squeeze(-1)}

    # ------------------------------------------------------------------------------ training

    def _denoising_losses(self, b: CrystalBatch, z: Tensor, agg: dict[str, Tensor], lattice: Tensor,
                          generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Per-atom diffusion terms, each (N,): the simple loss of Eq. 10 (squared error of the
        predicted noise) and the type cross entropy of Eq. 11, divided by sigma'_s with
        ``type_loss_weight="inverse_sigma"`` (the released code). The rest of the total (Eq. S1:
        number of atoms, lattice, composition, KL, property) is CDVAE's, in :meth:`CDVAE.losses`."""
        noisy = self._noisy_structure(b, agg["composition_logits"], lattice, generator)
        eps_pred, type_logits = self.decode(z, noisy["frac"], noisy["atom_types"], lattice, b.num_atoms, b.batch,
                                            noisy["t"])  # (N, 3), (N, A)
        simple = (noisy["eps"] - eps_pred).pow(2).sum(-1)  # (N,) Eq. 10
        type_ce = F.cross_entropy(type_logits, b.atom_types - 1, reduction="none")  # (N,) Eq. 11
        if self.config.type_loss_weight == "inverse_sigma":
            type_ce = type_ce / noisy["type_sigma"]  # (N,)
        return simple, type_ce

    @torch.no_grad()
    def fit_scale_factors(self, b: CrystalBatch, generator: torch.Generator | None = None) -> dict[str, float]:
        """Fit the GemNet scale factors on one noisy batch built as in training (teacher forcing,
        decoding ``mu``); see :meth:`benchmark.nn.gemnet.GemNetTDecoder.fit_scale_factors`."""
        mu, _ = self._encode_stats(b)
        agg = self.predict_aggregates(mu, b.num_atoms, b.lengths, b.angles, teacher_forcing=True)
        lattice = lattice_from_params(b.lengths, b.angles)
        noisy = self._noisy_structure(b, agg["composition_logits"], lattice, generator)
        graph = radius_graph_pbc(noisy["frac"], lattice, b.num_atoms, self.config.decoder_cutoff,
                                 self.config.decoder_max_neighbors, min_distance=self.config.decoder_min_distance)
        feats = self.node_features(noisy["frac"], noisy["t"])
        return self.decoder.fit_scale_factors(mu, noisy["atom_types"], b.batch, graph.edge_index, graph.edge_vec,
                                              graph.images, feats)

    # ------------------------------------------------------------------------------ generation

    def reverse_timesteps(self, num_steps: int | None = None) -> list[int]:
        """Time steps visited by the reverse process, largest first: all of T..``min_timestep``, or
        ``num_steps`` evenly spaced ones from T down to ``min_timestep`` (respacing, see the module
        docstring). The last step goes to ``min_timestep - 1`` (``alpha_bar_0 = 1``)."""
        low = self.config.min_timestep
        return [t + low - 1 for t in respaced_timesteps(self.config.num_timesteps - low + 1, num_steps)]

    @torch.no_grad()
    def reverse_diffusion(self, z: Tensor, num_atoms: Tensor | None = None, lengths: Tensor | None = None,
                          angles: Tensor | None = None, num_steps: int | None = None,
                          generator: torch.Generator | None = None, composition_from: Tensor | None = None,
                          reverse_step: Literal["eq6", "eq7"] | None = None,
                          initial_types: Literal["composition", "argmax"] | None = None) -> dict[str, Tensor | int]:
        """The reverse process (Eqs. 6/7) for a batch of latents (section IV C).

        Args:
            z: (B, latent_dim).
            num_atoms: (B,) long to impose N; None predicts it (argmax, at least 1).
            lengths, angles: (B, 3) to impose the lattice; None predicts it (then
                :func:`benchmark.models.cdvae.network.sanitize_lattice`).
            num_steps: reverse steps; None (or >= T) runs all T, fewer respace the schedule.
            generator: random source (r_T and the step noise).
            composition_from: (B, max_atomic_num) composition Z_T is drawn from; None uses
                ``softmax(MLP_AGG(z))``.
            reverse_step: override ``config.reverse_step``.
            initial_types: override ``config.initial_types``: Z_T drawn from the composition
                (``composition``, :func:`benchmark.models.cdvae.network.sample_composition`) or its
                most probable element for every atom (``argmax``).

        Returns:
            dict with ``frac_coords`` (N, 3) in [0, 1), ``atom_types`` (N,) long, ``num_atoms``
            (B,), ``lengths`` (B, 3), ``angles`` (B, 3) and ``model_evaluations`` (int, steps run).
        """
        kind = reverse_step or self.config.reverse_step
        init = initial_types or self.config.initial_types
        if init not in ("composition", "argmax"):
            raise ValueError(f"initial_types must be 'composition' or 'argmax', got {init!r}")
        agg, n_atoms, lengths, angles, lattice = self.generation_cell(z, num_atoms, lengths, angles)
        total = int(n_atoms.sum())
        batch = torch.repeat_interleave(torch.arange(z.shape[0], device=z.device), n_atoms, output_size=total)  # (N,)

        r = randn((total, 3), generator, z)  # (N, 3) r_T ~ N(0, I)
        probs = torch.softmax(agg["composition_logits"], dim=-1) if composition_from is None else composition_from
        if init == "composition":
            atom_types = sample_composition(probs.to(z.dtype), n_atoms, generator)  # (N,) Z_T drawn from A_z
        else:
            atom_types = (probs.argmax(dim=-1) + 1)[batch]  # (N,) Z_T: most probable element of A_z

        steps = self.reverse_timesteps(num_steps)
        for k, t in enumerate(steps):
            t_prev = steps[k + 1] if k + 1 < len(steps) else self.config.min_timestep - 1
            ab_t = self.alpha_bars[t - 1].to(r.dtype)
            ab_prev = self.alpha_bars[t_prev - 1].to(r.dtype) if t_prev > 0 else torch.ones((), dtype=r.dtype,
                                                                                            device=r.device)
            t_atoms = torch.full((total,), t, dtype=torch.long, device=z.device)  # (N,)
            eps, logits = self.decode(z, wrap_frac(r), atom_types, lattice, n_atoms, batch, t_atoms)
            noise = randn((total, 3), generator, r)  # (N, 3) eps'
            r = ddpm_reverse_step(r, eps, ab_t, ab_prev, noise, kind)  # (N, 3)
            atom_types = logits.argmax(dim=-1) + 1  # (N,)
        return {
            "frac_coords": wrap_frac(r),
            "atom_types": atom_types,
            "num_atoms": n_atoms,
            "lengths": lengths,
            "angles": angles,
            "model_evaluations": len(steps),
        }

    def langevin(self, *args, **kwargs):  # type: ignore[override]
        """Not used by DP-CDVAE: the sampler is :meth:`reverse_diffusion`."""
        raise NotImplementedError("DP-CDVAE samples with reverse_diffusion (Eqs. 6/7), not annealed Langevin")

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None, num_steps: int | None = None,  # type: ignore[override]
               reverse_step: Literal["eq6", "eq7"] | None = None,
               initial_types: Literal["composition", "argmax"] | None = None) -> dict[str, Tensor | int]:
        """Generate ``n`` crystals: ``z ~ N(0, I)`` (B = n), then :meth:`reverse_diffusion`."""
        z = randn((n, self.config.latent_dim), generator, self._device_dtype_like())  # (n, latent)
        return self.reverse_diffusion(z, num_steps=num_steps, generator=generator, reverse_step=reverse_step,
                                      initial_types=initial_types)

    @torch.no_grad()
    def reconstruct(self, b: CrystalBatch, generator: torch.Generator | None,  # type: ignore[override]
                    num_steps: int | None = None,
                    reverse_step: Literal["eq6", "eq7"] | None = None,
                    latent: Literal["sample", "mean"] = "sample",
                    initial_types: Literal["composition", "argmax"] | None = None) -> dict[str, Tensor | int]:
        """Reconstruct crystals from z of each crystal (:meth:`CDVAE.latent_of`: a draw of q(z | M)
        as DP-CDVAE's released evaluate.py, or the mean); N, lattice and composition are predicted from z."""
        z = self.latent_of(b, latent, generator)  # (B, latent)
        return self.reverse_diffusion(z, num_steps=num_steps, generator=generator, reverse_step=reverse_step,
                                      initial_types=initial_types)

    def optimize(self, *args, **kwargs):  # type: ignore[override]
        """Property optimisation is not part of DP-CDVAE."""
        raise NotImplementedError("DP-CDVAE does not provide property optimisation")
