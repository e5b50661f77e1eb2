"""The shipped model contract (benchmark.testing) applied to the example plugin's model, and the
failures it reports for broken models."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "example_plugin"
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

from benchmark_example_model.model import ExampleGaussianModel  # noqa: E402

from benchmark.testing import ModelContract, check_model, contract_crystals  # noqa: E402


class TestExampleGaussianContract(ModelContract):
    model_class = ExampleGaussianModel
    preset = "smoke"
    n_train = 16


class DeclaresReconstructOnly(ExampleGaussianModel):
    """Broken: declares reconstruct without implementing it."""

    name = "declares_reconstruct"
    capabilities = frozenset({"sample", "reconstruct"})


class ImplementsUndeclared(ExampleGaussianModel):
    """Broken: implements optimize without declaring it."""

    name = "implements_undeclared"

    def optimize(self, crystals, *, seed, device="cpu", steps=5000, lr=1e-3, n_decode=10):
        return [list(crystals)]


class Opaque:
    def __init__(self, payload):
        self.payload = payload


class PicklesCode(ExampleGaussianModel):
    """Broken: saves a pickled object."""

    name = "pickles_code"

    def save(self, path):
        torch.save({"model": Opaque(self.module.state_dict())}, path)

    @classmethod
    def load(cls, path, config=None):
        raise NotImplementedError


def test_contract_crystals_are_deterministic():
    a, b = contract_crystals(20), contract_crystals(20)
    assert [c.label for c in a] == [c.label for c in b]
    assert len({c.label for c in a}) == 20
    assert {c.num_atoms for c in a} == {5, 8}


def test_example_model_passes_check_model(tmp_path):
    assert check_model(ExampleGaussianModel, tmp_path) == []


def test_declared_capability_without_method_is_reported(tmp_path):
    failures = check_model(DeclaresReconstructOnly, tmp_path)
    assert len(failures) == 1, failures
    assert failures[0].startswith("capabilities:")
    assert "declares capability 'reconstruct' but does not override Model.reconstruct" in failures[0]


def test_undeclared_method_is_reported(tmp_path):
    failures = check_model(ImplementsUndeclared, tmp_path, checks=("capabilities",))
    assert failures == ["capabilities: overrides Model.optimize but does not declare capability 'optimize'"]


def test_pickled_checkpoint_is_reported(tmp_path):
    failures = check_model(PicklesCode, tmp_path, checks=("save_load",))
    assert len(failures) == 1, failures
    assert failures[0].startswith("save_load:") and "without pickled code" in failures[0]
