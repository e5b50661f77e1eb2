"""Reconstruction (CDVAE, Section 5.1, Table 1): encode and decode the test split; match rate and RMSE
with StructureMatcher against the input crystals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from benchmark.crystal import Crystal
from benchmark.tasks.base import Produced, RunContext, Task, TaskConfig, option


@dataclass(frozen=True)
class ReconstructionConfig(TaskConfig):
    """Reconstruction of the first ``limit`` test crystals (None: all, as published), in batches of
    ``batch_size``."""

    limit: int | None = option(None, help="reconstruct only the first N test crystals (default: all, as published)", scope="run")
    batch_size: int = option(256, help="crystals per model call (each batch is seeded and resumable)", scope="run")
    presets: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {"limit": 64, "batch_size": 32}, "paper": {}}


class ReconstructionTask(Task):
    name = "reconstruction"
    description = "encode and decode the test split; match rate and RMSE with StructureMatcher"
    protocol = "every test crystal, StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3) (CDVAE Table 1)"
    Config = ReconstructionConfig
    capability = "reconstruct"
    reference = "paired"
    metrics = ("validity", "reconstruction")
    columns = ("match_rate", "rms_dist")
    headline_columns = 2
    leaderboard_order = 20
    leaderboard_default = True

    def produce(self, model: Any, run: RunContext) -> Produced:
        cfg: ReconstructionConfig = run.config
        test = run.load("test", limit=cfg.limit)
        size = cfg.batch_size

        def make(b: int, bn: int) -> tuple[list[Crystal], int | None]:
            return model.reconstruct(test[b * size: b * size + bn], seed=run.seed_of(b), device=run.device), None

        crystals, _, _ = run.batches(len(test), size, make, "reconstructing")
        return Produced(crystals)
