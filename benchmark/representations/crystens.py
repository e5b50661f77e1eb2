"""CrysTens: a crystal as a 64 x 64 x 4 image (Alverson et al., Digital Discovery 3, 62, 2024).

Layout (section 3.1, Figs. 1-2; the released ``crys_tens.py`` ``construct_crys_tens``), channel last,
``T`` of shape (64, 64, 4):

* header index ``k = 0..10``: atomic number Z, fractional x, y, z, lattice a, b, c (Å), alpha, beta,
  gamma (degrees), space-group number; index 11 is a zero separator row and column;
* atom ``i`` (``i < 52``, in the crystal's own site order) sits at index ``12 + i``; its header values
  are written to both ``T[k, 12 + i, :]`` and ``T[12 + i, k, :]``, the same in all four channels, so
  each atom's Z, x, y, z appear 8 times and the lattice and space group 8A times (section 3.2);
* pair block ``T[12 + i, 12 + j]``: channel 0 the Euclidean distance between atoms i and j, channels
  1-3 the differences ``x_i - x_j``, ``y_i - y_j``, ``z_i - z_j`` (antisymmetric).

As in the released code, the distance is taken on the raw fractional coordinates (the norm of
``f_i - f_j``, no lattice metric, no minimum image), so it is a unitless number between 0 and
sqrt(3); the paper's "Euclidean distance" does not say which. Fractional coordinates are wrapped
into [0, 1) first (the released code reads them from pymatgen's CIF parser, which wraps them).

Normalisation (:class:`Layout`): each quantity is mapped to [0, 1] by fixed min-max ranges. The
released ``normalize_crys_tens(method="avg_std")`` (crys_tens.py, the ``normalize_avg_std`` table
in ``CrysTens.__init__``, lines 32-45 of the stored version; the same table heads
``generated_crystal_statistics.py``, lines 8-20) computes ``((v - p0) / p1 + p2) / (p2 + p3)`` for
each quantity's four numbers ``(p0, p1, p2, p3)``: an affine map that sends ``p0 - p2 p1`` to 0 and
``p0 + p3 p1`` to 1. :data:`PAPER` holds those end points, derived below from the released four
numbers (:func:`_released_range`), not typed in: Z 1-99, coordinates 0-1, a 1.762-42.66 Å,
b 1.762-45.18 Å, c 2.168-116.2 Å, alpha 2.794-120°, beta 8.427-138.4°, gamma 12.72-120°, space
group 1-230, differences -1..1 (the released ``direction_fix`` shift of 0.9999933 included) and
distance 0-1.655. (The angle minima are the released arithmetic's: its angle entries have p2 = 0,
so their minimum is p0 itself; reading p0 as a standard deviation would not give 59.8°.) Empty
(padding) entries stay 0 in both raw and normalised tensors, as in the release, which normalises
only the entries of atoms that are present. Where the release's pair-block loop sits outside the
atom loop (an indentation slip that normalises one row only), this module normalises the whole
A x A pair block, diagonal included (a zero difference becomes 0.5).

Decoding (section 3.2 and its summary 3.2.1; released ``get_cif``) is :func:`decode`; Tables 1-2's
consistency statistics are :func:`consistency`. Both are defined on the de-normalised ("raw") tensor,
as the released ``generated_crystal_statistics.py`` computes them after ``unnormalize_crysgraph``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from benchmark.crystal import Crystal
from benchmark.crystal import lattice_problem as _lattice_problem

SIZE = 64
"""Height and width of a CrysTens (section 3.1)."""
N_HEADER = 12
"""Header rows/columns: 11 quantities and the zero separator at index 11."""
MAX_ATOMS = SIZE - N_HEADER
"""52 atoms at most (section 3.1)."""
CHANNELS = 4
HEADER = ("Z", "x", "y", "z", "a", "b", "c", "alpha", "beta", "gamma", "space_group")
"""The header quantities in index order k = 0..10."""
SYMPREC = 0.01
"""Space-group tolerance (Å) of :func:`encode`: pymatgen's default, which the release uses through
``Structure.get_space_group_info()`` (crys_tens.py ``from_file``)."""
ATOM_CLUSTERS = 3
"""K of the atomic-number K-means, K = min(3, A): the released ``get_cif(num_atom_clusters=3)``, as
``get_statistics`` calls it; the paper gives no K. A crystal with more than three elements cannot
come out of this decoder (``decode(..., atom_clusters=None)`` rounds without clustering)."""
STOP_TOLERANCE = 0.2
"""Relative difference of the alpha entries at which the atom count stops (released ``get_cif``'s
``ref_percent=0.2``; the paper gives no number)."""


# ---------------------------------------------------------------------------------------- layout
def _released_range(p0: float, p1: float, p2: float, p3: float, shift: float = 0.0) -> tuple[float, float]:
    """The [0, 1] end points of the released ``avg_std`` map ``((v + shift - p0) / p1 + p2) / (p2 + p3)``."""
    return (p0 - p2 * p1 - shift, p0 + p3 * p1 - shift)


# The four numbers per quantity of the released ``normalize_avg_std`` table (crys_tens.py lines 32-45;
# generated_crystal_statistics.py lines 8-20) and its ``direction_fix`` (crys_tens.py line 17).
_DIRECTION_FIX = 0.9999933
_AVG_STD: dict[str, tuple[float, float, float, float]] = {
    "Z": (22.417031299395948, 27.503517675002012, 0.778701530199605, 2.7844790475732646),
    "x": (0.2934632568241515, 0.42520262764739036, 0.6901727264665755, 1.661631491833322),
    "y": (0.2919067377134818, 0.43638668432502087, 0.6689176095393177, 1.6226127447382617),
    "z": (0.29308350406375905, 0.44429446323553035, 0.659660491668988, 1.591076536917126),
    "a": (2.7537991622182245, 6.631296113153595, 0.14950307531158527, 6.018461573238658),
    "b": (3.30605670472346, 6.887269725378788, 0.22413187899920117, 6.0803402458545905),
    "c": (5.797509184209129, 8.88626989936126, 0.4084401245195147, 12.423378095203498),
    "alpha": (2.7943744442379326, 89.96235708184788, 0.0, 1.3028296429486415),
    "beta": (8.426823255100807, 92.73923379010695, 0.0, 1.4017387402522046),
    "gamma": (12.722185599629745, 96.46287050653594, 0.0, 1.1121150950313212),
    "space_group": (76.31186396273776, 116.00356506238859, 0.6492202538967989, 1.3248570072359955),
    "difference": (0.4099350434569409, 0.9999933333333323, 0.4099377763754505, 1.5900622236245516),
    "distance": (0.26288351681625777, 0.646245505143038, 0.4067858340586399, 2.15365474510736),
}


@dataclass(frozen=True)
class Layout:
    """Fixed per-quantity ranges that map raw CrysTens entries to [0, 1] (``(v - lo) / (hi - lo)``).

    One ``(lo, hi)`` pair per header quantity (:data:`HEADER`; x, y and z each have their own) and
    one each for the pair block's coordinate differences (channels 1-3) and distances (channel 0).
    A model stores ``to_dict()`` with its checkpoint and rebuilds the layout with ``from_dict``.
    """

    name: str
    Z: tuple[float, float]
    x: tuple[float, float]
    y: tuple[float, float]
    z: tuple[float, float]
    a: tuple[float, float]
    b: tuple[float, float]
    c: tuple[float, float]
    alpha: tuple[float, float]
    beta: tuple[float, float]
    gamma: tuple[float, float]
    space_group: tuple[float, float]
    difference: tuple[float, float]
    distance: tuple[float, float]

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name == "name":
                continue
            lo, hi = (float(v) for v in getattr(self, f.name))
            if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
                raise ValueError(f"Layout {self.name!r}: range of {f.name} must be finite with hi > lo, got ({lo}, {hi})")
            object.__setattr__(self, f.name, (lo, hi))

    # ---------------------------------------------------------------- arrays
    def header_ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi), each (11,), for the header quantities in index order k = 0..10."""
        lo = np.array([getattr(self, k)[0] for k in HEADER], dtype=np.float64)
        hi = np.array([getattr(self, k)[1] for k in HEADER], dtype=np.float64)
        return lo, hi

    def pair_ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi), each (4,), for the pair block's channels: distance, then the three differences."""
        lo = np.array([self.distance[0]] + [self.difference[0]] * 3, dtype=np.float64)
        hi = np.array([self.distance[1]] + [self.difference[1]] * 3, dtype=np.float64)
        return lo, hi

    # ---------------------------------------------------------------- storage
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"name": ..., "ranges": {quantity: [lo, hi]}}``."""
        return {
            "name": self.name,
            "ranges": {f.name: [float(v) for v in getattr(self, f.name)] for f in fields(self) if f.name != "name"},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Layout":
        """Inverse of :meth:`to_dict`; a missing or unknown quantity is an error."""
        ranges = dict(data["ranges"])
        names = [f.name for f in fields(cls) if f.name != "name"]
        missing = sorted(set(names) - set(ranges))
        unknown = sorted(set(ranges) - set(names))
        if missing or unknown:
            raise ValueError(f"Layout.from_dict: missing {missing}, unknown {unknown}")
        return cls(name=str(data.get("name", "custom")), **{k: (float(ranges[k][0]), float(ranges[k][1])) for k in names})

    @classmethod
    def fit(cls, crystals: Iterable[Crystal], name: str = "fitted", symprec: float = SYMPREC) -> "Layout":
        """Ranges from data (a non-paper option): each quantity's minimum and maximum over ``crystals``.

        Raw tensors are encoded once (space groups with ``symprec``), so this costs one
        :func:`encode` per crystal. Crystals with more than 52 atoms are left out. A quantity with a
        single value (e.g. every alpha 90°) gets the range ``(v - 0.5, v + 0.5)`` so it maps to 0.5.
        """
        lo = np.full(len(HEADER) + 2, np.inf)
        hi = np.full(len(HEADER) + 2, -np.inf)
        seen = 0
        for crystal in crystals:
            if crystal.num_atoms == 0 or crystal.num_atoms > MAX_ATOMS:
                continue
            t = _raw_tensor(crystal, _space_group(crystal, symprec))
            n = crystal.num_atoms
            head = t[:11, N_HEADER : N_HEADER + n, 0]  # (11, n)
            pair = t[N_HEADER : N_HEADER + n, N_HEADER : N_HEADER + n, :]
            values = list(head.min(axis=1)) + [pair[..., 1:].min(), pair[..., 0].min()]
            lo = np.minimum(lo, values)
            values = list(head.max(axis=1)) + [pair[..., 1:].max(), pair[..., 0].max()]
            hi = np.maximum(hi, values)
            seen += 1
        if seen == 0:
            raise ValueError("Layout.fit: no crystal with 1 to 52 atoms")
        same = hi <= lo
        lo[same] -= 0.5
        hi[same] += 0.5
        # Angles start at 0: a padding entry (0 when normalised) must de-normalise to an alpha far
        # from the crystal's, or count_atoms would read the padding as atoms.
        lo[7:10] = 0.0
        keys = list(HEADER) + ["difference", "distance"]
        return cls(name=name, **{k: (float(lo[i]), float(hi[i])) for i, k in enumerate(keys)})


PAPER = Layout(
    name="paper",
    **{k: _released_range(*v) for k, v in _AVG_STD.items() if k != "difference"},
    difference=_released_range(*_AVG_STD["difference"], shift=_DIRECTION_FIX),
)
"""The released ``avg_std`` ranges (module docstring)."""


# ---------------------------------------------------------------------------------------- encode
def _space_group(crystal: Crystal, symprec: float) -> int:
    """pymatgen SpacegroupAnalyzer's international number, or 1 (P1) when the analysis fails."""
    try:
        from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

        return int(SpacegroupAnalyzer(crystal.to_structure(), symprec=symprec).get_space_group_number())
    except Exception:  # noqa: BLE001 - spglib failures of any kind mean "no symmetry found"
        return 1


