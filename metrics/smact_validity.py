"""Compositional validity: SMACT charge neutrality as the CDVAE evaluation modified it.

The published check (CDVAE ``smact_validity``, Appendix D.2 of the paper):

1. the composition is the element list sorted by atomic number, counts divided by their gcd;
2. a single-element composition is valid; one made only of SMACT's ``metals`` is valid (alloys);
3. otherwise it is valid if some assignment of one oxidation state per element (the Cartesian
   product of each element's list) is charge neutral with these counts, ``sum(q_i n_i) == 0``, and
   passes the Pauling electronegativity test (cations less electronegative than anions).

Two tables are provided, named after what produced them:

``smact_2.2.1`` (the ``cdvae`` metric profile) reproduces SMACT 2.2.1, the version the published
numbers were computed with: its default oxidation states are the 2014 SMACT table, which current
SMACT exposes as ``Element.oxidation_states_smact14`` except for iridium (2.2.1 lists -2 where the
current table lists -3); its Pauling electronegativity of Zr is 0.33 (a typo fixed later to 1.33);
and its Pauling test compares ``None`` electronegativities (He, Ne, Ar, Pm, Rn, Lr) for a pair of opposite
charges, which raises TypeError in Python 3, which CDVAE catches and counts as a pass, while a pair
of like charges with a ``None`` reaches 2.2.1's third branch and fails. Those three differences were read
off the SMACT 2.2.1 release and are applied here as data, on top of the installed SMACT.

``smact_current`` (the ``modern`` profile) uses the installed SMACT as it is: its current default
oxidation states and its Pauling test, which fails on missing electronegativities.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache
from typing import Literal, Sequence

TableName = Literal["smact_2.2.1", "smact_current"]

# Differences between SMACT 2.2.1's data and the installed SMACT's smact14 data (see module doc).
_SMACT221_OXIDATION_OVERRIDES: dict[str, tuple[int, ...]] = {"Ir": (-2, -1, 1, 2, 3, 4, 5, 6, 7, 8)}
_SMACT221_ENEG_OVERRIDES: dict[str, float] = {"Zr": 0.33}


class UnknownElement(ValueError):
    """An atomic number with no SMACT data (0, or beyond the table)."""


def _symbol(z: int) -> str:
    from ase.data import chemical_symbols

    if not 1 <= z < len(chemical_symbols):
        raise UnknownElement(f"unknown element Z={z}")
    return chemical_symbols[z]


@lru_cache(maxsize=None)
def element_data(symbol: str, table: TableName) -> tuple[tuple[int, ...], float | None, bool]:
    """(oxidation states, Pauling electronegativity or None, is a SMACT metal) of an element."""
    import smact

    try:
        el = smact.Element(symbol)
    except Exception as exc:  # SMACT raises NameError/KeyError for elements it has no data for
        raise UnknownElement(f"no SMACT data for {symbol}") from exc
    if table == "smact_2.2.1":
        ox = _SMACT221_OXIDATION_OVERRIDES.get(symbol, tuple(getattr(el, "oxidation_states_smact14", None) or ()))
        eneg = _SMACT221_ENEG_OVERRIDES.get(symbol, el.pauling_eneg)
    elif table == "smact_current":
        ox = tuple(el.oxidation_states or ())
        eneg = el.pauling_eneg
    else:  # pragma: no cover - guarded by the Literal type
        raise ValueError(f"unknown SMACT table {table!r}")
    if eneg is not None and isinstance(eneg, float) and math.isnan(eneg):
        eneg = None
    return tuple(int(x) for x in ox), eneg, symbol in smact.metals


def _pauling_221(ox_states: Sequence[int], enegs: Sequence[float | None]) -> bool:
    """SMACT 2.2.1's ``eneg_states_test`` wrapped as CDVAE calls it.

    Pairs are visited in order; a comparison that reaches a ``None`` electronegativity raises
    TypeError in 2.2.1, and CDVAE's ``except TypeError`` then accepts the whole assignment; a pair
    of like charges with a ``None`` fails (2.2.1's third branch). The order of the short-circuiting
    conditions therefore matters and is kept.
    """
    for (ox1, en1), (ox2, en2) in itertools.combinations(list(zip(ox_states, enegs)), 2):
        try:
            if (ox1 > 0) and (ox2 < 0) and (en1 >= en2):  # type: ignore[operator]
                return False
            elif (ox1 < 0) and (ox2 > 0) and (en1 <= en2):  # type: ignore[operator]
                return False
            elif en1 is None or en2 is None:  # reached only by pairs of like (or zero) charge
                return False
        except TypeError:
            return True
    return True


def _pauling_current(ox_states: Sequence[int], enegs: Sequence[float | None]) -> bool:
    from smact.screening import pauling_test

    return bool(pauling_test(list(ox_states), list(enegs)))


def reduced_composition(atomic_numbers: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(elements sorted by Z, counts divided by their gcd), as CDVAE's ``Crystal.get_composition``."""
    from collections import Counter

    counter = Counter(int(z) for z in atomic_numbers)
    if not counter:
        return (), ()
    elems = tuple(sorted(counter))
    counts = [counter[z] for z in elems]
    g = math.gcd(*counts)
    return elems, tuple(c // g for c in counts)


def smact_valid(elements: Sequence[int], counts: Sequence[int], table: TableName = "smact_2.2.1", use_pauling_test: bool = True, include_alloys: bool = True) -> bool:
    """Whether a reduced composition passes the modified SMACT check (see module doc).

    Args:
        elements: atomic numbers, sorted, unique.
        counts: their counts divided by the gcd.
    Raises:
        UnknownElement: an element without SMACT data.
    """
    if len(elements) == 0:
        raise UnknownElement("empty composition")
    symbols = [_symbol(int(z)) for z in elements]
    data = [element_data(s, table) for s in symbols]
    if len(set(symbols)) == 1:
        return True
    if include_alloys and all(d[2] for d in data):
        return True
    ox_lists = [d[0] for d in data]
    enegs = [d[1] for d in data]
    pauling = _pauling_221 if table == "smact_2.2.1" else _pauling_current
    counts = [int(c) for c in counts]
    # neutral_ratios with stoichs=[(n_i,)] keeps a ratio iff it is neutral and its gcd is 1; the
    # counts are already gcd-reduced, so only neutrality remains to be checked.
    coprime = math.gcd(*counts) == 1
    for ox_states in itertools.product(*ox_lists):
        if coprime and sum(q * n for q, n in zip(ox_states, counts)) == 0:
            if not use_pauling_test or pauling(ox_states, enegs):
                return True
    return False
