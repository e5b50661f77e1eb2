"""Speed of the CDVAE network on the CPU, for a batch of 256 Perov-5 crystals.

What is measured (the first 256 rows of perov_5/val, their CrystalNN encoder graphs collated into
one :class:`~benchmark.nn.batch.CrystalBatch`), at two network sizes: ``published`` (the
:class:`~benchmark.models.cdvae.config.CDVAEConfig` defaults, with the property head) and ``smoke``
(the plugin's ``smoke`` preset for perov_5):

* **training step**: ``losses`` (teacher-forced, as in the first epochs) + ``backward`` + one Adam
  step, after the GemNet scale factors were fitted on 64 crystals as the plugin does. Figures:
  ``steps_per_s``, ``crystals_per_s``.
* **decoder evaluation**: one step of annealed Langevin dynamics, run through
  :meth:`~benchmark.models.cdvae.network.CDVAE.langevin` itself (one level, ``n_step_each=1``) with the
  crystals' own atom counts and lattices imposed and uniform initial coordinates (Algorithm 1's
  X_0): the decoder graph (``radius_graph_pbc``) plus the GemNet-T forward, and the coordinate
  update. The graph build is timed inside the same step (``radius_graph_pbc`` wrapped with a
  timer), giving ``graph_fraction``, the share of a sampling step spent building the graph, and
  ``projected_s``: the paper's protocol, 10,000 samples in batches of 256 (40 batches, the last
  one counted as a full one) with 50 levels x 100 steps = 5,000 decoder evaluations per batch,
  from the measured step time. For ``smoke`` the projection with its own schedule (10 x 10 steps)
  is recorded too.
* **graph build alone**: ``radius_graph_pbc`` with the decoder's cutoff and neighbour cap on the
  same input as a sampling step (and, in ``extra_info``, on the true coordinates), and its
  fraction of the decoder step measured earlier in the session.

Goal (the issue): graph building below a quarter of a sampling step, and no Python loop over
crystals inside a step. The second part does not depend on timing and is checked by the plain
tests at the end of this file, which run by default (no data needed): the Python lines executed
by one decoder evaluation do not change with the batch size, and ``radius_graph_pbc`` is called
exactly once per decoder evaluation whatever the batch size.

All benchmarks are slow (loading the split and its 256 CrystalNN graphs alone takes ~15 s; a
published-size training step takes ~10 s on one thread). Figures are in ``extra_info`` (use
``--benchmark-json``) and printed (``-s``). The thread count is torch's default; to measure on
one core:

    OMP_NUM_THREADS=1 bash scripts/test.sh tests/benchmarks/test_cdvae_speed.py -m "" --benchmark-enable \\
        -p no:cacheprovider --benchmark-columns=min,median,rounds --benchmark-json=cdvae-speed.json
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Callable

import numpy as np
import pytest
import torch

from tests.conftest import data_dir

N_CRYSTALS = 256
#: the paper's generation protocol: 10,000 samples, 50 noise levels x 100 Langevin steps
N_SAMPLES, PAPER_LEVELS, PAPER_STEPS_EACH = 10_000, 50, 100
SAMPLE_BATCH = 256
GRAPH_FRACTION_GOAL = 0.25
#: size -> (warm-up calls, timed rounds) per benchmark; rounds stay small at the published size
ROUNDS = {
    "train": {"published": 2, "smoke": 3},
    "decoder": {"published": 3, "smoke": 5},
    "graph": {"published": 10, "smoke": 10},
}
slow = pytest.mark.slow
SIZES = [pytest.param("published", marks=slow), pytest.param("smoke", marks=slow)]

_RESULTS: dict[tuple[str, str], dict[str, Any]] = {}
_NETS: dict[str, Any] = {}


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def perov5(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The first 256 Perov-5 val crystals, their CrystalNN graphs as one batch (with the
    standardised ``heat_ref`` as y) and the lattice standardisation of these crystals."""
    from benchmark.nn.batch import CrystalBatch
    from benchmark.nn.crystalnn import build_graphs
    from benchmark.models.cdvae.plugin import lattice_statistics
    from benchmark.registry import get_plugins

    d = data_dir()
    if d is None or not (d / "perov_5" / "val.csv").is_file():
        pytest.skip("no perov_5/val.csv: set BENCHMARK_DATA_DIR to the published CSVs")
    with pytest.MonkeyPatch.context() as mp:  # the parsed-CSV cache goes to a temporary directory
        mp.setenv("BENCHMARK_CACHE_DIR", str(tmp_path_factory.mktemp("cdvae-speed-cache")))
        mp.setenv("BENCHMARK_OFFLINE", "1")
        crystals = get_plugins()["datasets"].get("perov_5").load("val", data_dir=d, limit=N_CRYSTALS, progress=False)
        graphs = build_graphs(crystals, n_jobs=1, progress=False)  # one core: the other may be busy
    keep = [k for k, g in enumerate(graphs) if g is not None]
    crystals, graphs = [crystals[k] for k in keep], [graphs[k] for k in keep]
    ys = np.array([float(c.properties["heat_ref"]) for c in crystals])
    ys = (ys - ys.mean()) / (ys.std() or 1.0)
    mean, std = lattice_statistics(crystals)
    return {
        "crystals": crystals,
        "graphs": graphs,
        "batch": CrystalBatch.from_graphs(graphs, y=ys),
        "lattice_mean": mean,
        "lattice_std": std,
    }


