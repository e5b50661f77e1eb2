"""Con-CDVAE, conditional generation of crystals with CDVAE, as a plain ``torch.nn.Module``.

Ye, Weng, Wu, "Con-CDVAE: A method for the conditional generation of
crystal structures" (equation numbers below are that paper's, section 2.2). Details the paper
leaves open are settled with its released code (github cyye001/Con-CDVAE: ``concdvae/pl_modules/
model.py``, ``ConditionModel.py``, ``PreCondition.py``, ``concdvae/pl_prior/model.py``,
``scripts/evaluate_diff.py``, ``scripts/condition_diff_z.py`` and the ``conf/`` files); every such
place says "(code)".

Con-CDVAE keeps CDVAE (:class:`benchmark.models.cdvae.network.CDVAE`: periodic DimeNet++ encoder, the
aggregate heads ``MLP_AGG`` for N, lattice and composition, the GemNet-T score decoder, the noise
scheme and losses of Eqs. 5-7, annealed Langevin generation) and adds three blocks:

* **PropEmb** (Eqs. 8-10, :class:`PropEmb`). A continuous property a is expanded in
  ``n_basis`` Gaussians ``exp(-(a - mu_k)^2 / (2 sigma^2))`` centred on an even grid
  ``mu_k = a_min + k sigma`` with spacing ``sigma = (a_max - a_min) / (n_basis - 1)``, then an MLP
  (Eq. 8; :class:`GaussianBasis`, :class:`ContinuousEmbedding`); as released a value outside the
  grid is expanded as it is (``condition_clamp`` clamps it into ``[a_min, a_max]`` first). A
  discrete property picks a learnable vector per class, then an MLP (Eq. 9;
  :class:`DiscreteEmbedding`). The per-property embeddings are concatenated and mixed by an MLP
  into ``C_prop`` (Eq. 10). Optionally the chemical formula (Eq. 13, :class:`FormulaEmbedding`):
  ``MLP(sum_el n_el v_el)`` with n_el the element fractions and v_el element vectors: CGCNN's fixed
  92-long ``atom_init.json`` vectors (paper; code V1 ``pl_data/dataset.py``: their mean over the
  sites, which is this sum) when the network is given ``element_features``, else learnable ones.
  The paper uses it in the Prior only.
* **Conditioned latent** (Eq. 11): ``z_con = MLP(C_prop ⊕ z)`` (``fc_z_con``, latent -> latent). It
  replaces z everywhere CDVAE uses it after the encoder: the aggregate heads (N, lattice,
  composition, so also the composition used for the type noise) and the decoder (code: both use
  ``z_con``; the paper: "mix[ed] by an MLP before fed into the Decoder"). KL and the Predictor see
  the encoder's z.
* **Predictor** (Eq. 12, :class:`Predictor`): heads on z, an MLP (``predictor_layers`` hidden
  layers of ``predictor_hidden_dim``) per continuous property predicting ``(a - a_min) / (a_max -
  a_min)`` (squared error), a single linear layer per discrete property (cross entropy; code:
  ``ClassConditionPredict``). ``L_pre`` is the sum over properties, ``L_joint = L_CDVAE + alpha
  L_pre`` with ``alpha = 3`` (Step-one training).
* **Prior** (section 2.2.2, :class:`benchmark.models.con_cdvae.prior.LatentPrior`): a conditional
  DDPM on the encoder means, trained in Step two with the rest frozen, with its own ``Prior_Emb``
  (a :class:`PropEmb`). Two of them: the *default* prior on the properties of PropEmb and the *full*
  prior on ``full_conditions`` (crystal system, space group, formation energy, band gap, energy
  above hull, number of atoms, formula: :data:`FULL_CONDITIONS`).

Decoder time input (code): the paper writes the score network as ``Decoder(M_t, z, t)``; the code
concatenates ``ReLU(Linear(sinusoid(j)))`` of the noise level index j (0 = largest sigma) to
``z_con`` before GemNet (``time_emb_dim = 64``), in training and in Langevin dynamics
(``decoder_time_dim``; 0 gives CDVAE's decoder input exactly). The noise-conditional score is
still ``pred / sigma`` as in CDVAE. ``decoder_detach_z`` (code: ``nograd``, off in the released
configuration) builds the decoder's ``z_con`` from a detached z so the decoder loss does not
train the encoder.

Released network details, both on in ``paper`` (off in ``smoke``): ``encoder_tanh`` (code
``smooth``, described there as a work-around for NaNs) puts ``tanh`` on the encoder's pooled
output before ``fc_mu`` / ``fc_var``; ``mlp_batchnorm`` (code ``build_mlp(norm=True)``) puts a
BatchNorm (:class:`benchmark.nn.layers.BatchNorm`) after the first linear layer of the Eq. 11 MLP,
the N / lattice / composition heads and the Predictor's continuous heads; the condition embeddings
and the Prior have none, as released. In evaluation (generation, the Predictor filter, the Prior's
training targets) the running statistics are used, so nothing depends on the batch composition.

Generation (section 2.2.2; :meth:`ConCDVAE.conditional_sample`):

1. Conditions: ``default`` strategy, the default prior with the properties of PropEmb; ``full``,
   the full prior with every full condition given by the caller; ``less``, the full prior with the
   missing conditions completed from training crystals that share the given ones
   (:func:`draw_condition_rows`: discrete conditions equal, continuous ones within
   ``± tolerance / 2 (a_max - a_min)``, tolerance 0.1 as the code's ``tolerate``; each missing
   value from its own matching crystal, the code's default, or with ``use_one`` all from one; a
   given formula is not used for matching, as in the code).
2. ``z`` from the prior (ancestral DDPM sampling).
3. Predictor filter: draw ``n_candidates`` latents, score each against the targets and keep the
   ``keep`` best (published 20000 : 200). Score (code): the sum over the Predictor's properties of
   ``|a_hat - a_tilde|`` (normalised scale) for continuous ones and ``1 - p_hat(a)`` for discrete
   ones; lower is better. Repeated until ``n`` latents are kept.
4. ``z_con = MLP(C_prop ⊕ z)`` with PropEmb of the target values, then CDVAE's annealed Langevin
   dynamics (Algorithm 1 of CDVAE) on ``z_con``.

Choices where the paper and code are silent or where this implementation differs (and why):

* The released composition head runs per atom (its BatchNorm sees every atom), here per crystal.
* The Predictor normalises a continuous property on its condition's grid ``[a_min, a_max]``; the
  released configs give the Predictor its own range, equal to the grid for the MP-20 formation
  energy model (-6..1) and for band gap (-1..9), not for the two-property model (formation energy
  -5..1 against a -6..1 grid, ``pre_mp_format_gap.yaml``).
* The released class heads of the Predictor have dropout before their linear layer (0.4 for
  ``FM_type`` / ``BG_type``, 0.2 for ``CS_type``); here they have none (the MP-20 formation-energy
  model has no class head).
* The number of Gaussians is a hyper-parameter (``n_basis``); the code gives the grid spacing
  instead (``n_rbf = ceil((max - min) / spacing) + 1``). :data:`FULL_CONDITIONS` reproduces the
  code's grids.
* Discrete values are class indices ``0..n_classes - 1`` (space-group numbers 1..230 with 231
  classes, as the code; crystal-system classes 0..6).
* Conditions named ``num_atoms`` and conditions of kind ``formula`` are derived from the batch
  (number of atoms, element fractions) when the batch does not carry them.

Random numbers take an explicit ``generator`` everywhere (same seed, same crystals).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.models.cdvae.network import CDVAE, gemnet_decoder, sample_composition
from benchmark.models.con_cdvae.config import FULL_CONDITIONS, RELEASED_GRIDS, ConCDVAEConfig, grid_spec
from benchmark.models.con_cdvae.prior import LatentPrior
from benchmark.nn.batch import CrystalBatch
from benchmark.nn.diffusion import timestep_embedding
from benchmark.nn.layers import mlp
from benchmark.nn.periodic import (
    cart_to_frac,
    frac_to_cart,
    lattice_from_params,
    min_image_displacement,
    radius_graph_pbc,
    wrap_frac,
)
from benchmark.nn.rng import rand, randn

__all__ = [
    "FULL_CONDITIONS",
    "ConCDVAE",
    "DEFAULT_CONDITIONS",
    "ConditionSpec",
    "ContinuousEmbedding",
    "DiscreteEmbedding",
    "FormulaEmbedding",
    "GaussianBasis",
    "Predictor",
    "PropEmb",
    "complete_conditions",
    "condition_columns",
    "continuous",
    "discrete",
    "draw_condition_rows",
    "formula",
    "formula_fractions",
    "select_best",
]

Strategy = Literal["default", "full", "less"]


# ------------------------------------------------------------------------------ condition specs


@dataclass(frozen=True)
class ConditionSpec:
    """One condition: ``name`` (the crystal property / batch key) and its ``kind``:

    * ``"continuous"``: ``low``/``high`` (a_min, a_max of Eqs. 8 and 12) and ``n_basis`` Gaussians;
    * ``"discrete"``: ``n_classes`` (values are class indices 0..n_classes - 1);
    * ``"formula"``: element fractions (B, max_atomic_num) embedded with ``dim``-long element
      vectors (Eq. 13; 92 for CGCNN's).

    Passed around (network arguments, checkpoints, the config) as the strings of :meth:`__str__`
    (``"band_gap:continuous:-0.5:9.0:20"``, ``"CS_type:discrete:7"``, ``"formula:formula:92"``),
    see :meth:`parse`.
    """

    name: str
    kind: Literal["continuous", "discrete", "formula"]
    low: float = 0.0
    high: float = 1.0
    n_basis: int = 0
    n_classes: int = 0
    dim: int = 0

    def __post_init__(self) -> None:
        if not self.name or ":" in self.name:
            raise ValueError(f"a condition name must be non-empty without ':', got {self.name!r}")
        if self.kind == "continuous":
            if not (math.isfinite(self.low) and math.isfinite(self.high) and self.high > self.low):
                raise ValueError(f"{self.name}: need finite low < high, got {self.low}, {self.high}")
            if self.n_basis < 2:
                raise ValueError(f"{self.name}: need at least 2 Gaussian basis functions")
        elif self.kind == "discrete":
            if self.n_classes < 2:
                raise ValueError(f"{self.name}: need at least 2 classes")
        elif self.kind == "formula":
            if self.dim < 1:
                raise ValueError(f"{self.name}: the element vector size must be positive")
        else:
            raise ValueError(f"{self.name}: kind must be continuous, discrete or formula, got {self.kind!r}")

    @classmethod
    def parse(cls, text: "str | ConditionSpec") -> "ConditionSpec":
        """From ``"name:continuous:low:high:n_basis"``, ``"name:discrete:n_classes"`` or
        ``"name:formula:dim"`` (a :class:`ConditionSpec` is returned as is)."""
        if isinstance(text, ConditionSpec):
            return text
        parts = str(text).split(":")
        try:
            if len(parts) == 5 and parts[1] == "continuous":
                return cls(parts[0], "continuous", low=float(parts[2]), high=float(parts[3]), n_basis=int(parts[4]))
            if len(parts) == 3 and parts[1] == "discrete":
                return cls(parts[0], "discrete", n_classes=int(parts[2]))
            if len(parts) == 3 and parts[1] == "formula":
                return cls(parts[0], "formula", dim=int(parts[2]))
        except ValueError as err:
            raise ValueError(f"bad condition spec {text!r}: {err}") from None
        raise ValueError(f"bad condition spec {text!r}: expected 'name:continuous:low:high:n_basis', "
                         "'name:discrete:n_classes' or 'name:formula:dim'")

    def __str__(self) -> str:
        if self.kind == "continuous":
            return f"{self.name}:continuous:{self.low!r}:{self.high!r}:{self.n_basis}"
        if self.kind == "discrete":
            return f"{self.name}:discrete:{self.n_classes}"
        return f"{self.name}:formula:{self.dim}"

    @property
    def spacing(self) -> float:
        """Grid spacing sigma of Eq. 8 (continuous only)."""
        return (self.high - self.low) / (self.n_basis - 1)


def continuous(name: str, low: float, high: float, n_basis: int) -> str:
    """Spec string of a continuous condition (Eq. 8 grid ``low..high`` with ``n_basis`` Gaussians)."""
    return str(ConditionSpec(name, "continuous", low=float(low), high=float(high), n_basis=int(n_basis)))


def discrete(name: str, n_classes: int) -> str:
    """Spec string of a discrete condition with classes 0..n_classes - 1 (Eq. 9)."""
    return str(ConditionSpec(name, "discrete", n_classes=int(n_classes)))


def formula(name: str = "formula", dim: int = 92) -> str:
    """Spec string of a chemical-formula condition (Eq. 13) with ``dim``-long element vectors."""
    return str(ConditionSpec(name, "formula", dim=int(dim)))


# FULL_CONDITIONS (the full prior's conditions, released order and grids, plus the formula) is
# defined with the config, which names it as the default of ``full_conditions``.

#: Con-CDVAE's default condition: formation energy on -6..1 eV/atom with spacing 0.5 (15 Gaussians;
#: the released MP-20 model, code).
DEFAULT_CONDITIONS: tuple[str, ...] = (grid_spec("formation_energy_per_atom", *RELEASED_GRIDS["formation_energy_per_atom"][:3]),)


def _parse_all(specs: Sequence[str | ConditionSpec]) -> list[ConditionSpec]:
    out = [ConditionSpec.parse(s) for s in specs]
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate condition names in {names}")
    return out


# ------------------------------------------------------------------------------ condition values


def formula_fractions(text: str, max_atomic_num: int = 100) -> np.ndarray:
    """(max_atomic_num,) element fractions of a chemical formula (pymatgen ``Composition``);
    entry Z - 1 is the fraction of element Z."""
    from pymatgen.core import Composition

    out = np.zeros(max_atomic_num)
    for el, frac in Composition(text).fractional_composition.items():
        z = int(el.Z)
        if z > max_atomic_num:
            raise ValueError(f"{text}: element Z={z} beyond max_atomic_num={max_atomic_num}")
        out[z - 1] += float(frac)
    return out


def _fractions_from_types(atom_types: Tensor, batch: Tensor, num_graphs: int, max_atomic_num: int) -> Tensor:
    """(B, A) element fractions of each crystal from its (N,) atom types."""
    one_hot = F.one_hot(atom_types - 1, max_atomic_num).float()  # (N, A)
    counts = one_hot.new_zeros(num_graphs, max_atomic_num).index_add_(0, batch, one_hot)  # (B, A)
    return counts / counts.sum(-1, keepdim=True).clamp_min(1.0)


def _condition_tensor(spec: ConditionSpec, value: Any, n: int, max_atomic_num: int = 100) -> Tensor:
    """Values of one condition as a CPU tensor of ``n`` rows: (n,) float32 (continuous), (n,) long
    (discrete) or (n, max_atomic_num) float32 (formula). A single value (scalar, one formula
    string or one fraction vector) is repeated n times."""
    if spec.kind == "formula":
        if isinstance(value, str):
            value = formula_fractions(value, max_atomic_num)
        elif isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
            value = np.stack([formula_fractions(v, max_atomic_num) for v in value])
        t = torch.as_tensor(np.asarray(value.cpu() if isinstance(value, Tensor) else value, dtype=np.float64))
        t = t.float()
        if t.dim() == 1:
            t = t.unsqueeze(0).expand(n, -1)
        if t.dim() != 2 or t.shape[1] != max_atomic_num or t.shape[0] not in (1, n):
            raise ValueError(f"{spec.name}: expected {max_atomic_num} element fractions per row, got {tuple(t.shape)}")
        t = t.expand(n, -1)
        return t / t.sum(-1, keepdim=True).clamp_min(1e-12)
    t = value.detach().cpu() if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value))
    t = t.reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"{spec.name}: expected 1 or {n} values, got {t.numel()}")
    if spec.kind == "discrete":
        if t.is_floating_point() and bool((t != t.round()).any()):
            raise ValueError(f"{spec.name}: discrete values must be integers (class indices)")
        t = t.long()
        if bool(((t < 0) | (t >= spec.n_classes)).any()):
            raise ValueError(f"{spec.name}: class indices must be in 0..{spec.n_classes - 1}")
        return t.clone()
    return t.float().clone()


def condition_columns(crystals: Sequence[Any], specs: Sequence[str | ConditionSpec],
                      max_atomic_num: int = 100) -> dict[str, np.ndarray]:
    """Per-crystal condition columns from :class:`benchmark.crystal.Crystal` objects.

    Values come from ``crystal.properties[name]``; ``num_atoms`` (when not a property) is the
    number of sites and a ``formula`` condition the element fractions of the sites. The result
    serves both as ``CrystalBatch.from_graphs(..., conditions=...)`` input (index it per batch) and
    as the training-conditions table of the ``less`` strategy (:func:`draw_condition_rows`).

    Returns:
        name -> (n,) float64 (continuous), (n,) int64 (discrete) or (n, max_atomic_num) float64.
    """
    out: dict[str, np.ndarray] = {}
    for spec in _parse_all(specs):
        if spec.kind == "formula":
            rows = []
            for c in crystals:
                z = np.asarray(c.atomic_numbers, dtype=np.int64)
                rows.append(np.bincount(z - 1, minlength=max_atomic_num)[:max_atomic_num] / max(len(z), 1))
            out[spec.name] = np.stack(rows) if rows else np.zeros((0, max_atomic_num))
            continue
        values = []
        for c in crystals:
            if spec.name in c.properties:
                values.append(float(c.properties[spec.name]))
            elif spec.name == "num_atoms":
                values.append(float(c.num_atoms))
            else:
                raise KeyError(f"crystal {c.label!r} has no property {spec.name!r}")
        col = np.asarray(values, dtype=np.float64)
        out[spec.name] = col.round().astype(np.int64) if spec.kind == "discrete" else col
    return out


def draw_condition_rows(table: Mapping[str, Any], given: Mapping[str, Any], specs: Sequence[str | ConditionSpec],
                        n: int, generator: torch.Generator | None = None, tolerance: float = 0.1,
                        use_one: bool = True, max_atomic_num: int = 100) -> dict[str, Tensor]:
    """Complete partial conditions from training crystals that share them (the ``less`` strategy,
    section 2.2.2; matching rules from the code's ``fromtrain_EMB``).

    A training row matches when every given discrete condition is equal and every given
    continuous one lies within ``± tolerance / 2 * (high - low)`` of the given value; given
    formulas are not used for matching (code). Each of the ``n`` output rows takes the given
    values and, for the missing conditions, the values of one matching training row drawn
    uniformly with replacement (``use_one``; otherwise an independent matching row per missing
    condition, the code's default ``use_one='False'``, V1 ``scripts/evaluate_diff.py``).

    Args:
        table: training conditions, name -> n_train values (as :func:`condition_columns`); needs
            the given continuous/discrete names and the missing names.
        given: the caller's conditions (single values), a subset of ``specs``.
        specs: every condition the output must hold.
        n: rows to draw.
        generator: random source of the row indices.
        tolerance: continuous matching window as a fraction of ``high - low`` (code default 0.1).
        use_one: one training row per output row for all missing conditions.
        max_atomic_num: size of formula fraction vectors.

    Returns:
        name -> n values for every spec, as :func:`_condition_tensor` (CPU tensors).

    Raises:
        ValueError: no training crystal matches the given conditions, or a given name is unknown.
        KeyError: the table lacks a needed column.
    """
    parsed = _parse_all(specs)
    by_name = {s.name: s for s in parsed}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        raise ValueError(f"unknown conditions {unknown}; known: {sorted(by_name)}")
    missing = [s for s in parsed if s.name not in given]
    out = {s.name: _condition_tensor(s, given[s.name], n, max_atomic_num) for s in parsed if s.name in given}
    if not missing:
        return out

    def column(name: str) -> np.ndarray:
        if name not in table:
            raise KeyError(f"the training-conditions table has no column {name!r}")
        col = table[name]
        return np.asarray(col.cpu() if isinstance(col, Tensor) else col)

    size = {len(column(s.name)) for s in missing} | {len(column(name)) for name in given
                                                      if by_name[name].kind != "formula"}
    if len(size) > 1:
        raise ValueError(f"table columns have different lengths {sorted(size)}")
    n_train = size.pop() if size else 0
    mask = np.ones(n_train, dtype=bool)
    for name, value in given.items():
        spec = by_name[name]
        if spec.kind == "formula":
            continue  # code: a given formula does not select training rows
        v = _condition_tensor(spec, value, 1, max_atomic_num)
        col = column(name).astype(np.float64)
        if spec.kind == "discrete":
            mask &= col == float(v.item())
        else:
            mask &= np.abs(col - float(v.item())) <= tolerance / 2 * (spec.high - spec.low) + 1e-12
    rows = np.flatnonzero(mask)
    if rows.size == 0:
        raise ValueError(f"no training crystal matches {dict(given)} (continuous window ± {tolerance / 2:g} of "
                         "each range); give fewer conditions or a larger tolerance")
    rows_t = torch.as_tensor(rows, dtype=torch.long)

    def draw() -> Tensor:
        pick = torch.randint(len(rows), (n,), generator=generator, device=generator.device if generator else "cpu")
        return rows_t[pick.cpu()]

    shared = draw() if use_one else None
    for spec in missing:
        idx = shared if shared is not None else draw()
        out[spec.name] = _condition_tensor(spec, column(spec.name)[idx.numpy()], n, max_atomic_num)
    return {s.name: out[s.name] for s in parsed}


def complete_conditions(conditions: Mapping[str, Any], specs: Sequence[str | ConditionSpec], n: int,
                        table: Mapping[str, Any] | None = None, generator: torch.Generator | None = None,
                        tolerance: float = 0.1, use_one: bool = True, max_atomic_num: int = 100) -> dict[str, Tensor]:
    """``n`` rows of every condition in ``specs``: the given values repeated when all are given,
    else completed from ``table`` with :func:`draw_condition_rows`.

    Raises:
        ValueError: conditions are missing and there is no table (or no matching row).
    """
    parsed = _parse_all(specs)
    missing = [s.name for s in parsed if s.name not in conditions]
    if not missing:
        unknown = sorted(set(conditions) - {s.name for s in parsed})
        if unknown:
            raise ValueError(f"unknown conditions {unknown}; known: {[s.name for s in parsed]}")
        return {s.name: _condition_tensor(s, conditions[s.name], n, max_atomic_num) for s in parsed}
    if table is None:
        raise ValueError(f"conditions {missing} are missing; give them or a training-conditions table")
    return draw_condition_rows(table, conditions, parsed, n, generator, tolerance, use_one, max_atomic_num)


def select_best(scores: Tensor, keep: int) -> Tensor:
    """(keep,) indices of the ``keep`` lowest scores, best first (ties: lower index first)."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    return torch.argsort(scores, stable=True)[:keep]


# ------------------------------------------------------------------------------ embeddings


class GaussianBasis(nn.Module):
    """Gaussian expansion of Eq. 8: ``exp(-(a - mu_k)^2 / (2 sigma^2))``, ``mu_k = low + k sigma``,
    k = 0..n_basis - 1, ``sigma = (high - low) / (n_basis - 1)``; with ``clamp`` a is clamped into
    [low, high] first (the released code does not clamp)."""

    def __init__(self, low: float, high: float, n_basis: int, clamp: bool = True) -> None:
        super().__init__()
        if n_basis < 2 or not high > low:
            raise ValueError("need n_basis >= 2 and high > low")
        self.low, self.high = float(low), float(high)
        self.clamp = bool(clamp)
        self.sigma = (self.high - self.low) / (n_basis - 1)
        self.register_buffer("centers", torch.linspace(self.low, self.high, n_basis), persistent=False)

    def forward(self, a: Tensor) -> Tensor:
        """Args: a (B,). Returns (B, n_basis)."""
        a = a.to(self.centers.dtype)
        if self.clamp:
            a = a.clamp(self.low, self.high)
        return torch.exp(-((a.unsqueeze(-1) - self.centers) ** 2) / (2 * self.sigma**2))


class ContinuousEmbedding(nn.Module):
    """``C_con = MLP(GaussianBasis(a))`` (Eq. 8); MLP ``n_basis -> out_dim`` with ``num_layers``
    hidden layers of ``out_dim`` (code: ``ScalarConditionEmbedding``, 64 features, 3 layers)."""

    def __init__(self, spec: ConditionSpec, out_dim: int, num_layers: int, clamp: bool = True) -> None:
        super().__init__()
        self.basis = GaussianBasis(spec.low, spec.high, spec.n_basis, clamp)
        self.mlp = mlp(spec.n_basis, out_dim, num_layers, out_dim)

    def forward(self, a: Tensor) -> Tensor:
        """Args: a (B,). Returns (B, out_dim)."""
        return self.mlp(self.basis(a))


class DiscreteEmbedding(nn.Module):
    """``C_dis = MLP(a^k)`` (Eq. 9): a learnable ``emb_dim`` vector per class, then an MLP
    (code: ``ClassConditionEmbedding``, ``n_emb`` 64, 64 features, 3 layers)."""

    def __init__(self, spec: ConditionSpec, emb_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        self.n_classes = spec.n_classes
        self.vectors = nn.Embedding(spec.n_classes, emb_dim)
        self.mlp = mlp(emb_dim, out_dim, num_layers, out_dim)

    def forward(self, k: Tensor) -> Tensor:
        """Args: k (B,) class indices. Returns (B, out_dim)."""
        k = k.long()
        if k.numel() and (int(k.min()) < 0 or int(k.max()) >= self.n_classes):
            raise ValueError(f"class indices must be in 0..{self.n_classes - 1}")
        return self.mlp(self.vectors(k))


class FormulaEmbedding(nn.Module):
    """``C_che = MLP(sum_el n_el v_el)`` (Eq. 13): element fractions times ``dim``-long element
    vectors, then an MLP.

    Args:
        spec: the formula condition (``dim``: the element vector size).
        max_atomic_num: elements Z = 1..max_atomic_num.
        out_dim, num_layers: the MLP (code: ``VectorialConditionEmbedding``, 64 features, 3 layers).
        element_features: (max_atomic_num, dim) fixed element vectors, row Z - 1 for element Z
            (CGCNN's ``atom_init.json`` in the paper), kept as a buffer outside the state dict (the
            model stores them with its training statistics); None: learnable vectors, a parameter.
    """

    def __init__(self, spec: ConditionSpec, max_atomic_num: int, out_dim: int, num_layers: int,
                 element_features: Tensor | None = None) -> None:
        super().__init__()
        self.max_atomic_num = max_atomic_num
        self.elements: Tensor
        if element_features is None:
            self.elements = nn.Parameter(torch.randn(max_atomic_num, spec.dim) / math.sqrt(spec.dim))  # (A, dim)
        else:
            table = torch.as_tensor(element_features, dtype=torch.float32)
            if tuple(table.shape) != (max_atomic_num, spec.dim):
                raise ValueError(f"{spec.name}: element_features must be ({max_atomic_num}, {spec.dim}), got {tuple(table.shape)}")
            self.register_buffer("elements", table.clone(), persistent=False)  # (A, dim), fixed
        self.mlp = mlp(spec.dim, out_dim, num_layers, out_dim)

    @property
    def fixed(self) -> bool:
        """Whether the element vectors are fixed (given), not learnt."""
        return not isinstance(self.elements, nn.Parameter)

    @torch.no_grad()
    def set_element_features(self, features: Mapping[int, Any] | Tensor, trainable: bool = False) -> None:
        """Load element vectors: a ``{Z: vector}`` mapping (e.g. CGCNN's ``atom_init.json``, as the
        CGCNN oracle's ``load_atom_init`` reads it) or a (A', dim) tensor for Z = 1..A'.
        Elements without a vector get zeros. ``trainable=False`` freezes learnable ones (the values
        stay part of the state dict, the frozen flag does not); fixed vectors stay fixed."""
        table = torch.zeros_like(self.elements)
        if isinstance(features, Tensor):
            rows = min(features.shape[0], self.max_atomic_num)
            table[:rows] = features[:rows].to(table)
        else:
            for z, vec in features.items():
                if 1 <= int(z) <= self.max_atomic_num:
                    table[int(z) - 1] = torch.as_tensor(np.asarray(vec, dtype=np.float64)).to(table)
        self.elements.copy_(table)
        if isinstance(self.elements, nn.Parameter):
            self.elements.requires_grad_(trainable)

    def forward(self, fractions: Tensor) -> Tensor:
        """Args: fractions (B, max_atomic_num). Returns (B, out_dim)."""
        return self.mlp(fractions.to(self.elements.dtype) @ self.elements)


class PropEmb(nn.Module):
    """``C_prop = MLP(C_a1 ⊕ ... ⊕ C_an)`` (Eq. 10) over the embeddings of Eqs. 8, 9 and 13
    (code: ``ConditioningModule``; also the Prior's ``Prior_Emb``).

    Args:
        specs: the conditions (spec strings or :class:`ConditionSpec`).
        feature_dim: per-condition embedding size (code 64).
        num_layers: hidden layers of each per-condition MLP (code 3).
        class_emb_dim: size of the learnable class vectors (code 64).
        out_dim: size of C_prop (code 128).
        mix_layers: hidden layers (width ``out_dim``) of the mixing MLP (code 2).
        max_atomic_num: size of formula fraction vectors.
        clamp: clamp continuous values into their grid (:class:`GaussianBasis`; the code does not).
        element_features: fixed element vectors of formula conditions (:class:`FormulaEmbedding`).
    """

    def __init__(self, specs: Sequence[str | ConditionSpec], feature_dim: int = 64, num_layers: int = 3,
                 class_emb_dim: int = 64, out_dim: int = 128, mix_layers: int = 2, max_atomic_num: int = 100,
                 clamp: bool = True, element_features: Tensor | None = None) -> None:
        super().__init__()
        self.specs = _parse_all(specs)
        if not self.specs:
            raise ValueError("PropEmb needs at least one condition")
        self.max_atomic_num = max_atomic_num
        self.out_dim = out_dim
        embs: list[nn.Module] = []
        for spec in self.specs:
            if spec.kind == "continuous":
                embs.append(ContinuousEmbedding(spec, feature_dim, num_layers, clamp))
            elif spec.kind == "discrete":
                embs.append(DiscreteEmbedding(spec, class_emb_dim, feature_dim, num_layers))
            else:
                embs.append(FormulaEmbedding(spec, max_atomic_num, feature_dim, num_layers, element_features))
        self.embeddings = nn.ModuleList(embs)  # a list: names such as "spacegroup.number" hold dots
        self.mix = mlp(feature_dim * len(embs), out_dim, mix_layers, out_dim)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def forward(self, conditions: Mapping[str, Tensor]) -> Tensor:
        """Args: conditions, name -> (B,) (continuous, discrete) or (B, A) (formula) for every spec.

        Returns:
            (B, out_dim) C_prop.
        """
        missing = [name for name in self.names if name not in conditions]
        if missing:
            raise KeyError(f"missing conditions {missing}")
        device = self.mix[0].weight.device
        parts = [emb(conditions[spec.name].to(device)) for spec, emb in zip(self.specs, self.embeddings)]
        return self.mix(torch.cat(parts, dim=-1))


# ------------------------------------------------------------------------------ predictor


class Predictor(nn.Module):
    """Heads on the latent z predicting each non-formula condition (Eq. 12).

    Continuous: an MLP ``latent -> hidden_dim (num_layers hidden layers) -> 1`` predicting the
    normalised value ``(a - low) / (high - low)`` (code: ``ScalarConditionPredict``, hidden 256,
    2 layers; ``norm``: its released BatchNorm after the first layer). Discrete: one linear layer
    ``latent -> n_classes`` (code: ``ClassConditionPredict``).
    """

    def __init__(self, specs: Sequence[str | ConditionSpec], latent_dim: int, hidden_dim: int = 256,
                 num_layers: int = 2, norm: bool = False) -> None:
        super().__init__()
        self.specs = [s for s in _parse_all(specs) if s.kind != "formula"]
        self.heads = nn.ModuleList(
            mlp(latent_dim, hidden_dim, num_layers, 1, norm) if s.kind == "continuous" else nn.Linear(latent_dim, s.n_classes)
            for s in self.specs
        )

    def forward(self, z: Tensor) -> dict[str, Tensor]:
        """Args: z (B, latent). Returns name -> (B,) normalised prediction or (B, n_classes) logits."""
        out = {}
        for spec, head in zip(self.specs, self.heads):
            pred = head(z)
            out[spec.name] = pred.squeeze(-1) if spec.kind == "continuous" else pred
        return out

    @staticmethod
    def normalise(spec: ConditionSpec, a: Tensor) -> Tensor:
        """``a_tilde = (a - a_min) / (a_max - a_min)`` (Eq. 12)."""
        return (a - spec.low) / (spec.high - spec.low)

    def losses(self, z: Tensor, conditions: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Per-condition terms of L_pre (Eq. 12): squared error on the normalised scale (mean over
        the batch) or cross entropy. Returns name -> scalar."""
        preds = self(z)
        out = {}
        for spec in self.specs:
            target = conditions[spec.name].to(z.device)
            if spec.kind == "continuous":
                out[spec.name] = F.mse_loss(preds[spec.name], self.normalise(spec, target.to(z.dtype)))
            else:
                out[spec.name] = F.cross_entropy(preds[spec.name], target.long())
        return out

    def loss(self, z: Tensor, conditions: Mapping[str, Tensor]) -> Tensor:
        """``L_pre``: the sum of :meth:`losses` (0 without heads)."""
        terms = self.losses(z, conditions)
        return torch.stack(list(terms.values())).sum() if terms else z.new_zeros(())

    @torch.no_grad()
    def score(self, z: Tensor, targets: Mapping[str, Tensor]) -> Tensor:
        """Filter score of each latent against target conditions (code: ``evaluate_diff.py``), lower
        is better: ``sum |a_hat - a_tilde|`` over continuous and ``sum (1 - p_hat(a))`` over discrete
        conditions.

        Args:
            z: (B, latent).
            targets: name -> (B,) or single target values for every Predictor condition.

        Returns:
            (B,).
        """
        preds = self(z)
        score = z.new_zeros(z.shape[0])
        for spec in self.specs:
            target = _condition_tensor(spec, targets[spec.name], z.shape[0]).to(z.device)
            if spec.kind == "continuous":
                score = score + (preds[spec.name] - self.normalise(spec, target.to(z.dtype))).abs()
            else:
                prob = torch.softmax(preds[spec.name], dim=-1).gather(1, target.unsqueeze(-1)).squeeze(-1)
                score = score + (1 - prob)
        return score


# ------------------------------------------------------------------------------------- model


def _tanh_output(module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
    """Forward hook: the module's output through ``tanh`` (the released encoder's ``smooth``)."""
    return torch.tanh(output)


class ConCDVAE(CDVAE):
    """The Con-CDVAE network: CDVAE + PropEmb, Eq. 11 mixing, Predictor and the two Priors (see the
    module docstring).

    Training interface: :meth:`losses` (Step one; optimise :meth:`step_one_parameters`), then
    :meth:`encode_means` + ``self.prior(which).loss`` or :meth:`prior_losses` (Step two; optimise
    :meth:`prior_parameters`). Generation: :meth:`conditional_sample`.

    Args:
        config: the hyper-parameters (:class:`~benchmark.models.con_cdvae.config.ConCDVAEConfig`;
            its ``conditions`` field is what the plugin resolves into ``conditions`` below).
        lattice_mean, lattice_std: the training split's lattice standardisation (as :class:`CDVAE`).
        conditions: the PropEmb / Predictor / default-prior conditions, spec strings or
            :class:`ConditionSpec` (at least one). Default: formation energy on -6..1 eV/atom with
            spacing 0.5 (15 Gaussians; the released MP-20 model, code).
        full_conditions: those of the full prior (empty: no full prior); None: the config's
            ``full_conditions`` (:data:`FULL_CONDITIONS` by default).
        element_features: (max_atomic_num, dim) fixed element vectors of the formula conditions
            (CGCNN's ``atom_init.json``, row Z - 1 for element Z; the plugin reads them with
            ``formula_vectors="cgcnn"``); None: learnable ones.

    The resolved conditions are kept as canonical spec strings in ``conditions`` and
    ``full_conditions`` (plain values, for a ``weights_only`` checkpoint) and parsed in
    ``condition_specs`` and ``full_condition_specs``.
    """

    config: ConCDVAEConfig

    def __init__(self, config: ConCDVAEConfig, lattice_mean: Sequence[float] = (0.0,) * 6,
                 lattice_std: Sequence[float] = (1.0,) * 6,
                 conditions: Sequence[str | ConditionSpec] = DEFAULT_CONDITIONS,
                 full_conditions: Sequence[str | ConditionSpec] | None = None,
                 element_features: Sequence[Sequence[float]] | Tensor | None = None) -> None:
        full_conditions = config.full_conditions if full_conditions is None else full_conditions
        canonical: dict[str, tuple[str, ...]] = {}
        for name, value in (("conditions", conditions), ("full_conditions", full_conditions)):
            value = (value,) if isinstance(value, (str, ConditionSpec)) else value
            canonical[name] = tuple(str(ConditionSpec.parse(v)) for v in value)  # canonical strings
        if not canonical["conditions"]:
            raise ValueError("Con-CDVAE needs at least one condition")
        condition_specs = _parse_all(canonical["conditions"])
        full_condition_specs = _parse_all(canonical["full_conditions"])
        super().__init__(config, lattice_mean, lattice_std)
        self.conditions: tuple[str, ...] = canonical["conditions"]
        self.full_conditions: tuple[str, ...] = canonical["full_conditions"]
        self.condition_specs: list[ConditionSpec] = condition_specs
        self.full_condition_specs: list[ConditionSpec] = full_condition_specs
        cfg = config
        latent = cfg.latent_dim
        self.element_features: Tensor | None = (None if element_features is None
                                                else torch.as_tensor(np.asarray(element_features, dtype=np.float32)))
        if cfg.mlp_batchnorm:  # code: build_mlp(norm=True) for MLP_AGG's heads too
            norm = dict(norm=True)
            self.fc_num_atoms = mlp(latent, cfg.hidden_dim, cfg.fc_num_layers, cfg.max_atoms + 1, **norm)
            self.fc_lattice = mlp(latent, cfg.hidden_dim, cfg.fc_num_layers, 6, **norm)
            self.fc_composition = mlp(latent, cfg.hidden_dim, cfg.fc_num_layers, cfg.max_atomic_num, **norm)
        if cfg.encoder_tanh:  # code ``smooth``: tanh on the pooled encoder output, before fc_mu / fc_var
            self.encoder.register_forward_hook(_tanh_output)
        self.prop_emb = self._prop_emb(self.condition_specs)
        self.fc_z_con = mlp(latent + cfg.prop_dim, cfg.hidden_dim, cfg.fc_num_layers, latent, cfg.mlp_batchnorm)  # Eq. 11
        self.predictor = Predictor(self.condition_specs, latent, cfg.predictor_hidden_dim, cfg.predictor_layers,
                                   cfg.mlp_batchnorm)
        self.time_mlp: nn.Module | None = None
        if cfg.decoder_time_dim > 0:
            # code: z_con ⊕ ReLU(Linear(sinusoid(level))) is the decoder's latent input
            self.time_mlp = nn.Sequential(nn.Linear(cfg.decoder_time_dim, cfg.decoder_time_dim), nn.ReLU())
            self.decoder = gemnet_decoder(cfg, latent + cfg.decoder_time_dim,
                                          cfg.num_fourier if cfg.decoder_fourier else 0)
        self.prior_default = self._prior(self.condition_specs)
        self.prior_full = self._prior(self.full_condition_specs) if self.full_conditions else None

    def _prop_emb(self, specs: Sequence[ConditionSpec]) -> PropEmb:
        cfg = self.config
        return PropEmb(specs, cfg.cond_feature_dim, cfg.cond_layers, cfg.cond_class_emb_dim, cfg.prop_dim,
                       cfg.prop_layers, cfg.max_atomic_num, cfg.condition_clamp, self.element_features)

    def _prior(self, specs: Sequence[ConditionSpec]) -> LatentPrior:
        cfg = self.config
        return LatentPrior(cfg.latent_dim, self._prop_emb(specs), cfg.prop_dim, cfg.prior_timesteps, cfg.prior_beta_start,
                           cfg.prior_beta_end, cfg.prior_schedule, cfg.prior_time_dim, cfg.prior_widths)

    # ------------------------------------------------------------------------------ parameters

    def prior(self, which: Literal["default", "full"]) -> LatentPrior:
        """The default or the full Prior."""
        if which == "default":
            return self.prior_default
        if which == "full":
            if self.prior_full is None:
                raise RuntimeError("this model has no full prior (full_conditions is empty)")
            return self.prior_full
        raise ValueError(f"which must be 'default' or 'full', got {which!r}")

    def step_one_parameters(self) -> list[nn.Parameter]:
        """Parameters trained in Step one (encoder, PropEmb, Eq. 11 MLP, heads, Predictor,
        decoder): everything but the priors."""
        return [p for name, p in self.named_parameters() if not name.startswith(("prior_default.", "prior_full."))]

    def prior_parameters(self, which: Literal["default", "full"]) -> list[nn.Parameter]:
        """Parameters of one Prior (its ``Prior_Emb`` and ``Prior_Decode``), trained in Step two."""
        return list(self.prior(which).parameters())

    # ------------------------------------------------------------------------------ conditions

    def batch_conditions(self, b: CrystalBatch, specs: Sequence[ConditionSpec] | None = None) -> dict[str, Tensor]:
        """The batch's conditions for ``specs`` (default: the model's), each (B,) or (B, A) on the
        batch's device. A ``formula`` condition and ``num_atoms`` are derived from the crystals when
        the batch does not carry them.

        Raises:
            KeyError: a condition is missing from ``b.conditions``.
        """
        specs = self.condition_specs if specs is None else specs
        given = b.conditions or {}
        out: dict[str, Tensor] = {}
        for spec in specs:
            if spec.name in given:
                value = given[spec.name]
            elif spec.kind == "formula":
                value = _fractions_from_types(b.atom_types, b.batch, b.num_graphs, self.config.max_atomic_num)
            elif spec.name == "num_atoms":
                value = b.num_atoms.float()
            else:
                raise KeyError(f"the batch has no condition {spec.name!r}; pass conditions= to CrystalBatch.from_graphs")
            out[spec.name] = _condition_tensor(spec, value, b.num_graphs, self.config.max_atomic_num).to(b.num_atoms.device)
        return out

    def condition_latent(self, z: Tensor, c_prop: Tensor) -> Tensor:
        """``z_con = MLP(C_prop ⊕ z)`` (Eq. 11). Args: z (B, latent), c_prop (B, prop_dim). Returns (B, latent)."""
        return self.fc_z_con(torch.cat([z, c_prop.to(z.dtype)], dim=-1))

    # ------------------------------------------------------------------------------ decoder

    def decode(self, z: Tensor, frac: Tensor, atom_types: Tensor, lattice: Tensor, num_atoms: Tensor,  # type: ignore[override]
               batch: Tensor, level: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """:meth:`CDVAE.decode` with ``z = z_con`` and, with ``decoder_time_dim``, the noise level
        index appended (code).

        Args:
            z: (B, latent) z_con; level: (B,) long noise level indices j (0 = largest sigma),
            needed with ``decoder_time_dim``; the rest as :meth:`CDVAE.decode`.
        """
        return super().decode(self._decoder_latent(z, level), frac, atom_types, lattice, num_atoms, batch)

    def _decoder_latent(self, z: Tensor, level: Tensor | None) -> Tensor:
        """(B, latent [+ decoder_time_dim]) decoder input ``z_con [⊕ time embedding]``."""
        if self.time_mlp is None:
            return z
        if level is None:
            raise ValueError("this decoder is told the noise level: pass level")
        temb = self.time_mlp(timestep_embedding(level, self.config.decoder_time_dim).to(z.dtype))  # (B, time)
        return torch.cat([z, temb], dim=-1)

    # ------------------------------------------------------------------------------ training

    def losses(self, b: CrystalBatch, teacher_forcing: bool,
               generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Step-one loss ``L_joint = L_CDVAE + alpha L_pre`` for one batch.

        Args:
            b: the batch, with ``b.conditions`` holding the model's conditions (see
                :meth:`batch_conditions`).
            teacher_forcing: build the noisy decoder input on the true lattice.
            generator: random source for z, noise levels, type and coordinate noise.

        Returns:
            dict of scalars: CDVAE's ``natom``, ``lattice``, ``composition``, ``coord``, ``type``,
            ``kld`` (and ``property`` with ``predict_property``), ``predictor`` (L_pre, Eq. 12) and
            ``loss`` (L_joint).
        """
        cfg = self.config
        if int(b.num_atoms.max()) > cfg.max_atoms:
            raise ValueError(f"a crystal has {int(b.num_atoms.max())} atoms, more than max_atoms={cfg.max_atoms}")
        conds = self.batch_conditions(b)
        mu, log_var, z = self.encode(b, generator)  # (B, latent) each
        c_prop = self.prop_emb(conds)  # (B, prop_dim) Eq. 10
        z_con = self.condition_latent(z, c_prop)  # (B, latent) Eq. 11
        agg = self.predict_aggregates(z_con, b.num_atoms, b.lengths, b.angles, teacher_forcing)
        lattice = self._decoder_lattice(b, agg, teacher_forcing)  # (B, 3, 3)
        z_dec = self.condition_latent(z.detach(), c_prop) if cfg.decoder_detach_z else z_con
        coord, type_term = self._denoising_losses(b, z_dec, agg, lattice, generator)  # (N,), (N,)
        out = self.assemble_losses(b, agg, mu, log_var, coord, type_term)  # CDVAE's Eq. 9
        out["predictor"] = self.predictor.loss(z, conds)  # Eq. 12 on the encoder's z
        out["loss"] = out["loss"] + cfg.alpha * out["predictor"]
        return out

    def _denoising_losses(self, b: CrystalBatch, z: Tensor, agg: dict[str, Tensor], lattice: Tensor,
                          generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """CDVAE's per-atom coordinate and type terms (each (N,)), the decoder also told the noise
        level (``z`` is z_con)."""
        noisy = self._noisy_structure(b, agg["composition_logits"], lattice, generator)
        pred, type_logits = self.decode(z, noisy["frac"], noisy["atom_types"], lattice, b.num_atoms, b.batch,
                                        noisy["level"])
        target = min_image_displacement(b.frac_coords, noisy["frac"], self.target_lattice(b, lattice), b.num_atoms)  # (N, 3)
        coord = 0.5 * (pred - target / noisy["sigma_x"].unsqueeze(-1)).pow(2).sum(-1)  # (N,)
        type_ce = F.cross_entropy(type_logits, b.atom_types - 1, reduction="none") / noisy["sigma_a"]  # (N,)
        return coord, type_ce

    @torch.no_grad()
    def fit_scale_factors(self, b: CrystalBatch, generator: torch.Generator | None = None) -> dict[str, float]:
        """Fit the GemNet scale factors on one noisy batch built as in training (teacher forcing,
        decoding ``z_con`` of ``mu``); needs the batch's conditions."""
        mu, _ = self._encode_stats(b)
        z_con = self.condition_latent(mu, self.prop_emb(self.batch_conditions(b)))
        agg = self.predict_aggregates(z_con, b.num_atoms, b.lengths, b.angles, teacher_forcing=True)
        lattice = lattice_from_params(b.lengths, b.angles)
        noisy = self._noisy_structure(b, agg["composition_logits"], lattice, generator)
        graph = radius_graph_pbc(noisy["frac"], lattice, b.num_atoms, self.config.decoder_cutoff,
                                 self.config.decoder_max_neighbors, min_distance=self.config.decoder_min_distance)
        return self.decoder.fit_scale_factors(self._decoder_latent(z_con, noisy["level"]), noisy["atom_types"],
                                              b.batch, graph.edge_index, graph.edge_vec, graph.images,
                                              self.node_features(noisy["frac"]))

    @torch.no_grad()
    def encode_means(self, b: CrystalBatch) -> Tensor:
        """(B, latent) encoder means mu, the Prior's training targets (code: ``true_z`` = mu)."""
        return self._encode_stats(b)[0]

    def prior_losses(self, b: CrystalBatch, which: Literal["default", "full"] = "default",
                     generator: torch.Generator | None = None, latents: Tensor | None = None) -> dict[str, Tensor]:
        """Step-two loss (Eq. 14) of one Prior on a batch.

        Args:
            b: the batch, with the Prior's conditions (``formula``/``num_atoms`` derived if absent).
            which: ``"default"`` or ``"full"``.
            generator: random source of t and the noise.
            latents: (B, latent) precomputed :meth:`encode_means` of ``b`` (the encoder is frozen,
                so they can be cached); None encodes the batch.

        Returns:
            ``{"prior": L_prior, "loss": L_prior}``.
        """
        prior = self.prior(which)
        z0 = self.encode_means(b) if latents is None else latents.detach()
        loss = prior.loss(z0, self.batch_conditions(b, prior.embedding.specs), generator)
        return {"prior": loss, "loss": loss}

    # ------------------------------------------------------------------------------ generation

    @torch.no_grad()
    def langevin(self, z: Tensor, num_atoms: Tensor | None = None, lengths: Tensor | None = None,
                 angles: Tensor | None = None, n_step_each: int = 100, step_lr: float = 1e-4,
                 min_sigma: float = 0.0, generator: torch.Generator | None = None,
                 composition_from: Tensor | None = None) -> dict[str, Tensor | int]:
        """CDVAE's annealed Langevin dynamics (:meth:`CDVAE.langevin`, same arguments and output,
        same random draws) on ``z = z_con``, the decoder also told the level index j (code:
        ``time`` counts the levels from 0). With ``decoder_time_dim = 0`` it is
        :meth:`CDVAE.langevin` exactly."""
        agg, n_atoms, lengths, angles, lattice = self.generation_cell(z, num_atoms, lengths, angles)
        num_graphs = z.shape[0]
        total = int(n_atoms.sum())
        batch = torch.repeat_interleave(torch.arange(num_graphs, device=z.device), n_atoms, output_size=total)  # (N,)
        probs = torch.softmax(agg["composition_logits"], dim=-1) if composition_from is None else composition_from
        atom_types = sample_composition(probs.to(z.dtype), n_atoms, generator)  # (N,)
        frac = rand((total, 3), generator, z)  # (N, 3)

        sigmas = self.sigmas.tolist()
        evaluations = 0
        for j, sigma in enumerate(sigmas):
            if sigma < min_sigma:
                break
            alpha = step_lr * (sigma / sigmas[-1]) ** 2
            level = torch.full((num_graphs,), j, dtype=torch.long, device=z.device)  # (B,)
            z_dec = self._decoder_latent(z, level)  # constant over the level's steps
            for _ in range(n_step_each):
                pred, type_logits = super().decode(z_dec, frac, atom_types, lattice, n_atoms, batch)
                noise = randn((total, 3), generator, frac)
                cart = frac_to_cart(frac, lattice, n_atoms) + alpha * (pred / sigma) + math.sqrt(2.0 * alpha) * noise
                frac = wrap_frac(cart_to_frac(cart, lattice, n_atoms))
                atom_types = type_logits.argmax(dim=-1) + 1
                evaluations += 1
        return {"frac_coords": frac, "atom_types": atom_types, "num_atoms": n_atoms, "lengths": lengths,
                "angles": angles, "model_evaluations": evaluations}

    @torch.no_grad()
    def decode_latents(self, z: Tensor, conditions: Mapping[str, Any], generator: torch.Generator | None = None,
                       n_step_each: int = 100, step_lr: float = 1e-4) -> dict[str, Tensor | int]:
        """Decode latents given the model's conditions: ``z_con = MLP(PropEmb(c) ⊕ z)`` (Eq. 11),
        then :meth:`langevin`.

        Args:
            z: (B, latent).
            conditions: the model's conditions (single values or B values each).
        """
        conds = {s.name: _condition_tensor(s, conditions[s.name], z.shape[0], self.config.max_atomic_num)
                 for s in self.condition_specs}
        z_con = self.condition_latent(z, self.prop_emb(conds))
        return self.langevin(z_con, n_step_each=n_step_each, step_lr=step_lr, generator=generator)

    @torch.no_grad()
    def reconstruct(self, b: CrystalBatch, generator: torch.Generator | None, n_step_each: int = 100,
                    step_lr: float = 1e-4, latent: Literal["sample", "mean"] = "sample") -> dict[str, Tensor | int]:
        """Reconstruct crystals: decode ``z_con`` of each crystal's z (:meth:`CDVAE.latent_of`) with
        the batch's own conditions."""
        return self.decode_latents(self.latent_of(b, latent, generator), self.batch_conditions(b), generator, n_step_each, step_lr)

    def sample(self, *args: Any, **kwargs: Any) -> dict[str, Tensor | int]:  # type: ignore[override]
        """Not available: z ~ N(0, I) is not Con-CDVAE's latent distribution; use
        :meth:`conditional_sample` (e.g. strategy ``default`` with conditions drawn from a
        training-conditions table for unconditional-like sampling)."""
        raise NotImplementedError("Con-CDVAE samples with conditional_sample(n, conditions, strategy, ...)")

    def strategy_specs(self, strategy: Strategy) -> tuple[LatentPrior, list[ConditionSpec]]:
        """The prior of a strategy and the conditions a candidate needs: the prior's conditions
        followed by the model's (PropEmb / Predictor) ones not among them."""
        if strategy not in ("default", "full", "less"):
            raise ValueError(f"strategy must be 'default', 'full' or 'less', got {strategy!r}")
        prior = self.prior("default" if strategy == "default" else "full")
        specs = list(prior.embedding.specs)
        names = {s.name for s in specs}
        specs += [s for s in self.condition_specs if s.name not in names]
        return prior, specs

    @torch.no_grad()
    def conditional_sample(self, n: int, conditions: Mapping[str, Any], strategy: Strategy = "default",
                           generator: torch.Generator | None = None, n_candidates: int | None = None,
                           keep: int | None = None, n_step_each: int = 100, step_lr: float = 1e-4,
                           condition_table: Mapping[str, Any] | None = None, tolerance: float = 0.1,
                           use_one: bool = True, prior_steps: int | None = None) -> dict[str, Any]:
        """Generate ``n`` crystals with the given properties (section 2.2.2; see the module docstring).

        Args:
            n: crystals to return.
            conditions: target values, name -> single value (a number, a class index, a formula
                string or fraction vector); with ``full`` every condition of the full prior plus
                the model's, with ``default`` the model's, with ``less`` any subset.
            strategy: ``"default"``, ``"full"`` or ``"less"``.
            generator: random source (rows, prior, Langevin).
            n_candidates, keep: Predictor filter, draw ``n_candidates`` latents and keep the best
                ``keep`` per round until n are kept (published 20000 and 200); None: no filter.
            n_step_each, step_lr: Langevin dynamics (CDVAE: 100, 1e-4).
            condition_table: training conditions (:func:`condition_columns`), needed by ``less``;
                with ``default`` it completes missing model conditions the same way.
            tolerance, use_one: matching of :func:`draw_condition_rows` (code V1 defaults: 0.1 and
                False; the plugin passes ``less_tolerance`` and ``less_use_one``).
            prior_steps: reverse DDPM steps (None: all T).

        Returns:
            :meth:`langevin`'s dict (``frac_coords``, ``atom_types``, ``num_atoms``, ``lengths``,
            ``angles``, ``model_evaluations``) plus ``z`` (n, latent) the kept latents,
            ``filter_score`` (n,) their Predictor scores (lower is better) and ``conditions``
            (name -> n values used).
        """
        if n < 1:
            raise ValueError("n must be at least 1")
        if (n_candidates is None) != (keep is None):
            raise ValueError("give both n_candidates and keep (filter) or neither")
        if keep is not None and n_candidates is not None and not 1 <= keep <= n_candidates:
            raise ValueError("need 1 <= keep <= n_candidates")
        prior, specs = self.strategy_specs(strategy)
        if strategy == "full":
            missing = [s.name for s in specs if s.name not in conditions]
            if missing:
                raise ValueError(f"the full strategy needs every condition; missing {missing} (or use 'less')")
        if strategy == "less" and condition_table is None:
            raise ValueError("the less strategy needs condition_table (training conditions)")
        device = self._device_dtype_like().device
        kept_z: list[Tensor] = []
        kept_scores: list[Tensor] = []
        kept_conds: list[dict[str, Tensor]] = []
        got = 0
        prior_names = prior.embedding.names
        while got < n:
            m = n_candidates if n_candidates is not None else n - got
            conds = complete_conditions(conditions, specs, m, condition_table, generator, tolerance, use_one,
                                        self.config.max_atomic_num)
            conds = {k: v.to(device) for k, v in conds.items()}
            z = prior.sample({k: conds[k] for k in prior_names}, generator, prior_steps)  # (m, latent)
            scores = self.predictor.score(z, conds)  # (m,)
            if keep is not None:
                idx = select_best(scores, min(keep, n - got))
                z, scores, conds = z[idx], scores[idx], {k: v[idx] for k, v in conds.items()}
            kept_z.append(z)
            kept_scores.append(scores)
            kept_conds.append(conds)
            got += z.shape[0]
        z = torch.cat(kept_z)[:n]
        used = {k: torch.cat([c[k] for c in kept_conds])[:n] for k in kept_conds[0]}
        out: dict[str, Any] = dict(self.decode_latents(z, used, generator, n_step_each, step_lr))
        out.update(z=z, filter_score=torch.cat(kept_scores)[:n], conditions=used)
        return out
