"""What an oracle is: an independent model that scores crystals for the metrics, with declared
capabilities, the way models declare theirs.

* ``predict``: one property value per crystal (``property``, in ``unit``; a classifier's unit is
  ``probability``), None where the crystal cannot be scored (unreadable, not buildable, no graph),
  never an exception for one bad crystal;
* ``relax``: one :class:`Relaxation` per crystal (cell and positions relaxed with
  :class:`RelaxSettings`), failed ones with the reason.

An oracle plugin is a subclass of :class:`Oracle` returned by an entry of the
``benchmark_oracles`` hook; its factory may take ``oracle_dir`` (where its weights are).
:class:`benchmark.testing.OracleContract` checks one.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Sequence

import numpy as np

from benchmark.crystal import Crystal

PREDICT = "predict"
RELAX = "relax"
CAPABILITIES = (PREDICT, RELAX)


class NotAnOracle(TypeError):
    """A registered oracle that does not implement the :class:`Oracle` interface."""


@dataclass(frozen=True)
class RelaxSettings:
    """How a relaxation is run.

    Attributes:
        optimizer: ``FIRE`` or ``BFGS`` (ASE).
        fmax: force tolerance in eV/Å (for the cell, the filter's stress-derived generalised force).
        steps: step cap; a relaxation that reaches it is recorded as not converged.
        time_limit_s: wall-time limit per crystal; reaching it is a failure with that reason.
        pressure_gpa: external hydrostatic pressure in GPa (Carbon-24 was searched at 10 GPa).
        relax_cell: relax the cell as well as the positions.
    """

    optimizer: Literal["FIRE", "BFGS"] = "FIRE"
    fmax: float = 0.05
    steps: int = 500
    time_limit_s: float = 300.0
    pressure_gpa: float = 0.0
    relax_cell: bool = True


@dataclass
class Relaxation:
    """The outcome of relaxing one crystal.

    ``relaxed`` is None when the relaxation failed (``reason`` says why); a relaxation that hit the
    step cap keeps its last structure with ``converged=False`` and a reason.
    Energies are the oracle's energies per atom (eV/atom); volumes per atom in Å^3/atom.
    """

    relaxed: Crystal | None
    converged: bool
    reason: str
    steps: int = 0
    seconds: float = 0.0
    energy_initial: float | None = None
    energy_final: float | None = None
    volume_initial: float | None = None
    volume_final: float | None = None
    fmax_final: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.relaxed is not None and self.converged


def input_problem(crystal: Any, min_dist: float = 0.5) -> str | None:
    """Why a crystal cannot be given to a potential (None if it can): unreadable entries,
    non-finite or degenerate cells, and atoms closer than ``min_dist`` Å."""
    if not isinstance(crystal, Crystal):
        return f"unreadable: {getattr(crystal, 'reason', 'not a crystal')}"
    if crystal.num_atoms == 0:
        return "no atoms"
    if not (np.all(np.isfinite(crystal.frac_coords)) and np.all(np.isfinite(crystal.lengths)) and np.all(np.isfinite(crystal.angles))):
        return "non-finite coordinates or lattice"
    lattice = crystal.lattice_matrix
    volume = abs(float(np.linalg.det(lattice)))
    if not volume > 1e-3:
        return "degenerate cell (zero volume)"
    if crystal.num_atoms > 1:
        from pymatgen.core import Lattice

        d = Lattice(lattice).get_all_distances(crystal.frac_coords, crystal.frac_coords)
        np.fill_diagonal(d, np.inf)
        if float(d.min()) < min_dist:
            return f"overlapping atoms (closest pair {float(d.min()):.3f} Å < {min_dist} Å)"
    return None


class Oracle(abc.ABC):
    """Base class of every oracle (see the module doc).

    Attributes:
        name: registry name.
        property: what ``predict`` returns (``heat_ref``, ``band_gap``, ``energy_per_atom`` ...).
        unit: its unit (``eV/atom``...; ``probability`` for a classifier's class-1 probability).
        dataset: the data it was trained on (None: universal).
        capabilities: a subset of :data:`CAPABILITIES`.
    """

    name: str = ""
    property: str | None = None
    unit: str | None = None
    dataset: str | None = None
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        unknown = set(cls.capabilities) - set(CAPABILITIES)
        if unknown:
            raise TypeError(f"{cls.__name__} declares unknown oracle capabilities {sorted(unknown)}; valid: {CAPABILITIES}")

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities

    def describe(self) -> str:
        """The oracle as named in records and tables (with its weights' version where it has one)."""
        return self.name

    def checkpoint(self) -> dict[str, Any] | None:
        """The weights behind the numbers, for records and protocol fingerprints: ``name`` (the
        checkpoint file's name), ``sha256`` (of the file), ``package`` (``name==version`` of the
        package that runs it); None when the oracle has no single weights file."""
        return None

    def predict(self, crystals: Sequence[Any], *, progress: bool = True, n_jobs: int | None = None,
                cache_key: str | None = None) -> list[float | None]:
        """``property`` of each crystal, in order (None where it cannot be scored). ``n_jobs``:
        workers for featurisation; ``cache_key``: a stable name of this exact list of crystals
        (a dataset split), for oracles that cache their inputs' features."""
        raise NotImplementedError(f"oracle {self.name} does not predict a property")

    def problem(self, crystal: Any) -> str | None:
        """Why ``predict`` cannot score ``crystal`` (e.g. its featuriser's error), for the
        per-structure tables; None: it can, or the oracle cannot tell."""
        return None

    def relax(self, crystals: Sequence[Any], settings: RelaxSettings | None = None, *, progress: bool = True,
              n_jobs: int | None = 1) -> list[Relaxation]:
        """One :class:`Relaxation` per crystal, in order."""
        raise NotImplementedError(f"oracle {self.name} cannot relax crystals")

    def __repr__(self) -> str:
        return f"<oracle {self.name}>"


def check_oracle(obj: Any, name: str, capability: str | None = None) -> Oracle:
    """``obj`` as an :class:`Oracle` (else :class:`NotAnOracle`), with ``capability`` if given."""
    if not isinstance(obj, Oracle):
        raise NotAnOracle(f"oracle {name!r} is a {type(obj).__name__}, not a benchmark.metrics.oracles.base.Oracle")
    if capability is not None and not obj.supports(capability):
        raise NotAnOracle(f"oracle {name!r} cannot {capability} (its capabilities: {', '.join(sorted(obj.capabilities)) or 'none'})")
    return obj


__all__ = ["CAPABILITIES", "PREDICT", "RELAX", "NotAnOracle", "Oracle", "RelaxSettings", "Relaxation", "check_oracle", "input_problem"]
