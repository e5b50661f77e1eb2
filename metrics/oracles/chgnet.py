"""CHGNet as an oracle: energies per atom and relaxations (cell and positions).

CHGNet (Deng et al., Nature Machine Intelligence 5, 1031 (2023)) is a universal machine-learned
potential trained on the Materials Project trajectories; its weights ship inside the ``chgnet``
PyPI package, so this oracle works on any machine without a download.

Energies are batched through ``CHGNet.predict_structure``. Relaxations run one crystal at a time
with ASE: the CHGNet calculator, ASE's ``FrechetCellFilter`` (cell and positions; an external
hydrostatic pressure through its ``scalar_pressure``) and the FIRE or BFGS optimiser, stopped at a
force tolerance ``fmax`` (eV/Å, stress included through the filter), a step cap, or a per-crystal
wall-time limit. Every crystal gets a :class:`Relaxation`, failed or not, with the reason.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from typing import Any, Sequence

import numpy as np

from benchmark.crystal import Crystal
from benchmark.metrics.oracles.base import PREDICT, RELAX, Oracle, Relaxation, RelaxSettings, input_problem

__all__ = ["CHGNetOracle"]

#: eV/Å^3 per GPa (1 GPa = 1e9 J/m^3; 1 eV = 1.602176634e-19 J; 1 Å^3 = 1e-30 m^3)
EV_PER_A3_PER_GPA = 1.0 / 160.21766208


class CHGNetOracle(Oracle):
    """CHGNet energies per atom and relaxations.

    Attributes:
        name: ``"chgnet"``. property: ``"energy_per_atom"``. unit: ``"eV/atom"``.
        dataset: None (a universal potential). version: the CHGNet weights' version.
    """

    name = "chgnet"
    unit = "eV/atom"
    dataset = None
    capabilities = frozenset({PREDICT, RELAX})

    def __init__(self, device: str = "cpu", model_version: str | None = None) -> None:
        self.property = "energy_per_atom"  # an instance attribute: as a class attribute it would shadow `property`
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
        bar = _bar(len(ok), "chgnet energies", progress)
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
    def relax(self, crystals: Sequence[Any], settings: RelaxSettings | None = None, *, progress: bool = True,
              n_jobs: int | None = 1) -> list[Relaxation]:
        """Relax every crystal (see module doc); one :class:`Relaxation` per input, in order.

        ``n_jobs`` > 1 relaxes in that many worker processes, each with one torch thread and its own
        copy of the model: CHGNet's small graphs use intra-op threads poorly (on 2 cores, one
        process with 2 threads was slower than one with 1 thread), so processes scale better.
        None: one process per core.

        Inside a ``--scheduler`` session (:func:`benchmark.scheduler.active`) the relaxations run on
        the Dask cluster's workers instead, whatever ``n_jobs``: the same function per crystal, so
        the same result per crystal (a crystal lost with a killed worker is relaxed again from its
        input, not resumed).
        """
        from benchmark.scheduler import active

        settings = settings or RelaxSettings()
        bar = _bar(len(crystals), f"chgnet relax ({settings.optimizer}, fmax {settings.fmax:g})", progress)
        on_dask = active() is not None and len(crystals) > 0
        n_jobs = -1 if on_dask else max(1, min(n_jobs or os.cpu_count() or 1, len(crystals)))
        out: list[Relaxation | None] = [None] * len(crystals)
        if n_jobs == 1:
            for k, c in enumerate(crystals):
                out[k] = self.relax_one(c, settings)
                bar.update(1)
        else:
            from joblib import Parallel, delayed, parallel_config

            # biggest first, so a large crystal does not start last and leave a core idle. On Dask the
            # crystal goes in a list: joblib's dask backend would scatter a bare (weak-referenceable)
            # Crystal to one worker ahead of time, and a worker killed then would take it with it
            order = sorted(range(len(crystals)), key=lambda k: -getattr(crystals[k], "num_atoms", 0))
            jobs = (delayed(_relax_in_worker)(k, [crystals[k]], settings, self.device, self.model_version) for k in order)
            # the backend through parallel_config, not Parallel(backend="dask"): joblib 1.6 hands the
            # string form a nesting_level that its dask backend passes on to the task as an argument
            with warnings.catch_warnings(), parallel_config(backend="dask" if on_dask else "loky"):
                # loky's notice that idle workers timed out and were restarted
                warnings.filterwarnings("ignore", message="A worker stopped while some jobs were given")
                for k, r in Parallel(n_jobs=n_jobs, return_as="generator_unordered")(jobs):
                    out[k] = r
                    bar.update(1)
        bar.close()
        return out  # type: ignore[return-value]

    def relax_one(self, crystal: Any, settings: RelaxSettings) -> Relaxation:
        problem = input_problem(crystal)
        if problem is not None:
            return Relaxation(None, False, problem)
        t0 = time.perf_counter()
        try:
            return self._relax(crystal, settings, t0)
        except Exception as exc:  # the potential or the optimiser failed on this crystal
            return Relaxation(None, False, f"relaxation failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                              seconds=time.perf_counter() - t0)

    def _relax(self, crystal: Crystal, s: RelaxSettings, t0: float) -> Relaxation:
        import contextlib
        import io

        from ase.filters import FrechetCellFilter
        from ase.optimize import BFGS, FIRE
        from chgnet.model.dynamics import CHGNetCalculator

        n = crystal.num_atoms
        atoms = crystal.to_atoms()
        with contextlib.redirect_stdout(io.StringIO()):  # "CHGNet will run on cpu" per calculator
            atoms.calc = CHGNetCalculator(model=self.model, use_device=self.device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            e0 = float(atoms.get_potential_energy()) / n
        v0 = float(atoms.get_volume()) / n
        target: Any = atoms
        if s.relax_cell:
            target = FrechetCellFilter(atoms, scalar_pressure=s.pressure_gpa * EV_PER_A3_PER_GPA)
        opt_cls = {"FIRE": FIRE, "BFGS": BFGS}[s.optimizer]
        opt = opt_cls(target, logfile=None)
        steps, converged, reason = 0, False, ""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for conv in opt.irun(fmax=s.fmax, steps=s.steps):
                if conv:
                    converged = True
                    break
                if time.perf_counter() - t0 > s.time_limit_s:
                    return Relaxation(None, False, f"time limit {s.time_limit_s:g} s reached after {opt.nsteps} steps",
                                      steps=opt.nsteps, seconds=time.perf_counter() - t0, energy_initial=e0, volume_initial=v0)
            steps = opt.nsteps
            forces = target.get_forces()
            fmax_final = float(np.sqrt((forces ** 2).sum(axis=1)).max()) if len(forces) else 0.0
            e1 = float(atoms.get_potential_energy()) / n
        if not converged:
            reason = f"not converged in {s.steps} steps (max force {fmax_final:.3g} eV/Å)"
        if not (math.isfinite(e1) and np.all(np.isfinite(atoms.get_positions())) and np.all(np.isfinite(atoms.cell.array))):
            return Relaxation(None, False, "relaxation diverged (non-finite energy or geometry)", steps=steps,
                              seconds=time.perf_counter() - t0, energy_initial=e0, volume_initial=v0)
        relaxed = Crystal.from_atoms(atoms, label=crystal.label)
        return Relaxation(relaxed, converged, reason, steps=steps, seconds=time.perf_counter() - t0, energy_initial=e0,
                          energy_final=e1, volume_initial=v0, volume_final=float(atoms.get_volume()) / n, fmax_final=fmax_final)

    def __repr__(self) -> str:
        return f"CHGNetOracle(device={self.device!r})"


_WORKER_ORACLE: CHGNetOracle | None = None
#: weights version -> checkpoint() (hashing the 1.7 MB file once per process)
_CHECKPOINT: dict[str, dict[str, Any]] = {}


def _relax_in_worker(k: int, crystal: list[Any], settings: RelaxSettings, device: str, model_version: str | None) -> tuple[int, Relaxation]:
    """One relaxation (``crystal``: a list of the one crystal) in a worker process (model loaded
    once per process, one torch thread)."""
    global _WORKER_ORACLE
    if _WORKER_ORACLE is None:
        import torch

        torch.set_num_threads(1)
        _WORKER_ORACLE = CHGNetOracle(device=device, model_version=model_version)
    return k, _WORKER_ORACLE.relax_one(crystal[0], settings)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, desc: str, progress: bool) -> Any:
    if not progress:
        return _NoBar()
    try:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, leave=False)
    except ImportError:  # pragma: no cover
        return _NoBar()
