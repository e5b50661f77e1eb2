"""ASE's effective-medium theory (EMT) calculator as an energy model, for tests and demonstrations.

EMT (K. W. Jacobsen, P. Stoltze and J. K. Nørskov, Surf. Sci. 366, 394 (1996)) as ASE implements it
(``ase.calculators.emt.EMT``) has parameters for the fcc metals Al, Cu, Ag, Au, Ni, Pd and Pt and,
less reliably, for H, C, N and O. It is fast, needs no weights and no torch, and has a well-defined
energy landscape, which makes it a stand-in for a universal potential in tests of the relaxation
and stability machinery. It is *not* a universal potential: its numbers say nothing about the
stability of real materials.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar

from benchmark.metrics.oracles.ase_relax import ASECalculatorOracle
from benchmark.metrics.oracles.base import input_problem

__all__ = ["EMTOracle", "emt_elements"]


def emt_elements() -> tuple[str, ...]:
    """The element symbols ASE's EMT has parameters for, in ASE's order."""
    from ase.calculators.emt import parameters

    return tuple(parameters)


class EMTOracle(ASECalculatorOracle):
    """ASE EMT energies per atom (eV/atom) and relaxations; a crystal with an element EMT has no
    parameters for is refused with that reason."""

    name = "emt"
    uses_torch: ClassVar[bool] = False

    def make_calculator(self) -> Any:
        from ase.calculators.emt import EMT

        return EMT()

    def describe(self) -> str:
        return "ASE EMT (for tests and demonstrations; not a universal potential)"

    def checkpoint(self) -> dict[str, Any]:
        """``EMT parameters``: the SHA-256 of ASE's parameter table (``ase.calculators.emt.parameters``
        as sorted, compact JSON) and the ASE version that ships it."""
        import ase
        from ase.calculators.emt import parameters

        table = json.dumps(parameters, sort_keys=True, separators=(",", ":")).encode()
        return {"name": "EMT parameters", "sha256": hashlib.sha256(table).hexdigest(), "package": f"ase=={ase.__version__}"}

    def problem(self, crystal: Any) -> str | None:
        problem = input_problem(crystal)
        if problem is not None:
            return problem
        from ase.data import chemical_symbols

        supported = set(emt_elements())
        missing = sorted({chemical_symbols[int(z)] for z in crystal.atomic_numbers} - supported)
        if missing:
            return f"EMT has no parameters for {', '.join(missing)} (it covers {', '.join(emt_elements())})"
        return None

    def __repr__(self) -> str:
        return "EMTOracle()"
