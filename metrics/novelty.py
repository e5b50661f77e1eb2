"""Uniqueness and novelty (not in the CDVAE paper; as later papers define them).

* uniqueness: fraction of valid samples that match no earlier valid sample kept as unique (each
  sample is compared with the unique ones before it, in sample order);
* novelty: fraction of valid samples that match no crystal of the training split.

"Match" is pymatgen's ``StructureMatcher`` with the profile's ``novelty_matcher`` tolerances
(recorded in the result), compared only within the same reduced formula: the matcher never
matches different compositions with its default species comparator (``fit`` first compares the
reduced formulas), so this is exact, and it turns the all-pairs cost (samples x training crystals)
into the sum over formulas of (samples x training crystals of that formula). A sample whose
formula is not in the training split is novel without a single matcher call; a formula seen once
among the samples is unique without one.

The work splits into independent tasks, which is what makes it parallel and exactly equal to the
sequential result whatever the order the tasks finish in: novelty per sample is independent (a
formula's samples are cut into chunks, each with that formula's training crystals); uniqueness is
sequential within a formula bucket (it depends on the earlier samples of the bucket) and buckets
are independent. Tasks run through joblib: on the ``loky`` worker processes of ``--jobs`` (when the
work is big enough to pay for them), or on a Dask cluster (``--scheduler``, backend ``dask``).
"""

from __future__ import annotations

import os
import warnings
from collections import Counter, OrderedDict, defaultdict
from typing import Any, Callable, Sequence

from benchmark.crystal import Crystal
from benchmark.metrics.base import EvalContext, MetricValue

FormulaKey = tuple[tuple[int, int], ...]
Item = tuple[int, Crystal]  # (sample index, crystal)
Tolerances = tuple[float, float, float]

#: below this many matcher calls (an upper bound; novelty stops at the first match) the work stays
#: in this process without a scheduler: loky workers cost about a second to start and import pymatgen
MIN_PARALLEL_FITS = 2000
#: tasks per worker: enough to even out formula buckets of very different sizes
TASKS_PER_WORKER = 4
#: built pymatgen Structures uniqueness keeps per bucket (about 11 KB each for a 5-atom cell, ten
#: times the Crystal): a bucket's unique samples are kept as Crystals and rebuilt when evicted
STRUCTURE_CACHE = 2048


def _formula_key(c: Crystal) -> FormulaKey:
    from benchmark.metrics.smact_validity import reduced_composition

    elems, counts = reduced_composition(c.atomic_numbers)
    return tuple(zip(elems, counts))


def _matcher(tol: Tolerances) -> Any:
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


def _by_formula(items: Sequence[Item]) -> dict[FormulaKey, list[Item]]:
    """Items grouped by reduced formula, each group in input order."""
    out: dict[FormulaKey, list[Item]] = defaultdict(list)
    for k, c in items:
        out[_formula_key(c)].append((k, c))
    return out


# ------------------------------------------------------------------ the tasks (run in workers)
class _Structures:
    """Structures of crystals by position, built on demand, the ``size`` most recently used kept
    built (``Crystal.to_structure`` is deterministic: a rebuilt structure compares as the first did),
    so that tens of thousands of unique samples do not hold 11 KB of pymatgen objects each."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.built: OrderedDict[int, Any] = OrderedDict()

    def get(self, j: int, crystal: Crystal) -> Any:
        if j in self.built:
            self.built.move_to_end(j)
            return self.built[j]
        s = crystal.to_structure()
        self.put(j, s)
        return s

    def put(self, j: int, structure: Any) -> None:
        self.built[j] = structure
        if len(self.built) > self.size:
            self.built.popitem(last=False)


def _unique_in_bucket(matcher: Any, bucket: Sequence[Item]) -> list[tuple[int, bool]]:
    """One formula's samples in sample order: each is unique if it matches none of the unique ones before it."""
    kept: list[Crystal] = []  # the unique ones so far; their structures through a bounded cache
    structures = _Structures(STRUCTURE_CACHE)
    out = []
    for k, c in bucket:
        s = c.to_structure()
        dup = any(_fits(matcher, s, structures.get(j, t)) for j, t in enumerate(kept))
        if not dup:
            structures.put(len(kept), s)
            kept.append(c)
        out.append((k, not dup))
    return out


