"""Entropy models of the mean-scale hyperprior and the exact integer arithmetic that lets any
process decode what any other encoded.

- :class:`EntropyBottleneck`: the factorised density of Balle et al. 2018 (appendix 6.1) for the
  hyper-latents ``z``: per channel a monotone cumulative ``c(x) = sigmoid(f_K(... f_1(x)))`` with
  ``f_k(x) = g_k(softplus(H_k) x + b_k)`` and ``g_k(x) = x + tanh(a_k) tanh(x)``. Training uses
  ``P(z + u) = c(z + u + 1/2) - c(z + u - 1/2)`` with uniform noise ``u``; :meth:`update` then
  tabulates the probability of every integer in ``[-L, L]`` per channel once (float64, stored
  in the state dict), so encoder and decoder read the SAME table (CompressAI's
  ``EntropyBottleneck.update`` contract). Symbols outside ``[-L, L]`` are clamped by the
  encoder, which uses the clamped values itself.
- :class:`GaussianConditional`: ``y`` given ``(mu, sigma)`` from the hyper-synthesis, the
  likelihood ``Phi((1/2 - |y - mu|) / sigma) - Phi((-1/2 - |y - mu|) / sigma)`` with
  ``sigma >= 0.11``. The coder sees ``round(y - mu)`` under a zero-mean quantised Gaussian
  whose std is snapped to the nearest (in log) entry of a fixed 64-entry ``scale_table``
  (stored in the state dict); the index is found with comparisons only, so it is exact.
- :func:`int_conv`: convolution (and transposed convolution) of int64 tensors by unfold +
  int64 matmul. The hyper-synthesis runs in this arithmetic at coding time (weights snapped
  to ``2^-KW``, activations floored to ``2^-KA``), so ``mu`` and the scale indices are the
  same integers in every process, thread count and machine; ``y_hat = round(y - mu) + mu`` is
  then exact too. Only the image synthesis ``g_s`` runs in float32 (deterministic on one
  machine and thread setting, see the codec docstring).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "EntropyBottleneck",
    "GaussianConditional",
    "int_conv",
    "KA",
    "KW",
    "SCALE_MIN",
    "LIKELIHOOD_MIN",
]

KW = 12
"""Hyper-synthesis weights are integers at step 2^-KW when coding."""
KA = 10
"""Hyper-synthesis activations are floored to step 2^-KA when coding."""
SCALE_MIN = 0.11
"""Lower bound of the Gaussian std (CompressAI's default)."""
LIKELIHOOD_MIN = 1e-9


class _LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still flows where x < bound and the gradient pushes x up."""

    @staticmethod
    def forward(ctx, x: Tensor, bound: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        pass_through = (x >= ctx.bound) | (g < 0)
        return g * pass_through.to(g.dtype), None


def lower_bound(x: Tensor, bound: float) -> Tensor:
    return _LowerBound.apply(x, bound)


class EntropyBottleneck(nn.Module):
    """Factorised (per channel, non-parametric) density of the hyper-latents.

    channels: C; filters: hidden widths of the per-channel cumulative network."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0,
                 max_support: int = 127) -> None:
        super().__init__()
        self.channels = int(channels)
        self.max_support = int(max_support)
        dims = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1.0 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))
        # the coding table: pmf [C, 2L + 1] over the integers -L..L (float64), set by update()
        self.register_buffer("pmf", torch.zeros(channels, 0, dtype=torch.float64))

    @property
    def support(self) -> int:
        """L: symbols are coded on [-L, L] (0 before :meth:`update`)."""
        return (self.pmf.shape[1] - 1) // 2 if self.pmf.shape[1] else 0

    def _logits(self, v: Tensor) -> Tensor:
        """v: [C, 1, n] -> logits of the cumulative [C, 1, n]."""
        for i, (m, b) in enumerate(zip(self.matrices, self.biases)):
            v = torch.matmul(F.softplus(m.to(v.dtype)), v) + b.to(v.dtype)
            if i < len(self.factors):
                v = v + torch.tanh(self.factors[i].to(v.dtype)) * torch.tanh(v)
        return v

    def _likelihood_flat(self, v: Tensor) -> Tensor:
        lo = self._logits(v - 0.5)
        up = self._logits(v + 0.5)
        sign = -torch.sign(lo + up).detach()
        return (torch.sigmoid(sign * up) - torch.sigmoid(sign * lo)).abs()

    def likelihood(self, z: Tensor) -> Tensor:
        """z: [B, C, h, w] (noisy or rounded) -> P per element [B, C, h, w], >= 1e-9."""
        b, c, h, w = z.shape
        v = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lik = self._likelihood_flat(v).reshape(c, b, h, w).permute(1, 0, 2, 3)
        return lower_bound(lik, LIKELIHOOD_MIN)

    @torch.no_grad()
    def update(self, tail_mass: float = 1e-7) -> int:
        """Tabulate the coding pmf: L = the smallest support holding all but ``tail_mass`` of
        every channel (at most ``max_support``). Returns L."""
        lmax = self.max_support
        grid = torch.arange(-lmax, lmax + 1, dtype=torch.float64)
        v = grid.expand(self.channels, 1, -1).contiguous()
        p = self._likelihood_flat(v)[:, 0]  # [C, 2 lmax + 1]
        need = 0
        for c in range(self.channels):
            pc = p[c] / p[c].sum()
            for L in range(lmax + 1):
                inner = pc[lmax - L: lmax + L + 1].sum()
                if 1.0 - float(inner) <= tail_mass:
                    break
            need = max(need, L)
        L = max(1, need)
        self.pmf = p[:, lmax - L: lmax + L + 1].clone().clamp_min(1e-12)
        return L


