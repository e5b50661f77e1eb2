"""Generation (CDVAE, Section 5.2, Table 2): crystals sampled from the model's prior, scored against
the test split: validity, coverage, property statistics, diversity, uniqueness and novelty.

The FTCP protocol (CDVAE, Table 2, footnote 5): FTCP's samples are so rarely valid that CDVAE
drew 100,000 of them and took the property statistics and diversity over 1,000 valid ones. Here
that is ``--until-valid 1000 --n-samples 100000`` (``task.until_valid`` / ``task.n_samples`` in a
run file or ``--set``): seeded batches of ``batch_size`` are drawn until 1,000 crystals are valid
or the 100,000-crystal budget is spent. Every crystal drawn is written and scored (validity and
coverage over all of them, property statistics and diversity over ``n_property_samples`` valid
ones, by default the profile's 1,000); the run record's ``sampling`` section says how many were
drawn and how many were valid, and a note says so when the budget ran out first. Batch ``i`` has
the same seed and size with or without the stop rule, so the crystals are the first ones of a
plain run with the same seed, and an interrupted run resumes without redrawing a batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

from benchmark.crystal import Crystal
from benchmark.tasks.base import Produced, RunContext, StopRule, Task, TaskConfig, TaskError, option

if TYPE_CHECKING:  # pragma: no cover
    from benchmark.metrics.base import EvalContext
    from benchmark.metrics.profiles import MetricProfile


def parse_cutoffs(values: list[str]) -> tuple[float, float]:
    """``--cov-cutoffs 0.2,4`` -> (0.2, 4.0)."""
    try:
        a, b = (float(x) for x in values[-1].split(","))
    except ValueError:
        raise ValueError(f"--cov-cutoffs {values[-1]!r}: expected STRUC,COMP, e.g. 0.2,4") from None
    return a, b


@dataclass(frozen=True)
class GenerationConfig(TaskConfig):
    """Generation: ``n_samples`` crystals from the prior, in seeded batches of ``batch_size``
    (CDVAE: 10,000); the property statistics and diversity use ``n_property_samples`` valid ones
    (None: the metric profile's 1,000); ``cov_cutoffs`` overrides the published coverage cutoffs.

    ``until_valid``: draw batches until this many crystals are valid (compositionally and
    structurally, as the validity metric judges each crystal), with ``n_samples`` as the budget;
    None draws all ``n_samples``. The FTCP protocol (CDVAE footnote 5) is ``until_valid=1000,
    n_samples=100000``."""

    n_samples: int = option(10000, help="crystals sampled from the prior (with --until-valid: the most that may be drawn)", scope="run")
    batch_size: int = option(500, help="crystals per model call (each batch is seeded and resumable)", scope="run")
    until_valid: int | None = option(None, scope="run", metavar="N",
                                     help="draw batches only until N crystals are valid (composition and structure), at most --n-samples; "
                                          "every draw is scored. The FTCP protocol (CDVAE Table 2, footnote 5): --until-valid 1000 --n-samples 100000")
    n_property_samples: int | None = option(None, help="valid samples drawn for property statistics and diversity (default: the profile's 1,000)")
    cov_cutoffs: tuple[float, float] | None = option(None, help="override the coverage cutoffs (structure, composition fingerprint distance)",
                                                     metavar="STRUC,COMP", parse=parse_cutoffs)
    presets: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {"n_samples": 200, "batch_size": 50}, "paper": {}}


class GenerationTask(Task):
    name = "generation"
    description = "sample crystals from the prior; validity, coverage, property statistics vs the test split"
    protocol = ("10,000 samples from N(0, I) for validity and coverage; 1,000 valid ones for property statistics (CDVAE Table 2); "
                "ftcp protocol (footnote 5, for FTCP's low validity): --until-valid 1000 --n-samples 100000 draws until 1,000 are valid, "
                "at most 100,000, and takes property statistics and diversity over 1,000 valid ones")
    Config = GenerationConfig
    capability = "sample"
    reference = "split"
    metrics = ("validity", "coverage", "property_statistics", "diversity", "uniqueness", "novelty", "crystens", "distribution_ks")
    columns = ("struct_valid", "comp_valid", "valid", "cov_recall", "cov_precision", "amsd_recall", "amsd_precision", "amcd_recall",
               "amcd_precision", "wdist_density", "wdist_prop", "wdist_num_elems", "comp_div", "struct_div", "uniqueness", "novelty",
               # CrysTens Tables 1-2: only CrysTens models hand over the tensors these need
               "crystens_var_lengths", "crystens_var_angles", "crystens_var_space_group", "crystens_var_frac_coords",
               "crystens_coord_disagreement", "crystens_pairwise_disagreement", "crystens_decode_share",
               # Kolmogorov-Smirnov statistics vs the reference (the modern profile only)
               "ks_a", "ks_b", "ks_c", "ks_alpha", "ks_beta", "ks_gamma", "ks_space_group", "ks_atomic_number")
    headline_columns = 7
    leaderboard_order = 10
    leaderboard_default = True

    def check_config(self, config: GenerationConfig, dataset: str) -> GenerationConfig:
        config = super().check_config(config, dataset)
        if config.n_property_samples is not None and config.n_property_samples <= 0:
            raise TaskError("task.n_property_samples must be positive")
        if config.until_valid is not None and config.until_valid <= 0:
            raise TaskError(f"task.until_valid must be positive (or none to draw all n_samples), got {config.until_valid}")
        return config

    def produce(self, model: Any, run: RunContext) -> Produced:
        """``n_samples`` crystals from the prior; with ``until_valid``, batches until that many are
        valid or ``n_samples`` are drawn (see the module doc)."""
        cfg: GenerationConfig = run.config
        if cfg.until_valid is None:
            return super().produce(model, run)
        from benchmark.metrics.profiles import get_profile

        stop = valid_count_rule(cfg.until_valid, get_profile(run.profile))
        crystals, _, artifacts = run.sample(model, cfg.n_samples, cfg.batch_size, stop=stop)
        exhausted = not stop.reached
        record = {"sampling": {"until_valid": cfg.until_valid, "draws": len(crystals), "valid_found": stop.found, "budget": cfg.n_samples,
                               "budget_exhausted": exhausted, "batches": stop.batches, "batch_size": cfg.batch_size,
                               "validity": f"composition and structure, profile {run.profile}"}}
        if exhausted:
            note = (f"until_valid: the budget of {cfg.n_samples} draws ran out with {stop.found} valid crystals of the {cfg.until_valid} asked for; "
                    f"all {len(crystals)} draws are scored")
        else:
            note = f"until_valid: {len(crystals)} crystals drawn ({stop.batches} batch{'es' if stop.batches != 1 else ''} of {cfg.batch_size}) until {stop.found} were valid (asked: {cfg.until_valid})"
        return Produced(crystals, record=record, artifacts=artifacts, notes=[note])

    def row_label(self, record: Mapping[str, Any], label: str) -> str:
        """A run under the stop rule is its own row: ``ftcp (until 1000 valid: 1000 of 23500 draws)``."""
        sampling = record.get("sampling")
        if not isinstance(sampling, Mapping) or sampling.get("until_valid") is None:
            return label
        return f"{label} (until {sampling['until_valid']} valid: {sampling.get('valid_found')} of {sampling.get('draws')} draws)"

    def evaluation_options(self, config: GenerationConfig, dataset: Any, *, oracle_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
        # a dataset outside the papers' families may carry coverage cutoffs of its own
        cutoffs = config.cov_cutoffs or (None if dataset.protocol_family else dataset.cov_cutoffs)
        return {"cov_cutoffs": cutoffs, "n_property_samples": config.n_property_samples}

    def property_indices(self, ctx: "EvalContext") -> Sequence[int]:
        """The property oracle scores only the valid samples drawn for the property statistics."""
        from benchmark.metrics.generation import property_sample

        return [int(k) for k in property_sample(ctx)]


def count_valid(crystals: Sequence[Crystal], profile: "MetricProfile") -> int:
    """How many crystals are compositionally and structurally valid, each judged by the validity
    metric's own per-crystal function (:func:`benchmark.metrics.crystal_eval.evaluate_crystal`,
    without fingerprints; it never raises: a zero-atom crystal, e.g. one with
    ``properties["decode_error"]``, is invalid). The scored ``valid`` also needs the structure
    fingerprint to compute (CDVAE's rule); fingerprinting every draw would cost most of the
    evaluation's time again, so a crystal whose fingerprint fails is counted here and not there."""
    from benchmark.metrics.crystal_eval import evaluate_crystal

    return sum(1 for c in crystals if evaluate_crystal(c, profile, fingerprints=False).valid)


def valid_count_rule(target: int, profile: "MetricProfile") -> StopRule:
    """The stop rule of ``until_valid``: count each batch's valid crystals until ``target``."""
    return StopRule(target, lambda crystals: count_valid(crystals, profile), "valid")
