"""Building blocks that several models and the property oracles share (installed as ``benchmark.nn``).

One module per block; importing this package imports none of them (nor torch), so a plugin that
only lists itself stays cheap:

* :mod:`benchmark.nn.periodic`: lattices, coordinates, minimum images and neighbour graphs under
  periodic boundary conditions, batched over crystals of different sizes.
* :mod:`benchmark.nn.dimenet`: the periodic DimeNet++ of the CDVAE encoder and property models
  (:class:`~benchmark.nn.dimenet.PeriodicDimeNetPlusPlus`, its ``GraphBatch`` and triplets).
* :mod:`benchmark.nn.gemnet`: GemNet-T, CDVAE's score-network decoder.
* :mod:`benchmark.nn.crystalnn`: the published CrystalNN graph of a crystal and its on-disk cache.
* :mod:`benchmark.nn.batch`: :class:`~benchmark.nn.batch.CrystalBatch`, a batch of crystals with
  their CrystalNN graphs, and per-crystal reductions.
* :mod:`benchmark.nn.layers`: small layers (the plain MLP of CDVAE's heads).
* :mod:`benchmark.nn.schedules`: noise schedules as small typed objects (CDVAE's geometric
  sigmas, DP-CDVAE's sigmoid and DDPM's linear beta schedules).
* :mod:`benchmark.nn.diffusion`: the DDPM step maths (time embedding, posterior mean, reverse
  step, respaced time steps).
* :mod:`benchmark.nn.rng`: random draws with an explicit ``torch.Generator`` on its own device.

Nothing here imports a plugin folder (models, metrics, tasks, datasets).
"""
