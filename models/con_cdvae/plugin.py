"""The ``con_cdvae`` model plugin: the network of :mod:`benchmark.models.con_cdvae.network`, trained and run.

Training is the paper's two steps (Ye et al., section 2.2), both in the project's one Lightning
loop (:func:`benchmark.training.train_module`: seeded, checkpointed every epoch, resumed after a
kill, the best-validation weights kept):

1. **Step one**, ``L_joint = L_CDVAE + alpha L_pre`` (alpha = 3), trained exactly like the ``cdvae``
   plugin (:class:`benchmark.models.cdvae.plugin.CDVAEModel`: Adam with reduce-on-plateau on the
   validation loss ``10 coord + type`` computed without teacher forcing, teacher forcing of the
   lattice through epoch ``teacher_forcing_max_epoch`` inclusive, clipping, CrystalNN encoder
   graphs, lattice standardisation); each batch carries the crystals' condition values. In
   ``run_dir``.
2. **Step two**: the encoder is frozen; its means mu of the training (and validation) crystals
   are computed once and the *default* Prior (conditioned on the model's conditions) and, when
   the training data has the full condition set, the *full* Prior are trained on them (Eq. 14;
   Adam ``prior_lr``, reduce-on-plateau ``prior_lr_factor`` / ``prior_lr_patience`` down to
   ``prior_min_lr`` on the validation loss, clipping ``prior_gradient_clip_val``,
   ``prior_epochs``, the best-validation weights kept; the released ``run_prior.py`` with
   ``conf/train/prior_default.yaml`` and ``conf/optim/prior_default.yaml``). In
   ``run_dir/prior_default`` and ``run_dir/prior_full``; a fit interrupted during step two
   finds step one finished and resumes the prior it was training.

Conditions (``conditions``): the properties the model is conditioned on, as spec strings
(``"band_gap:continuous:-0.5:9.0:20"``, ``"BG_type:discrete:2"``; see
:class:`benchmark.models.con_cdvae.network.ConditionSpec`) or bare column names, completed by
:func:`resolve_condition_specs`: with ``condition_grids="released"`` (``paper``) a property the
release conditions on gets the released grid (:data:`~benchmark.models.con_cdvae.config.RELEASED_GRIDS`:
formation energy -6..1 eV/atom and band gap -1..9 eV every 0.5, energy above hull -0.01..0.09 every
0.01, number of atoms 0..20 every 1); a class column its class count (``BG_type``, ``FM_type``,
``CS_type`` and ``spacegroup.number`` have their fixed counts); any other column a grid on the
training range widened by 5 % on each side, with Gaussians every 0.5 units (at least 5), which
``condition_grids="data"`` (``smoke``) uses for every continuous column.

The full Prior (strategies ``full`` and ``less``) is trained on ``full_conditions`` when at least
90 % of the training crystals have all of them (the others then leave step one too). Otherwise
``fit`` stops before any training when the config's ``strategy`` is ``full`` or ``less``, naming
the missing properties; with ``default`` the model is trained without it and the fit summary says
why (``full_prior_skipped``). A formula condition uses CGCNN's fixed 92-long element vectors with
``formula_vectors="cgcnn"`` (:func:`cgcnn_element_vectors`), read before any training and stored
in the checkpoint with the training statistics.

Generation: ``conditional_sample(n, conditions)`` runs the strategy of ``strategy`` (``default`` /
``full`` / ``less``; ``--strategy`` on the command line) with the Predictor filter (``n_candidates``
latents drawn per ``keep`` kept; published 20,000 : 200) and CDVAE's Langevin dynamics. The
training conditions table (needed by ``less``, and to complete conditions the user left out) is
stored in the checkpoint as tensors. ``sample(n)`` (the generation task) is the default strategy
with every condition drawn from training crystals: the model's unconditional distribution.

Presets: ``paper`` is the released MP-20 model (:data:`~benchmark.models.con_cdvae.config.PUBLISHED`);
``smoke`` is the small network of ``cdvae``'s smoke preset with a 2,000 : 200 filter, 10 x 10
Langevin steps, a short prior training and this project's earlier choices, for a 2-core CPU.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from benchmark.crystal import Crystal
from benchmark.elements import ATOM_INIT, ATOM_INIT_DIR, ATOM_INIT_SHA256  # noqa: F401 - re-exported
from benchmark.models.base import CONDITIONAL_SAMPLE, RECONSTRUCT, SAMPLE, Model, SampleBatch
from benchmark.models.cdvae.plugin import CDVAEModel, GraphDataset, collate, empty_crystal, to_crystals
from benchmark.models.con_cdvae.config import RELEASED_GRIDS, ConCDVAEConfig, grid_spec

#: classes of the discrete columns of the MP-20 CSVs (BG_type: zero / non-zero band gap; FM_type:
#: formation energy above / below -0.9 eV/atom; CS_type: crystal system 0..6; space-group numbers
#: 1..230 as class indices, 231 classes as the released code)
KNOWN_CLASSES: dict[str, int] = {"BG_type": 2, "FM_type": 2, "CS_type": 7, "spacegroup.number": 231}

#: the full prior is trained when at least this fraction of the training crystals has every one of
#: its properties (the others leave step one too, so that one model serves all strategies)
FULL_PRIOR_MIN_FRACTION = 0.9

# CGCNN's element vectors as Con-CDVAE ships and reads them (``cgcnn/data/mptest/atom_init.json``
# and ``data/mp4conz/atom_init.json`` at 0c35a16, the same file): ATOM_INIT_DIR / ATOM_INIT under an
# oracle directory (``oracle fetch con-cdvae`` puts it there), pinned by ATOM_INIT_SHA256; read by
# the core's benchmark.elements (imported above), which the FTCP representation shares.


def resolve_condition_specs(names: Sequence[str], crystals: Sequence[Crystal], grids: str = "released",
                            spacing: float = 0.5) -> tuple[str, ...]:
    """Spec strings for ``names`` (spec strings pass unchanged), completed as the module docstring
    says: ``grids="released"`` gives a property of :data:`RELEASED_GRIDS` its released grid,
    ``"data"`` takes every continuous grid from the crystals' values.

    Raises:
        ValueError: a column is missing from every crystal or has no finite value, or ``grids`` is unknown.
    """
    from benchmark.models.con_cdvae.network import ConditionSpec, continuous, discrete

    if grids not in ("released", "data"):
        raise ValueError(f"grids must be 'released' or 'data', got {grids!r}")
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
        if grids == "released" and name in RELEASED_GRIDS:
            out.append(grid_spec(name, *RELEASED_GRIDS[name][:3]))
            continue
        lo, hi = float(values.min()), float(values.max())
        pad = 0.05 * max(hi - lo, 1.0)
        lo, hi = math.floor((lo - pad) * 100) / 100, math.ceil((hi + pad) * 100) / 100  # readable grid ends
        out.append(continuous(name, lo, hi, max(5, int(math.ceil((hi - lo) / spacing)) + 1)))
    return tuple(out)


def cgcnn_element_vectors(max_atomic_num: int = 100, dim: int = 92, path: str | Path | None = None) -> list[list[float]]:
    """CGCNN's element vectors (``atom_init.json``: element number -> ``dim`` numbers) as a
    ``max_atomic_num`` x ``dim`` table, row Z - 1 for element Z (zeros for an element the file
    lacks), for the formula embedding (Eq. 13).

    The file is the one the Con-CDVAE oracles read: ``path``, else ``con_cdvae_cgcnn/atom_init.json``
    in the oracle directories (:func:`benchmark.settings.oracle_dirs`: ``BENCHMARK_ORACLE_DIR``, then
    the cache ``python -m benchmark oracle fetch con-cdvae`` fills), checked against its pinned
    sha256 (:data:`ATOM_INIT_SHA256`). It is not copied into the project (the files' licence note
    asks users to download them from the pinned commit).

    Raises:
        FileNotFoundError: no such file, with what to do.
        ValueError: the file's hash or shape is not the pinned one.
    """
    from benchmark.elements import atom_init_candidates, find_atom_init, read_atom_init

    if path is None:
        path = find_atom_init()
        if path is None:
            raise FileNotFoundError(
                "con_cdvae: the formula embedding uses CGCNN's element vectors (atom_init.json, formula_vectors=cgcnn), "
                f"not found at {', '.join(str(p) for p in atom_init_candidates())}. Get them with `python -m benchmark "
                "oracle fetch con-cdvae` (or set BENCHMARK_ORACLE_DIR / --oracle-dir to a directory holding con_cdvae_cgcnn/), "
                "or train learnable vectors with --set model.formula_vectors=learned")
    table = [[0.0] * dim for _ in range(max_atomic_num)]
    for z, vec in read_atom_init(path, dim).items():
        if 1 <= z <= max_atomic_num:
            table[z - 1] = vec.tolist()
    return table


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

    @staticmethod
    def _has(crystal: Crystal, name: str) -> bool:
        return name in ("num_atoms", "formula") or bool(np.isfinite(_number(crystal.properties.get(name))))

    def _usable(self, crystals: Sequence[Crystal], names: Sequence[str]) -> list[Crystal]:
        """Crystals with a finite value for every named condition (``num_atoms`` and ``formula``
        come from the sites)."""
        return [c for c in crystals if all(self._has(c, n) for n in names)]

    def full_prior_plan(self, train: Sequence[Crystal]) -> tuple[bool, str | None]:
        """Whether ``fit`` trains the full prior on ``train``, and if not why: it is switched off,
        or fewer than :data:`FULL_PRIOR_MIN_FRACTION` of the crystals have every property of
        ``full_conditions`` (the reason names the missing ones with their counts)."""
        from benchmark.models.con_cdvae.network import ConditionSpec

        cfg = self.config
        if not cfg.full_prior:
            return False, "full_prior is off"
        if not cfg.full_conditions:
            return False, "full_conditions is empty"
        names = [ConditionSpec.parse(s).name for s in cfg.full_conditions]
        have = len(self._usable(train, names))
        if train and have >= FULL_PRIOR_MIN_FRACTION * len(train):
            return True, None
        short = [f"{n} ({sum(self._has(c, n) for c in train)} of {len(train)})" for n in names
                 if sum(self._has(c, n) for c in train) < FULL_PRIOR_MIN_FRACTION * len(train)]
        columns = sorted({k for c in train[:200] for k in c.properties})
        return False, (f"{have} of {len(train)} training crystals have every property of the full prior "
                       f"(at least {FULL_PRIOR_MIN_FRACTION:.0%} needed); missing: {', '.join(short) or 'spread over several'}; "
                       f"the data's columns: {', '.join(columns) or '(none)'}")

    # ------------------------------------------------------------------ training
    def network_statistics(self, train: Sequence[Crystal]) -> dict[str, Any]:
        """CDVAE's lattice standardisation plus the resolved conditions (``fit`` stores them in the
        config first), those of the full prior (empty when it is not trained) and, with
        ``formula_vectors="cgcnn"`` and a formula among them, CGCNN's element vectors
        (:func:`cgcnn_element_vectors`; read here, before any training, and kept with the
        statistics in the checkpoint so that loading needs no file)."""
        from benchmark.models.con_cdvae.network import ConditionSpec

        cfg = self.config
        full = tuple(cfg.full_conditions) if self._full_prior else ()
        formulas = [s for s in map(ConditionSpec.parse, tuple(cfg.conditions) + full) if s.kind == "formula"]
        vectors = None
        if cfg.formula_vectors == "cgcnn" and formulas:
            dims = sorted({s.dim for s in formulas})
            if dims != [92]:
                raise ValueError(f"con_cdvae: CGCNN's element vectors have 92 numbers, the formula conditions ask for {dims} "
                                 "(use dim 92 or --set model.formula_vectors=learned)")
            vectors = cgcnn_element_vectors(cfg.max_atomic_num, 92)
        return {**super().network_statistics(train), "conditions": tuple(cfg.conditions), "full_conditions": full,
                "element_features": vectors}

    def fit(self, train: Sequence[Crystal], val: Sequence[Crystal], run_dir: Path, *, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
        from benchmark.models.con_cdvae.network import ConditionSpec

        cfg = self.config
        train = [c for c in train if 0 < c.num_atoms <= cfg.max_atoms]
        specs = resolve_condition_specs(cfg.conditions, train, cfg.condition_grids)
        names = [ConditionSpec.parse(s).name for s in specs]
        self._full_prior, skipped = self.full_prior_plan(train)
        if cfg.strategy in ("full", "less") and not self._full_prior:
            # the strategy is known now: refuse before any training, not at sampling time
            raise ValueError(f"con_cdvae: strategy {cfg.strategy!r} samples from the full prior, which cannot be trained here: "
                             f"{skipped}. Use --strategy default, or train on data with the full prior's properties "
                             f"(model.full_conditions).")
        full_names = [ConditionSpec.parse(s).name for s in cfg.full_conditions] if self._full_prior else []
        need = names + [n for n in full_names if n not in names]
        dropped = len(train) - len(self._usable(train, need))
        train, val = self._usable(train, need), self._usable(val, need)
        if not train:
            raise ValueError(f"con_cdvae: no training crystal has every condition {need}")
        self.config = dataclasses.replace(cfg, conditions=specs)  # stored resolved in the checkpoint
        summary = super().fit(train, val, run_dir, seed=seed, device=device)
        summary["n_train_without_conditions"] = dropped
        summary["conditions"] = list(specs)
        summary["full_prior"] = self._full_prior
        if skipped:
            summary["full_prior_skipped"] = skipped
        summary.update(self._fit_priors(train, val, Path(run_dir), seed, device))
        return summary

    def _latents(self, crystals: Sequence[Crystal], device: str) -> tuple[Any, dict[str, np.ndarray]]:
        """The encoder means mu (n, latent) of the crystals that have an encoder graph, and their
        conditions table (every condition of the model and the full prior)."""
        import torch

        from benchmark.models.con_cdvae.network import condition_columns

        net = self.net.to(device).eval()
        items = GraphDataset(crystals, None, (0.0, 1.0), progress=False).items
        table = condition_columns([it["crystal"] for it in items], self._all_specs(), net.config.max_atomic_num)
        mus = []
        with torch.no_grad():
            for k in range(0, len(items), self.config.batch_size):
                mus.append(net.encode_means(self.collate(items[k:k + self.config.batch_size]).to(device)).cpu())
        mu = torch.cat(mus) if mus else torch.zeros(0, net.config.latent_dim)
        return mu, table

    def _fit_priors(self, train: Sequence[Crystal], val: Sequence[Crystal], run_dir: Path, seed: int, device: str) -> dict[str, Any]:
        """Step two: the frozen encoder's means of the training and validation crystals, then each
        Prior (Eq. 14) in the shared Lightning loop, in ``run_dir/prior_<which>``."""
        import torch
        from torch.utils.data import DataLoader

        from benchmark.training import epoch_losses, train_module

        cfg = self.config
        mu, self.condition_table = self._latents(train, device)
        val_mu, val_table = self._latents(val, device) if val else (None, {})
        net = self.net  # only the priors train now: their modules alone go to the loop and its optimiser
        out: dict[str, Any] = {}
        for which in ["default"] + (["full"] if net.prior_full is not None else []):
            prior = net.prior(which)
            names = prior.embedding.names
            data = LatentSet(mu, {n: self.condition_table[n] for n in names})
            gen = torch.Generator().manual_seed(seed + 1)
            train_loader = DataLoader(data, batch_size=cfg.prior_batch_size, shuffle=True, collate_fn=data.collate, generator=gen)
            val_loader = None
            if val_mu is not None and len(val_mu):
                vdata = LatentSet(val_mu, {n: val_table[n] for n in names})
                val_loader = DataLoader(vdata, batch_size=cfg.prior_batch_size, shuffle=False, collate_fn=vdata.collate)
            hparams = {"config": dataclasses.asdict(cfg), "prior": which, "monitor": "val_loss" if val_loader is not None else "train_loss"}
            module = _prior_module(prior, cfg, hparams, seed)
            module.train()  # Lightning leaves a module's mode as it finds it; the encoder means were taken in eval mode
            where = run_dir / f"prior_{which}"
            fit = train_module(module, train_loader, val_loader, where, max_epochs=cfg.prior_epochs, seed=seed + 1, device=device,
                               gradient_clip_val=cfg.prior_gradient_clip_val, gradient_clip_algorithm=cfg.prior_gradient_clip_algorithm)
            out[f"prior_{which}"] = {k: fit[k] for k in ("epochs", "global_step", "resumed_from", "train_loss", "val_loss", "kept",
                                                         "best_epoch", "best_val_loss")}
            out[f"prior_{which}_loss_curve"] = {str(k): v for k, v in epoch_losses(where, "train_loss").items()}
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
        strategy = strategy or cfg.strategy
        if strategy in ("full", "less") and net.prior_full is None:
            raise ValueError(f"con_cdvae: strategy {strategy!r} needs the full prior, and this model was trained without one "
                             "(its training data lacked the full prior's properties, or full_prior was off: the fit summary's "
                             "full_prior_skipped says which); use strategy default")
        known = {s.name for s in self._all_specs()}
        unknown = sorted(set(conditions) - known)
        if unknown:
            raise ValueError(f"con_cdvae was not trained on the conditions {unknown}; it knows {sorted(known)}")
        n_candidates, keep = (cfg.n_candidates, cfg.keep) if cfg.n_candidates and cfg.keep else (None, None)
        out = net.conditional_sample(n, dict(conditions), strategy=strategy, generator=self.make_generator(seed, device),
                                     n_candidates=n_candidates, keep=keep, n_step_each=cfg.n_step_each, step_lr=cfg.step_lr,
                                     condition_table=self.condition_table or None, tolerance=cfg.less_tolerance,
                                     use_one=cfg.less_use_one)
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


# ---------------------------------------------------------------------------------- step two
class LatentSet:
    """The Prior's training data: encoder means (n, latent) and their conditions (name -> n
    values), indexed by row; :meth:`collate` stacks rows into ``(z0 (B, latent), {name: (B,...)})``."""

    def __init__(self, mu: Any, conditions: Mapping[str, Any]) -> None:
        import torch

        self.mu = mu
        self.conditions = {k: torch.as_tensor(np.asarray(v)) for k, v in conditions.items()}
        for k, v in self.conditions.items():
            if v.is_floating_point():
                self.conditions[k] = v.float()

    def __len__(self) -> int:
        return int(self.mu.shape[0])

    def __getitem__(self, k: int) -> int:
        return k

    def collate(self, rows: Sequence[int]) -> tuple[Any, dict[str, Any]]:
        import torch

        idx = torch.as_tensor(list(rows), dtype=torch.long)
        return self.mu[idx], {k: v[idx] for k, v in self.conditions.items()}


def _prior_module(prior: Any, cfg: ConCDVAEConfig, hparams: dict[str, Any], seed: int) -> Any:
    import lightning
    import torch

    class PriorModule(lightning.LightningModule):
        """Training of one Prior (Eq. 14): Adam with reduce-on-plateau on the validation loss,
        as the released ``run_prior.py``. Validation draws the same t and noise every epoch (a
        fixed generator), so the kept epoch is chosen on comparable losses."""

        def __init__(self) -> None:
            super().__init__()
            self.save_hyperparameters(hparams)  # plain values only (weights_only checkpoints)
            self.prior = prior
            self._val_generator: torch.Generator | None = None

        def _step(self, batch: Any, stage: str, generator: torch.Generator | None = None) -> Any:
            z0, conds = batch
            loss = self.prior.loss(z0, conds, generator)
            self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, batch_size=z0.shape[0], prog_bar=True)
            return loss

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return self._step(batch, "train")

        def on_validation_epoch_start(self) -> None:
            self._val_generator = torch.Generator().manual_seed(seed + 2)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self._step(batch, "val", self._val_generator)

        def configure_optimizers(self) -> Any:
            opt = torch.optim.Adam(self.prior.parameters(), lr=cfg.prior_lr)
            if cfg.prior_lr_factor is None:
                return opt
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.prior_lr_factor,
                                                               patience=cfg.prior_lr_patience, min_lr=cfg.prior_min_lr)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": hparams["monitor"], "interval": "epoch"}}

    return PriorModule()


__all__ = ["ATOM_INIT_SHA256", "ConCDVAEConfig", "ConCDVAEModel", "FULL_PRIOR_MIN_FRACTION", "KNOWN_CLASSES", "LatentSet",
           "cgcnn_element_vectors", "resolve_condition_specs"]
