"""Running a model on a task: the path behind ``python -m benchmark run``, one path for every task.

resolve configs -> check the model has the task's capability (else a stored "not supported"
record) -> train (or reuse / load a checkpoint) -> the task produces what it scores
(:meth:`~benchmark.tasks.base.Task.produce`) -> write the samples (extended XYZ, in the run
directory) -> score them with :func:`benchmark.tasks.evaluation.evaluate` -> store the run record
with the fully resolved configs.

Every model and every task, built-in or third-party, goes through this same code, so every number
in a table comes from the same path. Nothing here branches on a task's name.

Interrupted work resumes: training continues from the model's last checkpoint (the model's
``fit`` does that in its directory, keyed by model, dataset, resolved config and seed), and
sampling is done in seeded batches, each written atomically to a work directory, so a rerun reuses
the batches already written and the result has no lost or duplicated crystals.

Sharded runs (``--shard I/N``): N processes with the same command line and ``0/N`` ... ``N-1/N``
share one work directory (its key does not depend on the shard or on which GPU of a kind samples);
each draws its own batches (:class:`~benchmark.tasks.base.Shard`). The first to arrive trains the
model while the others wait on a file lock, then reuse it. A shard that ends with batches still
missing stores nothing (status ``shard_pending``); the one that completes the set scores and stores
the run, under a lock, and leaves a ``<work>.scored.json`` marker, so a shard that also saw a
complete set returns that run instead of storing a second one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from benchmark.tasks.base import BatchError, RunContext, ShardPending
from benchmark.training import TrainingResources

#: the dataset and preset a run uses when none is given (embedded, needs no data directory)
DEFAULT_DATASET = "toy"
DEFAULT_PRESET = "smoke"


class RunError(RuntimeError):
    """A run cannot start or go on (bad name, missing data, bad config)."""


class NotGlobalZero(Exception):
    """Raised after a distributed fit in every process but global rank zero.

    Under Lightning's ``ddp`` strategy (or ``srun`` on SLURM) the whole command runs once per
    process and every process trains; only rank zero then writes ``model.ckpt`` and ``fit.json``,
    samples, scores and stores a record. The other processes get this from :func:`trained_model`
    (and :func:`run`); the command line ends them quietly with exit status 0."""

    def __init__(self, rank: int) -> None:
        super().__init__(f"global rank {rank}: training done; rank 0 writes the results")
        self.rank = rank


@dataclass
class RunOptions:
    """Arguments of ``python -m benchmark run`` (and ``train``/``sample``).

    ``task_options`` are the task's config fields given as command-line options (field -> value,
    e.g. ``{"conditions": {"band_gap": 3}}``); they apply over the preset, the run file's ``[task]``
    table and ``--set task.*`` (see :func:`benchmark.tasks.base.merged_options`).
    """

    model: str
    task: str = ""
    dataset: str = DEFAULT_DATASET
    preset: str = DEFAULT_PRESET
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
    fingerprint_backend: str = "fast"  # CrystalNN 'ops' fingerprints: fast (default) or matminer
    progress: bool = True
    properties: str | None = None
    train_split: str = "train"
    task_options: Mapping[str, Any] = field(default_factory=dict)
    # a model setting: becomes the override model.strategy=NAME (the model's config must have it)
    strategy: str | None = None
    # "I/N": this process draws only its share of the sampling batches (see the module doc)
    shard: str | None = None
    # Lightning's accelerator, devices, nodes, strategy and precision for training (defaults: one device)
    training: TrainingResources = field(default_factory=TrainingResources)
    # score on this Dask cluster (benchmark.scheduler: local, local:N, tcp://host:port, a scheduler file)
    scheduler: str | None = None


@dataclass
class Resolved:
    """The model class and config, and (for ``run``) the task and its config."""

    model_cls: type
    model_config: Any
    task: Any = None
    task_config: Any = None
    run_file: dict[str, Any] = field(default_factory=dict)


def _hash(key: Mapping[str, Any], n: int = 12) -> str:
    """A short name for a trained model's or a run's work directory: the project's one key digest."""
    from benchmark.files import key_digest

    return key_digest(key)[:n]


