"""The hyper-parameters of ``con_cdvae``: CDVAE's config plus the conditioning, the Prior and the
generation strategy, in one dataclass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from benchmark.models.cdvae.config import CDVAEConfig

__all__ = ["ConCDVAEConfig"]


@dataclass(frozen=True)
class ConCDVAEConfig(CDVAEConfig):
    """Every hyper-parameter of ``con_cdvae`` (defaults: the released MP-20 model): CDVAE's
    (:class:`~benchmark.models.cdvae.config.CDVAEConfig`; no property head) plus:

    Conditions: ``conditions``, the properties the model is conditioned on (PropEmb, Predictor and
    the default Prior), as spec strings (``"band_gap:continuous:-0.5:9.0:20"``,
    ``"BG_type:discrete:2"``; :class:`benchmark.models.con_cdvae.network.ConditionSpec`) or bare
    column names that :meth:`~benchmark.models.con_cdvae.plugin.ConCDVAEModel.fit` completes from
    the training data (and stores resolved). ``full_prior``: also train the *full* Prior when the
    training data has every column of the full condition set.

    PropEmb sizes (code ``conditionmodel``): ``cond_feature_dim`` 64 and ``cond_layers`` 3 per
    condition, ``cond_class_emb_dim`` 64, ``prop_dim`` 128 (C_prop) with ``prop_layers`` 2. The
    Prior's embedding uses the same sizes (code: ``conditionmodel: ${model.conditionmodel}``).
    Eq. 11's MLP is ``latent + prop_dim -> hidden_dim (fc_num_layers) -> latent`` (code).

    Predictor (code ``conditionpre``): ``predictor_hidden_dim`` 256, ``predictor_layers`` 2.
    ``alpha``: weight of L_pre in L_joint (paper: "usually set to 3"; code ``cost_property: 3``).

    Decoder: ``decoder_time_dim`` (code ``time_emb_dim`` 64; 0: CDVAE's decoder input),
    ``decoder_detach_z`` (code ``nograd``, False), ``decoder_cutoff`` 9 Å (code ``radius: 9.``;
    CDVAE's default is 7).

    Prior (code ``conf/prior/default.yaml``): ``prior_timesteps`` T = 300, linear
    ``prior_beta_start`` 1e-3 -> ``prior_beta_end`` 0.02 (``prior_schedule``; ``"sigmoid"`` takes
    DP-CDVAE's shape), ``prior_time_dim`` 64, ``prior_widths`` (empty: latent/2, latent/4,
    latent/8, i.e. three halving levels, ``n_UNet_layers: 3``). Step-two training:
    ``prior_epochs``, ``prior_lr``, ``prior_batch_size``.

    Generation (the ``sampling_fields``): ``strategy`` (``default`` / ``full`` / ``less``), the
    Predictor filter ``n_candidates`` : ``keep`` (published 20,000 : 200; None: no filter),
    ``less_tolerance`` and CDVAE's Langevin ``n_step_each`` and ``step_lr``.
    """

    property: str | None = None  # Con-CDVAE has no CDVAE property head
    decoder_cutoff: float = 9.0
    conditions: tuple[str, ...] = ("formation_energy_per_atom",)
    alpha: float = 3.0
    cond_feature_dim: int = 64
    cond_layers: int = 3
    cond_class_emb_dim: int = 64
    prop_dim: int = 128
    prop_layers: int = 2
    predictor_hidden_dim: int = 256
    predictor_layers: int = 2
    decoder_time_dim: int = 64
    decoder_detach_z: bool = False
    full_prior: bool = True
    prior_timesteps: int = 300
    prior_beta_start: float = 1e-3
    prior_beta_end: float = 0.02
    prior_schedule: Literal["linear", "sigmoid"] = "linear"
    prior_time_dim: int = 64
    prior_widths: tuple[int, ...] = ()
    prior_epochs: int = 300
    prior_lr: float = 1e-3
    prior_batch_size: int = 256
    # generation
    strategy: Literal["default", "full", "less"] = "default"
    n_candidates: int | None = 20000
    keep: int | None = 200
    less_tolerance: float = 0.1

    # one trained model serves every strategy and filter ratio (the paper's D/F/L rows)
    sampling_fields: ClassVar[frozenset[str]] = CDVAEConfig.sampling_fields | {"strategy", "n_candidates", "keep", "less_tolerance"}
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "smoke": {
            **CDVAEConfig.presets["smoke"],
            "cond_feature_dim": 16, "cond_class_emb_dim": 16, "prop_dim": 32, "predictor_hidden_dim": 64,
            "decoder_time_dim": 16, "prior_time_dim": 16, "prior_epochs": 100, "prior_batch_size": 64,
            "n_candidates": 2000, "keep": 200,
        },
    }
    dataset_presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        p: {d: {**v, "property": None} for d, v in per.items()} for p, per in CDVAEConfig.dataset_presets.items()
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        # a checkpoint or a caller may hand sequences back as lists: normalise to tuples of plain values
        conditions = (self.conditions,) if isinstance(self.conditions, str) else self.conditions
        object.__setattr__(self, "conditions", tuple(str(c) for c in conditions))
        object.__setattr__(self, "prior_widths", tuple(int(w) for w in self.prior_widths))
        if not self.conditions:
            raise ValueError("Con-CDVAE needs at least one condition")
        if self.decoder_time_dim < 0 or self.decoder_time_dim % 2:
            raise ValueError("decoder_time_dim must be even and non-negative")
        if self.alpha < 0:
            raise ValueError("alpha must be non-negative")
