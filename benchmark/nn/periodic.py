"""Periodic graph utilities shared by the generative models: lattices, coordinates, minimum images
and neighbour graphs under periodic boundary conditions.

Notation follows the CDVAE paper (Xie et al., ICLR 2022). A crystal is M = (A, X, L); its infinite
structure is every atom translated by integer combinations of the lattice vectors (Eq. 1),
``x_i + k1 l1 + k2 l2 + k3 l3``. The decoder denoises coordinates towards the minimum-image
displacement ``d_min(x_i, x~_i)`` (section 4, target of Eq. 2) and works on a multi-graph built on
the fly at every noise level and every Langevin step (appendix B.2: "a KNN algorithm that considers
periodicity", K = 20), so everything here is batched tensor code: crystals of different sizes are
concatenated along the atom axis, and no function loops over crystals in Python.

Conventions (the same as :mod:`benchmark.crystal` and :mod:`benchmark.nn.dimenet`):

* Lattices are (B, 3, 3) with the lattice vectors a, b, c as ROWS, oriented as pymatgen's
  ``Lattice.from_parameters`` (c along z, a in the xz-plane). Cartesian = fractional @ lattice.
* Atoms of all crystals are concatenated: ``frac`` (N, 3) with N = ``num_atoms.sum()``; crystal b
  owns rows ``num_atoms[:b].sum() : num_atoms[:b+1].sum()``.
* A graph edge j -> i is column ``(j, i)`` of ``edge_index`` (row 0 the source j, row 1 the target
  i). ``images`` (E, 3) are integer translations of the SOURCE: the edge vector is
  ``pos[j] + images @ L - pos[i]``, pointing from the target to the source's image.
* Angles are in degrees, lengths in Å.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "fourier_features",
    "PeriodicGraph",
    "cart_to_frac",
    "frac_to_cart",
    "knn_graph_pbc",
    "lattice_from_params",
    "min_image_displacement",
    "params_from_lattice",
    "radius_graph_pbc",
    "scale_lengths",
    "unscale_lengths",
    "wrap_frac",
]

# Candidate (pair, image) combinations examined at once by the graph builders; bounds the peak
# memory (roughly 200 bytes per candidate) when cells are small compared with the cutoff.
DEFAULT_CHUNK = 1 << 20
#: extra neighbours asked for per atom when pairs below ``min_distance`` are dropped before capping
MIN_DISTANCE_SPARE = 8


class PeriodicGraph(NamedTuple):
    """A periodic multi-graph over a batch of crystals (CDVAE section 3.1, "multi-graph").

    Attributes:
        edge_index: (2, E) long; row 0 the source j, row 1 the target i (global atom indices).
        images: (E, 3) long integer lattice translations of the source j.
        edge_vec: (E, 3) Cartesian ``pos[j] + images @ L - pos[i]`` (differentiable with respect to
            the fractional coordinates and the lattice).
        distances: (E,) ``edge_vec.norm(dim=-1)``.

    Edges are grouped by target i in ascending order and, within a target, ordered by distance
    (ties: by source index, then image in lexicographic order).
    """

    edge_index: Tensor
    images: Tensor
    edge_vec: Tensor
    distances: Tensor


# ------------------------------------------------------------------------------------ lattices


def lattice_from_params(lengths: Tensor, angles: Tensor) -> Tensor:
    """Lattice matrices from lattice parameters, differentiably.

    The same orientation as :func:`benchmark.crystal.lattice_params_to_matrix` and pymatgen's
    ``Lattice.from_parameters``: c along z, a in the xz-plane, b from the reciprocal angle
    gamma* with ``cos gamma* = (cos alpha cos beta - cos gamma) / (sin alpha sin beta)``
    (clamped to [-1, 1], as pymatgen does).

    Args:
        lengths: (..., 3) a, b, c in Å.
        angles: (..., 3) alpha, beta, gamma in degrees (alpha between b and c, beta between a and
            c, gamma between a and b).

    Returns:
        (..., 3, 3) lattice vectors as rows.
    """
    a, b, c = lengths.unbind(-1)
    alpha, beta, gamma = torch.deg2rad(angles).unbind(-1)
    cos_a, cos_b, cos_g = torch.cos(alpha), torch.cos(beta), torch.cos(gamma)
    sin_a, sin_b = torch.sin(alpha), torch.sin(beta)
    cos_gs = ((cos_a * cos_b - cos_g) / (sin_a * sin_b)).clamp(-1.0, 1.0)  # cos gamma*
    sin_gs = torch.sqrt((1.0 - cos_gs * cos_gs).clamp_min(0.0))  # gamma* in [0, pi]
    zero = torch.zeros_like(a)
    vec_a = torch.stack([a * sin_b, zero, a * cos_b], dim=-1)  # (..., 3)
    vec_b = torch.stack([-b * sin_a * cos_gs, b * sin_a * sin_gs, b * cos_a], dim=-1)  # (..., 3)
    vec_c = torch.stack([zero, zero, c], dim=-1)  # (..., 3)
    return torch.stack([vec_a, vec_b, vec_c], dim=-2)  # (..., 3, 3)


def params_from_lattice(lattice: Tensor) -> tuple[Tensor, Tensor]:
    """Lattice parameters of lattice matrices, differentiably.

    Angles use ``atan2(|u x v|, u . v)``, accurate near 0 and 180 degrees (unlike ``acos``).

    Args:
        lattice: (..., 3, 3) lattice vectors as rows.

    Returns:
        ``(lengths, angles)``: (..., 3) in Å and (..., 3) in degrees (alpha, beta, gamma).
    """
    va, vb, vc = lattice.unbind(-2)
    lengths = lattice.norm(dim=-1)  # (..., 3)

    def angle(u: Tensor, v: Tensor) -> Tensor:
        return torch.rad2deg(torch.atan2(torch.linalg.cross(u, v, dim=-1).norm(dim=-1), (u * v).sum(-1)))

    angles = torch.stack([angle(vb, vc), angle(va, vc), angle(va, vb)], dim=-1)  # (..., 3)
    return lengths, angles


def scale_lengths(lengths: Tensor, num_atoms: Tensor) -> Tensor:
    """Lattice lengths divided by N^(1/3), the scale on which CDVAE predicts them (appendix B.1).

    Args:
        lengths: (B, 3) in Å.
        num_atoms: (B,) atoms per crystal.

    Returns:
        (B, 3) scaled lengths.
    """
    return lengths / num_atoms.to(lengths.dtype).pow(1.0 / 3.0).unsqueeze(-1)


def unscale_lengths(scaled: Tensor, num_atoms: Tensor) -> Tensor:
    """Inverse of :func:`scale_lengths`: (B, 3) scaled lengths times N^(1/3) -> (B, 3) in Å."""
    return scaled * num_atoms.to(scaled.dtype).pow(1.0 / 3.0).unsqueeze(-1)


# ------------------------------------------------------------------------------------ coordinates


def _batch_index(num_atoms: Tensor, num_nodes: int) -> Tensor:
    """(N,) crystal index of each atom."""
    ids = torch.arange(num_atoms.numel(), device=num_atoms.device)
    return torch.repeat_interleave(ids, num_atoms, output_size=num_nodes)


def _atom_lattice(lattice: Tensor, num_atoms: Tensor, num_nodes: int) -> Tensor:
    """(N, 3, 3) lattice of each atom's crystal."""
    return torch.repeat_interleave(lattice, num_atoms, dim=0, output_size=num_nodes)


