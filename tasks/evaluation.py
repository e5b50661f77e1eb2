"""Scoring a sample file: the path behind ``python -m benchmark evaluate`` (and the scoring step of
``run``), one path for every task.

read samples -> evaluate each crystal (parallel) -> the task's reference (a split, cached; or the
paired inputs) -> the training split and property values if a metric needs them -> the task's
metrics -> per-structure table + run record (results store).

What differs between tasks comes from the task object (:class:`benchmark.tasks.base.Task`): its
config and the options its metrics read, its reference, its metrics, which samples a property
oracle scores, and extra record sections. Nothing here branches on a task's name.

Nothing computed is lost to one bad crystal: unreadable entries and crystals that cannot be
built are scored as invalid with their reason, and the per-structure table says which and why.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from benchmark.metrics.base import EvalContext, Metric, MetricValue
from benchmark.metrics.crystal_eval import CrystalResult


class EvaluationError(RuntimeError):
    """The evaluation cannot start (bad arguments, unreadable sample file, missing dataset)."""


@dataclass
class EvaluateOptions:
    """Arguments of one evaluation (the CLI's flags).

    Task-specific settings are the task's config: ``task_config`` (a resolved config of the task,
    as ``run`` passes it) or ``task_options`` (field -> value over the config's defaults, as the
    command line passes them; e.g. ``{"num_opt": 4}`` or ``{"conditions": {"band_gap": 3}}``).
    ``run_id`` names the record (``run`` passes its own); None mints one. ``artifacts``: the
    model's per-sample arrays (``SampleBatch.artifacts``, first axis in sample-file order), handed
    to the metrics as ``EvalContext.artifacts`` (``run`` passes them; empty for a sample file).
    ``scheduler``: a ``--scheduler`` spec (:mod:`benchmark.scheduler`); the scoring then runs on
    that Dask cluster (``backend`` becomes ``dask``) and the record gets a ``scheduler`` section.
    ``chunk_size``: samples read and featurised at a time, so that memory does not grow with the
    file (:func:`featurise_samples`); None reads the whole file first (same numbers).
    """

    task: str
    dataset: str
    samples: str | Path
    limit: int | None = None
    reference_split: str = "test"
    train_split: str = "train"
    profile: str = "cdvae"
    seed: int = 0
    n_jobs: int | None = None
    backend: str = "loky"
    fingerprint_backend: str = "fast"
    data_dir: str | None = None
    runs_dir: str | None = None
    properties: str | None = None
    property_name: str | None = None
    metrics: Sequence[str] | None = None
    model_name: str | None = None
    progress: bool = True
    use_cache: bool = True
    store: bool = True
    batch_idx: int = 0
    oracle: str | None = "auto"
    oracle_dir: str | None = None
    task_options: Mapping[str, Any] = field(default_factory=dict)
    task_config: Any = None
    run_id: str | None = None
    artifacts: Mapping[str, Any] = field(default_factory=dict)
    scheduler: str | None = None
    chunk_size: int | None = 2000


@dataclass
class EvaluationResult:
    metrics: dict[str, MetricValue]
    per_structure: Any  # pandas.DataFrame
    record: dict[str, Any]
    run_dir: Path | None
    notes: list[str] = field(default_factory=list)
    # file name -> writer(path) for figures and files a metric produced (histograms, relaxed crystals)
    artifact_writers: dict[str, Any] = field(default_factory=dict)
    # record sections the task adds (e.g. the condition set)
    extras: dict[str, Any] = field(default_factory=dict)

    def write_artifacts(self, run_dir: Path) -> dict[str, str]:
        """Write the metrics' artifacts into ``run_dir``; returns {name: file name} for the record.
        A failing writer is reported in the notes, not raised: the numbers are already computed."""
        return write_artifacts(self.artifact_writers, run_dir, self.notes)

    def flat(self) -> dict[str, float | None]:
        """Aggregate metrics as {key: value}, in the order the task's metrics wrote them."""
        return flatten({k: v.as_dict() for k, v in self.metrics.items()})


def write_artifacts(writers: dict[str, Any], run_dir: Path, notes: list[str]) -> dict[str, str]:
    written: dict[str, str] = {}
    for name, writer in writers.items():
        try:
            writer(Path(run_dir) / name)
            written[Path(name).stem] = name
        except Exception as exc:
            notes.append(f"artifact {name} not written: {type(exc).__name__}: {exc}")
    return written