def _wrap(frac: np.ndarray) -> np.ndarray:
    out = frac - np.floor(frac)
    out[out >= 1.0] = 0.0  # -1e-17 - floor(-1e-17) rounds to 1.0
    return out


def normalise_tensor(raw: np.ndarray, layout: Layout = PAPER, num_atoms: int | None = None) -> np.ndarray:
    """Raw (64, 64, 4) -> normalised, by ``layout``'s ranges.

    With ``num_atoms`` only the entries of those atoms are mapped and the padding stays 0 (how
    :func:`encode` uses it); without, every header strip and pair-block entry is mapped.
    """
    t = np.array(raw, dtype=np.float64, copy=True)
    n = MAX_ATOMS if num_atoms is None else int(num_atoms)
    end = N_HEADER + n
    lo, hi = layout.header_ranges()
    t[:11, N_HEADER:end, :] = (t[:11, N_HEADER:end, :] - lo[:, None, None]) / (hi - lo)[:, None, None]
    t[N_HEADER:end, :11, :] = (t[N_HEADER:end, :11, :] - lo[None, :, None]) / (hi - lo)[None, :, None]
    plo, phi = layout.pair_ranges()
    t[N_HEADER:end, N_HEADER:end, :] = (t[N_HEADER:end, N_HEADER:end, :] - plo) / (phi - plo)
    return t


