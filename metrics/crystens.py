"""CrysTens' own metrics (Alverson et al., Digital Discovery 3, 62, 2024, Tables 1 and 2), computed
from the RAW generated tensors a CrysTens model hands over as the artifact ``crystens_tensor``
((n, 64, 64, 4), the normalised model output in [0, 1], in sample order; ``SampleBatch.artifacts``).

* Table 1: the mean variance of the repeated entries before averaging, in raw units: lattice
  lengths (Å²), angles (degrees²), space-group number, fractional coordinates;
* Table 2: the mean disagreement per atom between each atom's own coordinates and the direction
  graphs' guesses, and the summed disagreement per atom between the reconstructed and the generated
  pairwise-distance matrix;
* the share of tensors the section 3.2 decoder turns into a crystal.

Definitions: :func:`benchmark.representations.crystens.consistency`. The tensors are read with the
paper layout (:data:`~benchmark.representations.crystens.PAPER`, the released normalisation ranges).
Without the artifact (any model that is not a CrysTens model, or a scored sample file) the metric
reports nothing; that is not an error.
"""

from __future__ import annotations

import numpy as np

from benchmark.metrics.base import EvalContext, MetricValue

ARTIFACT = "crystens_tensor"

# metric key -> key of consistency()'s result
KEYS = {
    "crystens_var_lengths": "var_lattice_lengths",
    "crystens_var_angles": "var_angles",
    "crystens_var_space_group": "var_space_group",
    "crystens_var_frac_coords": "var_frac_coords",
    "crystens_coord_disagreement": "coord_disagreement_per_atom",
    "crystens_pairwise_disagreement": "pairwise_disagreement_per_atom",
    "crystens_decode_share": "decode_share",
}


def crystens_consistency(ctx: EvalContext) -> dict[str, MetricValue]:
    """Tables 1-2 of the CrysTens paper from ``ctx.artifacts["crystens_tensor"]``; {} without it."""
    from benchmark.representations.crystens import CHANNELS, SIZE, consistency

    tensors = ctx.artifacts.get(ARTIFACT)
    if tensors is None:
        return {}
    arr = np.asarray(tensors)
    if arr.ndim != 4 or arr.shape[1:] != (SIZE, SIZE, CHANNELS):
        ctx.notes.append(f"crystens: artifact {ARTIFACT!r} has shape {arr.shape}, expected (n, {SIZE}, {SIZE}, {CHANNELS}); not scored")
        return {}
    if len(arr) != len(ctx.samples):
        ctx.notes.append(f"crystens: {len(arr)} tensors for {len(ctx.samples)} samples; not scored")
        return {}
    stats = consistency(arr)
    n_scored = int(stats["n_scored"])
    out: dict[str, MetricValue] = {}
    for key, source in KEYS.items():
        value = stats[source]
        n = len(arr) if key == "crystens_decode_share" else n_scored
        out[key] = MetricValue(None if not np.isfinite(value) else float(value), n)
    if n_scored < len(arr):
        ctx.notes.append(f"crystens: {len(arr) - n_scored} of {len(arr)} tensors have no readable atom count (non-finite or "
                         "non-positive alpha entry); left out of the variances and disagreements")
    return out
