"""What a task is: what is asked of a model (or read from a sample file), how it is scored, and
how it is tabulated.

A task is one :class:`Task` subclass in one file under ``tasks/``. It holds everything that is
specific to it, so that the runner (:mod:`benchmark.tasks.runner`), the evaluation of sample
files (:mod:`benchmark.tasks.evaluation`), the command line and the leaderboard have one path for
every task and never branch on a task's name:

* its ``Config``: a frozen :class:`TaskConfig` dataclass with presets (``smoke``, ``paper``);
  fields declared with :func:`option` are also command-line options of ``run`` and/or
  ``evaluate`` (the default lives in the field, nowhere else);
* ``capability``: the model capability ``run`` needs (a model without it gets a stored
  "not supported" record);
* ``reference``: what the samples are compared with (a dataset split, the paired inputs, or
  nothing);
* :meth:`Task.produce`: how it obtains what it scores from a trained model (seeded, resumable
  batches through :class:`RunContext`);
* ``metrics``: the metrics it runs (registry names), and :meth:`Task.evaluation_options`, the
  options those metrics read;
* ``columns`` and the ``row_*`` / ``table_*`` hooks: its leaderboard table.

A third-party task subclasses :class:`Task` and registers it through the ``benchmark_tasks`` hook
(an entry whose factory returns an instance); ``run``, ``evaluate`` and ``leaderboard`` then work
for it unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Literal, Mapping, Sequence

import numpy as np

from benchmark.crystal import Crystal

if TYPE_CHECKING:  # pragma: no cover
    from benchmark.metrics.base import EvalContext, MetricKey, MetricValue

Scope = Literal["run", "evaluate", "both"]
Reference = Literal["split", "paired", "none"]

_OPTION = "benchmark_option"  # key of the field metadata an option() stores


class TaskError(ValueError):
    """A task option that cannot be used (the message says what would be valid)."""


# ------------------------------------------------------------------------------------ configs
@dataclass(frozen=True)
class OptionSpec:
    """How a config field appears on the command line (see :func:`option`)."""

    help: str
    scope: Scope = "both"
    flag: str | None = None
    metavar: str | None = None
    parse: Callable[[list[str]], Any] | None = None
    merge: bool = False


def option(default: Any = dataclasses.MISSING, *, help: str, scope: Scope = "both", flag: str | None = None,
           metavar: str | None = None, parse: Callable[[list[str]], Any] | None = None, merge: bool = False,
           default_factory: Any = dataclasses.MISSING) -> Any:
    """A task-config field that is also a command-line option.

    Args:
        default / default_factory: the field's default (the only place it is written).
        help: the option's help text (the default and the smoke preset's value are appended).
        scope: ``run``, ``evaluate`` or ``both``: which commands take it. ``run`` also takes every
            field through ``--set task.FIELD=VALUE``.
        flag: the option's name (default ``--field-name``).
        metavar: how the value is shown in ``--help``.
        parse: for a repeatable option: turns the list of strings given into the field's value
            (e.g. ``NAME=VALUE`` assignments into a mapping); raise ``ValueError`` with a one-line
            message for bad input.
        merge: a mapping given on the command line is merged over the run file's and ``--set``'s
            (else it replaces them as a whole).
    """
    spec = OptionSpec(help=help, scope=scope, flag=flag, metavar=metavar, parse=parse, merge=merge)
    kwargs: dict[str, Any] = {"metadata": {_OPTION: spec}}
    if default_factory is not dataclasses.MISSING:
        kwargs["default_factory"] = default_factory
    else:
        kwargs["default"] = default
    return field(**kwargs)


@dataclass(frozen=True)
class TaskConfig:
    """Base of every task's config: typed fields with defaults (the published protocol), frozen.

    ``presets`` maps a preset name to field values applied over the defaults (``smoke``: minutes on
    a CPU; ``paper``: the published protocol, usually the defaults); ``dataset_presets`` refines a
    preset per dataset.
    """

    presets: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {}, "paper": {}}
    dataset_presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}


@dataclass(frozen=True)
class CliOption:
    """One config field as a command-line option."""

    name: str  # the field
    spec: OptionSpec
    type: Any  # the field's resolved type hint
    default: Any

    @property
    def flag(self) -> str:
        return self.spec.flag or "--" + self.name.replace("_", "-")


def cli_options(config_cls: type, command: Literal["run", "evaluate"]) -> list[CliOption]:
    """The fields of ``config_cls`` that ``command`` takes as options, in field order."""
    from typing import get_type_hints

    hints = get_type_hints(config_cls)
    out = []
    for f in dataclasses.fields(config_cls):
        spec = f.metadata.get(_OPTION)
        if spec is None or spec.scope not in (command, "both"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        out.append(CliOption(f.name, spec, hints[f.name], default))
    return out


def merged_options(config_cls: type, given: Mapping[str, Any], *sections: Mapping[str, Any] | None) -> dict[str, Any]:
    """Command-line values of ``config_cls``'s options, ready to apply over the ``sections`` (run
    file, ``--set``): a mapping option declared with ``merge=True`` is merged over theirs."""
    specs = {f.name: f.metadata.get(_OPTION) for f in dataclasses.fields(config_cls)}
    out: dict[str, Any] = {}
    for name, value in given.items():
        spec = specs.get(name)
        if spec is not None and spec.merge and isinstance(value, Mapping):
            base: dict[str, Any] = {}
            for section in sections:
                base.update(dict((section or {}).get(name) or {}))
            value = {**base, **value}
        out[name] = value
    return out


# ------------------------------------------------------------------------------------ running
def derive_seed(seed: int, index: int) -> int:
    """Independent seed of batch ``index`` of a run seeded with ``seed`` (stable across versions)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


