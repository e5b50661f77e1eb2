"""A periodic DimeNet++ (the CDVAE property-model encoder) on torch_geometric's building blocks.

The published CDVAE property models wrap DimeNet++ for crystals: edges come from a precomputed
crystal graph with periodic image offsets, distances and angles are computed under the lattice,
every output block's per-atom output is summed, and a crystal's prediction is the mean over its
atoms. This module reuses the blocks of torch_geometric's ``DimeNetPlusPlus`` (embedding, interaction and
output blocks, radial and spherical bases), but never its ``forward`` (which builds a
radius graph and uses torch-sparse for the triplets); the triplets are built here in plain torch.

Conventions (those of CDVAE's ``build_crystal_graph`` / ``get_pbc_distances``):

* ``edge_index`` is (2, E) with row 0 the source j and row 1 the target i of the message j -> i.
* ``images`` (E, 3) are integer lattice translations of the source: the edge vector is
  ``pos[j] - pos[i] + images @ lattice`` (the "offset" of the edge).
* a triplet k -> j -> i pairs an edge k -> j with an edge j -> i; triplets where k and i are the
  same atom index are dropped, even when they are different periodic images.
* the angle at j is between ``pos_j - pos_i + offset_ji`` and ``pos_k - pos_j + offset_kj``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["GraphBatch", "PeriodicDimeNetPlusPlus", "build_triplets", "collate_graphs"]


def build_triplets(edge_index: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """Triplets k -> j -> i over directed edges, as pairs of edge indices.

    Args:
        edge_index: (2, E) long, row 0 the source j, row 1 the target i of each edge.
        num_nodes: number of atoms N.

    Returns:
        ``(idx_kj, idx_ji)``, each (T,) long: for every edge e = j -> i (``idx_ji``) and every
        edge e' = k -> j into its source (``idx_kj``) with k != i (by atom index). Triplets are
        grouped by ``idx_ji`` in ascending order, and within a group ordered by ``idx_kj``.
    """
    src, dst = edge_index[0], edge_index[1]
    num_edges = src.numel()
    device = src.device
    if num_edges == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty
    order = torch.argsort(dst, stable=True)  # edges grouped by target
    in_deg = torch.bincount(dst, minlength=num_nodes)  # (N,)
    ptr = torch.cumsum(in_deg, 0) - in_deg  # (N,) first position of each target's group
    count = in_deg[src]  # (E,) how many edges enter the source of each edge
    idx_ji = torch.repeat_interleave(torch.arange(num_edges, device=device), count)  # (T0,)
    start = torch.repeat_interleave(ptr[src], count)
    first = torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
    within = torch.arange(idx_ji.numel(), device=device) - first
    idx_kj = order[start + within]
    keep = src[idx_kj] != dst[idx_ji]
    return idx_kj[keep], idx_ji[keep]


@dataclass
class GraphBatch:
    """A batch of periodic crystal graphs (all tensors on one device).

    Attributes:
        atom_types: (N,) long atomic numbers.
        pos: (N, 3) float Cartesian positions in Å.
        edge_index: (2, E) long, row 0 source j, row 1 target i.
        offsets: (E, 3) float Cartesian image offsets (``images @ lattice`` of the edge's crystal).
        batch: (N,) long crystal index of each atom.
        num_graphs: number of crystals B.
    """

    atom_types: Tensor
    pos: Tensor
    edge_index: Tensor
    offsets: Tensor
    batch: Tensor
    num_graphs: int


def collate_graphs(graphs: list[dict], dtype: torch.dtype = torch.float32) -> GraphBatch:
    """Concatenate per-crystal graphs into a :class:`GraphBatch`.

    Each graph is a dict with ``atom_types`` (n,), ``frac_coords`` (n, 3), ``lattice`` (3, 3, rows
    a, b, c), ``edge_index`` (2, e) and ``images`` (e, 3) (numpy arrays or tensors). Positions and
    offsets are computed in float64 and then cast to ``dtype``.
    """
    types, pos, edges, offs, batch = [], [], [], [], []
    shift = 0
    for b, g in enumerate(graphs):
        lattice = torch.as_tensor(g["lattice"], dtype=torch.float64).reshape(3, 3)
        frac = torch.as_tensor(g["frac_coords"], dtype=torch.float64).reshape(-1, 3)
        images = torch.as_tensor(g["images"], dtype=torch.float64).reshape(-1, 3)
        n = frac.shape[0]
        types.append(torch.as_tensor(g["atom_types"], dtype=torch.long).reshape(-1))
        pos.append(frac @ lattice)
        edges.append(torch.as_tensor(g["edge_index"], dtype=torch.long).reshape(2, -1) + shift)
        offs.append(images @ lattice)
        batch.append(torch.full((n,), b, dtype=torch.long))
        shift += n
    return GraphBatch(
        atom_types=torch.cat(types),
        pos=torch.cat(pos).to(dtype),
        edge_index=torch.cat(edges, dim=1),
        offsets=torch.cat(offs).to(dtype),
        batch=torch.cat(batch),
        num_graphs=len(graphs),
    )


_SBF_CACHE: dict[tuple, torch.nn.Module] = {}


def _spherical_basis(num_spherical: int, num_radial: int, cutoff: float, envelope_exponent: int) -> torch.nn.Module:
    """torch_geometric's ``SphericalBasisLayer`` (no parameters), built once per process: its
    sympy construction takes seconds, so models with the same settings share one instance."""
    from torch_geometric.nn.models.dimenet import SphericalBasisLayer

    key = (num_spherical, num_radial, cutoff, envelope_exponent)
    if key not in _SBF_CACHE:
        _SBF_CACHE[key] = SphericalBasisLayer(num_spherical, num_radial, cutoff, envelope_exponent)
    return _SBF_CACHE[key]


class PeriodicDimeNetPlusPlus(torch.nn.Module):
    """DimeNet++ over periodic crystal graphs, with CDVAE's readout.

    Parameter names match the published checkpoints' ``encoder.*`` tensors (after stripping the
    ``encoder.`` prefix): ``rbf``, ``sbf``, ``emb``, ``output_blocks``, ``interaction_blocks``.
    Each output block's ``lin_up`` carries a bias, as in CDVAE (torch_geometric's has none).
    """

    def __init__(
        self,
        num_targets: int = 1,
        hidden_channels: int = 128,
        num_blocks: int = 4,
        int_emb_size: int = 64,
        basis_emb_size: int = 8,
        out_emb_channels: int = 256,
        num_spherical: int = 7,
        num_radial: int = 6,
        cutoff: float = 7.0,
        envelope_exponent: int = 5,
        num_before_skip: int = 1,
        num_after_skip: int = 2,
        num_output_layers: int = 3,
        readout: str = "mean",
    ) -> None:
        super().__init__()
        from torch_geometric.nn.models.dimenet import (
            BesselBasisLayer,
            EmbeddingBlock,
            InteractionPPBlock,
            OutputPPBlock,
        )
        from torch_geometric.nn.resolver import activation_resolver

        if readout not in ("mean", "sum"):
            raise ValueError(f"readout must be 'mean' or 'sum', got {readout!r}")
        act = activation_resolver("swish")
        self.readout = readout
        self.cutoff = float(cutoff)
        self.rbf = BesselBasisLayer(num_radial, cutoff, envelope_exponent)
        self.sbf = _spherical_basis(num_spherical, num_radial, float(cutoff), envelope_exponent)
        self.emb = EmbeddingBlock(num_radial, hidden_channels, act)
        self.output_blocks = torch.nn.ModuleList(
            OutputPPBlock(num_radial, hidden_channels, out_emb_channels, num_targets, num_output_layers, act)
            for _ in range(num_blocks + 1)
        )
        for block in self.output_blocks:  # CDVAE's output blocks have a bias in lin_up
            old = block.lin_up
            block.lin_up = torch.nn.Linear(old.in_features, old.out_features, bias=True)
        self.interaction_blocks = torch.nn.ModuleList(
            InteractionPPBlock(hidden_channels, int_emb_size, basis_emb_size, num_spherical, num_radial,
                               num_before_skip, num_after_skip, act)
            for _ in range(num_blocks)
        )

    def forward(self, g: GraphBatch) -> Tensor:
        """Predictions (B, num_targets) in the model's (scaled) units for a :class:`GraphBatch`."""
        from torch_geometric.utils import scatter

        j, i = g.edge_index[0], g.edge_index[1]
        num_nodes = g.atom_types.numel()
        vec = g.pos[j] - g.pos[i] + g.offsets  # (E, 3) from target i to the source's image
        dist = vec.norm(dim=-1)  # (E,)

        idx_kj, idx_ji = build_triplets(g.edge_index, num_nodes)  # (T,), (T,)
        # vector i -> j of edge ji and vector j -> k of edge kj (both as the edge vectors above)
        pos_ji = vec[idx_ji]  # pos_j - pos_i + offset_ji
        pos_kj = vec[idx_kj]  # pos_k - pos_j + offset_kj
        a = (pos_ji * pos_kj).sum(dim=-1)
        b = torch.cross(pos_ji, pos_kj, dim=-1).norm(dim=-1)
        angle = torch.atan2(b, a)  # (T,)

        rbf = self.rbf(dist)  # (E, num_radial)
        sbf = self.sbf(dist, angle, idx_kj)  # (T, num_spherical * num_radial)

        x = self.emb(g.atom_types, rbf, i, j)  # (E, hidden)
        per_atom = self.output_blocks[0](x, rbf, i, num_nodes=num_nodes)  # (N, num_targets)
        for interaction, output in zip(self.interaction_blocks, self.output_blocks[1:]):
            x = interaction(x, rbf, sbf, idx_kj, idx_ji)
            per_atom = per_atom + output(x, rbf, i, num_nodes=num_nodes)
        return scatter(per_atom, g.batch, dim=0, dim_size=g.num_graphs, reduce=self.readout)
