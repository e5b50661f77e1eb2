"""The hyper-parameters of ``con_cdvae``: CDVAE's config plus the conditioning, the Prior and the
generation strategy, in one dataclass, with the released condition grids and the table of
published values (:data:`PUBLISHED`). No torch here: the command line reads these classes."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from benchmark.models.cdvae.config import CDVAEConfig

__all__ = ["FULL_CONDITIONS", "PUBLISHED", "RELEASED_GRIDS", "ConCDVAEConfig", "grid_spec"]

RELEASED = "cyye001/Con-CDVAE@0c35a16"  # v2.1 (2025-10-22), ships the trained MP-20 model src/model/mp20_format/
RELEASED_V1 = "cyye001/Con-CDVAE@2d5fc98"  # the last plain-PyTorch code (configs of the paper-era upload)
PAPER = "Ye, Weng, Wu, Con-CDVAE (2023)"
_HP = f"{RELEASED} src/model/mp20_format/hparams.yaml"  # the shipped MP-20 model's resolved config
_HP_PRIOR = f"{RELEASED} src/model/mp20_format/hparams_prior_default.yaml"


def grid_spec(name: str, low: float, high: float, spacing: float) -> str:
    """Spec string of a continuous condition on the released grid ``low``, ``low + spacing``, ...
    (``n_rbf = ceil((high - low) / spacing) + 1`` Gaussians of width ``spacing``, released
    ``ScalarConditionEmbedding``); the format of
    :class:`benchmark.models.con_cdvae.network.ConditionSpec`."""
    n = math.ceil((high - low) / spacing - 1e-9) + 1
    low = float(low)
    last = round(low + spacing * (n - 1), 12)  # -0.01 + 10 x 0.01 reads 0.09
    return f"{name}:continuous:{low!r}:{last!r}:{n}"


#: The released Gaussian grids of the properties the release conditions on, ``name: (low, high,
#: spacing, source)``; a bare condition name in ``conditions`` gets its grid here (with
#: ``condition_grids="released"``); any other property gets one from the training data.
RELEASED_GRIDS: dict[str, tuple[float, float, float, str]] = {
    "formation_energy_per_atom": (-6.0, 1.0, 0.5, f"{_HP}:126-132 (conf/model/conditionmodel/mp_format.yaml)"),
    "band_gap": (-1.0, 9.0, 0.5, f"{RELEASED} conf/model/conditionmodel/mp_gap.yaml:5-11"),
    "e_above_hull": (-0.01, 0.09, 0.01, f"{RELEASED} conf/model/conditionmodel/mp_full.yaml:35-41"),
    "num_atoms": (0.0, 20.0, 1.0, f"{RELEASED} conf/model/conditionmodel/mp_full.yaml:43-49 (n_atom)"),
}

#: The full prior's conditions (section 2.2.2): the released full prior's six, in its order and on
#: its grids (crystal system 7 and space group 231 classes, formation energy -5..0.5 and band gap
#: -0.5..9 every 0.5, energy above hull -0.01..0.09 every 0.01, number of atoms 0..20 every 1;
#: ``src/model/mp20_format/hparams_prior_full.yaml:269-309``), then the chemical formula on CGCNN's
#: 92-long element vectors (Eq. 13; V1 ``conf/conz_2.yaml``; the v2.1 release leaves it out).
#: Columns of this project's data: ``CS_type`` (crystal_system), ``spacegroup.number``, ``num_atoms``
#: (n_atom; the number of sites when not a column) and ``formula`` (from the sites).
FULL_CONDITIONS: tuple[str, ...] = (
    "CS_type:discrete:7",
    "spacegroup.number:discrete:231",
    grid_spec("formation_energy_per_atom", -5.0, 0.5, 0.5),
    grid_spec("band_gap", -0.5, 9.0, 0.5),
    grid_spec("e_above_hull", -0.01, 0.09, 0.01),
    grid_spec("num_atoms", 0.0, 20.0, 1.0),
    "formula:formula:92",
)


@dataclass(frozen=True)
class ConCDVAEConfig(CDVAEConfig):
    """Every hyper-parameter of ``con_cdvae``; the defaults and ``paper`` are the released MP-20
    model (v2.1, :data:`RELEASED`, trained on CDVAE's MP-20 = this project's ``mp_20``; :data:`PUBLISHED`
    gives the source of every value). CDVAE's fields (:class:`~benchmark.models.cdvae.config.CDVAEConfig`;
    no property head: the Predictor replaces it) plus:

    Conditions: ``conditions``, the properties the model is conditioned on (PropEmb, Predictor and
    the default Prior), as spec strings (``"band_gap:continuous:-0.5:9.0:20"``,
    ``"BG_type:discrete:2"``; :class:`benchmark.models.con_cdvae.network.ConditionSpec`) or bare
    column names that :meth:`~benchmark.models.con_cdvae.plugin.ConCDVAEModel.fit` completes and
    stores resolved: with ``condition_grids="released"`` a property the release conditions on
    gets its released grid (:data:`RELEASED_GRIDS`), others a grid from the training data;
    ``"data"`` takes every grid from the data. ``condition_clamp``: clamp continuous values into
    their grid before the Gaussian expansion (the release does not). ``full_prior``: also train the
    *full* Prior on ``full_conditions`` (:data:`FULL_CONDITIONS`); ``formula_vectors``: the element
    vectors of a formula condition (Eq. 13), CGCNN's fixed 92-long ``atom_init.json`` vectors
    (``cgcnn``, read where the Con-CDVAE oracle files are: ``BENCHMARK_ORACLE_DIR`` or the cache of
    ``oracle fetch con-cdvae``) or learnable ones (``learned``).

    PropEmb sizes (code ``conditionmodel``): ``cond_feature_dim`` 64 and ``cond_layers`` 3 per
    condition, ``cond_class_emb_dim`` 64, ``prop_dim`` 128 (C_prop) with ``prop_layers`` 2. The
    Prior's embedding uses the same sizes (code: ``conditionmodel: ${model.conditionmodel}``).
    Eq. 11's MLP is ``latent + prop_dim -> hidden_dim (fc_num_layers) -> latent`` (code).

    Predictor (code ``conditionpre``): ``predictor_hidden_dim`` 256, ``predictor_layers`` 2.
    ``alpha``: weight of L_pre in L_joint (paper: "usually set to 3"; code ``cost_property: 3``).

    Released network details: ``encoder_tanh`` (code ``smooth``: tanh on the encoder output before
    fc_mu / fc_var), ``mlp_batchnorm`` (code ``build_mlp(norm=True)``: a BatchNorm after the first
    linear layer of the Eq. 11 MLP, the N / lattice / composition heads and the Predictor's
    continuous heads).

    Decoder: ``decoder_time_dim`` (code ``time_emb_dim`` 64; 0: CDVAE's decoder input),
    ``decoder_detach_z`` (code ``nograd``, False), ``decoder_cutoff`` 9 Å (code ``radius: 9.``;
    CDVAE's default is 7).

    Prior (code ``conf/prior/default.yaml``): ``prior_timesteps`` T = 300, linear
    ``prior_beta_start`` 1e-3 -> ``prior_beta_end`` 0.02 (``prior_schedule``; ``"sigmoid"`` takes
    DP-CDVAE's shape), ``prior_time_dim`` 64, ``prior_widths`` (empty: latent/2, latent/4,
    latent/8, i.e. three halving levels, ``n_UNet_layers: 3``). Step-two training, the same
    Lightning loop as step one (resumable, best-validation weights kept): ``prior_epochs``,
    ``prior_lr``, ``prior_batch_size``, reduce-on-plateau ``prior_lr_factor`` (None: a constant
    rate), ``prior_lr_patience``, ``prior_min_lr``, and ``prior_gradient_clip_val`` /
    ``prior_gradient_clip_algorithm``.

    Generation (the ``sampling_fields``): ``strategy`` (``default`` / ``full`` / ``less``), the
    Predictor filter ``n_candidates`` : ``keep`` (published 20,000 : 200; None: no filter), the
    ``less`` completion ``less_tolerance`` and ``less_use_one`` (one training crystal supplies all
    missing conditions of a candidate, or each its own), and CDVAE's Langevin ``n_step_each`` and
    ``step_lr``. ``full`` and ``less`` need the full prior: :meth:`fit` refuses them, before any
    training, when the training data lacks its properties.
    """

    property: str | None = None  # Con-CDVAE has no CDVAE property head
    decoder_cutoff: float = 9.0
    max_epochs: int = 500
    teacher_forcing_max_epoch: int = 200
    batch_size: int = 512
    conditions: tuple[str, ...] = ("formation_energy_per_atom",)
    condition_grids: Literal["released", "data"] = "released"
    condition_clamp: bool = False
    alpha: float = 3.0
    cond_feature_dim: int = 64
    cond_layers: int = 3
    cond_class_emb_dim: int = 64
    prop_dim: int = 128
    prop_layers: int = 2
    predictor_hidden_dim: int = 256
    predictor_layers: int = 2
    encoder_tanh: bool = True
    mlp_batchnorm: bool = True
    decoder_time_dim: int = 64
    decoder_detach_z: bool = False
    full_prior: bool = True
    full_conditions: tuple[str, ...] = FULL_CONDITIONS
    formula_vectors: Literal["cgcnn", "learned"] = "cgcnn"
    prior_timesteps: int = 300
    prior_beta_start: float = 1e-3
    prior_beta_end: float = 0.02
    prior_schedule: Literal["linear", "sigmoid"] = "linear"
    prior_time_dim: int = 64
    prior_widths: tuple[int, ...] = ()
    prior_epochs: int = 100
    prior_lr: float = 1e-3
    prior_batch_size: int = 256
    prior_lr_factor: float | None = 0.6
    prior_lr_patience: int = 30
    prior_min_lr: float = 1e-5
    prior_gradient_clip_val: float | None = 0.5
    prior_gradient_clip_algorithm: Literal["norm", "value"] = "value"
    # generation
    strategy: Literal["default", "full", "less"] = "default"
    n_candidates: int | None = 20000
    keep: int | None = 200
    less_tolerance: float = 0.1
    less_use_one: bool = False

    # one trained model serves every strategy and filter ratio (the paper's D/F/L rows)
    sampling_fields: ClassVar[frozenset[str]] = CDVAEConfig.sampling_fields | {
        "strategy", "n_candidates", "keep", "less_tolerance", "less_use_one"}
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # CDVAE's smoke network and this project's earlier Con-CDVAE choices (grids from the data,
        # clamped values, learnable formula vectors, no tanh or BatchNorm, a constant-rate unclipped
        # prior, one training crystal per ``less`` completion), so smoke numbers and the learning
        # test keep their meaning
        "smoke": {
            **CDVAEConfig.presets["smoke"],
            "cond_feature_dim": 16, "cond_class_emb_dim": 16, "prop_dim": 32, "predictor_hidden_dim": 64,
            "decoder_time_dim": 16, "prior_time_dim": 16, "prior_epochs": 100, "prior_batch_size": 64,
            "n_candidates": 2000, "keep": 200,
            "condition_grids": "data", "condition_clamp": True, "formula_vectors": "learned", "encoder_tanh": False,
            "mlp_batchnorm": False, "prior_lr_factor": None, "prior_gradient_clip_val": None, "less_use_one": True,
        },
    }
    # Con-CDVAE was released for Materials Project data only: on every dataset ``paper`` is the
    # released MP-20 training, with the dataset's atom limit; smoke keeps CDVAE's smoke refinements
    dataset_presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "paper": {"carbon_24": {"max_atoms": 24}},
        "smoke": {d: {**v, "property": None} for d, v in CDVAEConfig.dataset_presets["smoke"].items()},
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        # a checkpoint or a caller may hand sequences back as lists: normalise to tuples of plain values
        for name in ("conditions", "full_conditions"):
            value = getattr(self, name)
            object.__setattr__(self, name, tuple(str(c) for c in ((value,) if isinstance(value, str) else value)))
        object.__setattr__(self, "prior_widths", tuple(int(w) for w in self.prior_widths))
        if not self.conditions:
            raise ValueError("Con-CDVAE needs at least one condition")
        if self.decoder_time_dim < 0 or self.decoder_time_dim % 2:
            raise ValueError("decoder_time_dim must be even and non-negative")
        if self.alpha < 0:
            raise ValueError("alpha must be non-negative")
        if self.prior_lr_factor is not None and not 0 < self.prior_lr_factor < 1:
            raise ValueError("prior_lr_factor must be in (0, 1) (or none: a constant rate)")
        if self.prior_gradient_clip_val is not None and self.prior_gradient_clip_val <= 0:
            raise ValueError("prior_gradient_clip_val must be positive (or none)")

    def for_checkpoint(self, requested: Any, where: str = "checkpoint") -> Any:
        """:meth:`ModelConfig.for_checkpoint`, where a requested bare condition name equals the
        stored spec it was resolved to in ``fit`` (the checkpoint keeps ``"num_atoms:continuous:0.0:20.0:21"``
        for a run's ``"num_atoms"``): the run that trained a model can load it again."""
        if isinstance(requested, ConCDVAEConfig) and len(requested.conditions) == len(self.conditions) and all(
                r == s or (":" not in r and s.split(":", 1)[0] == r) for r, s in zip(requested.conditions, self.conditions)):
            requested = dataclasses.replace(requested, conditions=self.conditions)
        return super().for_checkpoint(requested, where)


#: Every value the ``paper`` preset fixes, with its source: ``{dataset: {field: (value, source)}}``;
#: ``"*"`` holds the values of every dataset. Line numbers of ``hparams*.yaml`` are those of the
#: shipped MP-20 model's resolved configs. ``tests/models/test_con_cdvae_model.py`` resolves the
#: preset for MP-20 and compares every field with this table. Where the paper, V1 and v2.1 disagree
#: the source says which was followed and why.
PUBLISHED: dict[str, dict[str, tuple[Any, str]]] = {
    "*": {
        # network sizes
        "latent_dim": (256, f"{_HP}:145"),
        "hidden_dim": (256, f"{_HP}:144"),
        "fc_num_layers": (1, f"{_HP}:147"),
        "max_atomic_num": (100, f"{RELEASED} concdvae/pl_modules/embeddings/__init__.py:12 (MAX_ATOMIC_NUM)"),
        "encoder_hidden": (128, f"{_HP}:98"),
        "encoder_blocks": (4, f"{_HP}:99"),
        "encoder_int_emb_size": (64, f"{_HP}:100"),
        "encoder_basis_emb_size": (8, f"{_HP}:101"),
        "encoder_out_emb_size": (256, f"{_HP}:102"),
        "encoder_num_spherical": (7, f"{_HP}:103"),
        "encoder_num_radial": (6, f"{_HP}:104"),
        "encoder_cutoff": (7.0, f"{_HP}:106"),
        "encoder_envelope_exponent": (5, f"{_HP}:108"),
        "encoder_tanh": (True, f"{_HP}:168 (smooth: true), concdvae/pl_modules/model.py:184-185"),
        "decoder_hidden": (128, f"{_HP}:115"),
        "decoder_blocks": (3, f"{RELEASED} concdvae/pl_modules/gemnet/gemnet.py:105 (GemNetT default)"),
        "decoder_cutoff": (9.0, f"{_HP}:160 (radius)"),
        "decoder_max_neighbors": (20, f"{_HP}:159"),
        "decoder_num_spherical": (7, f"{RELEASED} concdvae/pl_modules/gemnet/gemnet.py:103"),
        "decoder_num_radial": (128, f"{RELEASED} concdvae/pl_modules/gemnet/gemnet.py:104"),
        "decoder_radial_basis": ("gaussian", f"{RELEASED} concdvae/pl_modules/gemnet/gemnet.py:119"),
        "decoder_type_head": ("last_hidden", f"{RELEASED} concdvae/pl_modules/decoder.py:44,72 (fc_atom on the last h)"),
        "decoder_emb_size_trip": (64, f"{RELEASED} concdvae/pl_modules/gemnet/gemnet.py:108"),
        "decoder_emb_size_rbf": (16, f"{RELEASED} concdvae/pl_modules/gemnet/gemnet.py:109"),
        "decoder_emb_size_cbf": (16, f"{RELEASED} concdvae/pl_modules/gemnet/gemnet.py:110"),
        "decoder_emb_size_bil_trip": (64, f"{RELEASED} concdvae/pl_modules/gemnet/gemnet.py:111"),
        "decoder_num_before_skip": (1, f"{RELEASED} concdvae/pl_modules/gemnet/gemnet.py:112"),
        "decoder_num_after_skip": (2, f"{RELEASED} concdvae/pl_modules/gemnet/gemnet.py:113"),
        "decoder_num_concat": (1, f"{RELEASED} concdvae/pl_modules/gemnet/gemnet.py:114"),
        "decoder_num_atom": (3, f"{RELEASED} concdvae/pl_modules/gemnet/gemnet.py:115"),
        "decoder_envelope_exponent": (5, f"{RELEASED} concdvae/pl_modules/gemnet/gemnet.py:120"),
        "decoder_min_distance": (0.01, f"{RELEASED} concdvae/common/data_utils.py radius_graph_pbc (mask_not_same: d^2 > 0.0001)"),
        "decoder_periodic_triplets": (True, f"{RELEASED} concdvae/pl_modules/gemnet/gemnet.py:281-285 (only an edge's own id excluded)"),
        "decoder_fourier": (False, "Con-CDVAE's decoder has no Fourier node features"),
        "decoder_time_dim": (64, f"{_HP}:146 (time_emb_dim), concdvae/pl_modules/model.py:110-113,295-296"),
        "decoder_detach_z": (False, f"{_HP}:169 (nograd: false; V1 always detached)"),
        "mlp_batchnorm": (True, f"{RELEASED} concdvae/pl_modules/model.py:40-67 (build_mlp norm=True), 104-107, 127-132; "
                                "concdvae/pl_modules/PreCondition.py:29-33"),
        # noise and loss
        "num_noise_level": (50, f"{_HP}:165"),
        "sigma_begin": (10.0, f"{_HP}:161"),
        "sigma_end": (0.01, f"{_HP}:162"),
        "type_sigma_begin": (5.0, f"{_HP}:163"),
        "type_sigma_end": (0.01, f"{_HP}:164"),
        "beta": (0.01, f"{_HP}:156"),
        "cost_natom": (1.0, f"{_HP}:149"),
        "cost_coord": (10.0, f"{_HP}:150"),
        "cost_type": (1.0, f"{_HP}:151"),
        "cost_lattice": (10.0, f"{_HP}:152"),
        "cost_composition": (1.0, f"{_HP}:153"),
        "alpha": (3.0, f"{_HP}:155 (cost_property, the Predictor's weight; {PAPER} section 2.2.1: 'usually set to 3')"),
        "property": (None, "no CDVAE property head: the Predictor is Con-CDVAE's (predict_property: true, hparams.yaml:166, "
                           "switches the Predictor loss on)"),
        "cost_property": (1.0, "unused without a CDVAE property head (alpha is Con-CDVAE's cost_property)"),
        # conditions
        "conditions": (("formation_energy_per_atom",), f"{_HP}:126-142 (mp_format: formation energy)"),
        "condition_grids": ("released", f"{_HP}:126-132 and {RELEASED} conf/model/conditionmodel/*.yaml (fixed grids)"),
        "condition_clamp": (False, f"{RELEASED} concdvae/pl_modules/ConditionModel.py:119-130 (no clamping)"),
        "cond_feature_dim": (64, f"{_HP}:131"),
        "cond_layers": (3, f"{_HP}:132"),
        "cond_class_emb_dim": (64, f"{RELEASED} src/model/mp20_format/hparams_prior_full.yaml:273 (n_emb)"),
        "prop_dim": (128, f"{_HP}:123"),
        "prop_layers": (2, f"{_HP}:124"),
        "predictor_hidden_dim": (256, f"{_HP}:140"),
        "predictor_layers": (2, f"{_HP}:142"),
        "full_prior": (True, f"{RELEASED} src/model/mp20_format/prior_full-epoch=95-step=10176.ckpt (shipped); {PAPER} section 2.2.2"),
        "full_conditions": (FULL_CONDITIONS, f"{RELEASED} src/model/mp20_format/hparams_prior_full.yaml:269-309, and the formula of "
                                             f"{PAPER} Eq. 13 and {RELEASED_V1} conf/conz_2.yaml (v2.1 leaves it out)"),
        "formula_vectors": ("cgcnn", f"{RELEASED_V1} concdvae/pl_data/dataset.py:48-60 (atom_init.json, 92 per element, mean over "
                                     f"the sites); {PAPER} Eq. 13"),
        # step one
        "lr": (1e-3, f"{_HP}:173"),
        "lr_factor": (0.6, f"{_HP}:182"),
        "lr_patience": (30, f"{_HP}:183"),
        "min_lr": (1e-4, f"{_HP}:184"),
        "teacher_forcing_lattice": (True, f"{_HP}:157; concdvae/pl_modules/model.py:605-606 (current_epoch <= max)"),
        "decoder_lattice": ("released", f"{RELEASED} concdvae/pl_modules/model.py:282-283,299-300 (noise and decoder on the "
                                        "predicted cell, not detached), 445-451 (coord target in the true cell)"),
        "gradient_clip_val": (0.5, f"{_HP}:198"),
        "gradient_clip_algorithm": ("value", f"{_HP}:199"),
        "coord_boost_epoch": (None, "not in Con-CDVAE (DP-CDVAE's mul_cost_coord_epoch)"),
        "coord_boost": (10.0, "unused while coord_boost_epoch is None (DP-CDVAE's factor)"),
        # step two: the priors
        "prior_timesteps": (300, f"{_HP_PRIOR}:230"),
        "prior_beta_start": (1e-3, f"{_HP_PRIOR}:228"),
        "prior_beta_end": (0.02, f"{_HP_PRIOR}:229"),
        "prior_schedule": ("linear", f"{RELEASED} concdvae/pl_prior/model.py:93 (torch.linspace)"),
        "prior_time_dim": (64, f"{_HP_PRIOR}:231"),
        "prior_widths": ((), f"{_HP_PRIOR}:232 (n_UNet_layers 3: latent/2, /4, /8; concdvae/pl_prior/model.py:30-37)"),
        "prior_epochs": (100, f"{_HP_PRIOR}:207 (conf/train/prior_default.yaml:16; the shipped priors are epoch 95)"),
        "prior_lr": (1e-3, f"{_HP_PRIOR}:185"),
        "prior_batch_size": (256, f"{_HP_PRIOR}:95 (one device, :202)"),
        "prior_lr_factor": (0.6, f"{_HP_PRIOR}:194"),
        "prior_lr_patience": (30, f"{_HP_PRIOR}:195"),
        "prior_min_lr": (1e-5, f"{_HP_PRIOR}:196"),
        "prior_gradient_clip_val": (0.5, f"{_HP_PRIOR}:210"),
        "prior_gradient_clip_algorithm": ("value", f"{_HP_PRIOR}:211"),
        # generation
        "strategy": ("default", f"{RELEASED} conf/gen/default.yaml:4 (prior_default)"),
        "n_candidates": (20000, f"{PAPER} section 2.2.2 (20,000 latents filtered to 200; {RELEASED_V1} scripts/evaluate_diff.py:78-102)"),
        "keep": (200, f"{PAPER} section 2.2.2 ({RELEASED_V1} scripts/evaluate_diff.py:78-102)"),
        "less_tolerance": (0.1, f"{RELEASED_V1} scripts/evaluate_diff.py:305 (tolerate)"),
        "less_use_one": (False, f"{RELEASED_V1} scripts/evaluate_diff.py:307 (use_one 'False'), scripts/condition_diff_z.py:200-207 "
                                "(v2.1's use_one: true also draws a row per missing condition, prior/model.py:159-169)"),
        "n_step_each": (100, f"{RELEASED} conf/gen/default.yaml:26"),
        "step_lr": (1e-4, f"{RELEASED} conf/gen/default.yaml:25"),
        "latent_from": ("sample", "CDVAE's released reconstruction (txie-93/cdvae@f857f59 scripts/evaluate.py:38); Con-CDVAE ships no "
                                  "reconstruction script"),
        "optimize_decode": ("released", "unused: Con-CDVAE has no property optimisation"),
    },
    # the release's MP-20 (= this project's mp_20, CDVAE's data/mp_20); mp_20_sample is drawn from it
    "mp_20": {
        "max_atoms": (20, f"{_HP}:16"),
        "max_epochs": (500, f"{_HP}:19 (train_max_epochs; V1's mp_all20 1,000)"),
        "teacher_forcing_max_epoch": (200, f"{_HP}:21 (V1's mp_all20 500)"),
        "batch_size": (512, f"{_HP}:83 (256 per device) x :191 (2 devices, DDP)"),
    },
}
PUBLISHED["mp_20_sample"] = PUBLISHED["mp_20"]
