"""Kolmogorov-Smirnov distribution tests (metrics/distribution.py): modern profile only, hand-checked."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.crystal import Crystal
from benchmark.metrics.base import EvalContext
from benchmark.metrics.distribution import KEYS, distribution_ks, ks_statistics
from benchmark.metrics.profiles import get_profile
from tests.conftest import nacl, srtio3


def _ctx(profile: str, samples: list, reference: list) -> EvalContext:
    return EvalContext(task="generation", dataset="toy", family=None, profile=get_profile(profile), seed=0,
                       samples=[None] * len(samples), sample_crystals=samples, reference_crystals=reference)  # type: ignore[list-item]


def test_identical_sets_give_zero() -> None:
    crystals = [nacl(5.0), nacl(5.6), srtio3(3.9), srtio3(4.1)]
    stats = ks_statistics(crystals, list(reversed(crystals)))
    assert set(stats) == set(KEYS) and all(v == 0.0 for v in stats.values())


def test_disjoint_sets_give_one() -> None:
    # every lattice quantity, the space group (Fm-3m 225 vs a triclinic P1 cell) and Z apart
    small = [nacl(a) for a in (5.0, 5.2, 5.4)]
    rng = np.random.default_rng(0)
    big = [Crystal([40, 41, 42], rng.random((3, 3)), [9 + i, 10 + i, 11 + i], [100, 110, 120], label=str(i)) for i in range(3)]
    stats = ks_statistics(small, big)
    assert all(v == 1.0 for v in stats.values()), stats


def test_partial_overlap_by_hand() -> None:
    # a: {5.0, 5.2} vs {5.2, 5.4}: the empirical CDFs differ by at most 1/2
    stats = ks_statistics([nacl(5.0), nacl(5.2)], [nacl(5.2), nacl(5.4)])
    assert stats["ks_a"] == pytest.approx(0.5) and stats["ks_alpha"] == 0.0 and stats["ks_space_group"] == 0.0
    # Z pooled over atoms: NaCl 4 Na + 4 Cl (11, 17) against SrTiO3 (38, 22, 8, 8, 8)
    z = ks_statistics([nacl()], [srtio3()])["ks_atomic_number"]
    assert z == pytest.approx(0.6)  # at Z = 8..10: 0 of NaCl's atoms below, 3/5 of SrTiO3's


def test_only_the_modern_profile_computes_it_and_garbage_is_left_out() -> None:
    samples = [nacl(5.0), Crystal([11], [[0, 0, 0]], [np.nan, 1, 1], [90, 90, 90]), "unreadable"]
    reference = [nacl(5.0)]
    assert distribution_ks(_ctx("cdvae", samples, reference)) == {}
    values = distribution_ks(_ctx("modern", samples, reference))
    assert set(values) == set(KEYS) and all(v.value == 0.0 and v.n == 1 for v in values.values())
    ctx = _ctx("modern", ["unreadable"], reference)
    assert distribution_ks(ctx) == {} and "no usable" in ctx.notes[-1]