class BatchError(RuntimeError):
    """A model returned the wrong number of crystals for a batch."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (``--shard I/N``, 0-based): the batches ``b`` with
    ``b % count == index``. N processes (GPUs, nodes) given ``0/N`` ... ``N-1/N`` draw disjoint
    sets of a run's seeded batches into one work directory; together they are exactly the batches
    of a one-process run, since batch ``b``'s seed and size do not depend on who draws it."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: I/N needs N >= 1 and 0 <= I < N (0-based, e.g. 0/4 ... 3/4)")

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``"I/N"`` -> Shard(I, N); a clear ValueError for anything else."""
        parts = str(text).strip().split("/")
        try:
            if len(parts) != 2:
                raise ValueError
            index, count = int(parts[0]), int(parts[1])
        except ValueError:
            raise ValueError(f"--shard {text!r}: expected I/N with integers, 0 <= I < N (e.g. 0/2 and 1/2 for two processes)") from None
        return cls(index, count)

    def owns(self, batch: int) -> bool:
        return batch % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


class ShardPending(Exception):
    """This shard drew all its batches, but others' are not all written yet: nothing to score
    here. The shard that completes the set (or a rerun without ``--shard``) goes on.

    Attributes: shard, n_batches (of the run), missing (batch indices not yet written).
    """

    def __init__(self, shard: Shard, n_batches: int, missing: list[int]) -> None:
        self.shard, self.n_batches, self.missing = shard, n_batches, list(missing)
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        super().__init__(f"shard {shard}: its {len(range(shard.index, n_batches, shard.count))} batches are written; "
                         f"still missing, drawn by the other shards: {len(missing)} of the run's {n_batches} batches ({shown}). "
                         "The shard that writes the last batch scores the run (or rerun the command without --shard once all are written)")


