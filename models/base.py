"""The model API every model plugin implements, built-in or third-party.

A model is a subclass of :class:`Model` with

* a unique ``name`` and a ``description``;
* declared ``capabilities``, a subset of :data:`CAPABILITIES`; the runner asks a model only for
  what it declares, and records "not supported" for the rest (the papers' "-");
* a frozen config dataclass (``Config``, a subclass of :class:`ModelConfig`) with named presets:
  ``smoke`` (minutes on a 2-core CPU) and ``paper`` (the published hyper-parameters);
* ``fit(train, val, run_dir)``, ``save(path)`` / ``load(path)`` (checkpoints are read as data: no
  pickled code), and one method per capability.

Every method that draws random numbers takes a ``seed``, so a CPU run is repeatable, and sampling
in batches is resumable: batch ``i`` of a seeded run is always the same crystals.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from benchmark.crystal import Crystal

SAMPLE = "sample"
RECONSTRUCT = "reconstruct"
OPTIMIZE = "optimize"
CONDITIONAL_SAMPLE = "conditional_sample"
CAPABILITIES = (SAMPLE, RECONSTRUCT, OPTIMIZE, CONDITIONAL_SAMPLE)
# (which capability a task needs is the task's declaration: benchmark.tasks.base.Task.capability)


class NotSupported(NotImplementedError):
    """The model does not have the capability a task needs."""


@dataclass(frozen=True)
class ModelConfig:
    """Base of every model's config: typed fields with defaults, frozen.

    Subclasses add fields and fill ``presets`` with ``{preset name: {field: value}}``; a preset is
    applied over the defaults, then a run file and ``--set`` overrides over it (see
    :mod:`benchmark.config`). ``dataset_presets`` optionally refines a preset per dataset (e.g.
    CDVAE's beta = 0.03 for Carbon-24). ``sampling_fields`` names the fields that only steer
    generation (step counts, strategies, filters): the runner leaves them out of the key of a
    trained model, so changing one reuses the model instead of training it again.
    """

    presets: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {}, "paper": {}}
    dataset_presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}
    sampling_fields: ClassVar[frozenset[str]] = frozenset()

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def trained_differences(self, other: "ModelConfig") -> dict[str, tuple[Any, Any]]:
        """The fields that are not ``sampling_fields`` whose values differ between this config and
        ``other``: field -> (this value, other value)."""
        mine, theirs = dataclasses.asdict(self), dataclasses.asdict(other)
        return {k: (mine[k], theirs.get(k)) for k in mine if k not in self.sampling_fields and mine[k] != theirs.get(k)}

    def for_checkpoint(self, requested: "ModelConfig | None", where: str = "checkpoint") -> "ModelConfig":
        """The config a model loaded from a checkpoint trained with this config runs with.

        ``requested`` None: this one. Otherwise ``requested``, whose sampling settings then take
        effect, provided every other field equals this one: a checkpoint cannot become another
        trained model, so a differing network or training setting is refused (ValueError naming
        the fields) rather than recorded as if it had run.
        """
        if requested is None:
            return self
        if type(requested) is not type(self):
            raise ValueError(f"{where}: a {type(self).__name__} checkpoint cannot be loaded with a {type(requested).__name__}")
        diff = self.trained_differences(requested)
        if diff:
            listed = "; ".join(f"{k}: trained with {a!r}, asked for {b!r}" for k, (a, b) in sorted(diff.items()))
            raise ValueError(f"{where} was trained with other settings than the config asks for ({listed}). Only the sampling "
                             f"settings ({', '.join(sorted(self.sampling_fields)) or 'none'}) can change on a trained model: "
                             "use the preset and --set values it was trained with, or train a new model.")
        return requested


@dataclass
class SampleBatch:
    """What a model returns for one batch of samples, with its cost.

    Attributes:
        crystals: the sampled crystals.
        model_evaluations: network evaluations used for the batch (e.g. 5,000 for CDVAE's
            annealed Langevin dynamics), or None when not meaningful.
        artifacts: per-sample arrays a model wants stored with the run and handed to the metrics
            (e.g. ``"crystens_tensor"``, the raw (n, 64, 64, 4) CrysTens output the CrysTens
            consistency metric reads); the first axis of each is the batch's n, in the order of
            ``crystals``. Plain numbers only (no Python objects). Empty by default.
    """

    crystals: list[Crystal]
    model_evaluations: int | None = None
    artifacts: dict[str, np.ndarray] = field(default_factory=dict)


class Model(abc.ABC):
    """Base class of every generative model plugin (see module doc)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    version: ClassVar[str] = "0.1"
    capabilities: ClassVar[frozenset[str]] = frozenset()
    Config: ClassVar[type[ModelConfig]] = ModelConfig

    def __init__(self, config: ModelConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()
        if not isinstance(self.config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}, got {type(self.config).__name__}")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        unknown = set(cls.capabilities) - set(CAPABILITIES)
        if unknown:
            raise TypeError(f"{cls.__name__} declares unknown capabilities {sorted(unknown)}; valid: {CAPABILITIES}")

    # ------------------------------------------------------------------ training and checkpoints
    @abc.abstractmethod
    def fit(self, train: Sequence[Crystal], val: Sequence[Crystal], run_dir: Path, *, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
        """Train on ``train`` (validate on ``val``), writing logs and checkpoints under ``run_dir``.

        Must resume from the last checkpoint in ``run_dir`` if one exists (an interrupted
        training). Returns a summary for the run record (e.g. epochs, final losses).
        """

    @abc.abstractmethod
    def save(self, path: Path) -> None:
        """Write the trained model to ``path`` (a file), loadable by :meth:`load` without pickled code."""

    @classmethod
    @abc.abstractmethod
    def load(cls, path: Path, config: ModelConfig | None = None) -> "Model":
        """Read a model written by :meth:`save`."""

    @classmethod
    def read_checkpoint(cls, path: Path, fmt: int, config: ModelConfig | None = None, *, legacy: Mapping[str, Any] | None = None,
                        hint: str = "") -> tuple[dict[str, Any], ModelConfig, ModelConfig]:
        """The shared first half of a :meth:`load`: the checkpoint's plain data under the project's
        safe-loading policy (:func:`benchmark.safeload.load_weights`: tensors and plain values, no
        pickled code), checked to be this model's and of format ``fmt``.

        Returns ``(data, stored, effective)``: ``stored`` the config the weights were trained with
        (``legacy`` fills fields older checkpoints lack), ``effective`` the one to run with
        (``config`` may change only sampling fields, :meth:`ModelConfig.for_checkpoint`).
        ``hint`` is appended to the format error (e.g. what to do about an old checkpoint).
        """
        from benchmark.config import build
        from benchmark.safeload import load_weights

        data = load_weights(path)
        if data.get("model") != cls.name:
            raise ValueError(f"{path}: not a {cls.name} checkpoint (it says model {data.get('model')!r})")
        if data.get("format") != fmt:
            raise ValueError(f"{path}: a {cls.name} checkpoint of format {data.get('format')!r}; this version reads format {fmt}"
                             + (f" {hint}" if hint else ""))
        stored = build(cls.Config, {**(legacy or {}), **data["config"]}, where=f"{cls.name} checkpoint config")
        return data, stored, stored.for_checkpoint(config, f"{path}")

    # ------------------------------------------------------------------ capabilities
    def sample(self, n: int, *, seed: int, device: str = "cpu") -> SampleBatch:
        """``n`` crystals from the prior. Same ``seed`` and ``n``, same crystals."""
        raise NotSupported(f"{self.name} cannot sample")

    def reconstruct(self, crystals: Sequence[Crystal], *, seed: int, device: str = "cpu") -> list[Crystal]:
        """Encode and decode each crystal (one output per input, in order)."""
        raise NotSupported(f"{self.name} cannot reconstruct")

    def optimize(self, crystals: Sequence[Crystal], *, seed: int, device: str = "cpu", steps: int = 5000, lr: float = 1e-3, n_decode: int = 10) -> list[list[Crystal]]:
        """Minimise the jointly trained property in latent space starting from each crystal.

        Returns ``n_decode`` lists (the saved steps, in order), each with one crystal per start:
        the step-major layout of CDVAE's ``eval_opt.pt``.
        """
        raise NotSupported(f"{self.name} cannot optimise a property")

    def conditional_sample(self, n: int, conditions: Mapping[str, Any], *, seed: int, device: str = "cpu") -> SampleBatch:
        """``n`` crystals conditioned on target properties."""
        raise NotSupported(f"{self.name} cannot sample conditionally")

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities
