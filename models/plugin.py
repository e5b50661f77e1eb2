"""Built-in model plugins.

The model API and the baselines arrive with the model runner; until then no built-in model is
registered and ``python -m benchmark list models`` lists only third-party models.
"""

from __future__ import annotations

from benchmark.hookspecs import hookimpl
from benchmark.registry import Entry


@hookimpl
def benchmark_models() -> list[Entry]:
    return []