def flatten(metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, float | None]:
    """A record's ``metrics`` as {key: value}, in stored order (the task's metric order; for the
    CDVAE tasks the published evaluation's key order)."""
    return {k: v["value"] for k, v in metrics.items()}


def _load_properties(path: str, n: int, name: str | None) -> np.ndarray:
    """Property values aligned with the samples: a JSON list (or {"predictions": [...]}, the oracle
    output format), a .npy array, or a CSV with a column named ``name`` (or a single column)."""
    p = Path(path)
    if not p.is_file():
        raise EvaluationError(f"--properties {path}: no such file")
    try:
        if p.suffix == ".json":
            data = json.loads(p.read_text())
            if isinstance(data, dict):
                data = data.get("predictions", data.get(name or "", None))
            values = np.array([np.nan if v is None else float(v) for v in data], dtype=np.float64)
        elif p.suffix == ".npy":
            values = np.load(p, allow_pickle=False).astype(np.float64).reshape(-1)
        else:
            import pandas as pd

            df = pd.read_csv(p)
            col = name if name in df.columns else (df.columns[0] if len(df.columns) == 1 else None)
            if col is None:
                raise EvaluationError(f"--properties {path}: no column {name!r} (columns: {', '.join(df.columns)})")
            values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise EvaluationError(f"--properties {path}: cannot read property values ({exc})") from exc
    if len(values) < n:
        raise EvaluationError(f"--properties {path}: {len(values)} values for {n} samples")
    return values[:n]


def _properties_from_entries(entries: Sequence[Any], name: str | None) -> np.ndarray | None:
    if not name:
        return None
    arr = _property_values(entries, name)
    return arr if np.isfinite(arr).any() else None


def _property_values(entries: Sequence[Any], name: str) -> np.ndarray:
    """The samples' own values of property ``name`` (NaN where missing)."""
    vals = []
    for e in entries:
        v = getattr(e, "properties", {}).get(name) if hasattr(e, "properties") else None
        try:
            vals.append(float(v) if v is not None else np.nan)
        except (TypeError, ValueError):
            vals.append(np.nan)
    return np.array(vals, dtype=np.float64)


@dataclass
class FeaturisedSamples:
    """What :func:`featurise_samples` returns.

    Attributes:
        results: per-sample results in file order (a list, or for a streamed file a
            :class:`~benchmark.metrics.result_store.CompactResults` with its fingerprints on disk).
        entries: the entries in file order (a list, or the :class:`~benchmark.samples.SampleStream`,
            which reads them again from the file when a metric asks).
        n_unreadable: entries that could not be read.
        properties: the samples' own values of the property asked for (None: not asked, or none).
    """

    results: Sequence[CrystalResult]
    entries: Sequence[Any]
    n_unreadable: int
    properties: np.ndarray | None
    read_s: float
    featurise_s: float


def _n_unreadable(results: Sequence[CrystalResult]) -> int:
    return sum(1 for r in results if r.reasons and r.reasons[0].startswith("unreadable"))


def featurise_samples(sample_set: Any, profile: Any, opts: EvaluateOptions, property_name: str | None) -> FeaturisedSamples:
    """Evaluate every sample of a :class:`~benchmark.samples.SampleSet` (all at once) or a
    :class:`~benchmark.samples.SampleStream` (``opts.chunk_size`` entries at a time: only one
    chunk of crystals is in memory, and the results are kept compactly, fingerprints on disk).
    The results are the same either way: each crystal is evaluated by the same function, and a
    chunk's results get the indices they have in the whole file.

    Raises:
        EvaluationError: the file holds no entries, or a streamed file turns out unreadable.
    """
    from benchmark.metrics.featurize import evaluate_entries
    from benchmark.samples import SampleFileError, SampleStream

    feat = dict(n_jobs=opts.n_jobs, backend=opts.backend, fp_backend=opts.fingerprint_backend)
    if not isinstance(sample_set, SampleStream):
        entries = list(sample_set.entries)
        if not entries:
            raise EvaluationError(f"{opts.samples}: no crystals to evaluate")
        t = time.time()
        results = evaluate_entries(entries, profile, progress=opts.progress, desc="featurising samples", **feat)
        props = _properties_from_entries(entries, property_name)
        return FeaturisedSamples(results, entries, _n_unreadable(results), props, 0.0, time.time() - t)

    from tqdm.auto import tqdm

    from benchmark.metrics.result_store import CompactResults

    compact = CompactResults()
    values: list[np.ndarray] = []
    n_unreadable = offset = 0
    read_s = featurise_s = 0.0
    bar = tqdm(desc="featurising samples", unit="crystal", disable=not opts.progress)
    chunks = sample_set.chunks(int(opts.chunk_size or 1))
    while True:
        t = time.time()
        try:
            chunk = next(chunks)
        except StopIteration:
            break
        except SampleFileError as exc:
            raise EvaluationError(str(exc)) from exc
        read_s += time.time() - t
        t = time.time()
        part = evaluate_entries(chunk, profile, progress=False, **feat)
        for r in part:  # evaluate_entries numbers the chunk from 0
            r.index += offset
        compact.extend(part)
        n_unreadable += _n_unreadable(part)
        if property_name:
            values.append(_property_values(chunk, property_name))
        featurise_s += time.time() - t
        offset += len(chunk)
        bar.update(len(chunk))
    bar.close()
    if offset == 0:
        raise EvaluationError(f"{opts.samples}: no crystals to evaluate")
    props = None
    if property_name:
        arr = np.concatenate(values)
        props = arr if np.isfinite(arr).any() else None
    return FeaturisedSamples(compact, sample_set, n_unreadable, props, read_s, featurise_s)


