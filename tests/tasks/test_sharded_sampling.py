"""Sharded sampling (issue 17, item 2): ``--shard I/N`` splits a run's seeded batches over N
processes that share one work directory; together they give exactly the crystals of a one-process
run, the shard that completes the set scores it once, and a killed shard is simply run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from benchmark.crystal import Crystal
from benchmark.tasks.base import BatchError, Shard, ShardPending, StopRule, batched


def _make(b: int, bn: int) -> tuple[list[Crystal], int, dict[str, np.ndarray]]:
    """A deterministic 'model': batch b's crystals depend on b only (as a seeded model's do)."""
    rng = np.random.default_rng(b)
    out = []
    for i in range(bn):
        a = 4.0 + rng.random()
        out.append(Crystal([11, 17], [[0, 0, 0], [0.5, 0.5, 0.5]], [a, a, a], [90, 90, 90], {"tag": float(b * 1000 + i)}))
    return out, bn, {"z": np.full((bn, 2), float(b))}


def _tags(crystals: list[Crystal]) -> list[float]:
    return [c.properties["tag"] for c in crystals]


def test_shard_parse_and_ownership() -> None:
    s = Shard.parse("1/3")
    assert (s.index, s.count, str(s)) == (1, 3, "1/3")
    assert [b for b in range(8) if s.owns(b)] == [1, 4, 7]
    for bad in ("3/3", "-1/2", "0/0", "a/2", "1", "1/2/3", ""):
        with pytest.raises(ValueError, match="shard"):
            Shard.parse(bad)


def test_two_shards_give_exactly_the_one_process_batches(tmp_path: Path) -> None:
    one, _, one_art = batched(tmp_path / "one", 23, 4, _make, progress=False)
    made: list[int] = []

    def counting(b: int, bn: int):
        made.append(b)
        return _make(b, bn)

    work = tmp_path / "sharded"
    with pytest.raises(ShardPending) as first:
        batched(work, 23, 4, counting, progress=False, shard=Shard(0, 2))
    assert made == [0, 2, 4] and first.value.missing == [1, 3, 5] and first.value.n_batches == 6
    # the second shard draws only its own batches and, finding the set complete, returns all of it
    crystals, evals, arrays = batched(work, 23, 4, counting, progress=False, shard=Shard(1, 2))
    assert made == [0, 2, 4, 1, 3, 5]
    assert _tags(crystals) == _tags(one) and len(crystals) == 23 and evals == 23
    assert np.array_equal(arrays["z"], one_art["z"])
    # the first shard rerun reads everything back and makes nothing
    again, _, _ = batched(work, 23, 4, counting, progress=False, shard=Shard(0, 2))
    assert made == [0, 2, 4, 1, 3, 5] and _tags(again) == _tags(one)


def test_a_shard_refuses_a_stop_rule(tmp_path: Path) -> None:
    with pytest.raises(BatchError, match="cannot be sharded"):
        batched(tmp_path, 8, 4, _make, progress=False, stop=StopRule(3, len), shard=Shard(0, 2))


_SHARD_RUN = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from benchmark.crystal import Crystal
    from benchmark.models.base import Model, ModelConfig, SampleBatch
    from benchmark.registry import Entry, get_plugins
    from benchmark.tasks.runner import RunOptions, run

    class Slow(Model):
        name = "slow_shard_model"
        capabilities = frozenset({"sample"})
        def fit(self, train, val, run_dir, *, seed=0, device="cpu"):
            time.sleep(1.0)  # long enough that concurrent shards would both train without the lock
            with open(f"{run_dir}/fit_calls.txt", "a") as fh:
                fh.write("fit\\n")
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

    get_plugins()["models"].add(Entry("slow_shard_model", "test", lambda: Slow))
    shard = None if sys.argv[2] == "-" else sys.argv[2]
    rec = run(RunOptions(model="slow_shard_model", task="generation", dataset="toy", overrides=["task.n_samples=40", "task.batch_size=4"],
                         runs_dir=sys.argv[1], seed=3, progress=False, n_jobs=1, shard=shard), log=lambda m: None)
    print("DONE", rec["status"], rec["run_id"])
    """
)


def _start(script: Path, runs: Path, shard: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), str(runs), shard], cwd=script.parent, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> tuple[str, str]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    status, run_id = out.split("DONE")[1].split()
    return status, run_id


def _stored_runs(runs: Path) -> list[str]:
    return sorted(p.parent.name for p in runs.glob("*/record.json"))


