"""Built-in metrics plugins."""

from __future__ import annotations

from benchmark.hookspecs import hookimpl
from benchmark.registry import Entry


@hookimpl
def benchmark_metrics() -> list[Entry]:
    return []
