"""crystal-gen-benchmark: a plugin-based benchmark harness for generative models of crystals.

The core lives here (CLI, plugin registry, crystals, sample files, results store, leaderboard).
The plugin folders ``models/``, ``tasks/``, ``metrics/`` and ``datasets/`` sit at the top of the
repository and are installed as ``benchmark.models`` and so on (see pyproject.toml).
"""

from __future__ import annotations

import os as _os

__version__ = "0.1.0"

# Running straight from a source checkout (``python -m benchmark`` in the repository root, with no
# install) finds this folder through the current directory; the plugin folders beside it are then
# not inside it. Adding the repository root to this package's search path maps them to
# ``benchmark.<folder>`` exactly as the installed package does. Installed copies never see a
# pyproject.toml beside the package, so this does nothing there.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_root, "pyproject.toml")) and _os.path.isdir(_os.path.join(_root, "metrics")):
    if _root not in __path__:
        __path__.append(_root)

from benchmark.crystal import Crystal  # noqa: E402

__all__ = ["Crystal", "__version__"]


def __getattr__(name: str):  # lazy re-exports for plugin authors
    if name == "hookimpl":
        from benchmark.hookspecs import hookimpl

        return hookimpl
    if name == "Entry":
        from benchmark.registry import Entry

        return Entry
    raise AttributeError(name)
