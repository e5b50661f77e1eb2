"""Speed of the property oracles on the CPU, in crystals per second.

Two parts of a CDVAE oracle's work are measured apart:

* **graphs**: the CrystalNN graphs (:func:`benchmark.nn.crystalnn.build_graphs`), nearly all of an oracle's time:
  ``serial`` (one process, its imports done before the clock runs), ``parallel`` (all cores,
  joblib/loky; the worker pool is started before the clock runs and its start-up recorded as
  ``pool_startup_s``), ``cold_cache`` (parallel,
  written to an empty graph cache) and ``warm_cache`` (read back, what every evaluation after the
  first one against the same reference split does);
* **forward**: the DimeNet++ model on already built graphs (``predict_graphs``), best of 3 rounds
  after a warm-up call, with the weights already loaded.

Each oracle runs on 64 crystals of its own dataset: the first rows of perov_5/test (cdvae-perov_5),
of carbon_24/test (cdvae-carbon_24) and of mp_20_sample (test, val, then train) for cdvae-mp_20.
Only those rows are parsed (a 64-row copy of the CSV), not the whole split. CHGNet's energies are
measured too when ``benchmark.metrics.oracles.chgnet`` and the ``chgnet`` package are there.

The perov_5 graph figures run by default (as plain tests while pytest-benchmark is disabled); the
rest is marked slow (the first model load alone takes 15-35 s; about two minutes in all on two cores):

    bash scripts/test.sh tests/benchmarks/test_oracle_speed.py -m "" --benchmark-enable -p no:cacheprovider

Every figure is in ``extra_info`` (``crystals_per_s``; ``speedup_vs_serial`` and
``speedup_vs_cold`` when the mode they compare with ran earlier in the same session). All graph
modes must give identical graphs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from benchmark.crystal import Crystal

N_CRYSTALS = 64
ORACLE_DIR = Path(os.environ.get("BENCHMARK_ORACLE_DIR") or Path(__file__).resolve().parents[3] / "shared" / "oracles")
#: dataset -> (its CDVAE oracle, the splits its first rows are taken from)
CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "perov_5": ("cdvae-perov_5", ("test",)),
    "carbon_24": ("cdvae-carbon_24", ("test",)),
    "mp_20_sample": ("cdvae-mp_20", ("test", "val", "train")),
}
GRAPH_MODES = ("serial", "parallel", "cold_cache", "warm_cache")
slow = pytest.mark.slow
DATASET_PARAMS = [
    pytest.param("perov_5"),
    pytest.param("carbon_24", marks=slow),
    pytest.param("mp_20_sample", marks=slow),
]

_CRYSTALS: dict[str, list[Crystal]] = {}
_GRAPHS: dict[tuple[str, str], list] = {}
_SECONDS: dict[tuple[str, str], float] = {}


def _crystals(dataset: str, data_dir: Path, tmp: Path) -> list[Crystal]:
    """The first ``N_CRYSTALS`` rows of the dataset's splits, parsed exactly as ``Dataset.load``
    parses them (``load_csv``), from a copy of only those rows."""
    if dataset not in _CRYSTALS:
        import pandas as pd

        from benchmark.datasets.base import load_csv
        from benchmark.registry import get_plugins

        ds = get_plugins()["datasets"].get(dataset)
        out: list[Crystal] = []
        for split in CASES[dataset][1]:
            path = data_dir / dataset / f"{split}.csv"
            if not path.is_file():
                pytest.skip(f"no {path}")
            if len(out) < N_CRYSTALS:
                head = tmp / f"{dataset}-{split}-head.csv"
                pd.read_csv(path, nrows=N_CRYSTALS - len(out)).to_csv(head, index=False)
                out.extend(load_csv(head, ds.properties, progress=False))
        _CRYSTALS[dataset] = out
    return _CRYSTALS[dataset]


def _timed(fn: Callable[[], Any], sink: list[float]) -> Callable[[], Any]:
    def run() -> Any:
        t = time.perf_counter()
        out = fn()
        sink.append(time.perf_counter() - t)
        return out

    return run


def _same_graphs(a: list, b: list) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if (x is None) != (y is None):
            return False
        if x is not None and (set(x) != set(y) or not all(np.array_equal(x[k], y[k]) and x[k].dtype == y[k].dtype for k in x)):
            return False
    return True


def _oracle(name: str) -> tuple[Any, float]:
    """The loaded oracle and the seconds its loading took (building DimeNet++'s basis included)."""
    from benchmark.metrics.oracles.cdvae import CDVAEPropertyOracle, OracleWeightsNotFound

    t = time.perf_counter()
    try:
        oracle = CDVAEPropertyOracle(name, oracle_dir=ORACLE_DIR if ORACLE_DIR.is_dir() else None).load()
    except OracleWeightsNotFound as exc:
        pytest.skip(str(exc).splitlines()[0])
    return oracle, time.perf_counter() - t


@pytest.mark.parametrize("mode", GRAPH_MODES)  # innermost: a dataset's modes run back to back
@pytest.mark.parametrize("dataset", DATASET_PARAMS)
@pytest.mark.data
def test_graph_building_speed(benchmark, shared_data: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
                              dataset: str, mode: str) -> None:
    from benchmark.nn.crystalnn import build_graphs, graph_cache

    crystals = _crystals(dataset, shared_data, tmp_path_factory.getbasetemp())
    n_jobs = 1 if mode == "serial" else (os.cpu_count() or 1)
    cache = tmp_path_factory.getbasetemp() / f"oracle-speed-cache-{dataset}"
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(cache))
    key = f"oracle-speed-{dataset}" if mode.endswith("_cache") else None
    info: dict[str, Any] = {"mode": mode, "n_crystals": len(crystals), "n_jobs": n_jobs, "cpu_count": os.cpu_count()}
    build_graphs(crystals[:1], n_jobs=1, progress=False)  # this process's first graph imports pymatgen's graph modules
    if n_jobs > 1:  # start the worker pool (and its imports) off the clock
        t = time.perf_counter()
        build_graphs(crystals[:4], n_jobs=n_jobs, chunk_size=2, progress=False)
        info["pool_startup_s"] = round(time.perf_counter() - t, 3)
    if mode == "cold_cache" and key is not None:
        graph_cache(key, crystals).path.unlink(missing_ok=True)
    if mode == "warm_cache" and key is not None and not graph_cache(key, crystals).path.is_file():
        build_graphs(crystals, n_jobs=n_jobs, cache_key=key, progress=False)  # fill it first, untimed

    seconds: list[float] = []
    benchmark.group = f"oracle graphs {dataset}"
    graphs = benchmark.pedantic(_timed(lambda: build_graphs(crystals, n_jobs=n_jobs, cache_key=key, progress=False), seconds), rounds=1, iterations=1)
    dt = min(seconds)
    _GRAPHS[(dataset, mode)], _SECONDS[(dataset, mode)] = graphs, dt
    info.update({"seconds": round(dt, 4), "crystals_per_s": round(len(crystals) / dt, 2), "n_graphs": sum(g is not None for g in graphs)})
    if mode != "serial" and (dataset, "serial") in _SECONDS:
        info["speedup_vs_serial"] = round(_SECONDS[(dataset, "serial")] / dt, 2)
    if mode == "warm_cache" and (dataset, "cold_cache") in _SECONDS:
        info["speedup_vs_cold"] = round(_SECONDS[(dataset, "cold_cache")] / dt, 1)
    benchmark.extra_info.update(info)
    print(f"\n{dataset} graphs {mode}: {info}")
    if key is not None:
        assert graph_cache(key, crystals).path.is_file()
    for other in GRAPH_MODES:  # identical graphs whatever the mode
        if other != mode and (dataset, other) in _GRAPHS:
            assert _same_graphs(_GRAPHS[(dataset, other)], graphs), f"{mode} and {other} graphs differ"


