"""Random draws with an explicit ``torch.Generator``, so the same seed gives the same crystals.

Every model draws its random numbers through these helpers: the draw happens on the generator's
own device (a CPU generator gives the same numbers whether the model runs on the CPU or a GPU) and
the result is moved to the device (and dtype) of a reference tensor ``like``. With ``generator=None``
the global RNG of ``like``'s device is used.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["generator_device", "multinomial", "rand", "randint", "randn"]


def generator_device(generator: torch.Generator | None, like: Tensor) -> torch.device:
    """The device the draws happen on: the generator's, else ``like``'s."""
    return generator.device if generator is not None else like.device


def randn(shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    """Standard normal draws of ``shape`` on the generator's device, returned on ``like``'s device
    and in its dtype."""
    out = torch.randn(shape, generator=generator, device=generator_device(generator, like), dtype=like.dtype)
    return out.to(like.device)


def rand(shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    """Uniform [0, 1) draws of ``shape``, as :func:`randn`."""
    out = torch.rand(shape, generator=generator, device=generator_device(generator, like), dtype=like.dtype)
    return out.to(like.device)


def randint(high: int, shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    """Uniform integers in [0, high) of ``shape``, long, on ``like``'s device."""
    out = torch.randint(high, shape, generator=generator, device=generator_device(generator, like))
    return out.to(like.device)


def multinomial(probs: Tensor, num_samples: int, generator: torch.Generator | None,
                replacement: bool = True) -> Tensor:
    """``torch.multinomial`` of the rows of ``probs`` (R, K) with the generator: (R, num_samples)
    long class indices on ``probs``' device."""
    dev = generator_device(generator, probs)
    return torch.multinomial(probs.to(dev), num_samples, replacement=replacement, generator=generator).to(probs.device)
