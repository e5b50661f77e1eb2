"""The hyper-parameters of the DP-CDVAE plugins: CDVAE's config plus the diffusion's, one dataclass
per variant of Fig. S1 (the variants differ in the encoder switches and in the loss weights and
schedule of their configuration files).

The defaults and the ``paper`` preset are the model the authors released
(trachote/dp-cdvae@bb2c819, ``conf/ddpm_carbon_dime.yaml``, which fixes many settings the paper
leaves open); :data:`PUBLISHED` and :data:`PUBLISHED_VARIANTS` give the source of every value, and a
test checks the resolved ``paper`` preset of each variant and dataset against them. What the
tables do *not* make a published model:

* the released code ships one runnable model configuration, DP-CDVAE (DimeNet++) on Carbon-24.
  On Perov-5 and MP-20 ``paper`` takes that configuration's model values and the released data
  files' epochs, batch size and maximum atoms: the authors released no model configuration for
  those datasets, so ``paper`` there is *not* the published model;
* the three encoder variants' configuration files (``ddpm_carbon_dimena.yaml``,
  ``ddpm_carbon_dimegin.yaml``, ``ddpm_carbon_dimeginna.yaml``, added after the paper) name a model
  class (``CDVAEmix``) that is not in the repository. Their values are used, as the best evidence
  there is, but the variants' ``paper`` is not a verified published model on any dataset.

No torch here: the command line reads these classes to list a model's options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from benchmark.models.cdvae.config import CDVAEConfig

__all__ = ["DPCDVAEConfig", "DPCDVAEGINEConfig", "DPCDVAENaConfig", "DPCDVAENaGINEConfig", "PUBLISHED",
           "PUBLISHED_VARIANTS", "published"]


def _paper_datasets(carbon_epochs: int) -> dict[str, dict[str, Any]]:
    """``paper``'s per-dataset values: the released data files' maximum atoms, training epochs and
    batch size (sources in :data:`PUBLISHED`), with ``carbon_epochs`` for Carbon-24 (3000 in the
    DimeNet++ model file, which sets ``max_epochs`` itself; the variants' files take the data
    file's 4000). Teacher forcing and the loss weights are model-level in the released code, so
    they are the class defaults on every dataset."""
    perov = {"max_atoms": 20, "max_epochs": 3000, "batch_size": 512}
    mp = {"max_atoms": 20, "max_epochs": 1000, "batch_size": 256}
    return {
        "perov_5": perov, "perov_5_dev": dict(perov),
        "carbon_24": {"max_atoms": 24, "max_epochs": carbon_epochs, "batch_size": 256},
        "mp_20": mp, "mp_20_sample": dict(mp),
    }


def _smoke_datasets() -> dict[str, dict[str, Any]]:
    """CDVAE's ``smoke`` per-dataset values (maximum atoms, Carbon-24's beta 0.03) without its
    property head: what DP-CDVAE's smoke preset has always used."""
    return {d: {**v, "property": None} for d, v in CDVAEConfig.dataset_presets["smoke"].items()}


