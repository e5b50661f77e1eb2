"""DP-CDVAE (Pakornchote et al., arXiv:2308.02165) and its encoder variants: ``dp_cdvae``,
``dp_cdvae_na``, ``dp_cdvae_gine`` and ``dp_cdvae_na_gine``.

* :mod:`benchmark.models.dp_cdvae.config`: ``DPCDVAEConfig`` (a ``CDVAEConfig``) and the variants'.
* :mod:`benchmark.models.dp_cdvae.network`: the network (``DPCDVAE``, on CDVAE's).
* :mod:`benchmark.models.dp_cdvae.plugin`: the ``Model`` plugins.

Importing this package imports none of them (no torch).
"""