def resolve(opts: RunOptions, *, with_task: bool = True) -> Resolved:
    """The model class, its resolved config and, with ``with_task``, the task and its resolved
    config (``train`` and ``sample`` need no task). Raises :class:`RunError`."""
    from benchmark.config import ConfigError, parse_overrides, read_run_file
    from benchmark.config import resolve as resolve_config
    from benchmark.registry import get_plugins
    from benchmark.tasks.base import TaskError

    plugins = get_plugins()
    model_cls = plugins["models"].get(opts.model)
    task = plugins["tasks"].get(opts.task) if with_task else None
    plugins["datasets"].entry(opts.dataset)  # unknown names fail here, with a suggestion
    try:
        run_file = read_run_file(opts.config_file)
        overrides = parse_overrides(list(opts.overrides))
        unknown = (set(run_file) | set(overrides)) - {"model", "task"}
        if unknown:
            raise ConfigError(f"unknown config sections {sorted(unknown)}; use [model] and [task]")
        if opts.strategy is not None:
            overrides.setdefault("model", {})["strategy"] = _strategy_override(model_cls, opts)
        model_config = resolve_config(model_cls.Config, opts.preset, opts.dataset, run_file.get("model"), overrides.get("model"), "model")
        task_config = None
        if task is not None:
            task_config = task.resolve_config(preset=opts.preset, dataset=opts.dataset, section=run_file.get("task"),
                                              overrides=overrides.get("task"), given=opts.task_options)
    except (ConfigError, TaskError) as exc:
        raise RunError(str(exc)) from exc
    return Resolved(model_cls, model_config, task, task_config, run_file)


def changed_from_preset(model_cls: type, preset: str | None, dataset: str | None, config: Any) -> dict[str, Any]:
    """The fields of ``config`` whose values differ from what ``preset`` gives on ``dataset`` (set
    by a run file, ``--set`` or ``--strategy``), as JSON values: the leaderboard names them in the
    row label, so two runs of one model with different settings are told apart."""
    from benchmark.config import resolve as resolve_config
    from benchmark.config import to_jsonable

    base = to_jsonable(resolve_config(model_cls.Config, preset, dataset))
    now = to_jsonable(config)
    return {k: v for k, v in now.items() if base.get(k) != v}


def _strategy_override(model_cls: type, opts: RunOptions) -> str:
    """``--strategy NAME`` is the model setting ``strategy`` (Con-CDVAE's default / full / less
    generation strategies, Section 2.2.2); a model whose config has no such field cannot take it."""
    import dataclasses

    fields = [f.name for f in dataclasses.fields(model_cls.Config)]
    if "strategy" not in fields:
        raise RunError(f"--strategy {opts.strategy}: model {opts.model!r} has no strategy setting (its config has no 'strategy' field; "
                       f"fields: {', '.join(fields) or '(none)'})")
    return str(opts.strategy)