def _config(size: str) -> Any:
    from benchmark.models.cdvae.config import CDVAEConfig

    if size == "published":
        return CDVAEConfig(property="heat_ref")
    preset = {**CDVAEConfig.presets["smoke"], **CDVAEConfig.dataset_presets["smoke"]["perov_5"]}
    return CDVAEConfig(**preset)


@pytest.fixture(scope="module")
def networks(perov5: dict[str, Any]) -> Callable[[str], Any]:
    """``networks(size)``: the CDVAE network of that size (built once per module), its GemNet
    scale factors fitted on the first 64 crystals as the plugin does before training."""
    from benchmark.models.cdvae.network import CDVAE
    from benchmark.nn.batch import CrystalBatch

    def get(size: str) -> Any:
        if size not in _NETS:
            torch.manual_seed(0)
            net = CDVAE(_config(size), lattice_mean=perov5["lattice_mean"], lattice_std=perov5["lattice_std"])
            net.fit_scale_factors(CrystalBatch.from_graphs(perov5["graphs"][:64]), generator=torch.Generator().manual_seed(0))
            _NETS[size] = net
        return _NETS[size]

    return get


# ------------------------------------------------------------------------------------ helpers


def _timed(fn: Callable[[], Any], sink: list[float]) -> Callable[[], Any]:
    """``fn`` that appends its wall time to ``sink`` (the figures do not depend on whether
    pytest-benchmark is enabled: disabled, it runs the function once)."""

    def run() -> Any:
        t = time.perf_counter()
        out = fn()
        sink.append(time.perf_counter() - t)
        return out

    return run