PER_STRUCTURE_FIELDS = ("index", "label", "formula", "n_atoms", "constructed", "comp_valid", "struct_valid", "valid",
                        "reason", "density", "n_elems", "min_dist", "volume")


def per_structure_table(results: Sequence[CrystalResult], extra: dict[str, list[Any]]) -> Any:
    """One row per sample: its CrystalResult fields, then the columns the metrics added."""
    import pandas as pd

    column = getattr(results, "column", None)  # CompactResults: straight from its columns
    if column is not None:
        rows: dict[str, list[Any]] = {name: column(name) for name in PER_STRUCTURE_FIELDS}
    else:
        rows = {name: [getattr(r, name) for r in results] for name in PER_STRUCTURE_FIELDS}
    rows.update(extra)
    return pd.DataFrame(rows)


def select_metrics(task: Any, names: Sequence[str] | None) -> list[Metric]:
    """The metrics to compute: ``names`` (any registered metric), else the task's own."""
    from benchmark.registry import get_plugins

    reg = get_plugins()["metrics"]
    return [reg.get(n) for n in (names or task.metrics)]


def get_task(name: str) -> Any:
    from benchmark.registry import get_plugins

    return get_plugins()["tasks"].get(name)


def task_config(task: Any, opts: EvaluateOptions, dataset: str) -> Any:
    """The task's config for an evaluation: ``opts.task_config`` as given, else the defaults (the
    published protocol) with ``opts.task_options`` over them, checked by the task."""
    from benchmark.config import ConfigError
    from benchmark.tasks.base import TaskError

    try:
        if opts.task_config is not None:
            if not isinstance(opts.task_config, task.Config):
                raise EvaluationError(f"task_config is a {type(opts.task_config).__name__}, the {task.name} task needs a {task.Config.__name__}")
            return opts.task_config
        return task.resolve_config(dataset=dataset, given=opts.task_options)
    except (ConfigError, TaskError) as exc:
        raise EvaluationError(str(exc)) from exc


def evaluate(opts: EvaluateOptions) -> EvaluationResult:
    """Score a sample file for a task (see module doc); with ``opts.scheduler``, on that Dask cluster
    (opened for the evaluation, a LocalCluster closed again after it)."""
    if opts.scheduler is None:
        return _evaluate(opts)
    from dataclasses import replace

    from benchmark.scheduler import SchedulerError, scheduler_session

    try:
        with scheduler_session(opts.scheduler):
            return _evaluate(replace(opts, backend="dask"))
    except SchedulerError as exc:
        raise EvaluationError(str(exc)) from exc


