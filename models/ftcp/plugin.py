"""The ``ftcp`` model plugin: the FTCP variational autoencoder (Ren et al., Matter 5, 314, 2022) on
the FTCP representation (:mod:`benchmark.representations.ftcp`), following the released Keras code
PV-Lab/FTCP@a8ac7b0 (``model.py``, ``main.py``; line numbers below are those files').

Data. ``fit`` takes the training crystals with a finite value of every configured property
(``num_atoms`` is computed), sets the layout's ``max_elms`` / ``max_sites`` from the config or, when
None, from the training split (``dataset_limits``), encodes them (``encode_many``; crystals the
layout cannot hold are skipped and counted), fits the per-row min-max scaler on them
(``FTCPScaler``, utils.py:27-54 ``minmax``) and min-max scales the properties to [0, 1] over the
training split (main.py:33-34, ``MinMaxScaler``; a constant property scales to 0, as scikit-learn
does), the range of the branch's sigmoid. Layout, scaler and property ranges go into the
checkpoint as plain values.

Training goes through :func:`benchmark.training.train_module` (a checkpoint every epoch, resumed
after a kill): shuffled batches of ``batch_size`` (the last one smaller, as Keras' ``fit``), the
released loss (:func:`~benchmark.models.ftcp.network.vae_loss`, model.py:114-124), RMSprop
(main.py:54) and the two Keras callbacks of main.py:45-52, done in the module's epoch hooks so that
their state is resumed with the checkpoint: at the start of epoch e (0-based) the learning rate
becomes ``lr_schedule_values[i]`` when ``e == lr_schedule_epochs[i]`` (LearningRateScheduler), and
at its end ReduceLROnPlateau (Keras 2.3.1 semantics: the monitored value is the epoch's mean
training loss, weighted by batch size; an improvement is a drop of more than ``plateau_min_delta``;
after ``plateau_patience`` epochs without one the rate is multiplied by ``plateau_factor``, not below
``plateau_min_lr``, and the count restarts). As released there is no validation: ``val`` is not
used and the last epoch is kept (main.py saves nothing else).

After training, the encoder's sampled latents of the training crystals (``encoder.predict``, whose
output is the reparameterised z, model.py:66-67 and main.py:64) and their property values are
stored for inverse design.

Capabilities:

* ``reconstruct``: encode, decode the mean latent. A deviation: main.py:85 reconstructs through
  the whole VAE, from a sampled z; the mean makes a reconstruction independent of the seed. A
  crystal the layout cannot hold becomes a zero-atom crystal in its own cell with
  ``properties["decode_error"]``.
* ``sample``: z ~ N(0, I) (how CDVAE scored FTCP: footnote 5 of its Table 2 draws 100,000 from
  N(0, 1)), decoded; an array that does not decode becomes a zero-atom crystal with
  ``properties["decode_error"]``, keeping the outputs aligned with the draws.
* ``optimize``: CDVAE's property-optimisation protocol (section 5.3), which the release does not
  have (an addition, not a deviation): from the mean latent of each start crystal, Adam on z minimising the property branch's
  first output, decoding along the trajectory at CDVAE's released steps (:func:`decode_steps`).
* ``conditional_sample``: the release's inverse design (main.py:144-162): the ``design_nearest``
  training crystals whose property values are nearest the targets, their stored latents tiled to
  ``n``, plus N(0, 1) x ``design_scale``, decoded. The release selects by a constraint on one
  property and the distance on the other (main.py:149-151); here the distance is the Euclidean one
  in the min-max scaled values of the asked properties (a deviation that covers one target and
  several). Selection is by the training labels, as released (not by the branch's predictions).

Checkpoint (``save``): one ``torch.save`` of plain values and tensors: model name, format, config,
layout and scaler (``to_dict``), property ranges, the network weights and the training latents and
property values.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from benchmark.crystal import Crystal
from benchmark.models.base import CONDITIONAL_SAMPLE, OPTIMIZE, RECONSTRUCT, SAMPLE, Model, ModelConfig, NotSupported, SampleBatch
from benchmark.models.ftcp.config import FTCPConfig

__all__ = ["CHECKPOINT_FORMAT", "FTCPModel", "decode_steps", "property_value"]

#: format of the checkpoints ``save`` writes
CHECKPOINT_FORMAT = 1
#: rows of the FTCP array before the lattice rows: one per element H..Lr (data.py; sampling.py:99-100
#: reads a, b, c from row 103 and the angles from row 104)
N_ELEMENT_ROWS = 103


def property_value(crystal: Crystal, name: str) -> float:
    """A crystal's value of ``name``: ``num_atoms`` is counted, anything else read from
    ``crystal.properties`` (NaN when missing or not a number)."""
    if name == "num_atoms":
        return float(crystal.num_atoms)
    try:
        return float(crystal.properties.get(name))
    except (TypeError, ValueError):
        return float("nan")


def decode_steps(steps: int, n_decode: int) -> list[int]:
    """After how many optimiser steps :meth:`FTCPModel.optimize` decodes: CDVAE's released
    schedule (``scripts/evaluate.py``, ``optimization``): interval ``steps // (n_decode - 1)``, a
    decode after iteration i when ``i % interval == 0`` or ``i == steps - 1`` (so 5,000 steps and
    10 decodes give 11, after 1, 556, ..., 4996, 5000 steps); for ``n_decode`` 1 or no steps, evenly
    spaced ones (``k steps // n_decode``, k = 1..n_decode)."""
    if n_decode < 2 or steps < 1:
        return [k * max(steps, 0) // n_decode for k in range(1, n_decode + 1)]
    interval = max(steps // (n_decode - 1), 1)
    return sorted({i + 1 for i in range(steps) if i % interval == 0 or i == steps - 1})


def _empty(lengths: Any, angles: Any, reason: str, label: str | None) -> Crystal:
    return Crystal(np.zeros(0, dtype=np.int64), np.zeros((0, 3)), np.asarray(lengths, dtype=float), np.asarray(angles, dtype=float),
                   properties={"decode_error": reason}, label=label)


def _array_cell(array: np.ndarray, layout: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """The cell an unscaled FTCP array states (the layout's a, b, c and angle rows, 103 and 104,
    columns 0-2), made usable for a zero-atom placeholder: lengths at least 1 Å, angles in [1, 179]
    degrees, non-finite values replaced by 1 Å and 90 degrees."""
    a = np.asarray(array, dtype=np.float64)
    row_abc = int(getattr(layout, "row_abc", N_ELEMENT_ROWS))
    row_angles = int(getattr(layout, "row_angles", row_abc + 1))
    if a.ndim != 2 or a.shape[0] <= max(row_abc, row_angles) or a.shape[1] < 3:
        return np.ones(3), np.full(3, 90.0)
    lengths, angles = a[row_abc, :3].copy(), a[row_angles, :3].copy()
    lengths = np.where(np.isfinite(lengths), np.maximum(lengths, 1.0), 1.0)
    angles = np.where(np.isfinite(angles), np.clip(angles, 1.0, 179.0), 90.0)
    return lengths, angles


# ---------------------------------------------------------------------------------- Lightning
def _lightning_module(model: "FTCPModel", hparams: dict[str, Any]) -> Any:
    """The LightningModule training ``model.net`` with the released loss, optimiser and learning
    rate callbacks (module doc); ``hparams``: plain values only (weights-only checkpoints)."""
    import lightning
    import torch

    from benchmark.models.ftcp.network import vae_loss

    cfg: FTCPConfig = model.config
    schedule = dict(zip(cfg.lr_schedule_epochs, cfg.lr_schedule_values))

    class FTCPModule(lightning.LightningModule):
        """Logs ``train_loss`` (the released loss, a batch-size weighted epoch mean), its terms
        ``train_recon``, ``train_kl``, ``train_prop`` and the learning rate ``lr``."""

        def __init__(self) -> None:
            super().__init__()
            self.save_hyperparameters(hparams)
            self.net = model.net
            self.plateau = {"best": math.inf, "wait": 0}
            self._sum, self._count = 0.0, 0

        def _set_lr(self, lr: float) -> None:
            opt = self.optimizers()
            for group in getattr(opt, "optimizer", opt).param_groups:
                group["lr"] = float(lr)

        def _lr(self) -> float:
            opt = self.optimizers()
            inner = getattr(opt, "optimizer", opt)
            return float(inner.param_groups[0]["lr"])

        def on_train_epoch_start(self) -> None:
            # Keras LearningRateScheduler.on_epoch_begin (main.py:46-52): the schedule sees the epoch index
            if self.current_epoch in schedule:
                self._set_lr(schedule[self.current_epoch])
            self._sum, self._count = 0.0, 0

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            out = self.net(x)
            losses = vae_loss(x, out["x_hat"], out["mu"], out["log_var"], y if y.shape[1] else None, out["y_hat"],
                              cfg.coeff_kl, cfg.coeff_prop)
            n = x.shape[0]
            self._sum += float(losses["loss"].detach()) * n
            self._count += n
            for key in ("recon", "kl", "prop"):
                self.log(f"train_{key}", losses[key].detach(), on_step=False, on_epoch=True, batch_size=n)
            self.log("train_loss", losses["loss"].detach(), on_step=False, on_epoch=True, batch_size=n, prog_bar=True)
            return losses["loss"]

        def on_train_epoch_end(self) -> None:
            # Keras 2.3.1 ReduceLROnPlateau.on_epoch_end (main.py:45), monitor 'loss', mode min, cooldown 0
            if not self._count:
                return
            current = self._sum / self._count
            if current < self.plateau["best"] - cfg.plateau_min_delta:
                self.plateau = {"best": current, "wait": 0}
            else:
                self.plateau["wait"] += 1
                if self.plateau["wait"] >= cfg.plateau_patience:
                    old = self._lr()
                    if old > cfg.plateau_min_lr:
                        self._set_lr(max(old * cfg.plateau_factor, cfg.plateau_min_lr))
                    self.plateau["wait"] = 0
            self.log("lr", self._lr(), on_step=False, on_epoch=True)

        def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
            checkpoint["ftcp_plateau"] = {"best": float(self.plateau["best"]), "wait": int(self.plateau["wait"])}

        def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
            state = checkpoint.get("ftcp_plateau") or {}
            self.plateau = {"best": float(state.get("best", math.inf)), "wait": int(state.get("wait", 0))}

        def configure_optimizers(self) -> Any:
            return torch.optim.RMSprop(self.net.parameters(), lr=cfg.lr, alpha=cfg.rmsprop_rho, eps=cfg.rmsprop_eps)

    return FTCPModule()


# ---------------------------------------------------------------------------------- the plugin
class FTCPModel(Model):
    """FTCP (Ren et al. 2022) as a plugin (module doc)."""

    name: ClassVar[str] = "ftcp"
    description: ClassVar[str] = ("FTCP: 1-D convolutional VAE with a property branch on Fourier-transformed crystal properties "
                                  "(Ren et al., Matter 2022)")
    version: ClassVar[str] = "0.1"
    capabilities: ClassVar[frozenset[str]] = frozenset({SAMPLE, RECONSTRUCT, OPTIMIZE, CONDITIONAL_SAMPLE})
    Config: ClassVar[type[ModelConfig]] = FTCPConfig

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__(config)
        self.net: Any = None
        self.layout: Any = None
        self.scaler: Any = None
        #: per-property training minimum and maximum (the min-max scaling of main.py:33-34)
        self.prop_min = np.zeros(0)
        self.prop_max = np.zeros(0)
        #: the training crystals' sampled latents (n, latent) and property values (n, n_props)
        self.train_latents = np.zeros((0, self.config.latent_dim), dtype=np.float32)
        self.train_properties = np.zeros((0, 0))
        #: ``{"n", "decode_failed", "model_evaluations"}`` of the last sampling call
        self.last_sample_summary: dict[str, Any] = {}
        #: ``{"property", "steps", "predicted"}`` of the last :meth:`optimize`: the optimiser steps
        #: of each decode and the branch's prediction (in the property's units) per encodable start
        self.last_optimize_summary: dict[str, Any] = {}

    # ------------------------------------------------------------------ networks
    def build(self, n_rows: int, n_cols: int) -> None:
        """Build the network for (n_rows, n_cols) arrays (initial weights from torch's global
        generator: seed it first)."""
        from benchmark.models.ftcp.network import FTCPNet

        c: FTCPConfig = self.config
        self.net = FTCPNet(n_rows, n_cols, len(c.properties), latent_dim=c.latent_dim, conv_filters=c.conv_filters,
                           kernel_sizes=c.kernel_sizes, strides=c.strides, dense_width=c.dense_width,
                           property_widths=c.property_widths, leaky_slope=c.leaky_slope, bn_momentum=c.bn_momentum, bn_eps=c.bn_eps)

    def _scale_properties(self, values: np.ndarray) -> np.ndarray:
        span = self.prop_max - self.prop_min
        return (np.asarray(values, dtype=np.float64) - self.prop_min) / np.where(span > 0, span, 1.0)

    def _trained(self) -> Any:
        if self.net is None or self.layout is None or self.scaler is None:
            raise RuntimeError(f"{self.name}: the model is not trained (fit or load it first)")
        return self.net

    # ------------------------------------------------------------------ training
    def fit(self, train: Sequence[Crystal], val: Sequence[Crystal], run_dir: Path, *, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
        """Encode ``train`` (module doc), train for ``max_epochs`` (resuming from ``run_dir``'s last
        checkpoint), keep the last epoch, store the training latents; ``val`` is not used."""
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        from benchmark.representations.ftcp import FTCPLayout, FTCPScaler, dataset_limits, encode_many
        from benchmark.settings import env_flag
        from benchmark.training import epoch_losses, train_module

        cfg: FTCPConfig = self.config
        train = list(train)
        if cfg.properties:
            labelled = [c for c in train if all(np.isfinite(property_value(c, p)) for p in cfg.properties)]
            if not labelled:
                raise ValueError(f"{self.name}: no training crystal has every property {list(cfg.properties)} "
                                 "(set model.properties to columns the dataset has, or to none)")
            n_unlabelled = len(train) - len(labelled)
            train = labelled
        else:
            n_unlabelled = 0
        limits = dataset_limits(train)
        max_elms = cfg.max_elms if cfg.max_elms is not None else int(limits[0])
        max_sites = cfg.max_sites if cfg.max_sites is not None else int(limits[1])
        layout = FTCPLayout(max_elms, max_sites, variant=cfg.variant)
        arrays, skipped = encode_many(train, layout, progress=not env_flag("BENCHMARK_NO_PROGRESS"))
        gone = {int(i) for i, _ in skipped}
        kept = [c for i, c in enumerate(train) if i not in gone]
        if len(kept) == 0:
            raise ValueError(f"{self.name}: none of the {len(train)} training crystals could be encoded as FTCP ({skipped[:3]})")
        scaler = FTCPScaler.fit(arrays)
        x = np.ascontiguousarray(scaler.transform(arrays), dtype=np.float32)
        values = np.array([[property_value(c, p) for p in cfg.properties] for c in kept], dtype=np.float64).reshape(len(kept), -1)
        self.layout, self.scaler = layout, scaler
        self.prop_min = values.min(axis=0) if values.shape[1] else np.zeros(0)
        self.prop_max = values.max(axis=0) if values.shape[1] else np.zeros(0)
        y = self._scale_properties(values).astype(np.float32)

        torch.manual_seed(seed)
        self.build(x.shape[1], x.shape[2])
        data = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
        loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
        hparams = {"model": self.name, "config": dataclasses.asdict(cfg), "layout": layout.to_dict()}
        module = _lightning_module(self, hparams)
        summary = train_module(module, loader, None, Path(run_dir), max_epochs=cfg.max_epochs, seed=seed, device=device, keep="last")
        self.net = module.net.cpu().eval()
        self.train_latents = self._latents(x, seed=seed, sampled=True)
        self.train_properties = values
        summary["train_loss_curve"] = epoch_losses(Path(run_dir), "train_loss")
        summary["n_train"] = len(kept)
        summary["n_train_skipped"] = len(skipped)
        summary["n_train_unlabelled"] = n_unlabelled
        summary["skipped_examples"] = [list(s) for s in skipped[:5]]
        summary["layout"] = {"max_elms": max_elms, "max_sites": max_sites, "n_rows": int(x.shape[1]), "n_cols": int(x.shape[2])}
        return summary

    def _latents(self, x_scaled: np.ndarray, *, seed: int, sampled: bool, device: str = "cpu") -> np.ndarray:
        """Latents (n, latent) of scaled arrays (n, R, C): the means, or the reparameterised
        samples (``encoder.predict``, main.py:64) from a generator seeded with ``seed``."""
        import torch

        net = self._trained().to(device).eval()
        gen = torch.Generator(device=device).manual_seed(int(seed))
        out = []
        with torch.no_grad():
            for start in range(0, len(x_scaled), self.config.sample_batch_size):
                chunk = torch.as_tensor(np.asarray(x_scaled[start:start + self.config.sample_batch_size], dtype=np.float32), device=device)
                mu, log_var = net.encode(chunk)
                out.append((net.reparameterize(mu, log_var, gen) if sampled else mu).cpu().numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.config.latent_dim), dtype=np.float32)

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: Path) -> None:
        """One ``torch.save`` of plain values and tensors (module doc)."""
        import torch

        self._trained()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": CHECKPOINT_FORMAT, "model": self.name, "config": dataclasses.asdict(self.config),
                    "layout": self.layout.to_dict(), "scaler": self.scaler.to_dict(),
                    "prop_min": [float(v) for v in self.prop_min], "prop_max": [float(v) for v in self.prop_max],
                    "n_rows": int(self.net.n_rows), "n_cols": int(self.net.n_cols),
                    "weights": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
                    "train_latents": torch.from_numpy(np.ascontiguousarray(self.train_latents, dtype=np.float32)),
                    "train_properties": torch.from_numpy(np.ascontiguousarray(self.train_properties, dtype=np.float64))}, path)

    @classmethod
    def load(cls, path: Path, config: ModelConfig | None = None) -> "FTCPModel":
        """Read a checkpoint of :meth:`save` (weights-only loading); ``config`` may change only the
        sampling fields (:meth:`ModelConfig.for_checkpoint`)."""
        from benchmark.representations.ftcp import FTCPLayout, FTCPScaler

        data, _, effective = cls.read_checkpoint(path, CHECKPOINT_FORMAT, config)
        model = cls(effective)
        model.build(int(data["n_rows"]), int(data["n_cols"]))
        model.net.load_state_dict(data["weights"], strict=True)
        model.net.eval()
        model.layout = FTCPLayout.from_dict(data["layout"])
        model.scaler = FTCPScaler.from_dict(data["scaler"])
        model.prop_min = np.asarray(data["prop_min"], dtype=np.float64)
        model.prop_max = np.asarray(data["prop_max"], dtype=np.float64)
        model.train_latents = data["train_latents"].numpy()
        model.train_properties = data["train_properties"].numpy().reshape(len(model.train_latents), -1)
        return model

    # ------------------------------------------------------------------ decoding
    def decode_latents(self, z: np.ndarray, *, device: str = "cpu") -> tuple[np.ndarray, int]:
        """Scaled arrays (n, R, C) in [0, 1] decoded from latents (n, latent), and the number of
        decoder forwards (batches of ``sample_batch_size``)."""
        import torch

        net = self._trained().to(device).eval()
        out, forwards = [], 0
        with torch.no_grad():
            for start in range(0, len(z), self.config.sample_batch_size):
                chunk = torch.as_tensor(np.asarray(z[start:start + self.config.sample_batch_size], dtype=np.float32), device=device)
                out.append(net.decode(chunk).cpu().numpy())
                forwards += 1
        arrays = np.concatenate(out) if out else np.zeros((0, net.n_rows, net.n_cols), dtype=np.float32)
        return arrays.astype(np.float32), forwards

    def to_crystals(self, scaled: np.ndarray, labels: Sequence[str | None] | None = None) -> tuple[list[Crystal], int]:
        """Crystals from scaled arrays (n, R, C), one per array and in order (unscaled with the
        training scaler, then the representation's ``decode``), and how many did not decode (each
        a zero-atom crystal in the cell its lattice rows state, with ``properties["decode_error"]``)."""
        from benchmark.representations.ftcp import decode

        raw = self.scaler.inverse_transform(np.asarray(scaled, dtype=np.float32))
        crystals: list[Crystal] = []
        failed = 0
        for i, array in enumerate(raw):
            try:
                out = decode(array, self.layout)
                crystal, reason = out.crystal, out.reason
            except Exception as exc:  # a representation error on one array must not lose the batch
                crystal, reason = None, f"{type(exc).__name__}: {exc}"
            if crystal is not None:
                crystals.append(crystal)
                continue
            failed += 1
            lengths, angles = _array_cell(array, self.layout)
            label = labels[i] if labels is not None else f"undecodable-{i}"
            crystals.append(_empty(lengths, angles, str(reason or "decode failed"), label))
        return crystals, failed

    def encode_scaled(self, crystals: Sequence[Crystal]) -> tuple[np.ndarray, list[int], dict[int, str]]:
        """Scaled arrays of the crystals the layout holds, their indices in ``crystals`` and the
        reasons of the others ({index: reason})."""
        from benchmark.representations.ftcp import encode_many

        self._trained()
        arrays, skipped = encode_many(list(crystals), self.layout, progress=False)
        reasons = {int(i): str(r) for i, r in skipped}
        ok = [i for i in range(len(crystals)) if i not in reasons]
        if not ok:
            return np.zeros((0, self.net.n_rows, self.net.n_cols), dtype=np.float32), ok, reasons
        return np.asarray(self.scaler.transform(arrays), dtype=np.float32), ok, reasons

    # ------------------------------------------------------------------ capabilities
    def sample(self, n: int, *, seed: int, device: str = "cpu") -> SampleBatch:
        """``n`` crystals decoded from z ~ N(0, I) (all drawn at once from a generator seeded with
        ``seed``, so they do not depend on the batching); undecodable arrays as zero-atom crystals
        with ``properties["decode_error"]``; ``model_evaluations``: decoder forwards."""
        import torch

        self._trained()
        z = torch.randn(int(n), self.config.latent_dim, generator=torch.Generator().manual_seed(int(seed))).numpy()
        arrays, forwards = self.decode_latents(z, device=device)
        crystals, failed = self.to_crystals(arrays)
        self.last_sample_summary = {"n": int(n), "decode_failed": failed, "model_evaluations": forwards}
        return SampleBatch(crystals, model_evaluations=forwards)

    def reconstruct(self, crystals: Sequence[Crystal], *, seed: int, device: str = "cpu") -> list[Crystal]:
        """Each crystal encoded and its mean latent decoded (module doc); one output per input."""
        x, ok, reasons = self.encode_scaled(crystals)
        out: list[Crystal | None] = [None] * len(crystals)
        if ok:
            arrays, _ = self.decode_latents(self._latents(x, seed=seed, sampled=False, device=device), device=device)
            decoded, _ = self.to_crystals(arrays, [crystals[i].label for i in ok])
            for i, c in zip(ok, decoded):
                out[i] = c
        for i, reason in reasons.items():
            c = crystals[i]
            out[i] = _empty(c.lengths, c.angles, f"not encodable as FTCP: {reason}", c.label)
        return [c for c in out if c is not None]

    def optimize(self, crystals: Sequence[Crystal], *, seed: int, device: str = "cpu", steps: int = 5000, lr: float = 1e-3,
                 n_decode: int = 10) -> list[list[Crystal]]:
        """CDVAE's property optimisation (module doc): Adam on the mean latents of ``crystals``
        minimising the sum of the property branch's first output (the first of ``properties``),
        decoded after each of :func:`decode_steps`; the step-major lists of ``Model.optimize``. A
        start the layout cannot hold gives a zero-atom crystal in its cell at every step. The
        branch's predictions along the way: :attr:`last_optimize_summary`."""
        import torch

        if not self.config.properties:
            raise NotSupported(f"{self.name} was trained without properties (model.properties is empty), so it has no property "
                               "branch to optimise")
        net = self._trained().to(device).eval()
        x, ok, reasons = self.encode_scaled(crystals)
        if not ok:
            raise ValueError(f"{self.name}: none of the starting crystals is encodable as FTCP ({list(reasons.values())[:3]})")
        start = self._latents(x, seed=seed, sampled=False, device=device)
        z = torch.tensor(start, device=device, requires_grad=True)
        opt = torch.optim.Adam([z], lr=lr)
        for p in net.parameters():
            p.requires_grad_(False)
        rows: list[list[Crystal]] = []
        done = 0
        summary: dict[str, Any] = {"steps": [], "predicted": [], "property": self.config.properties[0]}
        try:
            for stop in decode_steps(int(steps), int(n_decode)):
                while done < stop:
                    opt.zero_grad()
                    with torch.enable_grad():
                        value = net.predict_property(z)[:, 0].sum()
                        value.backward()
                    opt.step()
                    done += 1
                with torch.no_grad():
                    scaled = net.predict_property(z)[:, 0].cpu().numpy().astype(np.float64)
                span = self.prop_max[0] - self.prop_min[0]
                summary["steps"].append(done)
                summary["predicted"].append((scaled * (span if span > 0 else 1.0) + self.prop_min[0]).tolist())
                arrays, _ = self.decode_latents(z.detach().cpu().numpy(), device=device)
                decoded, _ = self.to_crystals(arrays, [crystals[i].label for i in ok])
                row = [_empty(c.lengths, c.angles, f"not encodable as FTCP: {reasons[i]}", c.label) if i in reasons else None
                       for i, c in enumerate(crystals)]
                for i, c in zip(ok, decoded):
                    row[i] = c
                rows.append([c for c in row if c is not None])
        finally:
            for p in net.parameters():
                p.requires_grad_(True)
        self.last_optimize_summary = summary
        return rows

    def design_latents(self, n: int, conditions: Mapping[str, Any], *, seed: int) -> np.ndarray:
        """The inverse-design latents (n, latent) of main.py:144-161 for target ``conditions``
        (module doc): the ``design_nearest`` nearest training crystals, tiled, plus N(0, 1) x
        ``design_scale`` from a generator seeded with ``seed``."""
        import torch

        names = list(self.config.properties)
        if not conditions:
            raise ValueError(f"{self.name}: conditional_sample needs at least one target among {names}")
        unknown = sorted(set(conditions) - set(names))
        if unknown:
            raise ValueError(f"{self.name} was trained on the properties {names}, not {unknown}")
        if len(self.train_latents) == 0:
            raise RuntimeError(f"{self.name}: this model has no training latents to design from")
        cols = [names.index(k) for k in conditions]
        try:
            target = np.array([float(conditions[k]) for k in conditions], dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name}: targets must be numbers, got {dict(conditions)}") from None
        span = np.where(self.prop_max[cols] - self.prop_min[cols] > 0, self.prop_max[cols] - self.prop_min[cols], 1.0)
        dist = np.sqrt((((self.train_properties[:, cols] - target) / span) ** 2).sum(axis=1))
        nearest = np.argsort(dist, kind="stable")[: self.config.design_nearest]
        base = self.train_latents[nearest[np.arange(int(n)) % len(nearest)]]  # np.tile of main.py:159, cut to n
        noise = torch.randn(int(n), self.config.latent_dim, generator=torch.Generator().manual_seed(int(seed))).numpy()
        return (base + noise * self.config.design_scale).astype(np.float32)

    def conditional_sample(self, n: int, conditions: Mapping[str, Any], *, seed: int, device: str = "cpu") -> SampleBatch:
        """``n`` crystals by the release's inverse design for the targets ``conditions`` (property
        name -> value, among ``properties``); undecodable ones as zero-atom crystals."""
        if not self.config.properties:
            raise NotSupported(f"{self.name} was trained without properties (model.properties is empty): nothing to condition on")
        self._trained()
        z = self.design_latents(n, conditions, seed=seed)
        arrays, forwards = self.decode_latents(z, device=device)
        crystals, failed = self.to_crystals(arrays)
        self.last_sample_summary = {"n": int(n), "decode_failed": failed, "model_evaluations": forwards}
        return SampleBatch(crystals, model_evaluations=forwards)