def _sample_tags(runs: Path, run_id: str) -> list[float]:
    from benchmark.samples import read_samples

    return [c.properties["tag"] for c in read_samples(runs / run_id / "samples.extxyz").entries]


@pytest.fixture(scope="module")
def shard_script(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    """The script, and the crystals of a one-process run with the same seed (the reference)."""
    root = tmp_path_factory.mktemp("shards")
    script = root / "shard_run.py"
    script.write_text(_SHARD_RUN)
    status, run_id = _finish(_start(script, root / "single", "-"))
    assert status == "ok"
    tags = _sample_tags(root / "single", run_id)
    assert len(tags) == 40 and len(set(tags)) == 40
    return script, tags


def test_two_concurrent_shard_processes_store_the_one_process_run_once(shard_script, tmp_path: Path) -> None:
    script, single = shard_script
    runs = tmp_path / "runs"
    a, b = _start(script, runs, "0/2"), _start(script, runs, "1/2")
    results = [_finish(a), _finish(b)]
    stored = _stored_runs(runs)
    assert len(stored) == 1, f"exactly one record, got {stored}"
    assert _sample_tags(runs, stored[0]) == single  # no lost, duplicated or reordered crystals
    # one shard scored; the other either stopped pending or found the run already stored
    statuses = sorted(s for s, _ in results)
    assert "ok" in statuses and all(s in ("ok", "shard_pending") for s in statuses)
    assert all(r == stored[0] for s, r in results if s == "ok")
    record = json.loads((runs / stored[0] / "record.json").read_text())
    assert record["shard"]["n_shards"] == 2 and record["samples"]["n"] == 40
    fits = list((runs / "models").glob("slow_shard_model-toy-*/fit_calls.txt"))
    assert len(fits) == 1 and fits[0].read_text().splitlines() == ["fit"]  # trained once: the other shard waited and reused it


def test_a_killed_shard_rerun_completes_the_run(shard_script, tmp_path: Path) -> None:
    script, single = shard_script
    runs = tmp_path / "runs"
    proc = _start(script, runs, "0/2")
    deadline = time.time() + 120
    while time.time() < deadline:
        if len(list(runs.glob("work/*/batch_*.json"))) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    written = list(runs.glob("work/*/batch_*.json"))
    assert 2 <= len(written) < 5, "the kill must land mid-sampling (shard 0/2 owns 5 of the 10 batches)"

    status, _ = _finish(_start(script, runs, "1/2"))  # the other shard: its batches done, shard 0's missing
    assert status == "shard_pending" and _stored_runs(runs) == []
    status, run_id = _finish(_start(script, runs, "0/2"))  # the killed shard again: completes and scores the run
    assert status == "ok" and _stored_runs(runs) == [run_id]
    assert _sample_tags(runs, run_id) == single
    status, again = _finish(_start(script, runs, "1/2"))  # a shard started after the run is stored returns it
    assert (status, again) == ("ok", run_id) and _stored_runs(runs) == [run_id]


def test_sample_command_takes_a_shard(tmp_path: Path) -> None:
    """``sample --shard`` through the real CLI: two shards write exactly the one-process file."""
    from benchmark.samples import read_samples

    env = dict(os.environ, BENCHMARK_RUNS_DIR=str(tmp_path / "runs"))
    base = [sys.executable, "-m", "benchmark", "sample", "--model", "random", "--dataset", "toy", "--preset", "smoke", "--n", "30",
            "--batch-size", "7", "--no-progress"]

    def sample(out: Path, *extra: str) -> str:
        done = subprocess.run(base + ["--out", str(out), *extra], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    sample(tmp_path / "one.extxyz")
    first = sample(tmp_path / "sharded.extxyz", "--shard", "1/2")
    assert "still missing" in first and not (tmp_path / "sharded.extxyz").exists()
    sample(tmp_path / "sharded.extxyz", "--shard", "0/2")
    one = read_samples(tmp_path / "one.extxyz").entries
    two = read_samples(tmp_path / "sharded.extxyz").entries
    assert len(one) == len(two) == 30
    for x, y in zip(one, two):
        assert np.array_equal(x.atomic_numbers, y.atomic_numbers) and np.allclose(x.frac_coords, y.frac_coords, atol=0, rtol=0)
    bad = subprocess.run(base + ["--out", str(tmp_path / "x.extxyz"), "--shard", "2/2"], env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "0 <= I < N" in bad.stderr
