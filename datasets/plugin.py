"""Built-in datasets: the published CSV splits of CDVAE and Con-CDVAE.

Git blob ids of the official files at the pinned CDVAE commit (see ``base.CDVAE_COMMIT``) let a
download be verified byte for byte; files without one (the dev split, SuperCon, the MP-20 sample)
must be provided through a data directory.
"""

from __future__ import annotations

from benchmark.hookspecs import hookimpl
from benchmark.registry import Entry

PEROV_PROPS = ("heat_all", "heat_ref", "dir_gap", "ind_gap")
MP_PROPS = ("formation_energy_per_atom", "band_gap", "e_above_hull", "spacegroup.number")
CASTELLI = "Castelli et al., Energy Environ. Sci. 5, 9034 and 5814 (2012); curated by Xie et al., CDVAE (ICLR 2022)"


def _make(name: str):
    from benchmark.datasets.base import Dataset

    specs = {
        "perov_5": Dataset(
            name="perov_5",
            description="Perov-5: 18,928 ABX3 perovskites, 5 atoms per cell (CDVAE official splits 11356/3787/3785)",
            folder="perov_5",
            properties=PEROV_PROPS,
            target="heat_ref",
            official_blobs={
                "train": "0769074b5d51d293b765c4371b8f55c468c9c9f2",
                "val": "4a2c8dde98347dd0e01fa83dcf3982c2abe98f9f",
                "test": "d3c5d5af4b27a2a139149f2bb73c8a3dba9d8ac1",
            },
            citation=CASTELLI,
            protocol_family="perov_5",
        ),
        "perov_5_dev": Dataset(
            name="perov_5_dev",
            description="Perov-5 dev split: 1024/512/512 rows drawn from the official perov_5 splits (fast development)",
            folder="perov_5_dev",
            properties=PEROV_PROPS,
            target="heat_ref",
            citation=CASTELLI,
            protocol_family="perov_5",
        ),
        "carbon_24": Dataset(
            name="carbon_24",
            description="Carbon-24: 10,153 carbon structures, 6-24 atoms, AIRSS at 10 GPa (CDVAE official splits)",
            folder="carbon_24",
            properties=("energy_per_atom",),
            target="energy_per_atom",
            official_blobs={
                "train": "5e7ae970fbad8ddc46b6963e8cd6e425f11783a6",
                "val": "b3e29b927883642426ca1d9632d00359b412742b",
                "test": "9beca843fde489de1fe288b32f9e3ff710d42803",
            },
            citation="Pickard, AIRSS data for carbon at 10 GPa, Materials Cloud (2020), doi 10.24435/MATERIALSCLOUD:2020.0026/V1",
            protocol_family="carbon_24",
        ),
        "mp_20": Dataset(
            name="mp_20",
            description="MP-20: 45,231 Materials Project crystals with at most 20 atoms (CDVAE official splits)",
            folder="mp_20",
            properties=MP_PROPS,
            target="formation_energy_per_atom",
            official_blobs={
                "train": "b1c9d498565ac2fd8d075a51ff2ef5e51ba6c21f",
                "val": "7efe4d7ebeb4f460ceaad35e5326c42111d9c9a1",
                "test": "5dc643041df53f5ce4970a79930ad262b4f07acd",
            },
            citation="Jain et al., APL Materials 1, 011002 (2013); curated by Xie et al., CDVAE (ICLR 2022)",
            protocol_family="mp_20",
        ),
        "mp_20_sample": Dataset(
            name="mp_20_sample",
            description="MP-20 sample: 49/10/10 MP-20 rows with Con-CDVAE's conditions (band gap, formation energy, classes)",
            folder="mp_20_sample",
            properties=MP_PROPS + ("BG_type", "FM_type", "CS_type"),
            target="formation_energy_per_atom",
            citation="Con-CDVAE repository (cyye001/Con-CDVAE, data/mptest), from Jain et al. (2013)",
            protocol_family="mp_20",
        ),
        "supercon": Dataset(
            name="supercon",
            description="SuperCon: 1,056 superconductors with Tc (K) from JARVIS electron-phonon data (CDVAE repository)",
            folder="supercon",
            properties=("prop",),
            target=None,
            citation="CDVAE repository data/supercon, from JARVIS electron-phonon calculations",
            protocol_family=None,
        ),
    }
    return specs[name]


_DESCRIPTIONS = {
    "perov_5": "Perov-5 perovskites, 5 atoms per cell (official CDVAE splits)",
    "perov_5_dev": "Perov-5 dev split, 1024/512/512 rows from the official splits",
    "carbon_24": "Carbon-24 carbon allotropes at 10 GPa, 6-24 atoms (official CDVAE splits)",
    "mp_20": "MP-20 Materials Project crystals with <= 20 atoms (official CDVAE splits)",
    "mp_20_sample": "69-row MP-20 sample with Con-CDVAE's conditions",
    "supercon": "SuperCon superconductors with Tc (K)",
}


@hookimpl
def benchmark_datasets() -> list[Entry]:
    return [Entry(name, desc, (lambda n=name: _make(n))) for name, desc in _DESCRIPTIONS.items()]