class GaussianConditional(nn.Module):
    """Conditional Gaussian of the latents ``y`` with a fixed table of coding scales."""

    def __init__(self, n_scales: int = 64, scale_max: float = 64.0) -> None:
        super().__init__()
        table = np.exp(np.linspace(math.log(SCALE_MIN), math.log(scale_max), n_scales))
        self.register_buffer("scale_table", torch.from_numpy(table))
        # boundaries between table entries: geometric means; index = #boundaries <= sigma
        self.register_buffer("boundaries", torch.from_numpy(np.sqrt(table[1:] * table[:-1])))

    @staticmethod
    def likelihood(y: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
        """P(y) per element for noisy / rounded y, [B, M, h, w]."""
        s = lower_bound(sigma, SCALE_MIN)
        v = (y - mu).abs()
        up = 0.5 * torch.erfc(-((0.5 - v) / s) / math.sqrt(2.0))
        lo = 0.5 * torch.erfc(-((-0.5 - v) / s) / math.sqrt(2.0))
        return lower_bound(up - lo, LIKELIHOOD_MIN)

    def index(self, sigma: Tensor) -> Tensor:
        """float64 sigma (exact) -> int64 index into ``scale_table`` (comparisons only)."""
        return torch.searchsorted(self.boundaries, sigma.to(torch.float64).contiguous(), right=True)


# ----------------------------------------------------------------------------- exact conv


def _unfold_int(x: Tensor, k: int, pad: tuple[int, int, int, int], stride: int) -> Tensor:
    """x: int64 [1, C, H, W] -> int64 [C k k, L] (through float64: exact below 2^53)."""
    if max(abs(int(x.max())), abs(int(x.min()))) >= 2**52:
        raise OverflowError("exact hyper-synthesis: activation beyond 2^52")
    xd = F.pad(x.to(torch.float64), pad)
    return F.unfold(xd, k, stride=stride)[0].round().to(torch.int64)


def int_conv(x: Tensor, w: Tensor, b: Tensor, *, stride: int, padding: int,
             transposed: bool = False, output_padding: int = 0) -> Tensor:
    """Exact integer (transposed) convolution.

    x: int64 [1, Cin, H, W]; w: int64 [Cout, Cin, k, k] (conv) or [Cin, Cout, k, k]
    (transposed, PyTorch's layout); b: int64 [Cout]. Same output as F.conv2d /
    F.conv_transpose2d with these arguments, computed in int64."""
    k = w.shape[-1]
    if transposed:
        _, cin, h, wd = x.shape
        s = stride
        xd = torch.zeros(1, cin, (h - 1) * s + 1, (wd - 1) * s + 1, dtype=torch.int64)
        xd[:, :, ::s, ::s] = x
        p = k - 1 - padding
        w2 = w.flip(2, 3).transpose(0, 1)
        cols = _unfold_int(xd, k, (p, p + output_padding, p, p + output_padding), 1)
        oh, ow = xd.shape[2] + 2 * p + output_padding - k + 1, xd.shape[3] + 2 * p + output_padding - k + 1
    else:
        w2 = w
        cols = _unfold_int(x, k, (padding,) * 4, stride)
        oh = (x.shape[2] + 2 * padding - k) // stride + 1
        ow = (x.shape[3] + 2 * padding - k) // stride + 1
    out = w2.reshape(w2.shape[0], -1) @ cols + b[:, None]
    return out.reshape(1, w2.shape[0], oh, ow)
