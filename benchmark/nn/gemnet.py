"""GemNet-T, the CDVAE score-network decoder, in plain PyTorch.

GemNet (Gasteiger, Becker, Günnemann, NeurIPS 2021, "GemNet: Universal Directional Graph Neural
Networks for Molecules") passes messages along *directed edges* and lets every edge message see
the geometry of two-hop paths (triplets). GemNet-T is the triplets-only variant; "-d" variants
predict forces directly from edge outputs instead of as an energy gradient. CDVAE (Xie et al.,
ICLR 2022, appendix B.3) uses GemNet with direct forces as its decoder ``PGNN_DEC`` and reduces the
hidden sizes to 128 ("the decoder has 2.3 million parameters"); the appendix names GemNet-dQ, but
its released code builds the triplets-only interaction blocks, i.e. GemNet-dT. This module writes
that network from the GemNet paper; the pieces are:

* **Bases** (GemNet's radial and circular bases). A radial basis on every edge distance ``d``:
  spherical Bessel functions ``sqrt(2/c) sin(n pi d / c) / d`` (n = 1..num_radial, trainable
  frequencies initialised at ``n pi``) times the polynomial envelope ``u(d/c)`` of exponent p = 5,
  ``u(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2)`` (zero for x >= 1), which makes
  every basis function and its first derivatives vanish smoothly at the cutoff c. A circular
  (two-hop) basis on every triplet: the radial basis of the distance of the *output* edge times the
  spherical harmonics ``Y_l^0(cos theta) = sqrt((2l+1)/4pi) P_l(cos theta)`` (l < num_spherical) of
  the angle between the two edges. Because the radial factor belongs to the output edge, it can be
  pulled out of the sum over input edges; that is the "efficient" formulation below.
* **Embeddings** (GemNet figure 4, embedding block). Atom embedding ``h_i = e(a_i)`` and edge
  embedding ``m_ji = sigma(W [h_j || h_i || e_RBF(d_ji)])``.
* **Triplet interaction** (GemNet figure 4, interaction block with T-MP only). For output edge j -> i:
  ``x_kj = sigma(W_down [sigma(W m_kj) * W_rbf e_RBF(d_kj)])`` (Hadamard product with the radial
  basis, then a down-projection to ``emb_size_trip``), summed over input edges k -> j with the circular basis in
  a bilinear layer,
  ``y_ji = sum_{c, t} W_bil[c, t, :] sum_s R_cs(d_ji) sum_k Y_s(theta_kji) x_kj[t]``
  where ``R(d_ji) = e_RBF(d_ji) @ W_cbf`` is the shared down-projection of the radial part (the
  efficient bilinear layer of GemNet appendix; the sum over k runs as one batched matmul over a
  zero-padded (E, Kmax, ·) tensor). ``y`` is up-projected twice, once onto edge j -> i and once
  onto its reverse i -> j ("symmetric message passing"), and merged with a skip connection and
  residual layers into ``m``.
* **Atom update block.** ``h_i += MLP(sum_j m_ji * W e_RBF(d_ji))`` (num_atom residual layers),
  then the edge embedding is refreshed from ``[h_j || h_i || m_ji]``.
* **Output blocks** (one after the embedding and one after every interaction block; their outputs
  are summed). The edge branch gives one scalar ``f_ji`` per edge ("direct forces"); the vector
  output is ``sum_blocks sum_j f_ji u_ji`` with ``u_ji`` the unit vector from j to i. As only edge
  vectors enter, the output is translation invariant; it rotates with the edge vectors and is
  permutation equivariant. The atom branch gives per-atom scalars (the energy head of GemNet);
  here it has ``max_atomic_num`` outputs and its block sum is the atom-type logits.

CDVAE's adaptation (CDVAE section 4, "Conditional score matching decoder"): the node input is
``h_i^0 = MLP(e_a(a~_i) || z)`` where ``e_a`` is an element embedding and ``z`` (B, latent_dim)
the crystal's latent vector broadcast to its atoms; the MLP is one linear layer, as in CDVAE's
released code. The decoder returns ``pred_cart_coord_diff`` (N, 3), which CDVAE divides by the
noise level ``sigma_X`` to get the score ``s_X`` (that division happens outside this module), and
type logits (N, max_atomic_num), ``p_A = softmax(logits)``.

Conventions (the project's, as in :mod:`benchmark.nn.dimenet` and
:mod:`benchmark.nn.periodic`):

* ``edge_index`` (2, E): row 0 the source j, row 1 the target i of the message j -> i.
* ``edge_vec`` (E, 3): Cartesian vector *from the target i to the source j's image*,
  ``pos_j + image @ L - pos_i``.
* The vector output of atom i is ``sum_j f_ji * (-edge_vec_ji / |edge_vec_ji|)``: a positive edge
  scalar pushes i *away* from j (CDVAE's ``V_st = -distance_vec / d``). It is meant to be *added*
  to the Cartesian positions (a predicted displacement ``x - x~``; CDVAE's training target is the
  minimum-image ``d_min(X, X~)``), so a model trained on that target points the right way whatever
  sign convention the edge scalars learn.
* Triplet k -> j -> i pairs input edge k -> j with output edge j -> i; ``theta`` is the bond
  angle at j between ``pos_i - pos_j`` and ``pos_k - pos_j``.

Graph handling inside :meth:`GemNetTDecoder.forward`:

* **Symmetrisation.** The symmetric message passing needs every edge's reverse (i -> j with the
  negated image). A KNN graph (CDVAE's, K = 20) is not symmetric, so :func:`symmetrize_edges`
  appends the reverse of every edge that lacks one (union of both directions; reverses are found
  from integer ``images`` when given, else by ``edge_vec_c ~ -edge_vec_e`` within a tolerance).
  CDVAE/OCP instead keep only edges with ``src < dst`` (self-image edges by the sign of the image)
  and mirror them, which drops some KNN edges; the union keeps them all.
* **Triplets.** :func:`benchmark.nn.dimenet.build_triplets` gives all k -> j -> i
  with ``k != i`` by atom index (the DimeNet++ encoder's rule). GemNet only excludes the reverse
  edge itself (``k -> j`` being the reverse of ``j -> i``), so with ``periodic_triplets=True``
  (default) the triplets whose k is a *different periodic image* of i are added back; this matters
  for small cells (a one-atom cell has no triplets at all under the atom-index rule).
* **Scale factors.** GemNet multiplies each sum over neighbours (and each Hadamard product with a
  basis) by a constant fitted on data so the result keeps the scale of its input (OCP's
  ``scale_file``; CDVAE shipped fitted values). They are buffers here, 1.0 until
  :meth:`GemNetTDecoder.fit_scale_factors` is called on a representative batch.

Hyper-parameters. CDVAE only states "GemNet ... hidden dimensions 128 ... 2.3 million parameters"
(appendix B.3), with the decoder graph K = 20 (B.2), cutoff 7 Å and latent size 256. The GemNet-T
defaults used with it: num_blocks 3, emb_size_trip 64, emb_size_rbf 16, emb_size_cbf 16,
emb_size_bil_trip 64, num_before_skip 1, num_after_skip 2, num_concat 1, num_atom 3,
num_spherical 7, envelope exponent 5. The radial basis here is the paper's Bessel basis with
num_radial 6; CDVAE's released code used 128 Gaussians instead (``radial_basis="gaussian",
num_radial=128``). Trainable parameters at hidden 128, latent 256, max_atomic_num 100 (printed
by ``python -m benchmark.nn.gemnet``): default (Bessel/6) 2,347,852; Gaussian/128 2,382,976;
with ``type_head="last_hidden"`` (logits from a linear layer on the last ``h`` as in CDVAE's code,
and no atom branch in the output blocks) 1,842,608 and 1,877,732. CDVAE's released decoder has
2,345,188 by the same count ("2.3 million"): Gaussian/128, a linear type head, and output blocks
whose one-target energy branch is computed and discarded (467,456 parameters that get no
gradient). Here that branch is kept and made to produce the type logits instead.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from benchmark.nn.dimenet import build_triplets

__all__ = [
    "GemNetTDecoder",
    "count_parameters",
    "gemnet_triplets",
    "symmetrize_edges",
]


# ------------------------------------------------------------------------------- basic layers


def _he_orthogonal_(weight: Tensor, fan_in: int, matrix_shape: tuple[int, int], from_matrix) -> None:
    """GemNet's initialiser: a random orthogonal matrix, each output row standardised to zero
    mean and unit variance over its inputs, scaled by ``1/sqrt(fan_in)``.

    ``matrix_shape`` is (fan_out, fan_in) and ``from_matrix(M)`` lays such a matrix out in the
    parameter's shape.
    """
    with torch.no_grad():
        rows, cols = matrix_shape
        # random orthogonal matrix by QR of a Gaussian one (sign-fixed to be Haar distributed);
        # several times faster than nn.init.orthogonal_ for these small matrices
        gauss = torch.randn(max(rows, cols), min(rows, cols), dtype=weight.dtype, device=weight.device)
        q, r = torch.linalg.qr(gauss)
        q = q * torch.sign(torch.diagonal(r))
        mat = q if rows >= cols else q.t()  # (fan_out, fan_in)
        if fan_in > 1:
            mat = (mat - mat.mean(dim=1, keepdim=True)) / mat.std(dim=1, keepdim=True, unbiased=False)
        mat = mat / math.sqrt(fan_in)
        weight.copy_(from_matrix(mat))


class ScaledSiLU(nn.Module):
    """``silu(x) / 0.6``, GemNet's activation (rescaled so unit-variance inputs stay near unit
    variance)."""

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.silu(x) * (1.0 / 0.6)


class Dense(nn.Module):
    """Linear layer (no bias by default) with optional scaled SiLU, He-orthogonal initialised."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, activation: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.act = ScaledSiLU() if activation else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        w = self.linear.weight  # (out, in)
        _he_orthogonal_(w, w.shape[1], tuple(w.shape), lambda m: m)
        if self.linear.bias is not None:
            nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.linear(x))


