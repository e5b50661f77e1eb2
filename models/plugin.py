"""Built-in model plugins: one ``Entry`` per registered model.

Each model lives in its own folder, its network beside its plugin (``Model`` subclass and
``Config``):

===============================  ====================================================================
folder                           registered models
===============================  ====================================================================
``models/baselines/``            ``replay`` (training crystals drawn back at random: the ceiling of
                                 the distribution metrics) and ``random`` (random atoms and lattices
                                 matching training statistics: the floor)
``models/cdvae/``                ``cdvae`` and ``cdvae_fourier``
``models/dp_cdvae/``             the four DP-CDVAE variants (``dp_cdvae``, ``dp_cdvae_na``,
                                 ``dp_cdvae_gine``, ``dp_cdvae_na_gine``)
``models/con_cdvae/``            ``con_cdvae``
``models/crystens_gan/``         ``crystens_gan`` and ``crystens_wgan`` (CrysTens' GANs, B.1/B.2)
``models/crystens_diffusion/``   ``crystens_diffusion`` (CrysTens' diffusion cascade, B.3)
``models/ftcp/``                 ``ftcp`` (the FTCP VAE with its property branch, Ren et al. 2022)
===============================  ====================================================================

A factory returns the model class, not an instance, and imports its folder's ``plugin`` module
only when called, so ``python -m benchmark list models`` stays fast. Adding a model touches its
own folder and one ``Entry`` here; third-party models register through the same hook (see
:mod:`benchmark.hookspecs`).
"""

from __future__ import annotations

from benchmark.hookspecs import hookimpl
from benchmark.registry import Entry

_BASELINES = {
    "replay": (
        "ReplayModel",
        "baseline: training crystals drawn at random with replacement (ceiling of distribution metrics, no novelty)",
    ),
    "random": (
        "RandomModel",
        "baseline: random atoms and lattices matching training statistics (atom counts, elements, lattice mean/std; the floor)",
    ),
}


def _baseline(class_name: str) -> type:
    from benchmark.models.baselines import plugin

    return getattr(plugin, class_name)


def _cdvae() -> type:
    from benchmark.models.cdvae.plugin import CDVAEModel

    return CDVAEModel


def _cdvae_fourier() -> type:
    from benchmark.models.cdvae.plugin import CDVAEFourierModel

    return CDVAEFourierModel


def _con_cdvae() -> type:
    from benchmark.models.con_cdvae.plugin import ConCDVAEModel

    return ConCDVAEModel


def _crystens_diffusion() -> type:
    from benchmark.models.crystens_diffusion.plugin import CrysTensDiffusionModel

    return CrysTensDiffusionModel


def _ftcp() -> type:
    from benchmark.models.ftcp.plugin import FTCPModel

    return FTCPModel


def _dp_cdvae(name: str) -> type:
    from benchmark.models.dp_cdvae.plugin import VARIANTS

    return VARIANTS[name]


def _crystens(class_name: str) -> type:
    from benchmark.models.crystens_gan import plugin

    return getattr(plugin, class_name)


_CRYSTENS = {
    "crystens_gan": ("CrysTensGANModel", "CrysTens GAN: Conv3D generator and discriminator on 64x64x4 CrysTens tensors (Alverson et al. 2024, B.1)"),
    "crystens_wgan": ("CrysTensWGANModel", "CrysTens WGAN-GP: spectrally normalised Conv3D generator and critic on CrysTens tensors (Alverson et al. 2024, B.2)"),
}


_DP_CDVAE = {
    "dp_cdvae": "DP-CDVAE: CDVAE's VAE with a DDPM on fractional coordinates (Pakornchote et al. 2023)",
    "dp_cdvae_na": "DP-CDVAE+N_a: DP-CDVAE with a number-of-atoms MLP in the encoder",
    "dp_cdvae_gine": "DP-CDVAE+GINE: DP-CDVAE with a GINE graph encoder beside DimeNet++",
    "dp_cdvae_na_gine": "DP-CDVAE+N_a+GINE: DP-CDVAE with both extra encoders",
}


@hookimpl
def benchmark_models() -> list[Entry]:
    entries = [Entry(name, desc, (lambda c=cls: _baseline(c))) for name, (cls, desc) in _BASELINES.items()]
    entries.append(Entry("cdvae", "CDVAE: DimeNet++ encoder, GemNet-T score decoder, annealed Langevin dynamics (Xie et al., ICLR 2022)", _cdvae))
    entries.append(Entry("cdvae_fourier", "CDVAE+Fourier: CDVAE with Fourier features of the noisy coordinates (DP-CDVAE Table III)", _cdvae_fourier))
    entries.extend(Entry(name, desc, (lambda n=name: _dp_cdvae(n))) for name, desc in _DP_CDVAE.items())
    entries.append(Entry("con_cdvae", "Con-CDVAE: CDVAE conditioned on target properties, latent DDPM prior, Predictor filter (Ye et al. 2023)", _con_cdvae))
    entries.extend(Entry(name, desc, (lambda c=cls: _crystens(c))) for name, (cls, desc) in _CRYSTENS.items())
    entries.append(Entry("crystens_diffusion", "CrysTens diffusion: 64x64x4 crystal tensors from a 32->64 cascade of two U-Nets (Alverson et al. 2024)", _crystens_diffusion))
    entries.append(Entry("ftcp", "FTCP: 1-D convolutional VAE with a property branch on FTCP arrays (Ren et al., Matter 2022)", _ftcp))
    return entries
