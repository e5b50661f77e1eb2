"""Built-in model plugins.

Registered here: the baselines of :mod:`benchmark.models.baselines`, ``replay`` (training crystals
drawn back at random: the ceiling of the distribution metrics) and ``random`` (random atoms and
lattices matching training statistics: the floor), and ``cdvae`` (:mod:`benchmark.models.cdvae_model`,
the network in :mod:`benchmark.models.cdvae`). A factory returns the model class, not an
instance, and imports its module only when called, so ``python -m benchmark list models`` stays
fast. Third-party models register through the same hook (see :mod:`benchmark.hookspecs`).
"""

from __future__ import annotations

from benchmark.hookspecs import hookimpl
from benchmark.registry import Entry

_BASELINES = {
    "replay": (
        "ReplayModel",
        "baseline: training crystals drawn at random with replacement (ceiling of distribution metrics, no novelty)",
    ),
    "random": (
        "RandomModel",
        "baseline: random atoms and lattices matching training statistics (atom counts, elements, lattice mean/std; the floor)",
    ),
}


def _baseline(class_name: str) -> type:
    from benchmark.models import baselines

    return getattr(baselines, class_name)


def _cdvae() -> type:
    from benchmark.models.cdvae_model import CDVAEModel

    return CDVAEModel


@hookimpl
def benchmark_models() -> list[Entry]:
    entries = [Entry(name, desc, (lambda c=cls: _baseline(c))) for name, (cls, desc) in _BASELINES.items()]
    entries.append(Entry("cdvae", "CDVAE: DimeNet++ encoder, GemNet-T score decoder, annealed Langevin dynamics (Xie et al., ICLR 2022)", _cdvae))
    return entries
