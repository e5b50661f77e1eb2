"""Fixed-size representations of crystals that models and metrics share (installed as
``benchmark.representations``).

One module per representation; importing this package imports none of them:

* :mod:`benchmark.representations.crystens`: CrysTens (Alverson et al., Digital Discovery 3, 62,
  2024), the 64 x 64 x 4 image-like tensor of a crystal, its decoder (section 3.2) and its
  consistency statistics (Tables 1 and 2).

A representation module imports only the core (``benchmark.crystal`` and friends), numpy,
scikit-learn and pymatgen; nothing here imports a plugin folder (models, metrics, tasks, datasets).
"""
