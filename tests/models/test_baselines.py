"""Baseline models: replay (the ceiling) and random (the floor)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmark.crystal import Crystal
from benchmark.metrics.crystal_eval import evaluate_crystal
from benchmark.metrics.profiles import get_profile
from benchmark.models.base import SAMPLE, Model, ModelConfig
from benchmark.models.baselines.plugin import RandomModel, ReplayModel
from benchmark.registry import get_plugins


@pytest.fixture(scope="module")
def train() -> list[Crystal]:
    return get_plugins()["datasets"].get("toy").load("train", progress=False)


def _key(c: Crystal) -> tuple:
    return (c.atomic_numbers.tobytes(), c.frac_coords.tobytes(), c.lengths.tobytes(), c.angles.tobytes())


def _same(a: list[Crystal], b: list[Crystal]) -> bool:
    return [_key(c) for c in a] == [_key(c) for c in b]


def _valid_fraction(crystals: list[Crystal]) -> float:
    profile = get_profile("cdvae")
    return float(np.mean([evaluate_crystal(c, profile, fingerprints=False).valid for c in crystals]))


def test_registered_classes_and_configs() -> None:
    models = get_plugins()["models"]
    for name, cls in (("replay", ReplayModel), ("random", RandomModel)):
        assert models.get(name) is cls and issubclass(cls, Model)
        assert cls.name == name and cls.capabilities == frozenset({SAMPLE}) and cls.description
        assert issubclass(cls.Config, ModelConfig) and set(cls.Config.presets) == {"smoke", "paper"}
        with pytest.raises(Exception):
            cls.Config().x = 1  # type: ignore[attr-defined]
    assert ReplayModel.Config().max_stored is None


def test_replay(train: list[Crystal], tmp_path: Path) -> None:
    model = ReplayModel()
    summary = model.fit(train, [], tmp_path)
    assert summary["n_train"] == len(train)
    first = model.sample(50, seed=1)
    assert first.model_evaluations == 0 and len(first.crystals) == 50
    assert _same(first.crystals, model.sample(50, seed=1).crystals)
    assert not _same(first.crystals, model.sample(50, seed=2).crystals)
    known = {_key(c) for c in train}
    assert all(_key(c) in known for c in first.crystals)

    path = tmp_path / "replay.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as npz:
        assert int(npz["num_atoms"].sum()) == len(npz["atomic_numbers"])
    loaded = ReplayModel.load(path)
    assert _same(first.crystals, loaded.sample(50, seed=1).crystals)
    assert [c.label for c in first.crystals] == [c.label for c in loaded.sample(50, seed=1).crystals]


def test_replay_max_stored(train: list[Crystal], tmp_path: Path) -> None:
    model = ReplayModel(ReplayModel.Config(max_stored=10))
    assert model.fit(train, [], tmp_path)["n_stored"] == 10
    assert len({_key(c) for c in model.sample(200, seed=0).crystals}) <= 10
    model.save(tmp_path / "r.npz")
    assert ReplayModel.load(tmp_path / "r.npz").config == ReplayModel.Config(max_stored=10)


def test_random(train: list[Crystal], tmp_path: Path) -> None:
    model = RandomModel()
    model.fit(train, [], tmp_path)
    batch = model.sample(100, seed=3)
    assert batch.model_evaluations == 0 and len(batch.crystals) == 100
    counts = [c.num_atoms for c in train]
    elements = {int(z) for c in train for z in c.atomic_numbers}
    for c in batch.crystals:
        assert min(counts) <= c.num_atoms <= max(counts)
        assert set(c.atomic_numbers.tolist()) <= elements
        assert np.all(c.lengths > 0) and np.all((c.angles >= 60) & (c.angles <= 120))
        assert np.all((c.frac_coords >= 0) & (c.frac_coords < 1))
    assert _same(batch.crystals, model.sample(100, seed=3).crystals)
    assert not _same(batch.crystals, model.sample(100, seed=4).crystals)

    path = tmp_path / "random.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as npz:
        assert {"n_atoms_values", "element_probs", "length_mean", "angle_std"} <= set(npz.files)
    assert _same(batch.crystals, RandomModel.load(path).sample(100, seed=3).crystals)

    replay = ReplayModel()
    replay.fit(train, [], tmp_path)
    floor, ceiling = _valid_fraction(batch.crystals), _valid_fraction(replay.sample(100, seed=3).crystals)
    assert ceiling == 1.0 and floor < ceiling


def test_load_refuses_other_models_checkpoint(train: list[Crystal], tmp_path: Path) -> None:
    model = RandomModel()
    model.fit(train, [], tmp_path)
    model.save(tmp_path / "random.npz")
    with pytest.raises(ValueError, match="random"):
        ReplayModel.load(tmp_path / "random.npz")


def test_cli_lists_baselines(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "benchmark", "list", "models"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert "replay" in lines and "ceiling" in lines["replay"]
    assert "random" in lines and "floor" in lines["random"]