class ResidualLayer(nn.Module):
    """``(x + Dense(Dense(x))) / sqrt(2)`` with activated, bias-free dense layers."""

    def __init__(self, units: int, num_layers: int = 2) -> None:
        super().__init__()
        self.mlp = nn.Sequential(*(Dense(units, units) for _ in range(num_layers)))

    def forward(self, x: Tensor) -> Tensor:
        return (x + self.mlp(x)) * _INV_SQRT_2


def _mlp(units_in: int, units: int, num_residual: int) -> nn.Sequential:
    """A dense layer followed by ``num_residual`` residual layers (GemNet's atom/output MLPs)."""
    return nn.Sequential(Dense(units_in, units), *(ResidualLayer(units) for _ in range(num_residual)))


class ScaleFactor(nn.Module):
    """A fitted constant multiplying a sum or Hadamard product (GemNet's scaling factors).

    ``forward(x, ref)`` returns ``scale * x``. While ``fitting`` is on, ``scale`` is first set to
    ``sqrt(mean(ref^2) / mean(x^2))`` (so ``x`` is brought to the scale of ``ref``); see
    :meth:`GemNetTDecoder.fit_scale_factors`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(1.0))
        self.fitting = False

    def forward(self, x: Tensor, ref: Tensor) -> Tensor:
        if self.fitting:
            with torch.no_grad():
                den = x.detach().pow(2).mean()
                if den > 0:
                    self.scale.fill_(float((ref.detach().pow(2).mean() / den).sqrt()))
        return x * self.scale


_INV_SQRT_2 = 1.0 / math.sqrt(2.0)


# ------------------------------------------------------------------------------------- bases


class RadialBasis(nn.Module):
    """Radial basis times the polynomial envelope, (E,) distances -> (E, num_radial).

    ``kind="bessel"``: ``sqrt(2/c) sin(w_n d/c) / d`` with trainable ``w_n`` initialised at
    ``n pi`` (GemNet/DimeNet). ``kind="gaussian"``: ``exp(-(d/c - mu_n)^2 / (2 delta^2))`` with
    ``mu_n`` evenly spaced on [0, 1] (CDVAE's released configuration). Distances are clamped below
    at 1e-6 Å so coincident atoms give finite values.
    """

    def __init__(self, num_radial: int, cutoff: float, envelope_exponent: int = 5,
                 kind: Literal["bessel", "gaussian"] = "bessel") -> None:
        super().__init__()
        if kind not in ("bessel", "gaussian"):
            raise ValueError(f"radial basis must be 'bessel' or 'gaussian', got {kind!r}")
        self.kind = kind
        self.cutoff = float(cutoff)
        p = float(envelope_exponent)
        self.p = p
        self.a, self.b, self.c = -(p + 1) * (p + 2) / 2, p * (p + 2), -p * (p + 1) / 2
        if kind == "bessel":
            self.frequencies = nn.Parameter(math.pi * torch.arange(1, num_radial + 1, dtype=torch.float))
        else:
            self.register_buffer("offsets", torch.linspace(0.0, 1.0, num_radial), persistent=False)
            spacing = 1.0 / max(num_radial - 1, 1)
            self.coeff = -0.5 / spacing**2

    def envelope(self, x: Tensor) -> Tensor:
        """Polynomial envelope u(x), x = d / cutoff, zero for x >= 1."""
        env = 1 + self.a * x.pow(self.p) + self.b * x.pow(self.p + 1) + self.c * x.pow(self.p + 2)
        return torch.where(x < 1, env, torch.zeros_like(x))

    def forward(self, dist: Tensor) -> Tensor:
        x = dist.clamp_min(1e-6) / self.cutoff  # (E,)
        if self.kind == "bessel":
            norm = math.sqrt(2.0 / self.cutoff**3)  # sqrt(2/c) / d = sqrt(2/c^3) / x
            basis = norm * torch.sin(self.frequencies.to(x.dtype) * x[:, None]) / x[:, None]
        else:
            basis = torch.exp(self.coeff * (x[:, None] - self.offsets.to(x.dtype)) ** 2)
        return self.envelope(x)[:, None] * basis  # (E, num_radial)


def spherical_harmonics_m0(cos_theta: Tensor, num_spherical: int) -> Tensor:
    """``Y_l^0(theta) = sqrt((2l+1)/(4 pi)) P_l(cos theta)`` for l = 0..num_spherical-1, (T, L).

    Legendre polynomials by Bonnet's recursion ``(l+1) P_{l+1} = (2l+1) x P_l - l P_{l-1}``.
    """
    polys = [torch.ones_like(cos_theta)]
    if num_spherical > 1:
        polys.append(cos_theta)
    for l in range(1, num_spherical - 1):
        polys.append(((2 * l + 1) * cos_theta * polys[l] - l * polys[l - 1]) / (l + 1))
    norms = [math.sqrt((2 * l + 1) / (4 * math.pi)) for l in range(num_spherical)]
    return torch.stack([n * p for n, p in zip(norms, polys)], dim=-1)


class EfficientDownProjection(nn.Module):
    """Shared projection of the circular basis' radial part, ``R = e_RBF(d) @ W``.

    Weight (num_spherical, num_radial, emb_size_cbf); (E, num_radial) -> (E, emb_size_cbf,
    num_spherical): one learnt radial function per (spherical order, channel).
    """

    def __init__(self, num_spherical: int, num_radial: int, emb_size_cbf: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_spherical, num_radial, emb_size_cbf))
        s, r, c = self.weight.shape
        _he_orthogonal_(self.weight, r, (s * c, r), lambda m: m.reshape(s, c, r).permute(0, 2, 1))

    def forward(self, rbf: Tensor) -> Tensor:
        return torch.einsum("er,src->ecs", rbf, self.weight)  # (E, emb_size_cbf, num_spherical)


class EfficientBilinear(nn.Module):
    """Sum over input edges and bilinear layer (GemNet's efficient reformulation).

    ``y_e = sum_{c,t} W[c, t, :] sum_s R[e, c, s] sum_k Y[e, s, k] x[e, k, t]`` with ``x`` the
    input-edge features padded to (E, Kmax, emb_size_trip) and ``Y`` the padded spherical basis
    (E, num_spherical, Kmax). Weight (emb_size_cbf, emb_size_trip, units_out).
    """

    def __init__(self, emb_size_trip: int, emb_size_cbf: int, units_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(emb_size_cbf, emb_size_trip, units_out))
        c, t, o = self.weight.shape
        _he_orthogonal_(self.weight, c * t, (o, c * t), lambda m: m.t().reshape(c, t, o))

    def forward(self, rad: Tensor, sph: Tensor, x_trip: Tensor, idx_out: Tensor, ragged: Tensor,
                kmax: int) -> Tensor:
        """``rad`` (E, cbf, S), ``sph`` (E, S, Kmax), ``x_trip`` (T, emb_size_trip) per triplet,
        ``idx_out``/``ragged`` (T,) its output edge and slot. Returns (E, units_out)."""
        num_edges = rad.shape[0]
        x = x_trip.new_zeros(num_edges, kmax, x_trip.shape[1])  # (E, Kmax, trip)
        x = x.index_put((idx_out, ragged), x_trip)
        sum_k = torch.bmm(sph, x)  # (E, S, trip)
        rw = torch.bmm(rad, sum_k)  # (E, cbf, trip)
        w = self.weight.reshape(-1, self.weight.shape[-1])  # (cbf * trip, out)
        return rw.reshape(num_edges, w.shape[0]) @ w  # (E, out)


# ------------------------------------------------------------------------------------ blocks


class EdgeEmbedding(nn.Module):
    """``m_ji = sigma(W [h_j || h_i || m])`` for every edge j -> i (source j, target i)."""

    def __init__(self, atom_features: int, edge_features: int, out_features: int) -> None:
        super().__init__()
        self.dense = Dense(2 * atom_features + edge_features, out_features)

    def forward(self, h: Tensor, m: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        return self.dense(torch.cat([h[src], h[dst], m], dim=-1))  # (E, out)


class AtomUpdateBlock(nn.Module):
    """``MLP(scale * sum_j m_ji * W e_RBF(d_ji))`` aggregated onto the target atoms, (N, emb_atom)."""

    def __init__(self, emb_size_atom: int, emb_size_edge: int, emb_size_rbf: int, num_atom: int) -> None:
        super().__init__()
        self.dense_rbf = Dense(emb_size_rbf, emb_size_edge, activation=False)
        self.scale_sum = ScaleFactor()
        self.mlp = _mlp(emb_size_edge, emb_size_atom, num_atom)

    def forward(self, m: Tensor, rbf: Tensor, dst: Tensor, num_nodes: int) -> Tensor:
        x = m * self.dense_rbf(rbf)  # (E, edge)
        agg = x.new_zeros(num_nodes, x.shape[1]).index_add_(0, dst, x)  # (N, edge)
        return self.mlp(self.scale_sum(agg, ref=m))  # (N, atom)


class OutputBlock(nn.Module):
    """GemNet output block with direct forces.

    Atom branch (if ``num_atom_targets > 0``): per-atom outputs (N, num_atom_targets), the
    atom update MLP followed by a linear layer. Edge branch: one scalar per edge (E, 1),
    ``W (MLP(m) * W_rbf e_RBF(d))``.
    """

    def __init__(self, emb_size_atom: int, emb_size_edge: int, emb_size_rbf: int, num_atom: int,
                 num_atom_targets: int) -> None:
        super().__init__()
        self.atom_branch = None
        if num_atom_targets > 0:
            self.atom_branch = AtomUpdateBlock(emb_size_atom, emb_size_edge, emb_size_rbf, num_atom)
            self.out_atom = Dense(emb_size_atom, num_atom_targets, activation=False)
        self.mlp_edge = _mlp(emb_size_edge, emb_size_edge, num_atom)
        self.dense_rbf_edge = Dense(emb_size_rbf, emb_size_edge, activation=False)
        self.scale_rbf_edge = ScaleFactor()
        self.out_edge = Dense(emb_size_edge, 1, activation=False)

    def forward(self, m: Tensor, rbf: Tensor, dst: Tensor, num_nodes: int) -> tuple[Tensor | None, Tensor]:
        per_atom = None
        if self.atom_branch is not None:
            per_atom = self.out_atom(self.atom_branch(m, rbf, dst, num_nodes))  # (N, targets)
        x = self.mlp_edge(m)  # (E, edge)
        x = self.scale_rbf_edge(x * self.dense_rbf_edge(rbf), ref=x)
        return per_atom, self.out_edge(x)  # (N, targets) | None, (E, 1)


class TripletInteraction(nn.Module):
    """Two-hop message of GemNet-T onto every edge and its reverse, (E, emb_size_edge)."""

    def __init__(self, emb_size_edge: int, emb_size_trip: int, emb_size_bil_trip: int, emb_size_rbf: int,
                 emb_size_cbf: int) -> None:
        super().__init__()
        self.dense_kj = Dense(emb_size_edge, emb_size_edge)
        self.mlp_rbf = Dense(emb_size_rbf, emb_size_edge, activation=False)
        self.scale_rbf = ScaleFactor()
        self.down_projection = Dense(emb_size_edge, emb_size_trip)
        self.bilinear = EfficientBilinear(emb_size_trip, emb_size_cbf, emb_size_bil_trip)
        self.scale_cbf_sum = ScaleFactor()
        self.up_projection_ji = Dense(emb_size_bil_trip, emb_size_edge)
        self.up_projection_ij = Dense(emb_size_bil_trip, emb_size_edge)

    def forward(self, m: Tensor, rbf3: Tensor, rad: Tensor, sph: Tensor, idx_kj: Tensor, idx_ji: Tensor,
                ragged: Tensor, kmax: int, id_swap: Tensor) -> Tensor:
        x = self.dense_kj(m)  # (E, edge)
        x = self.scale_rbf(x * self.mlp_rbf(rbf3), ref=x)  # Hadamard with the radial basis of d_kj
        x = self.down_projection(x)  # (E, trip)
        x_trip = x[idx_kj]  # (T, trip)
        y = self.bilinear(rad, sph, x_trip, idx_ji, ragged, kmax)  # (E, bil)
        y = self.scale_cbf_sum(y, ref=x_trip)
        y_ji = self.up_projection_ji(y)  # onto the output edge j -> i
        y_ij = self.up_projection_ij(y)[id_swap]  # onto the reverse edge: row e gets y of swap(e)
        return (y_ji + y_ij) * _INV_SQRT_2


class InteractionBlock(nn.Module):
    """GemNet-T interaction block: triplet interaction, edge residual layers, atom update and the
    edge update from the new atom embeddings. Returns new ``(h, m)``."""

    def __init__(self, emb_size_atom: int, emb_size_edge: int, emb_size_trip: int, emb_size_rbf: int,
                 emb_size_cbf: int, emb_size_bil_trip: int, num_before_skip: int, num_after_skip: int,
                 num_concat: int, num_atom: int) -> None:
        super().__init__()
        self.dense_skip = Dense(emb_size_edge, emb_size_edge)
        self.triplet = TripletInteraction(emb_size_edge, emb_size_trip, emb_size_bil_trip, emb_size_rbf,
                                          emb_size_cbf)
        self.before_skip = nn.Sequential(*(ResidualLayer(emb_size_edge) for _ in range(num_before_skip)))
        self.after_skip = nn.Sequential(*(ResidualLayer(emb_size_edge) for _ in range(num_after_skip)))
        self.atom_update = AtomUpdateBlock(emb_size_atom, emb_size_edge, emb_size_rbf, num_atom)
        self.concat = EdgeEmbedding(emb_size_atom, emb_size_edge, emb_size_edge)
        self.residual_m = nn.Sequential(*(ResidualLayer(emb_size_edge) for _ in range(num_concat)))

    def forward(self, h: Tensor, m: Tensor, rbf3: Tensor, rad: Tensor, sph: Tensor, idx_kj: Tensor,
                idx_ji: Tensor, ragged: Tensor, kmax: int, id_swap: Tensor, rbf_h: Tensor, src: Tensor,
                dst: Tensor) -> tuple[Tensor, Tensor]:
        x = (self.dense_skip(m) + self.triplet(m, rbf3, rad, sph, idx_kj, idx_ji, ragged, kmax, id_swap))
        x = self.before_skip(x * _INV_SQRT_2)  # (E, edge)
        m = self.after_skip((m + x) * _INV_SQRT_2)  # (E, edge)
        h = (h + self.atom_update(m, rbf_h, dst, h.shape[0])) * _INV_SQRT_2  # (N, atom)
        m2 = self.residual_m(self.concat(h, m, src, dst))  # (E, edge)
        return h, (m + m2) * _INV_SQRT_2


# ------------------------------------------------------------------------------ graph helpers


def _reverse_key_pairs(edge_index: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """All pairs ``(e, c)`` with e = j -> i and c = i -> j (any periodic image), each (P,) long.

    Pairs are grouped by ``e`` in ascending order.
    """
    src, dst = edge_index[0], edge_index[1]
    device = src.device
    key = src * num_nodes + dst  # (E,)
    order = torch.argsort(key, stable=True)
    skey = key[order]
    rkey = dst * num_nodes + src  # key an edge i -> j would have
    lo = torch.searchsorted(skey, rkey, right=False)
    cnt = torch.searchsorted(skey, rkey, right=True) - lo  # (E,)
    e = torch.repeat_interleave(torch.arange(src.numel(), device=device), cnt)  # (P,)
    first = torch.repeat_interleave(torch.cumsum(cnt, 0) - cnt, cnt)
    within = torch.arange(e.numel(), device=device) - first
    c = order[torch.repeat_interleave(lo, cnt) + within]
    return e, c


def symmetrize_edges(edge_index: Tensor, edge_vec: Tensor, num_nodes: int, images: Tensor | None = None,
                     tol: float = 1e-3) -> tuple[Tensor, Tensor, Tensor]:
    """Make a periodic multi-graph symmetric and pair every edge with its reverse.

    The reverse of j -> i with vector v (image n) is i -> j with vector -v (image -n). It is
    looked up by integer ``images`` (E, 3) when given, else as the edge i -> j whose vector is
    within ``tol`` Å of -v. Edges without a reverse (KNN graphs are not symmetric) get one
    appended; input edges keep their positions, appended edges follow.

    Returns:
        ``(edge_index, edge_vec, id_swap)``: (2, E'), (E', 3) and (E',) long with
        ``edge_vec[id_swap] == -edge_vec`` and ``id_swap[id_swap] == arange(E')``.
    """
    num_edges = edge_index.shape[1]
    device = edge_index.device
    ar = torch.arange(num_edges, device=device)
    e, c = _reverse_key_pairs(edge_index, num_nodes)
    if images is not None:
        dev = (images[e] + images[c]).abs().sum(dim=-1).to(edge_vec.dtype)
        ok = dev == 0
    else:
        dev = (edge_vec[e] + edge_vec[c]).detach().norm(dim=-1)
        ok = dev <= tol
    e, c, dev = e[ok], c[ok], dev[ok]
    # the closest candidate per edge: sort by deviation, then (stably) by edge
    o = torch.argsort(dev, stable=True)
    e, c = e[o], c[o]
    o = torch.argsort(e, stable=True)
    e, c = e[o], c[o]
    first = torch.ones_like(e, dtype=torch.bool)
    first[1:] = e[1:] != e[:-1]
    swap = torch.full((num_edges,), -1, dtype=torch.long, device=device)
    swap[e[first]] = c[first]
    # keep only mutual pairs (duplicated input edges must not share one reverse)
    valid = swap >= 0
    valid[valid.clone()] = swap[swap[valid]] == ar[valid]
    missing = ar[~valid]  # (M,)
    swap[missing] = num_edges + torch.arange(missing.numel(), device=device)
    new_index = torch.stack([edge_index[1, missing], edge_index[0, missing]])
    return (torch.cat([edge_index, new_index], dim=1), torch.cat([edge_vec, -edge_vec[missing]]),
            torch.cat([swap, missing]))


def gemnet_triplets(edge_index: Tensor, num_nodes: int, id_swap: Tensor, periodic: bool = True
                    ) -> tuple[Tensor, Tensor, Tensor, int]:
    """Triplets k -> j -> i of a symmetric graph for the efficient bilinear layer.

    :func:`build_triplets` drops every input edge k -> j with ``k == i`` by atom index; with
    ``periodic=True`` those whose k is another periodic image of i are added back, so only the
    reverse edge ``id_swap[ji]`` itself is excluded (GemNet's rule).

    Returns:
        ``(idx_kj, idx_ji, ragged, kmax)``: (T,) input and output edge of each triplet, sorted by
        output edge; ``ragged`` (T,) the slot of the triplet among its output edge's triplets;
        ``kmax`` the largest number of triplets of one output edge.
    """
    idx_kj, idx_ji = build_triplets(edge_index, num_nodes)  # grouped by idx_ji
    if periodic:
        e, c = _reverse_key_pairs(edge_index, num_nodes)  # c = i -> j for e = j -> i
        keep = c != id_swap[e]
        idx_kj = torch.cat([idx_kj, c[keep]])
        idx_ji = torch.cat([idx_ji, e[keep]])
        order = torch.argsort(idx_ji, stable=True)
        idx_kj, idx_ji = idx_kj[order], idx_ji[order]
    counts = torch.bincount(idx_ji, minlength=edge_index.shape[1])  # (E,)
    start = torch.cumsum(counts, 0) - counts
    ragged = torch.arange(idx_ji.numel(), device=idx_ji.device) - start[idx_ji]
    kmax = int(counts.max()) if counts.numel() else 0
    return idx_kj, idx_ji, ragged, kmax


# ------------------------------------------------------------------------------------- model


class GemNetTDecoder(nn.Module):
    """CDVAE's decoder ``PGNN_DEC(M~ | z)``: GemNet-T with direct forces and a latent-conditioned
    atom embedding (see the module docstring for the architecture and conventions).

    Args:
        hidden_dim: ``emb_size_atom`` and ``emb_size_edge`` (CDVAE: 128).
        latent_dim: size of ``z`` (CDVAE: 256).
        max_atomic_num: number of element classes; atom types are 1..max_atomic_num (CDVAE: 100).
        cutoff: envelope cutoff of the bases in Å (CDVAE: 7.0).
        max_neighbors: K of the KNN graph the caller builds (CDVAE: 20); stored for the caller,
            the decoder uses whatever graph it is given.
        num_blocks: interaction blocks (GemNet-T default 3).
        emb_size_trip, emb_size_rbf, emb_size_cbf, emb_size_bil_trip: GemNet-T embedding sizes.
        num_spherical, num_radial: sizes of the circular and radial bases.
        num_before_skip, num_after_skip, num_concat, num_atom: residual layer counts.
        envelope_exponent: p of the polynomial envelope.
        radial_basis: ``"bessel"`` (GemNet paper) or ``"gaussian"`` (CDVAE's released code).
        type_head: ``"output_blocks"``: logits are the per-atom outputs of the output blocks,
            summed over blocks; ``"last_hidden"``: a linear layer on the final atom embedding (as
            CDVAE's code), and the output blocks have no atom branch.
        periodic_triplets: keep triplets whose k is another periodic image of i (GemNet), see
            :func:`gemnet_triplets`.
        extra_node_dim: size F of optional extra per-atom input features, concatenated into the
            node input ``h_i^0 = W [e(a_i) || z || f_i]`` (DP-CDVAE's Fourier and time features,
            :mod:`benchmark.models.dp_cdvae.network`). 0 (default) gives exactly CDVAE's decoder,
            with the same parameter shapes, so existing code and checkpoints are unchanged.
    """

    def __init__(
        self,
        hidden_dim: int = 128,
        latent_dim: int = 256,
        max_atomic_num: int = 100,
        cutoff: float = 7.0,
        max_neighbors: int = 20,
        num_blocks: int = 3,
        emb_size_trip: int = 64,
        emb_size_rbf: int = 16,
        emb_size_cbf: int = 16,
        emb_size_bil_trip: int = 64,
        num_spherical: int = 7,
        num_radial: int = 6,
        num_before_skip: int = 1,
        num_after_skip: int = 2,
        num_concat: int = 1,
        num_atom: int = 3,
        envelope_exponent: int = 5,
        radial_basis: Literal["bessel", "gaussian"] = "bessel",
        type_head: Literal["output_blocks", "last_hidden"] = "output_blocks",
        periodic_triplets: bool = True,
        extra_node_dim: int = 0,
    ) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError("num_blocks must be at least 1")
        if type_head not in ("output_blocks", "last_hidden"):
            raise ValueError(f"type_head must be 'output_blocks' or 'last_hidden', got {type_head!r}")
        if extra_node_dim < 0:
            raise ValueError("extra_node_dim must be non-negative")
        self.hidden_dim = hidden_dim
        self.latent_dim = latent_dim
        self.max_atomic_num = max_atomic_num
        self.cutoff = float(cutoff)
        self.max_neighbors = max_neighbors
        self.num_spherical = num_spherical
        self.type_head = type_head
        self.periodic_triplets = periodic_triplets
        self.extra_node_dim = extra_node_dim
        emb_atom = emb_edge = hidden_dim

        # bases (two radial bases as in GemNet: edges, and the radial part of the circular basis)
        self.radial_basis = RadialBasis(num_radial, cutoff, envelope_exponent, radial_basis)
        self.radial_basis_cbf = RadialBasis(num_radial, cutoff, envelope_exponent, radial_basis)
        # basis projections shared by all blocks
        self.mlp_rbf3 = Dense(num_radial, emb_size_rbf, activation=False)
        self.mlp_cbf3 = EfficientDownProjection(num_spherical, num_radial, emb_size_cbf)
        self.mlp_rbf_h = Dense(num_radial, emb_size_rbf, activation=False)
        self.mlp_rbf_out = Dense(num_radial, emb_size_rbf, activation=False)

        # embeddings: h0 = W [e(a) || z (|| f)] (CDVAE; f: optional extra node features),
        # m0 = sigma(W [h_j || h_i || e_RBF(d_ji)])
        self.atom_emb = nn.Embedding(max_atomic_num, emb_atom)
        nn.init.uniform_(self.atom_emb.weight, -math.sqrt(3.0), math.sqrt(3.0))
        self.atom_latent_emb = nn.Linear(emb_atom + latent_dim + extra_node_dim, emb_atom)
        self.edge_emb = EdgeEmbedding(emb_atom, num_radial, emb_edge)

        self.int_blocks = nn.ModuleList(
            InteractionBlock(emb_atom, emb_edge, emb_size_trip, emb_size_rbf, emb_size_cbf, emb_size_bil_trip,
                             num_before_skip, num_after_skip, num_concat, num_atom)
            for _ in range(num_blocks)
        )
        atom_targets = max_atomic_num if type_head == "output_blocks" else 0
        self.out_blocks = nn.ModuleList(
            OutputBlock(emb_atom, emb_edge, emb_size_rbf, num_atom, atom_targets) for _ in range(num_blocks + 1)
        )
        self.fc_atom = nn.Linear(emb_atom, max_atomic_num) if type_head == "last_hidden" else None

    # ------------------------------------------------------------------------------ forward

    def forward(self, z: Tensor, atom_types: Tensor, batch: Tensor, edge_index: Tensor, edge_vec: Tensor,
                images: Tensor | None = None, node_features: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Predicted Cartesian displacement and atom-type logits.

        Args:
            z: (B, latent_dim) crystal latents.
            atom_types: (N,) long atomic numbers in 1..max_atomic_num (the noisy types a~).
            batch: (N,) long crystal index of each atom.
            edge_index: (2, E) long, row 0 source j, row 1 target i.
            edge_vec: (E, 3) Cartesian ``pos_j + image @ L - pos_i`` (target to source image).
            images: optional (E, 3) integer images of the sources; used only to pair edges with
                their reverses exactly (else vectors are matched within 1e-3 Å).
            node_features: (N, extra_node_dim) extra invariant per-atom inputs; required when
                ``extra_node_dim > 0``, must be None otherwise.

        Returns:
            ``pred_cart_coord_diff`` (N, 3), equivariant (rotates with ``edge_vec``), and type
            logits (N, max_atomic_num), invariant.
        """
        num_nodes = atom_types.shape[0]
        edge_index, edge_vec, id_swap = symmetrize_edges(edge_index, edge_vec, num_nodes, images)
        src, dst = edge_index[0], edge_index[1]  # (E,) source j, target i
        idx_kj, idx_ji, ragged, kmax = gemnet_triplets(edge_index, num_nodes, id_swap, self.periodic_triplets)

        dist = edge_vec.norm(dim=-1)  # (E,)
        unit = edge_vec / dist.clamp_min(1e-9)[:, None]  # (E, 3) from target i towards source j
        # bond angle at j between j->i (= -unit_ji) and j->k (= unit_kj)
        cos_t = -(unit[idx_ji] * unit[idx_kj]).sum(dim=-1).clamp(-1.0, 1.0)  # (T,)

        rbf = self.radial_basis(dist)  # (E, R)
        rad = self.mlp_cbf3(self.radial_basis_cbf(dist))  # (E, cbf, S), radial part on the output edge
        sph_t = spherical_harmonics_m0(cos_t, self.num_spherical)  # (T, S)
        sph = sph_t.new_zeros(edge_vec.shape[0], kmax, self.num_spherical)
        sph = sph.index_put((idx_ji, ragged), sph_t).transpose(1, 2)  # (E, S, Kmax)
        rbf3 = self.mlp_rbf3(rbf)  # (E, emb_rbf)
        rbf_h = self.mlp_rbf_h(rbf)
        rbf_out = self.mlp_rbf_out(rbf)

        h = self.atom_emb(atom_types - 1)  # (N, atom)
        parts = [h, z[batch]]
        if self.extra_node_dim > 0:
            if node_features is None or node_features.shape != (num_nodes, self.extra_node_dim):
                got = None if node_features is None else tuple(node_features.shape)
                raise ValueError(f"node_features must have shape ({num_nodes}, {self.extra_node_dim}), got {got}")
            parts.append(node_features.to(h.dtype))
        elif node_features is not None:
            raise ValueError("node_features given but the decoder was built with extra_node_dim=0")
        h = self.atom_latent_emb(torch.cat(parts, dim=-1))  # (N, atom)
        m = self.edge_emb(h, rbf, src, dst)  # (E, edge)

        logits, f_edge = self.out_blocks[0](m, rbf_out, dst, num_nodes)  # (N, A) | None, (E, 1)
        for block, out in zip(self.int_blocks, self.out_blocks[1:]):
            h, m = block(h, m, rbf3, rad, sph, idx_kj, idx_ji, ragged, kmax, id_swap, rbf_h, src, dst)
            per_atom, f = out(m, rbf_out, dst, num_nodes)
            f_edge = f_edge + f
            if per_atom is not None:
                logits = logits + per_atom
        if self.fc_atom is not None:
            logits = self.fc_atom(h)  # (N, A)

        # direct forces: edge scalar times the unit vector from source j to target i
        vec = f_edge * (-unit)  # (E, 3)
        pred = vec.new_zeros(num_nodes, 3).index_add_(0, dst, vec)  # (N, 3)
        return pred, logits

    # ------------------------------------------------------------------------------ scaling

    def scale_factors(self) -> dict[str, float]:
        """Current values of all scale factors, by module name."""
        return {name: float(mod.scale) for name, mod in self.named_modules() if isinstance(mod, ScaleFactor)}

    @torch.no_grad()
    def fit_scale_factors(self, *args, **kwargs) -> dict[str, float]:
        """Fit every scale factor on one representative batch (arguments as :meth:`forward`).

        All factors are reset to 1 and one forward pass runs in fitting mode: factors are met in
        data-flow order and each applies its new value at once, so later ones see already scaled
        inputs (GemNet fits them one after another for the same reason). Returns the values.
        """
        factors = [mod for mod in self.modules() if isinstance(mod, ScaleFactor)]
        for mod in factors:
            mod.scale.fill_(1.0)
            mod.fitting = True
        try:
            self(*args, **kwargs)
        finally:
            for mod in factors:
                mod.fitting = False
        return self.scale_factors()


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


if __name__ == "__main__":  # parameter counts of the published sizes
    for kwargs in ({}, {"radial_basis": "gaussian", "num_radial": 128}, {"type_head": "last_hidden"},
                   {"radial_basis": "gaussian", "num_radial": 128, "type_head": "last_hidden"}):
        print(kwargs or "default", f"{count_parameters(GemNetTDecoder(**kwargs)):,}")
