"""The runner: `run`, `train`, `sample` for any model, capability dispatch, configs, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from benchmark.store import ResultsStore


def cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=600)


def records(runs: Path) -> list[dict]:
    return ResultsStore(runs).query()


@pytest.mark.data
@pytest.mark.slow  # about two minutes; CI runs it after the default suite
def test_replay_generation_is_trained_once_scored_and_stored(shared_data: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    args = ["run", "--model", "replay", "--task", "generation", "--dataset", "perov_5_dev", "--preset", "smoke",
            "--set", "task.n_samples=30", "--set", "task.batch_size=10", "--runs-dir", str(runs), "--no-progress", "--json", str(tmp_path / "m.json")]
    first = cli(args, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "training replay" in first.stdout
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["struct_valid"] == 1.0 and "cov_recall" in metrics and metrics["novelty"] == 0.0
    rec = records(runs)[-1]
    assert rec["kind"] == "run" and rec["status"] == "ok" and rec["model"]["name"] == "replay"
    assert rec["task_config"] == {"n_samples": 30, "batch_size": 10, "until_valid": None, "n_property_samples": None, "cov_cutoffs": None}
    assert rec["model"]["checkpoint_sha256"]
    run_dir = runs / rec["run_id"]
    assert (run_dir / "samples.extxyz").is_file() and (run_dir / "per_structure.csv").is_file()
    second = cli(args, tmp_path)
    assert second.returncode == 0 and "reusing the trained model" in second.stdout
    assert json.loads((tmp_path / "m.json").read_text()) == metrics  # same seed, same samples, same numbers


@pytest.mark.data
def test_missing_capability_is_a_stored_not_supported_row(shared_data: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = cli(["run", "--model", "replay", "--task", "reconstruction", "--dataset", "perov_5_dev", "--runs-dir", str(runs), "--no-progress"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "not_supported" in proc.stdout
    rec = records(runs)[-1]
    assert rec["status"] == "not_supported" and rec["metrics"] == {}
    board = cli(["leaderboard", "--task", "reconstruction", "--dataset", "perov_5_dev", "--runs-dir", str(runs)], tmp_path)
    assert board.returncode == 0
    row = [line for line in board.stdout.splitlines() if line.startswith("| replay")][0]
    cells = [c.strip() for c in row.strip().strip("|").split("|")]
    assert "not supported" in cells[-1] and cells[1:3] == ["-", "-"]


@pytest.mark.data
def test_sampling_speed_records_device_and_rates(shared_data: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = cli(["run", "--model", "random", "--task", "sampling_speed", "--dataset", "perov_5_dev", "--runs-dir", str(runs), "--no-progress", "--json", str(tmp_path / "s.json")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "s.json").read_text())
    assert m["seconds_per_crystal"] > 0 and m["crystals_per_second"] == pytest.approx(1 / m["seconds_per_crystal"])
    rec = records(runs)[-1]
    assert rec["speed"]["batch_size"] == 50 and "cores" in rec["speed"]["device_name"]


def test_config_errors_are_one_line(tmp_path: Path) -> None:
    bad = cli(["run", "--model", "replay", "--task", "generation", "--dataset", "perov_5_dev", "--set", "task.n_sampels=3", "--runs-dir", str(tmp_path)], tmp_path)
    assert bad.returncode == 2 and "n_samples" in bad.stderr and "Traceback" not in bad.stderr
    wrong_type = cli(["run", "--model", "replay", "--task", "generation", "--dataset", "perov_5_dev", "--set", "task.n_samples=many", "--runs-dir", str(tmp_path)], tmp_path)
    assert wrong_type.returncode == 2 and "integer" in wrong_type.stderr
    typo = cli(["run", "--model", "replay", "--task", "generation", "--dataset", "perov5", "--runs-dir", str(tmp_path)], tmp_path)
    assert typo.returncode == 2 and "perov_5" in typo.stderr


def test_run_file_and_overrides_resolve_in_order(tmp_path: Path) -> None:
    from benchmark.tasks.runner import RunOptions, resolve

    run_file = tmp_path / "run.toml"
    run_file.write_text("[task]\nn_samples = 70\nbatch_size = 7\n")
    res = resolve(RunOptions(model="replay", task="generation", dataset="perov_5_dev", preset="paper", config_file=str(run_file), overrides=["task.batch_size=5"]))
    assert res.task_config.n_samples == 70 and res.task_config.batch_size == 5
    res = resolve(RunOptions(model="replay", task="generation", dataset="perov_5_dev", preset="smoke"))
    assert res.task_config.n_samples == 200


# ---------------------------------------------------------------- interrupted sampling resumes
_SLOW_RUN = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from benchmark.crystal import Crystal
    from benchmark.models.base import Model, ModelConfig, SampleBatch
    from benchmark.registry import Entry, get_plugins
    from benchmark.tasks.runner import RunOptions, run

    class Slow(Model):
        name = "slow_test_model"
        capabilities = frozenset({"sample"})
        def fit(self, train, val, run_dir, *, seed=0, device="cpu"):
            return {}
        def save(self, path):
            with open(path, "wb") as fh:
                np.savez(fh, x=np.zeros(1))
        @classmethod
        def load(cls, path, config=None):
            return cls(config)
        def sample(self, n, *, seed, device="cpu"):
            time.sleep(0.4)
            rng = np.random.default_rng(seed)
            out = []
            for i in range(n):
                a = 4.0 + rng.random()
                out.append(Crystal([11, 17], [[0, 0, 0], [0.5, 0.5, 0.5]], [a, a, a], [90, 90, 90], {"tag": float(seed % 100000) + i / 1000}))
            return SampleBatch(out, model_evaluations=n)

    get_plugins()["models"].add(Entry("slow_test_model", "test", lambda: Slow))
    rec = run(RunOptions(model="slow_test_model", task="generation", dataset="mp_20_sample", overrides=["task.n_samples=40", "task.batch_size=4"],
                         runs_dir=sys.argv[1], seed=int(sys.argv[2]), progress=False, n_jobs=1), log=lambda m: None)
    print("DONE", rec["run_id"])
    """
)


