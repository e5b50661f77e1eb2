"""MACE as an optional energy model, from a local model file only.

MACE (I. Batatia et al., "MACE: Higher Order Equivariant Message Passing Neural Networks for Fast
and Accurate Force Fields", NeurIPS 2022; the MACE-MP-0 foundation models, arXiv:2401.00096) runs
through the ``mace-torch`` package's ASE calculator, ``mace.calculators.MACECalculator``, on CPU in
float64. The package is optional (``pip install mace-torch``; not installed with the benchmark, and
not tested here beyond a stand-in module).

The model file is never downloaded: this oracle does not call ``mace_mp()``, which fetches the
foundation models by name. It reads, in this order,

1. the ``model_file`` argument;
2. ``<oracle_dir>/mace/*.model`` for an explicit ``oracle_dir`` (the CLI's ``--oracle-dir``);
3. the file named by the environment variable ``BENCHMARK_MACE_MODEL``;
4. ``mace/*.model`` in :func:`benchmark.settings.oracle_dirs` (``BENCHMARK_ORACLE_DIR``, then the
   user cache's ``oracles/``).

A folder with more than one ``.model`` file is refused (name one with ``BENCHMARK_MACE_MODEL``).
A ``.model`` file is a whole pickled torch module, so loading it runs code from the file: use files
from the MACE releases or your own training only.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, ClassVar

from benchmark.metrics.oracles.ase_relax import ASECalculatorOracle
from benchmark.metrics.oracles.cdvae import OracleWeightsNotFound

__all__ = ["MACE_DIRNAME", "MACE_MODEL_ENV", "MACEOracle", "find_mace_model"]

#: the folder of an oracle directory that holds the MACE model file
MACE_DIRNAME = "mace"
#: environment variable naming the MACE model file
MACE_MODEL_ENV = "BENCHMARK_MACE_MODEL"

_MISSING_PACKAGE = ("MACE needs the optional package mace-torch, which is not installed: pip install mace-torch "
                    "(optional; the benchmark does not install or require it)")
_WHERE = (f"put a MACE model file (e.g. the MACE-MP-0 medium model, 2023-12-03-mace-128-L1_epoch-199.model, from the "
          f"ACEsuit/mace-mp GitHub release) in <oracle dir>/{MACE_DIRNAME}/ (--oracle-dir or BENCHMARK_ORACLE_DIR) "
          f"or name it with {MACE_MODEL_ENV}; the benchmark never downloads it")


def find_mace_model(model_file: str | os.PathLike[str] | None = None, oracle_dir: str | os.PathLike[str] | None = None) -> Path:
    """The MACE model file, looked up as the module doc says; :class:`OracleWeightsNotFound` (an
    ``OSError``) with where to put it when there is none, or when a folder holds several."""
    if model_file is not None:
        path = Path(model_file).expanduser()
        if not path.is_file():
            raise OracleWeightsNotFound(f"MACE model file {str(path)!r} not found; {_WHERE}")
        return path
    folders: list[Path] = []
    if oracle_dir is not None:
        folders = [Path(oracle_dir).expanduser() / MACE_DIRNAME]
    else:
        env = os.environ.get(MACE_MODEL_ENV)
        if env:
            path = Path(env).expanduser()
            if not path.is_file():
                raise OracleWeightsNotFound(f"{MACE_MODEL_ENV}={env!r} is not a file; {_WHERE}")
            return path
        from benchmark import settings

        folders = [d / MACE_DIRNAME for d in settings.oracle_dirs()]
    for folder in folders:
        files = sorted(folder.glob("*.model")) if folder.is_dir() else []
        if len(files) > 1:
            raise OracleWeightsNotFound(f"{folder} holds {len(files)} MACE model files ({', '.join(f.name for f in files)}); "
                                        f"keep one there or name one with {MACE_MODEL_ENV}")
        if files:
            return files[0]
    raise OracleWeightsNotFound(f"no MACE model file (*.model) in {', '.join(str(f) for f in folders)}; {_WHERE}")


def _mace_calculator_class() -> Any:
    """``mace.calculators.MACECalculator``, or an ImportError saying the package is optional."""
    try:
        from mace.calculators import MACECalculator
    except ImportError as exc:
        raise ImportError(_MISSING_PACKAGE) from exc
    return MACECalculator


def _mace_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mace-torch")
    except PackageNotFoundError:  # an importable mace without distribution metadata (a source checkout)
        return str(getattr(sys.modules.get("mace"), "__version__", "unknown"))


class MACEOracle(ASECalculatorOracle):
    """MACE energies per atom (eV/atom) and relaxations from a local model file.

    Args:
        model_file: the ``.model`` file (default: looked up, see module doc).
        oracle_dir: an oracle directory holding ``mace/<name>.model``.
        device: torch device (``cpu``).

    Raises:
        ImportError: mace-torch is not installed.
        OracleWeightsNotFound: no model file (an ``OSError``).
    """

    name = "mace"
    transient: ClassVar[tuple[str, ...]] = ("_calculator",)

    def __init__(self, model_file: str | os.PathLike[str] | None = None, oracle_dir: str | os.PathLike[str] | None = None,
                 device: str = "cpu") -> None:
        super().__init__()
        _mace_calculator_class()  # a missing package fails now, before any crystal is read
        self.model_file = find_mace_model(model_file, oracle_dir)
        self.device = device
        self._calculator: Any = None
        self._checkpoint: dict[str, Any] | None = None

    def make_calculator(self) -> Any:
        """One ``MACECalculator`` on the model file, built once (loading the file is the costly
        part; the calculator recomputes for each new structure)."""
        if self._calculator is None:
            cls = _mace_calculator_class()
            self._calculator = cls(model_paths=str(self.model_file), device=self.device, default_dtype="float64")
        return self._calculator

    def describe(self) -> str:
        return f"MACE {self.model_file.name}"

    def checkpoint(self) -> dict[str, Any]:
        """The model file's name, its SHA-256 and ``mace-torch==<version>``."""
        if self._checkpoint is None:
            from benchmark.files import sha256_file

            self._checkpoint = {"name": self.model_file.name, "sha256": sha256_file(self.model_file), "package": f"mace-torch=={_mace_version()}"}
        return dict(self._checkpoint)

    def __repr__(self) -> str:
        return f"MACEOracle(model_file={str(self.model_file)!r}, device={self.device!r})"
