"""The ``crystens_gan`` and ``crystens_wgan`` model plugins: the GANs of CrysTens (Alverson et al.,
Digital Discovery 3, 62, 2024, Appendix B.1 and B.2) trained on CrysTens tensors
(:mod:`benchmark.representations.crystens`, section 3.1) and decoded back to crystals (section 3.2).

Data: the training crystals are encoded once with the representation's ``PAPER`` layout (min-max
ranges, entries in [0, 1]; crystals over 52 atoms or without atoms are skipped and counted). The
networks read a (B, 64, 64, 4) channel-last batch as a (B, 1, 64, 64, 4) volume
(:mod:`~benchmark.models.crystens_gan.network`).

Training goes through :func:`benchmark.training.train_module` (checkpoints every epoch, resume after
a kill) with Lightning's manual optimisation and two Adam optimisers (discriminator / critic first,
generator second):

* ``crystens_gan`` (B.1), per iteration as the released ``train_vanilla_gan.py``: one
  discriminator update on a real batch (target 1), one on a generated batch (target 0), one
  generator update through the discriminator with target 1 (the non-saturating loss), all binary
  cross-entropy. The released Keras script freezes the discriminator inside its combined model with
  ``trainable = False``, which in Keras (TF >= 2.0) also runs its BatchNormalization layers in
  inference mode; so here the generator step does not step the discriminator's optimiser and
  normalises with the discriminator's running statistics (dropout on), while the discriminator's
  own updates use batch statistics. ``discriminator_batches = "joint"`` (not the paper's) makes one
  discriminator update on a batch of real and generated tensors together.
* ``crystens_wgan`` (B.2): every batch is one critic update with
  ``-D(x) + D(G(z)) + lambda (||grad D(x_hat)|| - 1)^2``; every ``n_critic``-th batch is followed by
  one generator update with ``-D(G(z))``.

An epoch draws ``epoch_batches x floor(N / batch_size)`` batches with replacement (the released
loops' epochs: half a pass for B.1, ``n_critic`` passes for B.2; see the configs).

No validation loss: a GAN has no held-out likelihood, and its adversarial losses are not comparable
across epochs (they measure the generator against a discriminator that changes too), so picking the
"best" epoch by them would be arbitrary. Training runs without a validation loader and keeps the
last epoch (``keep="last"``), which is also what the released scripts keep (they overwrite the saved
models every epoch). ``val`` is not used.

Sampling: ``sample(n, seed)`` draws all n noise vectors from one ``torch.Generator`` seeded with
``seed`` (so the crystals of a seed do not depend on ``sample_batch_size``), runs the generator (in
eval mode) in batches of ``sample_batch_size`` (one model evaluation each) and decodes every tensor
with the representation's ``decode``. A tensor that does not decode becomes a zero-atom crystal in
the cell its header entries give (first atom slot's copies, clipped into the layout's ranges), with
``properties["decode_error"]`` the reason, so outputs stay aligned; :attr:`CrysTensGANModel.last_sample_summary`
and the fit summary count them. The raw tensors are returned as ``artifacts["crystens_tensor"]``.

Checkpoint (``save``): one ``torch.save`` of plain values and tensors: model name, format, config
(dict), the representation layout (``Layout.to_dict()``) and the generator's weights (the
discriminator / critic is needed only for training; the Lightning checkpoints under the run
directory keep it for resuming).
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np

from benchmark.crystal import Crystal
from benchmark.models.base import SAMPLE, Model, ModelConfig, SampleBatch
from benchmark.models.crystens_gan.config import CrysTensGANConfig, CrysTensWGANConfig

#: format of the checkpoints ``save`` writes
CHECKPOINT_FORMAT = 1
#: the header indices of the lattice entries a, b, c, alpha, beta, gamma (section 3.1)
LATTICE_INDICES = (4, 5, 6, 7, 8, 9)
N_HEADER = 12
#: generated tensors decoded after fit, for the summary's decode share and consistency
CHECK_SAMPLES = 16


# ---------------------------------------------------------------------------------- measures
def lattice_copy_variance(tensors: np.ndarray, n_slots: int) -> float:
    """Mean variance of the repeated lattice entries: for each tensor (``tensors``: (n, 64, 64, 4),
    normalised) and each of a, b, c, alpha, beta, gamma, the variance of its 8 x ``n_slots`` copies
    in the first ``n_slots`` atom slots (row and column, 4 channels), averaged. Section 3.2's
    indicator of whether a model "understands" the representation; 0 for an encoded crystal with at
    least ``n_slots`` atoms."""
    t = np.asarray(tensors, dtype=np.float64)
    s = slice(N_HEADER, N_HEADER + int(n_slots))
    out = []
    for k in LATTICE_INDICES:
        copies = np.concatenate([t[:, k, s, :].reshape(len(t), -1), t[:, s, k, :].reshape(len(t), -1)], axis=1)
        out.append(copies.var(axis=1))
    return float(np.mean(out)) if len(t) else float("nan")


def _header_cell(tensor: np.ndarray, layout: Any) -> tuple[np.ndarray, np.ndarray]:
    """(lengths, angles) of the cell a tensor's header states: the mean of the first atom slot's 8
    copies of a, b, c, alpha, beta, gamma, de-normalised, clipped into the layout's ranges (and
    replaced by the range's middle when not finite)."""
    from benchmark.representations.crystens import to_raw

    raw = to_raw(np.asarray(tensor, dtype=np.float64), layout)
    values = []
    for k, name in zip(LATTICE_INDICES, ("a", "b", "c", "alpha", "beta", "gamma")):
        lo, hi = getattr(layout, name)
        v = float(np.mean(np.concatenate([raw[k, N_HEADER, :], raw[N_HEADER, k, :]])))
        values.append(float(np.clip(v, lo, hi)) if np.isfinite(v) else (lo + hi) / 2)
    return np.array(values[:3]), np.array(values[3:])