@pytest.mark.data
@pytest.mark.slow  # about two minutes; CI runs it after the default suite
def test_killed_sampling_run_resumes_without_lost_or_duplicated_crystals(shared_data: Path, tmp_path: Path) -> None:
    from benchmark.samples import read_samples

    script = tmp_path / "slow_run.py"
    script.write_text(_SLOW_RUN)
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, str(script), str(runs), "3"], cwd=tmp_path, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        done = list((runs / "work").glob("*/batch_*.json")) if (runs / "work").exists() else []
        if len(done) >= 3:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = sorted(p.name for p in (runs / "work").glob("*/batch_*.json"))
    assert 3 <= len(written) < 10, "the kill must land mid-sampling"

    resumed = subprocess.run([sys.executable, str(script), str(runs), "3"], cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run_id = resumed.stdout.split("DONE")[1].strip()
    tags = [c.properties["tag"] for c in read_samples(runs / run_id / "samples.extxyz").entries]
    # an uninterrupted run with the same seed gives exactly the same crystals
    fresh = subprocess.run([sys.executable, str(script), str(tmp_path / "runs2"), "3"], cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    fresh_id = fresh.stdout.split("DONE")[1].strip()
    fresh_tags = [c.properties["tag"] for c in read_samples(tmp_path / "runs2" / fresh_id / "samples.extxyz").entries]
    assert len(tags) == 40 and len(set(tags)) == 40
    assert tags == fresh_tags


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; this project has not measured sampling speed on a GPU yet")
def test_sampling_speed_on_cuda_synchronises_and_reads_peak_memory(tmp_path: Path) -> None:
    from benchmark.tasks.sampling_speed import SamplingSpeedConfig, time_sampling

    class Tiny:
        def sample(self, n, *, seed, device):
            from benchmark.models.base import SampleBatch

            x = torch.randn(1000, 1000, device=device)
            (x @ x).sum().item()
            return SampleBatch([None] * n, model_evaluations=1)

    out = time_sampling(Tiny(), SamplingSpeedConfig(n_samples=8, batch_size=4), 0, "cuda")
    assert out["seconds"] > 0 and out["peak_memory_mb"] > 0 and out["n"] == 8


def test_set_takes_none_for_an_optional_field():
    """``--set model.sampling_steps=none`` (TOML has no null) gives None for an optional integer;
    an optional string field keeps the word, and a plain integer field still refuses it."""
    import dataclasses

    import pytest as _pytest

    from benchmark.config import ConfigError, build, parse_overrides

    @dataclasses.dataclass(frozen=True)
    class Cfg:
        steps: int | None = 5
        label: str | None = "x"
        n: int = 3

    over = parse_overrides(["model.steps=none", "model.label=none"])["model"]
    assert build(Cfg, over) == Cfg(steps=None, label="none")
    assert build(Cfg, {"steps": "NULL"}).steps is None
    with _pytest.raises(ConfigError):
        build(Cfg, {"n": "none"})
