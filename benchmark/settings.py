"""Where the project reads data from and writes results and caches to.

Every location has three sources, first match wins: an explicit argument (the CLI's ``--data-dir``,
``--runs-dir``), an environment variable, and a per-user default from platformdirs.

| what | argument | environment variable | default |
| --- | --- | --- | --- |
| datasets (CSV) | ``--data-dir`` | ``BENCHMARK_DATA_DIR`` | ``<user cache>/datasets`` |
| caches (parsed datasets, fingerprints) | | ``BENCHMARK_CACHE_DIR`` | ``<user cache>`` |
| run records | ``--runs-dir`` | ``BENCHMARK_RUNS_DIR`` | ``<user data>/runs`` |
| oracle files (property models, what they read) | ``--oracle-dir`` | ``BENCHMARK_ORACLE_DIR`` | ``<user cache>/oracles`` (``oracle fetch``) |

``BENCHMARK_OFFLINE=1`` forbids every network access (the tests set it).
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "crystal-gen-benchmark"


def _user_cache() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir(APP_NAME))


def _user_data() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME))


def cache_dir() -> Path:
    env = os.environ.get("BENCHMARK_CACHE_DIR")
    path = Path(env).expanduser() if env else _user_cache()
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dirs(explicit: str | os.PathLike[str] | None = None) -> list[Path]:
    """Data directories to search, in order: explicit, ``BENCHMARK_DATA_DIR``, the user cache."""
    out: list[Path] = []
    if explicit:
        out.append(Path(explicit).expanduser())
    env = os.environ.get("BENCHMARK_DATA_DIR")
    if env:
        out.append(Path(env).expanduser())
    out.append(download_dir())
    return out


def download_dir() -> Path:
    """Where official dataset files are downloaded to (inside the cache)."""
    return cache_dir() / "datasets"


def runs_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        path = Path(explicit).expanduser()
    elif os.environ.get("BENCHMARK_RUNS_DIR"):
        path = Path(os.environ["BENCHMARK_RUNS_DIR"]).expanduser()
    else:
        path = _user_data() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def oracle_cache_dir() -> Path:
    """``<cache>/oracles``: where ``oracle fetch`` stores the oracle files."""
    return cache_dir() / "oracles"


def oracle_dirs() -> list[Path]:
    """Directories holding oracle files, in the order they are searched: ``BENCHMARK_ORACLE_DIR``
    (which the CLI's ``--oracle-dir`` sets), then :func:`oracle_cache_dir`. Each holds one folder
    per set of files (e.g. ``con_cdvae_cgcnn/``)."""
    env = os.environ.get("BENCHMARK_ORACLE_DIR")
    return ([Path(env).expanduser()] if env else []) + [oracle_cache_dir()]


def env_flag(name: str) -> bool:
    """A boolean environment switch: 1/true/yes/on (any case) is on, anything else off."""
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def offline() -> bool:
    return env_flag("BENCHMARK_OFFLINE")
