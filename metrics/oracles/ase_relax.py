"""One relaxation loop for every energy model that is an ASE calculator, and the oracle base class
that runs it.

:func:`relax_atoms` relaxes one crystal with a given ASE calculator: ASE's ``FrechetCellFilter``
(cell and positions; an external hydrostatic pressure through its ``scalar_pressure``) or the
positions alone, the FIRE or BFGS optimiser, stopped at a force tolerance ``fmax`` (eV/Å, stress
included through the filter), a step cap, or a per-crystal wall-time limit; a non-finite energy or
geometry is a failure.

:class:`ASECalculatorOracle` is an oracle (``predict`` and ``relax``) built on one abstract method,
:meth:`~ASECalculatorOracle.make_calculator`. Its ``relax`` runs serially, in joblib (loky) worker
processes with one copy of the model each when ``n_jobs`` > 1, or on the Dask cluster of a
``--scheduler`` session. A third-party potential is a subclass registered through the
``benchmark_oracles`` hook.
"""

from __future__ import annotations

import abc
import hashlib
import math
import os
import pickle
import time
import warnings
from typing import Any, ClassVar, Sequence

import numpy as np

from benchmark.crystal import Crystal
from benchmark.metrics.oracles.base import PREDICT, RELAX, Oracle, Relaxation, RelaxSettings, input_problem

__all__ = ["EV_PER_A3_PER_GPA", "ASECalculatorOracle", "relax_atoms"]

#: eV/Å^3 per GPa (1 GPa = 1e9 J/m^3; 1 eV = 1.602176634e-19 J; 1 Å^3 = 1e-30 m^3)
EV_PER_A3_PER_GPA = 1.0 / 160.21766208


def relax_atoms(crystal: Crystal, calculator: Any, settings: RelaxSettings, t0: float) -> Relaxation:
    """Relax ``crystal`` with the ASE ``calculator`` under ``settings`` (see module doc).

    ``t0`` is the ``time.perf_counter()`` the relaxation's wall time counts from (the time limit
    included). Energies in the result are per atom (eV/atom), volumes per atom (Å^3/atom),
    ``fmax_final`` the largest force on the optimised object (eV/Å; the filter's generalised forces
    when the cell is relaxed). Exceptions of the calculator or optimiser propagate (the caller
    records them as the crystal's failure).
    """
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS, FIRE

    s = settings
    n = crystal.num_atoms
    atoms = crystal.to_atoms()
    atoms.calc = calculator
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


