"""The hyper-parameters of ``crystens_diffusion``: one frozen dataclass, presets included.

:class:`CrysTensDiffusionConfig` holds every hyper-parameter of the two-stage cascade of CrysTens
(Alverson et al., Digital Discovery 3, 62, 2024, Appendix B.3): the two U-Nets (the networks of
:mod:`benchmark.models.crystens_diffusion.network` are built from it), the noise schedule, the
loss, the training loop and the sampler. No torch here: the command line reads this class to list
the model's options.

Appendix B.3 itself fixes only the two resolutions (32 x 32 x 4, then 64 x 64 x 4), the 256 base
channels of each U-Net, separate training for 250,000 steps at batch size 4 and the library
(imagen-pytorch). Everything else comes from the released training script
(``michaeldalverson/CrysTens`` ``train_diffusion_model.py``) and from the defaults of the
imagen-pytorch release it was written against (1.11.15, October 2022); :data:`PUBLISHED` gives the
source of every value and ``tests/models/test_crystens_diffusion.py`` holds the resolved ``paper``
preset to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from benchmark.models.base import ModelConfig

__all__ = ["PUBLISHED", "CrysTensDiffusionConfig"]


@dataclass(frozen=True)
class CrysTensDiffusionConfig(ModelConfig):
    """Every hyper-parameter of ``crystens_diffusion``; the defaults are the ``paper`` values.

    Tensors: ``image_size`` (the CrysTens side, 64) and ``low_resolution`` (U-Net 1's side, 32);
    the 4 CrysTens layers are the 4 image channels. ``resize_mode``: how the 64 x 64 tensor is
    shrunk to U-Net 1's size and U-Net 1's sample grown back as U-Net 2's condition (imagen-pytorch's
    ``resize_image_to`` is nearest-neighbour; ``area`` averages 2 x 2 blocks instead).

    U-Nets (diffusers blocks, :func:`benchmark.models.crystens_diffusion.network.build_unet`):
    ``unetK_dim`` base channels, ``unetK_dim_mults`` the channel multiplier of each level,
    ``unetK_resnet_blocks`` the ResNet blocks of each level (down path; the up path has one more,
    as in diffusers' U-Net), ``unetK_attention`` whether a level has self-attention;
    ``attention_head_dim`` and ``norm_groups`` (GroupNorm) for both.

    Diffusion: ``timesteps`` discrete steps of the ``noise_schedule`` (diffusers' beta schedule name;
    ``squaredcos_cap_v2`` is the cosine schedule of Nichol & Dhariwal), epsilon prediction, L2 loss
    weighted by p2 (``(p2_loss_weight_k + SNR(t))^-p2_loss_weight_gamma``; gamma 0 switches it off),
    data scaled from [0, 1] to [-1, 1] (``scale_to_neg_one``), what the U-Nets predict
    (``prediction_type``: ``epsilon``, the noise, imagen-pytorch's default ``pred_objectives =
    'noise'`` the release ran with; ``v_prediction``, the velocity ``sqrt(abar) eps - sqrt(1 - abar) x0``
    of Salimans & Ho 2022, diffusers' option, not the paper's), noise augmentation of U-Net 2's
    low-resolution condition (``lowres_noise_augmentation``: a level drawn uniformly over the
    ``timesteps`` of a linear schedule per batch in training, the U-Net conditioned on it).

    Training: Adam (``lr``, ``adam_betas``, ``adam_eps``), ``batch_size``, ``max_steps`` optimizer
    steps (both U-Nets step together, see the plugin), an exponential moving average of the weights
    (``ema_beta``, None: off; ``ema_update_every``, ``ema_update_after_step``, warm-up
    ``ema_inv_gamma`` / ``ema_power``: ema-pytorch's schedule).

    Sampling (the ``sampling_fields``: changing one reuses a trained model): ``sampler``
    (``ddpm``: ancestral sampling over ``sampling_steps`` steps, default all ``timesteps``, as
    imagen-pytorch; ``ddim``: DDIM with ``ddim_eta``), ``dynamic_thresholding`` at
    ``dynamic_thresholding_percentile`` (off: the predicted clean tensor is clipped to [-1, 1]),
    ``lowres_sample_noise_level`` (the fixed augmentation level of U-Net 1's sample, as a fraction
    of ``timesteps``), ``sample_with_ema`` and ``sample_batch_size``.
    """

    # the schedule first: the contract's refusal check changes the first numeric field by one
    timesteps: int = 1000
    image_size: int = 64
    low_resolution: int = 32
    resize_mode: Literal["nearest", "area"] = "nearest"
    # U-Net 1 (32 x 32) and U-Net 2 (64 x 64, conditioned on U-Net 1's sample)
    unet1_dim: int = 256
    unet1_dim_mults: tuple[int, ...] = (1, 2, 4)
    unet1_resnet_blocks: tuple[int, ...] = (3, 3, 3)
    unet1_attention: tuple[bool, ...] = (False, True, True)
    unet2_dim: int = 256
    unet2_dim_mults: tuple[int, ...] = (1, 2, 4)
    unet2_resnet_blocks: tuple[int, ...] = (2, 4, 8)
    unet2_attention: tuple[bool, ...] = (False, False, True)
    attention_head_dim: int = 64
    norm_groups: int = 8
    # diffusion and loss
    noise_schedule: Literal["squaredcos_cap_v2", "linear", "scaled_linear"] = "squaredcos_cap_v2"
    p2_loss_weight_gamma: float = 0.5
    p2_loss_weight_k: float = 1.0
    scale_to_neg_one: bool = True
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"
    lowres_noise_augmentation: bool = True
    # training
    lr: float = 1e-4
    adam_betas: tuple[float, float] = (0.9, 0.99)
    adam_eps: float = 1e-8
    batch_size: int = 4
    max_steps: int = 250_000
    ema_beta: float | None = 0.9999
    ema_update_every: int = 10
    ema_update_after_step: int = 100
    ema_inv_gamma: float = 1.0
    ema_power: float = 2 / 3
    # sampling
    sampler: Literal["ddpm", "ddim"] = "ddpm"
    sampling_steps: int | None = None
    ddim_eta: float = 0.0
    dynamic_thresholding: bool = True
    dynamic_thresholding_percentile: float = 0.95
    lowres_sample_noise_level: float = 0.2
    sample_with_ema: bool = True
    sample_batch_size: int = 256

    sampling_fields: ClassVar[frozenset[str]] = frozenset({
        "sampler", "sampling_steps", "ddim_eta", "dynamic_thresholding", "dynamic_thresholding_percentile",
        "lowres_sample_noise_level", "sample_with_ema", "sample_batch_size",
    })
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # minutes on a 2-core CPU: two tiny U-Nets (16 base channels; U-Net 1 with 2 levels, U-Net 2
        # with 3, attention only at the deepest, 16 x 16: attention over 64 x 64 or 32 x 32 positions
        # doubles a CPU step), the paper's 1,000-step cosine schedule, 256 steps at batch 4 (one pass
        # over perov_5_dev's 1,024 training crystals; 400 steps at batch 8 ran past 13 minutes on the
        # loaded 2-core machine) with a larger learning rate and no EMA (a 0.9999 average would still
        # be the initial weights), and 25 DDIM steps per U-Net when sampling (sampler=ddpm with
        # sampling_steps=none samples all 1,000 instead). Two changes
        # from the paper's recipe, both measured on 16 contract crystals (tests/models/
        # test_crystens_diffusion.py): v-prediction, because a tiny U-Net trained a few hundred steps
        # to predict epsilon denoises training tensors well (x0 error 0.02-0.1 for t <= 500) but its
        # sampling chain never moves the mean off 0 (every entry, padding included, came out near 0.5
        # instead of 0, at 300 and 600 steps alike: at the first steps x0 = (x_t - sqrt(1-abar) eps) /
        # sqrt(abar) amplifies the epsilon error up to 1/sqrt(abar) ~ 2e4 times); and no dynamic
        # thresholding, because 97% of a CrysTens is padding at -1, so a percentile s > 1 from any
        # overshoot of the padding divides every entry by s and pulls the tensor towards 0.5
        # (v-prediction after 600 steps: mean padding entry 0.108 with, 0.028 without)
        "smoke": {
            "unet1_dim": 16, "unet1_dim_mults": (1, 2), "unet1_resnet_blocks": (1, 1), "unet1_attention": (False, True),
            "unet2_dim": 16, "unet2_dim_mults": (1, 2, 2), "unet2_resnet_blocks": (1, 1, 1), "unet2_attention": (False, False, True),
            "attention_head_dim": 16, "batch_size": 4, "max_steps": 256, "lr": 2e-3, "ema_beta": None,
            "prediction_type": "v_prediction", "dynamic_thresholding": False,
            "sampler": "ddim", "sampling_steps": 25, "sample_batch_size": 64,
        },
    }

    def __post_init__(self) -> None:
        if self.image_size % self.low_resolution:
            raise ValueError(f"image_size {self.image_size} must be a multiple of low_resolution {self.low_resolution}")
        for k in (1, 2):
            mults, blocks, attn = (getattr(self, f"unet{k}_{n}") for n in ("dim_mults", "resnet_blocks", "attention"))
            if not (len(mults) == len(blocks) == len(attn)) or not mults:
                raise ValueError(f"unet{k}_dim_mults, unet{k}_resnet_blocks and unet{k}_attention need one entry per level, "
                                 f"got {len(mults)}, {len(blocks)} and {len(attn)}")
            size = self.low_resolution if k == 1 else self.image_size
            if size % 2 ** (len(mults) - 1):
                raise ValueError(f"U-Net {k}: {len(mults)} levels do not divide a {size} x {size} tensor")
            for m in mults:
                if (getattr(self, f"unet{k}_dim") * m) % self.norm_groups:
                    raise ValueError(f"U-Net {k}: {getattr(self, f'unet{k}_dim')} x {m} channels do not split into {self.norm_groups} groups")
        if self.timesteps < 2:
            raise ValueError("timesteps must be at least 2")
        if self.sampling_steps is not None and not 1 <= self.sampling_steps <= self.timesteps:
            raise ValueError(f"sampling_steps must be in 1..timesteps ({self.timesteps}) or none")
        if not 0.0 <= self.lowres_sample_noise_level < 1.0:
            raise ValueError("lowres_sample_noise_level must be in [0, 1)")
        if not 0.0 < self.dynamic_thresholding_percentile <= 1.0:
            raise ValueError("dynamic_thresholding_percentile must be in (0, 1]")
        if self.ema_beta is not None and not 0.0 < self.ema_beta < 1.0:
            raise ValueError("ema_beta must be in (0, 1) or none")
        if self.batch_size < 1 or self.max_steps < 1 or self.sample_batch_size < 1:
            raise ValueError("batch_size, max_steps and sample_batch_size must be positive")


PAPER = "Alverson et al., Digital Discovery 3, 62 (2024)"
RELEASED = "michaeldalverson/CrysTens@3eb296a train_diffusion_model.py"
IMAGEN = "lucidrains/imagen-pytorch 1.11.15 (fa29d24, the release of 2022-10-22 the script was written against)"
EMA = "ema-pytorch EMA defaults (ImagenTrainer use_ema=True)"

#: Every value the ``paper`` preset fixes, with its source: ``{field: (value, source)}``. Where this
#: project's value is not the library's (the discrete diffusers schedule for imagen-pytorch's
#: continuous one, the channel layout), the source says so.
PUBLISHED: dict[str, tuple[Any, str]] = {
    "image_size": (64, f"{PAPER} section 3.1 and B.3 (64 x 64 x 4)"),
    "low_resolution": (32, f"{PAPER} B.3 (32 x 32 x 4); {RELEASED}:51 (image_sizes = (32, 64))"),
    "resize_mode": ("nearest", f"{IMAGEN} imagen_pytorch.py:144-159 (resize_image_to: F.interpolate mode='nearest')"),
    "unet1_dim": (256, f"{PAPER} B.3 (256 base channels); {RELEASED}:27"),
    "unet1_dim_mults": ((1, 2, 4), f"{RELEASED}:28"),
    "unet1_resnet_blocks": ((3, 3, 3), f"{RELEASED}:29 (num_resnet_blocks = 3)"),
    "unet1_attention": ((False, True, True), f"{RELEASED}:30 (layer_attns; the use_linear_attn of :32 is not reproduced)"),
    "unet2_dim": (256, f"{PAPER} B.3 (256 base channels); {RELEASED}:39"),
    "unet2_dim_mults": ((1, 2, 4), f"{RELEASED}:40"),
    "unet2_resnet_blocks": ((2, 4, 8), f"{RELEASED}:41"),
    "unet2_attention": ((False, False, True), f"{RELEASED}:42 (layer_attns)"),
    "attention_head_dim": (64, f"{IMAGEN} Unet(attn_dim_head = 64)"),
    "norm_groups": (8, f"{IMAGEN} Unet(resnet_groups = 8)"),
    "timesteps": (1000, f"{RELEASED}:52 (Imagen(timesteps = 1000))"),
    "noise_schedule": ("squaredcos_cap_v2", f"{IMAGEN} Imagen(noise_schedules = 'cosine'), continuous log-SNR form; "
                                            "here diffusers' discrete cosine schedule (Nichol & Dhariwal, betas capped at 0.999)"),
    "p2_loss_weight_gamma": (0.5, f"{IMAGEN} Imagen(p2_loss_weight_gamma = 0.5)"),
    "p2_loss_weight_k": (1.0, f"{IMAGEN} Imagen(p2_loss_weight_k = 1)"),
    "scale_to_neg_one": (True, f"{IMAGEN} Imagen(auto_normalize_img = True)"),
    "prediction_type": ("epsilon", f"{IMAGEN} Imagen(pred_objectives = 'noise')"),
    "lowres_noise_augmentation": (True, f"{IMAGEN} Imagen(lowres_noise_schedule = 'linear'), p_losses noises the condition"),
    "lr": (1e-4, f"{IMAGEN} ImagenTrainer(lr = 1e-4); {RELEASED}:56 (defaults)"),
    "adam_betas": ((0.9, 0.99), f"{IMAGEN} ImagenTrainer(beta1 = 0.9, beta2 = 0.99)"),
    "adam_eps": (1e-8, f"{IMAGEN} ImagenTrainer(eps = 1e-8)"),
    "batch_size": (4, f"{PAPER} B.3; {RELEASED}:68 (np.random.randint(0, n, 4))"),
    "max_steps": (250_000, f"{PAPER} B.3 (250 000 optimisation steps per U-Net); {RELEASED}:64"),
    "ema_beta": (0.9999, EMA),
    "ema_update_every": (10, EMA),
    "ema_update_after_step": (100, EMA),
    "ema_inv_gamma": (1.0, EMA),
    "ema_power": (2 / 3, EMA),
    "sampler": ("ddpm", f"{IMAGEN} p_sample_loop (ancestral steps over every timestep)"),
    "sampling_steps": (None, f"{IMAGEN} p_sample_loop (all {1000} timesteps)"),
    "ddim_eta": (0.0, "unused by ddpm; DDIM's deterministic sampler (Song et al. 2021) when sampler = ddim"),
    "dynamic_thresholding": (True, f"{IMAGEN} Imagen(dynamic_thresholding = True)"),
    "dynamic_thresholding_percentile": (0.95, f"{IMAGEN} Imagen(dynamic_thresholding_percentile = 0.95)"),
    "lowres_sample_noise_level": (0.2, f"{IMAGEN} Imagen(lowres_sample_noise_level = 0.2)"),
    "sample_with_ema": (True, f"{IMAGEN} ImagenTrainer.sample (use_ema_unets unless use_non_ema)"),
}
