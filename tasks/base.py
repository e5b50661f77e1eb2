"""What a task is: what is asked of a model (or read from a sample file) and how it is scored."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """A task.

    Attributes:
        name: registry name (``generation``...).
        description: one line.
        reference: where the crystals samples are compared with come from: ``split`` (a dataset
            split, generation), ``paired`` (the crystal each sample reconstructs), or ``none``.
        evaluable: ``python -m benchmark evaluate`` can score a sample file for it.
        protocol: the published protocol in one sentence (counts, steps), for the README and records.
    """

    name: str
    description: str
    reference: str
    evaluable: bool = True
    protocol: str = ""
