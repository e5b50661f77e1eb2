"""Small layers shared by the models."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BatchNorm", "mlp"]


class BatchNorm(nn.BatchNorm1d):
    """``BatchNorm1d`` that also takes a single row in training: one row has no batch variance, so
    it is normalised with the running statistics (as in evaluation) and leaves them unchanged,
    where ``BatchNorm1d`` raises. A data loader's last batch can hold one crystal."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


def mlp(in_dim: int, hidden_dim: int, num_layers: int, out_dim: int, norm: bool = False) -> nn.Sequential:
    """CDVAE's plain MLP: ``num_layers`` hidden ``Linear + ReLU`` layers of width ``hidden_dim``,
    then a linear output; maps (B, in_dim) (or (..., in_dim) without ``norm``) to (..., out_dim).
    ``norm`` puts a :class:`BatchNorm` between the first linear layer and its ReLU (Con-CDVAE's
    released ``build_mlp(norm=True)``)."""
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim)] + ([BatchNorm(hidden_dim)] if norm else []) + [nn.ReLU()]
    for _ in range(num_layers - 1):
        layers += [nn.Linear(hidden_dim, hidden_dim), nn.ReLU()]
    layers.append(nn.Linear(hidden_dim, out_dim))
    return nn.Sequential(*layers)
