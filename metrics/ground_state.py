"""Ground-state performance (DP-CDVAE, Section V.C and Table III): how far generated crystals are
from the local energy minimum they relax to.

Each sample is relaxed (cell and positions) by an oracle that relaxes (CHGNet by default, where the
paper used DFT: the table names the potential). With the relaxed crystal as the base structure:

(keys: ``gs_match_rate``, ``gs_mean_rms``, ``gs_rms_dvolume_per_atom``, ``gs_rms_denergy_per_atom``)

* ``gs_match_rate``: fraction of the samples whose relaxed crystal matches the generated one under
  ``StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)`` (the reconstruction criteria); a sample
  whose relaxation failed does not match, so the denominator is every sample scored;
* ``gs_mean_rms``: mean over the matched pairs of the matcher's normalised RMS displacement
  ⟨δ_rms⟩ (``get_rms_dist(generated, relaxed)[0]``, already divided by (V/N)^(1/3));
* ``gs_rms_dvolume_per_atom``: sqrt(mean((V_gen/N - V_relaxed/N)^2)) in Å^3/atom, ΔV_rms;
* ``gs_de_rms``: sqrt(mean((E_gen/N - E_relaxed/N)^2)) in eV/atom (Table III prints meV/atom), ΔE_rms, both energies from the
  same potential (energies, not enthalpies, also when relaxed under pressure);

the last two over the relaxations that succeeded (converged, or stopped at the step cap when
``count_unconverged``). ΔE per sample is kept for the histogram (Fig. S2: bins of 64 meV/atom).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmark.metrics.base import EvalContext, MetricValue

#: Table III's matcher (the reconstruction criteria)
TOLERANCES = (0.5, 10.0, 0.3)
#: Fig. S2's bin width (meV/atom)
HIST_BIN_MEV = 64.0


def summarise(samples: Sequence[Any], relaxations: Sequence[Any], rms: Sequence[float | None], count_unconverged: bool = False) -> dict[str, Any]:
    """The four Table III numbers from relaxations and matcher distances (pure, for tests).

    Args:
        samples: the generated crystals (n).
        relaxations: one :class:`~benchmark.metrics.oracles.chgnet.Relaxation`-like object per sample
            (attributes ``relaxed``, ``converged``, ``energy_initial``, ``energy_final``,
            ``volume_initial``, ``volume_final``).
        rms: the matcher's normalised RMS per sample (None: not matched or not relaxed).
    """
    n = len(samples)
    used = [k for k, r in enumerate(relaxations) if r.relaxed is not None and (r.converged or count_unconverged)]
    matched = [k for k in used if rms[k] is not None]
    de = np.array([(relaxations[k].energy_initial - relaxations[k].energy_final) * 1000.0 for k in used], dtype=np.float64)
    dv = np.array([relaxations[k].volume_initial - relaxations[k].volume_final for k in used], dtype=np.float64)
    return {
        "n": n,
        "n_relaxed": len(used),
        "n_matched": len(matched),
        "match_rate": len(matched) / n if n else None,
        "rms_dist": float(np.mean([rms[k] for k in matched])) if matched else None,
        "dv_rms": float(np.sqrt(np.mean(dv ** 2))) if len(dv) else None,
        "de_rms": float(np.sqrt(np.mean(de ** 2))) if len(de) else None,
        "delta_e_mev": de,
    }


def histogram_bin_width(values: np.ndarray, bin_mev: float = HIST_BIN_MEV, min_bins: int = 8) -> float:
    """Fig. S2's 64 meV/atom bins when the values span at least ``min_bins`` of them; otherwise a
    finer width (64 / 2^k) so that a narrow distribution is not drawn as a single bar."""
    span = float(np.ptp(values)) if len(values) else 0.0
    width = bin_mev
    while width > bin_mev / 64 and span < min_bins * width:
        width /= 2.0
    return width


def histogram_png(delta_e_mev: np.ndarray, path: Path, title: str, bin_mev: float = HIST_BIN_MEV) -> Path:
    """Histogram of ΔE = E_generated - E_relaxed (meV/atom), bins of ``bin_mev`` as Fig. S2 (finer
    when the values are too narrow for them; the width is printed on the axis)."""
    from benchmark.metrics.plots import histogram_axes, save_histogram

    fig, ax = histogram_axes()
    values = np.asarray(delta_e_mev, dtype=np.float64)
    width = histogram_bin_width(values, bin_mev)
    if len(values):
        lo = math.floor(min(values.min(), 0.0) / width) * width
        hi = math.ceil(max(values.max(), width) / width) * width
        ax.hist(values, bins=np.arange(lo, hi + width / 2, width), color="#4472c4", edgecolor="white")
        rms = float(np.sqrt(np.mean(values ** 2)))
        ax.axvline(rms, color="#c00000", ls="--", lw=1, label=f"ΔE_rms = {rms:.1f} meV/atom (n = {len(values)})")
        ax.legend(frameon=False, fontsize=8)
    return save_histogram(fig, ax, path, title, f"ΔE = E(generated) − E(relaxed)  (meV/atom; bins of {width:g})")


def relaxer_from_options(options: dict[str, Any]) -> Any:
    """The relaxing oracle named in ``options["relaxer"]`` (default ``chgnet``); it must declare
    the ``relax`` capability."""
    from benchmark.metrics.oracles.base import RELAX, check_oracle
    from benchmark.registry import get_plugins

    name = options.get("relaxer") or "chgnet"
    return check_oracle(get_plugins()["oracles"].get(name), name, RELAX)


def ground_state(ctx: EvalContext) -> dict[str, MetricValue]:
    """Table III's metrics (see module doc); per-sample results go into the per-structure table."""
    from benchmark.metrics.oracles.base import RelaxSettings
    from benchmark.metrics.reconstruction import rms_distances
    from benchmark.samples import write_extxyz

    opts = ctx.options
    relaxer = opts.get("relaxer_object") or relaxer_from_options(opts)
    settings = opts.get("relax_settings") or RelaxSettings()
    crystals = list(ctx.sample_crystals)
    relaxations = relaxer.relax(crystals, settings, progress=opts.get("progress", True), n_jobs=opts.get("n_jobs"))
    # the reconstruction metric's matcher loop, with the relaxed crystal in the ground truth's place
    compared = [r.relaxed is not None and (r.converged or opts.get("count_unconverged", False)) for r in relaxations]
    rms = rms_distances(crystals, [r.relaxed for r in relaxations], compared, TOLERANCES,
                        n_jobs=opts.get("n_jobs"), backend=opts.get("backend", "loky"))
    s = summarise(crystals, relaxations, rms, opts.get("count_unconverged", False))

    potential = relaxer.describe()
    ctx.options["relaxer_name"] = relaxer.name
    ctx.options["potential"] = potential
    ctx.column("relax_status", ["converged" if r.converged else ("failed" if r.relaxed is None else "unconverged") for r in relaxations])
    ctx.column("relax_reason", [r.reason for r in relaxations])
    ctx.column("relax_steps", [r.steps for r in relaxations])
    ctx.column("relax_seconds", [round(r.seconds, 3) for r in relaxations])
    ctx.column("energy_generated", [r.energy_initial for r in relaxations])
    ctx.column("energy_relaxed", [r.energy_final for r in relaxations])
    ctx.column("delta_e_mev", [None if r.energy_final is None else (r.energy_initial - r.energy_final) * 1000.0 for r in relaxations])
    ctx.column("delta_v_per_atom", [None if r.volume_final is None else r.volume_initial - r.volume_final for r in relaxations])
    ctx.column("gs_matched", [x is not None for x in rms])
    ctx.column("gs_rms_dist", rms)
    ctx.cache["ground_state_delta_e_mev"] = s["delta_e_mev"]
    title = f"{ctx.dataset}: ΔE after relaxation with {potential} ({settings.optimizer}, fmax {settings.fmax:g} eV/Å, {settings.pressure_gpa:g} GPa)"
    writers = ctx.cache.setdefault("artifact_writers", {})
    writers["ground_state_delta_e.png"] = lambda path, de=s["delta_e_mev"], t=title: histogram_png(de, path, t)
    # the relaxed crystals in sample order (failed relaxations left out; their labels say which)
    writers["relaxed.extxyz"] = lambda path, cs=[r.relaxed for r in relaxations if r.relaxed is not None]: write_extxyz(cs, path)
    failed = len(crystals) - s["n_relaxed"]
    if failed:
        ctx.notes.append(f"ground state: {failed} of {len(crystals)} relaxations failed or did not converge (reasons in the per-structure table); counted as not matched")
    ctx.notes.append(f"ground state relaxed with {potential}: {settings.optimizer}, fmax {settings.fmax:g} eV/Å, at most {settings.steps} steps, "
                     f"{settings.pressure_gpa:g} GPa, {settings.time_limit_s:g} s per crystal; the paper relaxed with DFT (VASP, PBE)")
    return {
        "gs_match_rate": MetricValue(s["match_rate"], s["n"], oracle=potential),
        "gs_mean_rms": MetricValue(s["rms_dist"], s["n_matched"], oracle=potential),
        "gs_rms_dvolume_per_atom": MetricValue(s["dv_rms"], s["n_relaxed"], oracle=potential),
        # stored in eV/atom like the other energies (Table III prints meV/atom)
        "gs_rms_denergy_per_atom": MetricValue(None if s["de_rms"] is None else s["de_rms"] / 1000.0, s["n_relaxed"], oracle=potential),
    }
