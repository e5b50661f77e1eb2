"""The Conv3D generators and critics of CrysTens' GANs (Alverson et al. 2024, Appendix B), in PyTorch.

CrysTens (section 3.1) is a 64 x 64 x 4 tensor; Appendix B's networks treat it as a 3-D volume of
64 x 64 x 4 voxels with **one** channel (the released scripts' input shape ``(64, 64, 4, 1)``). Here
that is PyTorch's ``(B, 1, 64, 64, 4)``: :func:`to_volume` and :func:`from_volume` convert from and
to the representation's channel-last ``(B, 64, 64, 4)``. Kernel sizes are written (rows, columns,
layers) as in the paper's code; the spatial sizes below follow from them and are fixed, only the
channel counts come from the config.

Vanilla GAN (Appendix B.1; :class:`GANGenerator`, :class:`GANDiscriminator`):

* generator: noise (B, 128) -> Dense 1024 -> (B, 1, 16, 16, 4) -> 3 x ConvT 3^3 -> (22, 22, 10)
  [+ dense branch 484 -> 484, reshaped to a 22 x 22 plane and broadcast over layers and channels]
  -> 3 x ConvT 3^3 -> (28, 28, 16) [+ branch 784 x 3] -> 2 x ConvT 3^3 -> (32, 32, 20)
  [+ branch 1024 x 2] -> ConvT 2^3 stride 2 -> (64, 64, 40) [+ branch 4096] -> Conv (1, 1, 10)
  stride (1, 1, 10), 1 channel, sigmoid -> (B, 1, 64, 64, 4). Every dense and transposed
  convolution is followed by batch normalisation and ReLU (the output layer by the sigmoid only).
* discriminator: input (B, 1, 64, 64, 4); dense branch: flatten (16,384) -> 4 x Dense 1024;
  convolutions 1^3, 4 x (3, 3, 1), 4 x (7, 7, 1) -> (32, 32, 4) [+ the branch as a 32 x 32 plane]
  -> (5, 5, 2) stride (5, 5, 1) -> (6, 6, 3) -> 2^3 stride 2 -> (3, 3, 1) [+ branch Dense 9 as a
  3 x 3 plane] -> flatten -> dropout 0.25 -> Dense 1 (sigmoid, applied in the loss: :meth:`forward`
  returns the logit). Batch normalisation and LeakyReLU 0.2 after every hidden layer.

Wasserstein GAN (Appendix B.2; :class:`WGANGenerator`, :class:`WGANCritic`), spectral
normalisation on every layer:

* generator: Dense 1024 -> (B, 1, 16, 16, 4) -> 8 x ConvT 3^3 -> (32, 32, 20) -> ConvT 2^3 stride 2
  -> (64, 64, 40) -> Conv (1, 1, 10) stride (1, 1, 10), sigmoid; each hidden layer normalised
  (batch norm, the paper's mixture; or layer norm over the channels, the released script) and
  LeakyReLU 0.2.
* critic: convolutions 2 x 1^3, 4 x (3, 3, 1), 4 x (7, 7, 1), (5, 5, 2) stride (5, 5, 1), 2^3 stride
  2 -> (B, C, 3, 3, 1), each with layer normalisation over the channels (Keras' default axis) and
  LeakyReLU 0.2 -> flatten -> dropout 0.25 -> linear Dense 1 (no sigmoid: a critic).

Weights start as Keras' do (Glorot-uniform, zero biases), so the published learning rates meet the
same scale of initial gradients.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

#: CrysTens' shape, channel last (rows, columns, layers)
CRYSTENS_SHAPE = (64, 64, 4)


def to_volume(x: Tensor) -> Tensor:
    """(B, 64, 64, 4) channel-last CrysTens -> (B, 1, 64, 64, 4): one feature channel over a
    64 x 64 x 4 volume, the networks' input (Appendix B)."""
    return x.unsqueeze(1)


def from_volume(x: Tensor) -> Tensor:
    """(B, 1, 64, 64, 4) -> (B, 64, 64, 4) channel-last CrysTens."""
    return x.squeeze(1)