# ------------------------------------------------------------------ training / checkpoints
def model_dir(opts: RunOptions, res: Resolved) -> Path:
    from benchmark import settings
    from benchmark.config import to_jsonable

    # fields that only steer generation are not part of the key: one trained model serves them all
    config = {k: v for k, v in to_jsonable(res.model_config).items() if k not in getattr(res.model_config, "sampling_fields", ())}
    what = {"model": opts.model, "version": res.model_cls.version, "dataset": opts.dataset, "config": config, "seed": opts.seed}
    if opts.train_split != "train":  # (keys of models trained on "train" stay what they were)
        what["train_split"] = opts.train_split
    # world size (effective batch size), strategy and precision change what is trained; only
    # non-default values enter the key, so a one-device model keeps the key it always had
    training = opts.training.key_fields(opts.device)
    if training:
        what["training"] = training
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
    from benchmark.training import training_resources

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
        info = {"checkpoint": str(ckpt), "checkpoint_sha256": sha256_file(ckpt), "trained": False, "fit": summary}
        if summary.get("training"):
            info["training"] = summary["training"]
        return res.model_cls.load(ckpt, res.model_config), info
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
    if opts.shard is not None and opts.training.world_size(opts.device) > 1:
        # the shard holding the training lock would wait in DDP for ranks that, re-running this
        # command, wait for that lock: train once first, then the shards reuse the model
        raise RunError(f"--shard {opts.shard} would train {opts.model} on {opts.training.world_size(opts.device)} processes while "
                       "holding the shards' training lock: train it first (`python -m benchmark train` with the same model and "
                       "training options), then start the shards with those options; they reuse the trained model")
    mdir.mkdir(parents=True, exist_ok=True)
    log(f"training {opts.model} on {opts.dataset}/{opts.train_split} ({len(train)} crystals, {len(val)} for validation, preset {opts.preset}) in {mdir}")
    t = time.time()
    model = res.model_cls(res.model_config)
    # the training resources reach every train_module call inside fit (no fit argument for them)
    with _progress_env(opts.progress), training_resources(opts.training) as session:
        summary = model.fit(train, val, mdir, seed=opts.seed, device=opts.device)
    if not session.is_global_zero:  # every rank trained; rank 0 alone writes the model and goes on
        raise NotGlobalZero(session.global_rank)
    summary = dict(summary or {})
    summary["fit_s"] = time.time() - t
    summary["training"] = session.summary()
    if not session.fits and opts.training.changed():
        log(f"note: {opts.model} did not train through Lightning's Trainer: the training resources "
            f"({', '.join(f'{k}={v}' for k, v in opts.training.changed().items())}) had no effect")

    def save(tmp: Path) -> None:  # the temporary file exists (empty): save must fill exactly that path
        model.save(tmp)
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise RunError(f"{opts.model}.save({tmp}) wrote no file at that path (save must write exactly the path it is given)")

    replace_atomically(ckpt, save)
    from benchmark.config import to_jsonable

    write_json_atomic(mdir / "fit.json", {**summary, "config": to_jsonable(res.model_config), "seed": opts.seed, "dataset": opts.dataset,
                                          "train_split": opts.train_split, "n_val": len(val)})
    return model, {"checkpoint": str(ckpt), "checkpoint_sha256": sha256_file(ckpt), "trained": True, "fit": summary,
                   "training": summary["training"]}


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RunError("--device cuda: no CUDA device is available here (use --device cpu or auto)")
    return device


def run_context(opts: RunOptions, res: Resolved, work: Path, shard: Any = None) -> RunContext:
    """What the task's :meth:`~benchmark.tasks.base.Task.produce` is given."""
    from benchmark.registry import get_plugins

    dataset = get_plugins()["datasets"].get(opts.dataset)
    return RunContext(config=res.task_config, dataset=dataset, data_dir=opts.data_dir, seed=opts.seed, device=opts.device,
                      work_dir=work, progress=opts.progress, profile=opts.profile, shard=shard)


def check_task_options(opts: RunOptions, res: Resolved) -> None:
    """The task's own checks of its options before any training (e.g. a condition set's checkers
    must load): the options its metrics will read, built once and dropped."""
    from benchmark.registry import get_plugins
    from benchmark.tasks.base import TaskError

    if not res.task.evaluable:
        return
    try:
        res.task.evaluation_options(res.task_config, get_plugins()["datasets"].get(opts.dataset), progress=opts.progress)
    except TaskError as exc:
        raise RunError(str(exc)) from exc


