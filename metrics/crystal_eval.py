"""Per-crystal evaluation: construction, validity and fingerprints, as the published ``Crystal``.

This mirrors CDVAE's ``scripts/eval_utils``/``compute_metrics.Crystal`` step for step:

1. construction: lattice from (lengths, angles) with ``Lattice.from_parameters``; a negative
   length, a build that raises, or a volume below 0.1 Å^3 means "not constructed";
2. composition: elements sorted by Z, counts divided by their gcd;
3. validity: SMACT (``smact_validity``) and structural (smallest distance between distinct sites
   >= 0.5 Å under the minimum-image convention, pymatgen's ``distance_matrix``; volume >= 0.1);
4. fingerprints, for every constructed crystal whatever its validity: Magpie ``ElementProperty``
   of the unreduced composition and the site-averaged ``CrystalNNFingerprint`` ("ops"); if the
   structure fingerprint raises, the crystal is invalid and has no fingerprints. The per-site
   "ops" fingerprints come from the fast backend (``metrics/fast_fingerprint.py``, equal to
   matminer's to ~1e-12) unless ``fp_backend="matminer"``; a crystal the fast backend cannot take is
   handed to matminer, and ``CrystalResult.fp_backend`` / ``fp_fallback`` say which ran and why.

Where the published code would crash a whole run (a build that raises, an unknown element, an
empty crystal) or silently call a NaN lattice valid, a reason is recorded for that crystal and the
crystal counts as invalid. Nothing here raises.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmark.crystal import Crystal
from benchmark.metrics.profiles import MetricProfile
from benchmark.metrics.smact_validity import UnknownElement, reduced_composition, smact_valid

EVAL_VERSION = 2  # bump when anything below changes a result, to invalidate fingerprint caches

# Guards for inputs on which CrystalNN runs for minutes or forever (a model that diverged). None
# of them is reached by a crystal the published protocol could call structurally valid with more
# than one atom, so published numbers on sane inputs are unchanged:
# * more than 12 atoms/Å^3: denser than any packing with all distances >= 0.5 Å (fcc of 0.5 Å
#   spheres has 11.3), so such a crystal has atoms too close; its neighbour search would visit
#   tens of thousands of periodic images. No fingerprint; the crystal stays in COV-P's denominator.
# * fractional coordinates beyond +-10: pymatgen's neighbour search loops over every image between
#   the sites (1e10 hangs in compiled code); the sites are wrapped into the cell for fingerprinting,
#   which describes the same periodic crystal.
# * a per-crystal time limit on fingerprinting (in the main thread of a process, where SIGALRM
#   can interrupt Python code).
MAX_ATOM_DENSITY = 12.0
FRACTIONAL_WRAP_LIMIT = 10.0
FINGERPRINT_TIME_LIMIT_S = 120.0

# Who computes the per-site CrystalNN "ops" fingerprints: "fast" (metrics/fast_fingerprint.py, with
# a per-crystal fallback to matminer) or "matminer" (the published code path). The numbers agree to
# ~1e-12, so EVAL_VERSION and the reference caches do not depend on the choice.
FINGERPRINT_BACKENDS = ("fast", "matminer")
DEFAULT_FINGERPRINT_BACKEND = "fast"

_FEATURIZERS: dict[tuple[str, str], tuple[Any, Any]] = {}


def featurizers(profile: MetricProfile) -> tuple[Any, Any]:
    """(CrystalNNFingerprint, ElementProperty) for the profile, built once per process."""
    key = (profile.structure_fingerprint, profile.composition_fingerprint)
    if key not in _FEATURIZERS:
        from matminer.featurizers.composition.composite import ElementProperty
        from matminer.featurizers.site.fingerprint import CrystalNNFingerprint

        _FEATURIZERS[key] = (
            CrystalNNFingerprint.from_preset(profile.structure_fingerprint),
            ElementProperty.from_preset(profile.composition_fingerprint),
        )
    return _FEATURIZERS[key]


@dataclass
class CrystalResult:
    """What the evaluation knows about one crystal.

    ``struct_fp`` (61,) and ``comp_fp`` (132,, unscaled) are None when not computed; ``reasons``
    lists why the crystal is not valid (empty when valid).
    """

    index: int
    label: str | None
    n_atoms: int
    formula: str
    constructed: bool
    comp_valid: bool
    struct_valid: bool
    valid: bool
    reasons: list[str] = field(default_factory=list)
    struct_fp: np.ndarray | None = None
    comp_fp: np.ndarray | None = None
    density: float | None = None
    n_elems: int | None = None
    min_dist: float | None = None
    volume: float | None = None
    fp_backend: str | None = None  # who computed struct_fp: "fast" or "matminer"
    fp_fallback: str | None = None  # why the fast backend handed this crystal to matminer

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def _formula(atomic_numbers: np.ndarray) -> str:
    from ase.data import chemical_symbols

    counts = Counter(int(z) for z in atomic_numbers)
    parts = []
    for z in sorted(counts):
        sym = chemical_symbols[z] if 0 < z < len(chemical_symbols) else f"Z{z}"
        parts.append(f"{sym}{counts[z] if counts[z] > 1 else ''}")
    return "".join(parts)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


def unreadable_result(index: int, label: str | None, reason: str) -> CrystalResult:
    return CrystalResult(index, label, 0, "", False, False, False, False, [f"unreadable: {reason}"])


def check_fingerprint_backend(backend: str) -> None:
    """Fail early on an unknown fingerprint backend."""
    if backend not in FINGERPRINT_BACKENDS:
        raise ValueError(f"unknown fingerprint backend {backend!r}; choose from {', '.join(FINGERPRINT_BACKENDS)}")


def evaluate_crystal(
    crystal: Crystal, profile: MetricProfile, index: int = 0, fingerprints: bool = True, fp_backend: str = DEFAULT_FINGERPRINT_BACKEND
) -> CrystalResult:
    """Validity and fingerprints of one crystal (see module doc). Never raises (except on an
    unknown ``fp_backend``, a programming error)."""
    check_fingerprint_backend(fp_backend)
    try:
        return _evaluate(crystal, profile, index, fingerprints, fp_backend)
    except Exception as exc:  # last line of defence: one crystal never ends a run
        return CrystalResult(index, crystal.label, crystal.num_atoms, "", False, False, False, False, [f"evaluation_failed: {_short(exc)}"])


def _evaluate(crystal: Crystal, profile: MetricProfile, index: int, fingerprints: bool, fp_backend: str) -> CrystalResult:
    z = crystal.atomic_numbers
    res = CrystalResult(index, crystal.label, int(len(z)), _formula(z), False, False, False, False)

    # ---- 1. construction (CDVAE Crystal.get_structure)
    structure = None
    lengths, angles = crystal.lengths, crystal.angles
    if len(z) == 0:
        res.reasons.append("no_atoms")
    elif not (np.all(np.isfinite(lengths)) and np.all(np.isfinite(angles)) and np.all(np.isfinite(crystal.frac_coords))):
        res.reasons.append("non_finite_lattice_or_coordinates")
    elif float(np.min(lengths)) <= 0:
        res.reasons.append("non_positive_lattice")
    else:
        try:
            structure = crystal.to_structure()
        except Exception as exc:
            res.reasons.append(f"construction_raises_exception: {_short(exc)}")
        if structure is not None:
            res.volume = float(structure.volume)
            if not structure.volume >= profile.min_volume:  # also catches NaN volume
                res.reasons.append("unrealistically_small_lattice")
                structure = None
    res.constructed = structure is not None

    # ---- 2./3. compositional validity (CDVAE smact_validity)
    try:
        elems, counts = reduced_composition(z)
        res.comp_valid = smact_valid(elems, counts, profile.smact_table)
        if not res.comp_valid:
            res.reasons.append("not_charge_balanced")
    except UnknownElement as exc:
        res.reasons.append(f"unknown_element: {exc}")

    # ---- 3. structural validity (CDVAE structure_validity)
    if structure is not None:
        if len(structure) > 1:
            dist = np.array(structure.distance_matrix, dtype=np.float64)
            np.fill_diagonal(dist, np.inf)
            res.min_dist = float(dist.min())
        res.struct_valid = (res.min_dist is None or res.min_dist >= profile.min_distance) and structure.volume >= profile.min_volume
        if not res.struct_valid:
            res.reasons.append(f"atoms_too_close: {res.min_dist:.3f} Å < {profile.min_distance} Å")
    res.valid = res.comp_valid and res.struct_valid

    # ---- 4. fingerprints, property statistics inputs
    if structure is not None:
        res.density = float(structure.density)
        res.n_elems = len(set(structure.species))
        if fingerprints:
            _fingerprint(structure, z, profile, res, fp_backend)
    elif fingerprints:
        res.valid = False
    return res


class _FingerprintTimeout(Exception):
    pass


def _fingerprint(structure: Any, z: np.ndarray, profile: MetricProfile, res: CrystalResult, backend: str = DEFAULT_FINGERPRINT_BACKEND) -> None:
    import signal
    import threading

    from pymatgen.core import Composition, Structure

    density = len(structure) / structure.volume
    if density > MAX_ATOM_DENSITY:
        res.valid = False
        res.reasons.append(f"fingerprint_skipped: {density:.1f} atoms/Å^3 > {MAX_ATOM_DENSITY} (atoms necessarily too close)")
        return
    frac = np.asarray(structure.frac_coords)
    if np.abs(frac).max() > FRACTIONAL_WRAP_LIMIT:
        structure = Structure(structure.lattice, structure.species, frac % 1.0)

    use_alarm = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    previous = None
    if use_alarm:

        def _on_alarm(signum: int, frame: Any) -> None:
            raise _FingerprintTimeout(f"fingerprint took longer than {FINGERPRINT_TIME_LIMIT_S:.0f} s")

        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, FINGERPRINT_TIME_LIMIT_S)
    site_fp, comp_fp = featurizers(profile)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            comp = Composition(Counter(int(x) for x in z))
            res.comp_fp = np.asarray(comp_fp.featurize(comp), dtype=np.float64)
            if profile.structure_fingerprint == "ops":
                from benchmark.metrics.fast_fingerprint import site_fingerprints

                # the time limit must stop the fast path too, not send the crystal on to matminer
                outcome = site_fingerprints(structure, backend, reraise=(_FingerprintTimeout,))
                sites = outcome.sites
                res.fp_backend, res.fp_fallback = outcome.backend, outcome.fallback_reason
            else:  # another preset: only matminer knows it
                sites = np.asarray([site_fp.featurize(structure, i) for i in range(len(structure))], dtype=np.float64)
                res.fp_backend = "matminer"
            res.struct_fp = np.asarray(sites, dtype=np.float64).mean(axis=0)
    except Exception as exc:
        # CDVAE: "counts crystal as invalid if fingerprint cannot be constructed"
        res.valid = False
        res.comp_fp = None
        res.struct_fp = None
        kind = "fingerprint_timeout" if isinstance(exc, _FingerprintTimeout) else "fingerprint_failed"
        res.reasons.append(f"{kind}: {_short(exc)}")
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