def keras_init(module: nn.Module) -> None:
    """Keras' default initialisation on every dense and convolution layer below ``module``:
    Glorot-uniform weights and zero biases (PyTorch's default is Kaiming-uniform)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv3d, nn.ConvTranspose3d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ChannelLayerNorm(nn.Module):
    """Layer normalisation over the channel axis only, at every voxel: Keras'
    ``LayerNormalization()`` (axis -1) on a channel-last volume, applied to (B, C, D1, D2, D3)."""

    def __init__(self, channels: int, eps: float) -> None:
        super().__init__()
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, ...) -> (B, C, ...), each voxel's C values standardised, then scaled and shifted."""
        var, mean = torch.var_mean(x, dim=1, keepdim=True, unbiased=False)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight.view(shape) + self.bias.view(shape)


class TransposedConv3d(nn.ConvTranspose3d):
    """``nn.ConvTranspose3d`` (the same parameters, state and results, no padding, Keras'
    ``valid``), computed through ``conv3d``, which PyTorch's CPU kernels run about ten times faster:
    stride 1 as the convolution of the zero-padded input with the flipped, transposed kernel;
    stride equal to the kernel size (non-overlapping blocks) as a 1^3 convolution to
    ``out x k^3`` channels whose blocks are then laid out in space."""

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:  # noqa: D102
        k, s = tuple(self.kernel_size), tuple(self.stride)
        if self.padding != (0, 0, 0) or self.output_padding != (0, 0, 0) or self.dilation != (1, 1, 1) or self.groups != 1 or output_size:
            return super().forward(x, output_size)
        w = self.weight  # (in, out, k1, k2, k3)
        if s == (1, 1, 1):
            pad = tuple(kk - 1 for kk in k)
            return nn.functional.conv3d(x, w.flip(2, 3, 4).transpose(0, 1), self.bias, padding=pad)
        if s == k:
            b, _, d1, d2, d3 = x.shape
            n_out = w.shape[1]
            kernel = w.permute(1, 2, 3, 4, 0).reshape(n_out * k[0] * k[1] * k[2], w.shape[0], 1, 1, 1)
            y = nn.functional.conv3d(x, kernel).reshape(b, n_out, k[0], k[1], k[2], d1, d2, d3)
            y = y.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, n_out, d1 * k[0], d2 * k[1], d3 * k[2])
            return y if self.bias is None else y + self.bias.view(1, -1, 1, 1, 1)
        return super().forward(x, output_size)


def _plane(y: Tensor, side: int) -> Tensor:
    """A dense branch (B, side^2) as a (B, 1, side, side, 1) plane, broadcast over the volume's
    layers and channels when added (the released ``Reshape((side, side, 1, 1))``)."""
    return y.reshape(y.shape[0], 1, side, side, 1)


# ------------------------------------------------------------------------------ vanilla GAN (B.1)
class GANGenerator(nn.Module):
    """Appendix B.1's generator: noise (B, noise_dim) -> CrysTens volume (B, 1, 64, 64, 4) in [0, 1].

    ``channels``: the 9 transposed convolutions' output channels (256, 128, 128, 128, 64, 64, 64,
    64, 32 as released). Batch normalisation (``bn_momentum`` in PyTorch's convention, ``bn_eps``)
    and ReLU after every hidden layer.
    """

    def __init__(self, noise_dim: int, channels: tuple[int, ...], bn_momentum: float, bn_eps: float) -> None:
        super().__init__()
        if len(channels) != 9:
            raise ValueError(f"the B.1 generator has 9 transposed convolutions, got {len(channels)} channel counts")

        def dense(n_in: int, n_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out, momentum=bn_momentum, eps=bn_eps), nn.ReLU())

        def conv(c_in: int, c_out: int, k: int = 3, s: int = 1) -> nn.Sequential:
            return nn.Sequential(TransposedConv3d(c_in, c_out, k, stride=s),
                                 nn.BatchNorm3d(c_out, momentum=bn_momentum, eps=bn_eps), nn.ReLU())

        c = channels
        self.stem = dense(noise_dim, 16 * 16 * 4)
        self.branch22 = nn.Sequential(dense(noise_dim, 484), dense(484, 484))
        self.stage22 = nn.Sequential(conv(1, c[0]), conv(c[0], c[1]), conv(c[1], c[2]))  # 16 -> 22
        self.branch28 = nn.Sequential(dense(484, 784), dense(784, 784), dense(784, 784))
        self.stage28 = nn.Sequential(conv(c[2], c[3]), conv(c[3], c[4]), conv(c[4], c[5]))  # 22 -> 28
        self.branch32 = nn.Sequential(dense(784, 1024), dense(1024, 1024))
        self.stage32 = nn.Sequential(conv(c[5], c[6]), conv(c[6], c[7]))  # 28 -> 32
        self.branch64 = dense(1024, 4096)
        self.stage64 = conv(c[7], c[8], k=2, s=2)  # 32 -> 64, layers 20 -> 40
        self.out = nn.Conv3d(c[8], 1, (1, 1, 10), stride=(1, 1, 10))  # layers 40 -> 4
        keras_init(self)

    def forward(self, z: Tensor) -> Tensor:
        """(B, noise_dim) -> (B, 1, 64, 64, 4)."""
        x = self.stem(z).reshape(z.shape[0], 1, 16, 16, 4)
        y = self.branch22(z)
        x = self.stage22(x) + _plane(y, 22)  # (B, c2, 22, 22, 10)
        y = self.branch28(y)
        x = self.stage28(x) + _plane(y, 28)  # (B, c5, 28, 28, 16)
        y = self.branch32(y)
        x = self.stage32(x) + _plane(y, 32)  # (B, c7, 32, 32, 20)
        y = self.branch64(y)
        x = self.stage64(x) + _plane(y, 64)  # (B, c8, 64, 64, 40)
        return torch.sigmoid(self.out(x))


