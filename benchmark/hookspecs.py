"""The hooks a plugin implements (pluggy, the pytest way).

A plugin is a module or object with functions named like the specs below, decorated with
``benchmark.hookimpl``. Every hook is keyword-only and returns a list of *entries*: light
descriptors (name, one-line description, and a factory that imports the heavy code only when
called), so that ``python -m benchmark list`` never imports a torch model it does not run.

Third-party packages are found through the entry-point group ``crystal_gen_benchmark`` in their
``pyproject.toml``::

    [project.entry-points.crystal_gen_benchmark]
    my_model = "my_package.benchmark_plugin"

Set ``BENCHMARK_DISABLE_PLUGIN_AUTOLOAD=1`` to load only the built-in plugins, and block a single
plugin by its entry-point name with ``--block-plugin NAME`` (or ``BENCHMARK_BLOCK_PLUGINS=a,b``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

PROJECT = "crystal_gen_benchmark"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

if TYPE_CHECKING:  # pragma: no cover
    from benchmark.registry import Entry


@hookspec
def benchmark_datasets() -> "list[Entry]":
    """Datasets this plugin provides.

    Each entry's factory returns a :class:`benchmark.datasets.base.Dataset` (splits, property
    columns, a loader of :class:`benchmark.Crystal` lists).
    """


@hookspec
def benchmark_metrics() -> "list[Entry]":
    """Metrics this plugin provides.

    Each entry's factory returns a :class:`benchmark.metrics.base.Metric`: the task it scores, the
    keys it writes (the published evaluation's names where there is one), whether higher is better,
    and ``compute(context) -> dict``.
    """


@hookspec
def benchmark_tasks() -> "list[Entry]":
    """Tasks this plugin provides (generation, reconstruction, ...).

    Each entry's factory returns a :class:`benchmark.tasks.base.Task`.
    """


@hookspec
def benchmark_models() -> "list[Entry]":
    """Models this plugin provides. Each entry's factory returns the model class."""


@hookspec
def benchmark_oracles() -> "list[Entry]":
    """Independent property oracles this plugin provides. Each entry's factory returns an oracle."""


@hookspec
def benchmark_sample_formats() -> "list[Entry]":
    """Sample-file formats this plugin reads (and perhaps writes).

    Each entry's name is the format's name (what ``read_samples(fmt=...)`` takes and a run record
    stores) and its factory returns a :class:`benchmark.samples.SampleFormat`: a one-line
    description, the file suffixes it claims (``(".crystals.json",)``), an optional
    ``sniff(probe) -> Match`` that recognises its files by content, ``read(path, limit, batch_idx)
    -> ReadResult`` and an optional ``write(crystals, path) -> Path``. Once registered, the format
    is found by :func:`benchmark.samples.read_samples` when it sniffs a path, so ``evaluate`` and
    ``oracle predict`` read its files with no other change; a tie with another format's claim is an
    error naming both.
    """
