"""``example_gaussian``: a small but real generative model, trained with the benchmark's loop.

The model learns, by maximum likelihood with Adam,

* a diagonal Gaussian over the six lattice parameters, scaled to be comparable across sizes:
  lengths divided by N^(1/3) (N the number of atoms) and angles in degrees divided by 90;
* a categorical distribution over elements (100 classes: atomic numbers 1..100; heavier atoms in
  the training data are ignored);

and keeps the empirical distribution of the number of atoms of the training set as data. Sampling
draws N, then the lattice (lengths clipped positive, angles to [60, 120] degrees), then N elements,
and places the atoms uniformly at random in fractional coordinates.

Training goes through :func:`benchmark.training.train_module`, so checkpoints and CSV logs land in
``run_dir`` and an interrupted ``fit`` resumes from ``run_dir/checkpoints/last.ckpt``. The
checkpoints hold only tensors and plain data (the hyper-parameters are a plain dict), which is what
``weights_only=True`` loading requires.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import lightning
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from benchmark.config import build
from benchmark.crystal import Crystal
from benchmark.models.base import SAMPLE, Model, ModelConfig, SampleBatch
from benchmark.safeload import load_weights
from benchmark.training import epoch_losses, train_module

N_ELEMENTS = 100  # classes: atomic numbers 1..100
MIN_LENGTH = 0.5  # Å: sampled lattice lengths are clipped to at least this
ANGLE_RANGE = (60.0, 120.0)
LOG_STD_RANGE = (-6.0, 4.0)


@dataclass(frozen=True)
class ExampleGaussianConfig(ModelConfig):
    """Hyper-parameters of ``example_gaussian``."""

    max_epochs: int = 50
    lr: float = 0.05
    batch_size: int = 64

    presets: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {"max_epochs": 20}, "paper": {"max_epochs": 200}}


def lattice_features(crystals: Sequence[Crystal]) -> torch.Tensor:
    """(B, 6) float32: lengths / N^(1/3), angles / 90."""
    rows = []
    for c in crystals:
        scale = max(c.num_atoms, 1) ** (1.0 / 3.0)
        rows.append(np.concatenate([np.asarray(c.lengths) / scale, np.asarray(c.angles) / 90.0]))
    return torch.as_tensor(np.array(rows, dtype=np.float32).reshape(-1, 6))


def element_counts(crystals: Sequence[Crystal]) -> torch.Tensor:
    """(B, 100) float32: how many atoms of each element (Z 1..100) each crystal has."""
    out = np.zeros((len(crystals), N_ELEMENTS), dtype=np.float32)
    for i, c in enumerate(crystals):
        z = np.asarray(c.atomic_numbers, dtype=np.int64)
        z = z[(z >= 1) & (z <= N_ELEMENTS)]
        np.add.at(out[i], z - 1, 1.0)
    return torch.as_tensor(out)


class GaussianModule(lightning.LightningModule):
    """The learnable parameters and the negative log-likelihood."""

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        # plain data only: checkpoints are read back with weights_only=True
        self.save_hyperparameters({"lr": float(lr)})
        self.lattice_mean = torch.nn.Parameter(torch.zeros(6))
        self.lattice_log_std = torch.nn.Parameter(torch.zeros(6))
        self.element_logits = torch.nn.Parameter(torch.zeros(N_ELEMENTS))

    def log_std(self) -> torch.Tensor:
        return self.lattice_log_std.clamp(*LOG_STD_RANGE)

    def loss(self, lattice: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        log_std = self.log_std()
        z = (lattice - self.lattice_mean) / log_std.exp()
        lattice_nll = (0.5 * z.pow(2) + log_std + 0.5 * math.log(2 * math.pi)).sum(dim=1).mean()
        log_p = torch.log_softmax(self.element_logits, dim=0)
        element_ce = -(counts * log_p).sum() / counts.sum().clamp(min=1.0)
        return lattice_nll + element_ce

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self.loss(*batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=batch[0].shape[0])
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_loss", self.loss(*batch), on_step=False, on_epoch=True, batch_size=batch[0].shape[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams["lr"])


class ExampleGaussianModel(Model):
    """Learned Gaussian lattice + categorical elements + empirical atom counts (see module doc)."""

    name = "example_gaussian"
    description = "example plugin: learned Gaussian over scaled lattice parameters + categorical over elements"
    version = "0.1"
    capabilities = frozenset({SAMPLE})
    Config = ExampleGaussianConfig

    def __init__(self, config: ExampleGaussianConfig | None = None) -> None:
        super().__init__(config)
        self.module: GaussianModule | None = None
        self.n_atoms_values: torch.Tensor | None = None
        self.n_atoms_probs: torch.Tensor | None = None

    # ------------------------------------------------------------------ training
    def _loader(self, crystals: Sequence[Crystal], shuffle: bool) -> DataLoader:
        data = TensorDataset(lattice_features(crystals), element_counts(crystals))
        return DataLoader(data, batch_size=self.config.batch_size, shuffle=shuffle, num_workers=0)

    def fit(self, train: Sequence[Crystal], val: Sequence[Crystal], run_dir: Path, *, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
        train = list(train)
        if not train:
            raise ValueError("example_gaussian needs at least one training crystal")
        values, counts = np.unique([c.num_atoms for c in train], return_counts=True)
        self.n_atoms_values = torch.as_tensor(values, dtype=torch.long)
        self.n_atoms_probs = torch.as_tensor(counts / counts.sum(), dtype=torch.float64)
        module = GaussianModule(lr=self.config.lr)
        val = list(val or [])
        summary = train_module(
            module,
            self._loader(train, shuffle=True),
            self._loader(val, shuffle=False) if val else None,
            Path(run_dir),
            max_epochs=self.config.max_epochs,
            seed=seed,
            device=device,
            progress=False,
        )
        self.module = module.cpu().eval()
        losses = epoch_losses(run_dir, "train_loss")
        summary["first_epoch_train_loss"] = losses[min(losses)] if losses else None
        summary["last_epoch_train_loss"] = losses[max(losses)] if losses else None
        return summary

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: Path) -> None:
        if self.module is None:
            raise RuntimeError("example_gaussian: nothing to save, call fit() first")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "state_dict": {k: v.detach().cpu() for k, v in self.module.state_dict().items()},
                "n_atoms_values": self.n_atoms_values,
                "n_atoms_probs": self.n_atoms_probs,
                "config": self.config.as_dict(),
            },
            path,
        )

    @classmethod
    def load(cls, path: Path, config: ModelConfig | None = None) -> "ExampleGaussianModel":
        data = load_weights(path)  # the harness's safe-loading policy: tensors and plain values only
        stored = build(cls.Config, data["config"], where="example_gaussian checkpoint config")
        model = cls(stored.for_checkpoint(config, str(path)))  # a differing trained setting is refused  # type: ignore[arg-type]
        module = GaussianModule(lr=model.config.lr)
        module.load_state_dict(data["state_dict"])
        model.module = module.eval()
        model.n_atoms_values = data["n_atoms_values"]
        model.n_atoms_probs = data["n_atoms_probs"]
        return model

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, *, seed: int, device: str = "cpu") -> SampleBatch:
        if self.module is None or self.n_atoms_values is None or self.n_atoms_probs is None:
            raise RuntimeError("example_gaussian: call fit() or load() before sample()")
        rng = np.random.default_rng(seed)
        with torch.no_grad():
            mean = self.module.lattice_mean.detach().cpu().double().numpy()
            std = self.module.log_std().exp().detach().cpu().double().numpy()
            p_elem = torch.softmax(self.module.element_logits.detach().cpu().double(), dim=0).numpy()
        p_elem = p_elem / p_elem.sum()
        values = self.n_atoms_values.cpu().numpy()
        p_n = self.n_atoms_probs.cpu().double().numpy()
        p_n = p_n / p_n.sum()
        crystals = []
        for i in range(int(n)):
            n_atoms = int(rng.choice(values, p=p_n))
            lattice = mean + std * rng.standard_normal(6)
            lengths = np.maximum(lattice[:3] * n_atoms ** (1.0 / 3.0), MIN_LENGTH)
            angles = np.clip(lattice[3:] * 90.0, *ANGLE_RANGE)
            z = rng.choice(N_ELEMENTS, size=n_atoms, p=p_elem) + 1
            frac = rng.random((n_atoms, 3))
            crystals.append(Crystal(z, frac, lengths, angles, label=f"example_gaussian:{seed}:{i}"))
        return SampleBatch(crystals, model_evaluations=None)
