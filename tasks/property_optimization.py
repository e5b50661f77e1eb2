"""Property optimisation (CDVAE, Section 5.3, Table 3): minimise the jointly trained property in
latent space from test crystals; SR5/SR10/SR15 of the best crystal of each trajectory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from benchmark.tasks.base import Produced, RunContext, Task, TaskConfig, TaskError, option


@dataclass(frozen=True)
class OptimizationConfig(TaskConfig):
    """Property optimisation (CDVAE 5.3): ``num_opt`` test crystals, ``steps`` latent gradient steps
    with learning rate ``lr``, ``n_decode`` crystals decoded along each trajectory."""

    num_opt: int = option(100, help="number of trajectories: test crystals optimised (evaluate: how the sample file is laid out)")
    steps: int = option(5000, help="gradient steps in latent space", scope="run")
    lr: float = option(1e-3, help="learning rate of the latent optimisation", scope="run")
    n_decode: int = option(10, help="crystals decoded along each trajectory", scope="run")
    presets: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {"num_opt": 10, "steps": 100, "n_decode": 2}, "paper": {}}


class PropertyOptimizationTask(Task):
    name = "property_optimization"
    description = "optimise the target property in latent space from test crystals; SR5/SR10/SR15"
    protocol = "100 test crystals, 5,000 gradient steps (lr 1e-3), 10 decoded along each trajectory (CDVAE Table 3)"
    Config = OptimizationConfig
    capability = "optimize"
    properties_from_samples = True
    metrics = ("validity", "success_rate")
    columns = ("SR5", "SR10", "SR15")
    leaderboard_order = 30
    leaderboard_default = True

    def check_config(self, config: OptimizationConfig, dataset: str) -> OptimizationConfig:
        for name in ("num_opt", "steps", "n_decode"):
            if getattr(config, name) <= 0:
                raise TaskError(f"task.{name} must be positive")
        return config

    def produce(self, model: Any, run: RunContext) -> Produced:
        cfg: OptimizationConfig = run.config
        starts = run.load("test", limit=cfg.num_opt)
        steps = model.optimize(starts, seed=run.seed, device=run.device, steps=cfg.steps, lr=cfg.lr, n_decode=cfg.n_decode)
        return Produced([c for step in steps for c in step])  # step-major, as CDVAE's eval_opt.pt

    def evaluation_options(self, config: OptimizationConfig, dataset: Any, *, oracle_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
        return {"num_opt": config.num_opt}
