"""A batch of crystals with their encoder graphs, as the CDVAE family of models reads them.

:class:`CrystalBatch` concatenates crystals of different sizes along the atom axis (the
conventions of :mod:`benchmark.nn.periodic`): per-atom tensors have N = ``num_atoms.sum()`` rows,
per-crystal tensors B rows, and ``batch`` (N,) gives each atom's crystal. The encoder graph is the
published CrystalNN graph (:func:`benchmark.nn.crystalnn.build_graph`), its edges as global atom
indices.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Mapping, Sequence

import torch
from torch import Tensor

from benchmark.nn.periodic import params_from_lattice

__all__ = ["CrystalBatch", "mean_per_crystal"]


@dataclass
class CrystalBatch:
    """A batch of crystals with their encoder graphs (all tensors on one device).

    Attributes:
        atom_types: (N,) long atomic numbers in 1..max_atomic_num.
        frac_coords: (N, 3) float fractional coordinates.
        lengths: (B, 3) lattice lengths in Å.
        angles: (B, 3) lattice angles in degrees.
        num_atoms: (B,) long atoms per crystal, summing to N.
        batch: (N,) long crystal index of each atom.
        edge_index: (2, E) long encoder (CrystalNN) graph, global atom indices; row 0 the source j,
            row 1 the target i.
        images: (E, 3) float integer lattice translations of the source.
        y: (B,) standardised property, or None.
        conditions: named per-crystal conditions for conditional models (Con-CDVAE), or None:
            each value (B,) (float for continuous, long for class indices) or (B, k) (e.g.
            element fractions); CDVAE itself ignores them.
    """

    atom_types: Tensor
    frac_coords: Tensor
    lengths: Tensor
    angles: Tensor
    num_atoms: Tensor
    batch: Tensor
    edge_index: Tensor
    images: Tensor
    y: Tensor | None = None
    conditions: dict[str, Tensor] | None = None

    @property
    def num_graphs(self) -> int:
        """Number of crystals B."""
        return int(self.num_atoms.shape[0])

    def to(self, device: torch.device | str) -> "CrystalBatch":
        """A copy with every tensor on ``device``."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        out = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in moved.items()}
        if self.conditions is not None:
            out["conditions"] = {k: v.to(device) for k, v in self.conditions.items()}
        return CrystalBatch(**out)

    @classmethod
    def from_graphs(cls, graphs: Sequence[dict], y: Sequence[float] | Tensor | None = None,
                    dtype: torch.dtype = torch.float32,
                    conditions: Mapping[str, Sequence | Tensor] | None = None) -> "CrystalBatch":
        """Collate per-crystal graphs as returned by :func:`benchmark.nn.crystalnn.build_graph`.

        Each graph holds ``atom_types`` (n,), ``frac_coords`` (n, 3), ``lattice`` (3, 3, rows),
        ``edge_index`` (2, e, local indices) and ``images`` (e, 3). Lengths and angles are read
        off the lattice matrices (the model is invariant to the lattice's orientation).
        ``conditions`` (optional) maps a name to B per-crystal values; floating values are cast
        to ``dtype``, integer ones kept as long.
        """
        types, frac, lattices, edges, images, counts = [], [], [], [], [], []
        shift = 0
        for g in graphs:
            n = len(g["atom_types"])
            types.append(torch.as_tensor(g["atom_types"], dtype=torch.long).reshape(n))
            frac.append(torch.as_tensor(g["frac_coords"], dtype=torch.float64).reshape(n, 3))
            lattices.append(torch.as_tensor(g["lattice"], dtype=torch.float64).reshape(3, 3))
            edges.append(torch.as_tensor(g["edge_index"], dtype=torch.long).reshape(2, -1) + shift)
            images.append(torch.as_tensor(g["images"], dtype=torch.float64).reshape(-1, 3))
            counts.append(n)
            shift += n
        num_atoms = torch.tensor(counts, dtype=torch.long)
        lengths, angles = params_from_lattice(torch.stack(lattices))  # (B, 3), (B, 3)
        cond: dict[str, Tensor] | None = None
        if conditions is not None:
            cond = {}
            for name, values in conditions.items():
                t = torch.as_tensor(values)  # (B,) or (B, k)
                if t.shape[:1] != (len(counts),):
                    raise ValueError(f"condition {name!r} has shape {tuple(t.shape)} for {len(counts)} crystals")
                cond[name] = t.to(dtype) if t.is_floating_point() else t.long()
        return cls(
            atom_types=torch.cat(types),
            frac_coords=torch.cat(frac).to(dtype),
            lengths=lengths.to(dtype),
            angles=angles.to(dtype),
            num_atoms=num_atoms,
            batch=torch.repeat_interleave(torch.arange(len(counts)), num_atoms),
            edge_index=torch.cat(edges, dim=1),
            images=torch.cat(images).to(dtype),
            y=None if y is None else torch.as_tensor(y, dtype=dtype).reshape(len(counts)),
            conditions=cond,
        )


def mean_per_crystal(values: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """(N,) per-atom values -> (B,) mean over each crystal's atoms."""
    sums = values.new_zeros(num_graphs).index_add_(0, batch, values)  # (B,)
    counts = torch.bincount(batch, minlength=num_graphs).clamp_min(1).to(values.dtype)  # (B,)
    return sums / counts
