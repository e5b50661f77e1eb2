"""Noise schedules (benchmark.nn.schedules): hand-checked values, and the same numbers as the free
functions they replaced (``geometric_sigmas`` of the CDVAE network, ``sigmoid_beta_schedule`` of
DP-CDVAE's and ``linear_beta_schedule`` of Con-CDVAE's latent prior), written out here as they were."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.nn.diffusion import respaced_timesteps
from benchmark.nn.schedules import BetaSchedule, GeometricSigmas, LinearBetaSchedule, SigmoidBetaSchedule


# the replaced functions, verbatim
def old_geometric_sigmas(begin: float, end: float, num: int) -> torch.Tensor:
    return torch.exp(torch.linspace(math.log(begin), math.log(end), num, dtype=torch.float64)).float()


def old_sigmoid_beta_schedule(num_timesteps: int, beta_start: float = 1e-10, beta_end: float = 0.01,
                              sigmoid_start: float = -10.0, sigmoid_end: float = 6.0) -> torch.Tensor:
    x = torch.linspace(sigmoid_start, sigmoid_end, num_timesteps, dtype=torch.float64)
    return beta_start + (beta_end - beta_start) * torch.sigmoid(x)


def old_linear_beta_schedule(num_timesteps: int, beta_start: float = 1e-3, beta_end: float = 0.02) -> torch.Tensor:
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)


def test_geometric_sigmas_cdvae_levels() -> None:
    s = GeometricSigmas(10.0, 0.01, 50).sigmas()
    assert s.dtype == torch.float32 and s.shape == (50,)
    # sigma_1 = 10, sigma_2 = 10 * (0.01 / 10)^(1/49) = 8.6851137, sigma_50 = 0.01
    assert float(s[0]) == 10.0
    assert math.isclose(float(s[1]), 8.6851137, rel_tol=1e-6)
    assert math.isclose(float(s[-1]), 0.01, rel_tol=1e-6)
    # five levels: sigma_2 = 10 * 1000^(-1/4) = 1.7782794
    assert math.isclose(float(GeometricSigmas(10.0, 0.01, 5).sigmas()[1]), 1.7782794, rel_tol=1e-6)
    # DP-CDVAE's type levels run upwards in t: 0.01 at t = 1, 5 at t = T
    up = GeometricSigmas(0.01, 5.0, 1000).sigmas()
    assert math.isclose(float(up[0]), 0.01, rel_tol=1e-6) and math.isclose(float(up[-1]), 5.0, rel_tol=1e-6)
    assert GeometricSigmas(3.0, 1.0, 1).sigmas().tolist() == [3.0]
    for args in ((10.0, 0.01, 50), (5.0, 0.01, 50), (0.01, 5.0, 1000), (10.0, 0.01, 10)):
        assert torch.equal(GeometricSigmas(*args).sigmas(), old_geometric_sigmas(*args))


def test_sigmoid_beta_schedule_dp_cdvae() -> None:
    sched = SigmoidBetaSchedule()
    assert (sched.num_timesteps, sched.beta_start, sched.beta_end, sched.sigmoid_start, sched.sigmoid_end) == (1000, 1e-10, 0.01, -10.0, 6.0)
    betas = sched.betas()
    assert betas.dtype == torch.float64 and betas.shape == (1000,)
    # beta_1 = 1e-10 + (0.01 - 1e-10) sigmoid(-10) = 4.5407868e-7; beta_T = ... sigmoid(6) = 0.0099752738
    assert math.isclose(float(betas[0]), 4.5407868e-7, rel_tol=1e-7)
    assert math.isclose(float(betas[-1]), 0.0099752738, rel_tol=1e-8)
    # alpha_bar_T = 0.023 (the module docstring of the DP-CDVAE network)
    assert math.isclose(float(sched.alphas_cumprod()[-1]), 0.0230867, rel_tol=1e-5)
    assert torch.equal(betas, old_sigmoid_beta_schedule(1000))
    assert torch.equal(SigmoidBetaSchedule(300, 1e-3, 0.02).betas(), old_sigmoid_beta_schedule(300, 1e-3, 0.02))
    assert torch.equal(sched.alphas_cumprod(), torch.cumprod(1.0 - old_sigmoid_beta_schedule(1000), dim=0))


def test_linear_beta_schedule_con_cdvae_prior() -> None:
    sched = LinearBetaSchedule()
    assert (sched.num_timesteps, sched.beta_start, sched.beta_end) == (300, 1e-3, 0.02)
    betas = sched.betas()
    # beta_1 = 0.001, beta_2 = 0.001 + 0.019 / 299, beta_300 = 0.02; alpha_bar_1 = 0.999
    assert float(betas[0]) == 0.001 and float(betas[-1]) == 0.02
    assert math.isclose(float(betas[1]), 0.001 + 0.019 / 299, rel_tol=1e-12)
    assert math.isclose(float(sched.alphas_cumprod()[0]), 0.999, rel_tol=1e-12)
    assert math.isclose(float(sched.alphas_cumprod()[-1]), 0.0419493, rel_tol=1e-5)
    assert torch.equal(betas, old_linear_beta_schedule(300))
    assert torch.equal(LinearBetaSchedule(100, 1e-3, 0.1).betas(), old_linear_beta_schedule(100, 1e-3, 0.1))


def test_respaced_timesteps() -> None:
    assert SigmoidBetaSchedule().respaced_timesteps() == list(range(1000, 0, -1))
    assert SigmoidBetaSchedule().respaced_timesteps(5) == [1000, 750, 500, 251, 1]
    assert LinearBetaSchedule().respaced_timesteps(4) == respaced_timesteps(300, 4) == [300, 200, 101, 1]
    assert LinearBetaSchedule().respaced_timesteps(1) == [300]
    assert LinearBetaSchedule().respaced_timesteps(10_000) == list(range(300, 0, -1))
    with pytest.raises(ValueError, match="at least 1"):
        LinearBetaSchedule().respaced_timesteps(0)


def test_schedules_are_frozen_typed_and_checked() -> None:
    assert isinstance(SigmoidBetaSchedule(), BetaSchedule) and isinstance(LinearBetaSchedule(), BetaSchedule)
    with pytest.raises(AttributeError):
        LinearBetaSchedule().num_timesteps = 10  # type: ignore[misc]
    assert GeometricSigmas(10.0, 0.01, 50) == GeometricSigmas(10.0, 0.01, 50)
    for bad in (lambda: LinearBetaSchedule(0), lambda: LinearBetaSchedule(10, 0.2, 0.1), lambda: SigmoidBetaSchedule(10, 0.0, 0.01),
                lambda: SigmoidBetaSchedule(10, 1e-3, 1.0), lambda: GeometricSigmas(1.0, 0.0, 5), lambda: GeometricSigmas(1.0, 0.1, 0)):
        with pytest.raises(ValueError):
            bad()