class GANDiscriminator(nn.Module):
    """Appendix B.1's discriminator: CrysTens volume (B, 1, 64, 64, 4) -> logit (B, 1) of "real".

    ``channels``: the 11 convolutions' output channels (32, 32, 32, 32, 64, 64, 64, 64, 64, 128,
    256 as released); batch normalisation and LeakyReLU (``leaky_slope``) after every hidden layer,
    ``dropout`` before the output. ``dense_width``: the dense branch's first three widths (1024 as
    released; the fourth stays 1024, the 32 x 32 plane). ``input_norm=False`` drops the batch
    normalisation after the two layers that read the input (the first convolution and the first
    dense layer), DCGAN's rule (Radford et al. 2016, section 3): a linear layer followed by batch
    normalisation of a batch of only real or only generated tensors (the released training calls) is
    blind to any level and scale the whole batch shares, such as a generator whose every entry sits
    at 0.6 where the real tensors' sit at 0. The sigmoid of B.1 is part of the loss
    (``binary_cross_entropy_with_logits``, the same function computed stably); :meth:`probability`
    applies it.
    """

    def __init__(self, channels: tuple[int, ...], dropout: float, leaky_slope: float, bn_momentum: float, bn_eps: float, *,
                 input_norm: bool = True, dense_width: int = 1024) -> None:
        super().__init__()
        if len(channels) != 11:
            raise ValueError(f"the B.1 discriminator has 11 convolutions, got {len(channels)} channel counts")

        def dense(n_in: int, n_out: int, norm: bool = True) -> nn.Sequential:
            bn = [nn.BatchNorm1d(n_out, momentum=bn_momentum, eps=bn_eps)] if norm else []
            return nn.Sequential(nn.Linear(n_in, n_out), *bn, nn.LeakyReLU(leaky_slope))

        def conv(c_in: int, c_out: int, k: tuple[int, int, int], s: tuple[int, int, int] = (1, 1, 1), norm: bool = True) -> nn.Sequential:
            bn = [nn.BatchNorm3d(c_out, momentum=bn_momentum, eps=bn_eps)] if norm else []
            return nn.Sequential(nn.Conv3d(c_in, c_out, k, stride=s), *bn, nn.LeakyReLU(leaky_slope))

        c, w = channels, int(dense_width)
        # the last dense layer stays 1024 wide: it is laid onto the 32 x 32 plane
        self.branch32 = nn.Sequential(dense(64 * 64 * 4, w, input_norm), dense(w, w), dense(w, w), dense(w, 1024))
        self.stage32 = nn.Sequential(
            conv(1, c[0], (1, 1, 1), norm=input_norm), conv(c[0], c[1], (3, 3, 1)), conv(c[1], c[2], (3, 3, 1)), conv(c[2], c[3], (3, 3, 1)),
            conv(c[3], c[4], (3, 3, 1)), conv(c[4], c[5], (7, 7, 1)), conv(c[5], c[6], (7, 7, 1)), conv(c[6], c[7], (7, 7, 1)),
            conv(c[7], c[8], (7, 7, 1)),
        )  # (64, 64, 4) -> (32, 32, 4)
        self.branch3 = dense(1024, 9)
        self.stage3 = nn.Sequential(conv(c[8], c[9], (5, 5, 2), (5, 5, 1)), conv(c[9], c[10], (2, 2, 2), (2, 2, 2)))  # -> (3, 3, 1)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(c[10] * 9, 1)
        keras_init(self)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 1, 64, 64, 4) -> (B, 1) logits."""
        y = self.branch32(x.flatten(1))
        h = self.stage32(x) + _plane(y, 32)  # (B, c8, 32, 32, 4)
        h = self.stage3(h) + _plane(self.branch3(y), 3)  # (B, c10, 3, 3, 1)
        return self.out(self.dropout(h.flatten(1)))

    def probability(self, x: Tensor) -> Tensor:
        """B.1's sigmoid output: the probability (B, 1) that ``x`` is real."""
        return torch.sigmoid(self.forward(x))