def _evaluate(opts: EvaluateOptions) -> EvaluationResult:
    from benchmark import settings
    from benchmark.datasets.base import DatasetNotFound
    from benchmark.files import sha256_file
    from benchmark.metrics.crystal_eval import check_fingerprint_backend
    from benchmark.metrics.featurize import check_backend, evaluate_reference
    from benchmark.metrics.profiles import get_profile
    from benchmark.registry import get_plugins
    from benchmark.samples import SampleFileError, open_samples, read_samples
    from benchmark.tasks.base import TaskError

    t_start = time.time()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start))
    plugins = get_plugins()
    task = plugins["tasks"].get(opts.task)
    if not task.evaluable:
        raise EvaluationError(f"task {opts.task!r} cannot score a sample file")
    dataset = plugins["datasets"].get(opts.dataset)
    try:
        profile = get_profile(opts.profile)
    except KeyError as exc:
        raise EvaluationError(str(exc.args[0])) from exc
    metrics = select_metrics(task, opts.metrics)
    try:
        check_backend(opts.backend)
        check_fingerprint_backend(opts.fingerprint_backend)
    except ValueError as exc:
        raise EvaluationError(str(exc)) from exc
    config = task_config(task, opts, dataset.name)
    # the task's options (e.g. the condition set's checkers, loaded now): before any crystal is read,
    # so a bad option or missing oracle weights fail here, not after featurisation
    try:
        task_opts = task.evaluation_options(config, dataset, oracle_dir=opts.oracle_dir, progress=opts.progress)
    except TaskError as exc:
        raise EvaluationError(str(exc)) from exc
    timings: dict[str, float] = {}

    # ---- samples: read whole, or (opts.chunk_size) streamed from the file a chunk at a time
    t = time.time()
    try:
        if opts.chunk_size:
            sample_set = open_samples(opts.samples, limit=opts.limit, batch_idx=opts.batch_idx)
        else:
            sample_set = read_samples(opts.samples, limit=opts.limit, batch_idx=opts.batch_idx)
    except SampleFileError as exc:
        raise EvaluationError(str(exc)) from exc
    opened_s = time.time() - t
    prop_name = opts.property_name or dataset.target
    featurised = featurise_samples(sample_set, profile, opts, prop_name if task.properties_from_samples and not opts.properties else None)
    results, entries = featurised.results, featurised.entries
    n_samples = len(results)
    timings["read_samples_s"] = opened_s + featurised.read_s
    timings["featurise_samples_s"] = featurised.featurise_s
    notes: list[str] = []
    n_unreadable = featurised.n_unreadable
    if n_unreadable:
        notes.append(f"{n_unreadable} entries of the sample file could not be read; counted as invalid")

    # ---- reference
    reference: list[CrystalResult] | None = None
    ref_crystals: list[Any] = []
    ref_info: dict[str, Any] = {"name": dataset.name, "reference_split": None}
    try:
        if task.reference == "split":
            path = dataset.file_path(opts.reference_split, opts.data_dir)
            ref_crystals = dataset.load(opts.reference_split, opts.data_dir, progress=opts.progress)
            digest = sha256_file(path)
            t = time.time()
            reference, cached = evaluate_reference(
                ref_crystals, digest, opts.reference_split, profile, n_jobs=opts.n_jobs, backend=opts.backend, progress=opts.progress, use_cache=opts.use_cache,
                fp_backend=opts.fingerprint_backend,
            )
            timings["featurise_reference_s"] = time.time() - t
            timings["reference_cached"] = float(cached)
            ref_info = {"name": dataset.name, "reference_split": opts.reference_split, "file": str(path), "sha256": digest, "n_reference": len(ref_crystals)}
        elif task.reference == "paired":
            if sample_set.references is not None:
                ref_crystals = list(sample_set.references)
                ref_info = {"name": dataset.name, "reference_split": "input_data_batch of the sample file", "n_reference": len(ref_crystals)}
            else:
                path = dataset.file_path(opts.reference_split, opts.data_dir)
                ref_crystals = dataset.load(opts.reference_split, opts.data_dir, progress=opts.progress)[:n_samples]
                ref_info = {"name": dataset.name, "reference_split": opts.reference_split, "file": str(path), "sha256": sha256_file(path), "n_reference": len(ref_crystals)}
                notes.append(f"reconstructions paired in order with the first {len(ref_crystals)} crystals of {dataset.name}/{opts.reference_split}")
    except DatasetNotFound as exc:
        raise EvaluationError(str(exc)) from exc

    # ---- what the metrics need besides the samples
    needs = frozenset().union(*(m.needs for m in metrics)) if metrics else frozenset()
    train = None
    if "train" in needs:
        try:
            train = dataset.load(opts.train_split, opts.data_dir, progress=opts.progress) if opts.train_split in dataset.splits else None
        except DatasetNotFound:
            train = None
    if opts.properties:
        properties = _load_properties(opts.properties, n_samples, prop_name)
    elif task.properties_from_samples:
        properties = featurised.properties
    else:
        properties = None

    ctx = EvalContext(
        task=task.name,
        dataset=dataset.name,
        family=dataset.protocol_family,
        profile=profile,
        seed=opts.seed,
        samples=results,
        reference=reference,
        sample_crystals=entries,
        reference_crystals=ref_crystals,
        train=train,
        properties=properties,
        property_name=prop_name,
        options={"n_jobs": opts.n_jobs, "backend": opts.backend, "fingerprint_backend": opts.fingerprint_backend, "progress": opts.progress,
                 "data_dir": opts.data_dir, **task_opts},
        notes=notes,
        artifacts={str(k): np.asarray(v) for k, v in opts.artifacts.items()},
    )
    if properties is None and opts.oracle and "properties" in needs:
        t = time.time()
        _oracle_properties(ctx, task, opts, dataset, ref_info, notes)
        timings["oracle_s"] = time.time() - t

    values: dict[str, MetricValue] = {}
    t = time.time()
    for metric in metrics:
        try:
            values.update(metric.stamp(metric.compute(ctx)))
        except Exception as exc:  # one metric failing must not lose the others
            notes.append(f"metric {metric.name} failed: {type(exc).__name__}: {exc}")
    timings["metrics_s"] = time.time() - t
    timings["total_s"] = time.time() - t_start
    table = per_structure_table(results, ctx.per_structure)
    writers: dict[str, Any] = dict(ctx.cache.get("artifact_writers", {}))
    extras = task.record_extras(ctx)

    record = _record(opts, task.name, dataset.name, profile, sample_set, ref_info, values, timings, notes, started_at, ctx, config)
    record["fingerprints"] = fingerprint_summary(opts.fingerprint_backend, results, reference)
    record.update(extras)
    close = getattr(results, "close", None)  # CompactResults: drop its fingerprint file; the table and record are made
    if close is not None:
        close()
    run_dir = None
    if opts.store:
        from benchmark.store import ResultsStore

        store = ResultsStore(settings.runs_dir(opts.runs_dir))
        run_dir = store.run_dir(record["run_id"])
        store.write_per_structure(record["run_id"], table)
        record["artifacts"] = {"per_structure": "per_structure.csv", **write_artifacts(writers, run_dir, record["notes"])}
        store.save(record)
    return EvaluationResult(values, table, record, run_dir, notes, writers, extras)


