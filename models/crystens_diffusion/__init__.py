"""CrysTens diffusion (Alverson et al., Digital Discovery 2024, Appendix B.3): ``crystens_diffusion``.

* :mod:`benchmark.models.crystens_diffusion.config`: ``CrysTensDiffusionConfig``, the one dataclass of
  every hyper-parameter with the ``smoke`` and ``paper`` presets and the sources of the ``paper``
  values (``PUBLISHED``).
* :mod:`benchmark.models.crystens_diffusion.network`: the cascade of two diffusers U-Nets (32 x 32,
  then 64 x 64 conditioned on the first), its losses and samplers.
* :mod:`benchmark.models.crystens_diffusion.plugin`: the ``Model`` plugin (training through
  :func:`benchmark.training.train_module`, checkpoints, sampling and decoding).

Importing this package imports none of them (no torch).
"""
