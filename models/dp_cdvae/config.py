"""The hyper-parameters of the DP-CDVAE plugins: CDVAE's config plus the diffusion's, one dataclass
per variant of Fig. S1 (the variants differ only in the encoder switches)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from benchmark.models.cdvae.config import CDVAEConfig

__all__ = ["DPCDVAEConfig", "DPCDVAEGINEConfig", "DPCDVAENaConfig", "DPCDVAENaGINEConfig"]


def _without_property(presets: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """CDVAE's per-dataset presets with the property head switched off."""
    return {p: {d: {**v, "property": None} for d, v in per.items()} for p, per in presets.items()}


@dataclass(frozen=True)
class DPCDVAEConfig(CDVAEConfig):
    """Every hyper-parameter of ``dp_cdvae`` (defaults: the published model): CDVAE's
    (:class:`~benchmark.models.cdvae.config.CDVAEConfig`; its Langevin fields ``sigma_begin``,
    ``sigma_end``, ``num_noise_level``, ``n_step_each`` and ``step_lr`` are unused) plus:

    Diffusion (section IV A): ``num_timesteps`` T, the sigmoid beta schedule ``beta_start`` ->
    ``beta_end`` over sigmoid arguments ``sigmoid_start`` -> ``sigmoid_end`` (released config;
    :class:`benchmark.nn.schedules.SigmoidBetaSchedule`), ``reverse_step`` (Eq. 6 or 7). Type noise
    (Eq. 9): ``type_noise`` and the inherited ``type_sigma_end`` (sigma'_1 = 0.01) ->
    ``type_sigma_begin`` (sigma'_T = 5).

    Diffusion network inputs: Fourier features ``fourier_n_min``..``fourier_n_max`` (S3: 3..8;
    ``decoder_fourier`` is on by default here, off only for an ablation) and the time embedding
    size ``time_dim``.

    Encoder variants (Fig. S1): ``encoder_num_atoms``, ``encoder_gine`` and the GINE sizes
    ``gine_hidden_dim``, ``gine_num_layers``, ``gine_num_rbf``.

    Loss weights: ``cost_coord`` (L_simple, 1 in Eq. S1), ``cost_type`` (lambda of Eq. 11) and
    CDVAE's ``cost_natom``, ``cost_lattice``, ``cost_composition``, ``beta`` (lambda_1..4 of S1;
    the paper gives no values, CDVAE's defaults are kept). No property head (``property`` None).

    Sampling (the ``sampling_fields``): ``num_steps`` reverse steps (None: T) with the step of
    ``reverse_step``.
    """

    cost_coord: float = 1.0  # Eq. S1: L_simple carries no weight
    property: str | None = None
    num_timesteps: int = 1000
    beta_start: float = 1e-10
    beta_end: float = 0.01
    sigmoid_start: float = -10.0
    sigmoid_end: float = 6.0
    reverse_step: Literal["eq6", "eq7"] = "eq7"
    type_noise: Literal["mix", "softmax"] = "mix"
    decoder_fourier: bool = True
    time_dim: int = 128
    encoder_num_atoms: bool = False
    encoder_gine: bool = False
    gine_hidden_dim: int = 128
    gine_num_layers: int = 3
    gine_num_rbf: int = 16
    num_steps: int | None = None

    # Eq. 6 or Eq. 7 and the number of reverse steps are chosen at sampling time
    sampling_fields: ClassVar[frozenset[str]] = CDVAEConfig.sampling_fields | {"reverse_step", "num_steps"}
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "smoke": {
            **CDVAEConfig.presets["smoke"],
            "time_dim": 16, "gine_hidden_dim": 32, "gine_num_layers": 2, "num_steps": 100,
        },
    }
    dataset_presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = _without_property(CDVAEConfig.dataset_presets)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_timesteps < 1:
            raise ValueError("num_timesteps must be at least 1")
        if not 0 < self.beta_start <= self.beta_end < 1:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {self.beta_start}, {self.beta_end}")
        if self.reverse_step not in ("eq6", "eq7"):
            raise ValueError(f"reverse_step must be 'eq6' or 'eq7', got {self.reverse_step!r}")
        if self.type_noise not in ("mix", "softmax"):
            raise ValueError(f"type_noise must be 'mix' or 'softmax', got {self.type_noise!r}")
        if self.time_dim < 0 or self.time_dim % 2:
            raise ValueError("time_dim must be even and non-negative")
        if self.gine_num_layers < 1:
            raise ValueError("gine_num_layers must be at least 1")


@dataclass(frozen=True)
class DPCDVAENaConfig(DPCDVAEConfig):
    """``dp_cdvae_na``: the number-of-atoms MLP beside DimeNet++ (Fig. S1 (e))."""

    encoder_num_atoms: bool = True


@dataclass(frozen=True)
class DPCDVAEGINEConfig(DPCDVAEConfig):
    """``dp_cdvae_gine``: the GINE encoder beside DimeNet++ (Fig. S1 (f))."""

    encoder_gine: bool = True


@dataclass(frozen=True)
class DPCDVAENaGINEConfig(DPCDVAEConfig):
    """``dp_cdvae_na_gine``: both extra encoders (Fig. S1 (h))."""

    encoder_num_atoms: bool = True
    encoder_gine: bool = True
