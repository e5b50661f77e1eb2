"""Built-in oracles: the published CDVAE DimeNet++ property models (weights read as data), CHGNet,
Con-CDVAE's twelve pretrained CGCNN models (checkpoints read as data), and the energy models ASE's
EMT (for tests and demonstrations) and MACE (optional: the mace-torch package and a local model
file).

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


# name -> (training set, property, unit or meaning of the output); the CGCNN oracles of benchmark.metrics.oracles.cgcnn
# (kept here too so that listing imports neither torch nor that module)
_CGCNN_DATASETS = {"mpall20": "MP-20", "mpall40": "MP-40", "oqmd": "OQMD-20"}
_CGCNN_TARGETS = {
    "fm": ("formation_energy_per_atom", "eV/atom"),
    "bg": ("band_gap", "eV"),
    "Cfm": ("FM_type", "probability that formation_energy_per_atom < -0.9 eV/atom"),
    "Cbg": ("BG_type", "probability of a non-zero band gap"),
}
_CGCNN_ORACLES = {
    f"cgcnn-{ds}-{target}": (label, *_CGCNN_TARGETS[target]) for ds, label in _CGCNN_DATASETS.items() for target in _CGCNN_TARGETS
}


def _make(name: str, oracle_dir: str | None = None) -> object:
    from benchmark.metrics.oracles.cdvae import CDVAEPropertyOracle

    return CDVAEPropertyOracle(name, oracle_dir=oracle_dir)


def _make_chgnet(oracle_dir: str | None = None) -> object:  # oracle_dir: weights ship in the chgnet package
    from benchmark.metrics.oracles.chgnet import CHGNetOracle

    return CHGNetOracle()


def _make_emt(oracle_dir: str | None = None) -> object:  # oracle_dir: EMT's parameters ship in ASE
    from benchmark.metrics.oracles.emt import EMTOracle

    return EMTOracle()


def _make_mace(oracle_dir: str | None = None) -> object:
    from benchmark.metrics.oracles.mace import MACEOracle

    return MACEOracle(oracle_dir=oracle_dir)


def _make_cgcnn(name: str, oracle_dir: str | None = None) -> object:
    from benchmark.metrics.oracles.cgcnn import CGCNNOracle

    return CGCNNOracle(name, oracle_dir=oracle_dir)


@hookimpl
def benchmark_oracles() -> list[Entry]:
    entries = [
        Entry(name, f"published CDVAE DimeNet++ property model: {prop} (eV/atom) of {ds} crystals", partial(_make, name))
        for name, (ds, prop) in _ORACLES.items()
    ]
    entries.append(Entry("chgnet", "CHGNet universal potential: energy per atom (eV/atom) and relaxations (FIRE/BFGS)", _make_chgnet))
    entries.append(Entry("emt", "ASE EMT (Al, Cu, Ag, Au, Ni, Pd, Pt; H, C, N, O): energy per atom (eV/atom) and relaxations; "
                               "for tests and demonstrations, not a universal potential", _make_emt))
    entries.append(Entry("mace", "MACE from a local model file (<oracle dir>/mace/*.model or BENCHMARK_MACE_MODEL): energy per atom "
                                 "(eV/atom) and relaxations; optional, needs `pip install mace-torch`", _make_mace))
    entries.extend(
        Entry(name, f"Con-CDVAE pretrained CGCNN (trained on {ds}): {prop} ({unit})", partial(_make_cgcnn, name))
        for name, (ds, prop, unit) in _CGCNN_ORACLES.items()
    )
    return entries
