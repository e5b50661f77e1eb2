"""Shared fixtures. Tests never touch the network and never write outside tmp dirs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from benchmark.crystal import Crystal

os.environ.setdefault("BENCHMARK_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs and caches of every test go to temporary directories (the cache is shared per session
    so that reference fingerprints are computed once per test run)."""
    monkeypatch.setenv("BENCHMARK_OFFLINE", "1")
    if "BENCHMARK_CACHE_DIR" not in os.environ or not os.environ.get("BENCHMARK_KEEP_CACHE"):
        monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(_session_cache(tmp_path_factory)))
    monkeypatch.setenv("BENCHMARK_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))


_CACHE: list[Path] = []


def _session_cache(factory: pytest.TempPathFactory) -> Path:
    if not _CACHE:
        _CACHE.append(factory.mktemp("cache"))
    return _CACHE[0]


def _holds_csvs(d: Path) -> bool:
    """A data directory counts only when it holds a dataset CSV: an empty or unrelated directory
    (a fresh machine's placeholder) makes data tests skip rather than fail."""
    return d.is_dir() and any(d.glob("*/*.csv"))


def data_dir() -> Path | None:
    d = os.environ.get("BENCHMARK_DATA_DIR")
    if d and _holds_csvs(Path(d)):
        return Path(d)
    guess = REPO.parent / "shared" / "data"
    return guess if _holds_csvs(guess) else None


@pytest.fixture
def shared_data(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The data directory with the published CSVs; tests that need it are skipped without it."""
    d = data_dir()
    if d is None:
        pytest.skip("no data directory: set BENCHMARK_DATA_DIR to the published CSVs")
    monkeypatch.setenv("BENCHMARK_DATA_DIR", str(d))
    return d


def srtio3(a: float = 3.905, label: str = "SrTiO3") -> Crystal:
    """Cubic perovskite SrTiO3, 5 atoms."""
    return Crystal(
        [38, 22, 8, 8, 8],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
        [a, a, a],
        [90, 90, 90],
        label=label,
    )


def nacl(a: float = 5.64) -> Crystal:
    """Rock salt NaCl, conventional cell, 8 atoms."""
    na = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    cl = [[0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5], [0.5, 0.5, 0.5]]
    return Crystal([11] * 4 + [17] * 4, na + cl, [a, a, a], [90, 90, 90], label="NaCl")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
