"""Training on several devices and nodes (issue 17, part 1): the command line's --accelerator,
--devices, --num-nodes, --strategy and --precision reach Lightning's Trainer through the one
training loop; under DDP every rank trains and rank zero alone writes the model and the record.

The two DDP tests run real gloo processes on the CPU: the command line (Lightning's subprocess
launcher re-runs ``python -m benchmark ...`` for rank 1) and a third-party-style script calling
``train_module`` inside ``training_resources``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import typing
from pathlib import Path

import pytest

from benchmark.cli import build_parser, split_strategy
from benchmark.training import PRECISIONS, TrainingResources, trainer_arguments, training_resources

FTCP_TINY = ["--model", "ftcp", "--dataset", "toy", "--preset", "smoke", "--set", "model.max_epochs=2", "--no-progress"]
DDP_CPU = ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without a launcher's or a cluster's rank variables (a test run inside a
    SLURM job or under torchrun must still launch its own two local processes)."""
    launcher = ("LOCAL_RANK", "RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in launcher and not k.startswith(("SLURM_", "TORCHELASTIC_", "PL_"))}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=600)


def parsed(argv: list[str]):  # -> RunOptions
    from benchmark.cli import _run_options

    args = build_parser(argv).parse_args(argv)
    return _run_options(args, getattr(args, "task", "") or "")


# ------------------------------------------------------------------ defaults, flags, dispatch
def test_default_resources_build_todays_trainer_arguments() -> None:
    assert trainer_arguments(TrainingResources(), "cpu") == {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto", "precision": "32-true"}
    assert trainer_arguments(TrainingResources(), "cuda")["accelerator"] == "gpu"
    assert trainer_arguments(TrainingResources(accelerator="cpu"), "cuda")["accelerator"] == "cpu"  # --accelerator wins over --device
    assert trainer_arguments(TrainingResources(devices=2), "cpu")["strategy"] == "ddp"  # as the loop always did for devices > 1
    assert trainer_arguments(TrainingResources(devices=2, strategy="ddp_spawn"), "cpu")["strategy"] == "ddp_spawn"
    assert trainer_arguments(TrainingResources(devices="auto"), "cpu")["strategy"] == "auto"  # Lightning decides
    with pytest.raises(ValueError, match="devices"):
        TrainingResources(devices=0)
    with pytest.raises(ValueError, match="precision"):
        TrainingResources(precision="8-bit")


def test_precisions_are_lightnings() -> None:
    from lightning.fabric.connector import _PRECISION_INPUT_STR

    assert set(PRECISIONS) == set(typing.get_args(_PRECISION_INPUT_STR))


def test_plain_train_module_call_runs_on_one_device_and_says_so(tmp_path: Path) -> None:
    """No context, no arguments: the Trainer of before (one CPU device, 32-true); inside a
    context, its resources are used and reported to the session."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from benchmark.training import train_module

    module = _tiny_module()
    loader = DataLoader(TensorDataset(torch.randn(16, 3), torch.randn(16, 1)), batch_size=8)
    out = train_module(module, loader, None, tmp_path / "a", max_epochs=1, progress=False)
    assert out["training"] == {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "single_device",
                               "precision": "32-true", "world_size": 1, "global_rank": 0}
    with training_resources(TrainingResources(precision="bf16-mixed")) as session:
        out = train_module(_tiny_module(), loader, None, tmp_path / "b", max_epochs=1, progress=False)
    assert out["training"]["precision"] == "bf16-mixed" and session.fits == [out["training"]]
    assert session.is_global_zero and session.summary()["world_size"] == 1 and session.summary()["lightning_fits"] == 1


def test_training_flags_are_parsed() -> None:
    opts = parsed(["train", *FTCP_TINY, "--accelerator", "cpu", "--devices", "2", "--num-nodes", "3", "--strategy", "fsdp", "--precision", "bf16-mixed"])
    assert opts.training == TrainingResources(accelerator="cpu", devices=2, num_nodes=3, strategy="fsdp", precision="bf16-mixed")
    assert opts.strategy is None
    assert parsed(["train", *FTCP_TINY]).training == TrainingResources()  # no flag: today's one-device training
    assert parsed(["train", *FTCP_TINY, "--devices", "auto"]).training.devices == "auto"
    for bad in (["--devices", "0"], ["--devices", "two"], ["--num-nodes", "0"], ["--precision", "8-bit"], ["--accelerator", "tpu7"]):
        with pytest.raises(SystemExit):
            build_parser(["train"]).parse_args(["train", *FTCP_TINY, *bad])


def test_strategy_is_lightnings_or_the_models() -> None:
    """On run (and sample) a Lightning strategy name sets the training strategy, any other name
    is the model's generation strategy; on train it is Lightning's only."""
    assert split_strategy("ddp", "run") == ("ddp", None)
    assert split_strategy("fsdp", "run") == ("fsdp", None)
    assert split_strategy("deepspeed_stage_2", "run") == ("deepspeed_stage_2", None)
    assert split_strategy("ddp_find_unused_parameters_true", "sample") == ("ddp_find_unused_parameters_true", None)
    assert split_strategy("auto", "run") == ("auto", None)
    for name in ("default", "full", "less"):  # Con-CDVAE's generation strategies
        assert split_strategy(name, "run") == (None, name)
    assert split_strategy("ddp", "train") == ("ddp", None)
    with pytest.raises(ValueError, match="not a Lightning strategy"):
        split_strategy("full", "train")
    assert split_strategy(None, "run") == (None, None)

    run_ddp = parsed(["run", "--task", "generation", *FTCP_TINY, "--strategy", "ddp"])
    assert run_ddp.training.strategy == "ddp" and run_ddp.strategy is None
    run_full = parsed(["run", "--task", "generation", "--model", "con_cdvae", "--strategy", "full"])
    assert run_full.strategy == "full" and run_full.training == TrainingResources()


def test_no_models_generation_strategy_is_named_like_a_lightning_strategy() -> None:
    """The dispatch above is unambiguous only while this holds for every registered model."""
    from benchmark.registry import get_plugins
    from benchmark.training import is_lightning_strategy

    seen = 0
    for entry in get_plugins()["models"]:
        config = entry.load().Config
        for f in dataclasses.fields(config):
            if f.name == "strategy":
                hints = typing.get_type_hints(config)
                values = typing.get_args(hints["strategy"]) or (getattr(config(), "strategy", None),)
                seen += 1
                assert not any(isinstance(v, str) and is_lightning_strategy(v) for v in values), (entry.name, values)
    assert seen >= 1  # Con-CDVAE has one


def test_model_key_is_unchanged_for_default_training(tmp_path: Path) -> None:
    from benchmark.config import to_jsonable
    from benchmark.files import key_digest
    from benchmark.tasks.runner import RunOptions, model_dir, resolve

    opts = RunOptions(model="ftcp", dataset="toy", preset="smoke", runs_dir=str(tmp_path))
    res = resolve(opts, with_task=False)
    # the key as it was computed before training resources existed
    config = {k: v for k, v in to_jsonable(res.model_config).items() if k not in getattr(res.model_config, "sampling_fields", ())}
    old = {"model": "ftcp", "version": res.model_cls.version, "dataset": "toy", "config": config, "seed": 0}
    assert model_dir(opts, res).name == f"ftcp-toy-{key_digest(old)[:12]}"

    def key(**kw: object) -> str:
        return model_dir(dataclasses.replace(opts, training=TrainingResources(**kw)), res).name

    default = key()
    assert key(accelerator="cpu") == default  # like --device, the accelerator is not part of the key
    assert key(devices="auto") == default  # one process on a CPU machine
    assert key(strategy="auto") == default
    assert key(devices=2) == key(devices=2, strategy="ddp")  # what "auto" becomes on two processes
    assert len({default, key(devices=2), key(devices=2, num_nodes=2), key(devices=2, strategy="fsdp"), key(precision="bf16-mixed")}) == 5


# ------------------------------------------------------------------ real DDP processes (gloo, CPU)
def _atom_init_found() -> bool:
    from benchmark.elements import find_atom_init

    return find_atom_init() is not None


@pytest.mark.skipif(not _atom_init_found(), reason="FTCP's element features (atom_init.json) are not in an oracle directory: "
                    "`python -m benchmark oracle fetch con-cdvae` or BENCHMARK_ORACLE_DIR")
def test_two_ddp_processes_train_once_and_the_model_loads_and_samples(tmp_path: Path) -> None:
    """Through the real command line: rank 0 re-launches the command as rank 1 (Lightning's
    subprocess launcher); both train, one model.ckpt / fit.json is written, and it samples."""
    runs = tmp_path / "runs"
    proc = cli(["train", *FTCP_TINY, *DDP_CPU, "--runs-dir", str(runs)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "GLOBAL_RANK: 0" in out and "GLOBAL_RANK: 1" in out  # two processes joined
    assert proc.stdout.count("training ftcp on toy") == 2  # both ran the command up to the fit
    assert proc.stdout.count("checkpoint: ") == 1  # rank 1 stops quietly after the fit
    ckpts = sorted(runs.rglob("model.ckpt"))
    fits = sorted(runs.rglob("fit.json"))
    assert len(ckpts) == 1 and len(fits) == 1 and ckpts[0].parent == fits[0].parent
    assert f"checkpoint: {ckpts[0]}" in proc.stdout
    fit = json.loads(fits[0].read_text())
    assert fit["training"]["world_size"] == 2 and fit["training"]["devices"] == 2
    assert fit["training"]["strategy"] == "ddp" and fit["training"]["accelerator"] == "cpu" and fit["training"]["num_nodes"] == 1
    assert fit["epochs"] == 2
    # each rank saw half of the 256 toy crystals: half the optimiser steps of one process
    assert fit["global_step"] == 2 * 2  # 128 crystals per rank, batch size 64, 2 epochs
    assert not list(runs.rglob("record.json"))  # train stores no run

    # the checkpoint loads and samples (one process)
    xyz = tmp_path / "x.extxyz"
    proc = cli(["sample", *FTCP_TINY, "--checkpoint", str(ckpts[0]), "--n", "8", "--out", str(xyz), "--runs-dir", str(runs)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from benchmark.samples import read_samples

    crystals = read_samples(xyz).entries
    assert len(crystals) == 8 and all(c.num_atoms > 0 for c in crystals)

    # run with the same flags reuses the DDP-trained model and records what it was trained on
    proc = cli(["run", "--task", "generation", *FTCP_TINY, *DDP_CPU, "--n-samples", "8", "--runs-dir", str(runs)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "reusing the trained model" in proc.stdout and "GLOBAL_RANK" not in proc.stdout + proc.stderr
    records = list(runs.rglob("record.json"))
    assert len(records) == 1
    rec = json.loads(records[0].read_text())
    assert rec["training"]["world_size"] == 2 and rec["model"]["checkpoint"] == str(ckpts[0])


KEEP_BEST_SCRIPT = textwrap.dedent('''
    """Run as a script: Lightning's launcher re-runs it as rank 1. Rank 0's val_loss is lowest at
    epoch 1, rank 1's at epoch 2: one best file exists, and both ranks must load it."""
    import hashlib, json, sys
    from pathlib import Path

    import lightning, torch
    from torch.utils.data import DataLoader, TensorDataset

    from benchmark.safeload import load_weights
    from benchmark.training import TrainingResources, train_module, training_resources

    class Tiny(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(3, 1)

        def training_step(self, batch, _):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss, on_epoch=True)
            return loss

        def validation_step(self, batch, _):
            best = 1 + self.global_rank  # a different best epoch on each rank
            self.log("val_loss", float((self.current_epoch - best) ** 2), on_epoch=True)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    out, strategy = Path(sys.argv[1]), sys.argv[2]
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(32, 3), torch.randn(32, 1))
    module = Tiny()
    with training_resources(TrainingResources(accelerator="cpu", devices=2, strategy=strategy)) as session:
        fit = train_module(module, DataLoader(data, batch_size=8), DataLoader(data, batch_size=8), out / "run", max_epochs=4, progress=False)
    state = {k: v for k, v in module.state_dict().items()}
    digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in state.values())).hexdigest()
    best = sorted((out / "run" / "checkpoints").glob("epoch=*.ckpt"))
    on_disk = hashlib.sha256(b"".join(v.numpy().tobytes() for v in load_weights(best[0])["state_dict"].values())).hexdigest() if len(best) == 1 else None
    (out / f"rank{session.global_rank}.json").write_text(json.dumps({
        "kept": fit["kept"], "best_epoch": fit["best_epoch"], "digest": digest, "on_disk": on_disk,
        "epochs": fit["epochs"], "global_step": fit["global_step"], "best_val_loss": fit["best_val_loss"],
        "world_size": session.summary()["world_size"], "files": [p.name for p in best]}))
