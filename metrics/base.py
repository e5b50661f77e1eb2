"""What a metric plugin is, and what it is given.

A :class:`Metric` declares the task it scores and the keys it writes (the published evaluation's
names where one exists) and computes them from an :class:`EvalContext`: the per-crystal results of
the samples and of the reference split, the profile, the seed and any property values. Metrics are
pure functions of the context; the evaluator featurises once and every metric reads the same
results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from benchmark.metrics.crystal_eval import CrystalResult
from benchmark.metrics.profiles import MetricProfile


@dataclass
class MetricValue:
    """One number of a result, with what a reader needs to compare it."""

    value: float | None
    n: int | None = None
    higher_is_better: bool | None = None
    unit: str | None = None
    uncertainty: float | None = None
    oracle: str | None = None  # the property model behind the number, when there is one

    def as_dict(self) -> dict[str, Any]:
        v = None if self.value is None or not np.isfinite(self.value) else float(self.value)
        out = {"value": v, "n": self.n, "higher_is_better": self.higher_is_better, "unit": self.unit, "uncertainty": self.uncertainty}
        if self.oracle:
            out["oracle"] = self.oracle
        return out


@dataclass
class EvalContext:
    """Everything the metrics of one evaluation read.

    Attributes:
        task: ``generation`` | ``reconstruction`` | ``property_optimization``.
        dataset: dataset name; ``family`` its protocol family (``perov_5``...) or None.
        samples: per-crystal results of the sample file, in file order.
        reference: per-crystal results of the reference split (generation), or the paired ground
            truth (reconstruction); None when not needed.
        train: crystals of the training split (novelty), or None.
        sample_crystals: the sample entries themselves (Crystal or unreadable), in file order.
        reference_crystals: the reference / ground-truth crystals, in order.
        properties: property values per sample (NaN where unknown), for SR and property statistics.
        reference_properties: property values per reference crystal (NaN where unknown).
        options: task options (``num_opt``, ``n_jobs``...).
        notes: messages for the record (why a metric was skipped...).
        per_structure: extra per-sample columns metrics want in the per-structure table.
    """

    task: str
    dataset: str
    family: str | None
    profile: MetricProfile
    seed: int
    samples: list[CrystalResult]
    reference: list[CrystalResult] | None = None
    sample_crystals: Sequence[Any] = ()
    reference_crystals: Sequence[Any] = ()
    train: Sequence[Any] | None = None
    properties: np.ndarray | None = None
    reference_properties: np.ndarray | None = None
    property_name: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    per_structure: dict[str, list[Any]] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)

    def column(self, name: str, values: Sequence[Any]) -> None:
        if len(values) != len(self.samples):
            raise ValueError(f"per-structure column {name!r} has {len(values)} values for {len(self.samples)} samples")
        self.per_structure[name] = list(values)


@dataclass(frozen=True)
class Metric:
    """A metric plugin.

    Attributes:
        name: registry name.
        task: the task it scores.
        keys: result keys it writes, with (higher_is_better, unit) each.
        description: one line.
        compute: ``compute(ctx) -> {key: MetricValue}``; may leave keys out (and add a note) when
            the inputs they need are missing.
        default: computed by ``evaluate`` unless the user selects metrics explicitly.
    """

    name: str
    task: str
    keys: dict[str, tuple[bool | None, str | None]]
    description: str
    compute: Callable[[EvalContext], dict[str, MetricValue]]
    default: bool = True