def _uniqueness_task(buckets: list[list[Item]], tol: Tolerances) -> list[tuple[int, bool]]:
    matcher = _matcher(tol)
    return [flag for bucket in buckets for flag in _unique_in_bucket(matcher, bucket)]


def _novelty_task(units: list[tuple[list[Item], list[Crystal]]], tol: Tolerances) -> list[tuple[int, bool]]:
    """Units of (samples of one formula, the training crystals of that formula): a sample is novel
    if it matches none of them. Training structures are built when first needed (most samples of a
    crowded formula match early)."""
    matcher = _matcher(tol)
    out = []
    for samples, train in units:
        built: list[Any] = []
        for k, c in samples:
            s = c.to_structure()
            hit = False
            for j, t in enumerate(train):
                if j == len(built):
                    built.append(t.to_structure())
                if _fits(matcher, s, built[j]):
                    hit = True
                    break
            out.append((k, not hit))
    return out


# ------------------------------------------------------------------ scheduling
def _workers(n_jobs: int | None, backend: str) -> int:
    if backend == "dask":
        from benchmark.scheduler import active

        info = active()
        return info.n_threads if info is not None else 8
    return n_jobs or os.cpu_count() or 1


def _pack(units: list[tuple[Any, int]], target: int) -> list[list[Any]]:
    """Units with their cost packed, in order, into tasks of at least ``target`` cost each (a unit
    is never split here); the tasks come back biggest first so that a large one does not start last."""
    tasks: list[tuple[int, list[Any]]] = []
    cur: list[Any] = []
    cost = 0
    for unit, c in units:
        cur.append(unit)
        cost += c
        if cost >= target:
            tasks.append((cost, cur))
            cur, cost = [], 0
    if cur:
        tasks.append((cost, cur))
    tasks.sort(key=lambda t: -t[0])
    return [t for _, t in tasks]


def _run(func: Callable[..., list[tuple[int, bool]]], tasks: list[list[Any]], tol: Tolerances, total_cost: int,
         n_jobs: int | None, backend: str) -> list[tuple[int, bool]]:
    """Run the tasks here or through joblib (``backend``); the flags of all tasks, in any order."""
    parallel = len(tasks) > 1 and backend != "sequential" and (
        backend == "dask" or (_workers(n_jobs, backend) > 1 and total_cost >= MIN_PARALLEL_FITS))
    if not parallel:
        return [flag for task in tasks for flag in func(task, tol)]
    from joblib import Parallel, delayed, parallel_config

    # the arguments are lists and tuples: joblib's dask backend does not scatter them to one worker
    # ahead of time (it scatters large weak-referenceable objects), so a worker lost mid-run loses
    # no data and its tasks are simply run again elsewhere
    with parallel_config(backend=backend, n_jobs=-1 if backend == "dask" else _workers(n_jobs, backend)):
        results = Parallel()(delayed(func)(task, tol) for task in tasks)
    return [flag for flags in results for flag in flags]


