"""CHGNet as an oracle: energies per atom and relaxations (cell and positions).

CHGNet (Deng et al., Nature Machine Intelligence 5, 1031 (2023)) is a universal machine-learned
potential trained on the Materials Project trajectories; its weights ship inside the ``chgnet``
PyPI package, so this oracle works on any machine without a download.

Energies are batched through ``CHGNet.predict_structure``. Relaxations run one crystal at a time
through the shared ASE loop (:func:`benchmark.metrics.oracles.ase_relax.relax_atoms`) with the CHGNet
calculator: ``FrechetCellFilter`` (cell and positions; an external hydrostatic pressure through its
``scalar_pressure``) and the FIRE or BFGS optimiser, stopped at a force tolerance ``fmax`` (eV/Å,
stress included through the filter), a step cap, or a per-crystal wall-time limit. Every crystal
gets a :class:`Relaxation`, failed or not, with the reason.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar, Sequence

import numpy as np

from benchmark.metrics.oracles.ase_relax import EV_PER_A3_PER_GPA, ASECalculatorOracle, progress_bar
from benchmark.metrics.oracles.base import input_problem

__all__ = ["EV_PER_A3_PER_GPA", "CHGNetOracle"]


class CHGNetOracle(ASECalculatorOracle):
    """CHGNet energies per atom and relaxations.

    Attributes:
        name: ``"chgnet"``. property: ``"energy_per_atom"``. unit: ``"eV/atom"``.
        dataset: None (a universal potential). version: the CHGNet weights' version.

    ``relax`` with ``n_jobs`` > 1 uses worker processes with one torch thread each: CHGNet's small
    graphs use intra-op threads poorly (on 2 cores, one process with 2 threads was slower than one
    with 1 thread), so processes scale better.
    """

    name = "chgnet"
    transient: ClassVar[tuple[str, ...]] = ("_model",)

    def __init__(self, device: str = "cpu", model_version: str | None = None) -> None:
        super().__init__()
        self.device = device
        self.model_version = model_version
        self._model: Any = None

    @property
    def model(self) -> Any:
        if self._model is None:
            import contextlib
            import io

            from chgnet.model import CHGNet

            with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints its banner
                self._model = CHGNet.load(model_name=self.model_version or "0.3.0", use_device=self.device, verbose=False)
            self._model.eval()
        return self._model

    @property
    def version(self) -> str:
        return str(getattr(self.model, "version", None) or self.model_version or "0.3.0")

    def describe(self) -> str:
        return f"CHGNet {self.version}"

    def checkpoint(self) -> dict[str, Any] | None:
        """The weights file shipped in the chgnet package for this version (``pretrained/<version>/``),
        its SHA-256 and the package's version; None if the package keeps no such file."""
        version = self.model_version or "0.3.0"
        if _CHECKPOINT.get(version) is None:
            from importlib.metadata import version as package_version
            from pathlib import Path

            import chgnet

            from benchmark.files import sha256_file

            files = sorted((Path(chgnet.__file__).parent / "pretrained" / version).glob("*.pth.tar"))
            if not files:
                return None
            _CHECKPOINT[version] = {"name": files[0].name, "sha256": sha256_file(files[0]), "package": f"chgnet=={package_version('chgnet')}"}
        return dict(_CHECKPOINT[version])

    # ------------------------------------------------------------------ energies
    def predict(self, crystals: Sequence[Any], *, progress: bool = True, n_jobs: int | None = None, cache_key: str | None = None,
                batch_size: int = 32) -> list[float | None]:
        """CHGNet energy per atom (eV/atom) per crystal, in input order; None where the crystal
        cannot be given to the potential or the prediction is not finite. (Batched in this
        process: ``n_jobs`` and ``cache_key`` do not apply.)"""
        out: list[float | None] = [None] * len(crystals)
        ok = [k for k, c in enumerate(crystals) if input_problem(c) is None]
        bar = progress_bar(len(ok), "chgnet energies", progress)
        for start in range(0, len(ok), batch_size):
            idx = ok[start:start + batch_size]
            structs = [crystals[k].to_structure() for k in idx]
            try:
                preds = self._predict_structures(structs, batch_size)
            except Exception:  # one bad crystal must not lose the batch: retry one by one
                preds = []
                for s in structs:
                    try:
                        preds.extend(self._predict_structures([s], 1))
                    except Exception:
                        preds.append(None)
            for k, e in zip(idx, preds):
                out[k] = e if e is not None and math.isfinite(e) else None
            bar.update(len(idx))
        bar.close()
        return out

    def _predict_structures(self, structs: list[Any], batch_size: int) -> list[float | None]:
        import torch

        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            preds = self.model.predict_structure(structs, task="e", batch_size=batch_size)
        if isinstance(preds, dict):
            preds = [preds]
        return [float(np.asarray(p["e"]).reshape(-1)[0]) for p in preds]

    # ------------------------------------------------------------------ relaxations
    def make_calculator(self) -> Any:
        """CHGNet's ASE calculator around this oracle's (once loaded) model."""
        import contextlib
        import io

        from chgnet.model.dynamics import CHGNetCalculator

        with contextlib.redirect_stdout(io.StringIO()):  # "CHGNet will run on cpu" per calculator
            return CHGNetCalculator(model=self.model, use_device=self.device)

    def __repr__(self) -> str:
        return f"CHGNetOracle(device={self.device!r})"


#: weights version -> checkpoint() (hashing the 1.7 MB file once per process)
_CHECKPOINT: dict[str, dict[str, Any]] = {}
