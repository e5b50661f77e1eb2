"""Running a model on a task: the path behind ``python -m benchmark run``.

resolve configs -> train (or reuse / load a checkpoint) -> ask the model for what the task needs,
if it has the capability -> write the samples (extended XYZ, in the run directory) -> score them
with the evaluation core -> store the run record with the fully resolved config.

Every model, built-in or third-party, goes through this same code, so every number in a table
comes from the same task code. A model without the capability a task needs gets a stored
"not supported" record (a "-" in tables), not a crash.

Interrupted work resumes: training continues from the model's last checkpoint (the model's
``fit`` does that in its directory, keyed by model, dataset, resolved config and seed), and
sampling is done in seeded batches, each written atomically to a work directory, so a rerun reuses
the batches already written and the result has no lost or duplicated crystals.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from benchmark.crystal import Crystal


class RunError(RuntimeError):
    """A run cannot start or go on (bad name, missing data, bad config)."""


@dataclass
class RunOptions:
    """Arguments of ``python -m benchmark run`` (and ``train``/``sample``)."""

    model: str
    task: str
    dataset: str
    preset: str = "smoke"
    config_file: str | None = None
    overrides: Sequence[str] = ()
    seed: int = 0
    device: str = "cpu"
    checkpoint: str | None = None
    runs_dir: str | None = None
    data_dir: str | None = None
    json_out: str | None = None
    profile: str = "cdvae"
    n_jobs: int | None = None
    progress: bool = True
    properties: str | None = None
    train_split: str = "train"
    # conditional_generation: the condition set (``NAME=VALUE`` strings or a mapping), replacing the
    # task config's ``conditions``; tolerances and checkers per property, merged over the config's
    conditions: Sequence[str] | Mapping[str, Any] = ()
    tolerances: Sequence[str] | Mapping[str, Any] = ()
    condition_oracles: Sequence[str] | Mapping[str, Any] = ()
    # a model setting: becomes the override model.strategy=NAME (the model's config must have it)
    strategy: str | None = None


@dataclass
class Resolved:
    model_cls: type
    model_config: Any
    task_config: Any
    run_file: dict[str, Any] = field(default_factory=dict)


def _hash(obj: Any, n: int = 12) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def derive_seed(seed: int, index: int) -> int:
    """Independent seed of batch ``index`` of a run seeded with ``seed`` (stable across versions)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def resolve(opts: RunOptions) -> Resolved:
    from benchmark.config import ConfigError, parse_overrides, read_run_file
    from benchmark.config import resolve as resolve_config
    from benchmark.registry import get_plugins
    from benchmark.tasks.base import TASK_CONFIGS

    plugins = get_plugins()
    model_cls = plugins["models"].get(opts.model)
    if opts.task not in TASK_CONFIGS:
        raise RunError(f"task {opts.task!r} cannot be run; runnable tasks: {', '.join(TASK_CONFIGS)}")
    plugins["datasets"].entry(opts.dataset)  # unknown names fail here, with a suggestion
    try:
        run_file = read_run_file(opts.config_file)
        overrides = parse_overrides(list(opts.overrides))
        unknown = (set(run_file) | set(overrides)) - {"model", "task"}
        if unknown:
            raise ConfigError(f"unknown config sections {sorted(unknown)}; use [model] and [task]")
        if opts.strategy is not None:
            overrides.setdefault("model", {})["strategy"] = _strategy_override(model_cls, opts)
        if opts.conditions or opts.tolerances or opts.condition_oracles:
            overrides.setdefault("task", {}).update(_condition_overrides(opts, run_file, overrides))
        model_config = resolve_config(model_cls.Config, opts.preset, opts.dataset, run_file.get("model"), overrides.get("model"), "model")
        task_config = resolve_config(TASK_CONFIGS[opts.task], opts.preset, opts.dataset, run_file.get("task"), overrides.get("task"), "task")
    except ConfigError as exc:
        raise RunError(str(exc)) from exc
    if opts.task == "conditional_generation":
        task_config = _checked_conditions(task_config, opts.dataset)
    return Resolved(model_cls, model_config, task_config, run_file)


