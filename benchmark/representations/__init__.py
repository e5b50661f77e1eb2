"""Fixed-size representations of crystals that models and metrics share (installed as
``benchmark.representations``).

One module per representation; importing this package imports none of them:

* :mod:`benchmark.representations.crystens`: CrysTens (Alverson et al., Digital Discovery 3, 62,
  2024), the 64 x 64 x 4 image-like tensor of a crystal, its decoder (section 3.2) and its
  consistency statistics (Tables 1 and 2).
* :mod:`benchmark.representations.ftcp`: FTCP (Ren et al., Matter 5, 314, 2022), the real- and
  reciprocal-space matrix of the released PV-Lab/FTCP code, its per-row min-max scaler and decoder,
  and a structure-factor variant.

A representation module imports only the core (``benchmark.crystal`` and friends), numpy,
scikit-learn and pymatgen; nothing here imports a plugin folder (models, metrics, tasks, datasets).
"""
