"""Example third-party model plugin: registers ``example_gaussian`` through ``benchmark_models``.

This module is what the entry point names, so it is imported whenever the benchmark lists its
plugins: keep it light. The model (torch, Lightning) lives in :mod:`benchmark_example_model.model`
and is imported only when the registry's factory is called.
"""

from __future__ import annotations

from benchmark.hookspecs import hookimpl
from benchmark.registry import Entry

MODEL_NAME = "example_gaussian"
DESCRIPTION = "example plugin: learned Gaussian over scaled lattice parameters + categorical over elements (Lightning)"


def _model_class() -> type:
    from benchmark_example_model.model import ExampleGaussianModel

    return ExampleGaussianModel


@hookimpl
def benchmark_models() -> list[Entry]:
    return [Entry(MODEL_NAME, DESCRIPTION, _model_class)]
