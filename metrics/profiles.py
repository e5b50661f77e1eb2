"""Metric profiles: named, frozen sets of every choice that changes a number.

``cdvae`` is the published evaluation (Xie et al., ICLR 2022, ``scripts/compute_metrics.py``), with
the figures of ``data/cdvae_constants.json``. ``modern`` differs where the ecosystem has moved
on: the installed SMACT's current oxidation-state table and Pauling test; and it adds the
Kolmogorov-Smirnov distribution tests (``metrics/distribution.py``), which change no CDVAE number. A result record always
names its profile, and tables never mix profiles silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from benchmark.metrics.smact_validity import TableName


@lru_cache(maxsize=1)
def cdvae_constants() -> dict[str, Any]:
    text = resources.files("benchmark.metrics").joinpath("data/cdvae_constants.json").read_text()
    return json.loads(text)


@dataclass(frozen=True)
class MetricProfile:
    """Every setting of the evaluation protocol that changes a number.

    Attributes:
        name: profile name stored in every record.
        smact_table: oxidation-state table and Pauling semantics (see ``smact_validity``).
        min_distance: structural validity cutoff on the smallest interatomic distance (Å).
        min_volume: cells below this volume (Å^3) are not constructed / not valid.
        structure_fingerprint: matminer CrystalNNFingerprint preset.
        composition_fingerprint: matminer ElementProperty preset.
        n_property_samples: valid samples drawn for property statistics and diversity.
        matcher: StructureMatcher tolerances (stol, angle_tol, ltol) for reconstruction.
        novelty_matcher: StructureMatcher tolerances for uniqueness and novelty.
        cov_cutoffs: per protocol family, (structure, composition) fingerprint-distance cutoffs.
        sr_percentiles: per protocol family, 5th/10th/15th percentiles of the target property.
        distribution_tests: also compute the Kolmogorov-Smirnov statistics of lattice, space-group
            and atomic-number distributions against the reference (``metrics/distribution.py``;
            not part of the published CDVAE protocol, so off in ``cdvae``).
    """

    name: str
    description: str
    smact_table: TableName
    min_distance: float = 0.5
    min_volume: float = 0.1
    structure_fingerprint: str = "ops"
    composition_fingerprint: str = "magpie"
    n_property_samples: int = 1000
    matcher: tuple[float, float, float] = (0.5, 10.0, 0.3)
    novelty_matcher: tuple[float, float, float] = (0.5, 10.0, 0.3)
    cov_cutoffs: dict[str, tuple[float, float]] = field(default_factory=dict)
    sr_percentiles: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    distribution_tests: bool = False

    @property
    def comp_means(self) -> np.ndarray:
        return np.asarray(cdvae_constants()["comp_scaler_means"], dtype=np.float64)

    @property
    def comp_stds(self) -> np.ndarray:
        return np.asarray(cdvae_constants()["comp_scaler_stds"], dtype=np.float64)

    def scale_composition(self, fps: np.ndarray) -> np.ndarray:
        """CDVAE's ``CompScaler.transform``: (x - mean) / std, NaN -> 0. fps: (M, 132)."""
        x = np.asarray(fps, dtype=np.float64).reshape(-1, len(self.comp_means))
        with np.errstate(invalid="ignore", divide="ignore"):
            out = (x - self.comp_means) / self.comp_stds
        return np.where(np.isnan(out), 0.0, out)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "smact_table": self.smact_table,
            "min_distance": self.min_distance,
            "min_volume": self.min_volume,
            "structure_fingerprint": f"CrystalNNFingerprint.from_preset({self.structure_fingerprint!r}), mean over sites",
            "composition_fingerprint": f"ElementProperty.from_preset({self.composition_fingerprint!r}), CDVAE scaler",
            "n_property_samples": self.n_property_samples,
            "matcher": dict(zip(("stol", "angle_tol", "ltol"), self.matcher)),
            "novelty_matcher": dict(zip(("stol", "angle_tol", "ltol"), self.novelty_matcher)),
            "distribution_tests": self.distribution_tests,
        }


def _published_tables() -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float, float]]]:
    c = cdvae_constants()
    cov = {k: (float(v["struc"]), float(v["comp"])) for k, v in c["cov_cutoffs"].items()}
    sr = {k: tuple(float(x) for x in v) for k, v in c["sr_percentiles"].items()}
    return cov, sr  # type: ignore[return-value]


@lru_cache(maxsize=None)
def get_profile(name: str) -> MetricProfile:
    cov, sr = _published_tables()
    m = cdvae_constants()["structure_matcher"]
    matcher = (float(m["stol"]), float(m["angle_tol"]), float(m["ltol"]))
    profiles = {
        "cdvae": MetricProfile(
            name="cdvae",
            description="the published CDVAE evaluation: SMACT 2.2.1 table, CrystalNN 'ops' + Magpie fingerprints, CDVAE cutoffs",
            smact_table="smact_2.2.1",
            matcher=matcher,
            cov_cutoffs=cov,
            sr_percentiles=sr,
        ),
        "modern": MetricProfile(
            name="modern",
            description="as cdvae, but with the installed SMACT's current oxidation-state table and Pauling test, "
                        "plus KS statistics of lattice, space-group and atomic-number distributions",
            smact_table="smact_current",
            matcher=matcher,
            cov_cutoffs=cov,
            sr_percentiles=sr,
            distribution_tests=True,
        ),
    }
    if name not in profiles:
        raise KeyError(f"unknown metric profile {name!r}; profiles: {', '.join(sorted(profiles))}")
    return profiles[name]


PROFILE_NAMES = ("cdvae", "modern")
