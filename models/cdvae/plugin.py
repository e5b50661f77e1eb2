"""The ``cdvae`` and ``cdvae_fourier`` model plugins: the network of
:mod:`benchmark.models.cdvae.network`, trained and run.

Training (CDVAE, Appendix D.4): Adam, learning rate 1e-3, reduced by 0.6 when the validation loss
has not improved for 30 epochs, down to 1e-4; the loss of Equation 9. The encoder reads the
published CrystalNN graph of each crystal (:mod:`benchmark.nn.crystalnn`, built once per training
split and cached, like the property oracles' graphs); the decoder builds its radius graph on the fly
at every call.

The network is built from the plugin's config (:class:`~benchmark.models.cdvae.config.CDVAEConfig`,
the one dataclass of every hyper-parameter) and the training-data statistics it needs: the lattice
standardisation ([lengths / N^(1/3), angles] mean and std over the training split). The checkpoint
(``save``) is a ``torch.save`` of the config (a plain dict), those statistics, the property
standardisation and the weights, read back with ``weights_only=True``; ``load`` rebuilds the network
from the stored config and statistics.

Presets: ``paper`` is the published model (hidden 128 / latent 256, 50 noise levels, 100 Langevin
steps per level, per-dataset beta, maximum atoms and epochs); ``smoke`` is a small network with 10
noise levels and 10 steps per level that trains and samples on a 2-core CPU in minutes.

Public helpers that DP-CDVAE and Con-CDVAE, built on this plugin, reuse: :func:`lattice_statistics`,
:class:`GraphDataset`, :func:`collate`, :func:`graph_items`, :func:`to_crystals` and
:func:`empty_crystal`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from benchmark.crystal import Crystal, crystals_from_arrays
from benchmark.models.base import OPTIMIZE, RECONSTRUCT, SAMPLE, Model, ModelConfig, SampleBatch
from benchmark.models.cdvae.config import CDVAEConfig, CDVAEFourierConfig

#: format of the checkpoints ``save`` writes; 2: the config and the training statistics the network
#: is rebuilt from (format 1 stored a second copy of the network's hyper-parameters)
CHECKPOINT_FORMAT = 2


# ---------------------------------------------------------------------------------- data
def lattice_statistics(crystals: Sequence[Crystal]) -> tuple[list[float], list[float]]:
    """Mean and std of [lengths / N^(1/3), angles] over crystals (the lattice standardisation)."""
    rows = np.array([np.concatenate([np.asarray(c.lengths) / max(c.num_atoms, 1) ** (1 / 3), np.asarray(c.angles)]) for c in crystals])
    std = rows.std(axis=0)
    return rows.mean(axis=0).tolist(), np.where(std > 1e-6, std, 1.0).tolist()


class GraphDataset:
    """Crystals with their encoder graphs (CrystalNN) and standardised property, for a DataLoader."""

    def __init__(self, crystals: Sequence[Crystal], prop: str | None, prop_scale: tuple[float, float], progress: bool | None = None) -> None:
        from benchmark.nn.crystalnn import build_graphs, crystals_digest
        from benchmark.settings import env_flag

        if progress is None:  # the runner's --no-progress reaches fit() through this variable
            progress = not env_flag("BENCHMARK_NO_PROGRESS")

        crystals = list(crystals)
        graphs = build_graphs(crystals, cache_key=f"encoder-{crystals_digest(crystals)[:24]}", progress=progress, desc="encoder graphs")
        keep = [k for k, g in enumerate(graphs) if g is not None]
        self.dropped = len(crystals) - len(keep)
        self.items: list[dict[str, Any]] = []
        mean, std = prop_scale
        for k in keep:
            c, g = crystals[k], graphs[k]
            y = c.properties.get(prop) if prop else None
            y = float("nan") if y is None else (float(y) - mean) / std
            self.items.append({"crystal": c, "graph": g, "y": y})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> dict[str, Any]:
        return self.items[k]


def collate(items: Sequence[dict[str, Any]], conditions: dict[str, Any] | None = None) -> Any:
    """A :class:`~benchmark.nn.batch.CrystalBatch` of dataset items (their graphs' cells), with
    the standardised property when every item has one (None otherwise) and the per-crystal
    ``conditions`` of a conditional model (name -> one value per item)."""
    from benchmark.nn.batch import CrystalBatch

    ys = [float(it.get("y", float("nan"))) for it in items]
    y = None if any(np.isnan(ys)) else ys
    return CrystalBatch.from_graphs([it["graph"] for it in items], y=y, conditions=conditions)


def graph_items(crystals: Sequence[Crystal]) -> list[dict[str, Any] | None]:
    """Dataset items for inference (reconstruction / optimisation): graphs built here, in order.
    A crystal without a CrystalNN graph cannot be encoded: None in its place."""
    from benchmark.nn.crystalnn import build_graphs

    graphs = build_graphs(list(crystals), n_jobs=1, progress=False)
    return [None if g is None else {"crystal": c, "graph": g, "y": float("nan")} for c, g in zip(crystals, graphs)]


def to_crystals(out: dict[str, Any]) -> list[Crystal]:
    """Crystals from the network's output dict (frac_coords, atom_types, num_atoms, lengths, angles)."""
    return crystals_from_arrays(out["frac_coords"], out["atom_types"], out["lengths"], out["angles"], out["num_atoms"])


# ---------------------------------------------------------------------------------- Lightning
def _lightning_module(net: Any, cfg: CDVAEConfig, hparams: dict[str, Any]) -> Any:
    import lightning
    import torch

    class CDVAEModule(lightning.LightningModule):
        """Training of the CDVAE network: Equation 9, Adam with reduce-on-plateau (D.4)."""

        def __init__(self) -> None:
            super().__init__()
            self.save_hyperparameters(hparams)  # plain values only (weights_only checkpoints)
            self.net = net

        def _step(self, batch: Any, stage: str) -> Any:
            training = stage == "train"
            # teacher forcing through epoch teacher_forcing_max_epoch, inclusive (released: current_epoch <= max);
            # never in validation (released validation_step: teacher_forcing=False)
            teacher = training and cfg.teacher_forcing_lattice and self.current_epoch <= cfg.teacher_forcing_max_epoch
            parts = self.net.losses(batch, teacher_forcing=teacher)
            loss = self.net.training_loss(parts, self.current_epoch) if training else self.net.validation_loss(parts)
            bs = batch.num_graphs
            for k, v in parts.items():
                if k != "loss":
                    self.log(f"{stage}_{k}", v, on_step=False, on_epoch=True, batch_size=bs)
            self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, batch_size=bs, prog_bar=True)
            return loss

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return self._step(batch, "train")

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self._step(batch, "val")

        def configure_optimizers(self) -> Any:
            opt = torch.optim.Adam(self.parameters(), lr=cfg.lr)
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience, min_lr=cfg.min_lr)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": hparams["monitor"], "interval": "epoch"}}

    return CDVAEModule()