@dataclass
class StopRule:
    """Ends :func:`batched` drawing before its budget: after each batch (made now or read back),
    ``count(crystals)`` is added to ``found``; drawing stops once ``found`` reaches ``target``. The
    rule only decides how many batches are drawn: batch ``i`` is the same crystals either way.

    Attributes:
        target: how many counted crystals end the drawing.
        count: how many of a batch's crystals count (e.g. the valid ones); must not raise.
        label: what is counted, for the progress bar (``valid 12/1000``).
        found: counted so far; batches: batches seen so far.
    """

    target: int
    count: Callable[[list[Crystal]], int]
    label: str = "valid"
    found: int = 0
    batches: int = 0

    def update(self, crystals: list[Crystal]) -> bool:
        """Count one batch; True when the target is reached."""
        self.found += int(self.count(crystals))
        self.batches += 1
        return self.reached

    @property
    def reached(self) -> bool:
        return self.found >= self.target

    @property
    def status(self) -> str:
        return f"{self.label} {self.found}/{self.target}"


def batched(
    work_dir: Path,
    n: int,
    batch_size: int,
    make: Callable[[int, int], Any],
    progress: bool = True,
    desc: str = "sampling",
    stop: StopRule | None = None,
    shard: Shard | None = None,
) -> tuple[list[Crystal], int | None, dict[str, np.ndarray]]:
    """Run ``make(batch_index, batch_n)`` for each batch, keeping each batch's crystals in
    ``work_dir/batch_<i>.extxyz`` (written atomically, its ``.json`` marker last). Batches already
    there are read back, not recomputed: an interrupted run continues where it stopped, with no
    lost or duplicated crystals.

    ``make`` returns ``(crystals, model evaluations or None)`` or, with per-sample arrays (see
    ``SampleBatch.artifacts``), ``(crystals, evaluations, artifacts)``; each artifact's first axis
    is the batch's n. A batch's artifacts go to ``batch_<i>.npz``, written before the marker, which
    lists their names; on resume they are read back, and a batch whose ``.npz`` is missing or does
    not fit is made again. Every batch must give the same artifact names.

    With a ``stop`` rule, ``n`` is a budget: after each batch the rule counts its crystals, and
    no further batch is drawn once its target is reached (the progress bar shows the count). The
    batches drawn are exactly the first ones of a run without the rule, with the same seeds and
    sizes, and resume the same way (a read-back batch is counted again, not redrawn).

    With a ``shard``, only the shard's own batches are made; the others are read back when another
    shard has written them. When some are still missing after this shard's own batches are done,
    they are looked for once more (the shard that finishes last sees every other shard's batches,
    so a set completed by concurrent shards is never left unscored) and :class:`ShardPending` is
    raised if any is still absent. A shard cannot take a ``stop`` rule: where to stop depends on
    the batches before, in order.

    Returns (crystals, model evaluations or None, artifacts concatenated over the batches).
    """
    from tqdm.auto import tqdm

    from benchmark.files import read_npz, write_json_atomic, write_npz_atomic
    from benchmark.samples import read_samples, write_extxyz

    if shard is not None and stop is not None:
        raise BatchError(f"--shard {shard}: a run that draws until a count is reached (a stop rule, e.g. --until-valid) cannot be sharded; "
                         "where it stops depends on the batches before, in order")
    work_dir.mkdir(parents=True, exist_ok=True)
    n_batches = max(1, math.ceil(n / batch_size)) if n > 0 else 0
    read: dict[int, tuple[list[Crystal], dict[str, np.ndarray], int | None]] = {}

    def read_back(b: int) -> bool:
        """Batch ``b`` from the work directory if it is complete there (kept in ``read``)."""
        bn = min(batch_size, n - b * batch_size)
        path, meta = work_dir / f"batch_{b:05d}.extxyz", work_dir / f"batch_{b:05d}.json"
        if not (path.is_file() and meta.is_file()):
            return False
        crystals = [c for c in read_samples(path).entries if isinstance(c, Crystal)]
        info = json.loads(meta.read_text())
        names = list(info.get("artifacts", []))
        arrays = (read_npz(work_dir / f"batch_{b:05d}.npz") or {}) if names else {}
        fits = sorted(arrays) == sorted(names) and all(a.ndim >= 1 and a.shape[0] == bn for a in arrays.values())
        if not (len(crystals) == bn == info.get("n") and fits):
            return False
        n_eval = info.get("model_evaluations")
        read[b] = (crystals, arrays, None if n_eval is None else int(n_eval))
        return True

    out: list[Crystal] = []
    parts: list[dict[str, np.ndarray]] = []
    evals: int | None = 0
    missing: list[int] = []
    bar = tqdm(total=n_batches, desc=desc if shard is None else f"{desc} (shard {shard})", unit="batch", disable=not progress)
    for b in range(n_batches):
        if stop is not None and stop.reached:
            break
        bn = min(batch_size, n - b * batch_size)
        path = work_dir / f"batch_{b:05d}.extxyz"
        meta = work_dir / f"batch_{b:05d}.json"
        arrays_path = work_dir / f"batch_{b:05d}.npz"
        if read_back(b):
            crystals, arrays, n_eval = read.pop(b)
            out.extend(crystals)
            parts.append(arrays)
            evals = None if evals is None or n_eval is None else evals + n_eval
            _counted(stop, crystals, bar)
            continue
        if shard is not None and not shard.owns(b):
            missing.append(b)  # another shard's batch, not written yet: looked for again at the end
            out.extend([None] * bn)  # type: ignore[list-item]  # its place, filled below
            parts.append({})
            bar.update(1)
            continue
        made = make(b, bn)
        crystals, n_eval = made[0], made[1]
        arrays = {str(k): np.asarray(v) for k, v in (made[2] if len(made) > 2 else {}).items()}
        if len(crystals) != bn:
            raise BatchError(f"the model returned {len(crystals)} crystals for a batch of {bn}")
        for name, array in arrays.items():
            if array.ndim == 0 or array.shape[0] != bn:
                raise BatchError(f"artifact {name!r} has shape {array.shape} for a batch of {bn} (the first axis must be the batch's n)")
        write_extxyz(crystals, path)
        if arrays:
            write_npz_atomic(arrays_path, arrays)  # before the marker: a marked batch has its arrays
        write_json_atomic(meta, {"n": bn, "model_evaluations": n_eval, "artifacts": sorted(arrays)})  # written last: marks the batch complete
        out.extend(crystals)
        parts.append(arrays)
        evals = None if evals is None or n_eval is None else evals + int(n_eval)
        _counted(stop, crystals, bar)
    bar.close()
    if missing:
        assert shard is not None
        still = [b for b in missing if not read_back(b)]
        if still:
            raise ShardPending(shard, n_batches, still)
        for b in missing:  # every batch is now written: put the other shards' in their places
            crystals, arrays, n_eval = read.pop(b)
            out[b * batch_size : b * batch_size + len(crystals)] = crystals
            parts[b] = arrays
            evals = None if evals is None or n_eval is None else evals + n_eval
    return out, evals, _concatenate_artifacts(parts)