def fingerprint_summary(requested: str, samples: Sequence[CrystalResult], reference: list[CrystalResult] | None) -> dict[str, Any]:
    """Which backend computed the CrystalNN fingerprints (the run record's ``fingerprints``): the one
    requested, and per set the crystals each backend computed and why the fast one handed crystals
    to matminer. A cached reference keeps the backends that computed it."""
    from collections import Counter

    def counts(results: Sequence[CrystalResult]) -> dict[str, Any]:
        by = Counter(r.fp_backend for r in results if r.fp_backend)
        why = Counter(r.fp_fallback for r in results if r.fp_fallback)
        return {"by_backend": dict(sorted(by.items())), "fallbacks": dict(sorted(why.items()))}

    out: dict[str, Any] = {"backend": requested, "samples": counts(samples)}
    if reference is not None:
        out["reference"] = counts(reference)
    return out


def _oracle(opts: EvaluateOptions, dataset: Any, notes: list[str]) -> Any | None:
    """The property oracle to use: ``--oracle NAME``, or with ``auto`` the published CDVAE model of
    the dataset's protocol family when its weights can be found (else a note, not an error)."""
    from benchmark.metrics.oracles.base import PREDICT, NotAnOracle, check_oracle
    from benchmark.registry import RegistryError, get_plugins

    reg = get_plugins()["oracles"]
    name = opts.oracle
    auto = name == "auto"
    if auto:
        name = f"cdvae-{dataset.protocol_family}" if dataset.protocol_family else None
        if name is None or name not in reg:
            notes.append(f"no property oracle for {dataset.name}; wdist_prop and SR need --oracle or --properties")
            return None
    try:
        factory = reg.entry(name).factory
        kwargs = {"oracle_dir": opts.oracle_dir} if opts.oracle_dir else {}
        return check_oracle(factory(**kwargs) if kwargs else factory(), name, PREDICT)
    except (RegistryError, NotAnOracle) as exc:
        raise EvaluationError(str(exc)) from exc
    except FileNotFoundError as exc:
        if not auto:
            raise EvaluationError(str(exc)) from exc
        notes.append(f"property oracle {name} not available ({str(exc).splitlines()[0]}); wdist_prop and SR not computed")
        return None