def decode_tensors(tensors: np.ndarray, layout: Any) -> tuple[list[Crystal], int]:
    """Crystals from generated tensors (n, 64, 64, 4), one per tensor and in order, and the number
    that did not decode (each of those a zero-atom crystal in its header's cell, with
    ``properties["decode_error"]``)."""
    from benchmark.representations.crystens import decode

    crystals: list[Crystal] = []
    failed = 0
    for i, t in enumerate(tensors):
        out = decode(t, layout=layout, normalised=True)
        if out.crystal is not None:
            crystals.append(out.crystal)
            continue
        failed += 1
        lengths, angles = _header_cell(t, layout)
        crystals.append(Crystal(np.zeros(0, dtype=np.int64), np.zeros((0, 3)), lengths, angles,
                                properties={"decode_error": str(out.reason or "decode failed")}, label=f"undecodable-{i}"))
    return crystals, failed


# ---------------------------------------------------------------------------------- Lightning
@contextlib.contextmanager
def _batch_norm_frozen(module: Any) -> Iterator[None]:
    """Within the block every batch-norm layer of ``module`` normalises with its running statistics
    and leaves them unchanged (inference mode); the rest of ``module`` keeps its mode."""
    import torch

    layers = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
    for m in layers:
        m.eval()
    try:
        yield
    finally:
        for m in layers:
            m.train()


