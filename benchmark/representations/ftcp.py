"""FTCP: a crystal as a real- and reciprocal-space matrix (Ren et al., Matter 5, 314, 2022).

Followed: the released code PV-Lab/FTCP at commit a8ac7b0214bf (``data.py`` ``FTCP_represent``,
``utils.py`` ``minmax`` / ``inv_minmax``, ``main.py`` and ``sampling.py`` ``get_info``); file:line
references below are to that commit. Written anew here; no line is copied.

Matrix (:class:`FTCPLayout`; E = max(max_elms, 3) real-space columns, S = max_sites, then 59
reciprocal-space columns), rows from the top:

| rows | real-space columns 0..E-1 | reciprocal columns E..E+58 | release |
| --- | --- | --- | --- |
| 0..102 | element one-hot (H..Lr), one column per distinct element in order of first appearance among the sites | 0 | data.py:131-137 |
| 103 | a, b, c (Å) in columns 0-2 | 0 | data.py:140-142 |
| 104 | alpha, beta, gamma (degrees) in columns 0-2 | 0 | data.py:141-142 |
| 105..105+S-1 | fractional coordinates of site i in columns 0-2, zero rows after the last site | 0 | data.py:145-148 |
| 105+S..105+2S-1 | site occupancy: one-hot over the element columns | 0 | data.py:151-157 |
| 105+2S | 0 | lengths \\|G\\| (Å^-1) of the 59 reciprocal points | data.py:164, 198 |
| 106+2S..197+2S | CGCNN's 92 features of each element column | the "Fourier" term below | data.py:160-161, 189-199 |
| (``ftcp_sf`` only) 198+2S..289+2S | 0 | imaginary part of the structure factor | ours |
| then | zero rows up to a multiple of 4 | | main.py:27 |

Reciprocal points: the crystallographic reciprocal lattice (no 2 pi; pymatgen's
``reciprocal_lattice_crystallographic``) points within 1.297 Å^-1 of the origin, or within 1.4 Å^-1
when that sphere holds fewer than 60 (origin included; data.py:167-171); (000) dropped (data.py:173-175);
sorted by |h| + |k| + |l|, ties by h, then k, then l, each descending (data.py:179-183), and the first
59 kept (data.py:185-187). The order is by index sum, not by length, so these are not strictly the 59
nearest points. A cell whose wider sphere holds fewer than 59 points (volume below about 5 Å^3) has
no FTCP: the release fails there on a shape mismatch (data.py:198); :func:`encode` raises ValueError.

The "Fourier" term of variant ``ftcp`` is what the release computes (data.py:189-193): for feature p
and point hkl, ``sum_s f_p(Z_s) * pi * (hkl . r_s)`` over the sites s, linear in the fractional
coordinates r_s, not the periodic ``exp(2 pi i hkl . r)`` of a structure factor. Coordinates are
wrapped into [0, 1) first (the release reads them from pymatgen's CIF parser, which wraps them), so
the term is defined. Variant ``ftcp_sf`` (ours, not in the release) puts the structure factor
``F_p(hkl) = sum_s f_p(Z_s) exp(2 pi i hkl . r_s)`` there instead: its real part
``sum_s f_p cos(2 pi hkl . r_s)`` in the same 92 rows, and its imaginary part
``sum_s f_p sin(2 pi hkl . r_s)`` in 92 more rows appended below (real-space columns zero), so the
59 columns keep their meaning and the matrix grows by 92 rows before the padding.

Site order: the crystal's own. The release takes it from pymatgen's CIF parser (data.py:128), which
sorts sites by electronegativity and wraps coordinates; the project's datasets parse the same way
(``benchmark.datasets.base.parse_cif_published``) but then Niggli-reduce the cell, as CDVAE does, so
a dataset crystal's lattice rows are those of its reduced cell, not of the CIF as written.

CGCNN's element features are ``atom_init.json`` (:mod:`benchmark.elements`, the pinned file
Con-CDVAE ships; the release reads CGCNN's own copy, data.py:115-117); they exist for Z = 1..100, so
Md, No and Lr (101-103) have one-hot rows but cannot be encoded, as in the release (a KeyError there).

Scaling (:class:`FTCPScaler`): the release's ``minmax`` (utils.py:27-54) min-max scales each row
over every training matrix and every column (one min and one max per row).

Decoding (:func:`decode`, sampling.py:66-107 ``get_info`` with ase's ``spacegroup.crystal``): element
of each column = argmax over the 103 one-hot rows (first ``max_elms`` columns); per occupancy row, the
column holding the row maximum if that maximum is at least 0.05; lattice from rows 103-104; sites up
to the last occupied one with their coordinates wrapped into [0, 1); a site within 1e-3 (fractional,
each axis, periodic) of an earlier one dropped, as ase's ``crystal`` (symprec 1e-3) drops it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np

from benchmark.crystal import Crystal, lattice_params_to_matrix, lattice_problem

RELEASE = "PV-Lab/FTCP@a8ac7b0214bfabc0ed6204fdc53915b5f02b705f"
"""The released code this module follows."""
N_ELEMENTS = 103
"""One-hot rows: H..Lr (the release's ``data/element.pkl``, data.py:109-112)."""
N_FEATURES = 92
"""CGCNN's element features per element (``atom_init.json``)."""
N_POINTS = 59
"""Reciprocal lattice points, i.e. reciprocal-space columns (data.py:185, 196)."""
RADIUS = 1.297
"""First sphere radius in Å^-1 (data.py:169)."""
RADIUS_WIDE = 1.4
"""Second radius, used when the first sphere holds fewer than :data:`MIN_IN_SPHERE` points (data.py:170-171)."""
MIN_IN_SPHERE = 60
OCCUPANCY_THRESHOLD = 0.05
"""An occupancy row whose maximum is below this is an empty (padding) site (sampling.py:81)."""
DUPLICATE_TOL = 1e-3
"""Fractional distance per axis under which a decoded site repeats an earlier one (ase ``crystal``'s symprec)."""
ROW_MULTIPLE = 4
"""Rows are zero-padded to a multiple of this (main.py:27 pads 278 rows to 280 for the VAE's two stride-2 layers)."""
VARIANTS = ("ftcp", "ftcp_sf")
Variant = Literal["ftcp", "ftcp_sf"]


# ---------------------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class FTCPLayout:
    """Sizes of an FTCP matrix and where each block sits (module docstring table).

    Attributes:
        max_elms: distinct elements a crystal may have (the release's ``max_elms``; at least 1).
        max_sites: sites a crystal may have (the release's ``max_sites``; at least 1).
        variant: ``"ftcp"`` (the release's linear "Fourier" term) or ``"ftcp_sf"`` (structure factors).
    """

    max_elms: int
    max_sites: int
    variant: Variant = "ftcp"

    def __post_init__(self) -> None:
        for name in ("max_elms", "max_sites"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or int(value) < 1:
                raise ValueError(f"FTCPLayout.{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.variant not in VARIANTS:
            raise ValueError(f"FTCPLayout.variant must be one of {VARIANTS}, got {self.variant!r}")

    @property
    def n_real_cols(self) -> int:
        """E = max(max_elms, 3): the real-space columns (data.py:136)."""
        return max(self.max_elms, 3)

    @property
    def n_cols(self) -> int:
        """E + 59."""
        return self.n_real_cols + N_POINTS

    @property
    def col_recip(self) -> int:
        """First reciprocal-space column (E)."""
        return self.n_real_cols

    @property
    def row_elements(self) -> int:
        return 0

    @property
    def row_abc(self) -> int:
        return N_ELEMENTS

    @property
    def row_angles(self) -> int:
        return N_ELEMENTS + 1

    @property
    def row_coords(self) -> int:
        """First of the ``max_sites`` coordinate rows."""
        return N_ELEMENTS + 2

    @property
    def row_occupancy(self) -> int:
        """First of the ``max_sites`` occupancy rows."""
        return self.row_coords + self.max_sites

    @property
    def row_lengths(self) -> int:
        """The row that is zero in real space and holds the 59 point lengths in reciprocal space."""
        return self.row_occupancy + self.max_sites

    @property
    def row_features(self) -> int:
        """First of the 92 CGCNN feature rows (real space) / Fourier or Re F rows (reciprocal space)."""
        return self.row_lengths + 1

    @property
    def row_features_imag(self) -> int | None:
        """First of the 92 Im F rows (``ftcp_sf``), or None."""
        return self.row_features + N_FEATURES if self.variant == "ftcp_sf" else None

    @property
    def n_rows_unpadded(self) -> int:
        return self.row_features + N_FEATURES * (2 if self.variant == "ftcp_sf" else 1)

    @property
    def n_rows(self) -> int:
        """Rows after zero padding to a multiple of 4."""
        return -(-self.n_rows_unpadded // ROW_MULTIPLE) * ROW_MULTIPLE

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_rows, self.n_cols)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the three fields plus the derived ``n_rows`` and ``n_cols`` (checked on reading)."""
        return {"max_elms": self.max_elms, "max_sites": self.max_sites, "variant": self.variant,
                "n_rows": self.n_rows, "n_cols": self.n_cols}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FTCPLayout":
        """Inverse of :meth:`to_dict`; stored ``n_rows`` / ``n_cols`` that disagree are an error."""
        layout = cls(int(data["max_elms"]), int(data["max_sites"]), data.get("variant", "ftcp"))
        for key in ("n_rows", "n_cols"):
            if key in data and int(data[key]) != getattr(layout, key):
                raise ValueError(f"FTCPLayout.from_dict: stored {key}={data[key]} but the layout gives {getattr(layout, key)}")
        return layout


def dataset_limits(crystals: Iterable[Crystal]) -> tuple[int, int]:
    """(max_elms, max_sites) of a training set: the most distinct elements and the most sites of
    any crystal (the release queries Materials Project with these as limits, main.py:17-22).

    Raises:
        ValueError: no crystal.
    """
    max_elms = max_sites = 0
    seen = False
    for crystal in crystals:
        seen = True
        max_elms = max(max_elms, len(np.unique(crystal.atomic_numbers)))
        max_sites = max(max_sites, crystal.num_atoms)
    if not seen:
        raise ValueError("dataset_limits: no crystals")
    return max_elms, max_sites


# ---------------------------------------------------------------------------------------- features
def _feature_table(element_features: Mapping[int, Sequence[float]]) -> np.ndarray:
    """(104, 92) float64, row Z for element Z (row 0 unused), NaN where ``element_features`` has none."""
    table = np.full((N_ELEMENTS + 1, N_FEATURES), np.nan)
    for z, vec in element_features.items():
        z = int(z)
        vec = np.asarray(vec, dtype=np.float64)
        if vec.shape != (N_FEATURES,):
            raise ValueError(f"element {z}: {vec.shape[0] if vec.ndim == 1 else vec.shape} features, FTCP needs {N_FEATURES}")
        if 1 <= z <= N_ELEMENTS:
            table[z] = vec
    return table


@functools.lru_cache(maxsize=4)
def _cgcnn_table(path: str) -> np.ndarray:
    from benchmark.elements import read_atom_init

    table = _feature_table(read_atom_init(path, N_FEATURES))
    table.setflags(write=False)
    return table


def cgcnn_table() -> np.ndarray:
    """(104, 92) CGCNN features by atomic number (row Z; NaN for Z = 101-103 and row 0), read once
    per file from the oracle directories (:func:`benchmark.elements.read_atom_init`, sha256-pinned).

    Raises:
        FileNotFoundError: no ``atom_init.json``, naming where it was looked for and how to get it.
        ValueError: the file is not the pinned one.
    """
    from benchmark.elements import HOW_TO_GET, atom_init_candidates, find_atom_init

    path = find_atom_init()
    if path is None:
        tried = ", ".join(str(p) for p in atom_init_candidates())
        raise FileNotFoundError(f"FTCP needs CGCNN's element features (atom_init.json), not found at {tried}; {HOW_TO_GET}")
    return _cgcnn_table(str(path.resolve()))


def _table(element_features: Mapping[int, Sequence[float]] | None) -> np.ndarray:
    return cgcnn_table() if element_features is None else _feature_table(element_features)


# ---------------------------------------------------------------------------------------- encode
def _wrap(frac: np.ndarray) -> np.ndarray:
    out = frac - np.floor(frac)
    out[out >= 1.0] = 0.0  # -1e-17 - floor(-1e-17) rounds to 1.0
    return out


MAX_GRID = 5_000_000
"""Most (h, k, l) candidates enumerated for one cell; a cell needing more is refused (a > ~400 Å)."""


def reciprocal_points(lengths: Sequence[float], angles: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The release's 59 reciprocal lattice points of a cell (data.py:167-187; module docstring).

    Returns:
        hkl: (59, 3) int64 Miller indices, in the release's order.
        g: (59,) float64 their lengths |h b1 + k b2 + l b3| in Å^-1 (crystallographic, no 2 pi).

    The points are enumerated directly (every integer hkl with |h| <= r a etc. can lie within r, since
    h = G . a1), which gives the same set as pymatgen's ``get_points_in_sphere`` that the release calls.

    Raises:
        ValueError: the lattice is unusable, too large to enumerate, or too small to hold 59 points.
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    angles = np.asarray(angles, dtype=np.float64)
    problem = lattice_problem(lengths, angles)
    if problem is not None:
        raise ValueError(problem)
    recip = np.linalg.inv(lattice_params_to_matrix(lengths, angles)).T  # rows b1, b2, b3: a_i . b_j = delta_ij
    bounds = np.floor(RADIUS_WIDE * lengths + 1e-9).astype(np.int64)
    if float(np.prod(2 * bounds + 1)) > MAX_GRID:
        raise ValueError(f"cell {np.round(lengths, 1).tolist()} Å too large to enumerate its reciprocal points")
    axes = [np.arange(-b, b + 1) for b in bounds]
    hkl = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    g = np.linalg.norm(hkl @ recip, axis=1)
    radius = RADIUS if np.count_nonzero(g <= RADIUS) >= MIN_IN_SPHERE else RADIUS_WIDE
    keep = (g <= radius) & (g != 0)  # the sphere, then (000) dropped
    hkl, g = hkl[keep], g[keep]
    order = np.lexsort((-hkl[:, 2], -hkl[:, 1], -hkl[:, 0], np.abs(hkl).sum(axis=1)))[:N_POINTS]
    if order.size < N_POINTS:
        raise ValueError(f"only {order.size} reciprocal lattice points within {radius} Å^-1 (cell volume "
                         f"{abs(np.linalg.det(lattice_params_to_matrix(lengths, angles))):.3g} Å^3); FTCP needs {N_POINTS}")
    return hkl[order], g[order]


def _elements_in_order(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct elements in order of first appearance, each site's column among them) (data.py:131-134, 151-153)."""
    _, first = np.unique(z, return_index=True)
    elements = z[np.sort(first)]
    column = np.argmax(z[:, None] == elements[None, :], axis=1)
    return elements, column


def _encode(crystal: Crystal, layout: FTCPLayout, table: np.ndarray) -> np.ndarray:
    """Float64 (n_rows, n_cols) FTCP of ``crystal``; ValueError when it does not fit (see :func:`encode`)."""
    n = crystal.num_atoms
    if n == 0:
        raise ValueError("no atoms")
    if n > layout.max_sites:
        raise ValueError(f"{n} sites, more than max_sites={layout.max_sites}")
    z = np.asarray(crystal.atomic_numbers, dtype=np.int64)
    bad = sorted(set(z[(z < 1) | (z > N_ELEMENTS)].tolist()))
    if bad:
        raise ValueError(f"atomic numbers {bad} outside H..Lr (1..{N_ELEMENTS})")
    elements, column = _elements_in_order(z)
    if len(elements) > layout.max_elms:
        raise ValueError(f"{len(elements)} elements, more than max_elms={layout.max_elms}")
    missing = sorted({int(e) for e in elements if np.isnan(table[e, 0])})
    if missing:
        raise ValueError(f"no CGCNN element features for Z = {missing}")
    frac = np.asarray(crystal.frac_coords, dtype=np.float64)
    if not np.all(np.isfinite(frac)):
        raise ValueError("fractional coordinates are not finite")
    frac = _wrap(frac)
    hkl, g = reciprocal_points(crystal.lengths, crystal.angles)  # ValueError for a bad lattice

    L = layout
    out = np.zeros(L.shape, dtype=np.float64)
    n_el = len(elements)
    out[L.row_elements + elements - 1, np.arange(n_el)] = 1.0  # data.py:136-137
    out[L.row_abc, :3] = crystal.lengths  # data.py:141
    out[L.row_angles, :3] = crystal.angles
    out[L.row_coords : L.row_coords + n, :3] = frac  # data.py:145-148
    out[L.row_occupancy + np.arange(n), column] = 1.0  # data.py:151-157
    feats = L.row_features
    out[feats : feats + N_FEATURES, :n_el] = table[elements].T  # data.py:160-161
    c0 = L.col_recip
    out[L.row_lengths, c0:] = g  # data.py:198
    site_features = table[z]  # (n, 92): each site's element features
    if L.variant == "ftcp":
        # data.py:189-193: F[p, j] = sum_s f_p(Z_s) * pi * (hkl_j . r_s)
        out[feats : feats + N_FEATURES, c0:] = site_features.T @ (math.pi * (frac @ hkl.T))
    else:
        phase = 2.0 * math.pi * (frac @ hkl.T)  # (n, 59)
        out[feats : feats + N_FEATURES, c0:] = site_features.T @ np.cos(phase)
        imag = L.row_features_imag
        out[imag : imag + N_FEATURES, c0:] = site_features.T @ np.sin(phase)
    return out


def encode(
    crystal: Crystal,
    max_elms: int,
    max_sites: int,
    variant: str = "ftcp",
    *,
    element_features: Mapping[int, Sequence[float]] | None = None,
) -> np.ndarray:
    """The FTCP matrix of ``crystal``: float32 (n_rows, n_cols), unscaled (module docstring).

    Args:
        crystal: its own site order is kept; coordinates are wrapped into [0, 1).
        max_elms, max_sites, variant: the :class:`FTCPLayout`.
        element_features: ``{Z: 92 numbers}`` to use instead of CGCNN's ``atom_init.json`` (tests).

    Raises:
        FileNotFoundError: CGCNN's ``atom_init.json`` is not in the oracle directories (and no
            ``element_features`` were given), naming where it was looked for and how to get it.
        ValueError: the crystal does not fit: no atoms, more than ``max_sites`` sites or
            ``max_elms`` elements, an element without features (Z > 100), non-finite coordinates,
            an unusable lattice, or a cell too small for 59 reciprocal points.
    """
    layout = FTCPLayout(max_elms, max_sites, variant)  # type: ignore[arg-type]
    return _encode(crystal, layout, _table(element_features)).astype(np.float32)


def encode_many(
    crystals: Sequence[Crystal],
    layout: FTCPLayout,
    progress: bool = True,
    *,
    element_features: Mapping[int, Sequence[float]] | None = None,
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Training matrices: (n, n_rows, n_cols) float32 for the crystals that fit, and ``(index, reason)``
    for each one skipped (never an exception for a crystal; :func:`encode` lists the reasons).

    Raises:
        FileNotFoundError: CGCNN's ``atom_init.json`` is missing (checked before the first crystal).
    """
    from tqdm.auto import tqdm

    table = _table(element_features)
    out: list[np.ndarray] = []
    skipped: list[tuple[int, str]] = []
    for i, crystal in enumerate(tqdm(crystals, desc="FTCP", disable=not progress, leave=False)):
        try:
            out.append(_encode(crystal, layout, table).astype(np.float32))
        except ValueError as err:
            skipped.append((i, f"{crystal.label}: {err}" if crystal.label is not None else str(err)))
    array = np.stack(out) if out else np.zeros((0, *layout.shape), dtype=np.float32)
    return array, skipped


# ---------------------------------------------------------------------------------------- scaling
@dataclass(frozen=True, eq=False)
class FTCPScaler:
    """The release's min-max scaling (utils.py:27-83 ``minmax`` / ``inv_minmax``).

    The release moves the row axis first, flattens the matrices and their columns into samples and
    fits scikit-learn's ``MinMaxScaler`` on that (rows as features): one minimum and one maximum per
    row, over every training matrix and every column. A row with a range below 10 machine epsilon
    (e.g. the zero padding) keeps range 1, as scikit-learn does, so it maps ``x -> x - min``.
    Transformed values are ``x * scale + offset`` with ``scale = 1 / range`` and
    ``offset = -min * scale``, the same arithmetic as scikit-learn.

    Attributes:
        data_min, data_max: (n_rows,) float64 per-row minimum and maximum of the training matrices.
    """

    data_min: np.ndarray
    data_max: np.ndarray

    def __post_init__(self) -> None:
        lo = np.array(self.data_min, dtype=np.float64).reshape(-1)
        hi = np.array(self.data_max, dtype=np.float64).reshape(-1)
        if lo.shape != hi.shape:
            raise ValueError(f"FTCPScaler: data_min has {lo.size} rows, data_max {hi.size}")
        lo.setflags(write=False)
        hi.setflags(write=False)
        object.__setattr__(self, "data_min", lo)
        object.__setattr__(self, "data_max", hi)

    @classmethod
    def fit(cls, arrays: np.ndarray) -> "FTCPScaler":
        """Per-row min and max of (n, n_rows, n_cols) matrices (NaN ignored, as scikit-learn does)."""
        a = np.asarray(arrays, dtype=np.float64)
        if a.ndim != 3 or a.shape[0] == 0:
            raise ValueError(f"FTCPScaler.fit: expected (n >= 1, n_rows, n_cols), got {a.shape}")
        return cls(np.nanmin(a, axis=(0, 2)), np.nanmax(a, axis=(0, 2)))

    @property
    def scale(self) -> np.ndarray:
        rng = self.data_max - self.data_min
        rng = np.where(rng < 10 * np.finfo(np.float64).eps, 1.0, rng)
        return 1.0 / rng

    @property
    def offset(self) -> np.ndarray:
        return -self.data_min * self.scale

    def _check(self, a: np.ndarray) -> np.ndarray:
        if a.ndim not in (2, 3) or a.shape[-2] != self.data_min.size:
            raise ValueError(f"FTCPScaler: expected (..., {self.data_min.size}, n_cols), got {a.shape}")
        return a

    def transform(self, arrays: np.ndarray) -> np.ndarray:
        """(n, n_rows, n_cols) or (n_rows, n_cols) -> scaled, float32 for float32 input, else float64."""
        a = self._check(np.asarray(arrays))
        out = a.astype(np.float64) * self.scale[:, None] + self.offset[:, None]
        return out.astype(np.float32 if a.dtype == np.float32 else np.float64)

    def inverse_transform(self, arrays: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`transform` (utils.py:56-83), same shapes and dtype rule."""
        a = self._check(np.asarray(arrays))
        out = (a.astype(np.float64) - self.offset[:, None]) / self.scale[:, None]
        return out.astype(np.float32 if a.dtype == np.float32 else np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"data_min": self.data_min.tolist(), "data_max": self.data_max.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FTCPScaler":
        return cls(np.asarray(data["data_min"], dtype=np.float64), np.asarray(data["data_max"], dtype=np.float64))


# ---------------------------------------------------------------------------------------- decode
@dataclass(frozen=True)
class FTCPDecoded:
    """What :func:`decode` made of one matrix: a crystal, or the reason there is none."""

    crystal: Crystal | None
    reason: str | None = None


def _site_elements_default(elements: np.ndarray, occupancy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(site rows, atomic numbers): rows whose maximum is >= 0.05, each with its argmax column's element."""
    peak = occupancy.max(axis=1)
    rows = np.nonzero(peak >= OCCUPANCY_THRESHOLD)[0]
    return rows, elements[np.argmax(occupancy[rows], axis=1)]


def _site_elements_released(elements: np.ndarray, occupancy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sampling.py:76-94 to the letter: entries below their row's maximum and below 0.05 zeroed,
    ceil, dot with the element indices (H = 0), sites up to the last non-zero index, a single H site
    when every index is 0."""
    occ = occupancy.copy()
    occ[occ < occ.max(axis=1, keepdims=True)] = 0.0
    occ[occ < OCCUPANCY_THRESHOLD] = 0.0
    index = np.ceil(occ) @ (elements - 1).astype(np.float64)  # element index per site, 0 = H or empty
    nonzero = np.nonzero(index > 0)[0]
    if nonzero.size == 0:
        return np.array([0]), np.array([1])
    rows = np.arange(nonzero[-1] + 1)
    return rows, index[rows].astype(np.int64) + 1


def _drop_repeats(frac: np.ndarray, tol: float = DUPLICATE_TOL) -> np.ndarray:
    """Indices kept when each site within ``tol`` on every axis (periodically) of an earlier kept one is
    dropped, as ase's ``spacegroup.crystal`` does for P1 (``equivalent_sites``, symprec 1e-3)."""
    kept: list[int] = []
    for i in range(len(frac)):
        if kept:
            d = np.abs(frac[kept] - frac[i])
            if np.any(np.all((d < tol) | (np.abs(d - 1.0) < tol), axis=1)):
                continue
        kept.append(i)
    return np.array(kept, dtype=np.int64)


def decode(array: np.ndarray, layout: FTCPLayout, *, released_formula: bool = False) -> FTCPDecoded:
    """A P1 crystal from one unscaled FTCP matrix (sampling.py:66-107 ``get_info``); never raises.

    Only the real-space blocks are read: the element one-hot of the first ``max_elms`` columns (each
    column's element is the argmax over the 103 rows, sampling.py:68), the occupancy rows (sampling.py:76-83),
    the lattice rows (sampling.py:99-101) and the coordinate rows (sampling.py:104-107).

    Sites: by default each occupancy row whose maximum is at least 0.05 is a site of the element of
    the column holding that maximum (first column on ties), and rows below 0.05 are left out.
    ``released_formula=True`` reproduces the release's arithmetic instead (sampling.py:76-94), whose
    quirks the default avoids: it reads a site's element as ``ceil(occupancy) . element index`` with
    H = index 0, so a hydrogen site cannot be told from an empty one (trailing H sites vanish, empty
    rows before the last site become H), tied maxima add their indices, an entry above 1 doubles its
    index, and an all-empty matrix decodes to one H atom (the default gives a reason instead).

    Then, in both modes: coordinates of those rows wrapped into [0, 1), repeats within 1e-3 dropped
    (ase's ``crystal``, which the release writes its CIFs with, sampling.py:132-135), lattice from the
    a, b, c and alpha, beta, gamma rows.

    Returns:
        :class:`FTCPDecoded` with the crystal, or with the reason: not a numeric array, wrong shape,
        non-finite entries in the blocks read, all zeros, no occupied site, an element index past Lr,
        or an unusable lattice (non-finite, non-positive lengths, angles that close no cell).
    """
    try:
        a = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as err:
        return FTCPDecoded(None, f"not a numeric array: {err}")
    if a.shape != layout.shape:
        return FTCPDecoded(None, f"shape {a.shape}, expected {layout.shape}")
    L = layout
    one_hot = a[L.row_elements : L.row_elements + N_ELEMENTS, : L.max_elms]
    lattice = a[L.row_abc : L.row_angles + 1, :3]
    coords = a[L.row_coords : L.row_coords + L.max_sites, :3]
    occupancy = a[L.row_occupancy : L.row_occupancy + L.max_sites, : L.max_elms]
    if not all(np.all(np.isfinite(block)) for block in (one_hot, lattice, coords, occupancy)):
        return FTCPDecoded(None, "non-finite entries (NaN or inf) in the element, lattice, coordinate or occupancy rows")
    if not np.any(a):
        return FTCPDecoded(None, "empty matrix (all zeros)")
    elements = np.argmax(one_hot, axis=0).astype(np.int64) + 1  # (max_elms,) atomic numbers
    pick = _site_elements_released if released_formula else _site_elements_default
    rows, z = pick(elements, occupancy)
    if rows.size == 0:
        return FTCPDecoded(None, f"no occupied site (every occupancy row's maximum is below {OCCUPANCY_THRESHOLD})")
    if np.any(z > N_ELEMENTS):
        return FTCPDecoded(None, f"element index past Lr ({int(z.max())}) from tied or >1 occupancies")
    lengths, angles = lattice[0], lattice[1]
    problem = lattice_problem(lengths, angles)
    if problem is not None:
        return FTCPDecoded(None, problem)
    frac = _wrap(coords[rows])
    keep = _drop_repeats(frac)
    return FTCPDecoded(Crystal(z[keep], frac[keep], lengths, angles))


def decode_many(arrays: Iterable[np.ndarray], layout: FTCPLayout, *, released_formula: bool = False) -> list[FTCPDecoded]:
    """:func:`decode` of each matrix of (n, n_rows, n_cols) ``arrays``."""
    return [decode(a, layout, released_formula=released_formula) for a in arrays]


__all__ = [
    "FTCPDecoded", "FTCPLayout", "FTCPScaler", "N_ELEMENTS", "N_FEATURES", "N_POINTS", "RELEASE", "cgcnn_table",
    "dataset_limits", "decode", "decode_many", "encode", "encode_many", "reciprocal_points",
]
