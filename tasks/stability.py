"""Stability (issue 18): energy above the convex hull of relaxed samples, stable / metastable
counts and rates, S.U.N. and M.S.U.N., with a declared energy model and hull (see
:mod:`benchmark.metrics.stability` for the definitions and :mod:`benchmark.metrics.reference_hull`
for the default ``reference`` hull).

The protocol is this harness's own: no paper of the CDVAE family reports stability. Its pieces
follow the field (MatterGen: E_hull <= 0.1 eV/atom after relaxation, unique and novel; LeMat-
GenBench: SUN at <= 0 and MSUN at <= 0.1; FlowMM: CHGNet relaxation, <= 0 against a Materials
Project hull), and every record carries a protocol fingerprint so rows of different protocols are
never silently compared (the README's Stability section puts them side by side).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Mapping, Sequence

from benchmark.metrics.oracles.base import RelaxSettings
from benchmark.tasks.base import Task, TaskConfig, TaskError, option

_RELAX = RelaxSettings()


def parse_splits(values: list[str]) -> tuple[str, ...]:
    """``--hull-splits train,val`` -> ("train", "val")."""
    splits = tuple(s.strip() for s in values[-1].split(",") if s.strip())
    if not splits:
        raise ValueError(f"--hull-splits {values[-1]!r}: expected split names, e.g. train,val")
    return splits


@dataclass(frozen=True)
class StabilityConfig(TaskConfig):
    """Stability: ``n_samples`` crystals, each valid one relaxed by ``energy_model`` (``relax``
    mode: ``optimizer`` to ``fmax`` eV/Å in at most ``steps`` steps, ``time_limit_s`` per crystal,
    cell and positions, 0 GPa; ``single_point``: as generated) and placed on ``hull`` (``reference``:
    the dataset's splits at hand, or ``hull_splits``, plus elemental references, with the same
    model and settings; or a pymatgen entries file, its energies read ``hull_corrections``).
    ``stable_threshold`` and ``metastable_threshold`` in eV/atom."""

    n_samples: int = option(1000, help="crystals sampled and scored", scope="run")
    batch_size: int = option(500, help="crystals per model call (each batch is seeded and resumable)", scope="run")
    energy_model: str = option("chgnet", help="oracle that relaxes and gives energies (see `list oracles`)", metavar="ORACLE")
    energy_mode: Literal["relax", "single_point"] = option("relax", help="relax each crystal (cell and positions) or take its energy as given")
    optimizer: Literal["FIRE", "BFGS"] = option(_RELAX.optimizer, help="ASE optimiser", flag="--relax-optimizer")
    fmax: float = option(_RELAX.fmax, help="force tolerance in eV/Å")
    steps: int = option(_RELAX.steps, help="step cap per crystal (an unconverged relaxation is left out, with its reason)", flag="--relax-steps")
    time_limit_s: float = option(_RELAX.time_limit_s, help="wall-time limit per crystal in seconds", flag="--relax-time-limit", metavar="SECONDS")
    hull: str = option("reference", help="the hull: 'reference' (the dataset's crystals plus elemental references, same energy model) "
                                         "or a pymatgen entries file (PhaseDiagram or ComputedEntry list JSON)", metavar="reference|FILE")
    hull_corrections: Literal["as_given", "uncorrected"] = option("as_given", help="an entries file's energies: with their stated corrections "
                                                                                    "(as_given) or raw (uncorrected)")
    hull_splits: tuple[str, ...] | None = option(None, help="splits the reference hull is built from (default: every split at hand)",
                                                 metavar="SPLIT,SPLIT", parse=parse_splits)
    stable_threshold: float = option(0.0, help="stable: E_hull at or below this (eV/atom)", metavar="EV")
    metastable_threshold: float = option(0.1, help="metastable: E_hull at or below this (eV/atom)", metavar="EV")
    presets: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {"n_samples": 20, "batch_size": 20, "energy_mode": "single_point"}, "paper": {}}


class StabilityTask(Task):
    name = "stability"
    description = "relax samples with a potential; E above hull, stable/metastable counts and rates, S.U.N./M.S.U.N., hull coverage"
    protocol = ("valid samples relaxed with a universal potential (CHGNet by default, FIRE to 0.05 eV/Å), E_hull against a declared hull "
                "(default: the dataset's crystals plus elemental references with the same potential); stable <= 0, metastable <= 0.1 eV/atom; "
                "S.U.N. with StructureMatcher uniqueness and novelty; rates over all samples")
    Config = StabilityConfig
    capability = "sample"
    metrics = ("validity", "uniqueness", "novelty", "stability")
    columns = ("stable_rate", "metastable_rate", "sun_rate", "msun_rate", "e_hull_median", "e_hull_mean", "hull_coverage",
               "n_stable", "n_metastable", "n_sun", "n_msun", "valid", "uniqueness", "novelty")
    headline_columns = 4
    leaderboard_order = 55

    def check_config(self, config: StabilityConfig, dataset: str) -> StabilityConfig:
        config = super().check_config(config, dataset)
        if not (config.fmax > 0 and config.steps > 0 and config.time_limit_s > 0):
            raise TaskError("relaxation fmax, steps and time limit must be positive")
        if not config.stable_threshold <= config.metastable_threshold:
            raise TaskError(f"stable_threshold ({config.stable_threshold}) must not exceed metastable_threshold ({config.metastable_threshold})")
        if config.hull != "reference" and not Path(config.hull).is_file():
            raise TaskError(f"--hull {config.hull!r}: neither 'reference' nor an entries file that exists")
        return config

    def evaluation_options(self, config: StabilityConfig, dataset: Any, *, oracle_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
        """The energy model (loaded now, so a missing one fails before any crystal is read), its
        settings, the hull spec (an entries file is read now: a bad file fails early) and the
        thresholds."""
        from benchmark.metrics.hull import HullFileError
        from benchmark.metrics.reference_hull import EnergySettings
        from benchmark.metrics.stability import HullSpec, build_hull, energy_model_from_options
        from benchmark.registry import RegistryError

        try:
            model = energy_model_from_options({"energy_model": config.energy_model, "oracle_dir": oracle_dir})
        except (RegistryError, TypeError, OSError, ImportError) as exc:  # unknown, cannot relax, weights or package missing
            raise TaskError(f"energy model {config.energy_model!r}: {exc}") from exc
        settings = EnergySettings(mode=config.energy_mode, relax=RelaxSettings(optimizer=config.optimizer, fmax=config.fmax, steps=config.steps,
                                                                                time_limit_s=config.time_limit_s))
        spec = HullSpec(config.hull, config.hull_corrections, config.hull_splits)
        options = {"energy_model_object": model, "energy_settings": settings, "dataset_object": dataset, "hull_spec": spec,
                   "stable_threshold": config.stable_threshold, "metastable_threshold": config.metastable_threshold}
        if not spec.is_reference:
            # a file hull is read and checked against the model's elemental energies now: a file on
            # another energy scale is refused before any sample is read
            try:
                options["hull_object"], options["hull_info"] = build_hull(spec, model, settings, dataset=dataset, data_dir=None, progress=progress)
            except HullFileError as exc:
                raise TaskError(str(exc)) from exc
        return options

    def record_extras(self, ctx: Any) -> dict[str, Any]:
        """The ``stability`` section (energy model, checkpoint, settings, hull with its hash and
        elemental references, what was left out) and the ``protocol`` fingerprint."""
        return dict(ctx.cache.get("stability_record") or {})

    def table_notes(self, records: Sequence[Mapping[str, Any]], oracles: Sequence[str]) -> list[str]:
        hulls = sorted({str(((r.get("stability") or {}).get("hull") or {}).get("hull", {}).get("name")) for r in records if r.get("stability")})
        if not hulls:
            return []
        return [f"Energies from {', '.join(oracles) or 'the recorded energy model'}; hull: {', '.join(hulls)}. "
                "Rates are over all samples (invalid ones included); S.U.N. = stable, unique and novel."]
