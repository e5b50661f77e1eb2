"""The DP-CDVAE model plugins: the network of :mod:`benchmark.models.dp_cdvae.network`, trained and run.

Four plugins, one per encoder of the paper's Fig. S1 (Pakornchote et al., arXiv:2308.02165):

=====================  =========================================  ===============================
plugin                 encoder                                    paper row
=====================  =========================================  ===============================
``dp_cdvae``           DimeNet++ (Fig. S1 (g))                    DP-CDVAE
``dp_cdvae_na``        DimeNet++ + N_a MLP (Fig. S1 (e))          DP-CDVAE+N_a
``dp_cdvae_gine``      DimeNet++ + GINE (Fig. S1 (f))             DP-CDVAE+GINE
``dp_cdvae_na_gine``   DimeNet++ + N_a MLP + GINE (Fig. S1 (h))   DP-CDVAE+N_a+GINE
=====================  =========================================  ===============================

They share everything else with the ``cdvae`` plugin (:class:`benchmark.models.cdvae.plugin.CDVAEModel`):
training (Adam 1e-3, reduce-on-plateau on the validation loss ``cost_coord coord + cost_type type``
computed without teacher forcing, teacher forcing of the lattice through ``teacher_forcing_max_epoch``,
the coordinate weight x10 after ``coord_boost_epoch``, gradient clipping by value at 0.5, the
best-validation weights kept, the same CrystalNN encoder graphs and lattice standardisation),
checkpoints read with ``weights_only=True`` and reconstruction from a draw of q(z | M). What
differs is the network (:mod:`benchmark.models.dp_cdvae.network`, a DDPM on fractional
coordinates, Eqs. 1-11, built from :class:`~benchmark.models.dp_cdvae.config.DPCDVAEConfig`) and
its sampler: ``num_steps`` reverse steps (None: all of them, T..``min_timestep``, 999 as released;
fewer respace the schedule) with the step of Eq. 7 (``reverse_step = "eq7"``, Table I) or Eq. 6
(Table S1), from types drawn from the predicted composition (``initial_types``).

Presets: ``paper`` is the released model (trachote/dp-cdvae@bb2c819; every value and its source in
:mod:`benchmark.models.dp_cdvae.config`), published only for ``dp_cdvae`` on Carbon-24: on the other
datasets, and for the three variants, the released files are evidence but not a published model
(see that module). ``smoke`` is the small network of ``cdvae``'s smoke preset with a 16-wide time
embedding and 100 respaced reverse steps, to train and sample on a 2-core CPU in minutes, with the
choices made before the released ones became the defaults. DP-CDVAE has no property optimisation,
so no property head is trained.

Checkpoints written before a field existed load with the behaviour they were trained with
(:attr:`DPCDVAEModel.legacy_config`), not with today's defaults.
"""

from __future__ import annotations

from typing import Any, ClassVar

from benchmark.models.base import RECONSTRUCT, SAMPLE, Model
from benchmark.models.cdvae.plugin import CDVAEModel
from benchmark.models.dp_cdvae.config import DPCDVAEConfig, DPCDVAEGINEConfig, DPCDVAENaConfig, DPCDVAENaGINEConfig


class DPCDVAEModel(CDVAEModel):
    """DP-CDVAE (Pakornchote et al. 2023): CDVAE's VAE with a DDPM on fractional coordinates."""

    name = "dp_cdvae"
    description = "DP-CDVAE: CDVAE's VAE with a diffusion probabilistic model on fractional coordinates (Pakornchote et al. 2023)"
    version = "0.1"
    capabilities = frozenset({SAMPLE, RECONSTRUCT})
    Config = DPCDVAEConfig
    #: what a checkpoint written before these fields existed was trained and sampled with
    legacy_config: ClassVar[dict[str, Any]] = {
        "min_timestep": 1, "type_noise_step": "tied", "type_loss_weight": "none", "gine_edge": "gaussian",
        "initial_types": "argmax",
    }

    @classmethod
    def network_class(cls) -> type:
        from benchmark.models.dp_cdvae.network import DPCDVAE

        return DPCDVAE

    def sampler_kwargs(self) -> dict[str, Any]:
        """The reverse process of the model's config: ``num_steps``, Eq. 6 or 7 and how Z_T is
        drawn (sampling fields, so a trained model loaded with another config samples with that
        config's values)."""
        return {"num_steps": self.config.num_steps, "reverse_step": self.config.reverse_step,
                "initial_types": self.config.initial_types}

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