def frac_to_cart(frac: Tensor, lattice: Tensor, num_atoms: Tensor) -> Tensor:
    """Cartesian coordinates ``x = f @ L`` of each atom under its crystal's lattice.

    Args:
        frac: (N, 3) fractional coordinates.
        lattice: (B, 3, 3) rows a, b, c.
        num_atoms: (B,) long, summing to N.

    Returns:
        (N, 3) Cartesian coordinates in Å.
    """
    atom_lattice = _atom_lattice(lattice, num_atoms, frac.shape[0])  # (N, 3, 3)
    return torch.einsum("ni,nij->nj", frac, atom_lattice)


def cart_to_frac(cart: Tensor, lattice: Tensor, num_atoms: Tensor) -> Tensor:
    """Fractional coordinates ``f = x @ L^-1`` (inverse of :func:`frac_to_cart`).

    Args:
        cart: (N, 3) Cartesian coordinates in Å.
        lattice: (B, 3, 3) rows a, b, c.
        num_atoms: (B,) long, summing to N.

    Returns:
        (N, 3) fractional coordinates (not wrapped).
    """
    inv = _atom_lattice(torch.linalg.inv(lattice), num_atoms, cart.shape[0])  # (N, 3, 3)
    return torch.einsum("ni,nij->nj", cart, inv)


def wrap_frac(frac: Tensor) -> Tensor:
    """Fractional coordinates wrapped into [0, 1).

    ``f - floor(f)`` can round to exactly 1.0 for tiny negative f (e.g. -1e-9 in float32); such
    values become 0. The gradient is the identity (the integer shift is a constant).

    Args:
        frac: (..., 3) fractional coordinates.

    Returns:
        (..., 3) in [0, 1).
    """
    wrapped = frac - torch.floor(frac)
    return torch.where(wrapped >= 1.0, torch.zeros_like(wrapped), wrapped)


