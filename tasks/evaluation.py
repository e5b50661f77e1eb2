"""Scoring a sample file: the path behind ``python -m benchmark evaluate``.

read samples -> evaluate each crystal (parallel) -> reference split (cached) -> the task's metrics
-> per-structure table + run record (results store) -> JSON with the published key names.

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

# The published evaluation's key order (scripts/compute_metrics.py), for JSON output.
PUBLISHED_KEYS = (
    "comp_valid", "struct_valid", "valid", "cov_recall", "cov_precision", "amsd_recall", "amsd_precision",
    "amcd_recall", "amcd_precision", "wdist_density", "wdist_num_elems", "wdist_prop", "comp_div",
    "struct_div", "match_rate", "rms_dist", "SR5", "SR10", "SR15",
)


class EvaluationError(RuntimeError):
    """The evaluation cannot start (bad arguments, unreadable sample file, missing dataset)."""


@dataclass
class EvaluateOptions:
    """Arguments of one evaluation (the CLI's flags)."""

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
    data_dir: str | None = None
    runs_dir: str | None = None
    properties: str | None = None
    property_name: str | None = None
    num_opt: int = 100
    n_property_samples: int | None = None
    cov_cutoffs: tuple[float, float] | None = None
    metrics: Sequence[str] | None = None
    model_name: str | None = None
    progress: bool = True
    use_cache: bool = True
    store: bool = True
    batch_idx: int = 0
    oracle: str | None = "auto"
    oracle_dir: str | None = None
    # ground_state task: the relaxing oracle and how it relaxes (pressure None: the dataset's)
    relaxer: str = "chgnet"
    relax_optimizer: str = "FIRE"
    relax_fmax: float = 0.05
    relax_steps: int = 500
    relax_time_limit_s: float = 300.0
    pressure_gpa: float | None = None
    count_unconverged: bool = False
    # conditional_generation task: the condition set (property -> number, class label or code),
    # tolerances of continuous targets and checkers per property (see benchmark.metrics.conditional)
    conditions: Mapping[str, Any] | None = None
    tolerances: Mapping[str, Any] | None = None
    condition_oracles: Mapping[str, str] | None = None


@dataclass
class EvaluationResult:
    metrics: dict[str, MetricValue]
    per_structure: Any  # pandas.DataFrame
    record: dict[str, Any]
    run_dir: Path | None
    notes: list[str] = field(default_factory=list)
    # file name -> writer(path) for figures and files a metric produced (histograms, relaxed crystals)
    artifact_writers: dict[str, Any] = field(default_factory=dict)

    def write_artifacts(self, run_dir: Path) -> dict[str, str]:
        """Write the metrics' artifacts into ``run_dir``; returns {name: file name} for the record.
        A failing writer is reported in the notes, not raised: the numbers are already computed."""
        return write_artifacts(self.artifact_writers, run_dir, self.notes)

    def flat(self) -> dict[str, float | None]:
        """Aggregate metrics as {published key: value}, published keys first."""
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


def flatten(metrics: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """A record's ``metrics`` as {key: value}, the published evaluation's keys first, in its order."""
    out = {k: metrics[k]["value"] for k in PUBLISHED_KEYS if k in metrics}
    out.update({k: v["value"] for k, v in metrics.items() if k not in out})
    return out


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
    vals = []
    for e in entries:
        v = getattr(e, "properties", {}).get(name) if hasattr(e, "properties") else None
        try:
            vals.append(float(v) if v is not None else np.nan)
        except (TypeError, ValueError):
            vals.append(np.nan)
    arr = np.array(vals, dtype=np.float64)
    return arr if np.isfinite(arr).any() else None


PER_STRUCTURE_FIELDS = ("index", "label", "formula", "n_atoms", "constructed", "comp_valid", "struct_valid", "valid",
                        "reason", "density", "n_elems", "min_dist", "volume")


def per_structure_table(results: list[CrystalResult], extra: dict[str, list[Any]]) -> Any:
    """One row per sample: its CrystalResult fields, then the columns the metrics added."""
    import pandas as pd

    rows: dict[str, list[Any]] = {name: [getattr(r, name) for r in results] for name in PER_STRUCTURE_FIELDS}
    rows.update(extra)
    return pd.DataFrame(rows)


def select_metrics(task: str, names: Sequence[str] | None) -> list[Metric]:
    from benchmark.registry import get_plugins

    reg = get_plugins()["metrics"]
    if names:
        chosen = [reg.get(n) for n in names]
        wrong = [m.name for m in chosen if m.task != task]
        if wrong:
            raise EvaluationError(f"metrics {', '.join(wrong)} do not score the {task} task")
        return chosen
    return [m for m in (e.load() for e in reg) if m.task == task and m.default]


def evaluate(opts: EvaluateOptions) -> EvaluationResult:
    """Score a sample file for a task (see module doc)."""
    from benchmark import settings
    from benchmark.datasets.base import DatasetNotFound
    from benchmark.files import sha256_file
    from benchmark.metrics.featurize import check_backend, evaluate_entries, evaluate_reference
    from benchmark.metrics.profiles import get_profile
    from benchmark.registry import get_plugins
    from benchmark.samples import SampleFileError, read_samples

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
    metrics = select_metrics(task.name, opts.metrics)
    try:
        check_backend(opts.backend)
    except ValueError as exc:
        raise EvaluationError(str(exc)) from exc
    timings: dict[str, float] = {}
    # conditional generation: the targets and their checkers, resolved before any crystal is read
    # (a bad condition or missing oracle weights fail here, not after featurisation)
    conditional: dict[str, Any] = {}
    if task.name == "conditional_generation":
        conditional = _conditional_options(opts, dataset.name, metrics)

    # ---- samples
    t = time.time()
    try:
        sample_set = read_samples(opts.samples, limit=opts.limit, batch_idx=opts.batch_idx)
    except SampleFileError as exc:
        raise EvaluationError(str(exc)) from exc
    entries = list(sample_set.entries)
    if not entries:
        raise EvaluationError(f"{opts.samples}: no crystals to evaluate")
    timings["read_samples_s"] = time.time() - t
    t = time.time()
    results = evaluate_entries(entries, profile, n_jobs=opts.n_jobs, backend=opts.backend, progress=opts.progress, desc="featurising samples")
    timings["featurise_samples_s"] = time.time() - t
    notes: list[str] = []
    n_unreadable = sum(1 for r in results if r.reasons and r.reasons[0].startswith("unreadable"))
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
                ref_crystals, digest, opts.reference_split, profile, n_jobs=opts.n_jobs, backend=opts.backend, progress=opts.progress, use_cache=opts.use_cache
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
                ref_crystals = dataset.load(opts.reference_split, opts.data_dir, progress=opts.progress)[: len(entries)]
                ref_info = {"name": dataset.name, "reference_split": opts.reference_split, "file": str(path), "sha256": sha256_file(path), "n_reference": len(ref_crystals)}
                notes.append(f"reconstructions paired in order with the first {len(ref_crystals)} crystals of {dataset.name}/{opts.reference_split}")
    except DatasetNotFound as exc:
        raise EvaluationError(str(exc)) from exc

    # ---- training split (novelty) only when a novelty metric is selected
    train = None
    if any(m.name == "novelty" for m in metrics):
        try:
            train = dataset.load(opts.train_split, opts.data_dir, progress=opts.progress) if opts.train_split in dataset.splits else None
        except DatasetNotFound:
            train = None

    # ---- property values (SR, wdist_prop)
    prop_name = opts.property_name or dataset.target
    # values carried by the sample file count only for optimisation (the published SR uses whatever
    # property model scored the crystals); property statistics compare one oracle on both sides
    if opts.properties:
        properties = _load_properties(opts.properties, len(entries), prop_name)
    elif task.name == "property_optimization":
        properties = _properties_from_entries(entries, prop_name)
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
        options={
            "num_opt": opts.num_opt,
            "n_jobs": opts.n_jobs,
            "backend": opts.backend,
            "cov_cutoffs": opts.cov_cutoffs or (None if dataset.protocol_family else dataset.cov_cutoffs),
            "n_property_samples": opts.n_property_samples,
            "progress": opts.progress,
            **(_relax_options(opts, dataset.name) if task.name == "ground_state" else {}),
            **conditional,
        },
        notes=notes,
    )
    if properties is None and opts.oracle and task.name in ("generation", "property_optimization") and any(
        m.name in ("property_statistics", "success_rate") for m in metrics
    ):
        t = time.time()
        _oracle_properties(ctx, opts, dataset, ref_info, notes)
        timings["oracle_s"] = time.time() - t

    values: dict[str, MetricValue] = {}
    t = time.time()
    for metric in metrics:
        try:
            values.update(metric.compute(ctx))
        except Exception as exc:  # one metric failing must not lose the others
            notes.append(f"metric {metric.name} failed: {type(exc).__name__}: {exc}")
    timings["metrics_s"] = time.time() - t
    timings["total_s"] = time.time() - t_start
    table = per_structure_table(results, ctx.per_structure)
    writers: dict[str, Any] = dict(ctx.cache.get("artifact_writers", {}))
    if ctx.cache.get("relaxed_crystals") is not None:
        writers["relaxed.extxyz"] = lambda path, cs=ctx.cache["relaxed_crystals"]: _write_relaxed(cs, path)

    record = _record(opts, task.name, dataset.name, profile, sample_set, ref_info, values, timings, notes, started_at, ctx)
    if ctx.options.get("condition_targets"):
        record["conditions"] = _conditions_record(ctx.options["condition_targets"])
    run_dir = None
    if opts.store:
        from benchmark.store import ResultsStore

        store = ResultsStore(settings.runs_dir(opts.runs_dir))
        run_dir = store.run_dir(record["run_id"])
        store.write_per_structure(record["run_id"], table)
        record["artifacts"] = {"per_structure": "per_structure.csv", **write_artifacts(writers, run_dir, record["notes"])}
        store.save(record)
    return EvaluationResult(values, table, record, run_dir, notes, writers)


def _conditional_options(opts: EvaluateOptions, dataset: str, metrics: Sequence[Metric]) -> dict[str, Any]:
    """ctx.options of the conditional_generation metric: the resolved targets and the oracle
    objects that check them (loaded once here; raises EvaluationError for a bad condition set)."""
    from benchmark.metrics.conditional import ConditionError, build_targets, load_oracles

    try:
        targets = build_targets(opts.conditions or {}, opts.tolerances, opts.condition_oracles, dataset)
        oracles = load_oracles(targets, opts.oracle_dir) if any(m.name == "conditional_success" for m in metrics) else {}
    except ConditionError as exc:
        raise EvaluationError(str(exc)) from exc
    return {"condition_targets": targets, "condition_oracle_objects": oracles, "oracle_dir": opts.oracle_dir}


def _conditions_record(targets: Sequence[Any]) -> dict[str, Any]:
    """The condition set as stored in the record: per property its target, tolerance and checker."""
    from benchmark.metrics.conditional import condition_text, describe_checker

    return {
        "text": condition_text(targets),
        "targets": {t.name: {"value": t.value, "code": t.code, "tolerance": t.tolerance, "unit": t.unit, "checker": describe_checker(t.oracle)}
                    for t in targets},
    }


def _write_relaxed(crystals: Sequence[Any], path: Path) -> None:
    """The relaxed crystals (in sample order; failed relaxations left out, their labels say which)."""
    from benchmark.samples import write_extxyz

    write_extxyz([c for c in crystals if c is not None], path)


def _relax_options(opts: EvaluateOptions, dataset: str) -> dict[str, Any]:
    """ctx.options of the ground_state metric: the relaxer and its :class:`RelaxSettings`."""
    from benchmark.metrics.oracles.chgnet import RelaxSettings
    from benchmark.tasks.base import DATASET_PRESSURE_GPA

    if opts.relax_optimizer not in ("FIRE", "BFGS"):
        raise EvaluationError(f"relaxation optimizer {opts.relax_optimizer!r}: valid are FIRE, BFGS")
    if not (opts.relax_fmax > 0 and opts.relax_steps > 0 and opts.relax_time_limit_s > 0):
        raise EvaluationError("relaxation fmax, steps and time limit must be positive")
    pressure = opts.pressure_gpa if opts.pressure_gpa is not None else DATASET_PRESSURE_GPA.get(dataset, 0.0)
    settings = RelaxSettings(optimizer=opts.relax_optimizer, fmax=opts.relax_fmax, steps=opts.relax_steps,  # type: ignore[arg-type]
                             time_limit_s=opts.relax_time_limit_s, pressure_gpa=float(pressure))
    return {"relaxer": opts.relaxer, "relax_settings": settings, "count_unconverged": opts.count_unconverged}


def _oracle(opts: EvaluateOptions, dataset: Any, notes: list[str]) -> Any | None:
    """The property oracle to use: ``--oracle NAME``, or with ``auto`` the published CDVAE model of
    the dataset's protocol family when its weights can be found (else a note, not an error)."""
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
        return factory(**kwargs) if kwargs else factory()
    except RegistryError as exc:
        raise EvaluationError(str(exc)) from exc
    except FileNotFoundError as exc:
        if not auto:
            raise EvaluationError(str(exc)) from exc
        notes.append(f"property oracle {name} not available ({str(exc).splitlines()[0]}); wdist_prop and SR not computed")
        return None


def _oracle_properties(ctx: EvalContext, opts: EvaluateOptions, dataset: Any, ref_info: dict[str, Any], notes: list[str]) -> None:
    """Fill ctx.properties (and ctx.reference_properties for generation) with oracle predictions:
    the 1,000 drawn valid samples (generation) or every valid crystal (optimisation), and the
    reference split, whose predictions are cached by the dataset file's hash and the oracle (and its
    CrystalNN graphs, which all oracles share, by the hash and split)."""
    from benchmark import settings
    from benchmark.crystal import Crystal
    from benchmark.metrics.generation import property_sample

    oracle = _oracle(opts, dataset, notes)
    if oracle is None:
        return
    if ctx.task == "generation":
        wanted = [int(k) for k in property_sample(ctx)]
    else:
        wanted = [k for k, r in enumerate(ctx.samples) if r.valid]
    props = np.full(len(ctx.samples), np.nan)
    crystals = [ctx.sample_crystals[k] for k in wanted if isinstance(ctx.sample_crystals[k], Crystal)]
    keys = [k for k in wanted if isinstance(ctx.sample_crystals[k], Crystal)]
    # workers and a graph cache for oracles that take them (plugin oracles may only take progress)
    import inspect

    accepted = inspect.signature(oracle.predict).parameters
    extra = {"n_jobs": 1 if opts.backend == "sequential" else opts.n_jobs} if "n_jobs" in accepted else {}
    for k, p in zip(keys, oracle.predict(crystals, progress=opts.progress, **extra)):
        props[k] = np.nan if p is None else p
    ctx.properties = props
    if ctx.task == "generation" and ref_info.get("sha256"):
        cache = settings.cache_dir() / "oracle" / f"{oracle.name}-{ref_info['sha256'][:24]}.npy"
        ref = None
        if opts.use_cache and cache.is_file():
            ref = np.load(cache, allow_pickle=False)
            if len(ref) != len(ctx.reference_crystals):
                ref = None
        if ref is None:
            if opts.use_cache and "cache_key" in accepted:  # the split's graphs, shared by all oracles
                extra["cache_key"] = f"{ref_info['sha256']}-{ref_info['reference_split']}"
            preds = oracle.predict(list(ctx.reference_crystals), progress=opts.progress, **extra)
            ref = np.array([np.nan if p is None else p for p in preds], dtype=np.float64)
            if opts.use_cache:
                import io

                from benchmark.files import atomic_write_bytes

                buf = io.BytesIO()
                np.save(buf, ref, allow_pickle=False)
                atomic_write_bytes(cache, buf.getvalue())
        ctx.reference_properties = ref
    ctx.options["oracle"] = oracle.name
    ctx.options["property_unit"] = oracle.unit
    ctx.property_name = oracle.property
    ctx.column("oracle_" + oracle.property, [None if np.isnan(x) else float(x) for x in props])
    notes.append(f"property oracle: {oracle.name} ({oracle.property}, {oracle.unit})")


def _record(opts: EvaluateOptions, task: str, dataset: str, profile: Any, sample_set: Any, ref_info: dict[str, Any], values: dict[str, MetricValue],
            timings: dict[str, float], notes: list[str], started_at: str, ctx: EvalContext) -> dict[str, Any]:
    from benchmark.files import sha256_file
    from benchmark.store import SCHEMA_VERSION, environment_info, new_run_id

    sample_path = Path(opts.samples)
    sample_hash = sha256_file(sample_path) if sample_path.is_file() else None
    settings_used = profile.as_dict()
    if "coverage_cutoffs" in ctx.cache:
        settings_used["coverage_cutoffs"] = {"struc": ctx.cache["coverage_cutoffs"][0], "comp": ctx.cache["coverage_cutoffs"][1]}
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": new_run_id(task, dataset),
        "kind": "evaluate",
        "task": task,
        "status": "ok",
        "dataset": ref_info,
        "model": {"name": opts.model_name or sample_path.stem, "version": None, "config": {}, "checkpoint_sha256": None},
        "samples": {"path": str(sample_path.resolve()), "sha256": sample_hash, "format": sample_set.fmt, "n": len(sample_set.entries), "limit": opts.limit},
        "profile": profile.name,
        "profile_settings": settings_used,
        "seed": opts.seed,
        "metrics": {k: v.as_dict() for k, v in values.items()},
        "environment": environment_info(),
        "started_at": started_at,
        "duration_s": timings.get("total_s"),
        "timings": timings,
        "notes": list(notes),
        "artifacts": {},
    }
