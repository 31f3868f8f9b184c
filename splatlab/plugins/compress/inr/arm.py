"""The auto-regressive entropy model (ARM) over the latent grids.

Each latent grid is scanned with a causal context: the ``n_ctx`` nearest positions (dy, dx) with
``-k <= dy <= 0``, ``|dx| <= k`` that come before the pixel in raster order (zero outside the grid,
as Cool-chic pads). A small MLP maps the context to the Laplace parameters (mu, log scale) of the
latent, shared by all grids (Cool-chic, Ladune et al. 2023).

Two evaluations of the same network:

- float (training): differentiable, ``mu`` and ``scale = exp(log_scale)`` continuous;
- fixed point (the bitstream): inputs, weights and activations are integers (activations on the
  grid ``2^-FA``, weights on ``2^-k``) held in float64 arrays. Every product and partial sum is an
  integer below ``2^53``, so any BLAS summation order gives the same exact result, and the floor
  after each layer is exact: the decoder reproduces the encoder's probabilities bit for bit in any
  process, thread count or machine. ``mu`` is then snapped to ``1/16`` and ``log scale`` to a
  table of ``1/8`` steps, and the pair is handed to constriction's QuantizedLaplace.

Decoding is sequential in principle; with a context that reaches at most ``k`` columns to the right
in the rows above, all latents on the wavefront ``t = x + s * y`` (``s`` from the pattern) are
independent, so the decoder runs ``~ W + s H`` batched steps instead of ``H W`` single ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

FA = 12
"""Fractional bits of the fixed-point activations (values on the grid 2^-FA)."""
MU_FRAC = 4
"""mu is snapped to multiples of 2^-MU_FRAC before entropy coding."""
LOGS_MIN = -3.0
"""Smallest log scale (natural log) of the Laplace; scale = exp(log scale) >= 0.05, so that
a confident prediction still leaves a miss at ~15 bits (below, misses cost the coder's 24-bit floor)."""
LOGS_STEP_LOG2 = -3
"""log scale snapped to multiples of 2^LOGS_STEP_LOG2 (1/8)."""
N_SCALES = 68
"""Entries of the scale table: log scale in [-3, -3 + 67/8 = 5.375]."""
LOGS_MAX = LOGS_MIN + (N_SCALES - 1) * 2.0**LOGS_STEP_LOG2

# exp() rounded to 2^-24 so that a last-bit difference of a libm cannot change the table
SCALE_TABLE = np.array(
    [round(math.exp(LOGS_MIN + i * 2.0**LOGS_STEP_LOG2) * 2**24) / 2**24 for i in range(N_SCALES)],
    dtype=np.float64,
)


def context_pattern(k: int, n_ctx: int) -> list[tuple[int, int]]:
    """The ``n_ctx`` causal offsets (dy, dx) nearest to the pixel (ties: raster order)."""
    cands = [(dy, dx) for dy in range(-k, 1) for dx in range(-k, k + 1) if dy < 0 or dx < 0]
    if n_ctx > len(cands):
        raise ValueError(f"n_ctx={n_ctx} > {len(cands)} causal positions with k={k}")
    cands.sort(key=lambda p: (p[0] ** 2 + p[1] ** 2, p[0], p[1]))
    return cands[:n_ctx]


def wavefront_slope(pattern: list[tuple[int, int]]) -> int:
    """Smallest integer s with ``dx + s * dy < 0`` for every offset (dy < 0 rows above)."""
    s = 1
    for dy, dx in pattern:
        if dy < 0:
            s = max(s, math.floor(dx / -dy) + 1)
    return s


@dataclass
class LatentLayout:
    """Where every latent lives in one flat zero-padded buffer holding all grids.

    Grid ``i`` of size [h_i, w_i] is stored padded by ``k`` rows on top and ``k`` columns on each
    side. ``pos``: int64 [N] buffer index of each latent in coding order; ``ctx``: int64 [N, C]
    buffer indices of its context; ``level``: int64 [N]; ``steps``: int64 [S + 1] boundaries of
    the wavefront steps in coding order; ``raster``: per grid, int64 [h_i * w_i] coding-order
    index of each latent in raster order.
    """

    sizes: list[tuple[int, int]]
    buffer_size: int
    pos: np.ndarray
    ctx: np.ndarray
    level: np.ndarray
    steps: np.ndarray
    raster: list[np.ndarray]
    grid_pos: list[np.ndarray]


def latent_layout(sizes: list[tuple[int, int]], pattern: list[tuple[int, int]], k: int) -> LatentLayout:
    s = wavefront_slope(pattern)
    pos_l, ctx_l, lev_l, t_l, y_l = [], [], [], [], []
    off = 0
    grid_pos = []
    for i, (h, w) in enumerate(sizes):
        wp = w + 2 * k
        yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        yy, xx = yy.ravel(), xx.ravel()
        p = off + (yy + k) * wp + (xx + k)
        grid_pos.append(p)
        pos_l.append(p)
        ctx_l.append(p[:, None] + np.array([dy * wp + dx for dy, dx in pattern])[None, :])
        lev_l.append(np.full(p.shape, i))
        t_l.append(xx + s * yy)
        y_l.append(yy)
        off += (h + k) * wp
    pos = np.concatenate(pos_l)
    ctx = np.concatenate(ctx_l)
    lev = np.concatenate(lev_l)
    t = np.concatenate(t_l)
    yv = np.concatenate(y_l)
    order = np.lexsort((yv, lev, t))  # by t, then level, then row
    t_sorted = t[order]
    bounds = np.flatnonzero(np.diff(t_sorted)) + 1
    steps = np.concatenate([[0], bounds, [len(order)]]).astype(np.int64)
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    raster = []
    start = 0
    for h, w in sizes:
        raster.append(inv[start : start + h * w])
        start += h * w
    return LatentLayout(
        sizes=list(sizes),
        buffer_size=off,
        pos=pos[order].astype(np.int64),
        ctx=ctx[order].astype(np.int64),
        level=lev[order].astype(np.int64),
        steps=steps,
        raster=raster,
        grid_pos=grid_pos,
    )


# ----------------------------------------------------------------------------- networks


def arm_shapes(n_ctx: int, hidden: int, layers: int) -> list[tuple[int, int]]:
    """(out, in) of each linear layer: ``layers`` hidden ReLU layers, then 2 outputs."""
    dims = [n_ctx] + [hidden] * layers + [2]
    return [(dims[i + 1], dims[i]) for i in range(len(dims) - 1)]


def arm_float(ctx: Tensor, weights: list[Tensor], biases: list[Tensor]) -> tuple[Tensor, Tensor]:
    """ctx: float [N, C] -> (mu [N], log_scale [N]) clamped to the table range."""
    x = ctx
    n = len(weights)
    for i, (w, b) in enumerate(zip(weights, biases)):
        x = torch.nn.functional.linear(x, w, b)
        if i < n - 1:
            x = torch.relu(x)
    return x[:, 0], x[:, 1].clamp(LOGS_MIN, LOGS_MAX)


def arm_fixed(
    ctx: np.ndarray, w_int: list[np.ndarray], b_int: list[np.ndarray], kw: int, kb: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact fixed-point ARM. ctx: float64 [N, C] integer latents; weights ``w_int * 2^-kw``,
    biases ``b_int * 2^-kb`` (float64 integer arrays). Returns (mu index [N] in 1/16 units,
    scale index [N] into SCALE_TABLE), both int64."""
    x = ctx * float(2**FA)
    bscale = float(2 ** (FA + kw - kb))
    div = float(2**kw)
    n = len(w_int)
    for i, (w, b) in enumerate(zip(w_int, b_int)):
        acc = x @ w.T + b * bscale
        if acc.size and float(np.abs(acc).max()) >= 2.0**52:
            raise OverflowError("fixed-point ARM left the exact float64 range (2^52)")
        x = np.floor(acc / div)
        if i < n - 1:
            x = np.maximum(x, 0.0)
    half_mu = float(2 ** (FA - MU_FRAC - 1))
    mu_idx = np.floor((x[:, 0] + half_mu) / float(2 ** (FA - MU_FRAC)))
    step = float(2 ** (FA + LOGS_STEP_LOG2))
    s_idx = np.floor((x[:, 1] - LOGS_MIN * 2**FA + step / 2) / step)
    return mu_idx.astype(np.int64), np.clip(s_idx, 0, N_SCALES - 1).astype(np.int64)


def laplace_bin_prob(y: Tensor, mu: Tensor, scale: Tensor, lo: float | None = None,
                     hi: float | None = None, floor: float = 2.0**-24) -> Tensor:
    """P(Y = y) for the Laplace(mu, scale) integrated over [y - 0.5, y + 0.5]; with ``lo`` /
    ``hi`` the tails are folded into the end bins (the coder's support). ``floor``: the smallest
    probability (constriction's 24-bit models give every symbol at least 2^-24; training uses
    Cool-chic's 2^-16)."""

    def cdf(v: Tensor) -> Tensor:
        z = (v - mu) / scale
        return 0.5 + 0.5 * torch.sign(z) * (-torch.expm1(-z.abs()))

    upper = cdf(y + 0.5)
    lower = cdf(y - 0.5)
    if hi is not None:
        upper = torch.where(y >= hi, torch.ones_like(upper), upper)
    if lo is not None:
        lower = torch.where(y <= lo, torch.zeros_like(lower), lower)
    return (upper - lower).clamp_min(floor)
