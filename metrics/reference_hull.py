"""The ``reference`` hull: a dataset's own crystals plus elemental references, every energy from
the same energy model and settings (issue 18, item 2; the offline default hull).

Energies come from an oracle with the ``relax`` capability (CHGNet by default), either after a
relaxation (cell and positions, :class:`~benchmark.metrics.oracles.base.RelaxSettings`) or as a
single point on the structure as given. Only converged relaxations give an energy; every crystal
left out has a reason. Per element, every candidate (the dataset's elemental crystals and
:func:`~benchmark.metrics.elemental_refs.standard_candidates`) goes into the hull, so the lowest
one is the element's reference; :func:`reference_hull` says which one each element got.

Energies of the dataset's crystals are cached (:class:`benchmark.files.ArrayCache`) under a key the
caller gives (the data files' hashes) plus the energy model's description and the settings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from benchmark.crystal import Crystal
from benchmark.metrics.elemental_refs import standard_candidates
from benchmark.metrics.hull import Hull, HullEntry
from benchmark.metrics.oracles.base import RelaxSettings

#: bump when how reference energies are computed changes (part of every cache key)
REFERENCE_VERSION = 1


@dataclass(frozen=True)
class EnergySettings:
    """How the energy model gives an energy: ``relax`` (relax, then the final energy) or
    ``single_point`` (the structure as given), with the relaxation's settings."""

    mode: Literal["relax", "single_point"] = "relax"
    relax: RelaxSettings = field(default_factory=RelaxSettings)

    def __post_init__(self) -> None:
        if self.mode not in ("relax", "single_point"):
            raise ValueError(f"energy mode {self.mode!r}: relax or single_point")

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "relax": dataclasses.asdict(self.relax) if self.mode == "relax" else None}


@dataclass(frozen=True)
class Energy:
    """One crystal's energy from the model: eV/atom (None with a reason when there is none), and
    the relaxed crystal (``relax`` mode)."""

    energy_per_atom: float | None
    reason: str | None = None
    relaxed: Crystal | None = None
    steps: int = 0


def model_energies(crystals: Sequence[Crystal], model: Any, settings: EnergySettings, *, progress: bool = True,
                   n_jobs: int | None = 1) -> list[Energy]:
    """The energy model's energy of each crystal, in order (see :class:`EnergySettings`)."""
    if settings.mode == "single_point":
        preds = model.predict(list(crystals), progress=progress)
        return [Energy(e, None if e is not None else "no finite energy from the model") for e in preds]
    out = []
    for r in model.relax(list(crystals), settings.relax, progress=progress, n_jobs=n_jobs):
        if r.relaxed is not None and r.converged and r.energy_final is not None and np.isfinite(r.energy_final):
            out.append(Energy(float(r.energy_final), None, r.relaxed, r.steps))
        else:
            out.append(Energy(None, r.reason or "relaxation failed", r.relaxed, r.steps))
    return out


def composition(c: Crystal) -> dict[str, float]:
    """Element symbol -> number of atoms in the cell."""
    from collections import Counter

    from ase.data import chemical_symbols

    return {chemical_symbols[int(z)]: float(n) for z, n in Counter(c.atomic_numbers.tolist()).items()}


def _cached_energies(crystals: Sequence[Crystal], model: Any, settings: EnergySettings, cache_key: Mapping[str, Any] | None,
                     progress: bool, n_jobs: int | None) -> tuple[list[Energy], bool]:
    """Energies of the dataset's crystals, from the cache when its key matches (no relaxed
    crystals then: the hull needs only the energies)."""
    from benchmark.files import ArrayCache

    cache = None
    if cache_key is not None:
        # the checkpoint's hash too: weights replaced under the same version name must not reuse old energies
        checkpoint = model.checkpoint() if hasattr(model, "checkpoint") else None
        key = {"data": dict(cache_key), "model": model.describe(), "checkpoint": (checkpoint or {}).get("sha256"), "settings": settings.as_dict(),
               "n": len(crystals), "version": REFERENCE_VERSION}
        cache = ArrayCache("hull_energies", key)
        arrays = cache.load()
        if arrays is not None and len(arrays.get("energy", ())) == len(crystals):
            return [Energy(None if np.isnan(e) else float(e), str(r) or None) for e, r in zip(arrays["energy"], arrays["reason"])], True
    energies = model_energies(crystals, model, settings, progress=progress, n_jobs=n_jobs)
    if cache is not None:
        cache.save({"energy": np.array([np.nan if e.energy_per_atom is None else e.energy_per_atom for e in energies], dtype=np.float64),
                    "reason": np.array([e.reason or "" for e in energies], dtype=str)})
    return energies, False