# ------------------------------------------------------------------------------ WGAN-GP (B.2)
def _sn(module: nn.Module, on: bool) -> nn.Module:
    """``module`` with spectral normalisation of its weight (one power iteration per training
    forward, as tfa's ``SpectralNormalization``) when ``on``."""
    if not on:
        return module
    return nn.utils.parametrizations.spectral_norm(module)


def _norm_factory(kind: str, ln_eps: float, bn_momentum: float, bn_eps: float) -> tuple[Callable[[int], nn.Module], Callable[[int], nn.Module]]:
    """(dense norm, volume norm) constructors for ``kind`` ``layer`` or ``batch``."""
    if kind == "layer":
        return (lambda n: nn.LayerNorm(n, eps=ln_eps)), (lambda n: ChannelLayerNorm(n, ln_eps))
    if kind == "batch":
        return (lambda n: nn.BatchNorm1d(n, momentum=bn_momentum, eps=bn_eps)), (lambda n: nn.BatchNorm3d(n, momentum=bn_momentum, eps=bn_eps))
    raise ValueError(f"normalisation must be 'layer' or 'batch', got {kind!r}")


class WGANGenerator(nn.Module):
    """Appendix B.2's generator: noise (B, noise_dim) -> CrysTens volume (B, 1, 64, 64, 4) in [0, 1].

    ``channels``: the 9 transposed convolutions' output channels (128, 128, 64, 64, 32, 32, 32, 32,
    32 as released); ``norm`` ``batch`` or ``layer`` after every hidden layer, LeakyReLU
    (``leaky_slope``), spectral normalisation of every layer when ``spectral_norm``.
    """

    def __init__(self, noise_dim: int, channels: tuple[int, ...], *, norm: str, spectral_norm: bool, leaky_slope: float,
                 ln_eps: float, bn_momentum: float, bn_eps: float) -> None:
        super().__init__()
        if len(channels) != 9:
            raise ValueError(f"the B.2 generator has 9 transposed convolutions, got {len(channels)} channel counts")
        dense_norm, volume_norm = _norm_factory(norm, ln_eps, bn_momentum, bn_eps)
        c = (1, *channels)
        self.stem = nn.Sequential(_sn(nn.Linear(noise_dim, 16 * 16 * 4), spectral_norm), dense_norm(16 * 16 * 4), nn.LeakyReLU(leaky_slope))
        layers: list[nn.Module] = []
        for i in range(9):
            k, s = (2, 2) if i == 8 else (3, 1)  # 8 x 3^3 (16 -> 32), then 2^3 stride 2 (32 -> 64)
            layers += [_sn(TransposedConv3d(c[i], c[i + 1], k, stride=s), spectral_norm), volume_norm(c[i + 1]), nn.LeakyReLU(leaky_slope)]
        self.body = nn.Sequential(*layers)
        self.out = _sn(nn.Conv3d(c[9], 1, (1, 1, 10), stride=(1, 1, 10)), spectral_norm)
        keras_init(self)

    def forward(self, z: Tensor) -> Tensor:
        """(B, noise_dim) -> (B, 1, 64, 64, 4)."""
        x = self.stem(z).reshape(z.shape[0], 1, 16, 16, 4)
        return torch.sigmoid(self.out(self.body(x)))  # body: (B, c8, 64, 64, 40)