@pytest.mark.parametrize("dataset", list(CASES))
@pytest.mark.data
@slow  # the first model load takes 15-35 s (DimeNet++'s spherical basis is derived with sympy)
def test_oracle_forward_speed(benchmark, shared_data: Path, tmp_path_factory: pytest.TempPathFactory, dataset: str) -> None:
    import torch

    from benchmark.nn.crystalnn import build_graphs

    name = CASES[dataset][0]
    oracle, load_s = _oracle(name)
    crystals = _crystals(dataset, shared_data, tmp_path_factory.getbasetemp())
    graphs = next((_GRAPHS[(dataset, m)] for m in GRAPH_MODES if (dataset, m) in _GRAPHS), None)
    if graphs is None:
        graphs = build_graphs(crystals, progress=False)
    ok = [g for g in graphs if g is not None]
    oracle.predict_graphs(ok)  # warm-up: first-call allocations and the basis-function cache

    seconds: list[float] = []
    benchmark.group = "oracle forward (CPU)"
    preds = benchmark.pedantic(_timed(lambda: oracle.predict_graphs(ok), seconds), rounds=3, iterations=1)
    dt = min(seconds)
    assert len(preds) == len(ok) and all(np.isfinite(preds))
    info = {
        "oracle": name, "dataset": dataset, "n_crystals": len(ok), "n_atoms": int(sum(len(g["atom_types"]) for g in ok)),
        "n_edges": int(sum(g["edge_index"].shape[1] for g in ok)), "torch_threads": torch.get_num_threads(),
        "seconds": round(dt, 4), "crystals_per_s": round(len(ok) / dt, 1), "model_load_s": round(load_s, 2),
    }
    if (dataset, "serial") in _SECONDS:  # predict() on these crystals without a cache: graphs + forward
        info["end_to_end_serial_crystals_per_s"] = round(len(ok) / (_SECONDS[(dataset, "serial")] + dt), 2)
    if (dataset, "parallel") in _SECONDS:
        info["end_to_end_parallel_crystals_per_s"] = round(len(ok) / (_SECONDS[(dataset, "parallel")] + dt), 2)
    benchmark.extra_info.update(info)
    print(f"\n{name} forward: {info}")


