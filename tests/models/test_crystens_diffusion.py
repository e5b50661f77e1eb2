"""crystens_diffusion (CrysTens, Alverson et al. 2024, Appendix B.3): the paper preset against its
sources, the cascade's pieces on random tensors, the model contract, and (slow) that it learns."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch

from benchmark.config import resolve
from benchmark.models.crystens_diffusion.config import PUBLISHED, CrysTensDiffusionConfig
from benchmark.testing import ModelContract

SMOKE = resolve(CrysTensDiffusionConfig, "smoke")


def test_paper_preset_matches_published_sources():
    paper = resolve(CrysTensDiffusionConfig, "paper")
    values = dataclasses.asdict(paper)
    for field, (value, source) in PUBLISHED.items():
        assert source, field
        assert values[field] == value, f"{field}: paper preset {values[field]!r}, published {value!r} ({source})"
    # every trained or sampling field of the paper preset has a source
    assert set(values) == set(PUBLISHED) | {"sample_batch_size"}


def test_paper_unets_have_the_released_levels_and_blocks():
    from benchmark.models.crystens_diffusion.network import build_unet

    paper = resolve(CrysTensDiffusionConfig, "paper")
    # U-Net 2 (the larger) at the paper's width: blocks per level (2, 4, 8) down, +1 up; attention at level 3 only
    unet = build_unet(in_channels=8, out_channels=4, sample_size=64, dim=paper.unet2_dim, dim_mults=paper.unet2_dim_mults,
                      resnet_blocks=paper.unet2_resnet_blocks, attention=paper.unet2_attention, attention_head_dim=64,
                      norm_groups=8, level_conditioned=True)
    assert [len(b.resnets) for b in unet.down_blocks] == [2, 4, 8]
    assert [len(b.resnets) for b in unet.up_blocks] == [9, 5, 3]
    assert [hasattr(b, "attentions") for b in unet.down_blocks] == [False, False, True]
    assert [b.resnets[0].out_channels for b in unet.down_blocks] == [256, 512, 1024]


def _net(**over):
    from benchmark.models.crystens_diffusion.network import CrysTensCascade

    torch.manual_seed(0)
    return CrysTensCascade(dataclasses.replace(SMOKE, **over))


def test_losses_shapes_and_fixed_validation_noise():
    net = _net()
    x = torch.rand(3, 4, 64, 64)
    parts = net.losses(x)
    assert set(parts) == {"loss", "unet1", "unet2"} and all(torch.isfinite(v) for v in parts.values())
    a = net.losses(x, generator=torch.Generator().manual_seed(1))["loss"]
    b = net.losses(x, generator=torch.Generator().manual_seed(1))["loss"]
    assert torch.equal(a, b)
    low, cond = net.low_resolution_pair(net.to_model_space(x))
    assert low.shape == (3, 4, 32, 32) and cond.shape == (3, 4, 64, 64)
    # nearest-neighbour 64 -> 32 keeps the even rows and columns (imagen-pytorch's resize_image_to)
    assert torch.equal(low, net.to_model_space(x)[:, :, ::2, ::2])


def test_p2_weight_is_off_at_gamma_zero():
    assert torch.allclose(_net(p2_loss_weight_gamma=0.0).p2_weight, torch.ones(1000))
    w = _net().p2_weight
    assert w[0] < w[-1] <= 1.0  # (1 + SNR)^-0.5 down-weights the nearly clean steps


def test_sampling_is_seeded_in_range_and_counts_evaluations():
    net = _net().eval()
    x, evals = net.sample(2, torch.Generator().manual_seed(0), sampler="ddim", steps=4)
    y, _ = net.sample(2, torch.Generator().manual_seed(0), sampler="ddim", steps=4)
    z, _ = net.sample(2, torch.Generator().manual_seed(1), sampler="ddim", steps=4)
    assert x.shape == (2, 4, 64, 64) and evals == 8
    assert torch.equal(x, y) and not torch.equal(x, z)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    _, evals = net.sample(1, torch.Generator().manual_seed(0), sampler="ddpm", steps=3)
    assert evals == 6


def test_ema_follows_ema_pytorch_schedule():
    net = _net(ema_beta=0.9999, ema_update_every=10, ema_update_after_step=100)
    with torch.no_grad():
        for p in net.unet1.parameters():
            p.add_(1.0)
    first = next(net.unet1.parameters())
    net.update_ema(5)  # not a multiple of 10: no update
    assert not torch.equal(next(net.ema1.parameters()), first)
    net.update_ema(50)  # before update_after_step: a copy
    assert torch.equal(next(net.ema1.parameters()), first)
    with torch.no_grad():
        first.add_(1.0)
    before = next(net.ema1.parameters()).clone()
    net.update_ema(1010)  # decay 1 - (1 + 909)^(-2/3)
    d = 1 - (1 + 909) ** (-2 / 3)
    assert torch.allclose(next(net.ema1.parameters()), d * before + (1 - d) * first, atol=1e-6)
