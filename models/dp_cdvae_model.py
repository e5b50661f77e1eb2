"""The DP-CDVAE model plugins: the network of :mod:`benchmark.models.dp_cdvae`, trained and run.

Four plugins, one per encoder of the paper's Fig. S1 (Pakornchote et al., arXiv:2308.02165):

=====================  =========================================  ===============================
plugin                 encoder                                    paper row
=====================  =========================================  ===============================
``dp_cdvae``           DimeNet++ (Fig. S1 (g))                    DP-CDVAE
``dp_cdvae_na``        DimeNet++ + N_a MLP (Fig. S1 (e))          DP-CDVAE+N_a
``dp_cdvae_gine``      DimeNet++ + GINE (Fig. S1 (f))             DP-CDVAE+GINE
``dp_cdvae_na_gine``   DimeNet++ + N_a MLP + GINE (Fig. S1 (h))   DP-CDVAE+N_a+GINE
=====================  =========================================  ===============================

They share everything else with the ``cdvae`` plugin (:class:`benchmark.models.cdvae_model.CDVAEModel`):
training (Adam 1e-3, reduce-on-plateau, teacher forcing of the lattice, the same CrystalNN encoder
graphs and lattice standardisation), checkpoints read with ``weights_only=True``, reconstruction
from the encoder mean and the per-dataset settings (beta, maximum atoms, epochs). What differs is
the network (a DDPM on fractional coordinates, Eqs. 1-11) and its sampler: ``num_steps`` reverse
steps (None: all T = 1000, as published; fewer respace the schedule) with the step of Eq. 7
(``reverse_step = "eq7"``, Table I) or Eq. 6 (Table S1).

Presets: ``paper`` is the published model (CDVAE's network sizes, T = 1000, sigmoid schedule,
Eq. 7, 1000 reverse steps); ``smoke`` is the small network of ``cdvae``'s smoke preset with a
16-wide time embedding and 100 respaced reverse steps, to train and sample on a 2-core CPU in
minutes. DP-CDVAE has no property optimisation, so no property head is trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from benchmark.models.base import RECONSTRUCT, SAMPLE, Model
from benchmark.models.cdvae_model import CDVAEConfig, CDVAEModel


def _without_property(presets: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """CDVAE's per-dataset presets with the property head switched off."""
    return {p: {d: {**v, "property": None} for d, v in per.items()} for p, per in presets.items()}


@dataclass(frozen=True)
class DPCDVAEConfig(CDVAEConfig):
    """Hyper-parameters of ``dp_cdvae`` (defaults: the published model): CDVAE's
    (:class:`CDVAEConfig`; its Langevin fields are unused) plus the diffusion's.

    Fields with the name of a :class:`~benchmark.models.dp_cdvae.DPCDVAEHParams` field are passed
    to the network as they are (see there for their meaning); ``num_steps`` is the number of
    reverse steps at sampling time (None: T).
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


class DPCDVAEModel(CDVAEModel):
    """DP-CDVAE (Pakornchote et al. 2023): CDVAE's VAE with a DDPM on fractional coordinates."""

    name = "dp_cdvae"
    description = "DP-CDVAE: CDVAE's VAE with a diffusion probabilistic model on fractional coordinates (Pakornchote et al. 2023)"
    version = "0.1"
    capabilities = frozenset({SAMPLE, RECONSTRUCT})
    Config = DPCDVAEConfig

    @classmethod
    def network_classes(cls) -> tuple[type, type]:
        from benchmark.models.dp_cdvae import DPCDVAE, DPCDVAEHParams

        return DPCDVAE, DPCDVAEHParams

    def sampler_kwargs(self) -> dict[str, Any]:
        return {"num_steps": self.config.num_steps}

    # DP-CDVAE has no property optimisation (not part of the paper): back to the base class's
    # "not supported", so the capability and the method agree
    optimize = Model.optimize


class DPCDVAENaModel(DPCDVAEModel):
    name = "dp_cdvae_na"
    description = "DP-CDVAE+N_a: DP-CDVAE with a number-of-atoms MLP in the encoder (Fig. S1 (e))"
    Config = DPCDVAENaConfig


class DPCDVAEGINEModel(DPCDVAEModel):
    name = "dp_cdvae_gine"
    description = "DP-CDVAE+GINE: DP-CDVAE with a GINE graph encoder beside DimeNet++ (Fig. S1 (f))"
    Config = DPCDVAEGINEConfig


class DPCDVAENaGINEModel(DPCDVAEModel):
    name = "dp_cdvae_na_gine"
    description = "DP-CDVAE+N_a+GINE: DP-CDVAE with the number-of-atoms MLP and GINE encoders (Fig. S1 (h))"
    Config = DPCDVAENaGINEConfig


VARIANTS: dict[str, type[DPCDVAEModel]] = {m.name: m for m in (DPCDVAEModel, DPCDVAENaModel, DPCDVAEGINEModel, DPCDVAENaGINEModel)}

__all__ = [
    "DPCDVAEConfig",
    "DPCDVAEGINEConfig",
    "DPCDVAEGINEModel",
    "DPCDVAEModel",
    "DPCDVAENaConfig",
    "DPCDVAENaGINEConfig",
    "DPCDVAENaGINEModel",
    "DPCDVAENaModel",
    "VARIANTS",
]