# ------------------------------------------------------------------ the run
def run(opts: RunOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run a model on a task and store the record (see module doc). Returns the record."""
    from benchmark import settings
    from benchmark.config import to_jsonable
    from benchmark.models.base import NotSupported
    from benchmark.store import SCHEMA_VERSION, ResultsStore, environment_info, new_run_id, utc_now_iso

    t_start = time.time()
    started_at = utc_now_iso()
    res = resolve(opts)
    task = res.task
    opts.device = resolve_device(opts.device)
    store = ResultsStore(settings.runs_dir(opts.runs_dir))
    run_id = new_run_id(opts.task, opts.dataset)
    model_info: dict[str, Any] = {
        "name": opts.model,
        "version": res.model_cls.version,
        "preset": opts.preset,
        "train_split": opts.train_split,
        "config": to_jsonable(res.model_config),
        "changed": changed_from_preset(res.model_cls, opts.preset, opts.dataset, res.model_config),
        "capabilities": sorted(res.model_cls.capabilities),
        "checkpoint_sha256": None,
    }
    record: dict[str, Any] = {
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
    if task.capability is None or task.capability not in res.model_cls.capabilities:
        record["status"] = "not_supported"
        record["notes"].append(f"{opts.model} does not declare the {task.capability!r} capability the {opts.task} task needs"
                               if task.capability else f"the {opts.task} task scores sample files only (evaluate)")
        record["duration_s"] = time.time() - t_start
        store.save(record)
        return record

    check_task_options(opts, res)  # before training, not after
    shard = parse_shard(opts.shard)
    with file_lock(model_dir(opts, res).with_suffix(".lock"), shard is not None):  # concurrent shards train once
        model, ckpt_info = trained_model(opts, res, log)
    model_info["checkpoint_sha256"] = ckpt_info.get("checkpoint_sha256")
    model_info["checkpoint"] = ckpt_info.get("checkpoint")
    if ckpt_info.get("fit"):
        record["fit"] = ckpt_info["fit"]
    if ckpt_info.get("training"):  # what the model was trained on (devices, strategy, world size ...)
        record["training"] = ckpt_info["training"]
    # the work directory's key: the device's kind only (cuda:0 and cuda:1 draw the same batches), never the shard
    work = settings.runs_dir(opts.runs_dir) / "work" / _hash({"model_key": str(model_dir(opts, res)), "ckpt": model_info["checkpoint_sha256"], "task": opts.task,
                                                               "cfg": to_jsonable(res.task_config), "seed": opts.seed,
                                                               "device": opts.device.split(":", 1)[0]})
    scored = work.with_name(work.name + ".scored.json")
    if shard is not None and scored.is_file():
        return _scored_run(store, scored, shard, log)
    t = time.time()
    try:
        with _progress_env(opts.progress):  # a model's own bars (diffusion steps) follow --no-progress too
            produced = task.produce(model, run_context(opts, res, work, shard))
    except NotSupported as exc:
        record["status"] = "not_supported"
        record["notes"].append(str(exc))
        store.save(record)
        return record
    except ShardPending as exc:
        record["status"] = "shard_pending"  # not stored: the run is scored once all batches are written
        record["shard"] = {"shard": str(shard), "n_batches": exc.n_batches, "missing": exc.missing}
        record["notes"].append(str(exc))
        record["duration_s"] = time.time() - t_start
        return record
    except BatchError as exc:
        raise RunError(str(exc)) from exc
    with file_lock(work.with_name(work.name + ".lock"), shard is not None):
        if shard is not None and scored.is_file():  # another shard saw the complete set first and stored it
            return _scored_run(store, scored, shard, log)
        record = _finish(opts, res, task, store, record, produced, work, t, t_start, shard)
        if shard is not None:
            from benchmark.files import write_json_atomic

            write_json_atomic(scored, {"run_id": record["run_id"], "scored_by_shard": str(shard)})
    return record


def parse_shard(text: str | None) -> Any:
    """``--shard I/N`` as a :class:`~benchmark.tasks.base.Shard` (None without one); RunError if malformed."""
    from benchmark.tasks.base import Shard

    if text is None:
        return None
    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise RunError(str(exc)) from exc


@contextlib.contextmanager
def file_lock(path: Path, active: bool) -> Iterator[None]:
    """An inter-process file lock on ``path`` when ``active`` (sharded runs), else nothing."""
    if not active:
        yield
        return
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path)):
        yield


def _scored_run(store: Any, marker: Path, shard: Any, log: Callable[[str], None]) -> dict[str, Any]:
    """The record another shard stored for this run (its ``.scored.json`` marker names it)."""
    run_id = json.loads(marker.read_text())["run_id"]
    log(f"shard {shard}: this run is already scored and stored as {run_id} (by shard {json.loads(marker.read_text()).get('scored_by_shard')})")
    return store.get(run_id)


def _finish(opts: RunOptions, res: Resolved, task: Any, store: Any, record: dict[str, Any], produced: Any, work: Path,
            t: float, t_start: float, shard: Any) -> dict[str, Any]:
    """Everything after the task produced its crystals: write, score, store; the work directory
    is removed once the run is stored (kept for a sharded run: a slower shard may still be
    reading the batches; a later run without --shard reuses and then removes them)."""
    from benchmark.samples import write_extxyz

    run_id = record["run_id"]
    record["timings"]["model_s"] = time.time() - t
    if shard is not None:
        record["shard"] = {"scored_by": str(shard), "n_shards": shard.count}
    record.update(produced.record)
    record["notes"].extend(produced.notes)

    if produced.artifacts:
        from benchmark.files import write_npz_atomic

        write_npz_atomic(store.run_dir(run_id) / "artifacts.npz", produced.artifacts)
        record["artifacts"]["arrays"] = "artifacts.npz"
    if produced.crystals is not None and task.evaluable:
        samples_path = store.run_dir(run_id) / "samples.extxyz"
        write_extxyz(produced.crystals, samples_path)
        record = _score(opts, res, record, samples_path, produced.artifacts)
        record["artifacts"]["samples"] = "samples.extxyz"
    for key, value in task.stamp(produced.metrics).items():
        record["metrics"][key] = value.as_dict()
    record["duration_s"] = time.time() - t_start
    store.save(record)
    if work.exists() and shard is None:
        shutil.rmtree(work, ignore_errors=True)  # the run is complete: its samples are in the run dir
    return record


def _score(opts: RunOptions, res: Resolved, record: dict[str, Any], samples_path: Path,
           artifacts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Score the run's samples with the evaluation path (the model's per-sample ``artifacts`` go
    to the metrics as ``EvalContext.artifacts``); its results go into the run's record."""
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
        fingerprint_backend=opts.fingerprint_backend,
        data_dir=opts.data_dir,
        runs_dir=opts.runs_dir,
        progress=opts.progress,
        store=False,
        properties=opts.properties,
        model_name=opts.model,
        train_split=opts.train_split,  # novelty is measured against what the model saw
        task_config=res.task_config,
        run_id=record["run_id"],
        artifacts=dict(artifacts or {}),
        scheduler=opts.scheduler,
    )
    try:
        result = evaluate(eopts)
    except EvaluationError as exc:
        raise RunError(str(exc)) from exc
    ev = result.record
    out = dict(record)
    out["dataset"] = ev["dataset"]
    out["samples"] = {**ev["samples"], "path": "samples.extxyz"}
    out["profile_settings"] = ev.get("profile_settings")
    if "fingerprints" in ev:  # which fingerprint backend computed what (what ran is what the record says)
        out["fingerprints"] = ev["fingerprints"]
    if "scheduler" in ev:  # where the scoring ran (spec, address, workers)
        out["scheduler"] = ev["scheduler"]
    out["metrics"] = ev["metrics"]
    out["timings"] = {**record["timings"], **ev["timings"]}
    out["notes"] = record["notes"] + ev["notes"]
    out.update(result.extras)
    store = ResultsStore(settings.runs_dir(opts.runs_dir))
    store.write_per_structure(record["run_id"], result.per_structure)
    written = result.write_artifacts(store.run_dir(record["run_id"]))
    out["artifacts"] = {**record.get("artifacts", {}), "per_structure": "per_structure.csv", **written}
    return out


def flat_metrics(record: dict[str, Any]) -> dict[str, float | None]:
    from benchmark.tasks.evaluation import flatten

    return flatten(record.get("metrics", {}))
