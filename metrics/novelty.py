"""Uniqueness and novelty (not in the CDVAE paper; as later papers define them).

* uniqueness: fraction of valid samples that match no earlier valid sample;
* novelty: fraction of valid samples that match no crystal of the training split.

"Match" is pymatgen's ``StructureMatcher`` with the profile's ``novelty_matcher`` tolerances
(recorded in the result), compared only within the same reduced formula (the matcher never
matches different compositions with its default species comparator, so this is exact, and fast).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from typing import Any


from benchmark.crystal import Crystal
from benchmark.metrics.base import EvalContext, MetricValue


def _formula_key(c: Crystal) -> tuple[tuple[int, int], ...]:
    from benchmark.metrics.smact_validity import reduced_composition

    elems, counts = reduced_composition(c.atomic_numbers)
    return tuple(zip(elems, counts))


def _matcher(tol: tuple[float, float, float]) -> Any:
    from pymatgen.analysis.structure_matcher import StructureMatcher

    stol, angle_tol, ltol = tol
    return StructureMatcher(stol=stol, angle_tol=angle_tol, ltol=ltol)


def _fits(matcher: Any, a: Any, b: Any) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(matcher.fit(a, b))
    except Exception:
        return False


def _valid_crystals(ctx: EvalContext) -> list[tuple[int, Crystal]]:
    return [(k, c) for k, (c, r) in enumerate(zip(ctx.sample_crystals, ctx.samples)) if r.valid and isinstance(c, Crystal)]


def uniqueness(ctx: EvalContext) -> dict[str, MetricValue]:
    items = _valid_crystals(ctx)
    if not items:
        return {}
    matcher = _matcher(ctx.profile.novelty_matcher)
    seen: dict[Any, list[Any]] = defaultdict(list)
    unique = [None] * len(ctx.samples)
    n_unique = 0
    for k, c in items:
        s = c.to_structure()
        bucket = seen[_formula_key(c)]
        dup = any(_fits(matcher, s, t) for t in bucket)
        if not dup:
            bucket.append(s)
            n_unique += 1
        unique[k] = not dup
    ctx.column("unique", unique)
    return {"uniqueness": MetricValue(n_unique / len(items), len(items))}


def novelty(ctx: EvalContext) -> dict[str, MetricValue]:
    if ctx.train is None:
        ctx.notes.append("novelty skipped: training split not available")
        return {}
    items = _valid_crystals(ctx)
    if not items:
        return {}
    matcher = _matcher(ctx.profile.novelty_matcher)
    train: dict[Any, list[Crystal]] = defaultdict(list)
    for c in ctx.train:
        train[_formula_key(c)].append(c)
    built: dict[int, Any] = {}
    novel = [None] * len(ctx.samples)
    n_novel = 0
    for k, c in items:
        s = c.to_structure()
        hit = False
        for t in train.get(_formula_key(c), []):
            ts = built.setdefault(id(t), t.to_structure())
            if _fits(matcher, s, ts):
                hit = True
                break
        novel[k] = not hit
        n_novel += not hit
    ctx.column("novel", novel)
    return {"novelty": MetricValue(n_novel / len(items), len(items))}