def to_raw(tensor: np.ndarray, layout: Layout = PAPER) -> np.ndarray:
    """Normalised (64, 64, 4) -> raw units (Z, fractional coordinates, Å, degrees, space-group number).

    Every header strip (rows and columns 0..10 against indices 12..63) and the whole 52 x 52 pair
    block are mapped back, padding included, as the released ``unnormalize_crysgraph`` does for
    generated tensors (its "atom present" test is true wherever the Z entry is not exactly 0).
    The corner ``[:12, :12]`` and the separator are returned unchanged. Returns float64.
    """
    t = np.array(tensor, dtype=np.float64, copy=True)
    lo, hi = layout.header_ranges()
    t[:11, N_HEADER:, :] = t[:11, N_HEADER:, :] * (hi - lo)[:, None, None] + lo[:, None, None]
    t[N_HEADER:, :11, :] = t[N_HEADER:, :11, :] * (hi - lo)[None, :, None] + lo[None, :, None]
    plo, phi = layout.pair_ranges()
    t[N_HEADER:, N_HEADER:, :] = t[N_HEADER:, N_HEADER:, :] * (phi - plo) + plo
    return t


def encode(
    crystal: Crystal, normalise: bool = True, layout: Layout = PAPER, symprec: float = SYMPREC, space_group: int | None = None
) -> np.ndarray:
    """The CrysTens of ``crystal``: float32 (64, 64, 4), channel last (section 3.1; module docstring).

    Args:
        crystal: at most 52 atoms (section 3.1); its own site order is kept.
        normalise: map the entries to [0, 1] with ``layout`` (padding stays 0); False gives raw units.
        layout: the normalisation ranges (:data:`PAPER`, the released ``avg_std`` ones, by default).
        symprec: SpacegroupAnalyzer tolerance in Å for the space-group entry (a failed analysis gives 1).
        space_group: use this number instead of analysing the crystal (e.g. one already known).

    The pair block's channel 0 is the norm of the difference of the raw fractional coordinates, as in
    the released code (not a distance in Å, no minimum image).

    Raises:
        ValueError: no atoms, or more than 52 atoms.
    """
    n = crystal.num_atoms
    if n == 0:
        raise ValueError("CrysTens: the crystal has no atoms")
    if n > MAX_ATOMS:
        raise ValueError(f"CrysTens holds at most {MAX_ATOMS} atoms (section 3.1); {crystal.label or 'this crystal'} has {n}")
    sg = _space_group(crystal, symprec) if space_group is None else int(space_group)
    t = _raw_tensor(crystal, sg)
    if normalise:
        t = normalise_tensor(t, layout, num_atoms=n)
    return t.astype(np.float32)


