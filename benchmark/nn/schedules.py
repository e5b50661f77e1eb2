"""Noise schedules as small typed objects.

Each schedule is a frozen dataclass holding its published parameters; the tensors are computed on
demand (and registered as non-persistent buffers by the networks, so they never enter a state
dict):

* :class:`GeometricSigmas`: CDVAE's noise levels (Xie et al., ICLR 2022, section 3.3/4 and
  appendix D.4), a geometric sequence ``sigma_1 .. sigma_L``.
* :class:`SigmoidBetaSchedule`: DP-CDVAE's beta schedule (Pakornchote et al., arXiv:2308.02165,
  section IV A: "a sigmoid scheduler"; the GeoDiff-style one of the released configuration).
* :class:`LinearBetaSchedule`: DDPM's linear beta schedule (Ho et al. 2020), Con-CDVAE's latent
  Prior (Ye et al. 2023, released ``conf/prior/default.yaml``).

Beta schedules share :class:`BetaSchedule`: ``betas()`` (T,), ``alphas_cumprod()`` (T,)
``alpha_bar_t = prod_{i <= t} (1 - beta_i)`` and ``respaced_timesteps(num_steps)``. Index ``t - 1``
of a (T,) tensor is time step t = 1..T.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark.nn.diffusion import respaced_timesteps

__all__ = ["BetaSchedule", "GeometricSigmas", "LinearBetaSchedule", "SigmoidBetaSchedule"]


@dataclass(frozen=True)
class GeometricSigmas:
    """Geometric noise levels with a constant ratio ``sigma_j / sigma_{j+1}`` (CDVAE section 3.3)::

        sigma_j = start * (end / start)^((j - 1) / (L - 1)),   j = 1..L

    CDVAE (D.4): coordinates ``start = 10`` Å -> ``end = 0.01`` Å, types 5 -> 0.01, L = 50, largest
    first. DP-CDVAE indexes the type levels by time step, 0.01 at t = 1 to 5 at t = T (``start <
    end``: increasing).

    Attributes:
        start: sigma_1 (> 0).
        end: sigma_L (> 0).
        num_levels: L (>= 1; one level is ``[start]``).
    """

    start: float
    end: float
    num_levels: int

    def __post_init__(self) -> None:
        if self.num_levels < 1:
            raise ValueError(f"need at least one noise level, got {self.num_levels}")
        if not (self.start > 0 and self.end > 0):
            raise ValueError(f"geometric noise levels need positive ends, got {self.start} and {self.end}")

    def sigmas(self) -> Tensor:
        """(L,) float32 ``sigma_1 .. sigma_L`` (computed in float64, then rounded)."""
        log_sigmas = torch.linspace(math.log(self.start), math.log(self.end), self.num_levels, dtype=torch.float64)  # (L,)
        return torch.exp(log_sigmas).float()


class BetaSchedule(abc.ABC):
    """A DDPM variance schedule ``beta_1 .. beta_T`` (Ho et al. 2020) and what its users derive from it.

    ``alpha_t = 1 - beta_t``, ``alpha_bar_t = prod_{i <= t} alpha_i``; the forward process is
    ``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps``.
    """

    num_timesteps: int

    @abc.abstractmethod
    def betas(self) -> Tensor:
        """(T,) float64 ``beta_1 .. beta_T``."""

    def alphas_cumprod(self) -> Tensor:
        """(T,) float64 ``alpha_bar_t = prod_{i <= t} (1 - beta_i)``, decreasing in t."""
        return torch.cumprod(1.0 - self.betas(), dim=0)

    def respaced_timesteps(self, num_steps: int | None = None) -> list[int]:
        """Time steps of a reverse process with ``num_steps`` steps (None: all T), largest first;
        see :func:`benchmark.nn.diffusion.respaced_timesteps`."""
        return respaced_timesteps(self.num_timesteps, num_steps)

    def _check(self, beta_start: float, beta_end: float) -> None:
        if self.num_timesteps < 1:
            raise ValueError("num_timesteps must be at least 1")
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")


@dataclass(frozen=True)
class SigmoidBetaSchedule(BetaSchedule):
    """DP-CDVAE's sigmoid schedule (section IV A; released ``diffalgo`` configuration)::

        beta_t = beta_start + (beta_end - beta_start) * sigmoid(x_t),
        x_t = sigmoid_start + (sigmoid_end - sigmoid_start) * (t - 1) / (T - 1),   t = 1..T

    increasing in t. With the defaults (T = 1000, 1e-10 -> 0.01, -10 -> 6) ``alpha_bar_T = 0.023``:
    at t = T the coordinates are mostly noise.
    """

    num_timesteps: int = 1000
    beta_start: float = 1e-10
    beta_end: float = 0.01
    sigmoid_start: float = -10.0
    sigmoid_end: float = 6.0

    def __post_init__(self) -> None:
        self._check(self.beta_start, self.beta_end)

    def betas(self) -> Tensor:
        """(T,) float64 betas, see the class docstring."""
        x = torch.linspace(self.sigmoid_start, self.sigmoid_end, self.num_timesteps, dtype=torch.float64)  # (T,)
        return self.beta_start + (self.beta_end - self.beta_start) * torch.sigmoid(x)


@dataclass(frozen=True)
class LinearBetaSchedule(BetaSchedule):
    """DDPM's linear schedule: ``beta_t`` evenly spaced from ``beta_start`` (t = 1) to ``beta_end``
    (t = T). Con-CDVAE's released Prior: 1e-3 -> 0.02, T = 300."""

    num_timesteps: int = 300
    beta_start: float = 1e-3
    beta_end: float = 0.02

    def __post_init__(self) -> None:
        self._check(self.beta_start, self.beta_end)

    def betas(self) -> Tensor:
        """(T,) float64 betas."""
        return torch.linspace(self.beta_start, self.beta_end, self.num_timesteps, dtype=torch.float64)
