"""Differentiable stand-ins for rounding (latents) and the quantisation of network weights.

- :func:`softround` (Agustsson & Theis 2020, "Universally Quantized Neural Compression", sec. 4.1):
  ``floor(x) + 0.5 * tanh(d / t) / tanh(1 / (2 t)) + 0.5`` with ``d = x - floor(x) - 0.5``;
  ``t -> 0`` gives ``round(x)``, large ``t`` gives ``x``.
- :func:`kumaraswamy_noise`: C3's (Kim et al. 2024, arXiv:2312.02753) Kumaraswamy(a, b) noise
  shifted to [-0.5, 0.5], with ``b = (2^a (a - 1) + 1) / a`` so its mode stays at 0.5; ``a = 1``
  is uniform noise. C3 / Cool-chic train with ``softround(softround(x, t) + u, t)`` while ``t``
  and ``a`` are annealed (C3: t 0.3 -> 0.1, a 2 -> 1), then switch to hard rounding with a
  straight-through gradient.
- :func:`sga_round`: stochastic Gumbel annealing (Yang et al. 2020, used by EQLINR): a relaxed
  two-way choice between floor and ceil, the choice sharpening as the temperature falls.
- :func:`quantize_weights`: a weight tensor to integers on a power-of-two step ``2^-k`` (so the
  fixed-point decoder represents them exactly).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "softround",
    "kumaraswamy_noise",
    "noisy_softround",
    "ste_round",
    "sga_round",
    "quantize_weights",
]


def softround(x: Tensor, t: float) -> Tensor:
    """Soft rounding with temperature ``t`` > 0 (identity as t grows, round(x) as t -> 0)."""
    fl = torch.floor(x)
    d = x - fl - 0.5
    return fl + 0.5 * torch.tanh(d / t) / math.tanh(1.0 / (2.0 * t)) + 0.5


def kumaraswamy_noise(shape: torch.Size | tuple[int, ...], a: float, generator=None) -> Tensor:
    """Kumaraswamy noise in [-0.5, 0.5] with mode 0 (a = 1: uniform). Returns float [*shape]."""
    u = torch.rand(shape, generator=generator)
    b = (2.0**a * (a - 1.0) + 1.0) / a
    return (1.0 - (1.0 - u) ** (1.0 / b)) ** (1.0 / a) - 0.5


def noisy_softround(x: Tensor, t: float, a: float, generator=None) -> Tensor:
    """C3's training quantiser ``softround(softround(x, t) + u, t)``, u Kumaraswamy(a)."""
    u = kumaraswamy_noise(x.shape, a, generator).to(x)
    return softround(softround(x, t) + u, t)


def ste_round(x: Tensor) -> Tensor:
    """round(x) forward, identity gradient backward."""
    return x + (torch.round(x) - x).detach()


def sga_round(x: Tensor, tau: float, generator=None) -> Tensor:
    """Stochastic Gumbel annealing: ``floor(x) + s`` with s in (0, 1) a Gumbel-softmax sample of
    the choice ceil vs floor, whose logits are ``-atanh(distance) / tau`` (Yang et al. 2020)."""
    fl = torch.floor(x)
    r = x - fl
    r = r + (r.clamp(1e-4, 1 - 1e-4) - r).detach()  # keep the gradient at integers (r = 0)
    logits = torch.stack([-torch.atanh(r) / tau, -torch.atanh(1 - r) / tau], dim=-1)
    u = torch.rand(logits.shape, generator=generator).to(x).clamp(1e-9, 1 - 1e-9)
    g = -torch.log(-torch.log(u))
    s = torch.softmax((logits + g) / tau, dim=-1)[..., 1]
    return fl + s


def quantize_weights(w: Tensor, k: int) -> Tensor:
    """Integers ``round(w * 2^k)`` (the weight is ``int * 2^-k``). Returns int64 [same shape]."""
    return torch.round(w.detach().double() * (2.0**k)).to(torch.int64)