def reference_hull(crystals: Sequence[Crystal], model: Any, settings: EnergySettings | None = None, *, name: str = "reference",
                   cache_key: Mapping[str, Any] | None = None, parts: Sequence[tuple[Sequence[Crystal], Mapping[str, Any] | None]] | None = None,
                   progress: bool = True, n_jobs: int | None = 1) -> tuple[Hull, dict[str, Any]]:
    """The reference hull of ``crystals`` (a dataset's splits at hand) and what a record says of it.

    ``parts``: instead of ``crystals`` and ``cache_key``, several groups of crystals each cached
    under its own key (one per split file, so a hull over other splits reuses each split's
    energies).

    Returns ``(hull, info)``; ``info``: ``hull`` (:meth:`Hull.describe`), ``elemental_references``
    (element -> the winning candidate's label and its energy per atom), ``n_crystals`` and
    ``n_placed`` (crystals with an energy), ``left_out`` (reason -> count), ``cached``, and
    ``dataset_e_above_hull``: the distribution of the dataset's own crystals' E_hull against this
    hull (:func:`distribution`; a dataset of ground states sits on or near it).
    """
    settings = settings or EnergySettings()
    parts = list(parts) if parts is not None else [(crystals, cache_key)]
    crystals, energies, cached_all = [], [], True
    for part, key in parts:
        part_energies, cached = _cached_energies(part, model, settings, key, progress, n_jobs)
        crystals.extend(part)
        energies.extend(part_energies)
        cached_all = cached_all and cached
    entries: list[HullEntry] = []
    left_out: dict[str, int] = {}
    for k, (c, e) in enumerate(zip(crystals, energies)):
        if e.energy_per_atom is None:
            why = (e.reason or "no energy").split(" (")[0]  # grouped without the per-crystal detail (the final force)
            left_out[why] = left_out.get(why, 0) + 1
            continue
        entries.append(HullEntry(composition(c), e.energy_per_atom * c.num_atoms, f"dataset:{c.label if c.label is not None else k}"))
    n_dataset_entries = len(entries)
    elements = sorted({el for c in crystals for el in composition(c)})
    own = {el for el in elements if any(set(composition(c)) == {el} for c in crystals)}
    candidates = [c for el in elements for c in standard_candidates(el, have_dataset_crystal=el in own)]
    for c, e in zip(candidates, model_energies(candidates, model, settings, progress=progress, n_jobs=n_jobs)):
        if e.energy_per_atom is None:
            why = f"elemental candidate: {(e.reason or 'no energy').split(' (')[0]}"
            left_out[why] = left_out.get(why, 0) + 1
            continue
        entries.append(HullEntry(composition(c), e.energy_per_atom * c.num_atoms, f"standard:{c.label}"))
    hull = Hull(entries, name=name)
    refs = {}
    for el_obj, entry in hull.phase_diagram.el_refs.items():
        refs[el_obj.symbol] = {"label": hull.label_of(entry), "energy_per_atom": float(entry.energy_per_atom)}
    own_e_hull = [hull.e_above_hull(e.composition, e.energy_per_atom).e_above_hull for e in entries[:n_dataset_entries]]
    info = {"hull": hull.describe(), "energy": {"model": model.describe(), **settings.as_dict()}, "elemental_references": dict(sorted(refs.items())),
            "n_crystals": len(crystals), "n_placed": sum(e.energy_per_atom is not None for e in energies), "left_out": left_out, "cached": cached_all,
            "dataset_e_above_hull": distribution([v for v in own_e_hull if v is not None])}
    return hull, info


def distribution(values: Sequence[float]) -> dict[str, Any]:
    """Summary of E_hull values (eV/atom): count, the shares at or below 0, 0.025, 0.1 and 0.2
    eV/atom (within :data:`~benchmark.metrics.hull.TOLERANCE`), and the quantiles 10/25/50/75/90 %
    and the maximum."""
    from benchmark.metrics.hull import TOLERANCE

    v = np.asarray(values, dtype=np.float64)
    if not len(v):
        return {"n": 0}
    q = np.quantile(v, [0.1, 0.25, 0.5, 0.75, 0.9])
    return {"n": int(len(v)), **{f"share_le_{t:g}": float(np.mean(v <= t + TOLERANCE)) for t in (0.0, 0.025, 0.1, 0.2)},
            **{f"q{p}": round(float(x), 6) for p, x in zip((10, 25, 50, 75, 90), q)}, "max": round(float(v.max()), 6)}
