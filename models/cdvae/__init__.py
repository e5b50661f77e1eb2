"""CDVAE (Xie et al., ICLR 2022) and CDVAE+Fourier: ``cdvae`` and ``cdvae_fourier``.

* :mod:`benchmark.models.cdvae.config`: ``CDVAEConfig``, the one dataclass of every
  hyper-parameter (network, training, sampling) with the ``smoke`` and ``paper`` presets.
* :mod:`benchmark.models.cdvae.network`: the network (``CDVAE``, a ``torch.nn.Module`` built from
  the config and the training split's lattice statistics).
* :mod:`benchmark.models.cdvae.plugin`: the ``Model`` plugins (training, checkpoints,
  capabilities), and the dataset / batching helpers DP-CDVAE and Con-CDVAE reuse.

Importing this package imports none of them (no torch).
"""