def _counted(stop: StopRule | None, crystals: list[Crystal], bar: Any) -> None:
    """One batch done: the stop rule counts it and the bar shows the count."""
    if stop is not None:
        stop.update(crystals)
        bar.set_postfix_str(stop.status, refresh=False)
    bar.update(1)


def _concatenate_artifacts(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-batch artifacts joined along the first axis; every batch must have the same names."""
    if not parts or not any(parts):
        return {}
    names = sorted(parts[0])
    for i, part in enumerate(parts):
        if sorted(part) != names:
            raise BatchError(f"batch {i} has artifacts {sorted(part)}, batch 0 has {names}: every batch must give the same ones")
    try:
        return {name: np.concatenate([part[name] for part in parts], axis=0) for name in names}
    except ValueError as exc:
        raise BatchError(f"artifacts of different shapes across batches: {exc}") from exc


@dataclass
class RunContext:
    """What :meth:`Task.produce` is given besides the model.

    Attributes:
        config: the task's resolved config.
        dataset: the dataset plugin object (``load(split, data_dir, limit=...)``).
        data_dir: the data directory given on the command line (or None).
        seed: the run's seed; batch ``i`` uses :meth:`seed_of` ``(i)``.
        device: ``cpu`` / ``cuda`` ...
        work_dir: where resumable batches are kept until the run is stored.
        progress: show progress bars.
        profile: the metric profile the run is scored with (a stop rule that counts valid
            crystals judges them as the scoring will).
        shard: with ``--shard I/N``, this process makes only its share of the batches
            (:class:`Shard`); :meth:`batches` raises :class:`ShardPending` until all are written.
    """

    config: Any
    dataset: Any
    data_dir: str | None
    seed: int
    device: str
    work_dir: Path
    progress: bool = True
    profile: str = "cdvae"
    shard: Shard | None = None

    def seed_of(self, index: int) -> int:
        return derive_seed(self.seed, index)

    def load(self, split: str, limit: int | None = None) -> list[Crystal]:
        return self.dataset.load(split, self.data_dir, limit=limit, progress=self.progress)

    def batches(self, n: int, batch_size: int, make: Callable[[int, int], Any],
                desc: str = "sampling", stop: StopRule | None = None) -> tuple[list[Crystal], int | None, dict[str, np.ndarray]]:
        """:func:`batched` in this run's work directory: (crystals, evaluations, artifacts)."""
        return batched(self.work_dir, n, batch_size, make, self.progress, desc, stop, self.shard)

    def sample(self, model: Any, n: int, batch_size: int,
               stop: StopRule | None = None) -> tuple[list[Crystal], int | None, dict[str, np.ndarray]]:
        """``n`` crystals from ``model.sample`` in seeded, resumable batches, with the model's
        per-sample artifacts (``SampleBatch.artifacts``) concatenated in sample order; with a
        ``stop`` rule, ``n`` is a budget and drawing ends once the rule's target is reached."""

        def make(b: int, bn: int) -> tuple[list[Crystal], int | None, Mapping[str, np.ndarray]]:
            batch = model.sample(bn, seed=self.seed_of(b), device=self.device)
            return list(batch.crystals), batch.model_evaluations, dict(getattr(batch, "artifacts", None) or {})

        return self.batches(n, batch_size, make, "sampling", stop)


@dataclass
class Produced:
    """What :meth:`Task.produce` returns.

    Attributes:
        crystals: the crystals to score with the task's metrics (written to the run directory as
            ``samples.extxyz``), or None when the task measures something else (sampling speed).
        metrics: values the task measured itself (keys declared in ``Task.keys``).
        record: extra sections of the run record (e.g. ``speed``).
        artifacts: per-sample arrays from the model (first axis in the order of ``crystals``),
            saved as ``artifacts.npz`` in the run directory and given to the metrics as
            ``EvalContext.artifacts``.
        notes: sentences for the run record's notes (before the evaluation's).
    """

    crystals: list[Crystal] | None
    metrics: dict[str, "MetricValue"] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)



