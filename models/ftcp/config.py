"""The hyper-parameters of ``ftcp``: the FTCP variational autoencoder (Ren et al., Matter 5, 314,
2022) as released in PV-Lab/FTCP (TensorFlow 1.15 / Keras 2.3.1). No torch here: the command line
reads this class to list the model's options.

Sources. :data:`PUBLISHED` gives the source of every value of the ``paper`` preset, a release file
and line (:data:`RELEASED`, the newest snapshot) or, for what neither the paper nor the release
decides for the benchmark's datasets, this project, saying so. ``tests/models/test_ftcp.py`` checks
the resolved preset against it (:func:`benchmark.testing.check_published`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from benchmark.models.base import ModelConfig

__all__ = ["PUBLISHED", "RELEASED", "FTCPConfig"]

#: released code: PV-Lab/FTCP, newest snapshot (a8ac7b0); model.py and main.py as cited below
RELEASED = "PV-Lab/FTCP@a8ac7b0"
CDVAE = "Xie et al. ICLR 2022 (CDVAE)"

#: the property each benchmark dataset's target column is (datasets/plugin.py ``target``): the
#: column the property branch learns, as CDVAE's property head does for these datasets
_DATASET_PROPERTIES = {
    "perov_5": ("heat_ref",),
    "perov_5_dev": ("heat_ref",),
    "carbon_24": ("energy_per_atom",),
    "mp_20": ("formation_energy_per_atom",),
    "mp_20_sample": ("formation_energy_per_atom",),
}


@dataclass(frozen=True)
class FTCPConfig(ModelConfig):
    """``ftcp``: the FTCP VAE.

    Representation (:mod:`benchmark.representations.ftcp`): ``variant`` (``ftcp``, the release's
    real + reciprocal-space array, or ``ftcp_sf``), ``max_elms`` / ``max_sites`` (the array's element
    columns and site rows; None: the training split's own limits, ``dataset_limits``).

    Network (network.py): a 1-D convolutional encoder over the array's rows with its columns as
    channels, ``conv_filters`` / ``kernel_sizes`` / ``strides`` (SAME padding, batch norm with
    ``bn_momentum`` (PyTorch's convention, 1 - Keras') and ``bn_eps``, LeakyReLU ``leaky_slope``), a
    sigmoid dense layer of ``dense_width``, mean and log-variance of ``latent_dim``; the property
    branch ReLU(mu) -> ``property_widths`` (ReLU) -> one sigmoid output per property; the decoder
    mirrors the encoder with transposed convolutions and a sigmoid output.

    Loss (model.py:114-124): ``sum (x - x_hat)^2`` over the batch and array + ``coeff_kl`` x the
    batch mean of the per-sample KL averaged over latent dimensions + ``coeff_prop`` x ``sum (y -
    y_hat)^2`` over the batch, with y the min-max scaled ``properties`` (crystal property columns;
    ``num_atoms`` is computed). Empty ``properties``: no property branch and no property term (the
    model then cannot ``optimize`` or ``conditional_sample``).

    Training (main.py:45-61): RMSprop (``lr``, ``rmsprop_rho``, ``rmsprop_eps``), ``batch_size``,
    ``max_epochs``, shuffled; Keras' ReduceLROnPlateau on the epoch's training loss
    (``plateau_factor``, ``plateau_patience``, ``plateau_min_lr``, ``plateau_min_delta``) and its
    LearningRateScheduler setting the rate to ``lr_schedule_values[i]`` at the start of epoch
    ``lr_schedule_epochs[i]`` (0-based).

    Sampling (the ``sampling_fields``): ``sample_batch_size`` latents per decoder forward (batching
    only); inverse design (main.py:144-162) takes the ``design_nearest`` training crystals whose
    property is nearest the target and perturbs their latents with N(0, 1) x ``design_scale``.
    """

    variant: Literal["ftcp", "ftcp_sf"] = "ftcp"
    max_elms: int | None = None
    max_sites: int | None = None
    latent_dim: int = 256
    conv_filters: tuple[int, ...] = (32, 64, 128)
    kernel_sizes: tuple[int, ...] = (5, 3, 3)
    strides: tuple[int, ...] = (2, 2, 1)
    dense_width: int = 1024
    property_widths: tuple[int, ...] = (128, 32)
    leaky_slope: float = 0.2
    bn_momentum: float = 0.01
    bn_eps: float = 1e-3
    properties: tuple[str, ...] = ()
    coeff_kl: float = 2.0
    coeff_prop: float = 10.0
    lr: float = 5e-4
    rmsprop_rho: float = 0.9
    rmsprop_eps: float = 1e-7
    batch_size: int = 256
    max_epochs: int = 200
    plateau_factor: float = 0.3
    plateau_patience: int = 4
    plateau_min_lr: float = 1e-6
    plateau_min_delta: float = 1e-4
    lr_schedule_epochs: tuple[int, ...] = (50, 100)
    lr_schedule_values: tuple[float, ...] = (1e-4, 5e-5)
    design_nearest: int = 10
    design_scale: float = 0.6
    sample_batch_size: int = 1024

    sampling_fields: ClassVar[frozenset[str]] = frozenset({"design_nearest", "design_scale", "sample_batch_size"})
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # two minutes on an idle 2-core CPU for perov_5_dev's 1,024 crystals: the released
        # convolutions (with a quarter of the filters the decoder's last layer, 8 channels for 62
        # columns, could not fit 16 perovskites: identical angles and coordinates for all), a
        # 256-wide dense layer and a 64-d latent; batches of 64 (16 steps an epoch instead of 4)
        # for 60 epochs, no step schedule (its first step is at epoch 50 of the released 200), and
        # batch-norm statistics that follow the batches 10x faster (Keras' 0.99 leaves them 9% at
        # their initial values after 240 steps, and sampling and reconstruction read them).
        # Measured on perov_5_dev (fit 111 s idle, 200 crystals of each split reconstructed):
        # 15 epochs: loss 102,187 -> 2,410, 0 % matched; 60 epochs: loss -> 278, 94.5 % of train
        # and 70 % of val matched; 100 epochs: 98 % / 71 % (not worth the time)
        "smoke": {
            "latent_dim": 64, "dense_width": 256, "batch_size": 64, "max_epochs": 60, "bn_momentum": 0.1,
            "lr_schedule_epochs": (), "lr_schedule_values": (), "sample_batch_size": 256,
        },
    }
    dataset_presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "paper": {name: {"properties": props} for name, props in _DATASET_PROPERTIES.items()},
        "smoke": {
            **{name: {"properties": props} for name, props in _DATASET_PROPERTIES.items()},
            # 69 crystals are one batch of 64: 60 epochs were 60 steps, after which every designed
            # crystal decoded to a collapsed cell (volume ~1e-16 A^3). Batches of 16 for 150 epochs
            # (750 steps, 101 s wall): 20 designed crystals at formation energy -2 eV/atom, 20 %
            # valid, 60 % within 0.5 eV/atom by the CGCNN checker (median -2.21)
            "mp_20_sample": {"properties": _DATASET_PROPERTIES["mp_20_sample"], "batch_size": 16, "max_epochs": 150},
        },
    }

    def __post_init__(self) -> None:
        n = len(self.conv_filters)
        if n < 1 or len(self.kernel_sizes) != n or len(self.strides) != n:
            raise ValueError(f"conv_filters, kernel_sizes and strides need one value per layer, got {self.conv_filters}, "
                             f"{self.kernel_sizes}, {self.strides}")
        if any(v < 1 for v in (*self.conv_filters, *self.kernel_sizes, *self.strides, *self.property_widths)):
            raise ValueError("filters, kernel sizes, strides and property widths must be positive")
        if min(self.latent_dim, self.dense_width, self.batch_size, self.sample_batch_size, self.design_nearest) < 1 or self.max_epochs < 0:
            raise ValueError("latent_dim, dense_width, batch_size, sample_batch_size and design_nearest must be positive, max_epochs non-negative")
        for name in ("max_elms", "max_sites"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive (or none: the training split's), got {value}")
        if len(self.lr_schedule_epochs) != len(self.lr_schedule_values):
            raise ValueError("lr_schedule_epochs and lr_schedule_values need the same length")
        if not 0 < self.plateau_factor < 1 or self.plateau_patience < 1:
            raise ValueError("plateau_factor must be in (0, 1) and plateau_patience at least 1")
        if len(set(self.properties)) != len(self.properties):
            raise ValueError(f"properties repeats a name: {self.properties}")
        if self.design_scale < 0:
            raise ValueError(f"design_scale must be non-negative, got {self.design_scale}")

    @property
    def stride_product(self) -> int:
        """How much the encoder shortens the rows (4 as released: main.py pads them to a multiple)."""
        out = 1
        for s in self.strides:
            out *= s
        return out


_KERAS_BN = "Keras 2.3.1 BatchNormalization defaults (momentum 0.99, epsilon 1e-3), used without arguments"

#: Every value of the ``paper`` preset with its source: ``{field: (value, source)}``.
PUBLISHED: dict[str, tuple[Any, str]] = {
    "variant": ("ftcp", f"{RELEASED} main.py:25 (FTCP_represent: real and reciprocal space)"),
    "max_elms": (None, f"{RELEASED} main.py:17-19 set max_elms 4 and max_sites 40 as the limits of its own Materials Project "
                       f"query; {CDVAE} does not give those it used, so each benchmark split's own limits are used"),
    "max_sites": (None, f"{RELEASED} main.py:19 (see max_elms); the training split's largest crystal"),
    "latent_dim": (256, f"{RELEASED} model.py:17"),
    "conv_filters": ((32, 64, 128), f"{RELEASED} model.py:18,46,49,52 (max_filters 128: //4, //2, x1)"),
    "kernel_sizes": ((5, 3, 3), f"{RELEASED} model.py:19"),
    "strides": ((2, 2, 1), f"{RELEASED} model.py:20"),
    "dense_width": (1024, f"{RELEASED} model.py:56 (Dense(1024, activation='sigmoid'))"),
    "property_widths": ((128, 32), f"{RELEASED} model.py:71-72"),
    "leaky_slope": (0.2, f"{RELEASED} model.py:48,51,54"),
    "bn_momentum": (0.01, f"{RELEASED} model.py:47,50,53,94,97,101 ({_KERAS_BN}: 1 - 0.99)"),
    "bn_eps": (1e-3, f"{RELEASED} model.py:47 ({_KERAS_BN})"),
    "properties": ((), f"the dataset's target column (datasets/plugin.py), set per dataset in dataset_presets; {RELEASED} "
                      "main.py:31 learns formation_energy_per_atom and band_gap of its own data"),
    "coeff_kl": (2.0, f"{RELEASED} main.py:43 (coeffs=(2, 10)); model.py:8,13"),
    "coeff_prop": (10.0, f"{RELEASED} main.py:43 (coeffs=(2, 10)); model.py:8,13"),
    "lr": (5e-4, f"{RELEASED} main.py:54 (optimizers.rmsprop(lr=5e-4))"),
    "rmsprop_rho": (0.9, f"{RELEASED} main.py:54 (Keras 2.3.1 RMSprop default rho)"),
    "rmsprop_eps": (1e-7, f"{RELEASED} main.py:54 (Keras 2.3.1 RMSprop epsilon None -> K.epsilon() = 1e-7)"),
    "batch_size": (256, f"{RELEASED} main.py:58"),
    "max_epochs": (200, f"{RELEASED} main.py:59"),
    "plateau_factor": (0.3, f"{RELEASED} main.py:45"),
    "plateau_patience": (4, f"{RELEASED} main.py:45"),
    "plateau_min_lr": (1e-6, f"{RELEASED} main.py:45"),
    "plateau_min_delta": (1e-4, f"{RELEASED} main.py:45 (Keras 2.3.1 ReduceLROnPlateau default min_delta)"),
    "lr_schedule_epochs": ((50, 100), f"{RELEASED} main.py:46-52"),
    "lr_schedule_values": ((1e-4, 5e-5), f"{RELEASED} main.py:46-52"),
    "design_nearest": (10, f"{RELEASED} main.py:147 (Nsamples = 10)"),
    "design_scale": (0.6, f"{RELEASED} main.py:155 (Lp_scale = 0.6)"),
    "sample_batch_size": (1024, "this project (batching only: the crystals of a seed do not depend on it)"),
}
