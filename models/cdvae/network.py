"""CDVAE, the Crystal Diffusion Variational Autoencoder, as a plain ``torch.nn.Module``.

Xie, Fu, Ganea, Barzilay, Jaakkola, "Crystal Diffusion Variational Autoencoder for Periodic
Material Generation", ICLR 2022 (equation numbers below are that paper's; Eq. 2 and Algorithm 1
also appear in the workshop version). A crystal is M = (A, X, L): atom types A (N,), coordinates
X (N, 3) and a lattice L (3, 3). The model has three parts, trained together (section 4):

* ``PGNN_ENC(M)`` -> ``z``: a periodic DimeNet++ on the CrystalNN multi-graph (appendix B.2/B.3)
  with ``latent_dim`` outputs, mean-pooled over atoms, followed by ``fc_mu`` and ``fc_var``
  (Linear(latent, latent) each); ``z = mu + exp(log_var / 2) * eps`` (VAE reparameterisation).
  The encoder is :class:`benchmark.nn.dimenet.PeriodicDimeNetPlusPlus`, the same
  implementation the property oracles use.
* ``MLP_AGG(z)``: three MLP heads for the aggregated properties (section 4) — number of atoms N
  (classification over 0..max_atoms), lattice (6 parameters ``[lengths / N^(1/3), angles]``
  standardised with ``lattice_mean``/``lattice_std``, appendix B.1) and composition c (one
  distribution over elements per crystal; it is broadcast to the atoms of the crystal when a
  per-atom quantity is needed) — and, for property optimisation (section 5.3), a property head F(z).
* ``PGNN_DEC(M~ | z)``: GemNet-T with direct forces (:class:`benchmark.nn.gemnet.GemNetTDecoder`)
  on a periodic graph rebuilt at every call with
  :func:`benchmark.nn.periodic.radius_graph_pbc` (the 20 nearest neighbours within the
  cutoff, appendix B.2). It returns ``pred`` (N, 3), the noise-free part of the score
  ``s_X(M~ | z)``, and type logits (N, max_atomic_num) of ``p_A(M~ | z)``. The noise-conditional
  score is ``s_X(M~ | z; sigma_X) = pred / sigma_X`` (section 4, "noise scaling").
  With ``decoder_fourier`` (CDVAE+Fourier, the third model of DP-CDVAE's Table III) the decoder's
  node inputs also get ``sin/cos(2^n pi x~)``, n = 3..8, of the noisy fractional coordinates
  (:func:`benchmark.nn.periodic.fourier_features`; DP-CDVAE section S3); off for CDVAE.

Noise (section 4 and appendix D.4). ``L = num_noise_level`` levels, geometric
(:class:`benchmark.nn.schedules.GeometricSigmas`):
``sigma_X,j = sigma_begin * (sigma_end / sigma_begin)^((j-1)/(L-1))``, 10 -> 0.01 Å, and
``sigma_A,j`` 5 -> 0.01 the same way. During training every crystal draws one level index j
uniformly; its atoms get

* type noise: ``A~ ~ Categorical(p_A / (1 + sigma_A) + sigma_A / (1 + sigma_A) p_c)``, a linear mix
  of the true one-hot ``p_A`` (N, 100) and the predicted composition ``p_c = softmax(MLP_AGG(z))``
  of the crystal, sampled to one type per atom;
* coordinate noise: ``x~ = x + sigma_X eps`` in Cartesian space (eps ~ N(0, I)), converted back to
  fractional coordinates and wrapped into [0, 1).

Losses (Eq. 2 and Eq. 9), each averaged over the atoms of a crystal and then over the crystals:

* ``coord``: ``1/2 || pred - d_min(X, X~) / sigma_X ||^2`` per atom, with
  ``d_min(X, X~) = min_k (x - x~ + k L)`` (:func:`benchmark.nn.periodic.min_image_displacement`,
  the vector from the noisy atom to the nearest image of the true one). Why this form: NCSN
  (Song & Ermon 2019; Shi et al. 2021) trains ``s(x~, sigma)`` on the denoising score target
  ``-(x~ - x) / sigma^2`` with the weight ``lambda(sigma) = sigma^2``; with the noise-scaled
  parameterisation ``s(x~, sigma) = pred / sigma`` that weighted loss is
  ``1/2 sigma^2 || pred / sigma - d_min / sigma^2 ||^2 = 1/2 || pred - d_min / sigma ||^2``,
  which is Eq. 2's first term (the paper "factors the coefficients of Song & Ermon into Eq. 2").
  ``pred`` is therefore trained towards a unit-variance target at every level.
* ``type``: cross entropy of ``p_A(M~ | z)`` against the true types, divided by ``sigma_A``
  (Eq. 2's second term). Eq. 2 puts a global 1/2 in front of both terms; here it is applied to
  the coordinate term only and absorbed into ``lambda_A = cost_type`` for the type term, the scale
  with which the coefficients of appendix D.4 were set in the released implementation.
* ``composition``: cross entropy ``-sum_k p_k log c_k`` of the crystal's true element fractions p
  against the predicted composition c (= the per-atom cross entropy of c against the true types,
  averaged per crystal).
* ``lattice``: MSE between the predicted and the true standardised ``[lengths / N^(1/3), angles]``.
* ``natom``: cross entropy of the predicted number of atoms.
* ``kld``: ``KL(N(mu, diag exp(log_var)) || N(0, I))``, summed over latent dimensions.
* ``property`` (only with ``predict_property``): MSE of F(z) against the standardised ``y``.
* ``loss`` (Eq. 9): ``cost_natom natom + cost_lattice lattice + cost_composition composition +
  cost_coord coord + cost_type type + beta kld (+ cost_property property)``.

Teacher forcing (``losses(..., teacher_forcing=True)``): the noisy decoder input and its target
are built on the true lattice; otherwise on the predicted one (lengths unscaled with the *true* N),
detached — the lattice head is trained by its own loss only. The Lightning wrapper decides per
epoch (CDVAE teacher-forces the lattice for the first epochs).

Generation (Algorithm 1, annealed Langevin dynamics): predict N (argmax of the logits, at least 1),
the lattice (de-standardised, lengths times N^(1/3)) and the composition from z; draw the initial
types from the composition and the initial fractional coordinates uniformly in the cell; then for
every level j (largest sigma first) run T = ``n_step_each`` steps of
``x <- x + alpha_j s_X + sqrt(2 alpha_j) eps`` (Cartesian, eps ~ N(0, I)),
``alpha_j = step_lr * sigma_X,j^2 / sigma_X,L^2``, wrap into the cell, and set the types to the
argmax of ``p_A``. Crystals of different sizes run together in one batch.

Choices where the paper is silent (and why):

* Initial types: counts ``floor(n c_k)`` of every element, and the remaining atoms drawn from the
  leftover mass ``n c_k - floor(n c_k)`` (so the expected count of element k is exactly ``n c_k``).
  CDVAE's released sampler rounds the counts and tops up by sampling; this is the same idea
  without a Python loop over crystals. Atoms come out grouped by element within a crystal, which
  does not matter: their initial positions are independent and uniform.
* Predicted lattices that cannot host a graph are sanitised before decoding: lengths are clamped
  to at least ``MIN_LENGTH`` Å, angles into ``ANGLE_RANGE``, and a cell whose three angles still give a
  (near-)zero volume gets 90 degree angles. A trained model on the published data never triggers
  this (the training cells are Niggli reduced); it keeps an untrained or badly trained model from
  failing. The returned lengths and angles are the ones the coordinates were generated in.
* The type noise draws from ``p_c`` of the sampled ``z``; sampling is not differentiable, so the
  composition head gets gradients only from its own loss.
* Decoder graph: ``radius_graph_pbc(cutoff=decoder_cutoff, max_neighbors=decoder_max_neighbors,
  min_distance=decoder_min_distance)`` (pairs within 0.01 Å dropped, as released)
  at every call, in training and at every Langevin step (no Python loop over crystals).
* Property optimisation (section 5.3): Adam on z starting from ``mu`` of the given crystals,
  minimising ``sum_b F(z_b)`` (each crystal's z moves on its own; Adam is invariant to the
  mean-vs-sum scale), decoding ``n_decode`` evenly spaced points of the trajectory (every
  ``steps / n_decode`` steps, the last one the final z: "10 materials decoded every 500 steps"
  for 5000 steps).
* Random numbers: every draw takes the explicit ``generator`` (on its own device; results are moved
  to the model's device; :mod:`benchmark.nn.rng`), so the same seed gives the same crystals.
* The encoder's element embedding (torch_geometric's DimeNet++) covers Z <= 94, as in CDVAE.

The network is built from the plugin's config (:class:`benchmark.models.cdvae.config.CDVAEConfig`;
the hyper-parameter names here are its fields) and the training split's lattice statistics.

Parameter counts at the published size (``python -m benchmark.models.cdvae.network``): encoder
2,213,510 (paper: 2.2 million) and decoder 1,877,732 with the released decoder (128 Gaussians,
type logits from a linear layer on the last h). The released decoder counts 2,345,188 ("2.3
million") because its output blocks also build a one-target energy branch whose output is thrown
away (467,456 parameters that never get a gradient); here that branch is not built.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.models.cdvae.config import CDVAEConfig
from benchmark.nn.batch import CrystalBatch, mean_per_crystal
from benchmark.nn.dimenet import GraphBatch, PeriodicDimeNetPlusPlus
from benchmark.nn.gemnet import GemNetTDecoder
from benchmark.nn.layers import mlp
from benchmark.nn.periodic import (
    cart_to_frac,
    fourier_features,
    frac_to_cart,
    lattice_from_params,
    min_image_displacement,
    radius_graph_pbc,
    scale_lengths,
    unscale_lengths,
    wrap_frac,
)
from benchmark.nn.rng import multinomial, rand, randint, randn
from benchmark.nn.schedules import GeometricSigmas

__all__ = ["CDVAE", "gemnet_decoder", "parameter_counts", "sample_composition", "sanitize_lattice"]

#: smallest lattice length (Å) a predicted lattice is decoded with (see the module docstring)
MIN_LENGTH = 1.0
#: range (degrees) predicted lattice angles are clamped into before decoding
ANGLE_RANGE = (30.0, 150.0)
#: a cell with V / (a b c) below this is treated as degenerate and decoded with 90 degree angles
MIN_VOLUME_FRACTION = 0.1


# ------------------------------------------------------------------------------------- helpers


def sanitize_lattice(lengths: Tensor, angles: Tensor) -> tuple[Tensor, Tensor]:
    """Make predicted lattice parameters decodable (see the module docstring).

    Args:
        lengths: (B, 3) Å.
        angles: (B, 3) degrees.

    Returns:
        ``(lengths, angles)``: lengths >= ``MIN_LENGTH``, angles in ``ANGLE_RANGE``, and 90 degree
        angles where ``V / (a b c) < MIN_VOLUME_FRACTION``.
    """
    lengths = lengths.clamp_min(MIN_LENGTH)
    angles = angles.clamp(*ANGLE_RANGE)
    c = torch.cos(torch.deg2rad(angles))  # (B, 3)
    ca, cb, cg = c.unbind(-1)
    vol2 = 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg  # (B,) (V / abc)^2
    flat = vol2 < MIN_VOLUME_FRACTION**2
    angles = torch.where(flat.unsqueeze(-1), torch.full_like(angles, 90.0), angles)
    return lengths, angles


def sample_composition(probs: Tensor, num_atoms: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Initial atom types of Algorithm 1 (line 4) from per-crystal compositions, batched.

    Element k gets ``floor(n c_k)`` atoms; the ``n - sum_k floor(n c_k)`` remaining atoms are drawn
    (with replacement) in proportion to the leftover ``n c_k - floor(n c_k)``.

    Args:
        probs: (B, A) composition (non-negative rows; normalised here).
        num_atoms: (B,) long, at least 1.
        generator: random source.

    Returns:
        (N,) long atomic numbers in 1..A, crystal by crystal (grouped by element within a crystal).
    """
    num_graphs, num_types = probs.shape
    probs = probs.clamp_min(0)
    probs = probs / probs.sum(-1, keepdim=True).clamp_min(1e-12)  # (B, A)
    expected = probs * num_atoms.to(probs.dtype).unsqueeze(-1)  # (B, A)
    counts = torch.floor(expected).long()  # (B, A)
    left = num_atoms - counts.sum(-1)  # (B,) atoms still to place, >= 0
    most = int(left.max()) if num_graphs else 0
    if most > 0:
        rest = (expected - counts.to(expected.dtype)).clamp_min(0)  # (B, A)
        usable = rest.sum(-1, keepdim=True) > 1e-9
        weights = torch.where(usable, rest, probs)  # rows with no leftover mass (rounding): use c itself
        draws = multinomial(weights, most, generator)  # (B, R)
        valid = (torch.arange(most, device=probs.device).unsqueeze(0) < left.unsqueeze(-1)).long()  # (B, R)
        counts = counts.scatter_add(1, draws, valid)
    elements = torch.arange(1, num_types + 1, device=probs.device).repeat(num_graphs)  # (B * A,)
    return torch.repeat_interleave(elements, counts.reshape(-1), output_size=int(num_atoms.sum()))


