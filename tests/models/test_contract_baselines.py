"""The built-in baselines pass the same contract tests that plugin authors run."""

from __future__ import annotations

from benchmark.models.baselines.plugin import RandomModel, ReplayModel
from benchmark.testing import ModelContract


class TestReplayContract(ModelContract):
    model_class = ReplayModel


class TestRandomContract(ModelContract):
    model_class = RandomModel
