"""Con-CDVAE (Ye, Weng, Wu 2023): ``con_cdvae``, CDVAE conditioned on target properties.

* :mod:`benchmark.models.con_cdvae.config`: ``ConCDVAEConfig`` (a ``CDVAEConfig``).
* :mod:`benchmark.models.con_cdvae.network`: the network (``ConCDVAE``, on CDVAE's), its condition
  specs, embeddings and Predictor.
* :mod:`benchmark.models.con_cdvae.prior`: the latent *Prior*, a conditional DDPM on z.
* :mod:`benchmark.models.con_cdvae.plugin`: the ``Model`` plugin.

Importing this package imports none of them (no torch).
"""