def gemnet_decoder(config: CDVAEConfig, latent_dim: int, extra_node_dim: int = 0) -> GemNetTDecoder:
    """CDVAE's score decoder ``PGNN_DEC``: GemNet-T with the config's ``decoder_*`` sizes.

    Args:
        config: the model's config (``decoder_*`` fields and ``max_atomic_num``).
        latent_dim: width of the latent input broadcast to the atoms (``latent_dim`` for CDVAE;
            Con-CDVAE appends a noise-level embedding).
        extra_node_dim: extra per-atom input features (CDVAE+Fourier's and DP-CDVAE's Fourier and
            time features; 0 for CDVAE).
    """
    return GemNetTDecoder(
        hidden_dim=config.decoder_hidden,
        latent_dim=latent_dim,
        max_atomic_num=config.max_atomic_num,
        cutoff=config.decoder_cutoff,
        max_neighbors=config.decoder_max_neighbors,
        num_blocks=config.decoder_blocks,
        emb_size_trip=config.decoder_emb_size_trip,
        emb_size_rbf=config.decoder_emb_size_rbf,
        emb_size_cbf=config.decoder_emb_size_cbf,
        emb_size_bil_trip=config.decoder_emb_size_bil_trip,
        num_spherical=config.decoder_num_spherical,
        num_radial=config.decoder_num_radial,
        num_before_skip=config.decoder_num_before_skip,
        num_after_skip=config.decoder_num_after_skip,
        num_concat=config.decoder_num_concat,
        num_atom=config.decoder_num_atom,
        envelope_exponent=config.decoder_envelope_exponent,
        radial_basis=config.decoder_radial_basis,
        type_head=config.decoder_type_head,
        periodic_triplets=config.decoder_periodic_triplets,
        extra_node_dim=extra_node_dim,
    )