@dataclass(frozen=True)
class DPCDVAEConfig(CDVAEConfig):
    """Every hyper-parameter of ``dp_cdvae`` (defaults: the released model, see the module
    docstring): CDVAE's (:class:`~benchmark.models.cdvae.config.CDVAEConfig`; its Langevin fields
    ``sigma_begin``, ``sigma_end``, ``num_noise_level``, ``n_step_each`` and ``step_lr`` and the
    property-optimisation fields are unused) plus:

    Diffusion (section IV A): ``num_timesteps`` T, the sigmoid beta schedule ``beta_start`` ->
    ``beta_end`` over sigmoid arguments ``sigmoid_start`` -> ``sigmoid_end``
    (:class:`benchmark.nn.schedules.SigmoidBetaSchedule`), ``min_timestep``: the smallest time step
    trained and the last one the reverse process visits (the released code trains t = 1..T-1 and
    samples T-1..1 on an alpha-bar product that leaves out beta_1, which is this project's
    t = 2..T: ``min_timestep`` 2; 1 trains and samples all of 1..T, Eq. 2 as written),
    ``reverse_step`` (Eq. 6 or 7).

    Type noise (Eq. 9): ``type_noise`` and the inherited ``type_sigma_end`` (sigma'_1 = 0.01) ->
    ``type_sigma_begin`` (sigma'_T = 5); ``type_noise_step``: the index s of sigma'_s is a second
    draw, independent of the coordinates' t (``independent``, the released
    ``DDPM.perturb_sample``), or s = t (``tied``); ``type_loss_weight``: the type cross entropy is
    divided by sigma'_s (``inverse_sigma``, the released ``type_loss``, as CDVAE's) or not
    (``none``, Eq. 11 as written).

    Diffusion network inputs: Fourier features ``fourier_n_min``..``fourier_n_max`` of
    ``sin/cos(2^n pi r)`` (4..9: the released frequencies 2 pi 2^n, n = 3..8; ``decoder_fourier``
    is on by default here, off only for an ablation) and the time embedding size ``time_dim``.

    Encoder variants (Fig. S1): ``encoder_num_atoms``, ``encoder_gine`` and the GINE sizes
    ``gine_hidden_dim``, ``gine_num_layers``; ``gine_edge``: the edge input is the interatomic
    distance through an MLP (``distance``, the released GINE) or its expansion in ``gine_num_rbf``
    Gaussians (``gaussian``).

    Loss weights: ``cost_coord`` (L_simple, 1 in Eq. S1), ``cost_type`` (lambda of Eq. 11) and
    CDVAE's ``cost_natom``, ``cost_lattice``, ``cost_composition``, ``beta`` (lambda_1..4 of S1;
    the paper gives no values, the released file does); ``coord_boost_epoch`` /
    ``coord_boost``: the coordinate weight is multiplied by 10 in the epochs after the released
    ``mul_cost_coord_epoch``. No property head (``property`` None).

    Sampling (the ``sampling_fields``): ``num_steps`` reverse steps (None: all of T..min_timestep)
    with the step of ``reverse_step``; ``initial_types``: Z_T drawn from the predicted composition
    (``composition``, CDVAE's ``sample_composition``, what the released sampler does) or the most
    probable element for every atom (``argmax``, the paper's "sampled from the highest probability
    of A_z"); ``latent_from`` for reconstruction (a draw of q(z | M), as the released evaluate.py).

    ``smoke`` keeps the choices this project made before the released ones became the defaults (the
    type level tied to t, no 1/sigma' on the type loss, t = 1..T, Z_T by argmax, Fourier n = 3..8,
    Gaussian GINE edges, CDVAE's loss weights and no x10), so smoke numbers and the learning tests
    keep their meaning.
    """

    # loss weights and schedule: conf/ddpm_carbon_dime.yaml (sources: PUBLISHED)
    cost_natom: float = 1.0
    cost_coord: float = 1.0  # Eq. S1: L_simple carries no weight
    cost_type: float = 0.1
    cost_lattice: float = 100.0
    beta: float = 0.01
    max_epochs: int = 3000
    teacher_forcing_max_epoch: int = 400
    coord_boost_epoch: int | None = 1000
    property: str | None = None
    fourier_n_min: int = 4
    fourier_n_max: int = 9
    # the diffusion
    num_timesteps: int = 1000
    min_timestep: int = 2
    beta_start: float = 1e-10
    beta_end: float = 0.01
    sigmoid_start: float = -10.0
    sigmoid_end: float = 6.0
    reverse_step: Literal["eq6", "eq7"] = "eq7"
    type_noise: Literal["mix", "softmax"] = "mix"
    type_noise_step: Literal["independent", "tied"] = "independent"
    type_loss_weight: Literal["inverse_sigma", "none"] = "inverse_sigma"
    decoder_fourier: bool = True
    time_dim: int = 128
    # encoder variants (Fig. S1)
    encoder_num_atoms: bool = False
    encoder_gine: bool = False
    gine_hidden_dim: int = 256
    gine_num_layers: int = 3
    gine_edge: Literal["distance", "gaussian"] = "distance"
    gine_num_rbf: int = 16
    # sampling
    num_steps: int | None = None
    initial_types: Literal["composition", "argmax"] = "composition"

    # Eq. 6 or Eq. 7, the number of reverse steps and how Z_T is drawn are chosen at sampling time
    sampling_fields: ClassVar[frozenset[str]] = CDVAEConfig.sampling_fields | {"reverse_step", "num_steps",
                                                                                "initial_types"}
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # minutes on a CPU: CDVAE's small network, 100 respaced reverse steps, and every choice
        # DP-CDVAE's smoke made before the released values became the defaults (for every variant)
        "smoke": {
            **CDVAEConfig.presets["smoke"],
            "time_dim": 16, "gine_hidden_dim": 32, "gine_num_layers": 2, "num_steps": 100,
            "cost_natom": 1.0, "cost_type": 1.0, "cost_lattice": 10.0, "beta": 0.01, "min_lr": 1e-4,
            "coord_boost_epoch": None, "min_timestep": 1, "type_noise_step": "tied", "type_loss_weight": "none",
            "initial_types": "argmax", "fourier_n_min": 3, "fourier_n_max": 8, "gine_edge": "gaussian",
        },
    }
    dataset_presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "paper": _paper_datasets(carbon_epochs=3000),
        "smoke": _smoke_datasets(),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_timesteps < 1:
            raise ValueError("num_timesteps must be at least 1")
        if not 1 <= self.min_timestep <= self.num_timesteps:
            raise ValueError(f"need 1 <= min_timestep <= num_timesteps, got {self.min_timestep} and {self.num_timesteps}")
        if not 0 < self.beta_start <= self.beta_end < 1:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {self.beta_start}, {self.beta_end}")
        for name, allowed in (("reverse_step", ("eq6", "eq7")), ("type_noise", ("mix", "softmax")),
                              ("type_noise_step", ("independent", "tied")),
                              ("type_loss_weight", ("inverse_sigma", "none")),
                              ("gine_edge", ("distance", "gaussian")), ("initial_types", ("composition", "argmax"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.time_dim < 0 or self.time_dim % 2:
            raise ValueError("time_dim must be even and non-negative")
        if self.gine_num_layers < 1:
            raise ValueError("gine_num_layers must be at least 1")


@dataclass(frozen=True)
class DPCDVAENaConfig(DPCDVAEConfig):
    """``dp_cdvae_na``: the number-of-atoms MLP beside DimeNet++ (Fig. S1 (e)). Loss weights and
    schedule of ``conf/ddpm_carbon_dimena.yaml``, a configuration of a model class (``CDVAEmix``)
    that is not in the released code: ``paper`` is not a verified published model
    (:data:`PUBLISHED_VARIANTS`)."""

    encoder_num_atoms: bool = True
    cost_natom: float = 0.1
    coord_boost_epoch: int | None = 800
    teacher_forcing_max_epoch: int = 200
    max_epochs: int = 4000

    dataset_presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "paper": _paper_datasets(carbon_epochs=4000),
        "smoke": _smoke_datasets(),
    }


@dataclass(frozen=True)
class DPCDVAEGINEConfig(DPCDVAEConfig):
    """``dp_cdvae_gine``: the GINE encoder beside DimeNet++ (Fig. S1 (f)). Schedule of
    ``conf/ddpm_carbon_dimegin.yaml``, a configuration of a model class (``CDVAEmix``) that is not
    in the released code: ``paper`` is not a verified published model (:data:`PUBLISHED_VARIANTS`)."""

    encoder_gine: bool = True
    coord_boost_epoch: int | None = 800
    teacher_forcing_max_epoch: int = 200
    max_epochs: int = 4000

    dataset_presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "paper": _paper_datasets(carbon_epochs=4000),
        "smoke": _smoke_datasets(),
    }


@dataclass(frozen=True)
class DPCDVAENaGINEConfig(DPCDVAEConfig):
    """``dp_cdvae_na_gine``: both extra encoders (Fig. S1 (h)). Loss weights and schedule of
    ``conf/ddpm_carbon_dimeginna.yaml``, a configuration of a model class (``CDVAEmix``) that is not
    in the released code: ``paper`` is not a verified published model (:data:`PUBLISHED_VARIANTS`)."""

    encoder_num_atoms: bool = True
    encoder_gine: bool = True
    cost_natom: float = 0.1
    coord_boost_epoch: int | None = 800
    teacher_forcing_max_epoch: int = 200
    max_epochs: int = 4000
    min_lr: float = 1e-5

    dataset_presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "paper": _paper_datasets(carbon_epochs=4000),
        "smoke": _smoke_datasets(),
    }


