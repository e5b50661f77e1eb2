"""What a task is: what is asked of a model (or read from a sample file) and how it is scored."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal


@dataclass(frozen=True)
class Task:
    """A task.

    Attributes:
        name: registry name (``generation``...).
        description: one line.
        reference: where the crystals samples are compared with come from: ``split`` (a dataset
            split, generation), ``paired`` (the crystal each sample reconstructs), or ``none``.
        evaluable: ``python -m benchmark evaluate`` can score a sample file for it.
        protocol: the published protocol in one sentence (counts, steps), for the README and records.
    """

    name: str
    description: str
    reference: str
    evaluable: bool = True
    protocol: str = ""


# ------------------------------------------------------------------ run configs (frozen, with presets)
@dataclass(frozen=True)
class GenerationConfig:
    """Generation: ``n_samples`` crystals from the prior, sampled in batches (CDVAE: 10,000)."""

    n_samples: int = 10000
    batch_size: int = 500
    presets: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {"n_samples": 200, "batch_size": 50}, "paper": {}}


@dataclass(frozen=True)
class ReconstructionConfig:
    """Reconstruction of the first ``limit`` test crystals (None: all, as published)."""

    limit: int | None = None
    batch_size: int = 256
    presets: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {"limit": 64, "batch_size": 32}, "paper": {}}


@dataclass(frozen=True)
class OptimizationConfig:
    """Property optimisation (CDVAE 5.3): ``num_opt`` test crystals, ``steps`` latent gradient steps
    with learning rate ``lr``, ``n_decode`` crystals decoded along each trajectory."""

    num_opt: int = 100
    steps: int = 5000
    lr: float = 1e-3
    n_decode: int = 10
    presets: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {"num_opt": 10, "steps": 100, "n_decode": 2}, "paper": {}}


@dataclass(frozen=True)
class SamplingSpeedConfig:
    """Wall time to generate ``n_samples`` crystals in batches of ``batch_size``; ``warmup_batches``
    batches are run first and not timed (CUDA kernels, caches)."""

    n_samples: int = 10000
    batch_size: int = 500
    warmup_batches: int = 1
    presets: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {"n_samples": 100, "batch_size": 50}, "paper": {}}


@dataclass(frozen=True)
class GroundStateConfig:
    """Ground-state performance (DP-CDVAE Table III): ``n_samples`` generated crystals relaxed by
    ``relaxer`` with ``optimizer`` to ``fmax`` eV/Å in at most ``steps`` steps (``time_limit_s`` per
    crystal) at ``pressure_gpa`` (None: the dataset's, 10 GPa for Carbon-24, else 0)."""

    n_samples: int = 100
    batch_size: int = 100
    relaxer: str = "chgnet"
    optimizer: Literal["FIRE", "BFGS"] = "FIRE"
    fmax: float = 0.05
    steps: int = 500
    time_limit_s: float = 300.0
    pressure_gpa: float | None = None
    presets: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {"n_samples": 10, "batch_size": 10, "steps": 200}, "paper": {}}


@dataclass(frozen=True)
class ConditionalGenerationConfig:
    """Conditional generation (Con-CDVAE, Sections 2.3 and 3; Tables 2 and B1; Figures 2-4):
    ``n_samples`` crystals for one condition set, asked of the model in batches of ``batch_size``
    (``Model.conditional_sample(n, conditions, seed=..., device=...)``) and checked by independent
    property oracles (:mod:`benchmark.metrics.conditional`).

    Attributes:
        n_samples: crystals per condition set (the paper: 200, the output of its 20,000:200 filter).
        batch_size: crystals per model call (each batch is seeded and resumable).
        conditions: property -> target, one condition set per run: numbers for ``band_gap`` (eV),
            ``formation_energy_per_atom`` (eV/atom) or any property an oracle named in ``oracles``
            predicts; class labels or codes for ``BG_type`` (zero = 0, non-zero = 1), ``FM_type``
            (high = 0, low = 1) and ``CS_type`` / ``crystal_system`` (triclinic 0, trigonal 1,
            monoclinic 2, orthorhombic 3, tetragonal 4, hexagonal 5, cubic 6). Stored with canonical
            names and labels; the model is given the numbers and the integer class codes of the
            data's columns.
        tolerances: property -> success window of a continuous target (defaults: 0.5 eV band gap,
            0.5 eV/atom formation energy; not from the paper, see the metric module).
        oracles: property -> checker: an oracle name (``list oracles``) or ``symmetry`` (``CS_type``).
            Defaults: the Con-CDVAE CGCNN models of the dataset (MP-20's: ``cgcnn-mpall20-fm``,
            ``-bg``, ``-Cfm``, ``-Cbg``) and pymatgen symmetry analysis (symprec 0.2, angle 5°).
    """

    n_samples: int = 200
    batch_size: int = 200
    conditions: dict[str, Any] = field(default_factory=dict)
    tolerances: dict[str, float] = field(default_factory=dict)
    oracles: dict[str, str] = field(default_factory=dict)
    presets: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {"n_samples": 20, "batch_size": 10}, "paper": {}}


#: external pressure the dataset's crystals were searched / relaxed at (GPa)
DATASET_PRESSURE_GPA: dict[str, float] = {"carbon_24": 10.0}


TASK_CONFIGS: dict[str, type] = {
    "generation": GenerationConfig,
    "reconstruction": ReconstructionConfig,
    "property_optimization": OptimizationConfig,
    "sampling_speed": SamplingSpeedConfig,
    "ground_state": GroundStateConfig,
    "conditional_generation": ConditionalGenerationConfig,
}