def _lightning_module(model: "CrysTensGANModel", hparams: dict[str, Any]) -> Any:
    """The LightningModule training ``model``'s networks (built by :meth:`CrysTensGANModel.build`)
    with manual optimisation; ``hparams``: plain values only (weights-only checkpoints)."""
    import lightning
    import torch

    from benchmark.models.crystens_gan.network import to_volume

    cfg = model.config
    wasserstein = isinstance(cfg, CrysTensWGANConfig)

    class GANModule(lightning.LightningModule):
        """Two networks, two Adam optimisers (0: discriminator / critic, 1: generator), manual
        optimisation; logs ``train_d_loss``, ``train_g_loss`` and ``train_loss`` (the
        discriminator's or critic's loss)."""

        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False
            self.save_hyperparameters(hparams)
            self.generator = model.generator
            self.discriminator = model.discriminator

        def noise(self, n: int) -> Any:
            return torch.randn(n, cfg.noise_dim, device=self.device)

        def _step(self, opt: Any, loss: Any) -> None:
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()

        def training_step(self, batch: Any, batch_idx: int) -> None:
            opt_d, opt_g = self.optimizers()
            real = to_volume(batch)
            n = real.shape[0]
            if wasserstein:
                self._wgan_step(real, n, batch_idx, opt_d, opt_g)
            else:
                self._gan_step(real, n, opt_d, opt_g)

        def _gan_step(self, real: Any, n: int, opt_d: Any, opt_g: Any) -> None:
            bce = torch.nn.functional.binary_cross_entropy_with_logits
            if cfg.discriminator_batches == "joint":
                with torch.no_grad():
                    fake = self.generator(self.noise(n))
                logits = self.discriminator(torch.cat([real, fake]))
                target = torch.cat([torch.ones(n, 1), torch.zeros(n, 1)]).to(logits)
                loss_d = 2 * bce(logits, target)  # = loss_real + loss_fake, each a batch mean
                self._step(opt_d, loss_d)
            else:
                d_real = self.discriminator(real)
                loss_real = bce(d_real, torch.ones_like(d_real))
                self._step(opt_d, loss_real)
                with torch.no_grad():
                    fake = self.generator(self.noise(n))
                d_fake = self.discriminator(fake)
                loss_fake = bce(d_fake, torch.zeros_like(d_fake))
                self._step(opt_d, loss_fake)
                loss_d = loss_real + loss_fake
            # The generator step sees the discriminator as the released combined model does: frozen
            # (discriminator.trainable = False, train_vanilla_gan.py:194), and Keras (TF >= 2.0) runs
            # a frozen BatchNormalization in inference mode, with its moving statistics, which this
            # step neither uses from the generated batch nor updates; dropout stays on.
            with _batch_norm_frozen(self.discriminator):
                d_gen = self.discriminator(self.generator(self.noise(n)))
            loss_g = bce(d_gen, torch.ones_like(d_gen))
            self._step(opt_g, loss_g)
            self._log(loss_d, loss_g, n)

        def _wgan_step(self, real: Any, n: int, batch_idx: int, opt_d: Any, opt_g: Any) -> None:
            from benchmark.models.crystens_gan.network import gradient_penalty

            with torch.no_grad():
                fake = self.generator(self.noise(n))
            gp = gradient_penalty(self.discriminator, real, fake)
            wasserstein_gap = self.discriminator(real).mean() - self.discriminator(fake).mean()
            loss_d = -wasserstein_gap + cfg.gp_weight * gp
            self._step(opt_d, loss_d)
            self.log("train_gp", gp.detach(), on_step=False, on_epoch=True, batch_size=n)
            self.log("train_wasserstein", wasserstein_gap.detach(), on_step=False, on_epoch=True, batch_size=n)
            loss_g = None
            if (batch_idx + 1) % cfg.n_critic == 0:
                loss_g = -self.discriminator(self.generator(self.noise(n))).mean()
                self._step(opt_g, loss_g)
            self._log(loss_d, loss_g, n)

        def _log(self, loss_d: Any, loss_g: Any, n: int) -> None:
            self.log("train_d_loss", loss_d.detach(), on_step=False, on_epoch=True, batch_size=n)
            if loss_g is not None:
                self.log("train_g_loss", loss_g.detach(), on_step=False, on_epoch=True, batch_size=n)
            self.log("train_loss", loss_d.detach(), on_step=False, on_epoch=True, batch_size=n, prog_bar=True)

        def configure_optimizers(self) -> Any:
            betas = (cfg.adam_beta1, cfg.adam_beta2)
            lr_d = cfg.lr_critic if wasserstein else cfg.lr_discriminator
            opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=lr_d, betas=betas, eps=cfg.adam_eps)
            opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr_generator, betas=betas, eps=cfg.adam_eps)
            return [opt_d, opt_g]

    return GANModule()


def batches_per_epoch(cfg: CrysTensGANConfig | CrysTensWGANConfig, n_train: int) -> int:
    """Batches one epoch draws: ``epoch_batches x floor(N / batch_size)`` (N / batch_size at least
    1), at least one, and for the WGAN a multiple of ``n_critic`` (each epoch ends with a generator
    update)."""
    full = max(1, n_train // cfg.batch_size)
    n = max(1, int(cfg.epoch_batches * full))
    if isinstance(cfg, CrysTensWGANConfig):
        n = -(-n // cfg.n_critic) * cfg.n_critic
    return n


# ---------------------------------------------------------------------------------- the plugins
class CrysTensGANModel(Model):
    """CrysTens' vanilla GAN (Appendix B.1) as a plugin; :class:`CrysTensWGANModel` is B.2."""

    name: ClassVar[str] = "crystens_gan"
    description: ClassVar[str] = "CrysTens GAN: Conv3D generator and discriminator on 64x64x4 CrysTens tensors, BCE (Alverson et al. 2024, B.1)"
    version: ClassVar[str] = "0.1"
    capabilities: ClassVar[frozenset[str]] = frozenset({SAMPLE})
    Config: ClassVar[type[ModelConfig]] = CrysTensGANConfig

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__(config)
        self.generator: Any = None
        self.discriminator: Any = None
        self.layout: Any = None
        #: ``{"n", "decode_failed", "model_evaluations"}`` of the last :meth:`sample` call
        self.last_sample_summary: dict[str, Any] = {}

    # ------------------------------------------------------------------ networks
    def build(self) -> None:
        """Build the generator and the discriminator from the config (initial weights from torch's
        global generator: seed it first)."""
        from benchmark.models.crystens_gan.network import GANDiscriminator, GANGenerator

        c = self.config
        self.generator = GANGenerator(c.noise_dim, c.generator_channels, c.bn_momentum, c.bn_eps)
        self.discriminator = GANDiscriminator(c.discriminator_channels, c.dropout, c.leaky_slope, c.bn_momentum, c.bn_eps,
                                              input_norm=c.discriminator_input_norm, dense_width=c.discriminator_dense_width)

    # ------------------------------------------------------------------ training
    def fit(self, train: Sequence[Crystal], val: Sequence[Crystal], run_dir: Path, *, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
        """Encode ``train`` as CrysTens, train the two networks for ``max_epochs`` (resuming from
        ``run_dir``'s last checkpoint), keep the last epoch; ``val`` is not used (module doc)."""
        import torch
        from torch.utils.data import DataLoader, RandomSampler

        from benchmark.representations.crystens import PAPER, encode_many
        from benchmark.settings import env_flag
        from benchmark.training import epoch_losses, train_module

        cfg = self.config
        arrays, skipped = encode_many(list(train), PAPER, progress=not env_flag("BENCHMARK_NO_PROGRESS"))
        if len(arrays) == 0:
            raise ValueError(f"{self.name}: none of the {len(train)} training crystals could be encoded as CrysTens ({skipped[:3]})")
        self.layout = PAPER
        torch.manual_seed(seed)
        self.build()
        data = torch.from_numpy(np.ascontiguousarray(arrays, dtype=np.float32))
        n_batches = batches_per_epoch(cfg, len(data))
        sampler = RandomSampler(data, replacement=True, num_samples=n_batches * cfg.batch_size, generator=torch.Generator().manual_seed(seed))
        loader = DataLoader(data, batch_size=cfg.batch_size, sampler=sampler, drop_last=True)
        hparams = {"model": self.name, "config": dataclasses.asdict(cfg), "layout": PAPER.to_dict(), "batches_per_epoch": n_batches}
        module = _lightning_module(self, hparams)
        summary = train_module(module, loader, None, Path(run_dir), max_epochs=cfg.max_epochs, seed=seed, device=device, keep="last")
        self.generator = module.generator.cpu().eval()
        self.discriminator = module.discriminator.cpu().eval()
        summary["train_loss_curve"] = epoch_losses(Path(run_dir), "train_loss")
        summary["generator_loss_curve"] = epoch_losses(Path(run_dir), "train_g_loss")
        summary["n_train"] = int(len(data))
        summary["n_train_skipped"] = len(skipped)
        summary["skipped_examples"] = skipped[:5]
        summary["batches_per_epoch"] = n_batches
        check = self.sample(CHECK_SAMPLES, seed=seed + 1_000_003, device="cpu")
        summary["check_sample"] = {"n": CHECK_SAMPLES, "decode_failed": self.last_sample_summary["decode_failed"],
                                   "lattice_copy_variance": lattice_copy_variance(check.artifacts["crystens_tensor"], 1)}
        return summary

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: Path) -> None:
        """One ``torch.save`` of plain values and tensors (module doc)."""
        import torch

        if self.generator is None or self.layout is None:
            raise RuntimeError(f"{self.name}: nothing to save, call fit() first")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": CHECKPOINT_FORMAT, "model": self.name, "config": dataclasses.asdict(self.config),
                    "layout": self.layout.to_dict(),
                    "generator": {k: v.detach().cpu() for k, v in self.generator.state_dict().items()}}, path)

    @classmethod
    def load(cls, path: Path, config: ModelConfig | None = None) -> "CrysTensGANModel":
        """Read a checkpoint of :meth:`save` (weights-only loading); ``config`` may change only the
        sampling fields (:meth:`ModelConfig.for_checkpoint`)."""
        from benchmark.representations.crystens import Layout

        data, _, effective = cls.read_checkpoint(path, CHECKPOINT_FORMAT, config)
        model = cls(effective)
        model.build()
        model.generator.load_state_dict(data["generator"], strict=True)
        model.generator.eval()
        model.discriminator = None
        model.layout = Layout.from_dict(data["layout"])
        return model

    # ------------------------------------------------------------------ sampling
    def generate(self, n: int, *, seed: int, device: str = "cpu") -> tuple[np.ndarray, int]:
        """``n`` raw generated tensors (n, 64, 64, 4) float32 in [0, 1] and the number of generator
        forwards; the noise of a seed is drawn at once, so the tensors do not depend on the batching."""
        import torch

        from benchmark.models.crystens_gan.network import from_volume

        if self.generator is None:
            raise RuntimeError(f"{self.name}: the model is not trained (fit or load it first)")
        z = torch.randn(int(n), self.config.noise_dim, generator=torch.Generator().manual_seed(int(seed)))
        net = self.generator.to(device).eval()
        out, forwards = [], 0
        with torch.no_grad():
            for start in range(0, int(n), self.config.sample_batch_size):
                out.append(from_volume(net(z[start:start + self.config.sample_batch_size].to(device))).float().cpu().numpy())
                forwards += 1
        tensors = np.concatenate(out) if out else np.zeros((0, 64, 64, 4), dtype=np.float32)
        return tensors.astype(np.float32), forwards

    def sample(self, n: int, *, seed: int, device: str = "cpu") -> SampleBatch:
        """``n`` crystals (one per generated tensor, undecodable ones as zero-atom crystals with
        ``properties["decode_error"]``); ``model_evaluations``: generator forwards;
        ``artifacts["crystens_tensor"]``: the raw tensors (n, 64, 64, 4)."""
        tensors, forwards = self.generate(n, seed=seed, device=device)
        crystals, failed = decode_tensors(tensors, self.layout)
        self.last_sample_summary = {"n": int(n), "decode_failed": failed, "model_evaluations": forwards}
        return SampleBatch(crystals, model_evaluations=forwards, artifacts={"crystens_tensor": tensors})