# ------------------------------------------------------------------------------------- model


class CDVAE(nn.Module):
    """The CDVAE network: encoder, aggregate heads, score decoder, losses, Langevin sampling.

    Args:
        config: the hyper-parameters (:class:`~benchmark.models.cdvae.config.CDVAEConfig`; its
            training and sampling fields are not read here).
        lattice_mean, lattice_std: per-column standardisation of
            ``[a, b, c] / N^(1/3) + [alpha, beta, gamma]``, 6 values each, fitted on the training
            split by the caller (:func:`benchmark.models.cdvae.plugin.lattice_statistics`); the
            defaults leave the lattice unscaled.
    """

    def __init__(self, config: CDVAEConfig, lattice_mean: Sequence[float] = (0.0,) * 6,
                 lattice_std: Sequence[float] = (1.0,) * 6) -> None:
        super().__init__()
        mean = tuple(float(x) for x in lattice_mean)
        std = tuple(float(x) for x in lattice_std)
        if len(mean) != 6 or len(std) != 6:
            raise ValueError("lattice_mean and lattice_std need 6 values: a, b, c (scaled), alpha, beta, gamma")
        if any(s <= 0 for s in std):
            raise ValueError(f"lattice_std must be positive, got {std}")
        self.config = config
        cfg = config
        latent = cfg.latent_dim
        self.encoder = PeriodicDimeNetPlusPlus(
            num_targets=latent,
            hidden_channels=cfg.encoder_hidden,
            num_blocks=cfg.encoder_blocks,
            int_emb_size=cfg.encoder_int_emb_size,
            basis_emb_size=cfg.encoder_basis_emb_size,
            out_emb_channels=cfg.encoder_out_emb_size,
            num_spherical=cfg.encoder_num_spherical,
            num_radial=cfg.encoder_num_radial,
            cutoff=cfg.encoder_cutoff,
            envelope_exponent=cfg.encoder_envelope_exponent,
            readout="mean",
        )
        self.fc_mu = nn.Linear(latent, latent)
        self.fc_var = nn.Linear(latent, latent)
        self.fc_num_atoms = mlp(latent, cfg.hidden_dim, cfg.fc_num_layers, cfg.max_atoms + 1)
        self.fc_lattice = mlp(latent, cfg.hidden_dim, cfg.fc_num_layers, 6)
        self.fc_composition = mlp(latent, cfg.hidden_dim, cfg.fc_num_layers, cfg.max_atomic_num)
        self.fc_property = mlp(latent, cfg.hidden_dim, cfg.fc_num_layers, 1) if cfg.predict_property else None
        self.decoder = gemnet_decoder(cfg, latent, cfg.num_fourier if cfg.decoder_fourier else 0)
        # derived from the config and statistics, so not part of the state dict
        sigmas = GeometricSigmas(cfg.sigma_begin, cfg.sigma_end, cfg.num_noise_level).sigmas()  # (L,) sigma_X,j
        type_sigmas = GeometricSigmas(cfg.type_sigma_begin, cfg.type_sigma_end, cfg.num_noise_level).sigmas()  # (L,) sigma_A,j
        self.register_buffer("sigmas", sigmas, persistent=False)
        self.register_buffer("type_sigmas", type_sigmas, persistent=False)
        self.register_buffer("lattice_mean", torch.tensor(mean, dtype=torch.float32), persistent=False)  # (6,)
        self.register_buffer("lattice_std", torch.tensor(std, dtype=torch.float32), persistent=False)  # (6,)

    # ------------------------------------------------------------------------------ encoder

    def _encode_stats(self, b: CrystalBatch) -> tuple[Tensor, Tensor]:
        """``(mu, log_var)``, each (B, latent), of ``PGNN_ENC(M)`` on the CrystalNN graph."""
        lattice = lattice_from_params(b.lengths, b.angles)  # (B, 3, 3)
        pos = frac_to_cart(b.frac_coords, lattice, b.num_atoms)  # (N, 3)
        edge_lattice = lattice[b.batch[b.edge_index[0]]]  # (E, 3, 3)
        offsets = torch.einsum("ei,eij->ej", b.images.to(pos.dtype), edge_lattice)  # (E, 3)
        graph = GraphBatch(b.atom_types, pos, b.edge_index, offsets, b.batch, b.num_graphs)
        hidden = self.encoder(graph)  # (B, latent)
        return self.fc_mu(hidden), self.fc_var(hidden)

    def encode(self, b: CrystalBatch, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Encode crystals (section 4, "Periodic material encoder").

        Returns:
            ``(mu, log_var, z)``, each (B, latent_dim), ``z = mu + exp(log_var / 2) eps``.

        Raises:
            FloatingPointError: in training, z is not finite (a diverged encoder: its
                log-variance overflows ``exp``), with the numbers, instead of an obscure error
                further on. Evaluation leaves such a z to the caller's per-crystal checks.
        """
        mu, log_var = self._encode_stats(b)
        z = mu + torch.exp(0.5 * log_var) * randn(tuple(mu.shape), generator, mu)  # (B, latent)
        if self.training and not bool(torch.isfinite(z).all()):
            raise FloatingPointError(
                f"the encoder diverged: z is not finite (largest log-variance {float(log_var.detach().max()):.4g}, "
                f"largest |mu| {float(mu.detach().abs().max()):.4g}); a lower learning rate or clipping gradients by value "
                "(the released setting) avoids it; training resumes from its last checkpoint")
        return mu, log_var, z

    # ------------------------------------------------------------------------------ aggregates

    def predict_aggregates(self, z: Tensor, gt_num_atoms: Tensor | None = None, gt_lengths: Tensor | None = None,
                           gt_angles: Tensor | None = None, teacher_forcing: bool = False) -> dict[str, Tensor]:
        """``MLP_AGG(z)``: number of atoms, lattice, composition (and property) of each crystal.

        The lengths are unscaled with ``gt_num_atoms`` when given, else with the predicted N (argmax,
        at least 1). With ``teacher_forcing`` the returned ``lengths``/``angles`` are the given true
        ones (the raw prediction stays in ``lattice_scaled`` for the loss).

        Args:
            z: (B, latent_dim).
            gt_num_atoms: (B,) long or None.
            gt_lengths, gt_angles: (B, 3) or None; needed with ``teacher_forcing``.
            teacher_forcing: return the true lattice instead of the predicted one.

        Returns:
            dict with ``num_atoms_logits`` (B, max_atoms + 1), ``num_atoms`` (B,) long (given or
            predicted), ``lattice_scaled`` (B, 6) standardised prediction, ``lengths`` (B, 3) Å,
            ``angles`` (B, 3) degrees, ``composition_logits`` (B, max_atomic_num) and, with
            ``predict_property``, ``property`` (B,).
        """
        num_atoms_logits = self.fc_num_atoms(z)  # (B, max_atoms + 1)
        if gt_num_atoms is not None:
            num_atoms = gt_num_atoms
        else:
            num_atoms = num_atoms_logits.argmax(dim=-1).clamp_min(1)  # (B,)
        lattice_scaled = self.fc_lattice(z)  # (B, 6)
        raw = lattice_scaled * self.lattice_std + self.lattice_mean  # (B, 6) [a, b, c] / N^(1/3), angles
        lengths = unscale_lengths(raw[:, :3], num_atoms)  # (B, 3)
        angles = raw[:, 3:]  # (B, 3)
        if teacher_forcing:
            if gt_lengths is None or gt_angles is None:
                raise ValueError("teacher forcing needs the true lengths and angles")
            lengths, angles = gt_lengths, gt_angles
        out = {
            "num_atoms_logits": num_atoms_logits,
            "num_atoms": num_atoms,
            "lattice_scaled": lattice_scaled,
            "lengths": lengths,
            "angles": angles,
            "composition_logits": self.fc_composition(z),  # (B, max_atomic_num)
        }
        if self.fc_property is not None:
            out["property"] = self.fc_property(z).squeeze(-1)  # (B,)
        return out

    def standardized_lattice(self, lengths: Tensor, angles: Tensor, num_atoms: Tensor) -> Tensor:
        """(B, 6) ``([lengths / N^(1/3), angles] - lattice_mean) / lattice_std``, the lattice target."""
        raw = torch.cat([scale_lengths(lengths, num_atoms), angles], dim=-1)  # (B, 6)
        return (raw - self.lattice_mean) / self.lattice_std

    # ------------------------------------------------------------------------------ decoder

    def decode(self, z: Tensor, frac: Tensor, atom_types: Tensor, lattice: Tensor, num_atoms: Tensor,
               batch: Tensor) -> tuple[Tensor, Tensor]:
        """``PGNN_DEC(M~ | z)`` on a freshly built periodic graph.

        Args:
            z: (B, latent_dim).
            frac: (N, 3) (noisy) fractional coordinates.
            atom_types: (N,) long (noisy) atomic numbers.
            lattice: (B, 3, 3) rows.
            num_atoms: (B,) long.
            batch: (N,) long.

        Returns:
            ``(pred, type_logits)``: (N, 3) noise-free score ``s_X(M~ | z)`` (Cartesian, in the
            units of its target ``d_min / sigma_X``) and (N, max_atomic_num) logits of ``p_A(M~ | z)``.
        """
        graph = radius_graph_pbc(frac, lattice, num_atoms, self.config.decoder_cutoff, self.config.decoder_max_neighbors,
                                 min_distance=self.config.decoder_min_distance)
        return self.decoder(z, atom_types, batch, graph.edge_index, graph.edge_vec, graph.images,
                            self.node_features(frac))

    def node_features(self, frac: Tensor) -> Tensor | None:
        """(N, num_fourier) Fourier features of the (noisy) fractional coordinates for
        CDVAE+Fourier (``decoder_fourier``); None for CDVAE."""
        if not self.config.decoder_fourier:
            return None
        return fourier_features(frac, self.config.fourier_n_min, self.config.fourier_n_max)

    def _noisy_structure(self, b: CrystalBatch, composition_logits: Tensor, lattice: Tensor,
                         generator: torch.Generator | None) -> dict[str, Tensor]:
        """Noisy decoder input M~ (section 4): one level per crystal, type and coordinate noise.

        Returns:
            dict with ``level`` (B,), ``sigma_x`` (N,), ``sigma_a`` (N,), ``atom_types`` (N,) noisy
            types and ``frac`` (N, 3) noisy wrapped fractional coordinates.
        """
        n = b.frac_coords.shape[0]
        level = randint(self.config.num_noise_level, (b.num_graphs,), generator, b.num_atoms)  # (B,)
        sigma_x = self.sigmas[level][b.batch]  # (N,)
        sigma_a = self.type_sigmas[level][b.batch]  # (N,)
        # types: A~ ~ p_A / (1 + sigma_A) + sigma_A / (1 + sigma_A) p_c
        p_c = torch.softmax(composition_logits.detach(), dim=-1)[b.batch]  # (N, A)
        p_a = F.one_hot(b.atom_types - 1, self.config.max_atomic_num).to(p_c.dtype)  # (N, A)
        mix = (p_a + sigma_a.unsqueeze(-1) * p_c) / (1.0 + sigma_a.unsqueeze(-1))  # (N, A)
        noisy_types = multinomial(mix, 1, generator).squeeze(-1) + 1  # (N,)
        # coordinates: x~ = x + sigma_X eps in Cartesian, back to fractional, wrapped
        cart = frac_to_cart(b.frac_coords, lattice, b.num_atoms)  # (N, 3)
        cart = cart + sigma_x.unsqueeze(-1) * randn((n, 3), generator, cart)  # (N, 3)
        noisy_frac = wrap_frac(cart_to_frac(cart, lattice, b.num_atoms))  # (N, 3)
        return {"level": level, "sigma_x": sigma_x, "sigma_a": sigma_a, "atom_types": noisy_types, "frac": noisy_frac}

    def _decoder_lattice(self, b: CrystalBatch, agg: dict[str, Tensor], teacher_forcing: bool) -> Tensor:
        """(B, 3, 3) lattice the noisy decoder input is built on: the truth with teacher forcing,
        else the prediction. ``decoder_lattice="released"`` (CDVAE's released ``forward``) keeps
        the prediction in the graph, so the decoder's losses also train the lattice head;
        ``"detached"`` cuts it off (the lattice head then learns from its own loss only). Either
        way a predicted cell is sanitised (:func:`sanitize_lattice`), which changes only cells that
        could not host a graph."""
        if teacher_forcing:
            return lattice_from_params(b.lengths, b.angles)
        lengths, angles = agg["lengths"], agg["angles"]
        if self.config.decoder_lattice == "detached":
            lengths, angles = lengths.detach(), angles.detach()
        return lattice_from_params(*sanitize_lattice(lengths, angles))

    def target_lattice(self, b: CrystalBatch, lattice: Tensor) -> Tensor:
        """(B, 3, 3) lattice the coordinate target ``d_min(X, X~)`` is measured in: the true one
        (CDVAE's released ``coord_loss`` uses ``batch.lengths, batch.angles``) with
        ``decoder_lattice="released"``, else the decoder's ``lattice``. Equal under teacher forcing."""
        if self.config.decoder_lattice == "released":
            return lattice_from_params(b.lengths, b.angles)
        return lattice

    # ------------------------------------------------------------------------------ training

    def losses(self, b: CrystalBatch, teacher_forcing: bool,
               generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """All loss terms and their Eq. 9 total for one batch (see the module docstring).

        Args:
            b: the batch (``y`` needed with ``predict_property``).
            teacher_forcing: build the noisy decoder input on the true lattice.
            generator: random source for z, noise levels, type and coordinate noise.

        Returns:
            dict of scalars: ``natom``, ``lattice``, ``composition``, ``coord``, ``type``, ``kld``,
            ``property`` (with ``predict_property``) and ``loss``.
        """
        cfg = self.config
        if int(b.num_atoms.max()) > cfg.max_atoms:
            raise ValueError(f"a crystal has {int(b.num_atoms.max())} atoms, more than max_atoms={cfg.max_atoms}")
        mu, log_var, z = self.encode(b, generator)  # (B, latent) each
        agg = self.predict_aggregates(z, b.num_atoms, b.lengths, b.angles, teacher_forcing)
        lattice = self._decoder_lattice(b, agg, teacher_forcing)  # (B, 3, 3)
        coord, type_term = self._denoising_losses(b, z, agg, lattice, generator)  # (N,), (N,)
        return self.assemble_losses(b, agg, mu, log_var, coord, type_term)

    def assemble_losses(self, b: CrystalBatch, agg: dict[str, Tensor], mu: Tensor, log_var: Tensor, coord: Tensor,
                        type_term: Tensor) -> dict[str, Tensor]:
        """Eq. 9's terms and total from the aggregate predictions ``agg``, the posterior ``mu`` and
        ``log_var`` (B, latent) and the per-atom denoising terms ``coord`` and ``type_term`` (N,):
        the part every model on CDVAE's VAE shares (DP-CDVAE changes the denoising terms,
        Con-CDVAE adds its Predictor's loss to the total)."""
        cfg = self.config
        num_graphs = b.num_graphs
        # composition: -sum_k p_k log c_k per crystal
        log_c = torch.log_softmax(agg["composition_logits"], dim=-1)  # (B, A)
        comp = -log_c[b.batch, b.atom_types - 1]  # (N,)

        out = {
            "natom": F.cross_entropy(agg["num_atoms_logits"], b.num_atoms),
            "lattice": F.mse_loss(agg["lattice_scaled"], self.standardized_lattice(b.lengths, b.angles, b.num_atoms)),
            "composition": mean_per_crystal(comp, b.batch, num_graphs).mean(),
            "coord": mean_per_crystal(coord, b.batch, num_graphs).mean(),
            "type": mean_per_crystal(type_term, b.batch, num_graphs).mean(),
            "kld": (-0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).sum(-1)).mean(),
        }
        total = (cfg.cost_natom * out["natom"] + cfg.cost_lattice * out["lattice"]
                 + cfg.cost_composition * out["composition"] + cfg.cost_coord * out["coord"]
                 + cfg.cost_type * out["type"] + cfg.beta * out["kld"])
        if self.fc_property is not None:
            if b.y is None:
                raise ValueError("predict_property is on but the batch has no y")
            out["property"] = F.mse_loss(agg["property"], b.y.to(agg["property"].dtype))
            total = total + cfg.cost_property * out["property"]
        out["loss"] = total
        return out

    def validation_loss(self, parts: dict[str, Tensor]) -> Tensor:
        """The loss validation reports, which the learning-rate schedule and the kept checkpoint
        watch: ``cost_coord * coord + cost_type * type`` (CDVAE's released ``compute_stats``:
        "validation/test loss only has coord and type"), computed without teacher forcing."""
        return self.config.cost_coord * parts["coord"] + self.config.cost_type * parts["type"]

    def training_loss(self, parts: dict[str, Tensor], epoch: int) -> Tensor:
        """The loss minimised in ``epoch`` (0-based): Eq. 9's total, with the coordinate term's
        weight multiplied by ``coord_boost`` after ``coord_boost_epoch`` when that is set
        (DP-CDVAE's released ``mul_cost_coord_epoch``; off for CDVAE)."""
        boost_epoch = self.config.coord_boost_epoch
        if boost_epoch is not None and epoch > boost_epoch:
            return parts["loss"] + (self.config.coord_boost - 1.0) * self.config.cost_coord * parts["coord"]
        return parts["loss"]

    def _denoising_losses(self, b: CrystalBatch, z: Tensor, agg: dict[str, Tensor], lattice: Tensor,
                          generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Per-atom coordinate and type terms of the decoder loss (Eq. 2), each (N,); the part a
        model with another decoder objective (DP-CDVAE) replaces."""
        noisy = self._noisy_structure(b, agg["composition_logits"], lattice, generator)
        pred, type_logits = self.decode(z, noisy["frac"], noisy["atom_types"], lattice, b.num_atoms, b.batch)
        # coordinates: 1/2 || pred - d_min(X, X~) / sigma_X ||^2 (lambda(sigma) = sigma^2)
        target = min_image_displacement(b.frac_coords, noisy["frac"], self.target_lattice(b, lattice), b.num_atoms)  # (N, 3)
        sigma_x = noisy["sigma_x"].unsqueeze(-1)  # (N, 1)
        coord = 0.5 * (pred - target / sigma_x).pow(2).sum(-1)  # (N,)
        # types: cross entropy / sigma_A
        type_ce = F.cross_entropy(type_logits, b.atom_types - 1, reduction="none") / noisy["sigma_a"]  # (N,)
        return coord, type_ce

    @torch.no_grad()
    def fit_scale_factors(self, b: CrystalBatch, generator: torch.Generator | None = None) -> dict[str, float]:
        """Fit the decoder's GemNet scale factors on one representative noisy batch (call once
        before training; see :meth:`benchmark.nn.gemnet.GemNetTDecoder.fit_scale_factors`).

        The input is built as in training with teacher forcing, decoding ``mu``.
        """
        mu, _ = self._encode_stats(b)
        agg = self.predict_aggregates(mu, b.num_atoms, b.lengths, b.angles, teacher_forcing=True)
        lattice = lattice_from_params(b.lengths, b.angles)
        noisy = self._noisy_structure(b, agg["composition_logits"], lattice, generator)
        graph = radius_graph_pbc(noisy["frac"], lattice, b.num_atoms, self.config.decoder_cutoff,
                                 self.config.decoder_max_neighbors, min_distance=self.config.decoder_min_distance)
        return self.decoder.fit_scale_factors(mu, noisy["atom_types"], b.batch, graph.edge_index, graph.edge_vec,
                                              graph.images, self.node_features(noisy["frac"]))

    # ------------------------------------------------------------------------------ generation

    @torch.no_grad()
    def generation_cell(self, z: Tensor, num_atoms: Tensor | None = None, lengths: Tensor | None = None,
                        angles: Tensor | None = None) -> tuple[dict[str, Tensor], Tensor, Tensor, Tensor, Tensor]:
        """What a sampler starts from (Algorithm 1, lines 1-2): the aggregates of ``z`` (B, latent),
        the number of atoms per crystal (B,) (``num_atoms`` when given, as in reconstruction, else
        predicted) and the cell: ``lengths`` / ``angles`` (B, 3) when given, else the predicted ones
        sanitised (see the module docstring). Returns (agg, n_atoms, lengths, angles, lattice (B, 3, 3))."""
        agg = self.predict_aggregates(z, gt_num_atoms=num_atoms)
        n_atoms = agg["num_atoms"].long()  # (B,)
        if lengths is None or angles is None:
            pred_lengths, pred_angles = sanitize_lattice(agg["lengths"], agg["angles"])
            lengths = pred_lengths if lengths is None else lengths
            angles = pred_angles if angles is None else angles
        lengths, angles = lengths.to(z.dtype), angles.to(z.dtype)
        return agg, n_atoms, lengths, angles, lattice_from_params(lengths, angles)

    def langevin(self, z: Tensor, num_atoms: Tensor | None = None, lengths: Tensor | None = None,
                 angles: Tensor | None = None, n_step_each: int = 100, step_lr: float = 1e-4,
                 min_sigma: float = 0.0, generator: torch.Generator | None = None,
                 composition_from: Tensor | None = None) -> dict[str, Tensor | int]:
        """Annealed Langevin dynamics, Algorithm 1, for a batch of latents.

        Args:
            z: (B, latent_dim).
            num_atoms: (B,) long to impose N; None predicts it (argmax, at least 1).
            lengths, angles: (B, 3) to impose the lattice (used as given); None predicts them
                (de-standardised, lengths times N^(1/3), then :func:`sanitize_lattice`).
            n_step_each: T, steps per noise level.
            step_lr: epsilon of ``alpha_j = epsilon sigma_j^2 / sigma_L^2``.
            min_sigma: skip the levels with ``sigma_X,j < min_sigma`` (0 runs all).
            generator: random source (initial types and coordinates, Langevin noise).
            composition_from: (B, max_atomic_num) composition to draw the initial types from;
                None uses the predicted one, ``softmax(MLP_AGG(z))``.

        Returns:
            dict with ``frac_coords`` (N, 3) in [0, 1), ``atom_types`` (N,) long,
            ``num_atoms`` (B,) long, ``lengths`` (B, 3), ``angles`` (B, 3) and
            ``model_evaluations`` (int, decoder calls = levels run * n_step_each).
        """
        agg, n_atoms, lengths, angles, lattice = self.generation_cell(z, num_atoms, lengths, angles)
        num_graphs = z.shape[0]
        total = int(n_atoms.sum())
        batch = torch.repeat_interleave(torch.arange(num_graphs, device=z.device), n_atoms, output_size=total)  # (N,)

        probs = torch.softmax(agg["composition_logits"], dim=-1) if composition_from is None else composition_from
        atom_types = sample_composition(probs.to(z.dtype), n_atoms, generator)  # (N,) A_0
        frac = rand((total, 3), generator, z)  # (N, 3) X_0 uniform in the cell

        sigmas = self.sigmas.tolist()
        sigma_last = sigmas[-1]
        evaluations = 0
        for sigma in sigmas:
            if sigma < min_sigma:
                break
            alpha = step_lr * (sigma / sigma_last) ** 2  # alpha_j
            for _ in range(n_step_each):
                pred, type_logits = self.decode(z, frac, atom_types, lattice, n_atoms, batch)  # (N, 3), (N, A)
                score = pred / sigma  # s_X(M~ | z; sigma_j)
                noise = randn((total, 3), generator, frac)  # (N, 3)
                cart = frac_to_cart(frac, lattice, n_atoms) + alpha * score + math.sqrt(2.0 * alpha) * noise
                frac = wrap_frac(cart_to_frac(cart, lattice, n_atoms))  # back to the cell
                atom_types = type_logits.argmax(dim=-1) + 1  # (N,)
                evaluations += 1
        return {
            "frac_coords": frac,
            "atom_types": atom_types,
            "num_atoms": n_atoms,
            "lengths": lengths,
            "angles": angles,
            "model_evaluations": evaluations,
        }

    def _device_dtype_like(self) -> Tensor:
        return self.fc_mu.weight

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None, n_step_each: int = 100,
               step_lr: float = 1e-4) -> dict[str, Tensor | int]:
        """Generate ``n`` crystals: ``z ~ N(0, I)`` (B = n), then :meth:`langevin` (section 5.2)."""
        z = randn((n, self.config.latent_dim), generator, self._device_dtype_like())  # (n, latent)
        return self.langevin(z, n_step_each=n_step_each, step_lr=step_lr, generator=generator)

    def latent_of(self, b: CrystalBatch, latent: Literal["sample", "mean"], generator: torch.Generator | None) -> Tensor:
        """z (B, latent) of encoded crystals: a draw ``mu + exp(log_var / 2) eps`` from q(z | M), as the
        released ``scripts/evaluate.py`` encodes for reconstruction and optimisation
        (``_, _, z = model.encode(batch)``), or the mean ``mu``."""
        if latent == "sample":
            return self.encode(b, generator)[2]
        if latent == "mean":
            return self._encode_stats(b)[0]
        raise ValueError(f"latent must be 'sample' or 'mean', got {latent!r}")

    @torch.no_grad()
    def reconstruct(self, b: CrystalBatch, generator: torch.Generator | None, n_step_each: int = 100,
                    step_lr: float = 1e-4, latent: Literal["sample", "mean"] = "sample") -> dict[str, Tensor | int]:
        """Reconstruct crystals (section 5.1): decode z of each crystal (:meth:`latent_of`); N,
        lattice and composition are predicted from z (not teacher-forced)."""
        z = self.latent_of(b, latent, generator)  # (B, latent)
        return self.langevin(z, n_step_each=n_step_each, step_lr=step_lr, generator=generator)

    def optimize(self, b: CrystalBatch, steps: int, lr: float, n_decode: int, generator: torch.Generator | None,
                 n_step_each: int = 100, step_lr: float = 1e-4, latent: Literal["sample", "mean"] = "sample",
                 schedule: Literal["released", "even"] = "released") -> list[dict[str, Tensor | int]]:
        """Property optimisation in latent space (section 5.3; the published protocol is
        ``steps=5000, lr=1e-3, n_decode=10``).

        Starts from z of the given crystals (:meth:`latent_of`), runs Adam on z minimising the
        property head ``sum_b F(z_b)`` (model parameters untouched; the released code minimises the
        mean, which Adam's step does not distinguish), and decodes along the trajectory at the steps
        of :func:`decode_steps` (``schedule``).

        Returns:
            one dict per decode, each the :meth:`langevin` output plus ``step`` (int, optimiser
            steps done), ``z`` (B, latent_dim) and ``property`` (B,), the predicted (standardised) F(z).
        """
        if self.fc_property is None:
            raise RuntimeError("optimize needs the property head: a config with a property (predict_property is False)")
        if n_decode < 1 or steps < 0:
            raise ValueError("need n_decode >= 1 and steps >= 0")
        with torch.no_grad():
            start = self.latent_of(b, latent, generator)
        z = start.detach().clone().requires_grad_(True)  # (B, latent)
        opt = torch.optim.Adam([z], lr=lr)
        checkpoints = decode_steps(steps, n_decode, schedule)
        results: list[dict[str, Tensor | int]] = []
        done = 0
        for stop in checkpoints:
            while done < stop:
                with torch.enable_grad():
                    value = self.fc_property(z).sum()
                    (grad,) = torch.autograd.grad(value, z)
                z.grad = grad
                opt.step()
                done += 1
            current = z.detach().clone()
            with torch.no_grad():
                prop = self.fc_property(current).squeeze(-1)  # (B,)
            out = self.langevin(current, n_step_each=n_step_each, step_lr=step_lr, generator=generator)
            results.append({**out, "step": done, "z": current, "property": prop})
        return results


def decode_steps(steps: int, n_decode: int, schedule: Literal["released", "even"] = "released") -> list[int]:
    """After how many optimiser steps property optimisation decodes its trajectory (section 5.3).

    ``released`` (CDVAE's ``scripts/evaluate.py``, ``optimization``): ``interval = steps // (n_decode - 1)``
    and a decode after the step of iteration i whenever ``i % interval == 0`` or ``i == steps - 1``:
    for 5,000 steps and ``n_decode`` 10, after 1, 556, 1111, ..., 4996 and 5000 steps (11 decodes;
    the released evaluation scores all 11). ``even``: ``n_decode`` evenly spaced points, after
    ``k * steps // n_decode`` steps, k = 1..n_decode (the paper's "10 materials decoded every 500 steps").
    """
    if schedule == "even" or n_decode < 2 or steps < 1:
        return [k * steps // n_decode for k in range(1, n_decode + 1)]
    if schedule != "released":
        raise ValueError(f"schedule must be 'released' or 'even', got {schedule!r}")
    interval = max(steps // (n_decode - 1), 1)
    return sorted({i + 1 for i in range(steps) if i % interval == 0 or i == steps - 1})


def parameter_counts(model: CDVAE) -> dict[str, int]:
    """Trainable parameters of the encoder (with fc_mu/fc_var), the MLP heads, the decoder and all."""
    def count(*mods: nn.Module | None) -> int:
        return sum(p.numel() for m in mods if m is not None for p in m.parameters() if p.requires_grad)

    return {
        "encoder": count(model.encoder),
        "encoder+fc_mu/var": count(model.encoder, model.fc_mu, model.fc_var),
        "heads": count(model.fc_num_atoms, model.fc_lattice, model.fc_composition, model.fc_property),
        "decoder": count(model.decoder),
        "total": count(model),
    }


if __name__ == "__main__":  # parameter counts at the published size
    for name, value in parameter_counts(CDVAE(CDVAEConfig(property="formation_energy_per_atom"))).items():
        print(f"{name:>20}: {value:,}")