class ASECalculatorOracle(Oracle):
    """An energy model that is an ASE calculator: energies per atom and relaxations.

    Subclasses set ``name`` (and usually override ``describe`` and ``checkpoint``) and implement
    :meth:`make_calculator`. The oracle is pickled to worker processes (``relax`` with ``n_jobs`` >
    1, Dask workers): attributes named in ``transient`` (loaded weights, calculators) are dropped
    from the pickle and rebuilt lazily in the worker, once per process.

    Attributes:
        property: ``"energy_per_atom"``. unit: ``"eV/atom"``. dataset: None (a potential).
        transient: instance attributes left out of the pickle (reset to None in the copy).
        uses_torch: workers set torch to one intra-op thread before building the model (small
            atomistic graphs use threads poorly; processes scale better).
    """

    unit = "eV/atom"
    dataset = None
    capabilities = frozenset({PREDICT, RELAX})
    transient: ClassVar[tuple[str, ...]] = ()
    uses_torch: ClassVar[bool] = True

    def __init__(self) -> None:
        self.property = "energy_per_atom"  # an instance attribute: as a class attribute it would shadow `property`

    @abc.abstractmethod
    def make_calculator(self) -> Any:
        """An ASE calculator giving energies (eV), forces (eV/Å) and stress (eV/Å^3) for one
        crystal. Called once per crystal; a subclass whose calculator is costly to build returns
        one shared instance (an ASE calculator recomputes when its atoms change)."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for attr in self.transient:
            if attr in state:
                state[attr] = None
        return state

    # ------------------------------------------------------------------ energies
    def problem(self, crystal: Any) -> str | None:
        """Why the potential cannot take ``crystal`` (:func:`input_problem`), None if it can."""
        return input_problem(crystal)

    def predict(self, crystals: Sequence[Any], *, progress: bool = True, n_jobs: int | None = None,
                cache_key: str | None = None) -> list[float | None]:
        """Energy per atom (eV/atom) of each crystal as given, in input order; None where
        :meth:`problem` refuses the crystal, the calculator fails or the energy is not finite.
        (One process: ``n_jobs`` and ``cache_key`` do not apply.)"""
        out: list[float | None] = [None] * len(crystals)
        bar = progress_bar(len(crystals), f"{self.name} energies", progress)
        for k, c in enumerate(crystals):
            if self.problem(c) is None:
                try:
                    atoms = c.to_atoms()
                    atoms.calc = self.make_calculator()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        e = float(atoms.get_potential_energy()) / len(atoms)
                    out[k] = e if math.isfinite(e) else None
                except Exception:  # one crystal the potential cannot take: None, as documented
                    out[k] = None
            bar.update(1)
        bar.close()
        return out

    # ------------------------------------------------------------------ relaxations
    def relax(self, crystals: Sequence[Any], settings: RelaxSettings | None = None, *, progress: bool = True,
              n_jobs: int | None = 1) -> list[Relaxation]:
        """Relax every crystal with :func:`relax_atoms`; one :class:`Relaxation` per input, in order.

        ``n_jobs`` > 1 relaxes in that many worker processes, each with its own copy of the model
        (and one torch thread when ``uses_torch``). None: one process per core.

        Inside a ``--scheduler`` session (:func:`benchmark.scheduler.active`) the relaxations run on
        the Dask cluster's workers instead, whatever ``n_jobs``: the same function per crystal, so
        the same result per crystal (a crystal lost with a killed worker is relaxed again from its
        input, not resumed).
        """
        from benchmark.scheduler import active

        settings = settings or RelaxSettings()
        bar = progress_bar(len(crystals), f"{self.name} relax ({settings.optimizer}, fmax {settings.fmax:g})", progress)
        on_dask = active() is not None and len(crystals) > 0
        n_jobs = -1 if on_dask else max(1, min(n_jobs or os.cpu_count() or 1, len(crystals)))
        out: list[Relaxation | None] = [None] * len(crystals)
        if n_jobs == 1:
            for k, c in enumerate(crystals):
                out[k] = self.relax_one(c, settings)
                bar.update(1)
        else:
            from joblib import Parallel, delayed, parallel_config

            # the workers keep one oracle per process, found again by this key (the pickle without its transient state)
            key = hashlib.sha256(pickle.dumps(self)).hexdigest()
            # biggest first, so a large crystal does not start last and leave a core idle. On Dask the
            # crystal goes in a list: joblib's dask backend would scatter a bare (weak-referenceable)
            # Crystal to one worker ahead of time, and a worker killed then would take it with it
            order = sorted(range(len(crystals)), key=lambda k: -getattr(crystals[k], "num_atoms", 0))
            jobs = (delayed(_relax_in_worker)(k, [crystals[k]], settings, self, key) for k in order)
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
        """One crystal's :class:`Relaxation`: refused with :meth:`problem`'s reason, failed with
        the exception's type and first line, or the outcome of :func:`relax_atoms`."""
        problem = self.problem(crystal)
        if problem is not None:
            return Relaxation(None, False, problem)
        t0 = time.perf_counter()
        try:
            return relax_atoms(crystal, self.make_calculator(), settings, t0)
        except Exception as exc:  # the potential or the optimiser failed on this crystal
            return Relaxation(None, False, f"relaxation failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                              seconds=time.perf_counter() - t0)


#: the oracle a worker process relaxes with, and the key it was sent under
_WORKER_ORACLE: tuple[str, ASECalculatorOracle] | None = None


def _relax_in_worker(k: int, crystal: list[Any], settings: RelaxSettings, oracle: ASECalculatorOracle, key: str) -> tuple[int, Relaxation]:
    """One relaxation (``crystal``: a list of the one crystal) in a worker process; the oracle of
    ``key`` is kept for the process's later tasks, so its model is loaded once per process."""
    global _WORKER_ORACLE
    if _WORKER_ORACLE is None or _WORKER_ORACLE[0] != key:
        if oracle.uses_torch:
            import torch

            torch.set_num_threads(1)
        _WORKER_ORACLE = (key, oracle)
    return k, _WORKER_ORACLE[1].relax_one(crystal[0], settings)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, progress: bool) -> Any:
    """A tqdm bar of ``total`` steps (an inert one when ``progress`` is off or tqdm is missing)."""
    if not progress:
        return _NoBar()
    try:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, leave=False)
    except ImportError:  # pragma: no cover
        return _NoBar()
