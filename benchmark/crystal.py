"""The `Crystal` record: one periodic structure, independent of any modelling library.

A crystal is M = (A, X, L) in the notation of the CDVAE paper: atomic numbers A (N,), fractional
coordinates X (N, 3) and the lattice L, kept here as lengths (a, b, c) in Å and angles
(alpha, beta, gamma) in degrees, which is how CDVAE and its descendants store and sample lattices.
Converters build pymatgen ``Structure``, ASE ``Atoms`` and PyG batches on demand; importing this
module imports none of them.

A ``Crystal`` holds whatever numbers it was given, NaN and negative lengths included: deciding
whether such a crystal is valid is the metrics' job, which records a reason per crystal instead of
failing a whole run. Only the shapes are checked here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - imported for type hints only
    from ase import Atoms
    from pymatgen.core import Structure
    from torch_geometric.data import Batch

PropertyValue = float | int | str


def _frozen(array: Any, dtype: Any, shape: tuple[int | None, ...], what: str) -> np.ndarray:
    out = np.array(array, dtype=dtype, copy=True)
    if out.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, out.shape)):
        raise ValueError(f"{what} must have shape {shape}, got {out.shape}")
    out.setflags(write=False)
    return out


def lattice_params_to_matrix(lengths: Sequence[float], angles: Sequence[float]) -> np.ndarray:
    """Lattice vectors (3, 3), rows a, b, c, in pymatgen's ``Lattice.from_parameters`` convention.

    c is along z and a lies in the xz-plane (pymatgen's default, ``vesta=False``), so the matrices
    built here and by pymatgen agree to rounding.
    """
    a, b, c = (float(x) for x in lengths)
    alpha, beta, gamma = (math.radians(float(x)) for x in angles)
    cos_a, cos_b, cos_g = math.cos(alpha), math.cos(beta), math.cos(gamma)
    sin_a, sin_b = math.sin(alpha), math.sin(beta)
    val = (cos_a * cos_b - cos_g) / (sin_a * sin_b)
    val = max(min(val, 1.0), -1.0)  # pymatgen clips this too (abs_cap)
    gamma_star = math.acos(val)
    vector_a = [a * sin_b, 0.0, a * cos_b]
    vector_b = [-b * sin_a * math.cos(gamma_star), b * sin_a * math.sin(gamma_star), b * cos_a]
    vector_c = [0.0, 0.0, float(c)]
    return np.array([vector_a, vector_b, vector_c], dtype=np.float64)


def lattice_matrix_to_params(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lengths (3,), angles (3,) in degrees) of a lattice given as rows a, b, c (3, 3)."""
    m = np.asarray(matrix, dtype=np.float64)
    lengths = np.linalg.norm(m, axis=1)
    angles = np.zeros(3)
    for i in range(3):
        j, k = (i + 1) % 3, (i + 2) % 3
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = float(np.dot(m[j], m[k]) / (lengths[j] * lengths[k]))
        angles[i] = math.degrees(math.acos(max(min(cos, 1.0), -1.0))) if math.isfinite(cos) else float("nan")
    return lengths, angles


def lattice_problem(lengths: Sequence[float], angles: Sequence[float]) -> str | None:
    """Why lengths (3,) in Å and angles (3,) in degrees make no usable cell, or None if they do.

    Checks, in order: finite numbers, positive lengths, angles in (0, 180), angles that close a
    cell (each less than the sum of the other two, all three less than 360), and a volume above
    1e-3 of a * b * c. Decoders of fixed-size representations report this as a reason.
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    angles = np.asarray(angles, dtype=np.float64)
    if not (np.all(np.isfinite(lengths)) and np.all(np.isfinite(angles))):
        return "lattice parameters are not finite"
    if np.any(lengths <= 0):
        return f"lattice lengths {np.round(lengths, 3).tolist()} are not all positive"
    if np.any(angles <= 0) or np.any(angles >= 180):
        return f"lattice angles {np.round(angles, 2).tolist()} are not all in (0, 180)"
    al, be, ga = angles
    if al + be + ga >= 360 or al >= be + ga or be >= al + ga or ga >= al + be:
        return f"lattice angles {np.round(angles, 2).tolist()} describe no cell"
    volume = abs(float(np.linalg.det(lattice_params_to_matrix(lengths, angles))))
    if not volume > 1e-3 * float(np.prod(lengths)):
        return f"degenerate lattice (volume {volume:.3g} Å^3)"
    return None


@dataclass(frozen=True, eq=False)
class Crystal:
    """One crystal structure.

    Attributes:
        atomic_numbers: (N,) int64 atomic numbers.
        frac_coords: (N, 3) float64 fractional coordinates.
        lengths: (3,) float64 lattice lengths a, b, c in Å.
        angles: (3,) float64 lattice angles alpha, beta, gamma in degrees.
        properties: per-crystal properties (e.g. ``heat_ref``), read-only.
        label: an identifier (material id, file name, index), or None.
    """

    atomic_numbers: np.ndarray
    frac_coords: np.ndarray
    lengths: np.ndarray
    angles: np.ndarray
    properties: Mapping[str, PropertyValue] = field(default_factory=dict)
    label: str | None = None

    def __post_init__(self) -> None:
        z = _frozen(self.atomic_numbers, np.int64, (None,), "atomic_numbers")
        object.__setattr__(self, "atomic_numbers", z)
        object.__setattr__(self, "frac_coords", _frozen(self.frac_coords, np.float64, (len(z), 3), "frac_coords"))
        object.__setattr__(self, "lengths", _frozen(self.lengths, np.float64, (3,), "lengths"))
        object.__setattr__(self, "angles", _frozen(self.angles, np.float64, (3,), "angles"))
        object.__setattr__(self, "properties", MappingProxyType(dict(self.properties)))

    # ------------------------------------------------------------------ basic views
    @property
    def num_atoms(self) -> int:
        return int(self.atomic_numbers.shape[0])

    @property
    def lattice_matrix(self) -> np.ndarray:
        """(3, 3) lattice vectors as rows, pymatgen's orientation for the lengths and angles."""
        return lattice_params_to_matrix(self.lengths, self.angles)

    @property
    def cart_coords(self) -> np.ndarray:
        """(N, 3) Cartesian coordinates in Å."""
        return self.frac_coords @ self.lattice_matrix

    def with_properties(self, **values: PropertyValue) -> "Crystal":
        merged = dict(self.properties)
        merged.update(values)
        return Crystal(self.atomic_numbers, self.frac_coords, self.lengths, self.angles, merged, self.label)

    def __repr__(self) -> str:
        from collections import Counter

        counts = Counter(int(z) for z in self.atomic_numbers)
        formula = " ".join(f"Z{z}:{n}" for z, n in sorted(counts.items()))
        return f"Crystal(label={self.label!r}, N={self.num_atoms}, {formula}, lengths={self.lengths.round(3).tolist()}, angles={self.angles.round(2).tolist()})"

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_lattice_matrix(
        cls,
        atomic_numbers: Iterable[int],
        frac_coords: Any,
        lattice: Any,
        properties: Mapping[str, PropertyValue] | None = None,
        label: str | None = None,
    ) -> "Crystal":
        lengths, angles = lattice_matrix_to_params(np.asarray(lattice, dtype=np.float64).reshape(3, 3))
        return cls(np.asarray(list(atomic_numbers)), frac_coords, lengths, angles, properties or {}, label)

    @classmethod
    def from_structure(
        cls, structure: "Structure", properties: Mapping[str, PropertyValue] | None = None, label: str | None = None
    ) -> "Crystal":
        """From a pymatgen Structure (ordered sites only)."""
        if not structure.is_ordered:
            raise ValueError("disordered structures (partial occupancies) are not supported")
        z = [site.specie.Z for site in structure]
        lat = structure.lattice
        return cls(z, structure.frac_coords, lat.abc, lat.angles, properties or {}, label)

    @classmethod
    def from_atoms(cls, atoms: "Atoms", label: str | None = None) -> "Crystal":
        """From ASE Atoms; numeric entries of ``atoms.info`` become properties."""
        props = {k: v for k, v in atoms.info.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
        return cls.from_lattice_matrix(
            atoms.get_atomic_numbers(), atoms.get_scaled_positions(wrap=False), atoms.cell.array, props, label
        )

    # ------------------------------------------------------------------ converters
    def to_structure(self) -> "Structure":
        """pymatgen Structure built as the CDVAE evaluation builds it: ``Lattice.from_parameters``."""
        from pymatgen.core import Lattice, Structure

        lattice = Lattice.from_parameters(*self.lengths.tolist(), *self.angles.tolist())
        return Structure(lattice=lattice, species=self.atomic_numbers.tolist(), coords=self.frac_coords, coords_are_cartesian=False)

    def to_atoms(self) -> "Atoms":
        from ase import Atoms

        info = {k: v for k, v in self.properties.items()}
        if self.label is not None:
            info["label"] = self.label
        return Atoms(numbers=self.atomic_numbers, scaled_positions=self.frac_coords, cell=self.lattice_matrix, pbc=True, info=info)


def to_pyg_batch(crystals: Sequence[Crystal]) -> "Batch":
    """A torch_geometric ``Batch`` in CDVAE's layout.

    Per graph: ``frac_coords`` (N, 3) float32, ``atom_types`` (N,) long, ``lengths`` (1, 3),
    ``angles`` (1, 3), ``num_atoms`` (1,), ``num_nodes``; batched, nodes are concatenated and
    ``lengths``/``angles`` become (B, 3).
    """
    import torch
    from torch_geometric.data import Batch, Data

    graphs = []
    for c in crystals:
        graphs.append(
            Data(
                frac_coords=torch.as_tensor(np.array(c.frac_coords), dtype=torch.float32),
                atom_types=torch.as_tensor(np.array(c.atomic_numbers), dtype=torch.long),
                lengths=torch.as_tensor(np.array(c.lengths), dtype=torch.float32).view(1, 3),
                angles=torch.as_tensor(np.array(c.angles), dtype=torch.float32).view(1, 3),
                num_atoms=torch.tensor([c.num_atoms], dtype=torch.long),
                num_nodes=c.num_atoms,
            )
        )
    return Batch.from_data_list(graphs)


def from_pyg_batch(batch: Any) -> list[Crystal]:
    """Split a CDVAE-layout batch (anything with ``frac_coords``, ``atom_types``, ``lengths``,
    ``angles``, ``num_atoms`` tensors) into crystals."""
    return crystals_from_arrays(batch.frac_coords, batch.atom_types, batch.lengths, batch.angles, batch.num_atoms)


def crystals_from_arrays(frac_coords: Any, atom_types: Any, lengths: Any, angles: Any, num_atoms: Any) -> list[Crystal]:
    """Split concatenated arrays (the layout of CDVAE's evaluation files) into crystals.

    Args:
        frac_coords: (sum N, 3); atom_types: (sum N,); lengths, angles: (B, 3); num_atoms: (B,).
    """

    def as_np(x: Any) -> np.ndarray:
        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        return np.asarray(x)

    frac, types, lens, angs, counts = (as_np(x) for x in (frac_coords, atom_types, lengths, angles, num_atoms))
    counts = counts.astype(np.int64).reshape(-1)
    if frac.shape[0] != types.shape[0] or types.shape[0] != int(counts.sum()):
        raise ValueError(f"atom arrays have {frac.shape[0]} and {types.shape[0]} rows but num_atoms sums to {int(counts.sum())}")
    if lens.reshape(-1, 3).shape[0] != counts.shape[0] or angs.reshape(-1, 3).shape[0] != counts.shape[0]:
        raise ValueError("lengths/angles do not have one row per crystal")
    lens, angs = lens.reshape(-1, 3), angs.reshape(-1, 3)
    out: list[Crystal] = []
    start = 0
    for i, n in enumerate(counts.tolist()):
        out.append(Crystal(types[start : start + n], frac[start : start + n], lens[i], angs[i], label=str(i)))
        start += n
    return out
