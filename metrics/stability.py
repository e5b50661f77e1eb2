"""Stability: energy above the convex hull and the stable / unique / novel rates (issue 18).

Each valid sample (the validity metric's ``valid``: compositionally and structurally) is relaxed by
an energy model (an oracle with the ``relax`` capability, CHGNet by default; or, with
``energy_mode="single_point"``, evaluated as given), and its energy per atom is placed on a hull
whose every energy comes from the same model and settings:

* ``reference`` (default): the dataset's own crystals, every split at hand, plus elemental
  references (:func:`benchmark.metrics.reference_hull.reference_hull`);
* a file of pymatgen entries (:func:`benchmark.metrics.hull.read_entries_file`), with its SHA-256
  and the user's statement of its correction scheme; its elemental energies must be on the energy
  model's scale (:func:`benchmark.metrics.hull.check_energy_scale`).

E_hull = E(sample) - E(hull at the sample's composition), eV/atom (Bartel, J. Mater. Sci. 57, 10475
(2022), Eq. 1; negative: below the hull). With thresholds ``stable`` (0) and ``metastable`` (0.1):

(keys; every rate is a count over **all** samples scored, invalid ones included, as MatterGen's and
LeMat-GenBench's rates are over all generated structures)

* ``stable_rate`` / ``n_stable``: E_hull <= stable (within :data:`TOLERANCE`, 1e-4 eV/atom: float32 energies and relaxation ends);
* ``metastable_rate`` / ``n_metastable``: E_hull <= metastable (stable ones included);
* ``sun_rate`` / ``n_sun``: stable, unique and novel (MatterGen's S.U.N. at LeMat-GenBench's
  threshold 0); ``msun_rate`` / ``n_msun``: metastable, unique and novel (MatterGen's own S.U.N.
  threshold, LeMat-GenBench's M.S.U.N.). Unique and novel are this harness's uniqueness and novelty
  columns (StructureMatcher with the profile's tolerances, on the generated crystals as given;
  uniqueness against earlier unique samples, novelty against the training split);
* ``e_hull_mean`` / ``e_hull_median``: over the samples placed on the hull (eV/atom);
* ``hull_coverage``: the share of all samples placed on the hull. Per structure, ``hull_competitors``
  counts the hull's compounds in the sample's chemical space; a stable sample with none is stable
  against its elements only (a ``reference`` hull knows only the dataset's compounds), and the
  record and a note count them. A sample left out (invalid, a
  failed or unconverged relaxation, an element outside the hull's chemical space) has its reason
  in the per-structure table and never stops the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from benchmark.crystal import Crystal
from benchmark.metrics.base import EvalContext, MetricValue
from benchmark.metrics.hull import TOLERANCE
from benchmark.metrics.reference_hull import EnergySettings, composition, model_energies

#: E_hull thresholds (eV/atom): stable at or below 0 (LeMat-GenBench SUN, FlowMM), metastable at or
#: below 0.1 (MatterGen's S.U.N., LeMat-GenBench MSUN)
STABLE = 0.0
METASTABLE = 0.1
#: histogram bin width (eV/atom)
HIST_BIN = 0.025


@dataclass(frozen=True)
class HullSpec:
    """Where the hull comes from: ``reference`` (the dataset's splits at hand, or those in
    ``splits``) or the path of a pymatgen entries file with its correction scheme."""

    source: str = "reference"
    corrections: str = "as_given"
    splits: tuple[str, ...] | None = None

    @property
    def is_reference(self) -> bool:
        return self.source == "reference"


def fingerprint(fields: Mapping[str, Any]) -> str:
    """The protocol fingerprint: SHA-256 of the canonical JSON of its fields
    (:func:`benchmark.files.key_digest`, the recipe of ``benchmark.tasks.base.protocol_fingerprint``)."""
    from benchmark.files import key_digest

    return key_digest(fields)


def energy_model_from_options(options: Mapping[str, Any]) -> Any:
    """The energy model (an oracle that relaxes) named in ``options["energy_model"]`` (default
    ``chgnet``), built with ``options["oracle_dir"]`` (the CLI's ``--oracle-dir``) when one is given
    (every oracle factory takes ``oracle_dir``, see :mod:`benchmark.metrics.oracles.base`)."""
    from benchmark.metrics.oracles.base import RELAX, check_oracle
    from benchmark.registry import get_plugins

    name = options.get("energy_model") or "chgnet"
    oracle_dir = options.get("oracle_dir")
    if oracle_dir:
        return check_oracle(get_plugins()["oracles"].entry(name).factory(oracle_dir=oracle_dir), name, RELAX)
    return check_oracle(get_plugins()["oracles"].get(name), name, RELAX)


def classify(e_hull: float | None, stable: float = STABLE, metastable: float = METASTABLE) -> str | None:
    """``stable`` / ``metastable`` / ``unstable`` (None: not placed)."""
    if e_hull is None:
        return None
    return "stable" if e_hull <= stable + TOLERANCE else ("metastable" if e_hull <= metastable + TOLERANCE else "unstable")


def summarise(e_hull: Sequence[float | None], unique: Sequence[bool | None] | None, novel: Sequence[bool | None] | None,
              stable: float = STABLE, metastable: float = METASTABLE) -> dict[str, Any]:
    """The counts and rates from per-sample E_hull values (None: not placed) and unique / novel
    flags (None for a sample not judged; a missing list: S.U.N. not computed). Pure, for tests.

    Returns ``n``, ``n_placed``, ``n_stable``, ``n_metastable``, ``n_sun``, ``n_msun`` (None
    without flags), the rates over ``n``, ``mean`` and ``median`` over the placed samples, and per
    sample ``status`` (:func:`classify`) and the ``sun`` / ``msun`` flags (None without flags)."""
    n = len(e_hull)
    placed = np.array([e for e in e_hull if e is not None], dtype=np.float64)
    status = [classify(e, stable, metastable) for e in e_hull]
    is_stable = [st == "stable" for st in status]
    is_meta = [st in ("stable", "metastable") for st in status]
    out: dict[str, Any] = {"n": n, "n_placed": len(placed), "n_stable": sum(is_stable), "n_metastable": sum(is_meta), "status": status,
                           "mean": float(placed.mean()) if len(placed) else None, "median": float(np.median(placed)) if len(placed) else None}
    if unique is not None and novel is not None:
        un = [bool(u) and bool(v) for u, v in zip(unique, novel)]
        out["sun"] = [st and x for st, x in zip(is_stable, un)]
        out["msun"] = [m and x for m, x in zip(is_meta, un)]
        out["n_sun"], out["n_msun"] = sum(out["sun"]), sum(out["msun"])
    else:
        out["sun"] = out["msun"] = out["n_sun"] = out["n_msun"] = None
    for key in ("placed", "stable", "metastable", "sun", "msun"):
        count = out[f"n_{key}"]
        out[f"{key}_rate"] = None if count is None or not n else count / n
    return out


def histogram_png(values: Sequence[float], path: Path, title: str, stable: float = STABLE, metastable: float = METASTABLE,
                  bin_width: float = HIST_BIN) -> Path:
    """Histogram of E_hull (eV/atom) with the two thresholds drawn; values past 1 eV/atom are
    gathered in the last bin (labelled) so that a few wild samples do not flatten the rest."""
    from benchmark.metrics.plots import histogram_axes, save_histogram

    fig, ax = histogram_axes()
    v = np.asarray(values, dtype=np.float64)
    cap = 1.0
    if len(v):
        clipped = np.minimum(v, cap)
        lo = math.floor(min(float(clipped.min()), -bin_width) / bin_width) * bin_width
        hi = math.ceil(max(float(clipped.max()), metastable) / bin_width) * bin_width + bin_width
        ax.hist(clipped, bins=np.arange(lo, hi + bin_width / 2, bin_width), color="#4472c4", edgecolor="white")
        n_over = int((v > cap).sum())
        if n_over:
            ax.annotate(f"{n_over} above {cap:g}", xy=(cap, 0), xytext=(0, 12), textcoords="offset points", ha="right", fontsize=7)
    counts = summarise(list(v), None, None, stable, metastable)
    ax.axvline(stable, color="#00a000", ls="--", lw=1, label=f"stable ≤ {stable:g}: {counts['n_stable']} of {len(v)}")
    ax.axvline(metastable, color="#c07000", ls="--", lw=1, label=f"metastable ≤ {metastable:g}: {counts['n_metastable']} of {len(v)}")
    ax.legend(frameon=False, fontsize=8)
    return save_histogram(fig, ax, path, title, f"E above hull (eV/atom; bins of {bin_width:g})")


# ------------------------------------------------------------------ the hull
def reference_splits(dataset: Any, data_dir: str | None, splits: Sequence[str] | None = None) -> list[tuple[str, Path]]:
    """The dataset's splits at hand (files found without a download), or exactly ``splits``
    (each must be found)."""
    from benchmark.datasets.base import DatasetNotFound

    found = []
    for split in (splits or dataset.splits):
        try:
            found.append((split, dataset.file_path(split, data_dir, download=False)))
        except DatasetNotFound:
            if splits:
                raise
    if not found:
        raise DatasetNotFound(f"dataset {dataset.name!r}: no split at hand for the reference hull (point --data-dir at its CSVs)")
    return found


def build_hull(spec: HullSpec, model: Any, settings: EnergySettings, *, dataset: Any, data_dir: str | None, progress: bool = True,
               n_jobs: int | None = 1) -> tuple[Any, dict[str, Any]]:
    """The hull of ``spec`` and what the record says of it (``source``, ``hull`` with its hash, and
    for ``reference`` the splits with their SHA-256, the elemental references and what was left out;
    for a file its SHA-256, the correction scheme and the elemental energy differences)."""
    from benchmark.files import sha256_file
    from benchmark.metrics.hull import Hull, check_energy_scale, read_entries_file
    from benchmark.metrics.reference_hull import reference_hull

    if spec.is_reference:
        splits = reference_splits(dataset, data_dir, spec.splits)
        parts = []
        hashes = {}
        for split, path in splits:
            hashes[split] = sha256_file(path)
            # each split's energies cached on their own, keyed by the file's hash
            parts.append((dataset.load(split, data_dir, progress=progress), {"dataset": dataset.name, "split": split, "sha256": hashes[split]}))
        hull, info = reference_hull([], model, settings, name=f"reference:{dataset.name}", parts=parts, progress=progress, n_jobs=n_jobs)
        return hull, {"source": "reference", "dataset": dataset.name, "splits": hashes, **info}
    entries, digest = read_entries_file(spec.source, spec.corrections)
    hull = Hull(entries, name=Path(spec.source).name)
    # the model's own elemental references, to check the file's energies are on its scale
    from benchmark.metrics.elemental_refs import standard_candidates

    elements = sorted(hull.elements)
    candidates = [c for el in elements for c in standard_candidates(el)]
    refs: dict[str, float] = {}
    for c, e in zip(candidates, model_energies(candidates, model, settings, progress=progress, n_jobs=n_jobs)):
        if e.energy_per_atom is not None:
            el = next(iter(composition(c)))
            refs[el] = min(refs.get(el, math.inf), e.energy_per_atom)
    diffs = check_energy_scale(hull, refs)
    return hull, {"source": "file", "file": str(spec.source), "sha256": digest, "corrections": spec.corrections, "hull": hull.describe(),
                  "energy": {"model": model.describe(), **settings.as_dict()},
                  "elemental_differences": {k: round(v, 4) for k, v in sorted(diffs.items())}}


def _decomposition(fractions: Mapping[str, float]) -> str:
    return "; ".join(f"{label} {x:.3f}" for label, x in sorted(fractions.items(), key=lambda kv: -kv[1]))


# ------------------------------------------------------------------ the metric
def stability(ctx: EvalContext) -> dict[str, MetricValue]:
    """The stability keys (module doc); per-structure E_hull, flags and reasons, the relaxed
    crystals and a histogram go to the run's artifacts; the hull and protocol to the record."""
    from benchmark.metrics.hull import HullFileError
    from benchmark.samples import take_entries, write_extxyz

    opts = ctx.options
    model = opts.get("energy_model_object") or energy_model_from_options(opts)
    settings: EnergySettings = opts.get("energy_settings") or EnergySettings()
    spec: HullSpec = opts.get("hull_spec") or HullSpec()
    stable, metastable = float(opts.get("stable_threshold", STABLE)), float(opts.get("metastable_threshold", METASTABLE))
    progress, n_jobs = opts.get("progress", True), opts.get("n_jobs")
    if "hull_object" in opts:  # built by the task (an entries file) or by a caller
        hull, hull_info = opts["hull_object"], dict(opts.get("hull_info") or {"source": "given", "hull": opts["hull_object"].describe()})
    else:
        try:
            hull, hull_info = build_hull(spec, model, settings, dataset=opts["dataset_object"], data_dir=opts.get("data_dir"),
                                         progress=progress, n_jobs=n_jobs)
        except HullFileError as exc:
            ctx.notes.append(f"stability not computed: {exc}")
            return {}

    n = len(ctx.samples)
    reasons: list[str | None] = [None] * n
    for k, r in enumerate(ctx.samples):
        if not r.valid:
            reasons[k] = "invalid sample" + (f" ({'; '.join(r.reasons)})" if r.reasons else "")
    valid = [k for k in range(n) if reasons[k] is None]
    picked = take_entries(ctx.sample_crystals, valid)  # one pass over a streamed sample file
    crystals = [picked[k] for k in valid]
    energies = model_energies(crystals, model, settings, progress=progress, n_jobs=n_jobs)
    e_hull: list[float | None] = [None] * n
    energy: list[float | None] = [None] * n
    steps: list[int | None] = [None] * n
    decomposition: list[str | None] = [None] * n
    competitors: list[int | None] = [None] * n
    relaxed: list[Crystal] = []
    for k, c, e in zip(valid, crystals, energies):
        energy[k], steps[k] = e.energy_per_atom, (e.steps if settings.mode == "relax" else None)
        if e.relaxed is not None:
            relaxed.append(e.relaxed)
        if e.energy_per_atom is None:
            reasons[k] = f"no energy: {e.reason}"
            continue
        placed = hull.e_above_hull(composition(e.relaxed if e.relaxed is not None else c), e.energy_per_atom)
        if placed.e_above_hull is None:
            reasons[k] = f"not on the hull: {placed.reason}"
        else:
            e_hull[k] = placed.e_above_hull
            decomposition[k] = _decomposition(placed.decomposition)
            competitors[k] = hull.competitors(composition(e.relaxed if e.relaxed is not None else c))

    unique, novel = ctx.per_structure.get("unique"), ctx.per_structure.get("novel")
    if unique is None or novel is None:
        ctx.notes.append("stability: S.U.N. and M.S.U.N. not computed (" + ("uniqueness" if unique is None else "novelty") + " missing)")
        unique = novel = None
    s = summarise(e_hull, unique, novel, stable, metastable)
    status = s["status"]
    ctx.column("e_above_hull", e_hull)
    ctx.column("stability", status)
    ctx.column("stability_reason", reasons)
    ctx.column("energy_per_atom", energy)
    ctx.column("hull_decomposition", decomposition)
    ctx.column("hull_competitors", competitors)
    if settings.mode == "relax":
        ctx.column("relax_steps", steps)
    if s["sun"] is not None:
        ctx.column("sun", s["sun"])
        ctx.column("msun", s["msun"])

    left_out: dict[str, int] = {}
    for why in reasons:
        if why is not None:
            key = why.split(" (")[0]  # grouped without the per-crystal detail (which check, the final force)
            left_out[key] = left_out.get(key, 0) + 1
    # stable against the elements only: the hull holds no compound of the sample's chemical space
    alone = sum(1 for st, m in zip(status, competitors) if st == "stable" and m == 0)
    potential = model.describe()
    checkpoint = model.checkpoint() if hasattr(model, "checkpoint") else None
    fields = protocol_fields(model, checkpoint, settings, hull_info, stable, metastable)
    ctx.cache["stability_record"] = {
        "stability": {"energy_model": potential, "checkpoint": checkpoint, "energy": settings.as_dict(), "thresholds": {"stable": stable, "metastable": metastable},
                      "hull": hull_info, "n": n, "n_valid": len(valid), "n_placed": s["n_placed"], "left_out": dict(sorted(left_out.items(), key=lambda kv: -kv[1])),
                      "n_stable_without_competitors": alone},
        "protocol": {"fingerprint": fingerprint(fields), "fields": fields},
    }
    placed_values = [e for e in e_hull if e is not None]
    title = f"{ctx.dataset}: E above the {hull_info.get('hull', {}).get('name', 'hull')} hull, {potential} ({settings.mode})"
    writers = ctx.cache.setdefault("artifact_writers", {})
    writers["e_above_hull.png"] = lambda path, v=placed_values, t=title: histogram_png(v, path, t, stable, metastable)
    if relaxed:
        writers["relaxed.extxyz"] = lambda path, cs=relaxed: write_extxyz(cs, path)
    if left_out:
        ctx.notes.append(f"stability: {n - s['n_placed']} of {n} samples not placed on the hull ("
                         + "; ".join(f"{v} {k}" for k, v in sorted(left_out.items(), key=lambda kv: -kv[1])[:4]) + "); reasons per structure")
    if alone:
        ctx.notes.append(f"stability: {alone} of the {s['n_stable']} stable samples have no compound of their chemical space in the hull "
                         f"({hull.name}): they are below their elements, not below known phases (hull_competitors = 0 per structure)")
    ctx.notes.append(f"stability: {potential}, {settings.mode}" + (f" ({settings.relax.optimizer}, fmax {settings.relax.fmax:g} eV/Å, "
                     f"at most {settings.relax.steps} steps)" if settings.mode == "relax" else "") + f", hull {hull.name} ({len(hull)} entries, "
                     f"sha256 {hull.sha256[:12]}), stable <= {stable:g}, metastable <= {metastable:g} eV/atom")

    def value(key: str) -> MetricValue:
        return MetricValue(s[key], n, oracle=potential)

    out = {
        "stable_rate": value("stable_rate"), "metastable_rate": value("metastable_rate"),
        "n_stable": MetricValue(float(s["n_stable"]), n, oracle=potential), "n_metastable": MetricValue(float(s["n_metastable"]), n, oracle=potential),
        "e_hull_mean": MetricValue(s["mean"], s["n_placed"], oracle=potential), "e_hull_median": MetricValue(s["median"], s["n_placed"], oracle=potential),
        "hull_coverage": value("placed_rate"),
    }
    if s["n_sun"] is not None:
        out.update({"sun_rate": value("sun_rate"), "msun_rate": value("msun_rate"),
                    "n_sun": MetricValue(float(s["n_sun"]), n, oracle=potential), "n_msun": MetricValue(float(s["n_msun"]), n, oracle=potential)})
    return out


def protocol_fields(model: Any, checkpoint: Mapping[str, Any] | None, settings: EnergySettings, hull_info: Mapping[str, Any],
                    stable: float, metastable: float) -> dict[str, Any]:
    """What makes two stability numbers comparable: energy model and checkpoint hash, energy
    settings, hull source and hash, thresholds, and the versions of pymatgen and the potential's
    package (the protocol fingerprint is the SHA-256 of these fields)."""
    from benchmark.files import library_versions

    pmg = library_versions("pymatgen")["pymatgen"]
    hull = hull_info.get("hull") or {}
    return {
        "energy_model": model.describe(),
        "checkpoint_sha256": (checkpoint or {}).get("sha256"),
        "potential_package": (checkpoint or {}).get("package"),
        "energy": settings.as_dict(),
        "hull": hull.get("name"),
        "hull_sha256": hull.get("sha256"),
        "hull_corrections": hull_info.get("corrections"),
        "thresholds": [stable, metastable],
        "tolerance": TOLERANCE,
        "pymatgen": pmg,
    }
