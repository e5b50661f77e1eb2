"""The FTCP VAE network in PyTorch, following the released Keras model (PV-Lab/FTCP@a8ac7b0
``model.py``; line numbers below are that file's).

Shapes (B: batch, R: the FTCP array's rows, a multiple of the strides' product, 4 as released; C:
its columns; L = R / 4 with the released strides):

* input ``x``: (B, R, C), min-max scaled to [0, 1]. The release's ``Input(shape=(input_dim,
  channel_dim))`` with ``input_dim = X_train.shape[1]`` and ``channel_dim = X_train.shape[2]``
  (model.py:22-26) and channel-last Conv1D: a sequence of R rows with C channels. Here the rows
  become the convolution's length axis: ``x.transpose(1, 2)`` is (B, C, R).
* encoder (model.py:46-58): Conv1D 32 k5 s2 -> (B, 32, R/2), 64 k3 s2 -> (B, 64, R/4), 128 k3 s1
  -> (B, 128, R/4), each SAME-padded, batch norm, LeakyReLU 0.2; flattened position-major as Keras'
  Flatten of a channel-last (L, 128) map -> (B, 128 L); Dense 1024 with a *sigmoid* (model.py:56);
  ``mu`` and ``log_var`` (B, 256), linear.
* property branch (model.py:70-73): ReLU(mu) -> Dense 128 ReLU -> Dense 32 ReLU -> Dense n_props
  sigmoid: (B, n_props). It reads the mean, not the sampled z.
* decoder (model.py:90-106): Dense 128 L ReLU -> reshape (L, 1, 128) -> batch norm -> Conv2DTranspose
  64 (3, 1) s1 -> BN -> ReLU -> Conv2DTranspose 32 (3, 1) s2 -> BN -> ReLU -> Conv2DTranspose C (5, 1)
  s2 -> sigmoid -> squeeze: (B, R, C). A (k, 1) 2-D transposed convolution on a width-1 map is a 1-D
  one, which is what is used here.

Padding: Keras' ``padding='SAME'`` (TensorFlow's) pads ``max((ceil(n / s) - 1) s + k - n, 0)`` in
total, the smaller half first; the transposed convolution is its adjoint, an output of n s cropped by
``(k - s) // 2`` on the left. PyTorch's symmetric padding differs by one position for even kernels
or strides of 2, so :class:`SameConv1d` and :class:`SameConvTranspose1d` pad and crop as TensorFlow.

Initialisation: Keras' defaults, Glorot-uniform kernels and zero biases (every layer of model.py is
built without initialiser arguments); batch norm with Keras' momentum 0.99 (PyTorch 0.01) and
epsilon 1e-3.

Deviation: none in the layers. The semi-supervised branch (model.py:29-44, 75-88, ``semi=True``,
``main_semi.py``) is not built: the benchmark's datasets label every crystal.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

__all__ = ["FTCPNet", "SameConv1d", "SameConvTranspose1d", "encoded_length", "kl_per_sample", "vae_loss"]


def _same_padding(n: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (left, right) of a length-``n`` input for kernel ``k``, stride ``s``."""
    total = max((math.ceil(n / s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def encoded_length(n_rows: int, strides: Sequence[int]) -> int:
    """The length of the encoder's last map: ``ceil(n / s)`` per SAME convolution."""
    n = int(n_rows)
    for s in strides:
        n = math.ceil(n / s)
    return n


class SameConv1d(nn.Module):
    """Conv1D with TensorFlow's SAME padding: (B, in, n) -> (B, out, ceil(n / stride))."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.kernel_size, self.stride = int(kernel_size), int(stride)
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        left, right = _same_padding(x.shape[-1], self.kernel_size, self.stride)
        return self.conv(nn.functional.pad(x, (left, right)))


class SameConvTranspose1d(nn.Module):
    """Conv2DTranspose with a (k, 1) kernel and ``padding='SAME'`` on a width-1 map, as a 1-D
    transposed convolution: (B, in, n) -> (B, out, n stride); the full output (length
    ``(n - 1) s + k``) is cropped by ``(k - s) // 2`` on the left, TensorFlow's SAME crop."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.kernel_size, self.stride = int(kernel_size), int(stride)
        self.conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[-1] * self.stride
        full = self.conv(x)
        left = max(self.kernel_size - self.stride, 0) // 2
        out = full[..., left:left + n]
        if out.shape[-1] < n:  # kernel shorter than the stride: the adjoint pads with zeros
            out = nn.functional.pad(out, (0, n - out.shape[-1]))
        return out


class FTCPNet(nn.Module):
    """Encoder, property branch and decoder of model.py (module doc for the shapes).

    Args:
        n_rows, n_cols: the FTCP array's shape (R, C); R must be a multiple of the strides' product.
        n_props: property outputs (0: no property branch).
        latent_dim, conv_filters, kernel_sizes, strides, dense_width, property_widths, leaky_slope,
        bn_momentum, bn_eps: as :class:`~benchmark.models.ftcp.config.FTCPConfig`.
    """

    def __init__(self, n_rows: int, n_cols: int, n_props: int, *, latent_dim: int = 256,
                 conv_filters: Sequence[int] = (32, 64, 128), kernel_sizes: Sequence[int] = (5, 3, 3),
                 strides: Sequence[int] = (2, 2, 1), dense_width: int = 1024, property_widths: Sequence[int] = (128, 32),
                 leaky_slope: float = 0.2, bn_momentum: float = 0.01, bn_eps: float = 1e-3) -> None:
        super().__init__()
        prod = math.prod(strides)
        if n_rows % prod:
            raise ValueError(f"the FTCP array's rows ({n_rows}) must be a multiple of the strides' product ({prod}): "
                             "the decoder's transposed convolutions give back L x that product rows")
        self.n_rows, self.n_cols, self.n_props, self.latent_dim = int(n_rows), int(n_cols), int(n_props), int(latent_dim)
        self.map_size = encoded_length(n_rows, strides)  # model.py:91 (encoder.layers[-6]: the last LeakyReLU)
        self.top_filters = int(conv_filters[-1])

        # encoder, model.py:46-58
        layers: list[nn.Module] = []
        channels = n_cols
        for f, k, s in zip(conv_filters, kernel_sizes, strides):
            layers += [SameConv1d(channels, f, k, s), nn.BatchNorm1d(f, momentum=bn_momentum, eps=bn_eps), nn.LeakyReLU(leaky_slope)]
            channels = f
        self.encoder_convs = nn.Sequential(*layers)
        self.encoder_dense = nn.Linear(self.map_size * self.top_filters, dense_width)
        self.fc_mu = nn.Linear(dense_width, latent_dim)
        self.fc_log_var = nn.Linear(dense_width, latent_dim)

        # property branch, model.py:70-73
        self.property_head: nn.Module | None = None
        if n_props > 0:
            head: list[nn.Module] = [nn.ReLU()]
            width = latent_dim
            for w in property_widths:
                head += [nn.Linear(width, w), nn.ReLU()]
                width = w
            head += [nn.Linear(width, n_props), nn.Sigmoid()]
            self.property_head = nn.Sequential(*head)

        # decoder, model.py:90-106
        self.decoder_dense = nn.Linear(latent_dim, self.top_filters * self.map_size)
        self.decoder_norm = nn.BatchNorm1d(self.top_filters, momentum=bn_momentum, eps=bn_eps)
        up: list[nn.Module] = []
        channels = self.top_filters
        for i in reversed(range(len(conv_filters))):
            out = int(conv_filters[i - 1]) if i > 0 else n_cols
            up.append(SameConvTranspose1d(channels, out, kernel_sizes[i], strides[i]))
            if i > 0:
                up += [nn.BatchNorm1d(out, momentum=bn_momentum, eps=bn_eps), nn.ReLU()]
            channels = out
        up.append(nn.Sigmoid())
        self.decoder_convs = nn.Sequential(*up)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras' default initialisation: Glorot-uniform kernels, zero biases."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.ConvTranspose1d)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ parts
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, R, C) -> (mu, log_var), each (B, latent_dim)."""
        h = self.encoder_convs(x.transpose(1, 2))  # (B, F, L)
        h = h.transpose(1, 2).flatten(1)  # (B, L F), position-major as Keras' Flatten of (L, F)
        h = torch.sigmoid(self.encoder_dense(h))  # model.py:56
        return self.fc_mu(h), self.fc_log_var(h)

    def decode(self, z: Tensor) -> Tensor:
        """(B, latent_dim) -> (B, R, C) in [0, 1]."""
        h = torch.relu(self.decoder_dense(z))  # model.py:92
        h = h.view(-1, self.map_size, self.top_filters).transpose(1, 2)  # Reshape((L, 1, F)), channel-last -> (B, F, L)
        h = self.decoder_convs(self.decoder_norm(h))  # (B, C, R)
        return h.transpose(1, 2)

    def predict_property(self, mu: Tensor) -> Tensor:
        """(B, latent_dim) -> (B, n_props) in [0, 1]; the branch reads mu (model.py:70)."""
        if self.property_head is None:
            raise RuntimeError("this network has no property branch (trained without properties)")
        return self.property_head(mu)

    @staticmethod
    def reparameterize(mu: Tensor, log_var: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """z = mu + exp(log_var / 2) eps, eps ~ N(0, I) (model.py:60-66)."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(log_var / 2) * eps

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor | None]:
        """The VAE of model.py:109-110: ``x_hat`` (B, R, C) decoded from the sampled ``z``; ``mu``,
        ``log_var``, ``z`` (B, latent); ``y_hat`` (B, n_props) or None."""
        mu, log_var = self.encode(x)
        z = self.reparameterize(mu, log_var, generator)
        y_hat = self.predict_property(mu) if self.property_head is not None else None
        return {"x_hat": self.decode(z), "mu": mu, "log_var": log_var, "z": z, "y_hat": y_hat}


def kl_per_sample(mu: Tensor, log_var: Tensor) -> Tensor:
    """``-0.5 mean(1 + log_var - mu^2 - exp(log_var))`` over the latent dimensions: (B,)
    (model.py:116; a mean, not a sum, over the dimensions)."""
    return -0.5 * torch.mean(1 + log_var - mu.pow(2) - log_var.exp(), dim=-1)


def vae_loss(x: Tensor, x_hat: Tensor, mu: Tensor, log_var: Tensor, y: Tensor | None, y_hat: Tensor | None,
             coeff_kl: float = 2.0, coeff_prop: float = 10.0) -> dict[str, Tensor]:
    """The released loss (model.py:114-124): ``mean(loss_recon + coeff_kl loss_KL + coeff_prop
    loss_prop)`` with ``loss_recon = sum (x - x_hat)^2`` and ``loss_prop = sum (y - y_hat)^2``, both
    summed over the whole batch (scalars), and ``loss_KL`` per sample (:func:`kl_per_sample`), so
    the batch mean acts on the KL alone. Returns ``loss``, ``recon``, ``kl`` (batch mean), ``prop``
    (0 without properties)."""
    recon = torch.sum((x - x_hat) ** 2)
    kl = kl_per_sample(mu, log_var).mean()
    prop = torch.sum((y - y_hat) ** 2) if y is not None and y_hat is not None else x.new_zeros(())
    return {"loss": recon + coeff_kl * kl + coeff_prop * prop, "recon": recon, "kl": kl, "prop": prop}