@pytest.mark.parametrize("dataset", list(CASES))
@pytest.mark.data
@slow
def test_chgnet_energy_speed(benchmark, shared_data: Path, tmp_path_factory: pytest.TempPathFactory, dataset: str) -> None:
    """CHGNet energies per atom (its own graphs included), on the same crystals."""
    chgnet_oracle = pytest.importorskip("benchmark.metrics.oracles.chgnet", reason="no CHGNet oracle module")
    pytest.importorskip("chgnet", reason="the chgnet package is not installed")
    if not callable(getattr(getattr(chgnet_oracle, "CHGNetOracle", None), "predict", None)):
        pytest.skip("benchmark.metrics.oracles.chgnet has no CHGNetOracle.predict")
    oracle = chgnet_oracle.CHGNetOracle()
    crystals = _crystals(dataset, shared_data, tmp_path_factory.getbasetemp())
    t = time.perf_counter()
    oracle.predict(crystals[:2], progress=False)  # loads the weights; first-call warm-up
    load_s = time.perf_counter() - t

    seconds: list[float] = []
    benchmark.group = "chgnet energies (CPU)"
    preds = benchmark.pedantic(_timed(lambda: oracle.predict(crystals, progress=False), seconds), rounds=1, iterations=1)
    dt = min(seconds)
    assert len(preds) == len(crystals)
    info = {"oracle": "chgnet", "dataset": dataset, "n_crystals": len(crystals), "n_predicted": sum(p is not None for p in preds),
            "seconds": round(dt, 4), "crystals_per_s": round(len(crystals) / dt, 2), "load_and_warmup_s": round(load_s, 2)}
    benchmark.extra_info.update(info)
    print(f"\nchgnet energies: {info}")