# ------------------------------------------------------------------------------------ protocol fingerprints
def protocol_fingerprint(fields: Mapping[str, Any]) -> str:
    """The fingerprint of a run's scoring protocol (energy model, settings, reference data,
    thresholds, versions): the SHA-256 hex digest of ``fields`` as canonical JSON
    (:func:`benchmark.files.key_digest`: sorted keys, no spaces, tuples as lists). Equal fields give equal
    fingerprints whether computed before the record is stored or from the stored JSON."""
    from benchmark.files import key_digest

    return key_digest(fields)


def protocol_section(record: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """A run record's ``protocol`` section (``{"fingerprint": str, "fields": {...}}``), or None
    when it has none or it is malformed (no string ``fingerprint`` or no mapping ``fields``)."""
    section = record.get("protocol")
    if not isinstance(section, Mapping):
        return None
    fingerprint, fields = section.get("fingerprint"), section.get("fields")
    return section if isinstance(fingerprint, str) and fingerprint and isinstance(fields, Mapping) else None


# ------------------------------------------------------------------------------------ the task
class Task:
    """Base class of every task (see the module doc). Subclasses set the class attributes and
    override what they need; the defaults fit a task that samples crystals and scores them
    against nothing.

    Attributes:
        name: registry name (an identifier).
        description: one line (``list tasks``).
        protocol: the published protocol in one sentence (counts, steps), for records and docs.
        Config: the task's config dataclass (a :class:`TaskConfig` subclass).
        capability: the model capability ``run`` needs (:data:`benchmark.models.base.CAPABILITIES`),
            or None for a task that only scores sample files.
        reference: ``split`` (compared with a dataset split, featurised and cached), ``paired``
            (the crystal each sample reconstructs) or ``none``.
        evaluable: ``evaluate`` can score a sample file for it.
        properties_from_samples: property values carried by the sample file are scored (the
            published SR uses whatever property model scored the optimised crystals); otherwise
            properties come from ``--properties`` or an oracle only.
        metrics: registry names of the metrics it runs, in order (their keys come out in this
            order; the published evaluation's key order for the CDVAE tasks).
        keys: declarations of values the task measures itself (``Produced.metrics``).
        columns: its leaderboard columns (metric keys) in display order; columns without any value
            are dropped.
        headline_columns: how many of ``columns`` a table of "not supported" rows alone shows.
        leaderboard_order: position among the tables of a plain ``leaderboard``.
        leaderboard_default: a plain ``leaderboard`` shows the table even when only the papers'
            reported rows exist (else only when runs of it are stored).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    protocol: ClassVar[str] = ""
    Config: ClassVar[type[TaskConfig]] = TaskConfig
    capability: ClassVar[str | None] = None
    reference: ClassVar[Reference] = "none"
    evaluable: ClassVar[bool] = True
    properties_from_samples: ClassVar[bool] = False
    metrics: ClassVar[tuple[str, ...]] = ()
    keys: ClassVar[dict[str, "MetricKey"]] = {}
    columns: ClassVar[tuple[str, ...]] = ()
    headline_columns: ClassVar[int] = 3
    leaderboard_order: ClassVar[int] = 100
    leaderboard_default: ClassVar[bool] = False

    def __init__(self) -> None:
        if not self.name or not self.name.isidentifier():
            raise TypeError(f"{type(self).__name__}.name must be an identifier, got {self.name!r}")

    def __repr__(self) -> str:
        return f"<task {self.name}>"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.reference not in ("split", "paired", "none"):
            raise TypeError(f"{cls.__name__}.reference must be 'split', 'paired' or 'none', got {cls.reference!r}")
        if not (isinstance(cls.Config, type) and issubclass(cls.Config, TaskConfig)):
            raise TypeError(f"{cls.__name__}.Config must subclass benchmark.tasks.base.TaskConfig")

    # ------------------------------------------------------------------ configuration
    def check_config(self, config: Any, dataset: str) -> Any:
        """Validate and normalise a resolved config before any work (raise :class:`TaskError`),
        so that equal requests give equal configs. Default: positive ``n_samples`` and
        ``batch_size`` where the config has them."""
        for name in ("n_samples", "batch_size"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value <= 0:
                raise TaskError(f"task.{name} must be positive, got {value}")
        return config

    def resolve_config(self, *, preset: str | None = None, dataset: str | None = None, section: Mapping[str, Any] | None = None,
                       overrides: Mapping[str, Any] | None = None, given: Mapping[str, Any] | None = None) -> Any:
        """The task's config: defaults, then ``preset`` (and its refinement for ``dataset``), the
        run file's ``[task]`` ``section``, ``--set task.*`` ``overrides`` and the values ``given``
        as command-line options (:func:`merged_options`), checked by :meth:`check_config`.
        Raises :class:`~benchmark.config.ConfigError` or :class:`TaskError`."""
        from benchmark.config import resolve

        values = {**dict(overrides or {}), **merged_options(self.Config, given or {}, section, overrides)}
        config = resolve(self.Config, preset, dataset, section, values, "task")
        return self.check_config(config, dataset or "")

    # ------------------------------------------------------------------ running a model
    def produce(self, model: Any, run: RunContext) -> Produced:
        """Ask ``model`` for what this task scores (only called when the model has
        :attr:`capability`). Default: ``run.config.n_samples`` crystals from ``model.sample``."""
        cfg = run.config
        crystals, _, artifacts = run.sample(model, cfg.n_samples, cfg.batch_size)
        return Produced(crystals, artifacts=artifacts)

    # ------------------------------------------------------------------ scoring
    def stamp(self, values: dict[str, "MetricValue"]) -> dict[str, "MetricValue"]:
        """Values the task measured itself, with direction and unit from :attr:`keys`."""
        from benchmark.metrics.base import stamp

        return stamp(values, self.keys.get)

    def evaluation_options(self, config: Any, dataset: Any, *, oracle_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
        """Options the task's metrics read from ``EvalContext.options`` (called before any crystal
        is read, so a bad option fails early; raise :class:`TaskError`)."""
        return {}

    def property_indices(self, ctx: "EvalContext") -> Sequence[int]:
        """Indices of the samples a property oracle is asked about (default: every valid one)."""
        return [k for k, r in enumerate(ctx.samples) if r.valid]

    def record_extras(self, ctx: "EvalContext") -> dict[str, Any]:
        """Extra sections of the run record from a finished evaluation (default: none)."""
        return {}

    # ------------------------------------------------------------------ leaderboard
    def row_label(self, record: Mapping[str, Any], label: str) -> str:
        """The row label of a stored run (default: the model's name, ``label``)."""
        return label

    def row_values(self, values: dict[str, float | None]) -> dict[str, float | None]:
        """A stored run's values as the table shows them (derived columns; default: as stored)."""
        return values

    def merge_key(self, record: Mapping[str, Any]) -> str | None:
        """Runs with the same key (not None) are merged into one leaderboard row (default: never);
        runs with different :meth:`protocol_of` fingerprints never are."""
        return None

    def protocol_of(self, record: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The scoring protocol a stored run was measured under, ``{"fingerprint", "fields"}``, or
        None. The leaderboard ranks only rows of one fingerprint against each other: rows of
        different fingerprints are shown in separate groups with the differing fields listed, and
        ``leaderboard --strict`` refuses to print them together. A task opts in by writing a
        ``protocol`` section into its records (fingerprint from :func:`protocol_fingerprint`);
        default: that section when well formed (:func:`protocol_section`). A task may override it
        to derive a protocol from records that predate the section."""
        return protocol_section(record)

    def table_columns(self, keys: Iterable[str]) -> list[str]:
        """The columns for a table whose rows hold ``keys`` (default: :attr:`columns`, or every
        key in first-seen order when the task declares none)."""
        if self.columns:
            return list(self.columns)
        return list(dict.fromkeys(keys))

    def table_notes(self, records: Sequence[Mapping[str, Any]], oracles: Sequence[str]) -> list[str]:
        """Sentences for the table's caption (default: which property oracle scored the rows)."""
        return ["Property oracle: " + ", ".join(oracles) + "."] if oracles else []


__all__ = [
    "BatchError", "CliOption", "OptionSpec", "Produced", "RunContext", "Shard", "ShardPending", "StopRule", "Task", "TaskConfig", "TaskError",
    "batched", "cli_options", "derive_seed", "merged_options", "option", "protocol_fingerprint", "protocol_section",
]