def uniqueness_flags(crystals: Sequence[Crystal], tol: Tolerances, *, n_jobs: int | None = 1, backend: str = "sequential") -> list[bool]:
    """Per crystal (in order): True if it matches none of the earlier crystals kept as unique.

    Buckets by reduced formula; a bucket of one is unique without a matcher call; the others are
    packed into tasks (see module doc). ``n_jobs``/``backend`` as for featurisation.
    """
    flags = [True] * len(crystals)
    buckets = [b for b in _by_formula(list(enumerate(crystals))).values() if len(b) > 1]
    units = [(b, len(b) * (len(b) - 1) // 2) for b in buckets]
    total = sum(c for _, c in units)
    target = max(1, total // (TASKS_PER_WORKER * _workers(n_jobs, backend)))
    for k, unique in _run(_uniqueness_task, _pack(units, target), tol, total, n_jobs, backend):
        flags[k] = unique
    return flags


def novelty_flags(crystals: Sequence[Crystal], train: Sequence[Crystal], tol: Tolerances, *, n_jobs: int | None = 1,
                  backend: str = "sequential") -> list[bool]:
    """Per crystal (in order): True if it matches no crystal of ``train``.

    A formula absent from ``train`` is novel without a matcher call; the other samples are cut
    into chunks per formula, each chunk with that formula's training crystals, and packed into
    tasks (see module doc). ``n_jobs``/``backend`` as for featurisation.
    """
    flags = [True] * len(crystals)
    train_by = _by_formula(list(enumerate(train)))
    pieces: list[tuple[list[Item], list[Crystal], int]] = []
    for key, samples in _by_formula(list(enumerate(crystals))).items():
        same = [c for _, c in train_by.get(key, [])]
        if same:
            pieces.append((samples, same, len(samples) * len(same)))
    total = sum(c for *_, c in pieces)
    target = max(1, total // (TASKS_PER_WORKER * _workers(n_jobs, backend)))
    units: list[tuple[Any, int]] = []
    for samples, same, _ in pieces:
        # a crowded formula is cut into chunks of samples of about the target cost each
        per = max(1, target // len(same))
        for i in range(0, len(samples), per):
            chunk = samples[i:i + per]
            units.append(((chunk, same), len(chunk) * len(same)))
    for k, novel in _run(_novelty_task, _pack(units, target), tol, total, n_jobs, backend):
        flags[k] = novel
    return flags


# ------------------------------------------------------------------ the metrics
def _valid_items(ctx: EvalContext, wanted: Callable[[FormulaKey], bool]) -> tuple[list[Item], list[int]]:
    """One pass over the valid samples: the indices of all of them, and ``(index, crystal)`` only
    for those whose reduced formula is ``wanted`` (the ones a matcher may have to compare). Only
    those crystals are held, so a streamed sample file of mostly novel, distinct formulas is not
    kept in memory (the others' flags are known without a matcher call)."""
    valid: list[int] = []
    items: list[Item] = []
    for k, (c, r) in enumerate(zip(ctx.sample_crystals, ctx.samples)):
        if r.valid and isinstance(c, Crystal):
            valid.append(k)
            if wanted(_formula_key(c)):
                items.append((k, c))
    return items, valid


def _parallelism(ctx: EvalContext) -> dict[str, Any]:
    return {"n_jobs": ctx.options.get("n_jobs"), "backend": str(ctx.options.get("backend") or "loky")}


def uniqueness(ctx: EvalContext) -> dict[str, MetricValue]:
    # first pass: how many valid samples share each formula (a formula seen once is unique)
    counts: Counter[FormulaKey] = Counter(_formula_key(c) for c, r in zip(ctx.sample_crystals, ctx.samples)
                                          if r.valid and isinstance(c, Crystal))
    items, valid = _valid_items(ctx, lambda key: counts[key] > 1)
    if not valid:
        return {}
    unique: list[bool | None] = [None] * len(ctx.samples)
    for k in valid:
        unique[k] = True
    flags = uniqueness_flags([c for _, c in items], ctx.profile.novelty_matcher, **_parallelism(ctx))
    for (k, _), f in zip(items, flags):
        unique[k] = f
    ctx.column("unique", unique)
    return {"uniqueness": MetricValue(sum(bool(unique[k]) for k in valid) / len(valid), len(valid))}


def novelty(ctx: EvalContext) -> dict[str, MetricValue]:
    if ctx.train is None:
        ctx.notes.append("novelty skipped: training split not available")
        return {}
    train = list(ctx.train)
    in_train = {_formula_key(c) for c in train}
    items, valid = _valid_items(ctx, lambda key: key in in_train)  # a formula absent from train is novel
    if not valid:
        return {}
    novel: list[bool | None] = [None] * len(ctx.samples)
    for k in valid:
        novel[k] = True
    flags = novelty_flags([c for _, c in items], train, ctx.profile.novelty_matcher, **_parallelism(ctx))
    for (k, _), f in zip(items, flags):
        novel[k] = f
    ctx.column("novel", novel)
    return {"novelty": MetricValue(sum(bool(novel[k]) for k in valid) / len(valid), len(valid))}