RELEASED = "trachote/dp-cdvae@bb2c819"
PAPER = "Pakornchote et al., arXiv:2308.02165"
DIME = f"{RELEASED} conf/ddpm_carbon_dime.yaml"
GEMNET = f"{RELEASED} gnn/gemnet/gemnet.py"
MODELS = f"{RELEASED} dpcdvae/models.py"
DIFFUSION = f"{RELEASED} dpcdvae/diffusion_modules.py"
NOT_PUBLISHED = "no DP-CDVAE model config for this dataset: not the published model"

#: Every value the ``paper`` preset of ``dp_cdvae`` fixes, with its source:
#: ``{dataset: {field: (value, source)}}``; ``"*"`` holds the values of every dataset. Only
#: Carbon-24 has a released model configuration; the other datasets' rows are the released data
#: files' values (see the module docstring). ``tests/models/test_dp_cdvae_model.py`` resolves the
#: preset for each variant and dataset and compares it with :func:`published`.
PUBLISHED: dict[str, dict[str, tuple[Any, str]]] = {
    "*": {
        # VAE sizes and the DimeNet++ encoder (as CDVAE's)
        "latent_dim": (256, f"{DIME}:51"),
        "hidden_dim": (256, f"{DIME}:50"),
        "fc_num_layers": (1, f"{DIME}:52"),
        "max_atomic_num": (100, f"{DIME}:111 (in_node_nf); {RELEASED} dpcdvae/decoders/gemnet.py:99 (Linear(..., MAX_ATOMIC_NUM))"),
        "encoder_hidden": (128, f"{DIME}:83"),
        "encoder_blocks": (4, f"{DIME}:84"),
        "encoder_int_emb_size": (64, f"{DIME}:85"),
        "encoder_basis_emb_size": (8, f"{DIME}:86"),
        "encoder_out_emb_size": (256, f"{DIME}:87"),
        "encoder_num_spherical": (7, f"{DIME}:88"),
        "encoder_num_radial": (6, f"{DIME}:89"),
        "encoder_cutoff": (7.0, f"{DIME}:91"),
        "encoder_envelope_exponent": (5, f"{DIME}:93"),
        # the diffusion network, GemNet-T
        "decoder_hidden": (128, f"{DIME}:123"),
        "decoder_cutoff": (7.0, f"{DIME}:65 (radius)"),
        "decoder_max_neighbors": (20, f"{DIME}:64"),
        "decoder_blocks": (3, f"{GEMNET}:106 (GemNetT default)"),
        "decoder_num_spherical": (7, f"{GEMNET}:104"),
        "decoder_num_radial": (128, f"{GEMNET}:105"),
        "decoder_radial_basis": ("gaussian", f"{GEMNET}:121"),
        "decoder_emb_size_trip": (64, f"{GEMNET}:109"),
        "decoder_emb_size_rbf": (16, f"{GEMNET}:110"),
        "decoder_emb_size_cbf": (16, f"{GEMNET}:111"),
        "decoder_emb_size_bil_trip": (64, f"{GEMNET}:112"),
        "decoder_num_before_skip": (1, f"{GEMNET}:113"),
        "decoder_num_after_skip": (2, f"{GEMNET}:114"),
        "decoder_num_concat": (1, f"{GEMNET}:115"),
        "decoder_num_atom": (3, f"{GEMNET}:116"),
        "decoder_envelope_exponent": (5, f"{GEMNET}:122"),
        "decoder_type_head": ("last_hidden", f"{GEMNET}:640-641 (A_t = h), {RELEASED} dpcdvae/decoders/gemnet.py:153-154 (fc_atom(h))"),
        "decoder_lattice": ("released", f"{MODELS} DPCDVAE.forward (param_decoder's pred_lengths / pred_angles, the true cell under "
                                        "teacher forcing, go to diffnet undetached; the eps target is fractional, so no target cell)"),
        "decoder_min_distance": (0.01, f"{RELEASED} common/data_utils.py radius_graph_pbc (mask_not_same: d^2 > 0.0001)"),
        "decoder_periodic_triplets": (True, f"{GEMNET}:287-330 (only an edge's own id is excluded: periodic images kept)"),
        "decoder_fourier": (True, f"{DIME}:130 (fourier_feats); {PAPER} S3"),
        # the released frequencies are 2 pi 2^n for n = 3..8, i.e. this project's pi 2^n for n = 4..9
        # (the paper's S3 writes 2^n pi with n = 3..8: code followed)
        "fourier_n_min": (4, f"{RELEASED} dpcdvae/decoders/gemnet.py:60 (first = 3), gnn/mlp.py:25 (2 pi 2^n)"),
        "fourier_n_max": (9, f"{RELEASED} dpcdvae/decoders/gemnet.py:60 (last = 8), gnn/mlp.py:25 (2 pi 2^n)"),
        "time_dim": (128, f"{DIME}:128"),
        # the diffusion (the model file's num_noise_level is T)
        "num_timesteps": (1000, f"{DIME}:70,113"),
        "min_timestep": (2, f"{DIFFUSION}:125-128 (t = randint(1, T): 1..T-1), :95-97 (alpha-bar leaves out beta index 0: released t is t + 1 here); {MODELS}:755-756 (samples T-1..1)"),
        "beta_start": (1e-10, f"{DIME}:115"),
        "beta_end": (0.01, f"{DIME}:116"),
        "sigmoid_start": (-10.0, f"{DIFFUSION}:419"),
        "sigmoid_end": (6.0, f"{DIFFUSION}:419"),
        "reverse_step": ("eq7", f"{MODELS}:759-760, 814-823 (predictor='modified'); {PAPER} Eq. 7, Table I"),
        "num_steps": (None, f"{MODELS}:755-756 (every step from T-1 down to 1)"),
        "type_sigma_end": (0.01, f"{DIME}:117 (diffalgo type_sigma_begin: the level at t = 1)"),
        "type_sigma_begin": (5.0, f"{DIME}:118 (diffalgo type_sigma_end: the level at t = T)"),
        "type_noise": ("mix", f"{DIFFUSION}:150-151, {MODELS}:673 (multinomial of onehot(Z) + sigma' softmax(A_z))"),
        "type_noise_step": ("independent", f"{DIFFUSION}:69,129-133 (same_time_step=False: s drawn apart from t; no config sets it)"),
        "type_loss_weight": ("inverse_sigma", f"{MODELS}:595-602, 669-670 (cross entropy / sigma'_s)"),
        "initial_types": ("composition", f"{MODELS}:748-750 (sample_composition(softmax(A_z)))"),
        # encoder: DimeNet++ only (the GINE values are the variants', used only with encoder_gine)
        "encoder_num_atoms": (False, f"{DIME}:80 (encoder DimeNetpp)"),
        "encoder_gine": (False, f"{DIME}:80 (encoder DimeNetpp)"),
        "gine_hidden_dim": (256, f"{RELEASED} conf/ddpm_carbon_dimegin.yaml:108"),
        "gine_num_layers": (3, f"{RELEASED} dpcdvae/encoders/gin.py:22 (num_convs=3)"),
        "gine_edge": ("distance", f"{RELEASED} dpcdvae/encoders/gin.py:38-40, 83-85 (Linear(1, H)-ReLU-Linear(H, H) of the distance)"),
        "gine_num_rbf": (16, "unused with gine_edge 'distance'"),
        # loss weights and schedule
        "cost_natom": (1.0, f"{DIME}:54"),
        "cost_coord": (1.0, f"{DIME}:55"),
        "cost_type": (0.1, f"{DIME}:56"),
        "cost_lattice": (100.0, f"{DIME}:57"),
        "cost_composition": (1.0, f"{DIME}:58"),
        "beta": (0.01, f"{DIME}:60"),
        "coord_boost_epoch": (1000, f"{DIME}:61 (mul_cost_coord_epoch); {MODELS}:330 (x10 when current_epoch > it)"),
        "coord_boost": (10.0, f"{MODELS}:330"),
        "teacher_forcing_lattice": (True, f"{DIME}:62"),
        "teacher_forcing_max_epoch": (400, f"{DIME}:63 (model-level; the data files' key is unused); {MODELS}:289-290 (<=)"),
        "property": (None, f"{DIME}:71 (predict_property: False)"),
        "cost_property": (1.0, "unused: no property head"),
        # training
        "lr": (1e-3, f"{DIME}:139"),
        "lr_factor": (0.6, f"{DIME}:148"),
        "lr_patience": (30, f"{DIME}:149"),
        "min_lr": (1e-4, f"{DIME}:150"),
        "gradient_clip_val": (0.5, f"{MODELS}:126-127 (clip_grad_value_(0.5), hard-coded); {DIME}:168"),
        "gradient_clip_algorithm": ("value", f"{MODELS}:126-127; {DIME}:169"),
        "latent_from": ("sample", f"{RELEASED} evaluate.py:49-50 (_, _, z = model.kld_reparam(hidden))"),
        # CDVAE's fields DP-CDVAE does not use (Langevin sampling, property optimisation)
        "num_noise_level": (50, "unused (CDVAE's Langevin levels; DP-CDVAE's T is num_timesteps)"),
        "sigma_begin": (10.0, "unused (CDVAE's Langevin levels)"),
        "sigma_end": (0.01, "unused (CDVAE's Langevin levels)"),
        "n_step_each": (100, "unused (CDVAE's Langevin steps)"),
        "step_lr": (1e-4, "unused (CDVAE's Langevin steps)"),
        "optimize_decode": ("released", "unused: DP-CDVAE has no property optimisation"),
    },
    "perov_5": {
        "max_atoms": (20, f"{RELEASED} conf/data/perov.yaml:15; {NOT_PUBLISHED}"),
        "max_epochs": (3000, f"{RELEASED} conf/data/perov.yaml:20 (train_max_epochs); {NOT_PUBLISHED}"),
        "batch_size": (512, f"{RELEASED} conf/data/perov.yaml:71 (train; val/test 256); {NOT_PUBLISHED}"),
    },
    "carbon_24": {
        "max_atoms": (24, f"{RELEASED} conf/data/carbon.yaml:15"),
        "max_epochs": (3000, f"{DIME}:165 (the model file sets it; the data file's 4000 is unused)"),
        "batch_size": (256, f"{RELEASED} conf/data/carbon.yaml:71"),
    },
    "mp_20": {
        "max_atoms": (20, f"{RELEASED} conf/data/mp.yaml:29; {NOT_PUBLISHED}"),
        "max_epochs": (1000, f"{RELEASED} conf/data/mp.yaml:34; {NOT_PUBLISHED}"),
        "batch_size": (256, f"{RELEASED} conf/data/mp.yaml:86; {NOT_PUBLISHED}"),
    },
}
PUBLISHED["perov_5_dev"] = PUBLISHED["perov_5"]
PUBLISHED["mp_20_sample"] = PUBLISHED["mp_20"]