def _strategy_override(model_cls: type, opts: RunOptions) -> str:
    """``--strategy NAME`` is the model setting ``strategy`` (Con-CDVAE's default / full / less
    generation strategies, Section 2.2.2); a model whose config has no such field cannot take it."""
    import dataclasses

    fields = [f.name for f in dataclasses.fields(model_cls.Config)]
    if "strategy" not in fields:
        raise RunError(f"--strategy {opts.strategy}: model {opts.model!r} has no strategy setting (its config has no 'strategy' field; "
                       f"fields: {', '.join(fields) or '(none)'})")
    return str(opts.strategy)


def _condition_overrides(opts: RunOptions, run_file: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``--condition`` replaces the task's ``conditions`` (a condition set is one unit);
    ``--tolerance`` and ``--condition-oracle`` values are merged over the run file's and ``--set``'s
    ``tolerances`` / ``oracles``."""
    from benchmark.metrics.conditional import ConditionError, parse_assignments

    if opts.task != "conditional_generation":
        raise RunError(f"--condition / --tolerance / --condition-oracle apply to the conditional_generation task, not {opts.task}")

    def given(items: Sequence[str] | Mapping[str, Any], flag: str) -> dict[str, Any]:
        return dict(items) if isinstance(items, Mapping) else parse_assignments(items, flag)

    def merged(field: str, items: Sequence[str] | Mapping[str, Any], flag: str) -> dict[str, Any]:
        base = {**dict((run_file.get("task") or {}).get(field) or {}), **dict((overrides.get("task") or {}).get(field) or {})}
        return {**base, **given(items, flag)}

    out: dict[str, Any] = {}
    try:
        if opts.conditions:
            out["conditions"] = given(opts.conditions, "--condition")
        if opts.tolerances:
            out["tolerances"] = merged("tolerances", opts.tolerances, "--tolerance")
        if opts.condition_oracles:
            out["oracles"] = merged("oracles", opts.condition_oracles, "--condition-oracle")
    except ConditionError as exc:
        raise RunError(str(exc)) from exc
    return out


def _checked_conditions(cfg: Any, dataset: str) -> Any:
    """The task config with its condition set validated and normalised (canonical names, class
    labels, floats), so that equal requests resolve to the same config (and work directory)."""
    import dataclasses

    from benchmark.metrics.conditional import ConditionError, build_targets, canonical_name, normalize_conditions

    try:
        conditions = normalize_conditions(cfg.conditions, cfg.oracles)
        build_targets(conditions, cfg.tolerances, cfg.oracles, dataset)  # tolerances and checkers fit the targets
        names = list(conditions) + [k for k in cfg.oracles if k not in conditions]
        tolerances = dict(sorted((canonical_name(k, names), float(v)) for k, v in cfg.tolerances.items()))
        oracles = dict(sorted((canonical_name(k, names), str(v)) for k, v in cfg.oracles.items()))
    except ConditionError as exc:
        raise RunError(str(exc)) from exc
    if cfg.n_samples <= 0 or cfg.batch_size <= 0:
        raise RunError("task.n_samples and task.batch_size must be positive")
    return dataclasses.replace(cfg, conditions=conditions, tolerances=tolerances, oracles=oracles)


# ------------------------------------------------------------------ training / checkpoints
def model_dir(opts: RunOptions, res: Resolved) -> Path:
    from benchmark import settings
    from benchmark.config import to_jsonable

    # fields that only steer generation are not part of the key: one trained model serves them all
    config = {k: v for k, v in to_jsonable(res.model_config).items() if k not in getattr(res.model_config, "sampling_fields", ())}
    what = {"model": opts.model, "version": res.model_cls.version, "dataset": opts.dataset, "config": config, "seed": opts.seed}
    if opts.train_split != "train":  # (keys of models trained on "train" stay what they were)
        what["train_split"] = opts.train_split
    return settings.runs_dir(opts.runs_dir) / "models" / f"{opts.model}-{opts.dataset}-{_hash(what)}"


@contextlib.contextmanager
def _progress_env(progress: bool) -> Iterator[None]:
    """``--no-progress`` reaches training loops (Lightning's bar) through BENCHMARK_NO_PROGRESS,
    because ``Model.fit`` takes no progress argument; restored afterwards."""
    old = os.environ.get("BENCHMARK_NO_PROGRESS")
    if not progress:
        os.environ["BENCHMARK_NO_PROGRESS"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("BENCHMARK_NO_PROGRESS", None)
        else:
            os.environ["BENCHMARK_NO_PROGRESS"] = old


def trained_model(opts: RunOptions, res: Resolved, log: Callable[[str], None] = print) -> tuple[Any, dict[str, Any]]:
    """The trained model: loaded from ``--checkpoint``, reused from an earlier run with the same
    model, dataset, resolved config and seed, or trained now (resuming an interrupted training)."""
    from benchmark.datasets.base import DatasetNotFound
    from benchmark.files import replace_atomically, sha256_file, write_json_atomic
    from benchmark.registry import get_plugins

    if opts.checkpoint:
        path = Path(opts.checkpoint)
        if not path.is_file():
            raise RunError(f"--checkpoint {path}: no such file")
        model = res.model_cls.load(path, res.model_config)
        return model, {"checkpoint": str(path), "checkpoint_sha256": sha256_file(path), "trained": False}
    mdir = model_dir(opts, res)
    ckpt = mdir / "model.ckpt"
    if ckpt.is_file():
        log(f"reusing the trained model in {mdir}")
        summary = json.loads((mdir / "fit.json").read_text()) if (mdir / "fit.json").is_file() else {}
        return res.model_cls.load(ckpt, res.model_config), {"checkpoint": str(ckpt), "checkpoint_sha256": sha256_file(ckpt), "trained": False, "fit": summary}
    dataset = get_plugins()["datasets"].get(opts.dataset)
    if opts.train_split not in dataset.splits:
        raise RunError(f"--train-split {opts.train_split!r}: {opts.dataset} has the splits {', '.join(dataset.splits)}")
    try:
        train = dataset.load(opts.train_split, opts.data_dir, progress=opts.progress)
    except DatasetNotFound as exc:
        hint = "" if opts.train_split != "train" else " (with only val and test at hand, --train-split val trains on val; say so when you report it)"
        raise RunError(f"training {opts.model} on {opts.dataset} needs its {opts.train_split} split: {exc}{hint}") from exc
    # validation: the val split, unless it is what the model trains on (then there is none)
    val_split = "val" if opts.train_split != "val" else None
    try:
        val = dataset.load(val_split, opts.data_dir, progress=opts.progress) if val_split in dataset.splits else []
    except DatasetNotFound:
        val = []
    mdir.mkdir(parents=True, exist_ok=True)
    log(f"training {opts.model} on {opts.dataset}/{opts.train_split} ({len(train)} crystals, {len(val)} for validation, preset {opts.preset}) in {mdir}")
    t = time.time()
    model = res.model_cls(res.model_config)
    with _progress_env(opts.progress):
        summary = model.fit(train, val, mdir, seed=opts.seed, device=opts.device)
    summary = dict(summary or {})
    summary["fit_s"] = time.time() - t

    def save(tmp: Path) -> None:  # the temporary file exists (empty): save must fill exactly that path
        model.save(tmp)
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise RunError(f"{opts.model}.save({tmp}) wrote no file at that path (save must write exactly the path it is given)")

    replace_atomically(ckpt, save)
    from benchmark.config import to_jsonable

    write_json_atomic(mdir / "fit.json", {**summary, "config": to_jsonable(res.model_config), "seed": opts.seed, "dataset": opts.dataset,
                                          "train_split": opts.train_split, "n_val": len(val)})
    return model, {"checkpoint": str(ckpt), "checkpoint_sha256": sha256_file(ckpt), "trained": True, "fit": summary}


# ------------------------------------------------------------------ resumable batched work
def batched(
    work_dir: Path,
    n: int,
    batch_size: int,
    make: Callable[[int, int], tuple[list[Crystal], int | None]],
    progress: bool = True,
    desc: str = "sampling",
) -> tuple[list[Crystal], int | None]:
    """Run ``make(batch_index, batch_n)`` for each batch, keeping each batch's crystals in
    ``work_dir/batch_<i>.extxyz`` (written atomically). Batches already there are read back, not
    recomputed: an interrupted run continues where it stopped. Returns (crystals, evaluations)."""
    from tqdm.auto import tqdm

    from benchmark.samples import read_samples, write_extxyz

    work_dir.mkdir(parents=True, exist_ok=True)
    n_batches = max(1, math.ceil(n / batch_size)) if n > 0 else 0
    out: list[Crystal] = []
    evals: int | None = 0
    for b in tqdm(range(n_batches), desc=desc, unit="batch", disable=not progress):
        bn = min(batch_size, n - b * batch_size)
        path = work_dir / f"batch_{b:05d}.extxyz"
        meta = work_dir / f"batch_{b:05d}.json"
        if path.is_file() and meta.is_file():
            crystals = [c for c in read_samples(path).entries if isinstance(c, Crystal)]
            info = json.loads(meta.read_text())
            if len(crystals) == bn == info.get("n"):
                out.extend(crystals)
                evals = None if evals is None or info.get("model_evaluations") is None else evals + int(info["model_evaluations"])
                continue
        crystals, n_eval = make(b, bn)
        if len(crystals) != bn:
            raise RunError(f"the model returned {len(crystals)} crystals for a batch of {bn}")
        write_extxyz(crystals, path)
        from benchmark.files import write_json_atomic

        write_json_atomic(meta, {"n": bn, "model_evaluations": n_eval})  # written last: marks the batch complete
        out.extend(crystals)
        evals = None if evals is None or n_eval is None else evals + int(n_eval)
    return out, evals


def _device_name(device: str) -> str:
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


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RunError("--device cuda: no CUDA device is available here (use --device cpu or auto)")
    return device


# ------------------------------------------------------------------ tasks
def _time_sampling(model: Any, cfg: Any, seed: int, device: str) -> dict[str, Any]:
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


def run(opts: RunOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run a model on a task and store the record (see module doc). Returns the record."""
    from benchmark import settings
    from benchmark.config import to_jsonable
    from benchmark.models.base import TASK_CAPABILITY, NotSupported
    from benchmark.registry import get_plugins
    from benchmark.samples import write_extxyz
    from benchmark.store import SCHEMA_VERSION, ResultsStore, environment_info, new_run_id, utc_now_iso

    t_start = time.time()
    started_at = utc_now_iso()
    res = resolve(opts)
    opts.device = _resolve_device(opts.device)
    store = ResultsStore(settings.runs_dir(opts.runs_dir))
    run_id = new_run_id(opts.task, opts.dataset)
    needed = TASK_CAPABILITY[opts.task]
    model_info: dict[str, Any] = {
        "name": opts.model,
        "version": res.model_cls.version,
        "preset": opts.preset,
        "train_split": opts.train_split,
        "config": to_jsonable(res.model_config),
        "capabilities": sorted(res.model_cls.capabilities),
        "checkpoint_sha256": None,
    }
    base_record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "kind": "run",
        "task": opts.task,
        "status": "ok",
        "dataset": {"name": opts.dataset},
        "model": model_info,
        "task_config": to_jsonable(res.task_config),
        "samples": None,
        "profile": opts.profile,
        "seed": opts.seed,
        "device": opts.device,
        "metrics": {},
        "environment": environment_info(),
        "started_at": started_at,
        "duration_s": None,
        "timings": {},
        "notes": [],
        "artifacts": {},
    }
    if needed not in res.model_cls.capabilities:
        base_record["status"] = "not_supported"
        base_record["notes"].append(f"{opts.model} does not declare the {needed!r} capability the {opts.task} task needs")
        base_record["duration_s"] = time.time() - t_start
        store.save(base_record)
        return base_record

    if opts.task == "conditional_generation":
        _check_oracles(res.task_config, opts.dataset)  # before training and sampling, not after

    model, ckpt_info = trained_model(opts, res, log)
    model_info["checkpoint_sha256"] = ckpt_info.get("checkpoint_sha256")
    model_info["checkpoint"] = ckpt_info.get("checkpoint")
    if ckpt_info.get("fit"):
        base_record["fit"] = ckpt_info["fit"]
    run_dir = store.run_dir(run_id)
    cfg = res.task_config
    work = settings.runs_dir(opts.runs_dir) / "work" / _hash({"model_key": str(model_dir(opts, res)), "ckpt": model_info["checkpoint_sha256"], "task": opts.task, "cfg": to_jsonable(cfg), "seed": opts.seed, "device": opts.device})
    dataset = get_plugins()["datasets"].get(opts.dataset)
    extra: dict[str, Any] = {}
    t = time.time()
    try:
        if opts.task == "sampling_speed":
            timing = _time_sampling(model, cfg, opts.seed, opts.device)
            per = timing["seconds"] / max(timing["n"], 1)
            extra = {
                "seconds_per_crystal": {"value": per, "n": timing["n"], "higher_is_better": False, "unit": "s"},
                "crystals_per_second": {"value": 1.0 / per if per > 0 else None, "n": timing["n"], "higher_is_better": True, "unit": "1/s"},
                "seconds_for_10000": {"value": per * 10000, "n": timing["n"], "higher_is_better": False, "unit": "s"},
            }
            if timing["model_evaluations"] is not None:
                extra["model_evaluations_per_batch"] = {"value": timing["model_evaluations"] / timing["n_batches"], "n": timing["n_batches"], "higher_is_better": False, "unit": "evaluations"}
            base_record["speed"] = {"device_name": _device_name(opts.device), "batch_size": cfg.batch_size, "warmup_batches": cfg.warmup_batches,
                                    "peak_memory_mb": timing["peak_memory_mb"], "timed_seconds": timing["seconds"]}
            crystals: list[Crystal] = []
        elif opts.task in ("generation", "ground_state"):
            crystals, _ = batched(work, cfg.n_samples, cfg.batch_size, lambda b, bn: _sample(model, bn, derive_seed(opts.seed, b), opts.device), opts.progress, "sampling")
        elif opts.task == "conditional_generation":
            from benchmark.metrics.conditional import build_targets, model_conditions

            wanted = model_conditions(build_targets(cfg.conditions, cfg.tolerances, cfg.oracles, opts.dataset))
            crystals, _ = batched(work, cfg.n_samples, cfg.batch_size,
                                  lambda b, bn: _conditional_sample(model, bn, wanted, derive_seed(opts.seed, b), opts.device),
                                  opts.progress, "conditional sampling")
        elif opts.task == "reconstruction":
            test = dataset.load("test", opts.data_dir, limit=cfg.limit, progress=opts.progress)
            crystals, _ = batched(work, len(test), cfg.batch_size,
                                  lambda b, bn: (model.reconstruct(test[b * cfg.batch_size: b * cfg.batch_size + bn], seed=derive_seed(opts.seed, b), device=opts.device), None),
                                  opts.progress, "reconstructing")
        elif opts.task == "property_optimization":
            starts = dataset.load("test", opts.data_dir, limit=cfg.num_opt, progress=opts.progress)
            steps = model.optimize(starts, seed=opts.seed, device=opts.device, steps=cfg.steps, lr=cfg.lr, n_decode=cfg.n_decode)
            crystals = [c for step in steps for c in step]  # step-major, as CDVAE's eval_opt.pt
        else:  # pragma: no cover - guarded by resolve()
            raise RunError(f"task {opts.task!r} cannot be run")
    except NotSupported as exc:
        base_record["status"] = "not_supported"
        base_record["notes"].append(str(exc))
        store.save(base_record)
        return base_record
    base_record["timings"]["model_s"] = time.time() - t

    record = base_record
    if opts.task != "sampling_speed":
        samples_path = run_dir / "samples.extxyz"
        write_extxyz(crystals, samples_path)
        record = _score(opts, base_record, samples_path, cfg)
        record["artifacts"]["samples"] = "samples.extxyz"
    for k, v in extra.items():
        record["metrics"][k] = {**{"uncertainty": None}, **v}
    record["duration_s"] = time.time() - t_start
    store.save(record)
    if work.exists():
        import shutil

        shutil.rmtree(work, ignore_errors=True)  # the run is complete: its samples are in the run dir
    return record


def _sample(model: Any, n: int, seed: int, device: str) -> tuple[list[Crystal], int | None]:
    batch = model.sample(n, seed=seed, device=device)
    return list(batch.crystals), batch.model_evaluations


def _conditional_sample(model: Any, n: int, conditions: Mapping[str, Any], seed: int, device: str) -> tuple[list[Crystal], int | None]:
    """One batch of ``Model.conditional_sample``; the model gets a fresh copy of the conditions."""
    batch = model.conditional_sample(n, dict(conditions), seed=seed, device=device)
    return list(batch.crystals), batch.model_evaluations


def _check_oracles(cfg: Any, dataset: str) -> None:
    """Fail early when a checker of the condition set is unknown or its weights are missing."""
    from benchmark.metrics.conditional import ConditionError, build_targets, load_oracles

    try:
        load_oracles(build_targets(cfg.conditions, cfg.tolerances, cfg.oracles, dataset))
    except ConditionError as exc:
        raise RunError(str(exc)) from exc


def _score(opts: RunOptions, record: dict[str, Any], samples_path: Path, cfg: Any) -> dict[str, Any]:
    from benchmark import settings
    from benchmark.store import ResultsStore
    from benchmark.tasks.evaluation import EvaluateOptions, EvaluationError, evaluate

    eopts = EvaluateOptions(
        task=opts.task,
        dataset=opts.dataset,
        samples=samples_path,
        profile=opts.profile,
        seed=opts.seed,
        n_jobs=opts.n_jobs,
        data_dir=opts.data_dir,
        runs_dir=opts.runs_dir,
        progress=opts.progress,
        store=False,
        properties=opts.properties,
        num_opt=getattr(cfg, "num_opt", 100),
        model_name=opts.model,
        train_split=opts.train_split,  # novelty is measured against what the model saw
    )
    if opts.task == "conditional_generation":
        eopts.conditions, eopts.tolerances, eopts.condition_oracles = cfg.conditions, cfg.tolerances, cfg.oracles
    if opts.task == "ground_state":
        eopts.relaxer, eopts.relax_optimizer, eopts.relax_fmax = cfg.relaxer, cfg.optimizer, cfg.fmax
        eopts.relax_steps, eopts.relax_time_limit_s, eopts.pressure_gpa = cfg.steps, cfg.time_limit_s, cfg.pressure_gpa
    try:
        result = evaluate(eopts)
    except EvaluationError as exc:
        raise RunError(str(exc)) from exc
    ev = result.record
    out = dict(record)
    out["dataset"] = ev["dataset"]
    out["samples"] = {**ev["samples"], "path": "samples.extxyz"}
    out["profile_settings"] = ev.get("profile_settings")
    out["metrics"] = ev["metrics"]
    out["timings"] = {**record["timings"], **ev["timings"]}
    out["notes"] = record["notes"] + ev["notes"]
    if ev.get("conditions"):
        out["conditions"] = ev["conditions"]
    store = ResultsStore(settings.runs_dir(opts.runs_dir))
    store.write_per_structure(record["run_id"], result.per_structure)
    written = result.write_artifacts(store.run_dir(record["run_id"]))
    out["artifacts"] = {**record.get("artifacts", {}), "per_structure": "per_structure.csv", **written}
    return out


def flat_metrics(record: dict[str, Any]) -> dict[str, float | None]:
    from benchmark.tasks.evaluation import flatten

    return flatten(record.get("metrics", {}))
