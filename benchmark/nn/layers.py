"""Small layers shared by the models."""

from __future__ import annotations

from torch import nn

__all__ = ["mlp"]


def mlp(in_dim: int, hidden_dim: int, num_layers: int, out_dim: int) -> nn.Sequential:
    """CDVAE's plain MLP: ``num_layers`` hidden ``Linear + ReLU`` layers of width ``hidden_dim``,
    then a linear output; maps (..., in_dim) to (..., out_dim)."""
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim), nn.ReLU()]
    for _ in range(num_layers - 1):
        layers += [nn.Linear(hidden_dim, hidden_dim), nn.ReLU()]
    layers.append(nn.Linear(hidden_dim, out_dim))
    return nn.Sequential(*layers)