def _face_distances(lattice: Tensor) -> Tensor:
    """(B, 3) distances between opposite faces of each cell: ``d_a = V / |l_b x l_c|``.

    Equivalently ``1 / |column a of L^-1|``; a Cartesian vector x has fractional component
    ``|u_a| <= |x| / d_a``, which is what bounds every image search below.
    """
    va, vb, vc = lattice.unbind(-2)
    volume = torch.linalg.det(lattice).abs()  # (B,)
    areas = torch.stack(
        [torch.linalg.cross(vb, vc, dim=-1).norm(dim=-1),
         torch.linalg.cross(vc, va, dim=-1).norm(dim=-1),
         torch.linalg.cross(va, vb, dim=-1).norm(dim=-1)],
        dim=-1,
    )  # (B, 3)
    return volume.unsqueeze(-1) / areas


def _offsets_box(reach: int, device: torch.device) -> Tensor:
    """(M, 3) long integer offsets in [-reach, reach]^3, ordered by L1 norm, then lexicographically,
    so that argmin over them prefers the smallest translation on exact ties (the zero offset first)."""
    r = torch.arange(-reach, reach + 1, device=device)
    box = torch.cartesian_prod(r, r, r)  # (M, 3), lexicographic
    order = torch.argsort(box.abs().sum(-1), stable=True)
    return box[order]


def _check_batch(frac: Tensor, lattice: Tensor, num_atoms: Tensor) -> None:
    if frac.dim() != 2 or frac.shape[-1] != 3:
        raise ValueError(f"fractional coordinates must be (N, 3), got {tuple(frac.shape)}")
    if lattice.dim() != 3 or lattice.shape[-2:] != (3, 3):
        raise ValueError(f"lattice must be (B, 3, 3), got {tuple(lattice.shape)}")
    if num_atoms.dim() != 1 or num_atoms.shape[0] != lattice.shape[0]:
        raise ValueError(f"num_atoms must be (B,) with B = {lattice.shape[0]}, got {tuple(num_atoms.shape)}")
    if int(num_atoms.sum()) != frac.shape[0]:
        raise ValueError(f"num_atoms sums to {int(num_atoms.sum())} but there are {frac.shape[0]} atoms")