def _raw_tensor(crystal: Crystal, sg: int) -> np.ndarray:
    """The raw float64 (64, 64, 4) tensor of a crystal of 1 to 52 atoms with space group ``sg``."""
    n = crystal.num_atoms
    frac = _wrap(np.asarray(crystal.frac_coords, dtype=np.float64))
    head = np.empty((n, 11), dtype=np.float64)
    head[:, 0] = crystal.atomic_numbers
    head[:, 1:4] = frac
    head[:, 4:7] = crystal.lengths
    head[:, 7:10] = crystal.angles
    head[:, 10] = sg
    t = np.zeros((SIZE, SIZE, CHANNELS), dtype=np.float64)
    end = N_HEADER + n
    t[:11, N_HEADER:end, :] = head.T[:, :, None]
    t[N_HEADER:end, :11, :] = head[:, :, None]
    diff = frac[:, None, :] - frac[None, :, :]  # (n, n, 3): f_i - f_j
    t[N_HEADER:end, N_HEADER:end, 0] = np.linalg.norm(diff, axis=-1)
    t[N_HEADER:end, N_HEADER:end, 1:] = diff
    return t


def encode_many(
    crystals: Sequence[Crystal], layout: Layout = PAPER, progress: bool = True, normalise: bool = True, symprec: float = SYMPREC
) -> tuple[np.ndarray, list[str]]:
    """Training tensors: (n, 64, 64, 4) float32 for the crystals that fit, and one reason per skipped one.

    A crystal is skipped (never an exception) when :func:`encode` refuses it (no atoms, more than 52
    atoms) or its entries are not finite; each reason names its index and label.
    """
    from tqdm.auto import tqdm

    out: list[np.ndarray] = []
    reasons: list[str] = []
    for i, crystal in enumerate(tqdm(crystals, desc="CrysTens", disable=not progress, leave=False)):
        try:
            t = encode(crystal, normalise=normalise, layout=layout, symprec=symprec)
        except ValueError as err:
            reasons.append(f"crystal {i} ({crystal.label}): {err}")
            continue
        if not np.all(np.isfinite(t)):
            reasons.append(f"crystal {i} ({crystal.label}): non-finite lattice or coordinates")
            continue
        out.append(t)
    array = np.stack(out) if out else np.zeros((0, SIZE, SIZE, CHANNELS), dtype=np.float32)
    return array, reasons


# ---------------------------------------------------------------------------------------- decode
@dataclass(frozen=True)
class Decoded:
    """What :func:`decode` made of one tensor: a crystal, or the reason there is none.

    Attributes:
        crystal: the decoded P1 crystal, or None.
        reason: why there is no crystal, or None.
        num_atoms: A, the atom count read from the tensor (before duplicate sites are dropped), or None.
        space_group: the averaged space-group entry rounded (informative only: the crystal holds all
            its sites in P1, as the released decoder writes it), or None.
    """

    crystal: Crystal | None
    reason: str | None = None
    num_atoms: int | None = None
    space_group: int | None = None


def count_atoms(raw: np.ndarray, tolerance: float = STOP_TOLERANCE) -> int:
    """A, the atom count of a raw tensor (section 3.2), following the released ``get_cif``.

    The alpha entries of column 7, channel 0 (``raw[12 + i, 7, 0]``) are compared with atom 0's;
    counting stops at the first atom whose relative difference is ``>= tolerance``. The release
    compares against atom 0's value throughout (its running average is computed but never used)
    and caps the count at 51 by its loop bounds; here the cap is 52 (section 3.1). Returns 0 when
    atom 0's alpha entry is not a positive finite number.
    """
    alpha = raw[N_HEADER:, 7, 0]
    ref = float(alpha[0])
    if not (math.isfinite(ref) and ref > 0):
        return 0
    rel = np.abs(alpha - ref) / ref
    stops = np.nonzero(~(rel < tolerance))[0]  # NaN entries stop the count too
    return int(stops[0]) if stops.size else MAX_ATOMS


@dataclass(frozen=True)
class _Averaged:
    """The averaged and (anti)symmetrised content of a raw tensor with A atoms (section 3.2)."""

    num_atoms: int
    per_atom: np.ndarray  # (A, 4): Z, x, y, z, mean of 8 copies
    per_atom_var: np.ndarray  # (A, 4): variance of the 8 copies
    globals_: np.ndarray  # (7,): a, b, c, alpha, beta, gamma, space group, mean of 8A copies
    globals_var: np.ndarray  # (7,): variance of the 8A copies
    distance: np.ndarray  # (A, A): symmetrised channel 0
    difference: np.ndarray  # (A, A, 3): antisymmetrised channels 1-3, [i, j] ~ f_i - f_j


