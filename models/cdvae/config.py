"""The hyper-parameters of ``cdvae`` and ``cdvae_fourier``: one frozen dataclass, presets included.

:class:`CDVAEConfig` holds every hyper-parameter of the model: the network's (the network of
:mod:`benchmark.models.cdvae.network` is built from it, with the training split's lattice
statistics), the training loop's and the sampler's. DP-CDVAE's and Con-CDVAE's configs subclass it.
No torch here: the command line reads these classes to list a model's options.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from benchmark.models.base import ModelConfig

__all__ = ["CDVAEConfig", "CDVAEFourierConfig"]


@dataclass(frozen=True)
class CDVAEConfig(ModelConfig):
    """Every hyper-parameter of ``cdvae``; the defaults are the published ones (appendix D.4, B.3
    and the CDVAE configuration for Perov-5/MP-20; see the presets for the per-dataset values).

    Model sizes: ``latent_dim`` (z), ``hidden_dim`` and ``fc_num_layers`` (the MLP_AGG and property
    heads), ``max_atoms`` (N is classified over 0..max_atoms; larger training crystals are left
    out), ``max_atomic_num`` (element classes, types 1..max_atomic_num).

    Encoder, the periodic DimeNet++ (B.3; 2.2 M parameters at these values): ``encoder_hidden``,
    ``encoder_blocks`` and the other ``encoder_*`` sizes, its cutoff (Å) and envelope.

    Decoder, GemNet-T (:class:`benchmark.nn.gemnet.GemNetTDecoder`, 2.3 M parameters):
    ``decoder_hidden``, ``decoder_blocks`` and the other ``decoder_*`` sizes, its graph cutoff (Å)
    and neighbour cap (K = 20, B.2). CDVAE+Fourier (the ``cdvae_fourier`` plugin; DP-CDVAE, section
    S3 and Table III): ``decoder_fourier`` adds ``sin/cos(2^n pi x~)`` of the noisy fractional
    coordinates, n = ``fourier_n_min``..``fourier_n_max``, as decoder node inputs.

    Noise (D.4): ``num_noise_level`` geometric levels, coordinates ``sigma_begin`` -> ``sigma_end``
    (Å), types ``type_sigma_begin`` -> ``type_sigma_end``.

    Loss weights (Eq. 9, D.4): ``cost_*`` and ``beta`` (KL; 0.01 for Perov-5 and MP-20, 0.03 for
    Carbon-24). ``property`` names the crystal property the property head F(z) learns (for property
    optimisation, section 5.3; None: no head, see :attr:`predict_property`).

    Training (D.4): Adam (``lr``), reduce-on-plateau (``lr_factor``, ``lr_patience``, ``min_lr``),
    ``max_epochs``, ``batch_size``; the lattice is teacher-forced (``teacher_forcing_lattice``) for
    the first ``teacher_forcing_max_epoch`` epochs; optional ``gradient_clip_val``.

    Sampling (Algorithm 1, the ``sampling_fields``): ``n_step_each`` Langevin steps per level with
    step size ``step_lr``.
    """

    latent_dim: int = 256
    hidden_dim: int = 256
    fc_num_layers: int = 1
    max_atoms: int = 20
    max_atomic_num: int = 100
    # encoder: periodic DimeNet++
    encoder_hidden: int = 128
    encoder_blocks: int = 4
    encoder_int_emb_size: int = 64
    encoder_basis_emb_size: int = 8
    encoder_out_emb_size: int = 256
    encoder_num_spherical: int = 7
    encoder_num_radial: int = 6
    encoder_cutoff: float = 7.0
    encoder_envelope_exponent: int = 5
    # decoder: GemNet-T
    decoder_hidden: int = 128
    decoder_blocks: int = 3
    decoder_cutoff: float = 7.0
    decoder_max_neighbors: int = 20
    decoder_emb_size_trip: int = 64
    decoder_emb_size_rbf: int = 16
    decoder_emb_size_cbf: int = 16
    decoder_emb_size_bil_trip: int = 64
    decoder_num_spherical: int = 7
    decoder_num_radial: int = 6
    decoder_num_before_skip: int = 1
    decoder_num_after_skip: int = 2
    decoder_num_concat: int = 1
    decoder_num_atom: int = 3
    decoder_envelope_exponent: int = 5
    decoder_radial_basis: Literal["bessel", "gaussian"] = "bessel"
    decoder_type_head: Literal["output_blocks", "last_hidden"] = "output_blocks"
    decoder_periodic_triplets: bool = True
    # noise levels
    num_noise_level: int = 50
    sigma_begin: float = 10.0
    sigma_end: float = 0.01
    type_sigma_begin: float = 5.0
    type_sigma_end: float = 0.01
    # loss (Eq. 9)
    beta: float = 0.01
    cost_natom: float = 1.0
    cost_lattice: float = 10.0
    cost_composition: float = 1.0
    cost_coord: float = 10.0
    cost_type: float = 1.0
    cost_property: float = 1.0
    property: str | None = None
    # training
    max_epochs: int = 1000
    batch_size: int = 256
    lr: float = 1e-3
    lr_factor: float = 0.6
    lr_patience: int = 30
    min_lr: float = 1e-4
    teacher_forcing_lattice: bool = True
    teacher_forcing_max_epoch: int = 500
    gradient_clip_val: float | None = None
    # sampling (Algorithm 1)
    n_step_each: int = 100
    step_lr: float = 1e-4
    # CDVAE+Fourier (the cdvae_fourier plugin): Fourier features of the noisy coordinates as
    # decoder node inputs (DP-CDVAE, section S3 and Table III)
    decoder_fourier: bool = False
    fourier_n_min: int = 3
    fourier_n_max: int = 8

    sampling_fields: ClassVar[frozenset[str]] = frozenset({"n_step_each", "step_lr"})
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "smoke": {
            "latent_dim": 32, "hidden_dim": 64, "encoder_hidden": 32, "encoder_blocks": 2, "decoder_hidden": 32,
            "decoder_blocks": 2, "decoder_max_neighbors": 12, "num_noise_level": 10, "n_step_each": 10,
            "max_epochs": 15, "batch_size": 64, "lr_patience": 5, "teacher_forcing_max_epoch": 10,
        },
    }
    # CDVAE's per-dataset settings: beta (D.4), the largest cell, the property head's target, epochs
    dataset_presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "paper": {
            "perov_5": {"max_atoms": 20, "property": "heat_ref", "max_epochs": 3000},
            "perov_5_dev": {"max_atoms": 20, "property": "heat_ref", "max_epochs": 3000},
            "carbon_24": {"max_atoms": 24, "beta": 0.03, "property": "energy_per_atom", "max_epochs": 4000},
            "mp_20": {"max_atoms": 20, "property": "formation_energy_per_atom", "max_epochs": 1000},
            "mp_20_sample": {"max_atoms": 20, "property": "formation_energy_per_atom"},
        },
        "smoke": {
            "perov_5": {"max_atoms": 20, "property": "heat_ref"},
            "perov_5_dev": {"max_atoms": 20, "property": "heat_ref"},
            "carbon_24": {"max_atoms": 24, "beta": 0.03, "property": "energy_per_atom"},
            "mp_20": {"max_atoms": 20, "property": "formation_energy_per_atom"},
            "mp_20_sample": {"max_atoms": 20, "property": "formation_energy_per_atom"},
        },
    }

    def __post_init__(self) -> None:
        if self.num_noise_level < 1:
            raise ValueError("num_noise_level must be at least 1")
        for lo, hi, what in ((self.sigma_end, self.sigma_begin, "sigma"),
                             (self.type_sigma_end, self.type_sigma_begin, "type_sigma")):
            if not 0 < lo <= hi:
                raise ValueError(f"need 0 < {what}_end <= {what}_begin, got {lo} and {hi}")
        if self.max_atoms < 1 or self.max_atomic_num < 1:
            raise ValueError("max_atoms and max_atomic_num must be positive")
        if self.fourier_n_min > self.fourier_n_max:
            raise ValueError("need fourier_n_min <= fourier_n_max")

    # ``property`` is a field here, so the decorator is spelt builtins.property
    @builtins.property
    def predict_property(self) -> bool:
        """Whether the network has the property head F(z): a ``property`` is named."""
        return self.property is not None

    @builtins.property
    def num_fourier(self) -> int:
        """Fourier features per atom: sin and cos for each of the 3 coordinates and each n."""
        return 6 * (self.fourier_n_max - self.fourier_n_min + 1)


@dataclass(frozen=True)
class CDVAEFourierConfig(CDVAEConfig):
    """``cdvae_fourier``: CDVAE's hyper-parameters with the Fourier node features switched on."""

    decoder_fourier: bool = True
