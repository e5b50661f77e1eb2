"""Scoring on Dask (``--scheduler``) and formula-keyed novelty/uniqueness (issue 17, parts 3 and 4).

* specs parse (local, local:N, tcp://, a scheduler file) and bad ones are clear errors; without
  dask.distributed the error names the extra to install;
* the same sample file scored with ``--scheduler local:2`` (the real CLI) and with the default
  backend gives identical aggregate metrics and per-structure tables;
* a worker killed in the middle of an evaluation is survived (Dask reruns its tasks, the nanny
  restarts it) and the numbers are still identical;
* novelty and uniqueness compared only within a reduced formula give exactly the flags and
  fractions of a naive all-pairs StructureMatcher loop, sequential and parallel.

The toy dataset is embedded (no data directory). Every cluster has two single-threaded workers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import numpy as np
import pytest

from benchmark.crystal import Crystal
from benchmark.scheduler import SchedulerError, active, parse_scheduler, require_distributed, scheduler_session
from tests.conftest import REPO, nacl, srtio3

TOL = (0.5, 10.0, 0.3)  # the cdvae profile's novelty_matcher


# ---------------------------------------------------------------------------- crystals
def _swapped(c: Crystal) -> Crystal:
    """The same formula on other sites: the perovskite's A and B cations exchanged (O then sits on
    the edges of the cation cube, not its faces): a different structure the matcher tells apart."""
    z = c.atomic_numbers.copy()
    a, b = z[0], z[1]
    z[0], z[1] = b, a
    return Crystal(z, c.frac_coords, c.lengths, c.angles, label=f"{c.label}-swapped")


def _supercell(c: Crystal, n: int = 2) -> Crystal:
    """An n x 1 x 1 supercell: the same crystal in a bigger cell (the matcher's primitive reduction matches it)."""
    frac = np.concatenate([(c.frac_coords + [i, 0, 0]) / [n, 1, 1] for i in range(n)])
    return Crystal(np.tile(c.atomic_numbers, n), frac, c.lengths * [n, 1, 1], c.angles, label=f"{c.label}-x{n}")


def _with(c: Crystal, cation: int, label: str) -> Crystal:
    z = c.atomic_numbers.copy()
    z[0] = cation
    return Crystal(z, c.frac_coords, c.lengths, c.angles, label=label)


def _toy(split: str) -> list[Crystal]:
    from benchmark.registry import get_plugins

    return list(get_plugins()["datasets"].get("toy").load(split, None, progress=False))


def _sample_file(path: Path) -> Path:
    """Toy crystals the generation metrics have work to do on: copies of training crystals (not
    novel; duplicates of each other), test crystals, cation-swapped perovskites (same formula,
    novel), supercells (duplicates in a bigger cell)."""
    from benchmark.samples import write_extxyz

    train, test = _toy("train"), _toy("test")
    perovskites = [c for c in test if c.num_atoms == 5]
    crystals = train[:24] + test[:40] + [_swapped(c) for c in perovskites[:16]] + [_supercell(c) for c in test[:16]] + train[:8]
    write_extxyz(crystals, path)
    return path


# ---------------------------------------------------------------------------- a cluster of two
@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A LocalCluster of two single-threaded worker processes, as a user would start one for
    ``--scheduler tcp://...``; the tests connect to it by address or scheduler file."""
    distributed = pytest.importorskip("distributed")
    import logging

    c = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.CRITICAL)
    try:
        yield c
    finally:
        c.close()


def _worker_pids(cluster: Any) -> dict[str, int]:
    return {addr: ws.pid for addr, ws in cluster.scheduler.workers.items()}


# ---------------------------------------------------------------------------- specs
def test_specs_parse() -> None:
    assert parse_scheduler("local").kind == "local"
    assert parse_scheduler("local").n_workers == (os.cpu_count() or 1)
    assert parse_scheduler("local:3").n_workers == 3
    s = parse_scheduler("tcp://10.0.0.5:8786")
    assert (s.kind, s.address) == ("address", "tcp://10.0.0.5:8786")
    assert parse_scheduler("tls://head:8786").kind == "address"


