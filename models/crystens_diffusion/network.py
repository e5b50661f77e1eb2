"""The two-stage diffusion cascade of CrysTens (Alverson et al. 2024, Appendix B.3) on diffusers.

Shapes: a batch of CrysTens tensors enters as ``(B, 4, 64, 64)`` float32 in [0, 1], channel first:
the 4 CrysTens layers (distance layer and the x, y, z difference layers, each with the repeated
header rows and columns) are the 4 image channels, as the paper describes them (section 3.1,
Figs. 1-2). (The released ``get_stacked_crys_tens.py`` builds its channel-first stack with
``np.reshape(crys, (4, 64, 64))`` on a channel-last array, which scrambles rows and layers; the
paper's layout is followed here.)

* U-Net 1 denoises the low-resolution tensor ``(B, 4, 32, 32)`` (the 64 x 64 tensor resized with
  ``resize_mode``, nearest-neighbour as imagen-pytorch's ``resize_image_to``).
* U-Net 2 denoises ``(B, 4, 64, 64)`` and reads U-Net 1's tensor resized back to 64 x 64 as 4 extra
  input channels (``(B, 8, 64, 64)`` in), noised to an augmentation level it is also conditioned
  on (Imagen's noise conditioning augmentation: a level drawn per batch in training, fixed at
  ``lowres_sample_noise_level`` when sampling).

Both predict the noise epsilon at a discrete step t of a ``timesteps``-step schedule (cosine in
``paper``); the loss is the p2-weighted mean squared error of the prediction. The U-Nets are
diffusers' ``UNet2DModel`` with each level's down and up blocks rebuilt from diffusers' block
factory so that a level can have its own number of ResNet blocks (the super-resolution U-Net has
2, 4 and 8); the schedulers are diffusers' ``DDPMScheduler`` (ancestral sampling, imagen-pytorch's
sampler) and ``DDIMScheduler`` (fewer steps), with dynamic thresholding (diffusers'
``thresholding`` with no upper bound on s, which is Imagen's rule) or plain clipping of the
predicted clean tensor.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.models.crystens_diffusion.config import CrysTensDiffusionConfig

__all__ = ["CHANNELS", "CrysTensCascade", "build_unet", "make_scheduler", "resize"]

#: the CrysTens layers, used as image channels
CHANNELS = 4
#: diffusers' dynamic thresholding clamps s to [1, sample_max_value]; Imagen only to s >= 1
_NO_UPPER_BOUND = 1e6


def build_unet(*, in_channels: int, out_channels: int, sample_size: int, dim: int, dim_mults: tuple[int, ...],
               resnet_blocks: tuple[int, ...], attention: tuple[bool, ...], attention_head_dim: int, norm_groups: int,
               level_conditioned: bool) -> Any:
    """A diffusers ``UNet2DModel`` with ``len(dim_mults)`` levels of ``dim * mult`` channels.

    Level ``i`` has ``resnet_blocks[i]`` ResNet blocks on the way down and one more on the way up
    (diffusers' U-Net convention; the skip connections then pair up level by level), with
    self-attention after each when ``attention[i]``; the middle block has attention too (Imagen's
    ``attend_at_middle``). ``level_conditioned``: the U-Net also embeds an integer level per sample
    (``class_labels``, embedded like the timestep and added to it): U-Net 2's augmentation level.

    Input ``(B, in_channels, sample_size, sample_size)``, timestep ``(B,)`` int, output ``.sample``
    ``(B, out_channels, sample_size, sample_size)``.
    """
    from diffusers import UNet2DModel
    from diffusers.models.unets.unet_2d_blocks import get_down_block, get_up_block

    channels = tuple(dim * m for m in dim_mults)
    down_types = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention)
    up_types = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention))
    unet = UNet2DModel(
        sample_size=sample_size, in_channels=in_channels, out_channels=out_channels, block_out_channels=channels,
        down_block_types=down_types, up_block_types=up_types, layers_per_block=resnet_blocks[0],
        attention_head_dim=attention_head_dim, norm_num_groups=norm_groups,
        class_embed_type="timestep" if level_conditioned else None,
    )
    time_channels = channels[0] * 4
    common = {"temb_channels": time_channels, "resnet_eps": 1e-5, "resnet_act_fn": "silu", "resnet_groups": norm_groups,
              "attention_head_dim": attention_head_dim, "resnet_time_scale_shift": "default", "dropout": 0.0}
    # the same blocks UNet2DModel builds, with each level's own number of ResNet blocks
    out_ch = channels[0]
    for i, kind in enumerate(down_types):
        in_ch, out_ch = out_ch, channels[i]
        unet.down_blocks[i] = get_down_block(kind, num_layers=resnet_blocks[i], in_channels=in_ch, out_channels=out_ch,
                                             add_downsample=i < len(channels) - 1, downsample_padding=1, downsample_type="conv", **common)
    rev = list(reversed(channels))
    rev_blocks = list(reversed(resnet_blocks))
    out_ch = rev[0]
    for i, kind in enumerate(up_types):
        prev_ch, out_ch = out_ch, rev[i]
        in_ch = rev[min(i + 1, len(channels) - 1)]
        unet.up_blocks[i] = get_up_block(kind, num_layers=rev_blocks[i] + 1, in_channels=in_ch, out_channels=out_ch,
                                         prev_output_channel=prev_ch, add_upsample=i < len(channels) - 1, upsample_type="conv",
                                         **common)
    return unet


def make_scheduler(config: CrysTensDiffusionConfig, kind: str = "ddpm") -> Any:
    """The diffusers scheduler of ``config``'s noise schedule: ``ddpm`` (training noise and
    ancestral sampling) or ``ddim``; ``augmentation``: the linear schedule of U-Net 2's
    conditioning noise (Imagen's ``lowres_noise_schedule = 'linear'``)."""
    from diffusers import DDIMScheduler, DDPMScheduler

    if kind == "augmentation":
        return DDPMScheduler(num_train_timesteps=config.timesteps, beta_schedule="linear")
    common = {"num_train_timesteps": config.timesteps, "beta_schedule": config.noise_schedule, "prediction_type": config.prediction_type,
              "thresholding": config.dynamic_thresholding, "dynamic_thresholding_ratio": config.dynamic_thresholding_percentile,
              "sample_max_value": _NO_UPPER_BOUND, "clip_sample": True, "clip_sample_range": 1.0}
    if kind == "ddpm":
        return DDPMScheduler(variance_type="fixed_small", **common)
    if kind == "ddim":
        # trailing spacing: the first of the few steps is t = T - 1 (pure noise), as in the full chain
        return DDIMScheduler(timestep_spacing="trailing", set_alpha_to_one=True, **common)
    raise ValueError(f"unknown scheduler {kind!r}; valid: ddpm, ddim, augmentation")


def resize(x: torch.Tensor, size: int, mode: str = "nearest") -> torch.Tensor:
    """``(B, C, H, H)`` -> ``(B, C, size, size)``: nearest-neighbour (imagen-pytorch's
    ``resize_image_to``: going 64 -> 32 keeps the even rows and columns), or ``area`` averaging when
    shrinking (growing is nearest either way)."""
    if x.shape[-1] == size:
        return x
    if mode == "area" and size < x.shape[-1]:
        return F.interpolate(x, size=(size, size), mode="area")
    return F.interpolate(x, size=(size, size), mode="nearest")


class CrysTensCascade(nn.Module):
    """U-Net 1 (low resolution) and U-Net 2 (super-resolution), with their EMA copies when
    ``config.ema_beta`` is set (``ema1``, ``ema2``; part of the state dict, so a resumed training
    continues the average). Built from the config alone."""

    def __init__(self, config: CrysTensDiffusionConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        shared = {"attention_head_dim": c.attention_head_dim, "norm_groups": c.norm_groups, "out_channels": CHANNELS}
        self.unet1 = build_unet(in_channels=CHANNELS, sample_size=c.low_resolution, dim=c.unet1_dim, dim_mults=c.unet1_dim_mults,
                                resnet_blocks=c.unet1_resnet_blocks, attention=c.unet1_attention, level_conditioned=False, **shared)
        self.unet2 = build_unet(in_channels=2 * CHANNELS, sample_size=c.image_size, dim=c.unet2_dim, dim_mults=c.unet2_dim_mults,
                                resnet_blocks=c.unet2_resnet_blocks, attention=c.unet2_attention, level_conditioned=True, **shared)
        self.ema1: nn.Module | None = None
        self.ema2: nn.Module | None = None
        if c.ema_beta is not None:
            self.ema1, self.ema2 = copy.deepcopy(self.unet1), copy.deepcopy(self.unet2)
            for p in (*self.ema1.parameters(), *self.ema2.parameters()):
                p.requires_grad_(False)
        self.noise = make_scheduler(c, "ddpm")
        self.augmentation = make_scheduler(c, "augmentation") if c.lowres_noise_augmentation else None
        snr = self.noise.alphas_cumprod / (1.0 - self.noise.alphas_cumprod)
        # p2 weight of each step, (k + SNR(t))^-gamma (Choi et al. 2022; Imagen's p2_loss_weight)
        self.register_buffer("p2_weight", (c.p2_loss_weight_k + snr) ** -c.p2_loss_weight_gamma, persistent=False)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the optimiser updates: both U-Nets (not the EMA copies)."""
        return [*self.unet1.parameters(), *self.unet2.parameters()]

    # ------------------------------------------------------------------ data scaling
    def to_model_space(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] -> the range the diffusion runs in ([-1, 1] when ``scale_to_neg_one``)."""
        return x * 2.0 - 1.0 if self.config.scale_to_neg_one else x

    def from_model_space(self, x: torch.Tensor) -> torch.Tensor:
        """Back to [0, 1] (clipped)."""
        return ((x + 1.0) * 0.5 if self.config.scale_to_neg_one else x).clamp(0.0, 1.0)

    def low_resolution_pair(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(B, 4, 64, 64)`` in model space -> (U-Net 1's target ``(B, 4, 32, 32)``, U-Net 2's
        condition before augmentation: that target resized back to ``(B, 4, 64, 64)``)."""
        low = resize(x, self.config.low_resolution, self.config.resize_mode)
        return low, resize(low, self.config.image_size, "nearest")

    # ------------------------------------------------------------------ training
    def _denoising_loss(self, unet: nn.Module, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                        cond: torch.Tensor | None = None, levels: torch.Tensor | None = None) -> torch.Tensor:
        x_t = self.noise.add_noise(x0, noise, t)
        inp = x_t if cond is None else torch.cat([x_t, cond], dim=1)
        pred = unet(inp, t, class_labels=levels).sample
        target = noise if self.config.prediction_type == "epsilon" else self.noise.get_velocity(x0, noise, t)
        per_sample = F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))
        return (per_sample * self.p2_weight.to(x0.device)[t]).mean()

    def losses(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The denoising losses of a batch ``x`` ``(B, 4, 64, 64)`` in [0, 1].

        For each U-Net: t uniform over the schedule's steps, epsilon ~ N(0, I), the p2-weighted
        squared error of the predicted epsilon (averaged over elements, then over the batch).
        U-Net 2's condition is the low-resolution target, resized back and noised to one
        augmentation level per batch (imagen-pytorch 1.11.15: ``per_sample_random_aug_noise_level
        = False``). Random draws use ``generator`` (a CPU generator: validation uses a fixed one, so
        its loss does not move with the training RNG) or the global RNG.

        Returns ``{"loss": unet1 + unet2, "unet1": ..., "unet2": ...}`` (scalars).
        """
        device, b, T = x.device, x.shape[0], self.config.timesteps

        def draw_int(high: int, n: int) -> torch.Tensor:
            return torch.randint(0, high, (n,), generator=generator).to(device)

        def draw_normal(like: torch.Tensor) -> torch.Tensor:
            return torch.randn(like.shape, generator=generator).to(device)

        x0 = self.to_model_space(x)
        low, cond = self.low_resolution_pair(x0)
        loss1 = self._denoising_loss(self.unet1, low, draw_int(T, b), draw_normal(low))
        if self.augmentation is not None:
            level = draw_int(T, 1).expand(b)
            cond = self.augmentation.add_noise(cond, draw_normal(cond), level)
        else:
            level = torch.zeros(b, dtype=torch.long, device=device)
        loss2 = self._denoising_loss(self.unet2, x0, draw_int(T, b), draw_normal(x0), cond, level)
        return {"loss": loss1 + loss2, "unet1": loss1, "unet2": loss2}

    @torch.no_grad()
    def update_ema(self, step: int) -> None:
        """One call of ema-pytorch's ``EMA.update`` for training step ``step`` (0-based): every
        ``ema_update_every`` steps, a copy of the weights through ``ema_update_after_step``, then
        ``ema = d ema + (1 - d) weights`` with ``d = min(beta, 1 - (1 + s / inv_gamma)^-power)``,
        ``s = step - update_after_step - 1``."""
        c = self.config
        if self.ema1 is None or self.ema2 is None or step % c.ema_update_every:
            return
        s = step - c.ema_update_after_step - 1
        decay = 0.0 if s <= 0 else min(c.ema_beta or 0.0, max(0.0, 1.0 - (1.0 + s / c.ema_inv_gamma) ** -c.ema_power))
        if step <= c.ema_update_after_step:
            decay = 0.0
        for online, ema in ((self.unet1, self.ema1), (self.unet2, self.ema2)):
            for p, e in zip(online.parameters(), ema.parameters()):
                e.lerp_(p.detach(), 1.0 - decay)

    # ------------------------------------------------------------------ sampling
    def _stage(self, unet: nn.Module, shape: tuple[int, ...], generator: torch.Generator, device: torch.device,
               cond: torch.Tensor | None = None, levels: torch.Tensor | None = None, *, sampler: str, steps: int | None,
               eta: float, progress: str | None = None) -> tuple[torch.Tensor, int]:
        """One U-Net's reverse chain from N(0, I) noise of ``shape``; (clean tensor in model space,
        U-Net evaluations). ``progress``: a bar over the steps with this label, or None."""
        from tqdm.auto import tqdm

        scheduler = make_scheduler(self.config, sampler)
        scheduler.set_timesteps(steps or self.config.timesteps, device=device)
        x = torch.randn(shape, generator=generator).to(device)
        for t in tqdm(scheduler.timesteps, desc=progress, unit="step", leave=False, disable=progress is None):
            tt = t.reshape(1).expand(shape[0]).to(device)
            inp = x if cond is None else torch.cat([x, cond], dim=1)
            eps = unet(inp, tt, class_labels=levels).sample
            kwargs: dict[str, Any] = {"eta": eta} if sampler == "ddim" else {}
            x = scheduler.step(eps, int(t), x, generator=generator, **kwargs).prev_sample
        return x.clamp(-1.0, 1.0) if self.config.scale_to_neg_one else x, len(scheduler.timesteps)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, device: str | torch.device = "cpu", *, sampler: str = "ddpm",
               steps: int | None = None, eta: float = 0.0, use_ema: bool = True, progress: bool = False) -> tuple[torch.Tensor, int]:
        """``n`` CrysTens tensors ``(n, 4, 64, 64)`` in [0, 1] and the U-Net evaluations per batch.

        U-Net 1 samples ``(n, 4, 32, 32)``; it is resized to 64 x 64, noised to the fixed
        augmentation level, and U-Net 2 samples ``(n, 4, 64, 64)`` conditioned on it. All noise comes
        from ``generator`` (a CPU generator: the same seed gives the same tensors on any device).
        ``progress``: a bar over each U-Net's reverse steps (1,000 take minutes on a CPU).
        """
        c, device = self.config, torch.device(device)
        unet1 = self.ema1 if use_ema and self.ema1 is not None else self.unet1
        unet2 = self.ema2 if use_ema and self.ema2 is not None else self.unet2
        low, evals1 = self._stage(unet1, (n, CHANNELS, c.low_resolution, c.low_resolution), generator, device,
                                  sampler=sampler, steps=steps, eta=eta, progress=f"U-Net 1 ({sampler})" if progress else None)
        # imagen-pytorch returns U-Net 1's sample in [0, 1] and normalises it again: a clip to the range
        cond = resize(self.to_model_space(self.from_model_space(low)), c.image_size, "nearest")
        level = min(int(round(c.lowres_sample_noise_level * c.timesteps)), c.timesteps - 1) if self.augmentation is not None else 0
        levels = torch.full((n,), level, dtype=torch.long, device=device)
        if self.augmentation is not None and level > 0:
            noise = torch.randn(cond.shape, generator=generator).to(device)
            cond = self.augmentation.add_noise(cond, noise, levels.cpu()).to(device)
        high, evals2 = self._stage(unet2, (n, CHANNELS, c.image_size, c.image_size), generator, device, cond, levels,
                                   sampler=sampler, steps=steps, eta=eta, progress=f"U-Net 2 ({sampler})" if progress else None)
        return self.from_model_space(high), evals1 + evals2
