"""Speed of the periodic graph builders at the size of one CDVAE decoder call on Perov-5.

256 crystals of 5 atoms in cubic-ish cells of about 4 Å (lengths 3.8-4.4 Å, angles 87-93 degrees),
float32 as in training: ``radius_graph_pbc`` with CDVAE's cutoff 7 Å and 20 neighbours (appendix
B.2) is what the decoder rebuilds at every Langevin step. Disabled by default (pyproject passes
``--benchmark-disable``, which runs each function once as a smoke test); to measure:

    python -P -m pytest tests/benchmarks/test_periodic_speed.py --benchmark-enable --benchmark-columns=min,median,rounds
"""

from __future__ import annotations

import pytest
import torch

from benchmark.nn.periodic import knn_graph_pbc, lattice_from_params, min_image_displacement, radius_graph_pbc

NUM_CRYSTALS, NUM_ATOMS, CUTOFF, MAX_NEIGHBORS = 256, 5, 7.0, 20


@pytest.fixture(scope="module")
def perov_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    lengths = 3.8 + 0.6 * torch.rand(NUM_CRYSTALS, 3, generator=gen)
    angles = 87.0 + 6.0 * torch.rand(NUM_CRYSTALS, 3, generator=gen)
    lattice = lattice_from_params(lengths, angles)  # (B, 3, 3)
    frac = torch.rand(NUM_CRYSTALS * NUM_ATOMS, 3, generator=gen)  # (N, 3)
    num_atoms = torch.full((NUM_CRYSTALS,), NUM_ATOMS, dtype=torch.long)
    return frac, lattice, num_atoms


def test_radius_graph_pbc_perov5(benchmark, perov_batch) -> None:
    frac, lattice, num_atoms = perov_batch
    graph = benchmark(radius_graph_pbc, frac, lattice, num_atoms, CUTOFF, MAX_NEIGHBORS)
    assert graph.edge_index.shape == (2, NUM_CRYSTALS * NUM_ATOMS * MAX_NEIGHBORS)


def test_radius_graph_pbc_perov5_uncapped(benchmark, perov_batch) -> None:
    frac, lattice, num_atoms = perov_batch
    graph = benchmark(radius_graph_pbc, frac, lattice, num_atoms, CUTOFF)
    assert bool((graph.distances <= CUTOFF + 1e-5).all())


def test_knn_graph_pbc_perov5(benchmark, perov_batch) -> None:
    frac, lattice, num_atoms = perov_batch
    graph = benchmark(knn_graph_pbc, frac, lattice, num_atoms, MAX_NEIGHBORS)
    assert graph.edge_index.shape == (2, NUM_CRYSTALS * NUM_ATOMS * MAX_NEIGHBORS)


def test_min_image_displacement_perov5(benchmark, perov_batch) -> None:
    frac, lattice, num_atoms = perov_batch
    noisy = frac + 0.1 * torch.randn(frac.shape, generator=torch.Generator().manual_seed(1))
    disp = benchmark(min_image_displacement, frac, noisy, lattice, num_atoms)
    assert disp.shape == frac.shape