def _machine(batch: Any) -> dict[str, Any]:
    return {
        "n_crystals": batch.num_graphs,
        "n_atoms": int(batch.num_atoms.sum()),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def _projection(step_s: float, evals_per_batch: int) -> dict[str, float]:
    batches = math.ceil(N_SAMPLES / SAMPLE_BATCH)
    seconds = batches * evals_per_batch * step_s
    return {"batches": batches, "evals_per_batch": evals_per_batch, "seconds": round(seconds, 1), "hours": round(seconds / 3600, 2)}


# ------------------------------------------------------------------------------------ benchmarks


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.data
def test_training_step_speed(benchmark, perov5: dict[str, Any], networks: Callable[[str], Any], size: str) -> None:
    """Forward (Eq. 9 losses) + backward + Adam on the 256-crystal batch."""
    net = networks(size).train()
    b = perov5["batch"]
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(1)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        out = net.losses(b, teacher_forcing=True, generator=gen)
        out["loss"].backward()
        opt.step()
        return float(out["loss"].detach())

    step()  # warm-up: the first backward allocates; untimed in both modes
    seconds: list[float] = []
    benchmark.group = "cdvae training step (256 Perov-5 crystals)"
    loss = benchmark.pedantic(_timed(step, seconds), rounds=ROUNDS["train"][size], iterations=1)
    assert math.isfinite(loss)
    dt = min(seconds)
    info = {"size": size, **_machine(b), "seconds": round(dt, 4), "steps_per_s": round(1 / dt, 4),
            "crystals_per_s": round(b.num_graphs / dt, 2), "n_parameters": sum(p.numel() for p in net.parameters())}
    _RESULTS[("train", size)] = info
    benchmark.extra_info.update(info)
    print(f"\ncdvae {size} training step: {info}")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.data
def test_decoder_evaluation_speed(benchmark, perov5: dict[str, Any], networks: Callable[[str], Any], size: str,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """One Langevin step (graph + GemNet-T forward + update) through ``CDVAE.langevin``."""
    import benchmark.models.cdvae.network as cdvae_module

    net = networks(size).eval()
    hp = net.config
    b = perov5["batch"]
    graph_seconds: list[float] = []
    build = cdvae_module.radius_graph_pbc

    def timed_graph(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        out = build(*args, **kwargs)
        graph_seconds.append(time.perf_counter() - t)
        return out

    monkeypatch.setattr(cdvae_module, "radius_graph_pbc", timed_graph)
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(b.num_graphs, hp.latent_dim, generator=gen)  # (B, latent)
    first_sigma = float(net.sigmas[0])  # min_sigma = the first level: only that level runs

    def step() -> dict[str, Any]:
        return net.langevin(z, num_atoms=b.num_atoms, lengths=b.lengths, angles=b.angles, n_step_each=1,
                            min_sigma=first_sigma, generator=gen)

    step()  # warm-up
    graph_seconds.clear()
    seconds: list[float] = []
    benchmark.group = "cdvae decoder evaluation = one Langevin step (256 Perov-5 crystals)"
    out = benchmark.pedantic(_timed(step, seconds), rounds=ROUNDS["decoder"][size], iterations=1)
    assert out["model_evaluations"] == 1 and len(graph_seconds) == len(seconds)
    assert bool(torch.isfinite(out["frac_coords"]).all())

    best = int(np.argmin(seconds))
    dt = seconds[best]
    fractions = [g / s for g, s in zip(graph_seconds, seconds)]
    info: dict[str, Any] = {
        "size": size, **_machine(b), "seconds": round(dt, 4), "decoder_evals_per_s": round(1 / dt, 4),
        "crystal_evals_per_s": round(b.num_graphs / dt, 1),
        "graph_seconds_in_step": round(graph_seconds[best], 5),
        "graph_fraction": round(fractions[best], 4), "graph_fraction_max": round(max(fractions), 4),
        "decoder_cutoff": hp.decoder_cutoff, "decoder_max_neighbors": hp.decoder_max_neighbors,
    }
    paper = _projection(dt, PAPER_LEVELS * PAPER_STEPS_EACH)
    info.update({f"projected_paper_protocol_{k}": v for k, v in paper.items()})
    if size == "smoke":
        from benchmark.models.cdvae.config import CDVAEConfig

        own = CDVAEConfig.presets["smoke"]
        own_proj = _projection(dt, own["num_noise_level"] * own["n_step_each"])
        info.update({f"projected_smoke_protocol_{k}": v for k, v in own_proj.items()})
    _RESULTS[("decoder", size)] = info
    benchmark.extra_info.update(info)
    print(f"\ncdvae {size} decoder evaluation: {info}")
    # the goal; the measured share is a few per cent, far from the limit
    assert fractions[best] < GRAPH_FRACTION_GOAL, f"graph building takes {fractions[best]:.0%} of a sampling step"


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.data
def test_graph_build_speed(benchmark, perov5: dict[str, Any], networks: Callable[[str], Any], size: str) -> None:
    """``radius_graph_pbc`` alone, with the decoder's cutoff and neighbour cap."""
    from benchmark.nn.periodic import lattice_from_params, radius_graph_pbc

    hp = networks(size).config
    b = perov5["batch"]
    lattice = lattice_from_params(b.lengths, b.angles)  # (B, 3, 3)
    frac = torch.rand(b.frac_coords.shape, generator=torch.Generator().manual_seed(3))  # (N, 3) like X_0

    def build(coords: torch.Tensor) -> Any:
        return radius_graph_pbc(coords, lattice, b.num_atoms, hp.decoder_cutoff, hp.decoder_max_neighbors)

    build(frac)  # warm-up
    true_s: list[float] = []
    for _ in range(3):  # on the true coordinates (untimed by pytest-benchmark)
        _timed(lambda: build(b.frac_coords), true_s)()
    seconds: list[float] = []
    benchmark.group = "cdvae decoder graph (256 Perov-5 crystals)"
    graph = benchmark.pedantic(_timed(lambda: build(frac), seconds), rounds=ROUNDS["graph"][size], iterations=1)
    assert graph.edge_index.shape[1] <= int(b.num_atoms.sum()) * hp.decoder_max_neighbors
    dt = min(seconds)
    info: dict[str, Any] = {"size": size, **_machine(b), "seconds": round(dt, 5), "graphs_per_s": round(1 / dt, 2),
                            "seconds_true_coords": round(min(true_s), 5), "n_edges": int(graph.edge_index.shape[1]),
                            "decoder_cutoff": hp.decoder_cutoff, "decoder_max_neighbors": hp.decoder_max_neighbors}
    step = _RESULTS.get(("decoder", size))
    if step is not None:
        info["fraction_of_decoder_step"] = round(dt / step["seconds"], 4)
    _RESULTS[("graph", size)] = info
    benchmark.extra_info.update(info)
    print(f"\ncdvae {size} decoder graph: {info}")


# ------------------------------------------------------------------------- structure (default run)


def _tiny_network() -> Any:
    """A small CDVAE with the published decoder graph (cutoff 7 Å, 20 neighbours). The encoder's
    basis sizes are those of tests/models/test_cdvae_core.py, so the sympy basis is shared."""
    from benchmark.models.cdvae.config import CDVAEConfig
    from benchmark.models.cdvae.network import CDVAE

    if "tiny" not in _NETS:
        torch.manual_seed(0)
        _NETS["tiny"] = CDVAE(CDVAEConfig(
            latent_dim=16, hidden_dim=16, num_noise_level=5, encoder_hidden=16, encoder_blocks=1,
            encoder_int_emb_size=8, encoder_basis_emb_size=4, encoder_out_emb_size=16, encoder_num_spherical=3,
            encoder_num_radial=4, decoder_hidden=16, decoder_blocks=1, decoder_emb_size_trip=8,
            decoder_emb_size_rbf=4, decoder_emb_size_cbf=4, decoder_emb_size_bil_trip=8, decoder_num_spherical=3,
            decoder_num_radial=4, decoder_num_atom=1,
        )).eval()
    return _NETS["tiny"]


def _replicated_inputs(copies: int, latent_dim: int) -> tuple[torch.Tensor, ...]:
    """Decoder inputs for ``2 * copies`` crystals: a slightly distorted SrTiO3 (5 atoms, cubic) and
    a NaCl-like 8-atom triclinic cell, repeated, so that every crystal's work is the same whatever
    the batch size. Returns ``(z, frac, atom_types, lattice, num_atoms, batch)``."""
    from benchmark.nn.periodic import lattice_from_params

    gen = torch.Generator().manual_seed(0)
    perov = torch.tensor([[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]) + 0.03 * torch.randn(5, 3, generator=gen)
    other = torch.rand(8, 3, generator=gen)
    frac = torch.cat([perov, other]).repeat(copies, 1)  # (13 copies, 3)
    num_atoms = torch.tensor([5, 8]).repeat(copies)  # (2 copies,)
    lattice = lattice_from_params(torch.tensor([[3.9, 3.9, 3.9], [5.6, 5.0, 6.1]]).repeat(copies, 1),
                                  torch.tensor([[90.0, 90.0, 90.0], [80.0, 95.0, 100.0]]).repeat(copies, 1))
    types = torch.tensor([38, 22, 8, 8, 8, 11, 11, 11, 11, 17, 17, 17, 17]).repeat(copies)
    batch = torch.repeat_interleave(torch.arange(2 * copies), num_atoms)
    z = torch.randn(1, latent_dim, generator=gen).repeat(2 * copies, 1)  # (B, latent)
    return z, frac, types, lattice, num_atoms, batch


def _python_lines(fn: Callable[[], Any]) -> int:
    """Python source lines executed by ``fn()`` (``sys.settrace`` line events, every module)."""
    count = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(previous)
    return count


def test_decoder_evaluation_has_no_python_loop_over_crystals() -> None:
    """One decoder evaluation (periodic graph + GemNet-T) executes the same Python lines for 2 and
    for 16 crystals: the per-crystal work is all in batched tensor operations."""
    net = _tiny_network()
    lines = {}
    for copies in (1, 8):  # B = 2 and B = 16
        args = _replicated_inputs(copies, net.config.latent_dim)
        with torch.no_grad():
            lines[2 * copies] = _python_lines(lambda: net.decode(*args))
    assert lines[2] > 0 and lines[2] == lines[16], f"Python lines per decoder evaluation grow with the batch: {lines}"

    # the counter does see a per-crystal loop: the same graphs built one crystal at a time
    from benchmark.nn.periodic import radius_graph_pbc

    def per_crystal(copies: int) -> None:
        _, frac, _, lattice, num_atoms, _ = _replicated_inputs(copies, net.config.latent_dim)
        for part, lat, n in zip(frac.split(num_atoms.tolist()), lattice, num_atoms):
            radius_graph_pbc(part, lat[None], n[None], net.config.decoder_cutoff, net.config.decoder_max_neighbors)

    assert _python_lines(lambda: per_crystal(8)) > _python_lines(lambda: per_crystal(1))


@pytest.mark.parametrize("num_graphs", [2, 16])
def test_one_graph_build_per_decoder_evaluation(monkeypatch: pytest.MonkeyPatch, num_graphs: int) -> None:
    """Annealed Langevin dynamics calls ``radius_graph_pbc`` exactly once per decoder evaluation
    (for the whole batch), whatever the number of crystals."""
    import benchmark.models.cdvae.network as cdvae_module
    from benchmark.nn.periodic import params_from_lattice

    net = _tiny_network()
    calls: list[int] = []
    build = cdvae_module.radius_graph_pbc

    def counted(frac: torch.Tensor, lattice: torch.Tensor, num_atoms: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        calls.append(int(num_atoms.numel()))
        return build(frac, lattice, num_atoms, *args, **kwargs)

    monkeypatch.setattr(cdvae_module, "radius_graph_pbc", counted)
    z, _, _, lattice, num_atoms, _ = _replicated_inputs(num_graphs // 2, net.config.latent_dim)
    lengths, angles = params_from_lattice(lattice)
    out = net.langevin(z, num_atoms=num_atoms, lengths=lengths, angles=angles, n_step_each=3,
                       min_sigma=float(net.sigmas[1]), generator=torch.Generator().manual_seed(0))  # 2 levels x 3 steps
    assert out["model_evaluations"] == 6
    assert calls == [num_graphs] * 6  # one call per evaluation, each for the whole batch
