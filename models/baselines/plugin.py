"""Baseline models: the ceiling and the floor of the generation metrics.

* :class:`ReplayModel` ("replay") samples training crystals back, uniformly with replacement: a
  model that has learned the training distribution perfectly (and is not novel at all), so its
  distribution metrics are the best any model can expect.
* :class:`RandomModel` ("random") knows only simple statistics of the training set: the
  distribution of the number of atoms, the element frequencies and the mean and spread of the
  lattice parameters; atoms are placed uniformly at random in the cell. Its metrics are the floor.

Neither has hyper-parameters worth tuning, trains in a moment, and needs no network; a checkpoint
is a single ``.npz`` of plain arrays (read with ``allow_pickle=False``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from benchmark.crystal import Crystal
from benchmark.models.base import SAMPLE, Model, ModelConfig, SampleBatch

CHECKPOINT_FORMAT = 1
ANGLE_RANGE = (60.0, 120.0)  # degrees; sampled angles are clipped to it
MIN_LENGTH_FRACTION = 0.5  # sampled scaled lengths are clipped to this fraction of the smallest seen


# ---------------------------------------------------------------------------------- helpers


def _pack(crystals: Sequence[Crystal]) -> dict[str, np.ndarray]:
    """Concatenated arrays of crystals (CDVAE's layout): atoms, coordinates, counts, lattices, labels."""
    if not crystals:
        return {
            "atomic_numbers": np.zeros(0, dtype=np.int64),
            "frac_coords": np.zeros((0, 3)),
            "num_atoms": np.zeros(0, dtype=np.int64),
            "lengths": np.zeros((0, 3)),
            "angles": np.zeros((0, 3)),
            "labels": np.array([], dtype=str),
        }
    return {
        "atomic_numbers": np.concatenate([c.atomic_numbers for c in crystals]).astype(np.int64),
        "frac_coords": np.concatenate([c.frac_coords for c in crystals]).astype(np.float64).reshape(-1, 3),
        "num_atoms": np.array([c.num_atoms for c in crystals], dtype=np.int64),
        "lengths": np.stack([c.lengths for c in crystals]).astype(np.float64),
        "angles": np.stack([c.angles for c in crystals]).astype(np.float64),
        "labels": np.array(["" if c.label is None else str(c.label) for c in crystals], dtype=str),
    }


def _meta(model: Model) -> dict[str, np.ndarray]:
    """Checkpoint metadata as string arrays (no pickled objects)."""
    return {
        "model": np.array(model.name),
        "format": np.array(CHECKPOINT_FORMAT, dtype=np.int64),
        "config_json": np.array(json.dumps(model.config.as_dict(), sort_keys=True)),
    }


def _read_npz(path: Path, expected_model: str) -> dict[str, np.ndarray]:
    with np.load(Path(path), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    found = str(arrays.get("model", np.array("?")))
    if found != expected_model:
        raise ValueError(f"{path}: a checkpoint of model {found!r}, not {expected_model!r}")
    if int(arrays.get("format", -1)) != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: checkpoint format {int(arrays.get('format', -1))}, this version reads {CHECKPOINT_FORMAT}")
    return arrays


def _config_from(arrays: dict[str, np.ndarray], cls: type[ModelConfig], given: ModelConfig | None) -> ModelConfig:
    """The saved config, or ``given`` when it differs from it only in sampling settings."""
    saved = cls(**json.loads(str(arrays["config_json"])))
    return saved.for_checkpoint(given)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` to exactly ``path`` (numpy appends ``.npz`` to a name without it; a file handle avoids that)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


# ---------------------------------------------------------------------------------- replay


@dataclass(frozen=True)
class ReplayConfig(ModelConfig):
    """Replay's config.

    Attributes:
        max_stored: keep at most this many training crystals (a seeded random subset); None keeps all.
    """

    presets: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {}, "paper": {}}
    max_stored: int | None = None


class ReplayModel(Model):
    """Samples training crystals uniformly at random with replacement: the ceiling of distribution metrics."""

    name: ClassVar[str] = "replay"
    description: ClassVar[str] = "baseline: training crystals drawn at random with replacement (ceiling of distribution metrics, no novelty)"
    capabilities: ClassVar[frozenset[str]] = frozenset({SAMPLE})
    Config: ClassVar[type[ModelConfig]] = ReplayConfig

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__(config)
        self._arrays: dict[str, np.ndarray] | None = None
        self._offsets: np.ndarray | None = None

    def fit(self, train: Sequence[Crystal], val: Sequence[Crystal], run_dir: Path, *, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
        """Store the training crystals (a seeded subset of ``max_stored`` if set). Nothing to resume."""
        crystals = list(train)
        if not crystals:
            raise ValueError("replay needs at least one training crystal")
        max_stored = getattr(self.config, "max_stored", None)
        if max_stored is not None and len(crystals) > max_stored:
            keep = np.sort(np.random.default_rng(seed).choice(len(crystals), size=max_stored, replace=False))
            crystals = [crystals[i] for i in keep]
        self._set(_pack(crystals))
        return {"n_train": len(train), "n_stored": len(crystals)}

    def _set(self, arrays: dict[str, np.ndarray]) -> None:
        self._arrays = arrays
        self._offsets = np.concatenate([[0], np.cumsum(arrays["num_atoms"])]).astype(np.int64)

    @property
    def n_stored(self) -> int:
        return 0 if self._arrays is None else int(len(self._arrays["num_atoms"]))

    def _crystal(self, i: int) -> Crystal:
        assert self._arrays is not None and self._offsets is not None
        a, b = int(self._offsets[i]), int(self._offsets[i + 1])
        label = str(self._arrays["labels"][i]) or None
        return Crystal(self._arrays["atomic_numbers"][a:b], self._arrays["frac_coords"][a:b], self._arrays["lengths"][i], self._arrays["angles"][i], label=label)

    def sample(self, n: int, *, seed: int, device: str = "cpu") -> SampleBatch:
        """``n`` training crystals drawn with ``numpy.random.default_rng(seed)`` (labels: their training ids)."""
        if self._arrays is None or self.n_stored == 0:
            raise RuntimeError("replay: fit or load the model before sampling")
        idx = np.random.default_rng(seed).integers(0, self.n_stored, size=int(n))
        return SampleBatch([self._crystal(int(i)) for i in idx], model_evaluations=0)

    def save(self, path: Path) -> None:
        """One ``.npz``: the stored crystals as concatenated arrays, plus model name, format and config."""
        if self._arrays is None:
            raise RuntimeError("replay: nothing to save, fit the model first")
        _save_npz(path, {**self._arrays, **_meta(self)})

    @classmethod
    def load(cls, path: Path, config: ModelConfig | None = None) -> "ReplayModel":
        """Read a checkpoint written by :meth:`save` (the saved config unless ``config`` is given)."""
        arrays = _read_npz(path, cls.name)
        model = cls(_config_from(arrays, ReplayConfig, config))
        model._set({k: arrays[k] for k in ("atomic_numbers", "frac_coords", "num_atoms", "lengths", "angles", "labels")})
        return model


# ---------------------------------------------------------------------------------- random


@dataclass(frozen=True)
class RandomConfig(ModelConfig):
    """Random's config: no hyper-parameters."""

    presets: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {}, "paper": {}}


_STAT_KEYS = ("n_atoms_values", "n_atoms_probs", "elements", "element_probs", "length_mean", "length_std", "angle_mean", "angle_std", "min_scaled_length")


class RandomModel(Model):
    """Random crystals matching simple training statistics: the floor of the generation metrics.

    ``fit`` records the empirical distribution of the number of atoms N, the frequency of each
    element over all atoms, and the mean and standard deviation of the lattice lengths divided by
    N^(1/3) (CDVAE's length scaling) and of the angles. ``sample`` draws N, then each atom's
    element independently, uniform fractional coordinates in [0, 1), lengths
    N^(1/3) * normal(mean, std) with the scaled length clipped to at least half the smallest scaled
    length seen, and angles normal(mean, std) clipped to [60, 120] degrees.
    """

    name: ClassVar[str] = "random"
    description: ClassVar[str] = "baseline: random atoms and lattices matching training statistics (atom counts, elements, lattice mean/std; the floor)"
    capabilities: ClassVar[frozenset[str]] = frozenset({SAMPLE})
    Config: ClassVar[type[ModelConfig]] = RandomConfig

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__(config)
        self.stats: dict[str, np.ndarray] | None = None

    def fit(self, train: Sequence[Crystal], val: Sequence[Crystal], run_dir: Path, *, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
        """Record the training statistics (deterministic; ``seed`` is unused). Nothing to resume."""
        crystals = [c for c in train if c.num_atoms > 0]
        if not crystals:
            raise ValueError("random needs at least one non-empty training crystal")
        counts = np.array([c.num_atoms for c in crystals], dtype=np.int64)
        n_values, n_counts = np.unique(counts, return_counts=True)
        z_all = np.concatenate([c.atomic_numbers for c in crystals]).astype(np.int64)
        elements, z_counts = np.unique(z_all, return_counts=True)
        scaled = np.stack([c.lengths for c in crystals]) / np.cbrt(counts.astype(np.float64))[:, None]
        angles = np.stack([c.angles for c in crystals])
        self.stats = {
            "n_atoms_values": n_values.astype(np.int64),
            "n_atoms_probs": n_counts / n_counts.sum(),
            "elements": elements.astype(np.int64),
            "element_probs": z_counts / z_counts.sum(),
            "length_mean": scaled.mean(axis=0),
            "length_std": scaled.std(axis=0),
            "angle_mean": angles.mean(axis=0),
            "angle_std": angles.std(axis=0),
            "min_scaled_length": np.array(float(scaled.min())),
        }
        return {"n_train": len(crystals), "n_elements": int(len(elements)), "n_atoms_range": [int(n_values.min()), int(n_values.max())]}

    def sample(self, n: int, *, seed: int, device: str = "cpu") -> SampleBatch:
        """``n`` random crystals drawn with ``numpy.random.default_rng(seed)`` (labels ``random-<i>``)."""
        if self.stats is None:
            raise RuntimeError("random: fit or load the model before sampling")
        s = self.stats
        rng = np.random.default_rng(seed)
        floor = MIN_LENGTH_FRACTION * float(s["min_scaled_length"])
        out: list[Crystal] = []
        for i in range(int(n)):
            n_atoms = int(rng.choice(s["n_atoms_values"], p=s["n_atoms_probs"]))
            z = rng.choice(s["elements"], size=n_atoms, p=s["element_probs"])
            frac = rng.random((n_atoms, 3))
            scaled = np.maximum(rng.normal(s["length_mean"], s["length_std"]), floor)
            lengths = np.cbrt(float(n_atoms)) * scaled
            angles = np.clip(rng.normal(s["angle_mean"], s["angle_std"]), *ANGLE_RANGE)
            out.append(Crystal(z, frac, lengths, angles, label=f"random-{i}"))
        return SampleBatch(out, model_evaluations=0)

    def save(self, path: Path) -> None:
        """One ``.npz``: the statistics as arrays, plus model name, format and config."""
        if self.stats is None:
            raise RuntimeError("random: nothing to save, fit the model first")
        _save_npz(path, {**self.stats, **_meta(self)})

    @classmethod
    def load(cls, path: Path, config: ModelConfig | None = None) -> "RandomModel":
        """Read a checkpoint written by :meth:`save` (the saved config unless ``config`` is given)."""
        arrays = _read_npz(path, cls.name)
        model = cls(_config_from(arrays, RandomConfig, config))
        model.stats = {k: arrays[k] for k in _STAT_KEYS}
        return model


__all__ = ["ReplayModel", "RandomModel", "ReplayConfig", "RandomConfig"]
