"""Ground-state performance (DP-CDVAE, Section V.C, Table III): generated crystals relaxed by a
potential; match rate, <δ_rms>, ΔV_rms and ΔE_rms against their relaxed selves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Mapping, Sequence

from benchmark.metrics.oracles.base import RelaxSettings
from benchmark.tasks.base import Task, TaskConfig, TaskError, option

_RELAX = RelaxSettings()

#: external pressure the dataset's crystals were searched / relaxed at (GPa); others: 0
DATASET_PRESSURE_GPA: dict[str, float] = {"carbon_24": 10.0}


@dataclass(frozen=True)
class GroundStateConfig(TaskConfig):
    """Ground-state performance (DP-CDVAE Table III): ``n_samples`` generated crystals relaxed by
    ``relaxer`` with ``optimizer`` to ``fmax`` eV/Å in at most ``steps`` steps (``time_limit_s`` per
    crystal) at ``pressure_gpa`` (None: the dataset's, 10 GPa for Carbon-24, else 0);
    ``count_unconverged`` also scores relaxations stopped at the step cap."""

    n_samples: int = option(100, help="generated crystals relaxed (the paper: 100)", scope="run")
    batch_size: int = option(100, help="crystals per model call (each batch is seeded and resumable)", scope="run")
    # how a relaxation is run: the defaults are the relaxation settings' own (RelaxSettings)
    relaxer: str = option("chgnet", help="oracle that relaxes the samples (see `list oracles`)")
    optimizer: Literal["FIRE", "BFGS"] = option(_RELAX.optimizer, help="ASE optimiser", flag="--relax-optimizer")
    fmax: float = option(_RELAX.fmax, help="force tolerance in eV/Å")
    steps: int = option(_RELAX.steps, help="step cap per crystal", flag="--relax-steps")
    time_limit_s: float = option(_RELAX.time_limit_s, help="wall-time limit per crystal in seconds", flag="--relax-time-limit", metavar="SECONDS")
    pressure_gpa: float | None = option(None, help="external pressure in GPa (default: the dataset's; 10 GPa for carbon_24, else 0)",
                                        flag="--pressure", metavar="GPA")
    count_unconverged: bool = option(False, help="use relaxations stopped at the step cap in ΔV/ΔE and matching")
    presets: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {"n_samples": 10, "batch_size": 10, "steps": 200}, "paper": {}}


class GroundStateTask(Task):
    name = "ground_state"
    description = "relax samples with a potential; match rate, <δ_rms>, ΔV_rms, ΔE_rms vs the relaxed crystals"
    protocol = ("100 generated crystals relaxed (the paper: DFT at 10 GPa for Carbon-24; here a named potential), "
                "StructureMatcher(0.5, 10, 0.3) with the relaxed crystal as base (DP-CDVAE Table III)")
    Config = GroundStateConfig
    capability = "sample"
    metrics = ("validity", "ground_state")
    columns = ("gs_match_rate", "gs_mean_rms", "gs_rms_dvolume_per_atom", "gs_rms_denergy_per_atom")
    headline_columns = 4
    leaderboard_order = 50

    def check_config(self, config: GroundStateConfig, dataset: str) -> GroundStateConfig:
        config = super().check_config(config, dataset)
        if not (config.fmax > 0 and config.steps > 0 and config.time_limit_s > 0):
            raise TaskError("relaxation fmax, steps and time limit must be positive")
        return config

    def evaluation_options(self, config: GroundStateConfig, dataset: Any, *, oracle_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
        """The relaxer and its :class:`~benchmark.metrics.oracles.chgnet.RelaxSettings`."""
        pressure = config.pressure_gpa if config.pressure_gpa is not None else DATASET_PRESSURE_GPA.get(dataset.name, 0.0)
        settings = RelaxSettings(optimizer=config.optimizer, fmax=config.fmax, steps=config.steps,
                                 time_limit_s=config.time_limit_s, pressure_gpa=float(pressure))
        return {"relaxer": config.relaxer, "relax_settings": settings, "count_unconverged": config.count_unconverged}

    def table_notes(self, records: Sequence[Mapping[str, Any]], oracles: Sequence[str]) -> list[str]:
        if not oracles:
            return []
        return ["Relaxed with " + ", ".join(oracles) + " (reproduced rows); the reported rows were relaxed with DFT (VASP, PBE) at 10 GPa."]
