"""Con-CDVAE's pretrained CGCNN property models as oracles, their checkpoints read as data.

The Con-CDVAE paper checked its conditional generation with twelve Crystal Graph Convolutional
Neural Networks (CGCNN; T. Xie and J. C. Grossman, "Crystal Graph Convolutional Neural Networks for
an Accurate and Interpretable Prediction of Material Properties", Phys. Rev. Lett. 120, 145301
(2018)) trained with the reference code (github txie-93/cgcnn, as vendored in cyye001/Con-CDVAE
``cgcnn/``). This module rebuilds that network in plain torch and its crystal graph from pymatgen,
so that the published checkpoints load strictly and predict what the reference code predicts.

Oracles (``cgcnn-<training set>-<target>``; the checkpoint is ``<training set>_<target>.pth.tar``):

=========================  ========  ==========================  =======================================
oracle                     trained   property                    output
=========================  ========  ==========================  =======================================
cgcnn-<ds>-fm              <ds>      formation_energy_per_atom   eV/atom (regression, de-normalised)
cgcnn-<ds>-bg              <ds>      band_gap                    eV (regression, de-normalised)
cgcnn-<ds>-Cfm             <ds>      FM_type                     probability of class 1
cgcnn-<ds>-Cbg             <ds>      BG_type                     probability of class 1
=========================  ========  ==========================  =======================================

with ``<ds>`` one of ``mpall20`` (MP-20), ``mpall40`` (MP-40) and ``oqmd`` (OQMD-20).

Classes. The classifiers were trained on the ``FM_type`` / ``BG_type`` columns of Con-CDVAE's
data (the reference ``main.py`` uses the column value as the class index, ``target.long()``, with
an ``NLLLoss`` on the log-softmax outputs). In that data (Con-CDVAE's ``data/mptest``, the rows of
``mp_20_sample``), ``FM_type = 1`` exactly for ``formation_energy_per_atom`` below about -0.9 eV/atom
(class 1: -4.30 .. -1.00 eV/atom; class 0: -0.81 .. +0.03 eV/atom; the README of the checkpoints
gives the threshold -0.9) and ``BG_type = 1`` exactly for a non-zero ``band_gap`` (class 1: 0.13 ..
6.1 eV; class 0: all 0 eV). So the ``Cfm`` oracles return P(formation energy < -0.9 eV/atom) and
the ``Cbg`` oracles P(band gap > 0). Whether the threshold is strict (``<`` or ``<=``) at exactly
-0.9 cannot be told from the data; it does not matter for a probability.

The crystal graph (reference ``cgcnn/data.py``, ``CIFData.__getitem__``):

* atom features: the 92-long vector of ``atom_init.json`` for each site's element;
* neighbours: pymatgen ``Structure.get_all_neighbors(8.0)``, each atom's list sorted by distance
  (Python's stable sort, so ties keep pymatgen's order), the first 12 kept; an atom with fewer than
  12 neighbours is padded with neighbour index 0 (the crystal's first atom) at distance
  ``radius + 1`` = 9 Å, exactly as the reference code pads (it warns; these padded entries are
  *not* masked in the convolution, so they contribute to the sum and must be reproduced);
* bond features: the Gaussian expansion ``exp(-(d - mu_k)^2 / 0.2^2)`` with centres
  ``mu = numpy.arange(0, 8 + 0.2, 0.2)`` (41 values; the reference calls the width ``var``).

Checkpoints are ``torch.save`` pickles (dict with ``epoch``, ``state_dict``, ``best_mae_error``
(a tensor or a numpy scalar), ``optimizer``, ``normalizer`` and ``args``, a dict). They are read
under the project's safe-loading policy, :func:`benchmark.safeload.load`: torch's ``weights_only``
loader with numpy scalars and dtypes allow-listed reads all twelve published files; a checkpoint
that stores ``args`` as an ``argparse.Namespace`` is read by the restricted unpickler, which
makes it an inert record. Any other global (``os.system`` in a crafted file) makes the load fail
with :class:`CheckpointError` before anything runs.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from benchmark.crystal import Crystal
from benchmark.metrics.oracles.base import PREDICT, Oracle
from benchmark.metrics.oracles.cdvae import CheckpointError, OracleWeightsNotFound

__all__ = [
    "CGCNN_ORACLES",
    "CGCNNOracle",
    "ConvLayer",
    "CrystalGraph",
    "CrystalGraphConvNet",
    "FeaturizationError",
    "GaussianDistance",
    "build_model",
    "collate",
    "featurize",
    "load_atom_init",
    "load_checkpoint",
    "neighbour_table",
]

#: CGCNN's graph settings (reference ``CIFData`` defaults, which the checkpoints were trained with)
RADIUS = 8.0
MAX_NUM_NBR = 12
DMIN = 0.0
STEP = 0.2

#: A resource guard, not part of CGCNN: crystals whose expected number of neighbour pairs within
#: the radius (n^2 * 4/3 pi r^3 / volume) exceeds this are not featurised (a generated cell of
#: near-zero volume would otherwise make pymatgen enumerate millions of neighbours).
MAX_NEIGHBOUR_PAIRS = 500_000

_DATASETS = {"mpall20": "MP-20", "mpall40": "MP-40", "oqmd": "OQMD-20"}
#: target -> (property, unit, task)
_TARGETS = {
    "fm": ("formation_energy_per_atom", "eV/atom", "regression"),
    "bg": ("band_gap", "eV", "regression"),
    "Cfm": ("FM_type", "probability", "classification"),
    "Cbg": ("BG_type", "probability", "classification"),
}
#: oracle name -> (checkpoint stem, training set, property, unit, task)
CGCNN_ORACLES: dict[str, tuple[str, str, str, str, str]] = {
    f"cgcnn-{ds}-{target}": (f"{ds}_{target}", label, *_TARGETS[target])
    for ds, label in _DATASETS.items()
    for target in _TARGETS
}


class FeaturizationError(ValueError):
    """A crystal that cannot be turned into a CGCNN graph (the message says why)."""


# ---------------------------------------------------------------------------------- featurisation
class GaussianDistance:
    """The Gaussian expansion of interatomic distances (reference ``GaussianDistance``).

    ``expand(d)[..., k] = exp(-(d - mu_k)^2 / var^2)`` with ``mu = arange(dmin, dmax + step, step)``
    and ``var = step`` unless given; with the defaults 41 centres 0, 0.2, ..., 8 Å and width 0.2 Å.
    """

    def __init__(self, dmin: float = DMIN, dmax: float = RADIUS, step: float = STEP, var: float | None = None) -> None:
        if not (dmin < dmax and dmax - dmin > step):
            raise ValueError(f"need dmin < dmax and dmax - dmin > step (got {dmin}, {dmax}, {step})")
        # np.arange with the same arguments as the reference, so that the centres are bit-identical
        self.filter = np.arange(dmin, dmax + step, step)
        self.var = step if var is None else var

    def expand(self, distances: np.ndarray) -> np.ndarray:
        """(...) distances in Å -> (..., len(filter)) float64 expansion."""
        d = np.asarray(distances, dtype=np.float64)
        return np.exp(-((d[..., np.newaxis] - self.filter) ** 2) / self.var**2)


def load_atom_init(path: str | os.PathLike[str]) -> dict[int, np.ndarray]:
    """``atom_init.json`` (element number as a string -> feature list) as ``{Z: float64 vector}``."""
    with open(path) as f:
        raw = json.load(f)
    table = {int(key): np.asarray(value, dtype=np.float64) for key, value in raw.items()}
    if not table or len({v.shape for v in table.values()}) != 1:
        raise CheckpointError(f"{path}: not an atom_init.json (element -> equal-length feature vectors)")
    return table


@dataclass(frozen=True)
class CrystalGraph:
    """One crystal's CGCNN input.

    Attributes:
        atom_fea: (n, 92) float32 element features.
        nbr_fea: (n, M, 41) float32 Gaussian-expanded neighbour distances.
        nbr_fea_idx: (n, M) int64 neighbour indices within this crystal.
        distances: (n, M) float64 neighbour distances in Å (padding at ``radius + 1``).
        n_short: atoms that had fewer than M neighbours within the radius (and were padded).
    """

    atom_fea: np.ndarray
    nbr_fea: np.ndarray
    nbr_fea_idx: np.ndarray
    distances: np.ndarray
    n_short: int

    @property
    def num_atoms(self) -> int:
        return int(self.atom_fea.shape[0])


def neighbour_table(structure: Any, radius: float = RADIUS, max_num_nbr: int = MAX_NUM_NBR) -> tuple[np.ndarray, np.ndarray, int]:
    """The M = ``max_num_nbr`` nearest neighbours of every site, as the reference ``CIFData`` builds them.

    Returns ``(index (n, M) int64, distance (n, M) float64, n_short)``: per site, pymatgen's
    ``get_all_neighbors(radius)`` sorted by distance with a stable sort and cut at M; sites with
    fewer than M neighbours are padded with index 0 and distance ``radius + 1`` (``n_short`` counts
    them). Periodic images of a site itself are neighbours like any other (their index is the site's).
    """
    n = len(structure)
    index = np.zeros((n, max_num_nbr), dtype=np.int64)
    distance = np.full((n, max_num_nbr), radius + 1.0, dtype=np.float64)
    n_short = 0
    for i, nbrs in enumerate(structure.get_all_neighbors(radius, include_index=True)):
        # sorted() is stable: equal distances keep pymatgen's order, as in the reference code
        nbrs = sorted(nbrs, key=lambda nb: nb.nn_distance)[:max_num_nbr]
        if len(nbrs) < max_num_nbr:
            n_short += 1
        index[i, : len(nbrs)] = [nb.index for nb in nbrs]
        distance[i, : len(nbrs)] = [nb.nn_distance for nb in nbrs]
    return index, distance, n_short


def _structure(crystal: Crystal) -> Any:
    """A pymatgen Structure of a crystal that can be featurised, else :class:`FeaturizationError`."""
    if crystal.num_atoms == 0:
        raise FeaturizationError("no atoms")
    if not (np.all(np.isfinite(crystal.frac_coords)) and np.all(np.isfinite(crystal.lengths)) and np.all(np.isfinite(crystal.angles))):
        raise FeaturizationError("non-finite coordinates or lattice")
    try:
        structure = crystal.to_structure()
    except Exception as exc:  # pymatgen rejects some cells (e.g. impossible angles)
        raise FeaturizationError(f"no pymatgen structure ({type(exc).__name__}: {exc})") from exc
    matrix = structure.lattice.matrix
    volume = abs(float(np.linalg.det(matrix))) if np.all(np.isfinite(matrix)) else float("nan")
    if not volume > 1e-6:
        raise FeaturizationError("degenerate cell (zero or undefined volume)")
    pairs = crystal.num_atoms**2 * (4.0 / 3.0) * math.pi * RADIUS**3 / volume
    if pairs > MAX_NEIGHBOUR_PAIRS:
        raise FeaturizationError(f"about {pairs:.3g} neighbour pairs within {RADIUS} Å (cell too dense); limit {MAX_NEIGHBOUR_PAIRS}")
    return structure


def featurize(
    crystal: Crystal,
    atom_init: dict[int, np.ndarray],
    gdf: GaussianDistance | None = None,
    radius: float = RADIUS,
    max_num_nbr: int = MAX_NUM_NBR,
) -> CrystalGraph:
    """The CGCNN graph of one crystal (see the module docstring); :class:`FeaturizationError` if
    it has no atoms, non-finite coordinates, a degenerate cell, or an element without features."""
    missing = sorted({int(z) for z in crystal.atomic_numbers} - set(atom_init))
    if missing:
        raise FeaturizationError(f"no atom_init.json features for Z = {missing}")
    structure = _structure(crystal)
    gdf = gdf or GaussianDistance(dmin=DMIN, dmax=radius, step=STEP)
    index, distance, n_short = neighbour_table(structure, radius, max_num_nbr)
    # the sites of the Structure are in the crystal's order, so atom features follow atomic_numbers
    atom_fea = np.vstack([atom_init[int(z)] for z in crystal.atomic_numbers])
    # the reference expands in float64 and then converts to torch.Tensor (float32)
    return CrystalGraph(
        atom_fea=atom_fea.astype(np.float32),
        nbr_fea=gdf.expand(distance).astype(np.float32),
        nbr_fea_idx=index,
        distances=distance,
        n_short=n_short,
    )


def collate(graphs: Sequence[CrystalGraph]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """Batch graphs as the reference ``collate_pool`` does: atoms stacked, neighbour indices
    shifted by the atoms before each crystal. Returns ``atom_fea`` (N, 92), ``nbr_fea`` (N, M, 41),
    ``nbr_fea_idx`` (N, M) and the atom count of each crystal (summing to N)."""
    offsets = np.cumsum([0] + [g.num_atoms for g in graphs])
    atom_fea = torch.from_numpy(np.concatenate([g.atom_fea for g in graphs]))
    nbr_fea = torch.from_numpy(np.concatenate([g.nbr_fea for g in graphs]))
    nbr_fea_idx = torch.from_numpy(np.concatenate([g.nbr_fea_idx + off for g, off in zip(graphs, offsets[:-1])]))
    return atom_fea, nbr_fea, nbr_fea_idx, [g.num_atoms for g in graphs]


# ---------------------------------------------------------------------------------- the network
class ConvLayer(nn.Module):
    """One CGCNN convolution: Eq. (5) of Xie & Grossman (2018) with the reference code's batch norms.

    Eq. (5): ``v_i' = v_i + sum_(j,k) sigmoid(z W_f + b_f) * g(z W_s + b_s)`` with
    ``z = v_i (+) v_j (+) u_(i,j)_k`` over the M neighbour slots k of atom i. The reference code
    computes both gates with one linear layer ``fc_full`` (output: filter half, then core half),
    batch-normalises its output (``bn1``) and the neighbour sum (``bn2``), uses softplus as g, and
    applies a softplus after the residual sum as well: ``v_i' = softplus(v_i + bn2(sum ...))``.
    """

    def __init__(self, atom_fea_len: int, nbr_fea_len: int) -> None:
        super().__init__()
        self.atom_fea_len = atom_fea_len
        self.nbr_fea_len = nbr_fea_len
        self.fc_full = nn.Linear(2 * atom_fea_len + nbr_fea_len, 2 * atom_fea_len)
        self.bn1 = nn.BatchNorm1d(2 * atom_fea_len)
        self.bn2 = nn.BatchNorm1d(atom_fea_len)

    def forward(self, atom_in_fea: torch.Tensor, nbr_fea: torch.Tensor, nbr_fea_idx: torch.Tensor) -> torch.Tensor:
        """``atom_in_fea`` (N, A), ``nbr_fea`` (N, M, B), ``nbr_fea_idx`` (N, M) -> (N, A)."""
        n, m = nbr_fea_idx.shape
        a = self.atom_fea_len
        z = torch.cat([atom_in_fea.unsqueeze(1).expand(n, m, a), atom_in_fea[nbr_fea_idx, :], nbr_fea], dim=2)  # (N, M, 2A+B)
        gated = self.bn1(self.fc_full(z).view(-1, 2 * a)).view(n, m, 2 * a)  # batch norm over all (atom, slot) rows
        nbr_filter, nbr_core = gated.chunk(2, dim=2)  # (N, M, A) each
        summed = torch.sum(torch.sigmoid(nbr_filter) * nn.functional.softplus(nbr_core), dim=1)  # (N, A)
        return nn.functional.softplus(atom_in_fea + self.bn2(summed))


class CrystalGraphConvNet(nn.Module):
    """The CGCNN of Xie & Grossman (2018), module names as in the reference ``CrystalGraphConvNet``.

    ``embedding`` (92 -> A), ``convs`` (n_conv :class:`ConvLayer`), mean pooling per crystal (Eq. 6
    of the paper with a mean), softplus, ``conv_to_fc`` (A -> H), softplus, optional ``fcs``
    (n_h - 1 further H -> H layers, each followed by softplus), ``fc_out`` (H -> 1, or H -> 2 with a
    log-softmax for classification). The classifier's dropout (before ``fcs``/``fc_out``) is only
    active in training mode; oracles run in eval mode, where it is the identity.
    """

    def __init__(self, orig_atom_fea_len: int, nbr_fea_len: int, atom_fea_len: int = 64, n_conv: int = 3,
                 h_fea_len: int = 128, n_h: int = 1, classification: bool = False) -> None:
        super().__init__()
        self.classification = classification
        self.embedding = nn.Linear(orig_atom_fea_len, atom_fea_len)
        self.convs = nn.ModuleList([ConvLayer(atom_fea_len, nbr_fea_len) for _ in range(n_conv)])
        self.conv_to_fc = nn.Linear(atom_fea_len, h_fea_len)
        if n_h > 1:
            self.fcs = nn.ModuleList([nn.Linear(h_fea_len, h_fea_len) for _ in range(n_h - 1)])
        self.fc_out = nn.Linear(h_fea_len, 2 if classification else 1)
        self.dropout = nn.Dropout() if classification else None  # p = 0.5 as in the reference

    def forward(self, atom_fea: torch.Tensor, nbr_fea: torch.Tensor, nbr_fea_idx: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
        """``atom_fea`` (N, 92), ``nbr_fea`` (N, M, 41), ``nbr_fea_idx`` (N, M), ``counts``: atoms
        per crystal -> (C, 1) normalised regression output or (C, 2) log-probabilities."""
        if sum(counts) != atom_fea.shape[0]:
            raise ValueError(f"atom counts sum to {sum(counts)}, but there are {atom_fea.shape[0]} atoms")
        softplus = nn.functional.softplus
        x = self.embedding(atom_fea)
        for conv in self.convs:
            x = conv(x, nbr_fea, nbr_fea_idx)
        # per-crystal torch.mean, as the reference's pooling does (not a scatter, to keep its arithmetic)
        crys = torch.cat([part.mean(dim=0, keepdim=True) for part in torch.split(x, list(counts))], dim=0)  # (C, A)
        crys = softplus(self.conv_to_fc(softplus(crys)))  # (C, H)
        if self.dropout is not None:
            crys = self.dropout(crys)
        for fc in getattr(self, "fcs", []):
            crys = softplus(fc(crys))
        out = self.fc_out(crys)
        return torch.log_softmax(out, dim=1) if self.classification else out


# ---------------------------------------------------------------------------------- checkpoints
def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A CGCNN checkpoint read without running pickled code (see the module docstring).

    Raises :class:`CheckpointError` if the file is not a readable torch pickle, references a
    global outside the whitelist, or lacks a ``state_dict`` of tensors.
    """
    from benchmark import safeload

    path = Path(path)
    try:
        obj = safeload.load(path)
    except (safeload.SafeLoadError, OSError) as exc:  # a refused global, a broken or missing file
        problem = exc.problem if isinstance(exc, safeload.SafeLoadError) else f"{type(exc).__name__}: {exc}"
        raise CheckpointError(f"{path}: not a readable CGCNN checkpoint ({problem})") from exc
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: no state_dict of tensors in this checkpoint (got {type(obj).__name__})")
    return obj


def _hyper(args: Any, key: str, default: int) -> int:
    value = args.get(key, default) if isinstance(args, dict) else getattr(args, key, default)
    return int(value)


def build_model(checkpoint: dict[str, Any], path: str | os.PathLike[str] = "?") -> tuple[CrystalGraphConvNet, bool, float, float]:
    """The network of a checkpoint with its weights loaded strictly, in eval mode.

    Sizes come from ``args`` (``atom_fea_len``, ``n_conv``, ``h_fea_len``, ``n_h``) and from the
    weight shapes (92 input features, 41 bond features); the task from ``args['task']`` (checked
    against ``fc_out``). Returns ``(model, classification, mean, std)`` with the regression
    normaliser (mean 0, std 1 for classifiers, whose normaliser is unused).
    """
    state = checkpoint["state_dict"]
    args = checkpoint.get("args") or {}
    try:
        atom_fea_len = _hyper(args, "atom_fea_len", 64)
        orig_len = int(state["embedding.weight"].shape[1])
        nbr_fea_len = int(state["convs.0.fc_full.weight"].shape[1]) - 2 * atom_fea_len
        n_out = int(state["fc_out.weight"].shape[0])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a CGCNN state_dict ({type(exc).__name__}: {exc})") from exc
    task = args.get("task") if isinstance(args, dict) else getattr(args, "task", None)
    classification = (task == "classification") if task is not None else n_out == 2
    if n_out != (2 if classification else 1):
        raise CheckpointError(f"{path}: task {task!r} but fc_out has {n_out} outputs")
    model = CrystalGraphConvNet(orig_len, nbr_fea_len, atom_fea_len=atom_fea_len, n_conv=_hyper(args, "n_conv", 3),
                                h_fea_len=_hyper(args, "h_fea_len", 128), n_h=_hyper(args, "n_h", 1),
                                classification=classification)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: state_dict does not fit the CGCNN ({exc})") from exc
    mean, std = 0.0, 1.0
    if not classification:
        norm = checkpoint.get("normalizer")
        try:
            mean, std = float(norm["mean"]), float(norm["std"])
        except (TypeError, KeyError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: no scalar normalizer mean/std ({exc})") from exc
    return model.eval(), classification, mean, std


# ---------------------------------------------------------------------------------- the oracle
class CGCNNOracle(Oracle):
    """One of Con-CDVAE's twelve pretrained CGCNN models.

    Attributes:
        name: ``cgcnn-<mpall20|mpall40|oqmd>-<fm|bg|Cfm|Cbg>`` (see the module docstring).
        property: ``formation_energy_per_atom``, ``band_gap``, ``FM_type`` or ``BG_type``.
        unit: ``eV/atom``, ``eV``, or ``probability`` (of class 1, for ``FM_type``/``BG_type``).
        dataset: the training set (``MP-20``, ``MP-40`` or ``OQMD-20``).
        task: ``regression`` or ``classification``.
        directory: the folder with ``atom_init.json`` and the checkpoints
            (:func:`benchmark.metrics.oracles.fetch.con_cdvae_dir`).
    """

    capabilities = frozenset({PREDICT})

    def __init__(self, name: str, oracle_dir: str | os.PathLike[str] | None = None, device: str = "cpu") -> None:
        from benchmark.metrics.oracles.fetch import con_cdvae_dir

        if name not in CGCNN_ORACLES:
            raise ValueError(f"unknown CGCNN oracle {name!r}; valid: {', '.join(CGCNN_ORACLES)}")
        self.name = name
        self.stem, self.dataset, self.property, self.unit, self.task = CGCNN_ORACLES[name]
        self.directory = con_cdvae_dir(oracle_dir)
        self.checkpoint_path = self.directory / f"{self.stem}.pth.tar"
        if not self.checkpoint_path.is_file():
            raise OracleWeightsNotFound(
                f"{self.checkpoint_path} not found (the directory has atom_init.json but not this checkpoint). "
                "To get it: run `python -m benchmark oracle fetch con-cdvae`"
            )
        self.device = device
        self._model: CrystalGraphConvNet | None = None
        self._atom_init: dict[int, np.ndarray] | None = None
        self._gdf = GaussianDistance()
        self._mean, self._std = 0.0, 1.0

    def load(self) -> "CGCNNOracle":
        """Read ``atom_init.json`` and the checkpoint (strictly) once, on first use."""
        if self._model is None:
            atom_init = load_atom_init(self.directory / "atom_init.json")
            model, classification, self._mean, self._std = build_model(load_checkpoint(self.checkpoint_path), self.checkpoint_path)
            if classification != (self.task == "classification"):
                raise CheckpointError(f"{self.checkpoint_path}: a {'classifier' if classification else 'regressor'}, expected {self.task}")
            n_in, n_bond = model.embedding.in_features, model.convs[0].nbr_fea_len
            if next(iter(atom_init.values())).shape[0] != n_in or len(self._gdf.filter) != n_bond:
                raise CheckpointError(f"{self.checkpoint_path}: expects {n_in} atom and {n_bond} bond features")
            self._atom_init = atom_init
            self._model = model.to(self.device)
        return self

    @property
    def model(self) -> CrystalGraphConvNet:
        return self.load()._model  # type: ignore[return-value]

    def describe(self) -> str:
        what = f"P({self.property} = 1)" if self.task == "classification" else f"{self.property} ({self.unit})"
        return f"Con-CDVAE CGCNN {self.stem}: {what}, trained on {self.dataset}"

    def featurize(self, crystal: Crystal) -> CrystalGraph:
        """This oracle's graph of one crystal (raises :class:`FeaturizationError`)."""
        return featurize(crystal, self.load()._atom_init, self._gdf)  # type: ignore[arg-type]

    def predict_graphs(self, graphs: Sequence[CrystalGraph], batch_size: int = 256) -> list[float]:
        """Predictions for already built graphs: de-normalised values, or P(class 1)."""
        model = self.model
        out: list[float] = []
        with torch.no_grad():
            for start in range(0, len(graphs), batch_size):
                atom_fea, nbr_fea, nbr_fea_idx, counts = collate(graphs[start:start + batch_size])
                y = model(atom_fea.to(self.device), nbr_fea.to(self.device), nbr_fea_idx.to(self.device), counts).cpu()
                if model.classification:
                    values = torch.exp(y[:, 1])  # the reference's class_eval: exp of the log-softmax
                else:
                    # Normalizer.denorm in float32, as the reference computes it
                    values = y[:, 0] * torch.tensor(self._std, dtype=y.dtype) + torch.tensor(self._mean, dtype=y.dtype)
                out.extend(float(v) for v in values)
        return out

    def problem(self, crystal: Crystal) -> str | None:
        """Why this oracle cannot score ``crystal``: its featuriser's error (None: it can)."""
        try:
            self.featurize(crystal)
        except Exception as exc:
            return f"cannot featurise ({type(exc).__name__}: {str(exc)[:120]})"
        return None

    def predict(self, crystals: Sequence[Crystal], *, progress: bool = True, n_jobs: int | None = None, cache_key: str | None = None,
                batch_size: int = 256) -> list[float | None]:
        """Prediction per crystal, in input order (eV/atom, eV, or the probability of class 1);
        None for a crystal that cannot be featurised (see :func:`featurize`) or a non-finite output.

        Atoms with fewer than 12 neighbours within 8 Å are padded as the reference code pads them;
        one RuntimeWarning per call says how many crystals had such atoms. (Graphs are built in
        this process and not cached: ``n_jobs`` and ``cache_key`` do not apply.)
        """
        from tqdm.auto import tqdm

        self.load()
        graphs: list[CrystalGraph | None] = []
        short = 0
        for crystal in tqdm(crystals, desc=f"{self.name} graphs", unit="crystal", leave=False, disable=not progress):
            try:
                graph = self.featurize(crystal) if isinstance(crystal, Crystal) else None
            except FeaturizationError:
                graph = None
            except Exception:  # pymatgen failing on an unphysical sample: no prediction for it
                graph = None
            graphs.append(graph)
            short += bool(graph is not None and graph.n_short)
        if short:
            warnings.warn(f"{self.name}: {short} of {len(crystals)} crystals have atoms with fewer than {MAX_NUM_NBR} neighbours "
                          f"within {RADIUS} Å; padded as CGCNN pads them (index 0, distance {RADIUS + 1} Å)", RuntimeWarning, stacklevel=2)
        ok = [k for k, g in enumerate(graphs) if g is not None]
        preds = self.predict_graphs([graphs[k] for k in ok], batch_size=batch_size)  # type: ignore[misc]
        result: list[float | None] = [None] * len(crystals)
        for k, p in zip(ok, preds):
            result[k] = p if math.isfinite(p) else None
        return result

    def __repr__(self) -> str:
        return f"CGCNNOracle({self.name!r}, property={self.property!r}, unit={self.unit!r}, checkpoint='{self.checkpoint_path}')"