def min_image_displacement(
    frac_a: Tensor,
    frac_b: Tensor,
    lattice: Tensor,
    num_atoms: Tensor,
    return_images: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Periodic minimum-image displacement ``d_min(a, b) = min_k (a - b + k) L`` per atom.

    This is the denoising target of CDVAE (section 4, "Periodicity influences denoising target",
    used in Eq. 2): with ``frac_a`` the true coordinates X and ``frac_b`` the noisy ones X~, the
    result is ``d_min(X, X~)``, the shortest Cartesian vector from x~_i to any periodic image of
    x_i (Eq. 1).

    Method. The fractional difference is first wrapped to f in [-0.5, 0.5)^3, then the 27 images
    f + k, k in {-1, 0, 1}^3, are compared. Why that usually suffices, and when it does not: if r
    is the best distance among the 27, any image at most r away has ``|f_a + k_a| <= r / d_a``
    (d_a the distance between the cell's opposite faces along axis a), so no integer |k_a| >= 2
    can beat it when ``r / d_a < 2 - |f_a|`` on every axis. Since r <= |f L| <= D / 2 (D the
    cell's longest body diagonal) and |f_a| <= 1/2, the 27 images are always enough when
    ``D / 2 < 1.5 min_a d_a``: cubic (0.87 a < 1.5 a), near-cubic and most reduced cells. They
    are not enough in strongly skewed cells (e.g. b = 5a + ..., or angles far from 90 degrees with
    unequal lengths), where the nearest image can be two or more cells away along an axis. The
    bound is therefore checked per atom, and atoms that fail it are searched again in the box it
    gives, so the result is exact for every non-degenerate cell. On exact ties the smaller
    translation (L1 norm, then lexicographic) wins.

    Args:
        frac_a: (N, 3) fractional coordinates (e.g. the clean X).
        frac_b: (N, 3) fractional coordinates (e.g. the noisy X~).
        lattice: (B, 3, 3) rows a, b, c.
        num_atoms: (B,) long, summing to N.
        return_images: also return the integer translations.

    Returns:
        (N, 3) Cartesian ``(frac_a - frac_b + images) @ L`` of minimum norm; with
        ``return_images``, also ``images`` (N, 3) long. Differentiable with respect to both
        coordinate sets and the lattice (the chosen image is a constant).
    """
    if frac_a.shape != frac_b.shape:
        raise ValueError(f"frac_a and frac_b differ in shape: {tuple(frac_a.shape)} vs {tuple(frac_b.shape)}")
    _check_batch(frac_a, lattice, num_atoms)
    n = frac_a.shape[0]
    atom_lattice = _atom_lattice(lattice, num_atoms, n)  # (N, 3, 3)
    diff = frac_a - frac_b  # (N, 3)
    with torch.no_grad():
        shift = torch.floor(diff + 0.5)  # (N, 3); diff - shift in [-0.5, 0.5)
        f = (diff - shift).detach()  # (N, 3)
        lat = atom_lattice.detach()
        offsets = _offsets_box(1, diff.device)  # (27, 3)
        cart = torch.einsum("nki,nij->nkj", f.unsqueeze(1) + offsets.to(f.dtype), lat)  # (N, 27, 3)
        d2 = (cart * cart).sum(-1)  # (N, 27)
        best_d2, best = d2.min(dim=1)  # (N,), (N,)
        k = offsets[best]  # (N, 3)

        # certificate: no image with |k_a| >= 2 can be closer than the best of the 27
        reach = best_d2.sqrt().unsqueeze(-1) / _atom_lattice(_face_distances(lattice.detach()), num_atoms, n)
        uncertain = (reach >= 2.0 - f.abs()).any(dim=-1)  # (N,)
        if bool(uncertain.any()):
            idx = uncertain.nonzero().squeeze(-1)  # (F,)
            fu, ru = f[idx], reach[idx]  # (F, 3)
            width = int(torch.maximum(torch.ceil(ru + fu.abs()), torch.ones_like(ru)).max())
            wide = _offsets_box(width, diff.device)  # (M, 3)
            cart_u = torch.einsum("fki,fij->fkj", fu.unsqueeze(1) + wide.to(f.dtype), lat[idx])  # (F, M, 3)
            k[idx] = wide[(cart_u * cart_u).sum(-1).argmin(dim=1)]
        images = k - shift.long()  # (N, 3): (diff + images) = f + k

    disp = torch.einsum("ni,nij->nj", diff + images.to(diff.dtype), atom_lattice)  # (N, 3)
    return (disp, images) if return_images else disp


# ------------------------------------------------------------------------------------ graphs


def _as_cutoffs(cutoff: float | Tensor, batch_size: int, like: Tensor) -> Tensor:
    """(B,) per-crystal cutoffs from a float or a (B,) tensor."""
    c = torch.as_tensor(cutoff, dtype=like.dtype, device=like.device)
    c = c.expand(batch_size) if c.dim() == 0 else c.reshape(batch_size)
    if not bool(torch.isfinite(c).all()) or bool((c <= 0).any()):
        raise ValueError("cutoff must be positive and finite")
    return c


def _pairs_within_cutoff(
    frac: Tensor, lattice: Tensor, num_atoms: Tensor, cutoffs: Tensor, chunk: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every (target i, source j, image) within each crystal's cutoff, no self-pair at zero offset.

    No gradients. Pairs are enumerated per crystal, block-diagonally: only the n_b^2 pairs of each
    crystal b exist, laid out by ``repeat_interleave``/``cumsum`` over the whole batch.

    Image bound: with positions wrapped into [0, 1) and ``du = w_j - w_i``, an image k is within
    cutoff r only if ``|du_a + k_a| <= R_a = r / d_a`` (d_a the cell's face distance), i.e.
    ``k_a in [lo_a, hi_a] = [ceil(-R_a - du_a), floor(R_a - du_a)]``. That range holds at most
    ``S_a = floor(2 R_a) + 1`` integers whatever du is, so every pair of crystal b tests the
    images ``lo + t`` for t in the same box ``[0, S_a)^3``. The box covers the cutoff sphere for
    any cell shape and any cutoff, also one larger than the cell. Its Cartesian translations
    ``t @ L`` are tabulated once per crystal, so a candidate costs a broadcast add:
    ``x = (du + lo) @ L + t @ L``. Pairs of all crystals whose boxes hold the same number M of
    images form one dense (pairs, M) block (one loop iteration per distinct M, a handful per
    batch), examined in chunks of at most ``chunk`` candidates (a single pair may exceed it).

    Returns:
        ``(i, j, images, dist)``: (E,), (E,) long global atom indices, (E, 3) long translations of j
        with respect to the ORIGINAL (unwrapped) coordinates, (E,) float64 distances. Grouped by
        block; within a target i, ordered by source j, then image lexicographically.
    """
    device = frac.device
    batch_size = num_atoms.numel()
    counts = num_atoms.long()
    wrapped = wrap_frac(frac)  # (N, 3)
    shift = torch.round(frac - wrapped).long()  # (N, 3): frac = wrapped + shift
    reach = cutoffs.unsqueeze(-1) / _face_distances(lattice)  # (B, 3) fractional reach of the cutoff
    reach = reach * (1.0 + 1e-6) + 1e-6  # never lose an image to rounding; extra ones are filtered
    reach = torch.where(counts.unsqueeze(-1) > 0, reach, torch.zeros_like(reach))  # empty crystals
    box = torch.floor(2.0 * reach).long() + 1  # (B, 3) images tested per axis, S_a
    per_pair = box.prod(dim=-1)  # (B,) images tested per pair

    # per-crystal table of the box [0, S)^3: integer offsets t (T, 3) and Cartesian t @ L (T, 3)
    table_ptr = torch.cumsum(per_pair, 0) - per_pair  # (B,)
    num_table = int(per_pair.sum())
    tb = torch.repeat_interleave(torch.arange(batch_size, device=device), per_pair, output_size=num_table)
    tr = torch.arange(num_table, device=device) - table_ptr[tb]  # (T,) lexicographic rank in the box
    s1, s2 = box[tb, 1], box[tb, 2]
    t_int = torch.stack(
        [torch.div(tr, s1 * s2, rounding_mode="floor"), torch.div(tr, s2, rounding_mode="floor") % s1, tr % s2],
        dim=-1,
    )  # (T, 3)
    t_cart = torch.einsum("ti,tij->tj", t_int.to(frac.dtype), lattice[tb])  # (T, 3)

    # within-crystal pairs (target i, source j), i-major
    ptr = torch.cumsum(counts, 0) - counts  # (B,) first atom of each crystal
    npair = counts * counts  # (B,)
    num_pairs = int(npair.sum())
    pb = torch.repeat_interleave(torch.arange(batch_size, device=device), npair, output_size=num_pairs)  # (P,)
    local = torch.arange(num_pairs, device=device) - (torch.cumsum(npair, 0) - npair)[pb]  # (P,)
    size = counts[pb]  # (P,)
    pi = ptr[pb] + torch.div(local, size, rounding_mode="floor")  # (P,) target
    pj = ptr[pb] + local % size  # (P,) source
    du = wrapped[pj] - wrapped[pi]  # (P, 3) in (-1, 1)
    lo = torch.ceil(-reach[pb] - du)  # (P, 3) first image tested
    base = torch.einsum("pi,pij->pj", du + lo, lattice[pb])  # (P, 3) Cartesian vector at image lo
    lo = lo.long()
    # table row of each atom's zero-offset self-pair (t = -lo on a diagonal pair), -1 elsewhere
    self_rank = ((-lo[:, 0]) * box[pb, 1] - lo[:, 1]) * box[pb, 2] - lo[:, 2]  # (P,)
    self_row = torch.where(pi == pj, table_ptr[pb] + self_rank, torch.full_like(self_rank, -1))  # (P,)
    pair_table = table_ptr[pb]  # (P,)
    # candidates are screened in the input precision with a slightly larger cutoff; the exact test
    # is made on the float64 distances at the end, so the result does not depend on the dtype
    loose = cutoffs * (1.0 + 1e-5) + 1e-6  # (B,)
    cut2 = (loose * loose)[pb]  # (P,)

    # Dense blocks: the pairs of all crystals that test the same number M of images form a
    # (pairs, M) block; one loop iteration per distinct M (a handful per batch) and per chunk.
    pair_m = per_pair[pb]  # (P,)
    slot = torch.zeros(batch_size, dtype=torch.long, device=device)  # crystal -> row in its block's table
    out_p, out_t = [], []
    for m in torch.unique(pair_m).tolist():
        crystals = ((per_pair == m) & (counts > 0)).nonzero().squeeze(-1)  # (B_m,)
        slot[crystals] = torch.arange(crystals.numel(), device=device)
        rows = table_ptr[crystals].unsqueeze(-1) + torch.arange(m, device=device)  # (B_m, M)
        table = t_cart[rows]  # (B_m, M, 3) translations of each crystal's box
        pairs = (pair_m == m).nonzero().squeeze(-1)  # (P_m,) ascending
        step = max(1, chunk // m)
        for start in range(0, pairs.numel(), step):
            pc = pairs[start : start + step]  # (p,)
            vec = base[pc].unsqueeze(1) + torch.index_select(table, 0, slot[pb[pc]])  # (p, M, 3)
            d2 = (vec * vec).sum(-1)  # (p, M)
            inside = d2 <= cut2[pc].unsqueeze(-1)  # (p, M)
            hit = inside.nonzero()  # (e, 2): row, image rank (row-major: pair, then image lex)
            kept = pc[hit[:, 0]]  # (e,)
            out_p.append(kept)
            out_t.append(pair_table[kept] + hit[:, 1])

    if not out_p:
        return (*_no_edges(device), torch.zeros(0, dtype=torch.float64, device=device))
    p, tix = torch.cat(out_p), torch.cat(out_t)
    real = (tix != torch.index_select(self_row, 0, p)).nonzero().squeeze(-1)  # drop zero-offset self-pairs
    p, tix = torch.index_select(p, 0, real), torch.index_select(tix, 0, real)
    i, j = torch.index_select(pi, 0, p), torch.index_select(pj, 0, p)  # (E,)
    k = torch.index_select(lo, 0, p) + torch.index_select(t_int, 0, tix)  # (E, 3) image of the wrapped source
    images = k - torch.index_select(shift, 0, j) + torch.index_select(shift, 0, i)  # (E, 3)
    # frac_j + images - frac_i = wrapped_j + k - wrapped_i
    # Distances again, in float64 and as one product (du + k) @ L: the sum of tabulated parts above
    # carries rounding noise of ~1e-7 Å in float32, enough to order symmetry-equivalent neighbours
    # (e.g. the images +c and -c of an atom) differently from one call to the next.
    w64 = wrapped.double()
    sep = torch.index_select(w64, 0, j) - torch.index_select(w64, 0, i) + k.double()  # (E, 3)
    crystal = torch.index_select(pb, 0, p)  # (E,)
    vec = torch.einsum("ei,eij->ej", sep, torch.index_select(lattice.double(), 0, crystal))  # (E, 3)
    dist = vec.norm(dim=-1)  # (E,)
    inside = (dist <= torch.index_select(cutoffs.double(), 0, crystal)).nonzero().squeeze(-1)
    return tuple(torch.index_select(x, 0, inside) for x in (i, j, images, dist))  # type: ignore[return-value]


def _no_edges(device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Empty ``(i, j, images)``."""
    empty = torch.zeros(0, dtype=torch.long, device=device)
    return empty, empty.clone(), torch.zeros(0, 3, dtype=torch.long, device=device)


def _nearest_per_target(
    i: Tensor, dist: Tensor, num_nodes: int, max_neighbors: int | None, tie_tolerance: float
) -> Tensor:
    """Indices of the edges to keep, ordered by target, then distance, then enumeration order.

    Edges must come in enumeration order (target, source, image). Distances are compared after
    rounding to multiples of ``tie_tolerance``, so that neighbours at the same distance up to
    rounding noise (symmetry-equivalent ones) are ordered by source index and image, not by noise.
    """
    if dist.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=i.device)
    if tie_tolerance > 0:
        key = torch.round(dist.double() / tie_tolerance).long()  # (E,) distance in units of the tolerance
        levels = int(key.max()) + 1
    else:
        key, levels = dist, 0
    if 0 < levels and num_nodes * levels < 2**62:
        order = torch.argsort(i * levels + key, stable=True)  # (E,) one sort: target, distance, enumeration
    else:  # two stable sorts: distance, then target
        order = torch.argsort(key, stable=True)
        order = order[torch.argsort(i[order], stable=True)]  # (E,)
    if max_neighbors is None:
        return order
    ti = torch.index_select(i, 0, order)  # (E,) targets, grouped
    degree = torch.bincount(ti, minlength=num_nodes)  # (N,)
    first = torch.cumsum(degree, 0) - degree  # (N,)
    rank = torch.arange(ti.numel(), device=ti.device) - torch.index_select(first, 0, ti)  # (E,)
    return torch.index_select(order, 0, (rank < max_neighbors).nonzero().squeeze(-1))


def _build(frac: Tensor, lattice: Tensor, batch: Tensor, i: Tensor, j: Tensor, images: Tensor) -> PeriodicGraph:
    """Differentiable edge vectors and distances for the chosen edges."""
    sep = frac[j] - frac[i] + images.to(frac.dtype)  # (E, 3) fractional
    edge_vec = torch.einsum("ei,eij->ej", sep, lattice[batch[i]])  # (E, 3)
    return PeriodicGraph(torch.stack([j, i]), images, edge_vec, edge_vec.norm(dim=-1))


def _validate_graph_input(frac: Tensor, lattice: Tensor, num_atoms: Tensor) -> None:
    _check_batch(frac, lattice, num_atoms)
    if not bool(torch.isfinite(frac).all()):
        raise ValueError("fractional coordinates contain NaN or infinity")
    used = num_atoms > 0
    lat = lattice[used]
    if not bool(torch.isfinite(lat).all()) or bool((torch.linalg.det(lat).abs() <= 1e-8).any()):
        raise ValueError("a lattice is degenerate (zero volume) or not finite")


def _nearest_within(
    frac: Tensor,
    lattice: Tensor,
    num_atoms: Tensor,
    limits: Tensor,
    k: int,
    tie_tolerance: float,
    chunk: int,
    growth: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """The k nearest neighbours of every atom among those within ``limits`` (B,) (may be inf).

    No gradients. Searching the whole cutoff sphere to keep 20 of its ~100 atoms wastes most of the
    work, so each crystal is first searched with a smaller radius r, the one that holds k + 1
    atoms at the crystal's mean density, times 1.2 (and at most the limit). If every atom of the
    crystal has at least k neighbours within ``r - tie_tolerance``, its k nearest lie within r and
    nothing beyond r can tie with them after rounding, so the answer is that of the full sphere.
    Crystals where some atom falls short are searched again, only those, with r multiplied by
    ``growth`` (capped at the limit; at the limit the answer is final by definition).

    Returns:
        ``(i, j, images)`` of the kept edges, ordered by target, then distance, then source and
        image (see :func:`_nearest_per_target`).
    """
    device = frac.device
    n = frac.shape[0]
    volume = torch.linalg.det(lattice).abs()  # (B,)
    density = num_atoms.to(frac.dtype) / volume  # (B,) atoms per Å^3
    guess = 1.2 * (3.0 * (k + 1) / (4.0 * math.pi * density.clamp_min(1e-12))).pow(1.0 / 3.0)  # (B,)
    radius = torch.minimum(guess, limits)  # (B,)
    atom_ptr = torch.cumsum(num_atoms, 0) - num_atoms  # (B,)
    todo = (num_atoms > 0).nonzero().squeeze(-1)  # (b,) crystals still searched
    parts: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
    while todo.numel() > 0:
        sub_counts = num_atoms[todo]  # (b,)
        n_sub = int(sub_counts.sum())
        sub_batch = _batch_index(sub_counts, n_sub)  # (n_sub,)
        atoms = atom_ptr[todo][sub_batch] + (
            torch.arange(n_sub, device=device) - (torch.cumsum(sub_counts, 0) - sub_counts)[sub_batch]
        )  # (n_sub,) global index of each atom of the sub-batch
        r = radius[todo]  # (b,)
        si, sj, simg, sd = _pairs_within_cutoff(frac[atoms], lattice[todo], sub_counts, r, chunk)
        inner = sd <= r[sub_batch[si]] - tie_tolerance  # (e,) safely inside the searched sphere
        degree = torch.bincount(si[inner], minlength=n_sub)  # (n_sub,)
        short = torch.zeros(todo.numel(), dtype=torch.bool, device=device)
        short[sub_batch[degree < k]] = True  # (b,) crystals with an atom short of neighbours
        short &= r < limits[todo]  # at the limit the answer is complete
        done = ~short[sub_batch[si]]  # (e,)
        parts.append((atoms[si[done]], atoms[sj[done]], simg[done], sd[done]))
        todo = todo[short]
        radius[todo] = torch.minimum(radius[todo] * growth, limits[todo])
    if not parts:
        return _no_edges(device)
    i, j, images, dist = (torch.cat(x) for x in zip(*parts))
    # every crystal's edges come from one round, in enumeration order, so the stable sort in
    # _nearest_per_target orders each target's edges by (distance, source, image) as documented
    keep = _nearest_per_target(i, dist, n, k, tie_tolerance)
    return tuple(torch.index_select(x, 0, keep) for x in (i, j, images))  # type: ignore[return-value]


def radius_graph_pbc(
    frac: Tensor,
    lattice: Tensor,
    num_atoms: Tensor,
    cutoff: float | Tensor,
    max_neighbors: int | None = None,
    *,
    tie_tolerance: float = 1e-5,
    chunk: int = DEFAULT_CHUNK,
    min_distance: float = 0.0,
) -> PeriodicGraph:
    """All periodic neighbour pairs within a cutoff, optionally capped to the nearest per atom.

    The decoder graph of CDVAE (appendix B.2): for every target atom i, every periodic image
    (Eq. 1) of every atom j of the same crystal with ``|pos_j + k L - pos_i| <= cutoff``, except i
    itself at zero offset (its other images are kept). With ``max_neighbors``, only the nearest
    ``max_neighbors`` per target are kept, ties broken deterministically (distances rounded to
    multiples of ``tie_tolerance``, then source index, then image lexicographically). CDVAE's
    decoder keeps 20 neighbours (K = 20, appendix B.2) within 7 Å.

    Fully batched: crystals of different sizes and shapes in one call, only within-crystal pairs
    are considered, and the images searched per pair cover the cutoff sphere for any cell shape,
    also when the cutoff exceeds the cell (see :func:`_pairs_within_cutoff`). With
    ``max_neighbors``, crystals are searched within a smaller radius first and only those that need
    it are searched again (see :func:`_nearest_within`); the result is the same as capping the full
    cutoff graph. The coordinates need not be wrapped; ``images`` refer to the coordinates as given.

    Args:
        frac: (N, 3) fractional coordinates.
        lattice: (B, 3, 3) rows a, b, c.
        num_atoms: (B,) long, summing to N.
        cutoff: radius in Å, a float or a (B,) tensor (one per crystal).
        max_neighbors: keep at most this many nearest sources per target; None keeps all.
        tie_tolerance: distances closer than this (Å) count as ties when ordering and capping.
        chunk: candidates examined at once (bounds memory); does not change the result.
        min_distance: pairs at or below this distance (Å) are left out before capping, as CDVAE's
            released ``radius_graph_pbc`` drops pairs with d^2 <= 1e-4 (d <= 0.01 Å): two atoms on
            top of each other (possible in a noisy or generated structure) would otherwise give an
            edge without a direction, and NaN gradients. Exact unless more than
            :data:`MIN_DISTANCE_SPARE` atoms lie that close to one atom.

    Returns:
        :class:`PeriodicGraph` ``(edge_index (2, E), images (E, 3), edge_vec (E, 3), distances (E,))``,
        edges grouped by target, nearest first.
    """
    _validate_graph_input(frac, lattice, num_atoms)
    if max_neighbors is not None and max_neighbors < 1:
        raise ValueError(f"max_neighbors must be positive or None, got {max_neighbors}")
    n = frac.shape[0]
    with torch.no_grad():
        f, lat = frac.detach(), lattice.detach()
        cutoffs = _as_cutoffs(cutoff, num_atoms.numel(), f)
        if max_neighbors is None:
            i, j, images, dist = _pairs_within_cutoff(f, lat, num_atoms, cutoffs, chunk)
            keep = _nearest_per_target(i, dist, n, None, tie_tolerance)
            i, j, images = (torch.index_select(x, 0, keep) for x in (i, j, images))
        else:
            spare = MIN_DISTANCE_SPARE if min_distance > 0 else 0  # room for the pairs dropped below
            i, j, images = _nearest_within(f, lat, num_atoms, cutoffs, max_neighbors + spare, tie_tolerance, chunk, 1.5)
        if min_distance > 0:
            far = _build(f, lat, _batch_index(num_atoms, n), i, j, images).distances > min_distance
            i, j, images = i[far], j[far], images[far]
            if max_neighbors is not None:  # edges are grouped by target, nearest first: keep the first max_neighbors
                first = torch.ones_like(i, dtype=torch.bool)
                first[1:] = i[1:] != i[:-1]
                start = torch.cummax(torch.where(first, torch.arange(len(i), device=i.device), torch.zeros_like(i)), 0).values
                keep = (torch.arange(len(i), device=i.device) - start) < max_neighbors
                i, j, images = i[keep], j[keep], images[keep]
    return _build(frac, lattice, _batch_index(num_atoms, n), i, j, images)


def knn_graph_pbc(
    frac: Tensor,
    lattice: Tensor,
    num_atoms: Tensor,
    k: int,
    *,
    tie_tolerance: float = 1e-5,
    chunk: int = DEFAULT_CHUNK,
    growth: float = 1.5,
) -> PeriodicGraph:
    """Exactly the k nearest periodic neighbours of every atom, whatever their distance.

    The "KNN algorithm that considers periodicity" of CDVAE appendix B.2 (K = 20) without a cutoff:
    every atom has infinitely many periodic neighbours (Eq. 1), so every atom gets exactly k
    edges. The search radius per crystal starts from the crystal's density and grows by
    ``growth`` where needed (see :func:`_nearest_within`); the result is exact. Ordering and
    tie-breaking as in :func:`radius_graph_pbc`.

    Args:
        frac: (N, 3) fractional coordinates.
        lattice: (B, 3, 3) rows a, b, c.
        num_atoms: (B,) long, summing to N.
        k: neighbours per atom.

    Returns:
        :class:`PeriodicGraph` with exactly k edges per target atom.
    """
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    if growth <= 1.0:
        raise ValueError(f"growth must exceed 1, got {growth}")
    _validate_graph_input(frac, lattice, num_atoms)
    n = frac.shape[0]
    with torch.no_grad():
        f, lat = frac.detach(), lattice.detach()
        limits = torch.full((num_atoms.numel(),), math.inf, dtype=f.dtype, device=f.device)
        i, j, images = _nearest_within(f, lat, num_atoms, limits, k, tie_tolerance, chunk, growth)
    return _build(frac, lattice, _batch_index(num_atoms, n), i, j, images)


def fourier_features(frac: Tensor, n_min: int = 3, n_max: int = 8) -> Tensor:
    """Fourier features of fractional coordinates, DP-CDVAE section S3:
    ``[sin(2^n pi r), cos(2^n pi r)]`` for n = n_min..n_max (periodic in r with period 1, so
    invariant to wrapping and to lattice translations).

    Args:
        frac: (N, 3) (wrapped or unwrapped; identical for n >= 1) fractional coordinates.

    Returns:
        (N, 6 (n_max - n_min + 1)): all sines (n-major, then coordinate), then all cosines.
    """
    freqs = math.pi * 2.0 ** torch.arange(n_min, n_max + 1, dtype=frac.dtype, device=frac.device)  # (K,)
    arg = (frac.unsqueeze(-2) * freqs.unsqueeze(-1)).flatten(-2)  # (N, K * 3)
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)  # (N, 6K)
