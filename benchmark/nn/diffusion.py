"""The DDPM step maths shared by DP-CDVAE's coordinate diffusion and Con-CDVAE's latent Prior.

Ho, Jain, Abbeel, "Denoising diffusion probabilistic models" (NeurIPS 2020), with the notation and
equation numbers of DP-CDVAE (Pakornchote et al., arXiv:2308.02165) where stated. For a beta
schedule (:mod:`benchmark.nn.schedules`) ``alpha_t = 1 - beta_t`` and ``alpha_bar_t = prod_{i <= t}
alpha_i`` (t = 1..T, ``alpha_bar_0 = 1``):

* forward process ``r_t = sqrt(alpha_bar_t) r_0 + sqrt(1 - alpha_bar_t) eps`` (the callers);
* :func:`posterior_mean`, the mean of ``q(r_{t-1} | r_t, r_0)``;
* :func:`ddpm_reverse_step`, one ancestral step (DP-CDVAE's Eq. 6, or its modified Eq. 7 on
  fractional coordinates), for consecutive or respaced time steps;
* :func:`respaced_timesteps`, the time steps a shortened reverse process visits (Nichol & Dhariwal
  2021);
* :func:`timestep_embedding`, the sinusoidal time input of the noise networks.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from benchmark.nn.periodic import wrap_frac

__all__ = ["ddpm_reverse_step", "posterior_mean", "respaced_timesteps", "timestep_embedding"]


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of integer time steps (Vaswani et al.; DDPM's time input).

    Args:
        t: (N,) time steps.
        dim: even embedding size.

    Returns:
        (N, dim) ``[sin(t w_k), cos(t w_k)]``, ``w_k = 10000^(-k / (dim / 2))``, k < dim / 2.
    """
    half = dim // 2
    w = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / max(half, 1))
    arg = t.float().unsqueeze(-1) * w  # (N, half)
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


def posterior_mean(r0: Tensor, r_t: Tensor, alpha_bar_t: Tensor | float, alpha_bar_prev: Tensor | float) -> Tensor:
    """Mean of the forward posterior ``q(r_{t-1} | r_t, r_0)`` (DDPM Eq. 7):
    ``sqrt(ab_{t-1}) beta_t / (1 - ab_t) r_0 + sqrt(alpha_t) (1 - ab_{t-1}) / (1 - ab_t) r_t``
    with ``alpha_t = ab_t / ab_{t-1}``, ``beta_t = 1 - alpha_t``."""
    ab_t = torch.as_tensor(alpha_bar_t, dtype=r_t.dtype)
    ab_p = torch.as_tensor(alpha_bar_prev, dtype=r_t.dtype)
    alpha = ab_t / ab_p
    return (ab_p.sqrt() * (1 - alpha) * r0 + alpha.sqrt() * (1 - ab_p) * r_t) / (1 - ab_t)


def ddpm_reverse_step(r_t: Tensor, eps: Tensor, alpha_bar_t: Tensor | float, alpha_bar_prev: Tensor | float,
                      noise: Tensor, kind: Literal["eq6", "eq7"]) -> Tensor:
    """One reverse step, DP-CDVAE's Eq. 6 or its modified Eq. 7 (unwrapped output; the caller wraps).

    ``alpha_t = alpha_bar_t / alpha_bar_prev`` (the respaced step; the plain one for consecutive
    t), ``sigma_t^2 = (1 - alpha_bar_prev) (1 - alpha_t) / (1 - alpha_bar_t)`` (Eq. 5)::

        eq6: r_{t-1} = (r_t - (1 - alpha_t) / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t) + sigma_t noise
        eq7: r_{t-1} = (pi(r_t) - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t) + sigma_t noise

    ``eq6`` is plain DDPM ancestral sampling (also the step of Con-CDVAE's latent Prior, on (B,
    latent) latents); ``eq7`` is for fractional coordinates only (``pi`` wraps into [0, 1)).

    Args:
        r_t: (N, 3) current coordinates (any (N, d) for ``eq6``); Eq. 7 wraps them (``pi(r_t)``) itself.
        eps: same shape, the predicted noise ``eps_theta``.
        alpha_bar_t, alpha_bar_prev: scalars or (N, 1).
        noise: same shape as ``r_t``, ``eps' ~ N(0, I)``.
        kind: ``"eq6"`` or ``"eq7"``.

    Returns:
        ``r_{t-1}``, the shape of ``r_t``.
    """
    ab_t = torch.as_tensor(alpha_bar_t, dtype=r_t.dtype, device=r_t.device)
    ab_p = torch.as_tensor(alpha_bar_prev, dtype=r_t.dtype, device=r_t.device)
    alpha = ab_t / ab_p
    one_minus = (1 - ab_t).clamp_min(1e-12)  # 1 - alpha_bar_t, guarded for t -> 0
    sigma = ((1 - ab_p) * (1 - alpha) / one_minus).clamp_min(0).sqrt()
    if kind == "eq6":
        mean = (r_t - (1 - alpha) / one_minus.sqrt() * eps) / alpha.sqrt()
    elif kind == "eq7":
        mean = (wrap_frac(r_t) - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
    else:
        raise ValueError(f"kind must be 'eq6' or 'eq7', got {kind!r}")
    return mean + sigma * noise


def respaced_timesteps(total: int, num_steps: int | None = None) -> list[int]:
    """Time steps of the reverse process, largest first: T..1 (``total`` = T), or ``num_steps``
    evenly spaced ones from T down to 1 (always ending at 1; respacing, Nichol & Dhariwal 2021: each
    step then uses the effective ``alpha = alpha_bar_t / alpha_bar_t'``, t' the next step, in
    :func:`ddpm_reverse_step`)."""
    if num_steps is None or num_steps >= total:
        return list(range(total, 0, -1))
    if num_steps < 1:
        raise ValueError("num_steps must be at least 1")
    if num_steps == 1:
        return [total]
    steps = torch.linspace(total, 1, num_steps, dtype=torch.float64).round().long().tolist()
    return sorted(set(steps), reverse=True)