_UNRELEASED = "configuration of the unreleased model class CDVAEmix: not a verified published model"
_NA = f"{RELEASED} conf/ddpm_carbon_dimena.yaml"
_GIN = f"{RELEASED} conf/ddpm_carbon_dimegin.yaml"
_GINNA = f"{RELEASED} conf/ddpm_carbon_dimeginna.yaml"

#: Where a variant's ``paper`` differs from ``dp_cdvae``'s (:data:`PUBLISHED`): ``{plugin: {dataset:
#: {field: (value, source)}}}``, from the variants' configuration files (see the module docstring:
#: evidence, not a runnable published model). Their other values equal the DimeNet++ file's.
PUBLISHED_VARIANTS: dict[str, dict[str, dict[str, tuple[Any, str]]]] = {
    "dp_cdvae_na": {
        "*": {
            "encoder_num_atoms": (True, f"{_NA}:83 (DimeNaEncoder); {_UNRELEASED}"),
            "cost_natom": (0.1, f"{_NA}:54; {_UNRELEASED}"),
            "coord_boost_epoch": (800, f"{_NA}:64; {_UNRELEASED}"),
            "teacher_forcing_max_epoch": (200, f"{_NA}:66; {_UNRELEASED}"),
        },
        "carbon_24": {"max_epochs": (4000, f"{_NA}:181 -> {RELEASED} conf/data/carbon.yaml:20; {_UNRELEASED}")},
    },
    "dp_cdvae_gine": {
        "*": {
            "encoder_gine": (True, f"{_GIN}:83 (DimeGINEncoder); {_UNRELEASED}"),
            "cost_natom": (1.0, f"{_GIN}:54; {_UNRELEASED}"),
            "coord_boost_epoch": (800, f"{_GIN}:64; {_UNRELEASED}"),
            "teacher_forcing_max_epoch": (200, f"{_GIN}:66; {_UNRELEASED}"),
        },
        "carbon_24": {"max_epochs": (4000, f"{_GIN}:180 -> {RELEASED} conf/data/carbon.yaml:20; {_UNRELEASED}")},
    },
    "dp_cdvae_na_gine": {
        "*": {
            "encoder_num_atoms": (True, f"{_GINNA}:83 (DimeGINNaEncoder); {_UNRELEASED}"),
            "encoder_gine": (True, f"{_GINNA}:83 (DimeGINNaEncoder); {_UNRELEASED}"),
            "cost_natom": (0.1, f"{_GINNA}:54; {_UNRELEASED}"),
            "coord_boost_epoch": (800, f"{_GINNA}:64; {_UNRELEASED}"),
            "teacher_forcing_max_epoch": (200, f"{_GINNA}:66; {_UNRELEASED}"),
            "min_lr": (1e-5, f"{_GINNA}:171; {_UNRELEASED}"),
        },
        "carbon_24": {"max_epochs": (4000, f"{_GINNA}:186 -> {RELEASED} conf/data/carbon.yaml:20; {_UNRELEASED}")},
    },
}


def published(variant: str, dataset: str) -> dict[str, tuple[Any, str]]:
    """The published value and its source of every field of ``variant``'s (``dp_cdvae``,
    ``dp_cdvae_na``, ...) ``paper`` preset on ``dataset``: :data:`PUBLISHED` with the variant's
    differences (:data:`PUBLISHED_VARIANTS`) over it."""
    own = PUBLISHED_VARIANTS.get(variant, {}) if variant != "dp_cdvae" else {}
    if variant != "dp_cdvae" and not own:
        raise KeyError(f"no published values for {variant!r}; variants: dp_cdvae, {', '.join(PUBLISHED_VARIANTS)}")
    return {**PUBLISHED["*"], **PUBLISHED.get(dataset, {}), **own.get("*", {}), **own.get(dataset, {})}
