"""Built-in oracles: the published CDVAE DimeNet++ property models (weights read as data) and CHGNet.

Listing these entries imports neither torch nor the weights; ``entry.load()`` builds the oracle
(and raises :class:`~benchmark.metrics.oracles.cdvae.OracleWeightsNotFound` without the files).
"""

from __future__ import annotations

from functools import partial

from benchmark.hookspecs import hookimpl
from benchmark.registry import Entry

# name -> (dataset, property); kept here so listing needs no import of the oracle module
_ORACLES = {
    "cdvae-perov_5": ("perov_5", "heat_ref"),
    "cdvae-carbon_24": ("carbon_24", "energy_per_atom"),
    "cdvae-mp_20": ("mp_20", "formation_energy_per_atom"),
}


def _make(name: str, oracle_dir: str | None = None) -> object:
    from benchmark.metrics.oracles.cdvae import CDVAEPropertyOracle

    return CDVAEPropertyOracle(name, oracle_dir=oracle_dir)


def _make_chgnet(oracle_dir: str | None = None) -> object:  # oracle_dir: weights ship in the chgnet package
    from benchmark.metrics.oracles.chgnet import CHGNetOracle

    return CHGNetOracle()


@hookimpl
def benchmark_oracles() -> list[Entry]:
    entries = [
        Entry(name, f"published CDVAE DimeNet++ property model: {prop} (eV/atom) of {ds} crystals", partial(_make, name))
        for name, (ds, prop) in _ORACLES.items()
    ]
    entries.append(Entry("chgnet", "CHGNet universal potential: energy per atom (eV/atom) and relaxations (FIRE/BFGS)", _make_chgnet))
    return entries
