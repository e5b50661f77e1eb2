"""Generation (CDVAE, Section 5.2, Table 2): crystals sampled from the model's prior, scored against
the test split: validity, coverage, property statistics, diversity, uniqueness and novelty."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from benchmark.tasks.base import Task, TaskConfig, TaskError, option

if TYPE_CHECKING:  # pragma: no cover
    from benchmark.metrics.base import EvalContext


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
    (None: the metric profile's 1,000); ``cov_cutoffs`` overrides the published coverage cutoffs."""

    n_samples: int = option(10000, help="crystals sampled from the prior", scope="run")
    batch_size: int = option(500, help="crystals per model call (each batch is seeded and resumable)", scope="run")
    n_property_samples: int | None = option(None, help="valid samples drawn for property statistics and diversity (default: the profile's 1,000)")
    cov_cutoffs: tuple[float, float] | None = option(None, help="override the coverage cutoffs (structure, composition fingerprint distance)",
                                                     metavar="STRUC,COMP", parse=parse_cutoffs)
    presets: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {"n_samples": 200, "batch_size": 50}, "paper": {}}


class GenerationTask(Task):
    name = "generation"
    description = "sample crystals from the prior; validity, coverage, property statistics vs the test split"
    protocol = "10,000 samples from N(0, I) for validity and coverage; 1,000 valid ones for property statistics (CDVAE Table 2)"
    Config = GenerationConfig
    capability = "sample"
    reference = "split"
    metrics = ("validity", "coverage", "property_statistics", "diversity", "uniqueness", "novelty", "crystens")
    columns = ("struct_valid", "comp_valid", "valid", "cov_recall", "cov_precision", "amsd_recall", "amsd_precision", "amcd_recall",
               "amcd_precision", "wdist_density", "wdist_prop", "wdist_num_elems", "comp_div", "struct_div", "uniqueness", "novelty",
               # CrysTens Tables 1-2: only CrysTens models hand over the tensors these need
               "crystens_var_lengths", "crystens_var_angles", "crystens_var_space_group", "crystens_var_frac_coords",
               "crystens_coord_disagreement", "crystens_pairwise_disagreement", "crystens_decode_share")
    headline_columns = 7
    leaderboard_order = 10
    leaderboard_default = True

    def check_config(self, config: GenerationConfig, dataset: str) -> GenerationConfig:
        config = super().check_config(config, dataset)
        if config.n_property_samples is not None and config.n_property_samples <= 0:
            raise TaskError("task.n_property_samples must be positive")
        return config

    def evaluation_options(self, config: GenerationConfig, dataset: Any, *, oracle_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
        # a dataset outside the papers' families may carry coverage cutoffs of its own
        cutoffs = config.cov_cutoffs or (None if dataset.protocol_family else dataset.cov_cutoffs)
        return {"cov_cutoffs": cutoffs, "n_property_samples": config.n_property_samples}

    def property_indices(self, ctx: "EvalContext") -> Sequence[int]:
        """The property oracle scores only the valid samples drawn for the property statistics."""
        from benchmark.metrics.generation import property_sample

        return [int(k) for k in property_sample(ctx)]