''')


@pytest.mark.parametrize("strategy", ["ddp", "ddp_fork"])
def test_keep_best_loads_rank_zeros_best_weights_on_every_rank(strategy: str, tmp_path: Path) -> None:
    """A third-party-style script calling train_module inside training_resources: both ranks
    keep the same weights, those of the one best checkpoint rank 0 wrote, although each rank's
    own val_loss is lowest at another epoch (Lightning saves a better checkpoint only when all
    ranks agree it is better: epoch 1 here). With ddp_fork the fit runs in forked children and
    only the calling process returns: it holds the best weights too, and the fit summary's epochs,
    steps and best score (which Lightning does not hand back) are recovered."""
    script = tmp_path / "keep_best.py"
    script.write_text(KEEP_BEST_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), strategy], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env=clean_env(BENCHMARK_NO_PROGRESS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("rank*.json"))]
    assert len(ranks) == (2 if strategy == "ddp" else 1)  # ddp re-runs the script for rank 1; fork children never return to it
    assert ranks[0]["files"] == ["epoch=1-step=4.ckpt"]  # rank 0's best, the one file on disk
    for r in ranks:
        assert r["world_size"] == 2
        assert r["kept"] == "best" and r["best_epoch"] == 1
        assert r["digest"] == r["on_disk"]  # the weights held are the best checkpoint's
        assert (r["epochs"], r["global_step"]) == (4, 8)  # 16 of the 32 rows per rank, batch 8: 2 steps x 4 epochs
    assert ranks[0]["best_val_loss"] == 0.0  # rank 0's val_loss at epoch 1
    assert ranks[0]["digest"] == ranks[-1]["digest"]


def _tiny_module():  # -> lightning.LightningModule
    import lightning
    import torch

    class Tiny(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(3, 1)

        def training_step(self, batch, _):  # type: ignore[no-untyped-def]
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss, on_epoch=True)
            return loss

        def configure_optimizers(self):  # type: ignore[no-untyped-def]
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Tiny()


def test_slurm_environment_is_lightnings_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under srun the Trainer the loop builds takes its ranks from SLURM (Lightning's
    SLURMEnvironment, which nothing of ours replaces): task 5 of 2 nodes x 4 is global rank 5."""
    import lightning
    from lightning.fabric.plugins.environments import SLURMEnvironment

    from lightning.pytorch.utilities.rank_zero import rank_zero_only
    from lightning_utilities.core.rank_zero import rank_zero_only as utils_rank_zero_only

    # the DDP strategy sets this process's rank-zero-only rank globally (to 5 here): restored after
    # the test, or every later Trainer in this pytest process would log and checkpoint nothing
    monkeypatch.setattr(rank_zero_only, "rank", rank_zero_only.rank)
    monkeypatch.setattr(utils_rank_zero_only, "rank", utils_rank_zero_only.rank)
    for k in [k for k in os.environ if k.startswith("SLURM_") or k in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK")]:
        monkeypatch.delenv(k)
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "cdvae-paper", "SLURM_NTASKS": "8", "SLURM_NTASKS_PER_NODE": "4",
             "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NODEID": "1", "SLURM_NODELIST": "gpu[01-02]"}
    for k, v in slurm.items():
        monkeypatch.setenv(k, v)
    args = trainer_arguments(TrainingResources(accelerator="cpu", devices=4, num_nodes=2, strategy="ddp"), "cpu")
    trainer = lightning.Trainer(**args, logger=False, enable_progress_bar=False, enable_checkpointing=False)
    env = trainer.strategy.cluster_environment
    assert isinstance(env, SLURMEnvironment)
    assert (trainer.global_rank, trainer.local_rank, trainer.node_rank, trainer.world_size) == (5, 1, 1, 8)


def test_sharded_run_refuses_to_train_on_several_processes(tmp_path: Path) -> None:
    """--shard holds a training lock; under DDP rank 1 re-runs the command and would wait for that
    lock while rank 0 waits for rank 1: the run says to train first, before any process starts."""
    from benchmark.tasks.runner import RunError, RunOptions, run

    opts = RunOptions(model="ftcp", task="generation", dataset="toy", preset="smoke", runs_dir=str(tmp_path), progress=False,
                      shard="0/2", training=TrainingResources(accelerator="cpu", devices=2, strategy="ddp"))
    with pytest.raises(RunError, match="train it first"):
        run(opts, log=lambda m: None)
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.parametrize("command", ["run", "train", "sample"])
def test_a_non_zero_rank_stops_quietly_after_fit(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Each command, in a process whose distributed fit made it global rank 1: exit 0, and no
    model file, fit.json, samples or record (rank 0 writes those)."""
    from benchmark.cli import main
    from benchmark.registry import get_plugins
    from benchmark.training import current_session

    model_cls = get_plugins()["models"].get("ftcp")

    def fit_as_rank_one(self, train, val, run_dir, *, seed=0, device="cpu"):  # type: ignore[no-untyped-def]
        current_session().fits.append({"accelerator": "cpu", "devices": 2, "num_nodes": 1, "strategy": "ddp",
                                       "precision": "32-true", "world_size": 2, "global_rank": 1})
        return {"epochs": 2}

    monkeypatch.setattr(model_cls, "fit", fit_as_rank_one)
    runs = tmp_path / "runs"
    extra = {"run": ["--task", "generation", "--n-samples", "8"], "train": [], "sample": ["--n", "8", "--out", str(tmp_path / "x.extxyz")]}[command]
    assert main([command, *FTCP_TINY, *DDP_CPU, "--runs-dir", str(runs), *extra]) == 0
    written = sorted(p.name for p in runs.rglob("*") if p.is_file())
    assert not {"model.ckpt", "fit.json", "record.json", "samples.extxyz"} & set(written), written
    assert not (tmp_path / "x.extxyz").exists()
    assert "checkpoint:" not in capsys.readouterr().out


def test_a_spawn_strategy_with_an_unpicklable_module_says_what_to_use(tmp_path: Path) -> None:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from benchmark.training import train_module

    loader = DataLoader(TensorDataset(torch.randn(16, 3), torch.randn(16, 1)), batch_size=8)
    with pytest.raises(ValueError, match="cannot be pickled.*use 'ddp'"):
        train_module(_tiny_module(), loader, None, tmp_path, max_epochs=1, progress=False,
                     resources=TrainingResources(accelerator="cpu", devices=2, strategy="ddp_spawn"))
    assert not (tmp_path / "checkpoints").exists()