def _average(raw: np.ndarray, num_atoms: int) -> _Averaged:
    n = num_atoms
    end = N_HEADER + n
    rows = raw[:11, N_HEADER:end, :]  # (11, A, 4): T[k, 12+i, c]
    cols = np.transpose(raw[N_HEADER:end, :11, :], (1, 0, 2))  # (11, A, 4): T[12+i, k, c]
    both = np.concatenate([rows, cols], axis=2)  # (11, A, 8)
    per_atom = both[:4].mean(axis=2).T
    per_atom_var = both[:4].var(axis=2).T
    glob = both[4:11].reshape(7, -1)  # (7, 8A)
    pair = raw[N_HEADER:end, N_HEADER:end, :]
    distance = (pair[..., 0] + pair[..., 0].T) / 2
    difference = (pair[..., 1:] - np.transpose(pair[..., 1:], (1, 0, 2))) / 2
    return _Averaged(n, per_atom, per_atom_var, glob.mean(axis=1), glob.var(axis=1), distance, difference)


def _relative_estimates(avg: _Averaged) -> np.ndarray:
    """(A, A, 3): ``est[i, j] = f_i - D[i, j]``, atom i's guess of atom j's coordinates (Fig. 3)."""
    own = avg.per_atom[:, 1:4]
    return own[:, None, :] - avg.difference


def combined_coordinates(avg_or_raw: "_Averaged | np.ndarray", own_weight: float | None = None) -> np.ndarray:
    """(A, 3) fractional coordinates from each atom's own entry and the pair block (section 3.2, Fig. 3).

    Atom j has A guesses: its own (x_j, y_j, z_j) and ``f_i - D[i, j]`` from every other atom i.
    ``own_weight=None`` (the default, the paper's Fig. 3e) averages the A guesses equally. A number
    w gives ``w * own + (1 - w) * mean_i(f_i - D[i, j])`` (mean over all i, own included); the
    release uses w = 1 / (A + 12) but averages ``f_j - D[j, i]`` over i, which is the centroid of
    all atoms rather than guesses of atom j (an indexing slip: every atom is pulled towards the
    centroid), so only its weight is offered here.
    """
    avg = avg_or_raw if isinstance(avg_or_raw, _Averaged) else _average(avg_or_raw, count_atoms(avg_or_raw))
    est = _relative_estimates(avg)  # diagonal: own coordinates (D[j, j] = 0 after antisymmetrising)
    mean = est.mean(axis=0)
    if own_weight is None:
        return mean
    return own_weight * avg.per_atom[:, 1:4] + (1.0 - own_weight) * mean


def _kmeans_1d(values: np.ndarray, k: int) -> np.ndarray:
    """Each value replaced by its 1-D K-means centroid (scikit-learn, k-means++, 10 inits, seed 0).

    K is capped at the number of distinct values; with K equal to it every value is its own centroid.
    """
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    distinct = len(np.unique(values))
    if k >= distinct:
        return values.copy()  # one cluster per distinct value: K-means would return the values themselves
    if k <= 1:
        return np.full_like(values, values.mean())
    # One thread: on a few points, starting a thread pool costs 40x the clustering (0.25 s vs 6 ms).
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        km = KMeans(n_clusters=k, n_init=10, random_state=0).fit(values.reshape(-1, 1))
    return km.cluster_centers_[km.labels_, 0]


