"""Scaling of scoring on Dask (issue 17, part 4): featurisation and novelty throughput against the
number of workers (``--scheduler local:1`` and ``local:2``) and the number of crystals (1,000,
2,000, 4,000).

Samples: the first N crystals of Perov-5 val followed by test (7,572 in all); the training split
for novelty: perov_5_dev's train split (1,024 crystals of the official Perov-5 train split, the only
train rows of Perov-5 in the data directory). Each case runs once (rounds=1) inside a scheduler
session opened before the timing (cluster start-up and the workers' imports are not timed; a warm-up
featurises a few crystals on every worker first); ``extra_info`` records the throughput and, for
novelty, the same-formula (sample, training crystal) pairs, the matcher's real work.

    bash scripts/test.sh tests/benchmarks/test_scaling.py -m slow -p no:xdist --benchmark-enable \\
        --benchmark-min-rounds=1 --benchmark-columns=min,rounds --benchmark-json=scaling.json

The numbers must not depend on the worker count: each case checks its results against the other
worker count's for the same N when both have run.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Iterator

import pytest

from tests.conftest import data_dir

pytestmark = [pytest.mark.slow, pytest.mark.data]

SIZES = (1000, 2000, 4000)
WORKERS = (1, 2)
TOL = (0.5, 10.0, 0.3)  # the cdvae profile's novelty_matcher
_RESULTS: dict[tuple[str, int, int], Any] = {}


@pytest.fixture(scope="module")
def crystals() -> dict[str, list[Any]]:
    d = data_dir()
    if d is None:
        pytest.skip("no data directory: set BENCHMARK_DATA_DIR to the published CSVs")
    pytest.importorskip("distributed")
    from benchmark.registry import get_plugins

    ds = get_plugins()["datasets"]
    samples = list(ds.get("perov_5").load("val", str(d), progress=False)) + list(ds.get("perov_5").load("test", str(d), progress=False))
    train = list(ds.get("perov_5_dev").load("train", str(d), progress=False))
    return {"samples": samples[: max(SIZES)], "train": train}


@pytest.fixture(scope="module", params=WORKERS, ids=lambda n: f"local:{n}")
def session(request: pytest.FixtureRequest, crystals: dict[str, list[Any]]) -> Iterator[Any]:
    from benchmark.metrics.featurize import evaluate_entries
    from benchmark.metrics.profiles import get_profile
    from benchmark.scheduler import scheduler_session

    with scheduler_session(f"local:{request.param}") as info:
        # warm-up: every worker imports pymatgen, matminer and this package before the timing
        evaluate_entries(crystals["samples"][:64], get_profile("cdvae"), backend="dask", progress=False, chunk_size=4)
        yield info


def _same_formula_pairs(samples: list[Any], train: list[Any]) -> int:
    from benchmark.metrics.novelty import _formula_key

    per_formula = Counter(_formula_key(c) for c in train)
    return sum(per_formula.get(_formula_key(c), 0) for c in samples)


def _check_against_other_workers(kind: str, n: int, workers: int, result: Any) -> None:
    _RESULTS[(kind, n, workers)] = result
    for other in WORKERS:
        if other != workers and (kind, n, other) in _RESULTS:
            assert _RESULTS[(kind, n, other)] == result, f"{kind} of {n} crystals differs between {workers} and {other} workers"


@pytest.mark.parametrize("n", SIZES)
def test_featurisation_throughput(benchmark: Any, session: Any, crystals: dict[str, list[Any]], n: int) -> None:
    from benchmark.metrics.featurize import evaluate_entries
    from benchmark.metrics.profiles import get_profile

    samples = crystals["samples"][:n]
    benchmark.group = "featurise (Perov-5)"
    t0 = time.perf_counter()
    results = benchmark.pedantic(evaluate_entries, args=(samples, get_profile("cdvae")), kwargs={"backend": "dask", "progress": False},
                                 rounds=1, iterations=1)
    seconds = time.perf_counter() - t0
    assert len(results) == n
    benchmark.extra_info.update({"workers": session.n_workers, "crystals": n, "seconds": seconds, "crystals_per_s": n / seconds})
    fingerprints = [(r.valid, None if r.struct_fp is None else r.struct_fp.tobytes(), None if r.comp_fp is None else r.comp_fp.tobytes()) for r in results]
    _check_against_other_workers("featurise", n, session.n_workers, fingerprints)


@pytest.mark.parametrize("n", SIZES)
def test_novelty_throughput(benchmark: Any, session: Any, crystals: dict[str, list[Any]], n: int) -> None:
    from benchmark.metrics.novelty import novelty_flags

    samples, train = crystals["samples"][:n], crystals["train"]
    benchmark.group = "novelty (Perov-5 vs perov_5_dev train)"
    t0 = time.perf_counter()
    flags = benchmark.pedantic(novelty_flags, args=(samples, train, TOL), kwargs={"backend": "dask"}, rounds=1, iterations=1)
    seconds = time.perf_counter() - t0
    pairs = _same_formula_pairs(samples, train)
    benchmark.extra_info.update({"workers": session.n_workers, "crystals": n, "train": len(train), "seconds": seconds,
                                 "crystals_per_s": n / seconds, "same_formula_pairs": pairs, "all_pairs": n * len(train),
                                 "novel": sum(flags)})
    assert 0 < sum(flags) <= n
    _check_against_other_workers("novelty", n, session.n_workers, flags)
