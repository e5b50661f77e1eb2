"""Built-in tasks: the published protocols, one class per file in this folder.

Task modules are light (no torch, no pymatgen at import), so the entries are built from the
classes themselves: name and description live only there. Third-party tasks register through the
same hook (see :mod:`benchmark.hookspecs`), with an entry whose factory returns a task instance.
"""

from __future__ import annotations

from benchmark.hookspecs import hookimpl
from benchmark.registry import Entry


@hookimpl
def benchmark_tasks() -> list[Entry]:
    from benchmark.tasks.conditional_generation import ConditionalGenerationTask
    from benchmark.tasks.generation import GenerationTask
    from benchmark.tasks.ground_state import GroundStateTask
    from benchmark.tasks.property_optimization import PropertyOptimizationTask
    from benchmark.tasks.reconstruction import ReconstructionTask
    from benchmark.tasks.sampling_speed import SamplingSpeedTask
    from benchmark.tasks.stability import StabilityTask

    classes = (GenerationTask, ReconstructionTask, PropertyOptimizationTask, SamplingSpeedTask, GroundStateTask, ConditionalGenerationTask,
               StabilityTask)
    return [Entry(cls.name, cls.description, cls) for cls in classes]
