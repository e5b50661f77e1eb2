"""Property-optimisation success rates SR5/SR10/SR15 (CDVAE, Section 5.3).

As the published ``OptEval``: the sample file holds ``step_opt x num_opt`` crystals, step-major
(all starting points at the first saved step, then the next step, ...). For each of the
``num_opt`` trajectories the best (lowest) property among its valid crystals is kept (invalid
crystals count as +inf); SR_p is the fraction of trajectories whose best value is at or below the
dataset's p-th percentile of the target property (``sr_percentiles``).
"""

from __future__ import annotations

import numpy as np

from benchmark.metrics.base import EvalContext, MetricValue


def success_rates(ctx: EvalContext) -> dict[str, MetricValue]:
    num_opt = ctx.options.get("num_opt")  # the task's option (its default lives in the task's config)
    n = len(ctx.samples)
    if not num_opt:
        ctx.notes.append("SR skipped: the number of trajectories (num_opt) was not given")
        return {}
    num_opt = int(num_opt)
    if ctx.family is None or ctx.family not in ctx.profile.sr_percentiles:
        ctx.notes.append(f"SR skipped: no published percentiles for {ctx.dataset}")
        return {}
    if n == 0 or n % num_opt:
        ctx.notes.append(f"SR skipped: {n} crystals is not a multiple of num_opt={num_opt}")
        return {}
    if ctx.properties is None or not np.isfinite(np.asarray(ctx.properties, dtype=np.float64)[[r.valid for r in ctx.samples]]).any():
        ctx.notes.append("SR not computed: no property values for the optimised crystals (pass --properties or use an oracle)")
        return {}
    step_opt = n // num_opt
    valid = np.array([r.valid for r in ctx.samples]).reshape(step_opt, num_opt)
    props = np.asarray(ctx.properties, dtype=np.float64).reshape(step_opt, num_opt)
    props = np.where(valid & np.isfinite(props), props, np.inf)
    best = props.min(axis=0)
    p5, p10, p15 = ctx.profile.sr_percentiles[ctx.family]
    ctx.cache["best_properties"] = best
    oracle = ctx.options.get("oracle")
    return {
        "SR5": MetricValue(float((best <= p5).mean()), num_opt, oracle=oracle),
        "SR10": MetricValue(float((best <= p10).mean()), num_opt, oracle=oracle),
        "SR15": MetricValue(float((best <= p15).mean()), num_opt, oracle=oracle),
    }