# ---------------------------------------------------------------------------------- the plugin
class CDVAEModel(Model):
    """Crystal Diffusion Variational Autoencoder (Xie et al., ICLR 2022) as a plugin."""

    name = "cdvae"
    description = "CDVAE: DimeNet++ encoder, GemNet-T score decoder, annealed Langevin dynamics (Xie et al. 2022)"
    version = "0.1"
    capabilities = frozenset({SAMPLE, RECONSTRUCT, OPTIMIZE})
    Config = CDVAEConfig
    #: values a checkpoint's stored config takes for the fields it lacks (fields added after it was
    #: written): the behaviour it was trained with, not today's defaults; none for CDVAE
    legacy_config: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: CDVAEConfig | None = None) -> None:
        super().__init__(config)
        self.net: Any = None
        self.statistics: dict[str, Any] = {}  # the training-data statistics the network was built with
        self.prop_scale: tuple[float, float] = (0.0, 1.0)

    # ------------------------------------------------------------------ what a subclass changes
    @classmethod
    def network_class(cls) -> type:
        """The network class, built as ``network_class()(config, **statistics)``; a model on
        CDVAE's VAE (DP-CDVAE, Con-CDVAE) returns its own."""
        from benchmark.models.cdvae.network import CDVAE

        return CDVAE

    def network_statistics(self, train: Sequence[Crystal]) -> dict[str, Any]:
        """What the network needs from the training data besides the config, as keyword arguments
        of its constructor: the lattice standardisation (``lattice_mean``, ``lattice_std``)."""
        mean, std = lattice_statistics(train)
        return {"lattice_mean": mean, "lattice_std": std}

    def build_network(self, statistics: Mapping[str, Any], config: CDVAEConfig | None = None) -> Any:
        """Build ``self.net`` from ``config`` (default: the model's) and the training-data
        ``statistics`` (see :meth:`network_statistics`; stored with the weights by :meth:`save`)."""
        self.statistics = {k: list(v) if isinstance(v, tuple) else v for k, v in statistics.items()}
        self.net = self.network_class()(config if config is not None else self.config, **statistics)
        return self.net

    def collate(self, items: Sequence[dict[str, Any]]) -> Any:
        """The network's batch of dataset items (:func:`collate`; a conditional model adds the
        items' conditions)."""
        return collate(items)

    def sampler_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the network's ``sample`` / ``reconstruct`` (Algorithm 1's step
        count and size here)."""
        return {"n_step_each": self.config.n_step_each, "step_lr": self.config.step_lr}

    # ------------------------------------------------------------------ training
    def fit(self, train: Sequence[Crystal], val: Sequence[Crystal], run_dir: Path, *, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
        import torch
        from torch.utils.data import DataLoader

        from benchmark.training import epoch_losses, train_module

        cfg = self.config
        train = [c for c in train if 0 < c.num_atoms <= cfg.max_atoms]
        if not train:
            raise ValueError(f"{self.name}: no training crystal with 1..{cfg.max_atoms} atoms")
        torch.manual_seed(seed)
        statistics = self.network_statistics(train)
        if cfg.property:
            # the property head is trained jointly: every training crystal needs the value
            train = [c for c in train if _finite(c.properties.get(cfg.property))]
            val = [c for c in val if _finite(c.properties.get(cfg.property))]
            ys = np.array([float(c.properties[cfg.property]) for c in train])
            if len(ys) == 0:
                raise ValueError(f"{self.name}: the training crystals have no property {cfg.property!r} (set model.property to another column or to none)")
            self.prop_scale = (float(ys.mean()), float(ys.std()) if ys.std() > 1e-8 else 1.0)
        net = self.build_network(statistics)
        train_ds = GraphDataset(train, cfg.property, self.prop_scale)
        val_ds = GraphDataset([c for c in val if 0 < c.num_atoms <= cfg.max_atoms], cfg.property, self.prop_scale) if val else None
        gen = torch.Generator().manual_seed(seed)
        train_loader = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, collate_fn=self.collate, generator=gen)
        val_loader = DataLoader(val_ds, batch_size=cfg.batch_size, shuffle=False, collate_fn=self.collate) if val_ds and len(val_ds) else None
        if hasattr(net, "fit_scale_factors"):  # GemNet's scale factors from one representative batch
            net.fit_scale_factors(next(iter(DataLoader(train_ds, batch_size=min(cfg.batch_size, 64), shuffle=False, collate_fn=self.collate))))
        hparams = {"config": dataclasses.asdict(cfg), "monitor": "val_loss" if val_loader is not None else "train_loss"}
        module = _lightning_module(net, cfg, hparams)
        summary = train_module(module, train_loader, val_loader, Path(run_dir), max_epochs=cfg.max_epochs, seed=seed, device=device,
                               gradient_clip_val=cfg.gradient_clip_val, gradient_clip_algorithm=cfg.gradient_clip_algorithm)
        self.net = module.net.cpu().eval()
        summary["train_loss_curve"] = epoch_losses(Path(run_dir), "train_loss")
        summary["n_train"] = len(train_ds)
        summary["n_train_without_graph"] = train_ds.dropped
        return summary

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: Path) -> None:
        """One ``torch.save`` of plain values and tensors: the network's config (a dict), the
        training statistics, the property standardisation and the weights."""
        import torch

        if self.net is None:
            raise RuntimeError(f"{self.name}: nothing to save, call fit() first")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": CHECKPOINT_FORMAT, "model": self.name, "config": dataclasses.asdict(self.net.config),
                    "statistics": dict(self.statistics), "prop_scale": list(self.prop_scale),
                    "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()}, **self.checkpoint_extras()}, path)

    def checkpoint_extras(self) -> dict[str, Any]:
        """More plain values and tensors a model built on this one stores in its checkpoint (read
        back by :meth:`restore_extras`); none here."""
        return {}

    def restore_extras(self, data: dict[str, Any]) -> None:
        """Take back what :meth:`checkpoint_extras` stored (``data``: the whole checkpoint)."""

    @classmethod
    def load(cls, path: Path, config: ModelConfig | None = None) -> "CDVAEModel":
        """Read a checkpoint of :meth:`save` (tensors and plain values only, under the project's
        safe-loading policy): the network is rebuilt from the stored config and statistics;
        ``config`` (default: the stored one) is the model's, e.g. other sampling fields."""
        data, stored, effective = cls.read_checkpoint(
            path, CHECKPOINT_FORMAT, config, legacy=cls.legacy_config,
            hint="(the model config and training statistics the network is rebuilt from). Train the model again to get one.")
        model = cls(effective)  # type: ignore[arg-type]
        model.build_network(data["statistics"], stored)
        model.net.load_state_dict(data["state_dict"], strict=True)
        model.net.eval()
        model.prop_scale = (float(data["prop_scale"][0]), float(data["prop_scale"][1]))
        model.restore_extras(data)
        return model

    # ------------------------------------------------------------------ capabilities
    def trained_network(self, device: str) -> Any:
        """The network on ``device`` in eval mode (fit or load first)."""
        if self.net is None:
            raise RuntimeError(f"{self.name}: the model is not trained (fit or load it first)")
        return self.net.to(device).eval()

    @staticmethod
    def make_generator(seed: int, device: str) -> Any:
        """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
        import torch

        return torch.Generator(device=device).manual_seed(int(seed))

    def sample(self, n: int, *, seed: int, device: str = "cpu") -> SampleBatch:
        net = self.trained_network(device)
        out = net.sample(n, generator=self.make_generator(seed, device), **self.sampler_kwargs())
        return SampleBatch(to_crystals(out), out.get("model_evaluations"))

    def reconstruct(self, crystals: Sequence[Crystal], *, seed: int, device: str = "cpu") -> list[Crystal]:
        net = self.trained_network(device)
        items = graph_items(crystals)
        ok = [k for k, it in enumerate(items) if it is not None]
        # an input without a CrystalNN graph cannot be encoded: it decodes to an empty crystal (invalid, with a reason)
        result: list[Crystal] = [empty_crystal(c) for c in crystals]
        if ok:
            batch = self.collate([items[k] for k in ok]).to(device)
            out = net.reconstruct(batch, generator=self.make_generator(seed, device), latent=self.config.latent_from, **self.sampler_kwargs())
            for k, c in zip(ok, to_crystals(out)):
                result[k] = c
        return result

    def optimize(self, crystals: Sequence[Crystal], *, seed: int, device: str = "cpu", steps: int = 5000, lr: float = 1e-3, n_decode: int = 10) -> list[list[Crystal]]:
        if self.config.property is None:
            from benchmark.models.base import NotSupported

            raise NotSupported(f"{self.name} was trained without a property head (model.property is none; as in the released code, "
                               "the paper preset trains one only when asked: --set model.property=<the dataset's target>, "
                               "e.g. heat_ref for perov_5)")
        net = self.trained_network(device)
        items = graph_items(crystals)
        ok = [k for k, it in enumerate(items) if it is not None]
        if not ok:
            raise ValueError(f"{self.name}: none of the starting crystals has a CrystalNN graph")
        batch = self.collate([items[k] for k in ok]).to(device)
        outs = net.optimize(batch, steps=steps, lr=lr, n_decode=n_decode, generator=self.make_generator(seed, device),
                            latent=self.config.latent_from, schedule=self.config.optimize_decode, **self.sampler_kwargs())
        steps_out: list[list[Crystal]] = []
        for out in outs:
            decoded = to_crystals(out)
            row = [empty_crystal(c) for c in crystals]
            for k, c in zip(ok, decoded):
                row[k] = c
            steps_out.append(row)
        return steps_out


class CDVAEFourierModel(CDVAEModel):
    """CDVAE+Fourier, the third model of DP-CDVAE's Table III: CDVAE whose score decoder also
    reads ``sin/cos(2^n pi x~)`` of the noisy fractional coordinates x~ (section S3; n = 4..9 in
    ``paper``, the released frequencies, 3..8 in ``smoke``: :class:`CDVAEFourierConfig`),
    the same features DP-CDVAE's diffusion network gets, so the ground-state comparison separates
    the effect of the features from that of the diffusion model."""

    name = "cdvae_fourier"
    description = "CDVAE+Fourier: CDVAE with Fourier features of the noisy coordinates in the decoder (DP-CDVAE Table III)"
    Config = CDVAEFourierConfig


def _finite(value: Any) -> bool:
    try:
        return value is not None and np.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def empty_crystal(like: Crystal) -> Crystal:
    """A zero-atom crystal in the cell of ``like``: what an input that could not be encoded decodes to
    (it scores as invalid with a reason, keeping outputs aligned with inputs)."""
    return Crystal(np.zeros(0, dtype=np.int64), np.zeros((0, 3)), np.asarray(like.lengths), np.asarray(like.angles), label=like.label)


__all__ = ["CHECKPOINT_FORMAT", "CDVAEConfig", "CDVAEFourierConfig", "CDVAEFourierModel", "CDVAEModel", "GraphDataset", "collate",
           "empty_crystal", "graph_items", "lattice_statistics", "to_crystals"]
