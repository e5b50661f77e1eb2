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

__all__ = ["PUBLISHED", "PUBLISHED_FOURIER", "CDVAEConfig", "CDVAEFourierConfig"]


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
    the first ``teacher_forcing_max_epoch`` epochs (inclusive); afterwards ``decoder_lattice``
    says whether the decoder's losses reach the lattice head (``released``) or not (``detached``);
    ``gradient_clip_val`` and ``gradient_clip_algorithm`` (by value, 0.5, as released).

    Sampling (Algorithm 1, the ``sampling_fields``): ``n_step_each`` Langevin steps per level with
    step size ``step_lr``; ``latent_from``: encoded crystals (reconstruction, the start of property
    optimisation) are decoded from a draw of q(z | M) (``sample``, the released evaluate.py) or its
    mean; ``optimize_decode``: at which optimisation steps crystals are decoded
    (:func:`benchmark.models.cdvae.network.decode_steps`).

    The defaults and the ``paper`` preset are the released model (txie-93/cdvae, which fixes many
    settings the paper leaves open); :data:`PUBLISHED` gives the source of every value, and a test
    checks the resolved ``paper`` preset of each dataset against it. Where paper and code disagree,
    the table says which was followed and why.
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
    decoder_min_distance: float = 0.01
    decoder_emb_size_trip: int = 64
    decoder_emb_size_rbf: int = 16
    decoder_emb_size_cbf: int = 16
    decoder_emb_size_bil_trip: int = 64
    decoder_num_spherical: int = 7
    decoder_num_radial: int = 128
    decoder_num_before_skip: int = 1
    decoder_num_after_skip: int = 2
    decoder_num_concat: int = 1
    decoder_num_atom: int = 3
    decoder_envelope_exponent: int = 5
    decoder_radial_basis: Literal["bessel", "gaussian"] = "gaussian"
    decoder_type_head: Literal["output_blocks", "last_hidden"] = "last_hidden"
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
    decoder_lattice: Literal["released", "detached"] = "released"
    gradient_clip_val: float | None = 0.5
    gradient_clip_algorithm: Literal["norm", "value"] = "value"
    # DP-CDVAE's coordinate-weight boost (released mul_cost_coord_epoch); None: off, as in CDVAE
    coord_boost_epoch: int | None = None
    coord_boost: float = 10.0
    # sampling (Algorithm 1) and how encoded crystals are decoded
    n_step_each: int = 100
    step_lr: float = 1e-4
    latent_from: Literal["sample", "mean"] = "sample"
    optimize_decode: Literal["released", "even"] = "released"
    # CDVAE+Fourier (the cdvae_fourier plugin): Fourier features of the noisy coordinates as
    # decoder node inputs (DP-CDVAE, section S3 and Table III)
    decoder_fourier: bool = False
    fourier_n_min: int = 3
    fourier_n_max: int = 8

    sampling_fields: ClassVar[frozenset[str]] = frozenset({"n_step_each", "step_lr", "latent_from", "optimize_decode"})
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # minutes on a CPU; the decoder, clipping and decoding choices this project used before the
        # released ones became the defaults (Bessel basis, output-block type logits, no clipping,
        # reconstruction from the mean, evenly spaced decodes) stay here, so smoke numbers and the
        # learning tests keep their meaning
        "smoke": {
            "latent_dim": 32, "hidden_dim": 64, "encoder_hidden": 32, "encoder_blocks": 2, "decoder_hidden": 32,
            "decoder_blocks": 2, "decoder_max_neighbors": 12, "num_noise_level": 10, "n_step_each": 10,
            "max_epochs": 15, "batch_size": 64, "lr_patience": 5, "teacher_forcing_max_epoch": 10,
            "decoder_radial_basis": "bessel", "decoder_num_radial": 6, "decoder_type_head": "output_blocks",
            "gradient_clip_val": None, "gradient_clip_algorithm": "norm", "latent_from": "mean", "optimize_decode": "even",
            "decoder_lattice": "detached",
        },
    }
    # CDVAE's per-dataset settings (sources: PUBLISHED below). The released code trains the
    # property head only for property optimisation (``model.predict_property=True``), so ``paper``
    # has none: add ``--set model.property=<target>`` for that task. smoke keeps one, so one smoke
    # model serves every task.
    dataset_presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "paper": {
            "perov_5": {"max_atoms": 20, "max_epochs": 3000, "teacher_forcing_max_epoch": 1500, "batch_size": 512},
            "perov_5_dev": {"max_atoms": 20, "max_epochs": 3000, "teacher_forcing_max_epoch": 1500, "batch_size": 512},
            "carbon_24": {"max_atoms": 24, "beta": 0.03, "max_epochs": 4000, "teacher_forcing_max_epoch": 1000},
            "mp_20": {"max_atoms": 20, "max_epochs": 1000, "teacher_forcing_max_epoch": 500},
            "mp_20_sample": {"max_atoms": 20, "max_epochs": 1000, "teacher_forcing_max_epoch": 500},
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
        if self.gradient_clip_val is not None and self.gradient_clip_val <= 0:
            raise ValueError("gradient_clip_val must be positive (or none)")

    # ``property`` is a field here, so the decorator is spelt builtins.property
    @builtins.property
    def predict_property(self) -> bool:
        """Whether the network has the property head F(z): a ``property`` is named."""
        return self.property is not None

    @builtins.property
    def num_fourier(self) -> int:
        """Fourier features per atom: sin and cos for each of the 3 coordinates and each n."""
        return 6 * (self.fourier_n_max - self.fourier_n_min + 1)


RELEASED = "txie-93/cdvae@f857f59"
PAPER = "Xie et al., ICLR 2022"

#: Every value the ``paper`` preset fixes, with its source: ``{dataset: {field: (value, source)}}``;
#: ``"*"`` holds the values of every dataset. ``tests/models/test_cdvae_model.py`` resolves the
#: preset for each dataset and compares it with this table.
PUBLISHED: dict[str, dict[str, tuple[Any, str]]] = {
    "*": {
        "latent_dim": (256, f"{RELEASED} conf/model/vae.yaml:3; {PAPER} D.4"),
        "hidden_dim": (256, f"{RELEASED} conf/model/vae.yaml:2"),
        "fc_num_layers": (1, f"{RELEASED} conf/model/vae.yaml:4"),
        "encoder_hidden": (128, f"{RELEASED} conf/model/encoder/dimenet.yaml (hidden_channels)"),
        "encoder_blocks": (4, f"{RELEASED} conf/model/encoder/dimenet.yaml (num_blocks)"),
        "encoder_int_emb_size": (64, f"{RELEASED} conf/model/encoder/dimenet.yaml"),
        "encoder_basis_emb_size": (8, f"{RELEASED} conf/model/encoder/dimenet.yaml"),
        "encoder_out_emb_size": (256, f"{RELEASED} conf/model/encoder/dimenet.yaml (out_emb_channels)"),
        "encoder_num_spherical": (7, f"{RELEASED} conf/model/encoder/dimenet.yaml"),
        "encoder_num_radial": (6, f"{RELEASED} conf/model/encoder/dimenet.yaml"),
        "encoder_cutoff": (7.0, f"{RELEASED} conf/model/encoder/dimenet.yaml"),
        "encoder_envelope_exponent": (5, f"{RELEASED} conf/model/encoder/dimenet.yaml"),
        "decoder_hidden": (128, f"{RELEASED} conf/model/decoder/gemnet.yaml (hidden_dim)"),
        "decoder_blocks": (3, f"{RELEASED} cdvae/pl_modules/gemnet/gemnet.py:99-126 (GemNetT default)"),
        "decoder_cutoff": (7.0, f"{RELEASED} conf/model/vae.yaml:17 (radius)"),
        "decoder_max_neighbors": (20, f"{RELEASED} conf/model/vae.yaml:16; {PAPER} B.2 (K = 20)"),
        "decoder_min_distance": (0.01, f"{RELEASED} cdvae/common/data_utils.py:434-437 (radius_graph_pbc drops pairs with d^2 <= 1e-4)"),
        "decoder_num_spherical": (7, f"{RELEASED} gemnet.py:99-126 (GemNetT default)"),
        "decoder_num_radial": (128, f"{RELEASED} gemnet.py:104 (GemNetT default num_radial)"),
        "decoder_radial_basis": ("gaussian", f"{RELEASED} gemnet.py:119, radial_basis.py:189 (GaussianSmearing, 128 on d/cutoff)"),
        "decoder_type_head": ("last_hidden", f"{RELEASED} cdvae/pl_modules/decoder.py:43,71 (fc_atom = Linear(128, 100) on the last h)"),
        "decoder_emb_size_trip": (64, f"{RELEASED} gemnet.py:99-126"),
        "decoder_emb_size_rbf": (16, f"{RELEASED} gemnet.py:99-126"),
        "decoder_emb_size_cbf": (16, f"{RELEASED} gemnet.py:99-126"),
        "decoder_emb_size_bil_trip": (64, f"{RELEASED} gemnet.py:99-126"),
        "decoder_envelope_exponent": (5, f"{RELEASED} gemnet.py:99-126"),
        "decoder_num_before_skip": (1, f"{RELEASED} gemnet.py:99-126"),
        "decoder_num_after_skip": (2, f"{RELEASED} gemnet.py:99-126"),
        "decoder_num_concat": (1, f"{RELEASED} gemnet.py:99-126"),
        "decoder_num_atom": (3, f"{RELEASED} gemnet.py:99-126"),
        "decoder_periodic_triplets": (True, f"{RELEASED} gemnet.py:263-292 (only an edge's own id is excluded: periodic images kept)"),
        "decoder_fourier": (False, "CDVAE has no Fourier node features (DP-CDVAE S3 adds them: cdvae_fourier)"),
        "max_atomic_num": (100, f"{RELEASED} cdvae/pl_modules/decoder.py:43 (Linear(hidden, MAX_ATOMIC_NUM = 100))"),
        "num_noise_level": (50, f"{RELEASED} conf/model/vae.yaml:22; {PAPER} D.4"),
        "sigma_begin": (10.0, f"{RELEASED} conf/model/vae.yaml:18; {PAPER} D.4"),
        "sigma_end": (0.01, f"{RELEASED} conf/model/vae.yaml:19; {PAPER} D.4"),
        "type_sigma_begin": (5.0, f"{RELEASED} conf/model/vae.yaml:20; {PAPER} D.4"),
        "type_sigma_end": (0.01, f"{RELEASED} conf/model/vae.yaml:21; {PAPER} D.4"),
        "cost_natom": (1.0, f"{RELEASED} conf/model/vae.yaml:6; {PAPER} D.4"),
        "cost_coord": (10.0, f"{RELEASED} conf/model/vae.yaml:7; {PAPER} D.4"),
        "cost_type": (1.0, f"{RELEASED} conf/model/vae.yaml:8; {PAPER} D.4"),
        "cost_lattice": (10.0, f"{RELEASED} conf/model/vae.yaml:9; {PAPER} D.4"),
        "cost_composition": (1.0, f"{RELEASED} conf/model/vae.yaml:10; {PAPER} D.4"),
        "cost_property": (1.0, f"{RELEASED} conf/model/vae.yaml:12"),
        "property": (None, f"{RELEASED} conf/model/vae.yaml:23 (predict_property: False; True only for the optimisation model)"),
        "lr": (1e-3, f"{RELEASED} conf/optim/default.yaml:3-8; {PAPER} D.4"),
        "lr_factor": (0.6, f"{RELEASED} conf/optim/default.yaml:12-15; {PAPER} D.4"),
        "lr_patience": (30, f"{RELEASED} conf/optim/default.yaml:12-15; {PAPER} D.4"),
        "min_lr": (1e-4, f"{RELEASED} conf/optim/default.yaml:12-15; {PAPER} D.4"),
        "teacher_forcing_lattice": (True, f"{RELEASED} conf/model/vae.yaml:14"),
        "decoder_lattice": ("released", f"{RELEASED} cdvae/pl_modules/model.py:345-352 (predicted cell not detached), 492-498 (coord target in the true cell)"),
        "gradient_clip_val": (0.5, f"{RELEASED} conf/train/default.yaml:15"),
        "gradient_clip_algorithm": ("value", f"{RELEASED} conf/train/default.yaml:16"),
        "coord_boost_epoch": (None, "not in CDVAE (DP-CDVAE's mul_cost_coord_epoch)"),
        "coord_boost": (10.0, "unused while coord_boost_epoch is None (DP-CDVAE's factor)"),
        "n_step_each": (100, f"{RELEASED} scripts/evaluate.py:264-276; {PAPER} Algorithm 1 (T = 100)"),
        "step_lr": (1e-4, f"{RELEASED} scripts/evaluate.py:264-276; {PAPER} D.4 (epsilon = 1e-4)"),
        "latent_from": ("sample", f"{RELEASED} scripts/evaluate.py:38 and the optimisation start (_, _, z = model.encode(batch))"),
        "optimize_decode": ("released", f"{RELEASED} scripts/evaluate.py:144-172 (decodes at i % (5000 // 9) == 0 or i == 4999)"),
    },
    "perov_5": {
        "max_atoms": (20, f"{RELEASED} conf/data/perov.yaml:12"),
        "beta": (0.01, f"{RELEASED} conf/model/vae.yaml:13; {PAPER} D.4"),
        "max_epochs": (3000, f"{RELEASED} conf/data/perov.yaml:17 (train_max_epochs)"),
        "teacher_forcing_max_epoch": (1500, f"{RELEASED} conf/data/perov.yaml:19"),
        "batch_size": (512, f"{RELEASED} conf/data/perov.yaml:65 (train batch; val/test 256)"),
    },
    "carbon_24": {
        "max_atoms": (24, f"{RELEASED} conf/data/carbon.yaml:12"),
        # the paper (D.4) gives 0.03 for Carbon-24; the released vae.yaml has 0.01 for every dataset
        # with no carbon override. The paper's value is kept: it states the model it reports, and the
        # released config may have been overridden on the command line.
        "beta": (0.03, f"{PAPER} D.4 (released conf/model/vae.yaml:13 says 0.01)"),
        "max_epochs": (4000, f"{RELEASED} conf/data/carbon.yaml:17"),
        "teacher_forcing_max_epoch": (1000, f"{RELEASED} conf/data/carbon.yaml:19"),
        "batch_size": (256, f"{RELEASED} conf/data/carbon.yaml:64-67"),
    },
    "mp_20": {
        "max_atoms": (20, f"{RELEASED} conf/data/mp_20.yaml:12"),
        "beta": (0.01, f"{RELEASED} conf/model/vae.yaml:13; {PAPER} D.4"),
        "max_epochs": (1000, f"{RELEASED} conf/data/mp_20.yaml:17"),
        "teacher_forcing_max_epoch": (500, f"{RELEASED} conf/data/mp_20.yaml:19"),
        "batch_size": (256, f"{RELEASED} conf/data/mp_20.yaml:64-67"),
    },
}


@dataclass(frozen=True)
class CDVAEFourierConfig(CDVAEConfig):
    """``cdvae_fourier``: CDVAE's hyper-parameters with the Fourier node features switched on, at
    the frequencies of DP-CDVAE's released decoder (:data:`PUBLISHED_FOURIER`: its
    ``FourierFeatures(3, 8)`` computes ``sin/cos(2 pi 2^n x)``, which is ``pi 2^n`` for n = 4..9 in
    this project's convention; the paper's S3 writes ``2^n pi``, n = 3..8: code followed). The
    released repository has no configuration of this model, so the rest of ``paper`` is CDVAE's.
    ``smoke`` keeps n = 3..8, which the Table III figures in the README were measured with."""

    decoder_fourier: bool = True
    fourier_n_min: int = 4
    fourier_n_max: int = 9

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        **CDVAEConfig.presets,
        "smoke": {**CDVAEConfig.presets["smoke"], "fourier_n_min": 3, "fourier_n_max": 8},
    }


_DP_RELEASED = "trachote/dp-cdvae@bb2c819"

#: Where ``cdvae_fourier``'s ``paper`` differs from :data:`PUBLISHED` (``{field: (value, source)}``).
PUBLISHED_FOURIER: dict[str, tuple[Any, str]] = {
    "decoder_fourier": (True, "DP-CDVAE (Pakornchote et al., arXiv:2308.02165) S3 and Table III (CDVAE+Fourier)"),
    "fourier_n_min": (4, f"{_DP_RELEASED} dpcdvae/decoders/gemnet.py:60 (first = 3), gnn/mlp.py:25 (2 pi 2^n)"),
    "fourier_n_max": (9, f"{_DP_RELEASED} dpcdvae/decoders/gemnet.py:60 (last = 8), gnn/mlp.py:25 (2 pi 2^n)"),
}
