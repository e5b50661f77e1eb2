"""What a metric plugin is, and what it is given.

A :class:`Metric` declares the task it scores and the keys it writes (the published evaluation's
names where one exists) and computes them from an :class:`EvalContext`: the per-crystal results of
the samples and of the reference split, the profile, the seed and any property values. Metrics are
pure functions of the context; the evaluator featurises once and every metric reads the same
results.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Literal, Sequence

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
        samples: per-crystal results of the sample file, in file order (a list, or for a file
            scored in chunks a :class:`~benchmark.metrics.result_store.CompactResults`).
        reference: per-crystal results of the reference split (generation), or the paired ground
            truth (reconstruction); None when not needed.
        train: crystals of the training split (novelty), or None.
        sample_crystals: the sample entries themselves (Crystal or unreadable), in file order;
            for a file scored in chunks the :class:`~benchmark.samples.SampleStream`, which reads
            the file again on each pass: iterate it, or ``take`` many indices in one pass.
        reference_crystals: the reference / ground-truth crystals, in order.
        properties: property values per sample (NaN where unknown), for SR and property statistics.
        reference_properties: property values per reference crystal (NaN where unknown).
        options: task options (``num_opt``, ``n_jobs``...).
        notes: messages for the record (why a metric was skipped...).
        per_structure: extra per-sample columns metrics want in the per-structure table.
        artifacts: the model's per-sample arrays (``SampleBatch.artifacts``; first axis in the
            order of ``samples``), e.g. ``crystens_tensor``; empty when scoring a sample file.
    """

    task: str
    dataset: str
    family: str | None
    profile: MetricProfile
    seed: int
    samples: Sequence[CrystalResult]
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
    artifacts: dict[str, np.ndarray] = field(default_factory=dict)

    def column(self, name: str, values: Sequence[Any]) -> None:
        if len(values) != len(self.samples):
            raise ValueError(f"per-structure column {name!r} has {len(values)} values for {len(self.samples)} samples")
        self.per_structure[name] = list(values)


Display = Literal["percent", "sig", "fixed"]


@dataclass(frozen=True)
class MetricKey:
    """How one result key is labelled, ranked and printed: declared once, by the metric (or the
    task) that produces it; the evaluation stamps ``higher_is_better`` and ``unit`` on every value
    from here, and the leaderboard reads its labels from here.

    Attributes:
        label: column heading (the papers' names: "COV-R (%)", "ρ EMD", ...).
        higher_is_better: ranking direction (None: not ranked).
        unit: unit of the stored value (None: dimensionless, or given by the metric at run time,
            e.g. an oracle's unit).
        display: ``percent`` (a fraction printed x100 with 2 decimals, 1 from 100 up), ``sig``
            (the papers' style: ``digits`` decimals below 1, ``digits`` significant digits above)
            or ``fixed`` (``digits`` decimals).
        digits: see ``display``.
    """

    label: str
    higher_is_better: bool | None = None
    unit: str | None = None
    display: Display = "sig"
    digits: int = 4


FRACTION = "fraction"


def fraction(label: str, higher_is_better: bool | None = True) -> MetricKey:
    """A rate stored as a fraction and printed as a percentage."""
    return MetricKey(label, higher_is_better, FRACTION, "percent", 2)


@dataclass(frozen=True)
class Metric:
    """A metric plugin.

    Attributes:
        name: registry name.
        keys: the result keys it writes, in output order, each with its :class:`MetricKey`
            (the published evaluation's key names where there is one).
        description: one line.
        compute: ``compute(ctx) -> {key: MetricValue}``; may leave keys out (and add a note) when
            the inputs they need are missing.
        needs: inputs the evaluation must prepare: ``train`` (the training split, for novelty),
            ``properties`` (property values of the samples and the reference split: from
            ``--properties`` or a property oracle).
        describe_key: for metrics whose keys depend on the run (one key per condition set), the
            declaration of a key not in ``keys`` (None: not one of this metric's keys).

    Which tasks run a metric is the task's decision (``Task.metrics``); ``evaluate --metric NAME``
    runs any registered metric.
    """

    name: str
    keys: dict[str, MetricKey]
    description: str
    compute: Callable[[EvalContext], dict[str, MetricValue]]
    needs: frozenset[str] = frozenset()
    describe_key: Callable[[str], MetricKey | None] | None = None

    def key(self, key: str) -> MetricKey | None:
        """The declaration of ``key`` if this metric writes it."""
        if key in self.keys:
            return self.keys[key]
        return self.describe_key(key) if self.describe_key is not None else None

    def stamp(self, values: dict[str, MetricValue]) -> dict[str, MetricValue]:
        """``values`` with direction and unit from this metric's declarations (:func:`stamp`)."""
        return stamp(values, self.key)


def stamp(values: dict[str, MetricValue], declaration: Callable[[str], MetricKey | None]) -> dict[str, MetricValue]:
    """``values`` with direction and unit taken from their keys' declarations (a unit the
    declaration leaves open keeps the value's own; an undeclared key is kept as it is)."""
    out = {}
    for k, v in values.items():
        decl = declaration(k)
        if decl is not None:
            v = replace(v, higher_is_better=decl.higher_is_better, unit=decl.unit if decl.unit is not None else v.unit)
        out[k] = v
    return out