def _oracle_properties(ctx: EvalContext, task: Any, opts: EvaluateOptions, dataset: Any, ref_info: dict[str, Any], notes: list[str]) -> None:
    """Fill ctx.properties with oracle predictions for the samples the task names
    (:meth:`~benchmark.tasks.base.Task.property_indices`), and ctx.reference_properties when the
    reference is a dataset split: those are cached by the split file's hash and the oracle (and
    its CrystalNN graphs, which all oracles share, by the hash and split)."""
    from benchmark.crystal import Crystal
    from benchmark.samples import take_entries

    oracle = _oracle(opts, dataset, notes)
    if oracle is None:
        return
    wanted = task.property_indices(ctx)
    props = np.full(len(ctx.samples), np.nan)
    # one pass over a streamed sample file for all of them, in the order the task gave
    picked = take_entries(ctx.sample_crystals, wanted)
    keys = [k for k in wanted if isinstance(picked[k], Crystal)]
    crystals = [picked[k] for k in keys]
    n_jobs = 1 if opts.backend == "sequential" else opts.n_jobs
    for k, p in zip(keys, oracle.predict(crystals, progress=opts.progress, n_jobs=n_jobs)):
        props[k] = np.nan if p is None else p
    ctx.properties = props
    if ctx.reference is not None and ref_info.get("sha256"):
        from benchmark.files import ArrayCache

        # the reference split's predictions, keyed by the oracle (its weights' version where it has one) and the split file
        cache = ArrayCache("oracle", {"oracle": oracle.name, "weights": oracle.describe(), "reference_sha256": ref_info["sha256"],
                                      "split": ref_info["reference_split"], "n": len(ctx.reference_crystals)})
        cached = cache.load() if opts.use_cache else None
        ref = cached["predictions"] if cached is not None and len(cached.get("predictions", ())) == len(ctx.reference_crystals) else None
        if ref is None:
            # the split's own name lets an oracle cache its features (CrystalNN graphs, shared by the CDVAE oracles)
            key = f"{ref_info['sha256']}-{ref_info['reference_split']}" if opts.use_cache else None
            preds = oracle.predict(list(ctx.reference_crystals), progress=opts.progress, n_jobs=n_jobs, cache_key=key)
            ref = np.array([np.nan if p is None else p for p in preds], dtype=np.float64)
            if opts.use_cache:
                cache.save({"predictions": ref})
        ctx.reference_properties = ref
    ctx.options["oracle"] = oracle.name
    ctx.options["property_unit"] = oracle.unit
    ctx.property_name = oracle.property
    ctx.column("oracle_" + oracle.property, [None if np.isnan(x) else float(x) for x in props])
    notes.append(f"property oracle: {oracle.name} ({oracle.property}, {oracle.unit})")


def _record(opts: EvaluateOptions, task: str, dataset: str, profile: Any, sample_set: Any, ref_info: dict[str, Any], values: dict[str, MetricValue],
            timings: dict[str, float], notes: list[str], started_at: str, ctx: EvalContext, config: Any) -> dict[str, Any]:
    from benchmark.config import to_jsonable
    from benchmark.files import sha256_file
    from benchmark.store import SCHEMA_VERSION, environment_info, new_run_id

    sample_path = Path(opts.samples)
    sample_hash = sha256_file(sample_path) if sample_path.is_file() else None
    settings_used = profile.as_dict()
    if "coverage_cutoffs" in ctx.cache:
        settings_used["coverage_cutoffs"] = {"struc": ctx.cache["coverage_cutoffs"][0], "comp": ctx.cache["coverage_cutoffs"][1]}
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": opts.run_id or new_run_id(task, dataset),
        "kind": "evaluate",
        "task": task,
        "status": "ok",
        "dataset": ref_info,
        "model": {"name": opts.model_name or sample_path.stem, "version": None, "config": {}, "checkpoint_sha256": None},
        "samples": {"path": str(sample_path.resolve()), "sha256": sample_hash, "format": sample_set.fmt, "n": len(ctx.samples), "limit": opts.limit},
        "profile": profile.name,
        "profile_settings": settings_used,
        "seed": opts.seed,
        "task_config": to_jsonable(config),
        "metrics": {k: v.as_dict() for k, v in values.items()},
        "environment": environment_info(),
        "started_at": started_at,
        "duration_s": timings.get("total_s"),
        "timings": timings,
        "notes": list(notes),
        "artifacts": {},
        **_scheduler_section(),
    }


def _scheduler_section() -> dict[str, Any]:
    """The record's ``scheduler`` section (spec, address, workers) when scoring ran on Dask; none without."""
    from benchmark.scheduler import active

    info = active()
    return {} if info is None else {"scheduler": info.as_dict()}