class CrysTensWGANModel(CrysTensGANModel):
    """CrysTens' Wasserstein GAN with gradient penalty (Appendix B.2) as a plugin."""

    name: ClassVar[str] = "crystens_wgan"
    description: ClassVar[str] = ("CrysTens WGAN-GP: spectrally normalised Conv3D generator and critic on CrysTens tensors, "
                                  "n_critic 5, lambda 10 (Alverson et al. 2024, B.2)")
    Config: ClassVar[type[ModelConfig]] = CrysTensWGANConfig

    def build(self) -> None:
        """Build the generator and the critic from the config."""
        from benchmark.models.crystens_gan.network import WGANCritic, WGANGenerator

        c = self.config
        self.generator = WGANGenerator(c.noise_dim, c.generator_channels, norm=c.generator_norm, spectral_norm=c.spectral_norm,
                                       leaky_slope=c.leaky_slope, ln_eps=c.ln_eps, bn_momentum=c.bn_momentum, bn_eps=c.bn_eps)
        self.discriminator = WGANCritic(c.critic_channels, spectral_norm=c.spectral_norm, dropout=c.dropout, leaky_slope=c.leaky_slope,
                                        ln_eps=c.ln_eps, input_norm=c.critic_input_norm, norm=c.critic_norm)


__all__ = ["CHECKPOINT_FORMAT", "CrysTensGANModel", "CrysTensWGANModel", "batches_per_epoch", "decode_tensors", "lattice_copy_variance"]
