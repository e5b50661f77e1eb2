"""Speed of the generation evaluation: the published loop vs ours single-process, parallel cold
and warm (cached reference).

"published" is the published evaluation's work done the way its per-crystal code does it, one
crystal after another in one process, nothing cached, matminer's site-by-site CrystalNN
fingerprints. "loop" is the same with the fast fingerprint backend (metrics/fast_fingerprint.py). "cold" featurises samples and the
reference split in parallel (all cores) and fills the reference cache; "warm" reuses it, which is
what every evaluation after the first one against the same split does.

Default run: the 69-row MP-20 sample (10 samples vs 10 references), a few seconds, timings only.
The published-size case (1,000 Perov-5 val crystals vs the 3,785-crystal test split, about ten
minutes in all) is marked slow:

    bash scripts/test.sh tests/benchmarks -m slow --benchmark-enable --benchmark-columns=min,rounds

All modes must give the same numbers (to 1e-9 relative: the two fingerprint backends agree to
~1e-12, which can move a mean in its last digits); the benchmark records each mode's figures in
``extra_info`` so that ratios come from one run on one machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmark.tasks.evaluation import EvaluateOptions, evaluate

CASES = {
    "mp_20_sample": dict(dataset="mp_20_sample", samples=("mp_20_sample", "val.csv"), limit=None),
    "perov_5_published": dict(dataset="perov_5", samples=("perov_5", "val.csv"), limit=1000),
}
MODES = ("published", "loop", "cold", "warm")
_RESULTS: dict[tuple[str, str], dict] = {}


def _run(case: str, mode: str, data: Path, cache: Path) -> dict:
    spec = CASES[case]
    os.environ["BENCHMARK_CACHE_DIR"] = str(cache)
    opts = EvaluateOptions(
        task="generation",
        dataset=spec["dataset"],
        samples=data.joinpath(*spec["samples"]),
        limit=spec["limit"],
        n_jobs=1 if mode in ("published", "loop") else None,
        use_cache=mode not in ("published", "loop"),
        fingerprint_backend="matminer" if mode == "published" else "fast",
        progress=False,
        store=False,
        metrics=["validity", "coverage", "property_statistics", "diversity"],
        oracle=None,  # the fingerprint path the figures in the README measure
    )
    return evaluate(opts).flat()


@pytest.mark.parametrize(
    "case",
    [
        "mp_20_sample",
        pytest.param("perov_5_published", marks=pytest.mark.slow),
    ],
)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.data
def test_generation_evaluation_speed(benchmark, shared_data: Path, tmp_path_factory: pytest.TempPathFactory, case: str, mode: str) -> None:
    # one cache per case: cold fills it, warm reads it; the loops never touch it
    cache = tmp_path_factory.getbasetemp() / f"speed-cache-{case}"
    if mode == "cold" and cache.exists():
        import shutil

        shutil.rmtree(cache)
    cache.mkdir(exist_ok=True)
    if mode == "warm" and (case, "cold") not in _RESULTS:
        _run(case, "cold", shared_data, cache)  # run on its own: fill the cache first
    benchmark.group = f"evaluate generation {case}"
    result = benchmark.pedantic(_run, args=(case, mode, shared_data, cache), rounds=1, iterations=1)
    _RESULTS[(case, mode)] = result
    benchmark.extra_info.update({"mode": mode, **{k: v for k, v in result.items() if v is not None}})
    # identical numbers whatever the mode
    for other in MODES:
        if (case, other) in _RESULTS and other != mode:
            theirs = _RESULTS[(case, other)]
            assert theirs.keys() == result.keys(), f"{mode} and {other} report different metrics"
            for key, value in result.items():
                if isinstance(value, float) and isinstance(theirs[key], float):
                    assert theirs[key] == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), f"{mode} and {other} disagree on {key}"
                else:
                    assert theirs[key] == value, f"{mode} and {other} disagree on {key}"
