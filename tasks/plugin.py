"""Built-in tasks of the published protocols."""

from __future__ import annotations

from benchmark.hookspecs import hookimpl
from benchmark.registry import Entry

_TASKS = {
    "generation": ("split", "sample crystals from the prior; validity, coverage, property statistics vs the test split",
                   "10,000 samples from N(0, I) for validity and coverage; 1,000 valid ones for property statistics (CDVAE Table 2)"),
    "reconstruction": ("paired", "encode and decode the test split; match rate and RMSE with StructureMatcher",
                       "every test crystal, StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3) (CDVAE Table 1)"),
    "property_optimization": ("none", "optimise the target property in latent space from test crystals; SR5/SR10/SR15",
                              "100 test crystals, 5,000 gradient steps (lr 1e-3), 10 decoded along each trajectory (CDVAE Table 3)"),
    "sampling_speed": ("none", "wall time and crystals per second to generate N crystals on a device",
                       "10,000 crystals (CDVAE Table 4, RTX 2080 Ti); device, batch size and model evaluations recorded"),
    "ground_state": ("none", "relax samples with a potential; match rate, <δ_rms>, ΔV_rms, ΔE_rms vs the relaxed crystals",
                     "100 generated crystals relaxed (the paper: DFT at 10 GPa for Carbon-24; here a named potential), "
                     "StructureMatcher(0.5, 10, 0.3) with the relaxed crystal as base (DP-CDVAE Table III)"),
    "conditional_generation": ("none", "sample crystals for target properties; success per target and jointly, checked by property oracles",
                               "200 crystals per condition set; band gap / formation energy (classes or values) by CGCNN, crystal "
                               "system by SpacegroupAnalyzer(symprec=0.2, angle_tolerance=5) (Con-CDVAE Tables 2 and B1, Figures 2-4)"),
}


def _load(name: str):
    from benchmark.tasks.base import Task

    reference, desc, protocol = _TASKS[name]
    return Task(name=name, description=desc, reference=reference, protocol=protocol, evaluable=name != "sampling_speed")


@hookimpl
def benchmark_tasks() -> list[Entry]:
    return [Entry(name, spec[1], (lambda n=name: _load(n))) for name, spec in _TASKS.items()]
