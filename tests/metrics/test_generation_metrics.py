"""Coverage, property statistics, diversity, reconstruction and SR on hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from benchmark.metrics.base import EvalContext
from benchmark.metrics.crystal_eval import CrystalResult
from benchmark.metrics.generation import coverage, diversity, property_sample, property_statistics, validity
from benchmark.metrics.optimization import success_rates
from benchmark.metrics.profiles import get_profile

P = get_profile("cdvae")
MEANS, STDS = P.comp_means, P.comp_stds


def result(k: int, s: float | None, c: float | None, valid: bool = True, density: float = 1.0, n_elems: int = 2) -> CrystalResult:
    """A crystal whose structure fingerprint is s * e_0 and whose *scaled* composition fingerprint is c * e_0."""
    r = CrystalResult(k, str(k), 5, "X", True, valid, True, valid, density=density, n_elems=n_elems)
    if s is not None and c is not None:
        r.struct_fp = np.zeros(61)
        r.struct_fp[0] = s
        comp_scaled = np.zeros(132)
        comp_scaled[0] = c
        r.comp_fp = comp_scaled * STDS + MEANS  # unscaled, as featurisation returns it
    return r


def ctx(samples, reference, **kw) -> EvalContext:
    return EvalContext(task="generation", dataset="perov_5", family="perov_5", profile=P, seed=0, samples=samples, reference=reference, **kw)


def test_coverage_hand_checked() -> None:
    # perov_5 cutoffs: structure 0.2, composition 4.
    ref = [result(0, 0.0, 0.0), result(1, 1.0, 0.0), result(2, 0.0, 10.0)]
    gen = [
        result(0, 0.1, 3.0),  # near ref 0 on both (0.1 <= 0.2, 3 <= 4): covers ref 0
        result(1, 1.2, 0.0),  # near ref 1: structure distance exactly 0.2 -> covered (<=)
        result(2, 0.5, 50.0),  # near nothing
        result(3, None, None, valid=False),  # no fingerprint: out of the search, in COV-P's denominator
    ]
    m = coverage(ctx(gen, ref))
    assert m["cov_recall"].value == pytest.approx(2 / 3)
    assert m["cov_precision"].value == pytest.approx(2 / 4)
    # AMSD-R: per ref, min structure distance over the 3 fingerprinted samples: 0.1, 0.2, 0.1
    assert m["amsd_recall"].value == pytest.approx((0.1 + 0.2 + 0.1) / 3)
    # AMSD-P: per sample, min over refs: 0.1, 0.2, 0.5
    assert m["amsd_precision"].value == pytest.approx((0.1 + 0.2 + 0.5) / 3)
    # AMCD-R: ref0 -> min(3, 0, 50)=0; ref1 -> 0; ref2 -> min(7, 10, 40)=7
    assert m["amcd_recall"].value == pytest.approx(7 / 3)
    assert m["amcd_precision"].value == pytest.approx((3 + 0 + 40) / 3)


def test_composition_scaling_nan_becomes_zero() -> None:
    x = np.full((1, 132), np.nan)
    assert np.all(P.scale_composition(x) == 0.0)
    y = MEANS + 2 * STDS
    assert np.allclose(P.scale_composition(y), 2.0)


def test_validity_counts_all_samples() -> None:
    s = [result(0, 0, 0), result(1, 0, 0, valid=False), result(2, None, None, valid=False), result(3, 0, 0)]
    m = validity(ctx(s, None))
    assert m["valid"].value == 0.5 and m["comp_valid"].value == 0.5 and m["struct_valid"].value == 1.0


def test_property_sample_is_numpy_legacy_choice_over_valid_samples() -> None:
    samples = [result(k, 0, 0, valid=(k % 3 != 0), density=float(k)) for k in range(30)]
    c = ctx(samples, [result(0, 0, 0, density=0.0)], options={"n_property_samples": 10})
    chosen = property_sample(c)
    valid_idx = np.array([k for k in range(30) if k % 3 != 0])
    np.random.seed(0)  # what the published script draws after np.random.seed(0)
    expected = valid_idx[np.random.choice(len(valid_idx), 10, replace=False)]
    assert chosen.tolist() == expected.tolist()
    m = property_statistics(c)
    assert m["wdist_density"].value == pytest.approx(wasserstein_distance([float(k) for k in expected], [0.0]))


def test_fewer_valid_than_requested_uses_all_and_says_so() -> None:
    samples = [result(k, 0.1 * k, 0.0, density=float(k)) for k in range(5)]
    c = ctx(samples, [result(0, 0, 0, density=2.0)])
    m = property_statistics(c)
    assert m["wdist_density"].n == 5
    assert any("fewer than 1000" in n for n in c.notes)
    d = diversity(c)
    # structure fps 0, .1, .2, .3, .4 on one axis: mean pairwise distance = 0.2
    assert d["struct_div"].value == pytest.approx(0.2)
    assert d["comp_div"].value == pytest.approx(0.0)


def test_success_rates_hand_checked() -> None:
    # 2 saved steps x 4 trajectories, step-major; perov_5 percentiles 0.439, 0.612, 0.736
    props = np.array([0.40, 0.70, 0.90, 2.0,  # step 1
                      0.50, 0.60, 0.80, 0.1])  # step 2
    valid = [True, True, True, True, True, True, True, False]  # the 0.1 is invalid: ignored
    samples = [result(k, 0, 0, valid=v) for k, v in enumerate(valid)]
    c = EvalContext(task="property_optimization", dataset="perov_5", family="perov_5", profile=P, seed=0, samples=samples, properties=props, options={"num_opt": 4})
    m = success_rates(c)
    # best per trajectory: 0.40, 0.60, 0.80, 2.0
    assert m["SR5"].value == pytest.approx(1 / 4)
    assert m["SR10"].value == pytest.approx(2 / 4)
    assert m["SR15"].value == pytest.approx(2 / 4)


def test_success_rates_need_property_values() -> None:
    samples = [result(k, 0, 0) for k in range(4)]
    c = EvalContext(task="property_optimization", dataset="perov_5", family="perov_5", profile=P, seed=0, samples=samples, options={"num_opt": 4})
    assert success_rates(c) == {}
    assert any("no property values" in n for n in c.notes)