def decode(
    array: Any,
    layout: Layout = PAPER,
    normalised: bool = True,
    coord_clusters: int | None = None,
    atom_clusters: int | None = ATOM_CLUSTERS,
    own_weight: float | None = None,
    duplicate_tol: float = 0.1,
    stop_tolerance: float = STOP_TOLERANCE,
) -> Decoded:
    """A crystal from one CrysTens (section 3.2 and summary 3.2.1); never raises on bad input.

    Steps: de-normalise with ``layout`` (when ``normalised``); A from the alpha entries
    (:func:`count_atoms`); average the 8 copies of each atom's Z, x, y, z and the 8A copies of the
    lattice and space group; symmetrise channel 0 and antisymmetrise channels 1-3 (``(M - M^T) / 2``;
    the release averages magnitudes and keeps the sign of one entry, which agrees on consistent
    tensors); combine each atom's own coordinates with the pair block's guesses
    (:func:`combined_coordinates`, equal weights as the paper's Fig. 3e by default); 1-D K-means on the
    averaged atomic numbers with K = min(``atom_clusters``, A) (K = 3 is the release's default; the
    paper does not give K), each set to its centroid and rounded (3.2.1; the release rounds before
    clustering too, which only matters for noisy tensors); optional 1-D K-means over all 3A
    coordinate values with ``coord_clusters`` clusters; wrap into [0, 1); drop every site within
    ``duplicate_tol`` Å (periodic) of an earlier kept one (ours: the release keeps all sites);
    build the P1 crystal from the averaged lattice.

    Paper and release disagree on the coordinate clustering: the paper clusters (the notes say
    K = 6; 3.2.1 even says to round the centroids "to the nearest whole number", which would put
    every atom on a cell corner), the release passes ``num_coord_clusters=None``, i.e. one cluster
    per value, no clustering. The default ``None`` follows the release: with K = 6 any crystal with
    more than six distinct coordinate values loses its structure, so a perfect tensor would not
    decode to its crystal. ``atom_clusters=None`` rounds without clustering (more than three
    elements survive).

    Args:
        array: (64, 64, 4) tensor, normalised (``normalised=True``) or raw.
        layout: the normalisation ranges the tensor was made with.

    Returns:
        :class:`Decoded` with the crystal, or with the reason (wrong shape, non-finite entries, an
        empty tensor, no atoms, atomic numbers out of range, an impossible lattice).
    """
    try:
        t = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as err:
        return Decoded(None, f"not a numeric array: {err}")
    if t.shape != (SIZE, SIZE, CHANNELS):
        return Decoded(None, f"shape {t.shape}, expected ({SIZE}, {SIZE}, {CHANNELS}) channel last")
    if not np.all(np.isfinite(t)):
        return Decoded(None, "non-finite entries (NaN or inf)")
    if not np.any(t):
        return Decoded(None, "empty tensor (all zeros)")
    raw = to_raw(t, layout) if normalised else t
    n = count_atoms(raw, stop_tolerance)
    if n == 0:
        return Decoded(None, "no atoms: atom 0's alpha entry is not a positive number")
    avg = _average(raw, n)
    glob = avg.globals_
    lengths, angles = glob[0:3], glob[3:6]
    sg = int(np.clip(np.rint(glob[6]), 1, 230))
    problem = _lattice_problem(lengths, angles)
    if problem is not None:
        return Decoded(None, problem, n, sg)
    z_avg = avg.per_atom[:, 0]
    if atom_clusters is not None and atom_clusters >= 1:
        z_avg = _kmeans_1d(z_avg, min(int(atom_clusters), n))
    z = np.rint(z_avg).astype(np.int64)
    if np.any(z < 1) or np.any(z > 118):
        return Decoded(None, f"atomic numbers outside 1..118: {sorted(set(z[(z < 1) | (z > 118)].tolist()))}", n, sg)
    coords = combined_coordinates(avg, own_weight)
    if coord_clusters is not None and coord_clusters >= 1:
        coords = _kmeans_1d(coords.reshape(-1), int(coord_clusters)).reshape(-1, 3)
    coords = _wrap(coords)
    keep = _drop_duplicates(coords, lengths, angles, duplicate_tol)
    crystal = Crystal(z[keep], coords[keep], lengths, angles)
    return Decoded(crystal, None, n, sg)


def _drop_duplicates(frac: np.ndarray, lengths: np.ndarray, angles: np.ndarray, tol: float) -> np.ndarray:
    """Indices of the sites kept: each site within ``tol`` Å (minimum image) of an earlier kept one is dropped."""
    if len(frac) < 2 or tol <= 0:
        return np.arange(len(frac))
    from pymatgen.core import Lattice

    dist = Lattice.from_parameters(*lengths.tolist(), *angles.tolist()).get_all_distances(frac, frac)
    kept: list[int] = []
    for i in range(len(frac)):
        if all(dist[i, j] >= tol for j in kept):
            kept.append(i)
    return np.array(kept, dtype=np.int64)


# ---------------------------------------------------------------------------------------- Tables 1-2
CONSISTENCY_KEYS = (
    "var_lattice_lengths",
    "var_angles",
    "var_space_group",
    "var_frac_coords",
    "coord_disagreement_per_atom",
    "pairwise_disagreement_per_atom",
    "decode_share",
)