def test_a_scheduler_file_parses(tmp_path: Path) -> None:
    f = tmp_path / "scheduler.json"
    f.write_text(json.dumps({"address": "tcp://127.0.0.1:8786"}))
    s = parse_scheduler(str(f))
    assert (s.kind, s.path) == ("file", str(f))


@pytest.mark.parametrize("spec, message", [
    ("", "empty --scheduler"),
    ("local:0", "positive integer"),
    ("local:two", "positive integer"),
    ("local:2:3", "positive integer"),
    ("http://head:8786", "unknown address scheme"),
    ("/nowhere/scheduler.json", "no such scheduler file"),
    ("missing.json", "no such scheduler file"),
    ("head:8786", "not a scheduler spec"),
    ("dask", "not a scheduler spec"),
])
def test_a_bad_spec_is_a_clear_error(spec: str, message: str) -> None:
    with pytest.raises(SchedulerError, match=message):
        parse_scheduler(spec)


def test_missing_distributed_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import distributed` raise ImportError, as on a machine without it
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(SchedulerError, match=r"pip install 'crystal-gen-benchmark\[dask\]'"):
        require_distributed()
    with pytest.raises(SchedulerError, match=r"crystal-gen-benchmark\[dask\]"):
        with scheduler_session("local:1"):
            pass
    from benchmark.tasks.evaluation import EvaluateOptions, EvaluationError, evaluate

    with pytest.raises(EvaluationError, match=r"crystal-gen-benchmark\[dask\]"):
        evaluate(EvaluateOptions(task="generation", dataset="toy", samples="unused.extxyz", scheduler="local", store=False))


def test_cli_rejects_a_bad_spec_before_any_work(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from benchmark.cli import main

    # `run` would train first: the spec is checked before that
    assert main(["run", "--model", "replay", "--task", "generation", "--scheduler", "local:0", "--no-progress", "--runs-dir", str(tmp_path)]) == 2
    assert "positive integer" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_backend_dask_without_a_client_points_at_scheduler() -> None:
    pytest.importorskip("distributed")
    from benchmark.metrics.featurize import check_backend

    with pytest.raises(ValueError, match="--scheduler"):
        check_backend("dask")


def test_a_session_on_an_address_and_a_scheduler_file_runs_joblib_on_the_workers(cluster: Any, tmp_path: Path) -> None:
    from joblib import Parallel, delayed

    pids = set(_worker_pids(cluster).values())
    f = tmp_path / "scheduler.json"
    f.write_text(json.dumps({"address": cluster.scheduler_address}))
    for spec in (cluster.scheduler_address, str(f)):
        with scheduler_session(spec) as info:
            assert active() is info
            assert (info.address, info.n_workers, info.n_threads) == (cluster.scheduler_address, 2, 2)
            # joblib's default backend is now the cluster: the calls run in the worker processes
            ran_in = set(Parallel()(delayed(os.getpid)() for _ in range(8)))
            assert ran_in <= pids and os.getpid() not in ran_in
        assert active() is None
    assert _worker_pids(cluster) and set(_worker_pids(cluster).values()) == pids  # a remote cluster is left running


def test_backend_dask_still_uses_a_client_the_caller_opened(cluster: Any) -> None:
    """``--backend dask`` (``backend="dask"``) keeps working for a caller with its own Client."""
    import distributed

    from benchmark.metrics.featurize import evaluate_entries
    from benchmark.metrics.profiles import get_profile

    crystals = _toy("test")[:40]
    here = evaluate_entries(crystals, get_profile("cdvae"), n_jobs=1, progress=False)
    with distributed.Client(cluster.scheduler_address):
        there = evaluate_entries(crystals, get_profile("cdvae"), backend="dask", progress=False, chunk_size=8)
    assert [(r.index, r.valid, r.struct_fp.tobytes(), r.comp_fp.tobytes()) for r in there] == \
           [(r.index, r.valid, r.struct_fp.tobytes(), r.comp_fp.tobytes()) for r in here]


# ---------------------------------------------------------------------------- same numbers
def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _stored_run(runs: Path) -> tuple[dict[str, Any], str]:
    (run_dir,) = [p for p in runs.iterdir() if (p / "record.json").is_file()]
    return json.loads((run_dir / "record.json").read_text()), (run_dir / "per_structure.csv").read_text()


def test_local_scheduler_scores_exactly_as_the_default_backend(tmp_path: Path) -> None:
    """The real CLI, twice: the default (loky) backend, and ``--scheduler local:2`` with the
    reference cache off so that the reference split is featurised on the cluster too."""
    pytest.importorskip("distributed")
    samples = _sample_file(tmp_path / "samples.extxyz")
    env = {**os.environ, "BENCHMARK_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    common = ["evaluate", "--task", "generation", "--dataset", "toy", "--samples", str(samples), "--oracle", "none", "--no-progress"]
    out = {}
    for name, extra in (("default", []), ("dask", ["--scheduler", "local:2", "--no-cache"])):
        runs = tmp_path / f"runs-{name}"
        proc = _cli(*common, *extra, "--runs-dir", str(runs), "--json", str(tmp_path / f"{name}.json"), env=env)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        record, table = _stored_run(runs)
        out[name] = (json.loads((tmp_path / f"{name}.json").read_text()), table, record)
    (flat_d, table_d, rec_d), (flat_s, table_s, rec_s) = out["default"], out["dask"]
    assert flat_s == flat_d  # every aggregate metric, exactly
    assert table_s == table_d  # the per-structure table, byte for byte
    # the metrics had work to do: some crystals novel, some not; duplicates found
    assert 0 < flat_d["novelty"] < 1 and 0 < flat_d["uniqueness"] < 1
    assert "unique" in table_d.splitlines()[0] and "novel" in table_d.splitlines()[0]
    assert "scheduler" not in rec_d
    assert rec_s["scheduler"]["spec"] == "local:2" and rec_s["scheduler"]["n_workers"] == 2
    assert rec_s["scheduler"]["address"].startswith("tcp://")


def _evaluate(samples: Path, scheduler: str | None) -> Any:
    from benchmark.tasks.evaluation import EvaluateOptions, evaluate

    return evaluate(EvaluateOptions(task="generation", dataset="toy", samples=samples, oracle=None, progress=False, store=False,
                                    use_cache=scheduler is None, scheduler=scheduler))


class _Killer(threading.Thread):
    """Kills (SIGKILL) one worker process of ``cluster`` once the cluster has finished ``after``
    tasks and the worker is busy with another: a crash in the middle of the evaluation."""

    def __init__(self, cluster: Any, after: int = 2) -> None:
        super().__init__(daemon=True)
        self.cluster, self.after = cluster, after
        self.killed: int | None = None
        self.stop = threading.Event()
        from distributed.diagnostics.plugin import SchedulerPlugin

        class Count(SchedulerPlugin):
            name = "test-kill-counter"
            done = 0

            def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
                if finish == "memory":
                    type(self).done += 1

        self.counter = Count
        cluster.scheduler.add_plugin(Count(), name=Count.name)

    def run(self) -> None:
        while not self.stop.is_set():
            if self.counter.done >= self.after:
                busy = [ws for ws in list(self.cluster.scheduler.workers.values()) if ws.processing]
                if busy:
                    self.killed = busy[0].pid
                    os.kill(self.killed, signal.SIGKILL)
                    return
            time.sleep(0.005)


def test_a_worker_killed_mid_run_is_survived_with_identical_numbers(cluster: Any, tmp_path: Path) -> None:
    samples = _sample_file(tmp_path / "samples.extxyz")
    expected = _evaluate(samples, None)
    before = _worker_pids(cluster)
    killer = _Killer(cluster)
    killer.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = _evaluate(samples, cluster.scheduler_address)
    finally:
        killer.stop.set()
        killer.join(5)
        cluster.scheduler.remove_plugin(name=killer.counter.name)
    assert killer.killed in before.values(), "no worker was killed while tasks were running"
    # the nanny restarted the killed worker: a new process in its place
    deadline = time.time() + 60
    while time.time() < deadline and (len(cluster.scheduler.workers) < 2 or killer.killed in _worker_pids(cluster).values()):
        time.sleep(0.2)
    after = _worker_pids(cluster)
    assert killer.killed not in after.values() and len(after) == 2
    assert got.flat() == expected.flat()
    import pandas as pd

    pd.testing.assert_frame_equal(got.per_structure, expected.per_structure, check_exact=True)
    assert got.record["scheduler"]["address"] == cluster.scheduler_address


# ---------------------------------------------------------------------------- formula-keyed = all pairs
def _naive_flags(samples: list[Crystal], train: list[Crystal]) -> tuple[list[bool], list[bool]]:
    """All pairs, no formula key: uniqueness against every earlier unique sample, novelty against
    every training crystal."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    m = StructureMatcher(stol=TOL[0], angle_tol=TOL[1], ltol=TOL[2])

    def fits(a: Any, b: Any) -> bool:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(m.fit(a, b))

    structs = [c.to_structure() for c in samples]
    train_structs = [c.to_structure() for c in train]
    kept: list[Any] = []
    unique = []
    for s in structs:
        dup = any(fits(s, t) for t in kept)
        if not dup:
            kept.append(s)
        unique.append(not dup)
    novel = [not any(fits(s, t) for t in train_structs) for s in structs]
    return unique, novel


def _matcher_case() -> tuple[list[Crystal], list[Crystal]]:
    sto, bto = srtio3(), _with(srtio3(4.0), 56, "BaTiO3")
    samples = [
        sto,
        srtio3(3.95, "SrTiO3-strained"),  # the same structure, scaled: a duplicate
        _swapped(sto),  # same formula, another structure
        _supercell(sto),  # a duplicate in a 2x cell
        _swapped(srtio3(3.92)),  # a duplicate of the swapped one
        bto,  # another formula
        nacl(),
        _supercell(nacl(5.5), 2),  # a duplicate of NaCl in a bigger cell
        _with(srtio3(4.1), 20, "CaTiO3"),  # a formula seen once among the samples, and not in the training set
        _supercell(bto, 3),
    ]
    train = [srtio3(3.9, "train-SrTiO3"), nacl(5.7), _with(srtio3(4.2), 56, "train-BaTiO3"), _swapped(_with(srtio3(4.0), 56, "x"))]
    return samples, train


@pytest.mark.parametrize("mode", ["sequential", "threading", "dask"])
def test_formula_keyed_novelty_and_uniqueness_equal_all_pairs(mode: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    from benchmark.metrics import novelty as nov
    from benchmark.metrics.profiles import get_profile

    samples, train = _matcher_case()
    expect_unique, expect_novel = _naive_flags(samples, train)
    # the case is not trivial: both flags take both values
    assert set(expect_unique) == {True, False} and set(expect_novel) == {True, False}
    monkeypatch.setattr(nov, "MIN_PARALLEL_FITS", 0)  # a small case goes through the parallel path too
    monkeypatch.setattr(nov, "TASKS_PER_WORKER", 8)  # several tasks, and novelty's formula chunks cut
    backend, n_jobs = {"sequential": ("sequential", 1), "threading": ("threading", 2), "dask": ("dask", -1)}[mode]
    session = scheduler_session(request.getfixturevalue("cluster").scheduler_address) if mode == "dask" else _nothing()
    with session:
        assert nov.uniqueness_flags(samples, TOL, n_jobs=n_jobs, backend=backend) == expect_unique
        assert nov.novelty_flags(samples, train, TOL, n_jobs=n_jobs, backend=backend) == expect_novel
        # and the metrics (fractions over the valid samples; one sample marked invalid is left out)
        valid = [True] * len(samples)
        valid[3] = False
        ctx = SimpleNamespace(sample_crystals=samples, samples=[SimpleNamespace(valid=v) for v in valid], train=train,
                              profile=get_profile("cdvae"), options={"n_jobs": n_jobs, "backend": backend}, notes=[], per_structure={},
                              column=lambda name, values: ctx.per_structure.__setitem__(name, list(values)))
        kept = [c for c, v in zip(samples, valid) if v]
        u, n = _naive_flags(kept, train)
        assert nov.uniqueness(ctx)["uniqueness"].value == sum(u) / len(kept)
        assert nov.novelty(ctx)["novelty"].value == sum(n) / len(kept)
        assert [x for x in ctx.per_structure["novel"] if x is not None] == n and ctx.per_structure["novel"][3] is None
        assert [x for x in ctx.per_structure["unique"] if x is not None] == u


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


# ---------------------------------------------------------------------------- relaxations
def _diamond(a: float = 3.567, shift: float = 0.0) -> Crystal:
    lp = a / np.sqrt(2)
    return Crystal(np.array([6, 6]), np.array([[0.0, 0.0, 0.0], [0.25 + shift, 0.25, 0.25]]), np.array([lp] * 3), np.array([60.0] * 3))


def test_chgnet_relaxations_run_on_the_cluster_with_the_process_pool_results(cluster: Any) -> None:
    """In a scheduler session CHGNetOracle.relax sends each crystal to a Dask worker (one torch
    thread, like the loky workers of n_jobs > 1), so every crystal relaxes exactly as there."""
    pytest.importorskip("chgnet")
    from distributed.diagnostics.plugin import SchedulerPlugin

    from benchmark.metrics.oracles.base import RelaxSettings
    from benchmark.registry import get_plugins

    class Relaxed(SchedulerPlugin):
        keys: list[str] = []

        def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
            if finish == "memory" and "_relax_in_worker" in str(key):
                self.keys.append(str(key))

    oracle = get_plugins()["oracles"].get("chgnet")
    crystals = [_diamond(3.7), object(), _diamond(shift=0.02)]
    settings = RelaxSettings(fmax=0.05, steps=60)
    pool = oracle.relax(crystals, settings, progress=False, n_jobs=2)
    cluster.scheduler.add_plugin(Relaxed(), name="test-relaxed")
    try:
        with scheduler_session(cluster.scheduler_address):
            on_dask = oracle.relax(crystals, settings, progress=False, n_jobs=1)  # n_jobs does not keep it here
    finally:
        cluster.scheduler.remove_plugin(name="test-relaxed")
    assert Relaxed.keys, "no relaxation ran on the cluster"
    assert [r.reason for r in on_dask] == [r.reason for r in pool]
    assert on_dask[1].relaxed is None and "unreadable" in on_dask[1].reason
    for a, b in zip(pool, on_dask):
        if a.relaxed is not None:
            assert (a.steps, a.energy_initial, a.energy_final, a.volume_final) == (b.steps, b.energy_initial, b.energy_final, b.volume_final)
            assert np.array_equal(a.relaxed.frac_coords, b.relaxed.frac_coords)


def test_run_scores_on_the_scheduler_and_records_it(cluster: Any) -> None:
    """``run --scheduler``: RunOptions carries it to the scoring step; the stored record says where
    the scoring ran, and the numbers are those of a run without it."""
    from benchmark.tasks.runner import RunOptions, flat_metrics, run

    common = dict(model="replay", task="generation", dataset="toy", preset="smoke", progress=False, task_options={"n_samples": 32})
    plain = run(RunOptions(**common))
    on_dask = run(RunOptions(**common, scheduler=cluster.scheduler_address))
    assert "scheduler" not in plain
    assert on_dask["scheduler"]["address"] == cluster.scheduler_address and on_dask["scheduler"]["n_workers"] == 2
    assert flat_metrics(on_dask) == flat_metrics(plain)
