"""The hyper-parameters of ``crystens_gan`` and ``crystens_wgan``: one frozen dataclass per plugin.

Both models generate CrysTens tensors (Alverson et al., Digital Discovery 3, 62, 2024, section 3.1:
64 x 64 x 4, read by the networks as a 64 x 64 x 4 volume with one channel, Appendix B). No torch
here: the command line reads these classes to list a model's options.

Sources. The paper's Appendix B gives only a few numbers (epochs, learning rates, noise size, the
loss, lambda = 10, the critic trained 5x as often); everything else comes from the released Keras
scripts, ``train_vanilla_gan.py`` (:data:`RELEASED_GAN`) and ``train_wasserstein_gan.py``
(:data:`RELEASED_WGAN`). :data:`PUBLISHED_GAN` and :data:`PUBLISHED_WGAN` give the source of every
value of the ``paper`` presets; ``tests/models/test_crystens_gan.py`` compares the resolved presets
with them. Where paper and released code disagree the paper is followed and the table says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from benchmark.models.base import ModelConfig

__all__ = ["PUBLISHED_GAN", "PUBLISHED_WGAN", "RELEASED_GAN", "RELEASED_WGAN", "CrysTensGANConfig", "CrysTensWGANConfig"]

#: released code: michaeldalverson/CrysTens (the newest snapshot, 3eb296a; the vanilla GAN script is
#: unchanged since 1290321, the WGAN script since d337a4b)
RELEASED_GAN = "michaeldalverson/CrysTens@3eb296a train_vanilla_gan.py"
RELEASED_WGAN = "michaeldalverson/CrysTens@3eb296a train_wasserstein_gan.py"
PAPER = "Alverson et al. 2024"

#: the number of transposed convolutions in each generator and of convolutions in each critic: the
#: spatial sizes of Appendix B's networks are fixed by these kernels (see network.py), only the
#: channel counts may change
GAN_GENERATOR_LAYERS = 9
GAN_DISCRIMINATOR_LAYERS = 11
WGAN_GENERATOR_LAYERS = 9
WGAN_CRITIC_LAYERS = 12


def _check_common(cfg: Any, n_gen: int, n_disc: int, disc_field: str) -> None:
    if len(cfg.generator_channels) != n_gen or any(c < 1 for c in cfg.generator_channels):
        raise ValueError(f"generator_channels needs {n_gen} positive channel counts, got {cfg.generator_channels}")
    disc = getattr(cfg, disc_field)
    if len(disc) != n_disc or any(c < 1 for c in disc):
        raise ValueError(f"{disc_field} needs {n_disc} positive channel counts, got {disc}")
    if cfg.noise_dim < 1 or cfg.batch_size < 1 or cfg.max_epochs < 0 or cfg.sample_batch_size < 1:
        raise ValueError("noise_dim, batch_size and sample_batch_size must be positive, max_epochs non-negative")
    if not 0 <= cfg.dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {cfg.dropout}")
    if getattr(cfg, "discriminator_dense_width", 1) < 1:
        raise ValueError(f"discriminator_dense_width must be positive, got {cfg.discriminator_dense_width}")
    if cfg.epoch_batches <= 0:
        raise ValueError(f"epoch_batches must be positive, got {cfg.epoch_batches}")


@dataclass(frozen=True)
class CrysTensGANConfig(ModelConfig):
    """``crystens_gan``: the vanilla GAN of Appendix B.1.

    Network (network.py :class:`~benchmark.models.crystens_gan.network.GANGenerator` and
    :class:`~benchmark.models.crystens_gan.network.GANDiscriminator`): ``noise_dim`` (128),
    ``generator_channels`` (the 9 transposed convolutions), ``discriminator_channels`` (the 11
    convolutions), the discriminator's ``dropout`` before its output and ``leaky_slope``; batch
    normalisation with ``bn_momentum`` (PyTorch's convention: the weight of the new batch, i.e.
    1 - Keras' momentum) and ``bn_eps``. ``discriminator_dense_width``: the first three widths of
    the discriminator's dense branch (1024 as released; the fourth is always 1024).
    ``discriminator_input_norm``: batch normalisation after the discriminator's first convolution
    and first dense layer (as released) or not (DCGAN's rule, see network.py).
    ``discriminator_batches``: ``separate`` updates the discriminator on a batch of real and then a
    batch of generated tensors (the released ``train_on_batch`` calls; each batch normalised on its
    own), ``joint`` on one batch holding both, so batch normalisation sees them together.

    Training: binary cross-entropy, Adam (``lr_generator``, ``lr_discriminator``, ``adam_beta1``,
    ``adam_beta2``, ``adam_eps``), ``batch_size``, ``max_epochs``; an epoch is
    ``epoch_batches x floor(N / batch_size)`` iterations (at least one), each drawing a batch of
    training tensors with replacement, as the released loop does (``bat_per_epoch // 2``: 0.5).

    Sampling: ``sample_batch_size`` tensors per generator forward (the only sampling field: it
    does not change which crystals a seed gives).
    """

    noise_dim: int = 128
    generator_channels: tuple[int, ...] = (256, 128, 128, 128, 64, 64, 64, 64, 32)
    discriminator_channels: tuple[int, ...] = (32, 32, 32, 32, 64, 64, 64, 64, 64, 128, 256)
    discriminator_dense_width: int = 1024
    discriminator_input_norm: bool = True
    discriminator_batches: Literal["separate", "joint"] = "separate"
    dropout: float = 0.25
    leaky_slope: float = 0.2
    bn_momentum: float = 0.01
    bn_eps: float = 1e-3
    lr_generator: float = 1e-5
    lr_discriminator: float = 1e-5
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-7
    batch_size: int = 64
    max_epochs: int = 100
    epoch_batches: float = 0.5
    sample_batch_size: int = 256

    sampling_fields: ClassVar[frozenset[str]] = frozenset({"sample_batch_size"})
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # minutes on a 2-core CPU, and learning within them: the same layers and spatial sizes with
        # a sixteenth to a thirty-second of the channels and 64-wide dense hidden layers in the
        # discriminator (its first dense layer, 16,384 x 1024 as released, alone made each
        # checkpoint ~340 MB); a DCGAN learning rate (1e-5 needs the paper's ~40,000 iterations)
        # and faster batch-norm statistics; and the two departures that made the GAN learn on 7
        # perovskites in 150 iterations (header distance 0.242 -> 0.022, mean KS 0.98 -> 0.80; with
        # the released discriminator the header moved away, 0.242 -> 0.313 in 60): no batch norm
        # after the discriminator's input layers and one discriminator batch of real and generated
        # tensors (network.py and the fields' docs say why). 2 epochs of 64 batches of 8.
        "smoke": {
            "generator_channels": (8, 4, 4, 4, 2, 2, 2, 2, 2),
            "discriminator_channels": (2, 2, 2, 2, 4, 4, 4, 4, 4, 8, 16),
            "discriminator_dense_width": 64, "discriminator_input_norm": False, "discriminator_batches": "joint",
            "bn_momentum": 0.1, "lr_generator": 1e-3, "lr_discriminator": 1e-3, "adam_beta1": 0.5,
            "batch_size": 8, "max_epochs": 2, "epoch_batches": 0.5, "sample_batch_size": 64,
        },
    }

    def __post_init__(self) -> None:
        _check_common(self, GAN_GENERATOR_LAYERS, GAN_DISCRIMINATOR_LAYERS, "discriminator_channels")


@dataclass(frozen=True)
class CrysTensWGANConfig(ModelConfig):
    """``crystens_wgan``: the Wasserstein GAN with gradient penalty of Appendix B.2.

    Network (network.py :class:`~benchmark.models.crystens_gan.network.WGANGenerator` and
    :class:`~benchmark.models.crystens_gan.network.WGANCritic`): ``noise_dim``,
    ``generator_channels`` (9 transposed convolutions), ``critic_channels`` (12 convolutions),
    ``spectral_norm`` on every convolution and dense layer, layer normalisation over the channels
    (``ln_eps``) in the critic when ``critic_norm`` is ``layer`` (after its first convolution too
    when ``critic_input_norm``, as released; see network.py for why that layer sees only signs;
    ``none``: no normalisation in the critic), ``generator_norm`` in the generator (``batch``: the paper's "mixture
    of layer normalization and batch normalization"; ``layer``: the released script), LeakyReLU
    (``leaky_slope``) in both, ``dropout`` before the critic's linear output.

    Training: the critic loss ``-D(x) + D(G(z)) + gp_weight (||grad D(x_hat)|| - 1)^2`` with
    ``x_hat`` a uniform random mix of a real and a generated tensor, ``n_critic`` critic updates per
    generator update (generator loss ``-D(G(z))``), Adam (``lr_generator``, ``lr_critic``,
    ``adam_beta1``, ``adam_beta2``, ``adam_eps``), ``batch_size``, ``max_epochs``; an epoch is
    ``epoch_batches x floor(N / batch_size)`` critic updates (at least ``n_critic``, rounded up to a
    multiple of it), each on a batch drawn with replacement: 5 (= n_critic) is the released epoch of
    ``floor(N / batch)`` generator updates.

    Sampling: ``sample_batch_size`` tensors per generator forward.
    """

    noise_dim: int = 128
    generator_channels: tuple[int, ...] = (128, 128, 64, 64, 32, 32, 32, 32, 32)
    critic_channels: tuple[int, ...] = (16, 16, 16, 16, 16, 16, 32, 32, 32, 64, 64, 128)
    critic_norm: Literal["layer", "none"] = "layer"
    critic_input_norm: bool = True
    spectral_norm: bool = True
    generator_norm: Literal["batch", "layer"] = "batch"
    dropout: float = 0.25
    leaky_slope: float = 0.2
    ln_eps: float = 1e-3
    bn_momentum: float = 0.01
    bn_eps: float = 1e-3
    gp_weight: float = 10.0
    n_critic: int = 5
    lr_generator: float = 1e-4
    lr_critic: float = 1e-4
    adam_beta1: float = 0.0
    adam_beta2: float = 0.9
    adam_eps: float = 1e-7
    batch_size: int = 64
    max_epochs: int = 100
    epoch_batches: float = 5.0
    sample_batch_size: int = 256

    sampling_fields: ClassVar[frozenset[str]] = frozenset({"sample_batch_size"})
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # minutes on a 2-core CPU, and learning within them: the same layers with an eighth of the
        # channels, batches of 8, one epoch of 128 critic / 64 generator updates on perov_5_dev's
        # 1,024 crystals, and the departures that made the WGAN-GP learn on 7 perovskites in 150
        # critic updates (header distance 0.296 -> 0.076, mean KS 0.96 -> 0.90; with the released
        # critic, spectral normalisation and layer norm together, 100 updates gave 0.239 -> 0.221
        # and 300 updates 0.239 -> 0.213): no spectral normalisation and no normalisation in the
        # critic (WGAN-GP's own recipe, Gulrajani et al. 2017), layer norm in the generator (the
        # released script), two critic updates per generator update, Adam beta1 0.5 and larger
        # learning rates.
        "smoke": {
            "generator_channels": (16, 16, 8, 8, 4, 4, 4, 4, 4),
            "critic_channels": (4, 4, 4, 4, 4, 4, 8, 8, 8, 16, 16, 32),
            "spectral_norm": False, "critic_norm": "none", "generator_norm": "layer", "n_critic": 2,
            "adam_beta1": 0.5, "lr_generator": 5e-3, "lr_critic": 2e-3,
            "bn_momentum": 0.1, "batch_size": 8, "max_epochs": 1, "epoch_batches": 1.0, "sample_batch_size": 64,
        },
    }

    def __post_init__(self) -> None:
        _check_common(self, WGAN_GENERATOR_LAYERS, WGAN_CRITIC_LAYERS, "critic_channels")
        if self.n_critic < 1:
            raise ValueError(f"n_critic must be at least 1, got {self.n_critic}")
        if self.gp_weight < 0:
            raise ValueError(f"gp_weight must be non-negative, got {self.gp_weight}")


_KERAS_BN = "Keras BatchNormalization defaults (momentum 0.99, epsilon 1e-3), used without arguments"
_KERAS_ADAM = "Keras Adam defaults, used without arguments"

#: Every value of ``crystens_gan``'s ``paper`` preset with its source: ``{field: (value, source)}``.
PUBLISHED_GAN: dict[str, tuple[Any, str]] = {
    "noise_dim": (128, f"{PAPER} B.1 (latent dimension 128); {RELEASED_GAN}:308"),
    "generator_channels": ((256, 128, 128, 128, 64, 64, 64, 64, 32), f"{RELEASED_GAN}:142-171 (conv_norm Conv3DTranspose units)"),
    "discriminator_channels": ((32, 32, 32, 32, 64, 64, 64, 64, 64, 128, 256), f"{RELEASED_GAN}:91-107 (conv_norm Conv3D units)"),
    "discriminator_dense_width": (1024, f"{RELEASED_GAN}:86-89 (4 x dense_norm(y, 1024))"),
    "discriminator_input_norm": (True, f"{RELEASED_GAN}:44,67,86,91 (conv_norm / dense_norm: BatchNormalization after every layer, the first too)"),
    "discriminator_batches": ("separate", f"{RELEASED_GAN}:289,291 (d_model.train_on_batch on X_real, then on X_fake)"),
    "dropout": (0.25, f"{RELEASED_GAN}:113"),
    "leaky_slope": (0.2, f"{RELEASED_GAN}:38,63; {PAPER} B.1 (Leaky ReLU in the discriminator)"),
    "bn_momentum": (0.01, f"{RELEASED_GAN}:44,67 ({_KERAS_BN}: 1 - 0.99); {PAPER} B.1 (batch normalization in both)"),
    "bn_eps": (1e-3, f"{RELEASED_GAN}:44,67 ({_KERAS_BN})"),
    "lr_generator": (1e-5, f"{PAPER} B.1; {RELEASED_GAN}:200"),
    "lr_discriminator": (1e-5, f"{PAPER} B.1; {RELEASED_GAN}:117"),
    "adam_beta1": (0.9, f"{RELEASED_GAN}:117,200 ({_KERAS_ADAM})"),
    "adam_beta2": (0.999, f"{RELEASED_GAN}:117,200 ({_KERAS_ADAM})"),
    "adam_eps": (1e-7, f"{RELEASED_GAN}:117,200 ({_KERAS_ADAM})"),
    "batch_size": (64, f"{RELEASED_GAN}:269 (n_batch = 64; not in the paper)"),
    "max_epochs": (100, f"{PAPER} B.1; {RELEASED_GAN}:269"),
    "epoch_batches": (0.5, f"{RELEASED_GAN}:282-288 (bat_per_epoch // 2 batches drawn with replacement per epoch)"),
    "sample_batch_size": (256, "this project (batching only: the crystals of a seed do not depend on it)"),
}

#: Every value of ``crystens_wgan``'s ``paper`` preset with its source: ``{field: (value, source)}``.
PUBLISHED_WGAN: dict[str, tuple[Any, str]] = {
    "noise_dim": (128, f"{RELEASED_WGAN}:393 (noise_dim = 128; the paper gives 128 for B.1 only)"),
    "generator_channels": ((128, 128, 64, 64, 32, 32, 32, 32, 32), f"{RELEASED_WGAN}:263-271"),
    "critic_channels": ((16, 16, 16, 16, 16, 16, 32, 32, 32, 64, 64, 128), f"{RELEASED_WGAN}:234-245"),
    "critic_norm": ("layer", f"{PAPER} B.2 (layer normalization); {RELEASED_WGAN}:72 (LayerNormalization in conv_norm)"),
    "critic_input_norm": (True, f"{RELEASED_WGAN}:72,234 (conv_norm: LayerNormalization after every convolution, the first too)"),
    "spectral_norm": (True, f"{RELEASED_WGAN}:71,89,250,273 (tfa SpectralNormalization on every layer; not in the paper)"),
    # paper and code disagree: B.2 says "a mixture of layer normalization and batch normalization",
    # the released script has layer normalisation only. The paper is followed, read as the usual
    # WGAN-GP split (Gulrajani et al. 2017): layer norm in the critic, whose gradient penalty is per
    # sample, batch norm in the generator.
    "generator_norm": ("batch", f"{PAPER} B.2 (mixture of layer and batch normalization; {RELEASED_WGAN}:72,90 has LayerNormalization only)"),
    "dropout": (0.25, f"{RELEASED_WGAN}:248"),
    "leaky_slope": (0.2, f"{PAPER} B.2 (Leaky ReLU in both); {RELEASED_WGAN}:73,91"),
    "ln_eps": (1e-3, f"{RELEASED_WGAN}:72,90 (Keras LayerNormalization default epsilon, over the last axis: the channels)"),
    "bn_momentum": (0.01, f"{_KERAS_BN}: 1 - 0.99, as in {RELEASED_GAN}:44 (generator_norm = batch)"),
    "bn_eps": (1e-3, f"{_KERAS_BN}, as in {RELEASED_GAN}:44"),
    "gp_weight": (10.0, f"{PAPER} B.2 (lambda = 10); {RELEASED_WGAN}:319"),
    "n_critic": (5, f"{PAPER} B.2 (the critic trained 5 times as much); {RELEASED_WGAN}:335"),
    "lr_generator": (1e-4, f"{PAPER} B.2; {RELEASED_WGAN}:281,302"),
    "lr_critic": (1e-4, f"{PAPER} B.2; {RELEASED_WGAN}:281,301"),
    "adam_beta1": (0.0, f"{RELEASED_WGAN}:301-302"),
    "adam_beta2": (0.9, f"{RELEASED_WGAN}:301-302"),
    "adam_eps": (1e-7, f"{RELEASED_WGAN}:301-302 (Keras Adam default epsilon)"),
    # not in the paper; the released script takes --batch_size with no default. Its first version
    # (52396ab) fixed the noise batch at 64, and the critic mixes real and generated tensors sample by
    # sample, so that version ran only with --batch_size 64; the vanilla GAN uses 64 too.
    "batch_size": (64, "not in the paper; michaeldalverson/CrysTens@52396ab train_wasserstein_gan.py:397 NoiseGenerator(batch_size=64) (the later script takes it from the command line)"),
    "max_epochs": (100, f"{PAPER} B.2"),
    "epoch_batches": (5.0, f"{RELEASED_WGAN}:336-358 (an epoch: floor(N / batch) generator steps, n_critic real batches each)"),
    "sample_batch_size": (256, "this project (batching only: the crystals of a seed do not depend on it)"),
}
