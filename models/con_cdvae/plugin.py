"""The ``con_cdvae`` model plugin: the network of :mod:`benchmark.models.con_cdvae.network`, trained and run.

Training is the paper's two steps (Ye et al., section 2.2):

1. **Step one**, ``L_joint = L_CDVAE + alpha L_pre`` (alpha = 3), trained exactly like the ``cdvae``
   plugin (:class:`benchmark.models.cdvae.plugin.CDVAEModel`: Adam 1e-3 with reduce-on-plateau,
   teacher forcing of the lattice, CrystalNN encoder graphs, lattice standardisation); each batch
   carries the crystals' condition values.
2. **Step two**: the encoder is frozen; its means mu of the training crystals are computed once and
   the *default* Prior (conditioned on the model's conditions) and, when the training data has
   every column of the full condition set, the *full* Prior are trained on them (Eq. 14; Adam,
   ``prior_epochs`` passes, ``prior_lr``).

Conditions (``conditions``): the properties the model is conditioned on, as spec strings
(``"band_gap:continuous:-0.5:9.0:20"``, ``"BG_type:discrete:2"``; see
:class:`benchmark.models.con_cdvae.network.ConditionSpec`) or bare column names, completed from the
training data: integer columns with few values become discrete (``BG_type``, ``FM_type``,
``CS_type`` and ``spacegroup.number`` have their fixed class counts), others continuous on the
training range widened by 5 % on each side, with Gaussians every 0.5 units (at least 5; the
released configs use spacing 0.5 for energies and band gaps).

Generation: ``conditional_sample(n, conditions)`` runs the strategy of ``strategy`` (``default`` /
``full`` / ``less``; ``--strategy`` on the command line) with the Predictor filter (``n_candidates``
latents drawn per ``keep`` kept; published 20,000 : 200) and CDVAE's Langevin dynamics. The
training conditions table (needed by ``less``, and to complete conditions the user left out) is
stored in the checkpoint as tensors. ``sample(n)`` (the generation task) is the default strategy
with every condition drawn from training crystals: the model's unconditional distribution.

Presets: ``paper`` is the released MP-20 model (CDVAE's sizes, decoder cutoff 9 Å, a 64-wide level
embedding for the decoder, T = 300 prior, filter 20,000 : 200, formation energy as the condition);
``smoke`` is the small network of ``cdvae``'s smoke preset with a 2,000 : 200 filter, 10 x 10
Langevin steps and a short prior training, for a 2-core CPU.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from benchmark.crystal import Crystal
from benchmark.models.base import CONDITIONAL_SAMPLE, RECONSTRUCT, SAMPLE, Model, SampleBatch
from benchmark.models.cdvae.plugin import CDVAEModel, GraphDataset, collate, empty_crystal, to_crystals
from benchmark.models.con_cdvae.config import ConCDVAEConfig

#: classes of the discrete columns of the MP-20 CSVs (BG_type: zero / non-zero band gap; FM_type:
#: formation energy above / below -0.9 eV/atom; CS_type: crystal system 0..6; space-group numbers
#: 1..230 as class indices, 231 classes as the released code)
KNOWN_CLASSES: dict[str, int] = {"BG_type": 2, "FM_type": 2, "CS_type": 7, "spacegroup.number": 231}


def resolve_condition_specs(names: Sequence[str], crystals: Sequence[Crystal], spacing: float = 0.5) -> tuple[str, ...]:
    """Spec strings for ``names`` (spec strings pass unchanged), completed from the crystals'
    property columns (see the module docstring).

    Raises:
        ValueError: a column is missing from every crystal or has no finite value.
    """
    from benchmark.models.con_cdvae.network import ConditionSpec, continuous, discrete

    out = []
    for name in names:
        if ":" in name:
            out.append(str(ConditionSpec.parse(name)))
            continue
        if name == "num_atoms":
            values = np.array([c.num_atoms for c in crystals], dtype=float)
        else:
            values = np.array([_number(c.properties.get(name)) for c in crystals], dtype=float)
        values = values[np.isfinite(values)]
        if values.size == 0:
            have = sorted({k for c in crystals[:50] for k in c.properties})
            raise ValueError(f"con_cdvae: no training crystal has a numeric {name!r}; columns: {', '.join(have)}")
        if name in KNOWN_CLASSES:
            out.append(discrete(name, KNOWN_CLASSES[name]))
            continue
        lo, hi = float(values.min()), float(values.max())
        pad = 0.05 * max(hi - lo, 1.0)
        lo, hi = math.floor((lo - pad) * 100) / 100, math.ceil((hi + pad) * 100) / 100  # readable grid ends
        out.append(continuous(name, lo, hi, max(5, int(math.ceil((hi - lo) / spacing)) + 1)))
    return tuple(out)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


class ConCDVAEModel(CDVAEModel):
    """Con-CDVAE (Ye et al. 2023): CDVAE conditioned on target properties, with a latent Prior."""

    name = "con_cdvae"
    description = "Con-CDVAE: CDVAE conditioned on target properties, with a latent DDPM prior and Predictor filter (Ye et al. 2023)"
    version = "0.1"
    capabilities = frozenset({SAMPLE, RECONSTRUCT, CONDITIONAL_SAMPLE})
    Config = ConCDVAEConfig
    optimize = Model.optimize  # no property optimisation in Con-CDVAE

    def __init__(self, config: ConCDVAEConfig | None = None) -> None:
        super().__init__(config)
        self.condition_table: dict[str, np.ndarray] = {}
        self._full_prior = False  # decided in fit() from the training columns

    @classmethod
    def network_class(cls) -> type:
        from benchmark.models.con_cdvae.network import ConCDVAE

        return ConCDVAE

    # ------------------------------------------------------------------ conditions
    def _all_specs(self) -> list[Any]:
        """The model's and the full prior's conditions (the columns of the conditions table)."""
        specs = list(self.net.condition_specs)
        names = {s.name for s in specs}
        return specs + [s for s in self.net.full_condition_specs if s.name not in names]

    def collate(self, items: Sequence[dict[str, Any]]) -> Any:
        from benchmark.models.con_cdvae.network import condition_columns

        specs = self._all_specs() if self.net is not None else []
        cols = condition_columns([it["crystal"] for it in items], specs, self.net.config.max_atomic_num) if specs else None
        return collate(items, conditions=cols)

    def _usable(self, crystals: Sequence[Crystal], names: Sequence[str]) -> list[Crystal]:
        """Crystals with a finite value for every named condition."""
        return [c for c in crystals if all(n in ("num_atoms", "formula") or np.isfinite(_number(c.properties.get(n))) for n in names)]

    # ------------------------------------------------------------------ training
    def network_statistics(self, train: Sequence[Crystal]) -> dict[str, Any]:
        """CDVAE's lattice standardisation plus the resolved conditions (``fit`` stores them in the
        config first) and those of the full prior (empty when the data cannot train it)."""
        from benchmark.models.con_cdvae.network import FULL_CONDITIONS

        return {**super().network_statistics(train), "conditions": tuple(self.config.conditions),
                "full_conditions": FULL_CONDITIONS if self._full_prior else ()}

    def fit(self, train: Sequence[Crystal], val: Sequence[Crystal], run_dir: Path, *, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
        from benchmark.models.con_cdvae.network import FULL_CONDITIONS, ConditionSpec

        cfg = self.config
        train = [c for c in train if 0 < c.num_atoms <= cfg.max_atoms]
        specs = resolve_condition_specs(cfg.conditions, train)
        names = [ConditionSpec.parse(s).name for s in specs]
        full_names = [ConditionSpec.parse(s).name for s in FULL_CONDITIONS]
        # the full prior needs every column of the full condition set in (almost) every crystal
        self._full_prior = bool(cfg.full_prior) and len(self._usable(train, full_names)) >= 0.9 * len(train)
        need = names + (full_names if self._full_prior else [])
        dropped = len(train) - len(self._usable(train, need))
        train, val = self._usable(train, need), self._usable(val, need)
        if not train:
            raise ValueError(f"con_cdvae: no training crystal has every condition {need}")
        self.config = dataclasses.replace(cfg, conditions=specs)  # stored resolved in the checkpoint
        summary = super().fit(train, val, run_dir, seed=seed, device=device)
        summary["n_train_without_conditions"] = dropped
        summary["conditions"] = list(specs)
        summary["full_prior"] = self._full_prior
        summary.update(self._fit_priors(train, seed, device))
        return summary

    def _fit_priors(self, train: Sequence[Crystal], seed: int, device: str) -> dict[str, Any]:
        """Step two: the encoder means of the training crystals, then each Prior (Eq. 14)."""
        import torch
        from tqdm.auto import tqdm

        from benchmark.models.con_cdvae.network import condition_columns
        from benchmark.settings import env_flag

        cfg = self.config
        net = self.net.to(device).eval()
        ds = GraphDataset(train, None, (0.0, 1.0), progress=False)
        items = ds.items
        self.condition_table = condition_columns([it["crystal"] for it in items], self._all_specs(), net.config.max_atomic_num)
        mus = []
        with torch.no_grad():
            for k in range(0, len(items), cfg.batch_size):
                mus.append(net.encode_means(self.collate(items[k:k + cfg.batch_size]).to(device)).cpu())
        mu = torch.cat(mus)  # (n, latent)
        conds = {k: torch.as_tensor(v) for k, v in self.condition_table.items()}
        gen = torch.Generator().manual_seed(seed + 1)
        out: dict[str, Any] = {}
        which_list = ["default"] + (["full"] if net.prior_full is not None else [])
        progress = not env_flag("BENCHMARK_NO_PROGRESS")
        for which in which_list:
            prior = net.prior(which).to(device).train()
            names = prior.embedding.names
            opt = torch.optim.Adam(prior.parameters(), lr=cfg.prior_lr)
            curve = []
            for _ in tqdm(range(cfg.prior_epochs), desc=f"prior ({which})", disable=not progress):
                perm = torch.randperm(len(mu), generator=gen)
                total, count = 0.0, 0
                for k in range(0, len(mu), cfg.prior_batch_size):
                    idx = perm[k:k + cfg.prior_batch_size]
                    c = {n: conds[n][idx].to(device) for n in names}
                    c = {n: (v.float() if v.is_floating_point() else v) for n, v in c.items()}
                    loss = prior.loss(mu[idx].to(device), c, gen if device == "cpu" else None)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += loss.item() * len(idx)
                    count += len(idx)
                curve.append(total / max(count, 1))
            prior.eval()
            out[f"prior_{which}_loss_curve"] = {str(k): v for k, v in enumerate(curve)}
        self.net = net.cpu().eval()
        return out

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_extras(self) -> dict[str, Any]:
        """The training crystals' conditions (what ``less`` completes missing conditions from)."""
        import torch

        return {"condition_table": {k: torch.as_tensor(v) for k, v in self.condition_table.items()}}

    def restore_extras(self, data: dict[str, Any]) -> None:
        self.condition_table = {k: v.numpy() for k, v in data.get("condition_table", {}).items()}

    # ------------------------------------------------------------------ capabilities
    def conditional_sample(self, n: int, conditions: Mapping[str, Any], *, seed: int, device: str = "cpu",
                           strategy: str | None = None) -> SampleBatch:
        """``n`` crystals for the target ``conditions`` (name -> value; class labels as indices)."""
        net = self.trained_network(device)
        cfg = self.config
        known = {s.name for s in self._all_specs()}
        unknown = sorted(set(conditions) - known)
        if unknown:
            raise ValueError(f"con_cdvae was not trained on the conditions {unknown}; it knows {sorted(known)}")
        n_candidates, keep = (cfg.n_candidates, cfg.keep) if cfg.n_candidates and cfg.keep else (None, None)
        out = net.conditional_sample(n, dict(conditions), strategy=strategy or cfg.strategy, generator=self.make_generator(seed, device),
                                     n_candidates=n_candidates, keep=keep, n_step_each=cfg.n_step_each, step_lr=cfg.step_lr,
                                     condition_table=self.condition_table or None, tolerance=cfg.less_tolerance)
        return SampleBatch(to_crystals(out), out.get("model_evaluations"))

    def sample(self, n: int, *, seed: int, device: str = "cpu") -> SampleBatch:
        """Unconditional generation: the default strategy with conditions drawn from training crystals."""
        if not self.condition_table:
            raise RuntimeError("con_cdvae: this checkpoint has no training-conditions table to draw conditions from")
        return self.conditional_sample(n, {}, seed=seed, device=device, strategy="default")

    def reconstruct(self, crystals: Sequence[Crystal], *, seed: int, device: str = "cpu") -> list[Crystal]:
        """Reconstruction with each crystal's own condition values; a crystal without them (or
        without a CrystalNN graph) decodes to an empty crystal (invalid, with a reason)."""
        names = [s.name for s in self._all_specs()]
        ok = {id(c) for c in self._usable(crystals, names)}
        usable = [c for c in crystals if id(c) in ok]
        decoded = iter(super().reconstruct(usable, seed=seed, device=device)) if usable else iter(())
        return [next(decoded) if id(c) in ok else empty_crystal(c) for c in crystals]


__all__ = ["ConCDVAEConfig", "ConCDVAEModel", "KNOWN_CLASSES", "resolve_condition_specs"]