def consistency(tensors: Any, layout: Layout = PAPER, normalised: bool = True, decode_kwargs: Mapping[str, Any] | None = None) -> dict[str, float]:
    """CrysTens' own statistics of generated tensors (Tables 1 and 2), in raw (de-normalised) units.

    ``tensors`` is (n, 64, 64, 4) model output (normalised, as the models emit it, unless
    ``normalised=False``). Each tensor is de-normalised, its A counted (:func:`count_atoms`), and,
    before any averaging:

    * Table 1 (section 3.2: "the variance among these repeated values"): the variance of the 8A
      copies of each of a, b, c (``var_lattice_lengths``, Å²), alpha, beta, gamma
      (``var_angles``, degrees²) and the space group (``var_space_group``), and of the 8 copies of
      each atom's x, y, z (``var_frac_coords``); each the mean over all such variances of all
      tensors ("the variance was averaged over all of them", Table 1 note a). The release's
      ``get_statistics`` takes only x and y (``range(1, 3)``) and only the first four atoms' entries
      of each lattice row (a list/array slip); this module follows the paper's definition.
    * Table 2: ``coord_disagreement_per_atom``, the mean over atoms and axes of
      ``|own - relative|``, where "relative" is the mean of the other atoms' guesses ``f_i - D[i, j]``
      from the antisymmetrised direction graphs (note a: the "absolute" against the "relative"
      position; atoms of single-atom tensors have no relative guess and are left out);
      ``pairwise_disagreement_per_atom``, per tensor ``sum_ij |d(f_i, f_j) - D0[i, j]| / A`` with f the
      combined coordinates (:func:`combined_coordinates`) and D0 the symmetrised channel 0, both on
      raw fractional coordinates (note b), then the mean over tensors (note c).
    * ``decode_share``: the fraction of tensors :func:`decode` turns into a crystal.

    Tensors with non-finite entries or no atoms count against ``decode_share`` only. Keys with no
    scorable tensor are NaN. Also returns ``n_tensors`` and ``n_scored``.
    """
    arr = np.asarray(tensors, dtype=np.float64)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[1:] != (SIZE, SIZE, CHANNELS):
        raise ValueError(f"consistency: expected (n, {SIZE}, {SIZE}, {CHANNELS}), got {arr.shape}")
    lengths_var: list[float] = []
    angles_var: list[float] = []
    sg_var: list[float] = []
    frac_var: list[float] = []
    coord_dis: list[float] = []
    pair_dis: list[float] = []
    decoded = 0
    scored = 0
    kwargs = dict(decode_kwargs or {})
    for t in arr:
        if decode(t, layout=layout, normalised=normalised, **kwargs).crystal is not None:
            decoded += 1
        if not np.all(np.isfinite(t)):
            continue
        raw = to_raw(t, layout) if normalised else t
        n = count_atoms(raw, kwargs.get("stop_tolerance", STOP_TOLERANCE))
        if n == 0:
            continue
        scored += 1
        avg = _average(raw, n)
        lengths_var.extend(avg.globals_var[0:3].tolist())
        angles_var.extend(avg.globals_var[3:6].tolist())
        sg_var.append(float(avg.globals_var[6]))
        frac_var.extend(avg.per_atom_var[:, 1:4].reshape(-1).tolist())
        if n > 1:
            est = _relative_estimates(avg)
            off = ~np.eye(n, dtype=bool)
            relative = np.stack([est[off[:, j], j].mean(axis=0) for j in range(n)])  # (A, 3)
            coord_dis.extend(np.abs(avg.per_atom[:, 1:4] - relative).reshape(-1).tolist())
        final = combined_coordinates(avg, kwargs.get("own_weight"))
        recon = np.linalg.norm(final[:, None, :] - final[None, :, :], axis=-1)
        pair_dis.append(float(np.abs(recon - avg.distance).sum() / n))

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    return {
        "var_lattice_lengths": mean(lengths_var),
        "var_angles": mean(angles_var),
        "var_space_group": mean(sg_var),
        "var_frac_coords": mean(frac_var),
        "coord_disagreement_per_atom": mean(coord_dis),
        "pairwise_disagreement_per_atom": mean(pair_dis),
        "decode_share": decoded / len(arr) if len(arr) else float("nan"),
        "n_tensors": float(len(arr)),
        "n_scored": float(scored),
    }