#: the B.2 critic's kernels and strides, in order (rows, columns, layers)
CRITIC_KERNELS: tuple[tuple[tuple[int, int, int], tuple[int, int, int]], ...] = (
    ((1, 1, 1), (1, 1, 1)), ((1, 1, 1), (1, 1, 1)),
    ((3, 3, 1), (1, 1, 1)), ((3, 3, 1), (1, 1, 1)), ((3, 3, 1), (1, 1, 1)), ((3, 3, 1), (1, 1, 1)),
    ((7, 7, 1), (1, 1, 1)), ((7, 7, 1), (1, 1, 1)), ((7, 7, 1), (1, 1, 1)), ((7, 7, 1), (1, 1, 1)),
    ((5, 5, 2), (5, 5, 1)), ((2, 2, 2), (2, 2, 2)),
)


class WGANCritic(nn.Module):
    """Appendix B.2's critic: CrysTens volume (B, 1, 64, 64, 4) -> score (B, 1), linear.

    ``channels``: the 12 convolutions' output channels (16 x 6, 32 x 3, 64, 64, 128 as released),
    each followed by layer normalisation over the channels (a per-sample normalisation, so the
    gradient penalty stays per sample) and LeakyReLU (``leaky_slope``); ``dropout`` before the
    output; spectral normalisation of every layer when ``spectral_norm``. ``input_norm=False`` drops
    the layer normalisation after the first convolution: that convolution maps the single input
    channel x to ``w_k x + b_k``, and normalising those C values at each voxel leaves (with the
    zero initial biases) only the sign of x, so the released critic first sees no entry's size.
    ``norm="none"``: no normalisation in the critic at all (WGAN-GP allows either, Gulrajani et al.
    2017, section 4).
    """

    def __init__(self, channels: tuple[int, ...], *, spectral_norm: bool, dropout: float, leaky_slope: float, ln_eps: float,
                 input_norm: bool = True, norm: str = "layer") -> None:
        super().__init__()
        if len(channels) != len(CRITIC_KERNELS):
            raise ValueError(f"the B.2 critic has {len(CRITIC_KERNELS)} convolutions, got {len(channels)} channel counts")
        if norm not in ("layer", "none"):
            raise ValueError(f"the critic's normalisation must be 'layer' or 'none', got {norm!r}")
        c = (1, *channels)
        layers: list[nn.Module] = []
        for i, (k, s) in enumerate(CRITIC_KERNELS):
            norm_layer = [ChannelLayerNorm(c[i + 1], ln_eps)] if norm == "layer" and (input_norm or i > 0) else []
            layers += [_sn(nn.Conv3d(c[i], c[i + 1], k, stride=s), spectral_norm), *norm_layer, nn.LeakyReLU(leaky_slope)]
        self.body = nn.Sequential(*layers)  # (64, 64, 4) -> (3, 3, 1)
        self.dropout = nn.Dropout(dropout)
        self.out = _sn(nn.Linear(c[-1] * 9, 1), spectral_norm)
        keras_init(self)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 1, 64, 64, 4) -> (B, 1)."""
        return self.out(self.dropout(self.body(x).flatten(1)))


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """B.2's penalty ``mean((||grad_x D(x_hat)||_2 - 1)^2)`` over the batch, ``x_hat = w real +
    (1 - w) fake`` with one ``w ~ U(0, 1)`` per sample (the released ``RandomWeightedAverage``);
    ``real`` and ``fake``: (B, 1, 64, 64, 4). Differentiable in the critic's weights."""
    w = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, dtype=real.dtype, generator=generator)
    x_hat = (w * real + (1 - w) * fake).detach().requires_grad_(True)
    score = critic(x_hat)
    (grad,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


__all__ = ["CRITIC_KERNELS", "CRYSTENS_SHAPE", "ChannelLayerNorm", "GANDiscriminator", "TransposedConv3d", "GANGenerator", "WGANCritic", "WGANGenerator",
           "from_volume", "gradient_penalty", "keras_init", "to_volume"]
