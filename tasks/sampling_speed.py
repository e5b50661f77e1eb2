"""Sampling speed (CDVAE, Table 4): wall time to generate N crystals on a device, per crystal and
projected to the published 10,000."""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from benchmark.metrics.base import MetricKey, MetricValue
from benchmark.tasks.base import Produced, RunContext, Task, TaskConfig, TaskError, derive_seed, option

#: the published protocol's sample count, to which the measured rate is projected
PROJECTED_N = 10_000


@dataclass(frozen=True)
class SamplingSpeedConfig(TaskConfig):
    """Wall time to generate ``n_samples`` crystals in batches of ``batch_size``; ``warmup_batches``
    batches are run first and not timed (CUDA kernels, caches)."""

    n_samples: int = option(10000, help="crystals generated in the timed region", scope="run")
    batch_size: int = option(500, help="crystals per model call", scope="run")
    warmup_batches: int = option(1, help="batches run first and not timed", scope="run")
    presets: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {"n_samples": 100, "batch_size": 50}, "paper": {}}


def time_sampling(model: Any, cfg: SamplingSpeedConfig, seed: int, device: str) -> dict[str, Any]:
    """Sampling speed: ``warmup_batches`` untimed, then the timed batches. On CUDA the device is
    synchronised around the timed region (CUDA events) and peak memory is read."""
    import torch

    cuda = device.startswith("cuda")
    for w in range(cfg.warmup_batches):
        model.sample(min(cfg.batch_size, cfg.n_samples), seed=derive_seed(seed, 10_000 + w), device=device)
    n_batches = math.ceil(cfg.n_samples / cfg.batch_size)
    evals: int | None = 0
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start_ev, end_ev = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start_ev.record()
    t0 = time.perf_counter()
    done = 0
    for b in range(n_batches):
        bn = min(cfg.batch_size, cfg.n_samples - b * cfg.batch_size)
        batch = model.sample(bn, seed=derive_seed(seed, b), device=device)
        done += len(batch.crystals)
        evals = None if evals is None or batch.model_evaluations is None else evals + batch.model_evaluations
    if cuda:
        end_ev.record()
        torch.cuda.synchronize()
        seconds = start_ev.elapsed_time(end_ev) / 1000.0
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        seconds = time.perf_counter() - t0
        peak = None
    return {"seconds": seconds, "n": done, "model_evaluations": evals, "peak_memory_mb": peak, "n_batches": n_batches}


def device_name(device: str) -> str:
    """The GPU's name, or the CPU's model with its core and torch thread counts."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


class SamplingSpeedTask(Task):
    name = "sampling_speed"
    description = "wall time and crystals per second to generate N crystals on a device"
    protocol = "10,000 crystals (CDVAE Table 4, RTX 2080 Ti); device, batch size and model evaluations recorded"
    Config = SamplingSpeedConfig
    capability = "sample"
    evaluable = False
    keys = {
        "seconds_per_crystal": MetricKey("s / crystal", False, "s"),
        "crystals_per_second": MetricKey("crystals / s", True, "1/s"),
        "seconds_for_10000": MetricKey("s / 10,000", False, "s"),
        "model_evaluations_per_batch": MetricKey("evaluations / batch", False, "evaluations"),
    }
    columns = ("seconds_per_crystal", "crystals_per_second", "seconds_for_10000")
    leaderboard_order = 40
    leaderboard_default = True

    def check_config(self, config: SamplingSpeedConfig, dataset: str) -> SamplingSpeedConfig:
        config = super().check_config(config, dataset)
        if config.warmup_batches < 0:
            raise TaskError("task.warmup_batches must be 0 or more")
        return config

    def produce(self, model: Any, run: RunContext) -> Produced:
        cfg: SamplingSpeedConfig = run.config
        timing = time_sampling(model, cfg, run.seed, run.device)
        n = timing["n"]
        per = timing["seconds"] / max(n, 1)
        values = {
            "seconds_per_crystal": MetricValue(per, n),
            "crystals_per_second": MetricValue(1.0 / per if per > 0 else None, n),
            "seconds_for_10000": MetricValue(per * PROJECTED_N, n),
        }
        if timing["model_evaluations"] is not None:
            values["model_evaluations_per_batch"] = MetricValue(timing["model_evaluations"] / timing["n_batches"], timing["n_batches"])
        speed = {"device_name": device_name(run.device), "batch_size": cfg.batch_size, "warmup_batches": cfg.warmup_batches,
                 "peak_memory_mb": timing["peak_memory_mb"], "timed_seconds": timing["seconds"]}
        return Produced(None, values, {"speed": speed})

    def row_values(self, values: dict[str, float | None]) -> dict[str, float | None]:
        """Reported rows may give only one of the rates; the others follow from it."""
        spc = values.get("seconds_per_crystal")
        cps = values.get("crystals_per_second")
        if spc is None and cps:
            spc = 1.0 / cps
        if values.get("seconds_for_10000") is None and spc is not None:
            values = {**values, "seconds_for_10000": spc * PROJECTED_N}
        return values
