"""Colour plus any extra per-Gaussian channels in ONE rasterization, split back by name.

Every multi-output render of splatlab (Feature 3DGS's colour + features, GaussianShader's colour +
normal + buffers, the viewer's feature and selection modes, per-Gaussian weights of a mask) is one
call of :func:`render_channels`: the stored parameters are activated once (exp scales, sigmoid
opacities), the named channels are concatenated into ``colors [N, D]``, the backgrounds are padded
(zero for channels without one), and the output ``[C, H, W, D]`` is split back into the same names.

A channel is a Tensor ``[N, c]`` (already activated values) or :class:`SH` (coefficients evaluated
towards each camera as gsplat does, ``max(SH + 0.5, 0)``). When the only channel is an ``SH``, the
rasterizer evaluates it itself (gsplat's fused SH path on CUDA).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .rasterize import rasterize
from .sh import MAX_SH_DEGREE, eval_sh

__all__ = ["SH", "render_channels", "activated", "camera_centers", "sh_of", "splat_sh_degree"]


@dataclass
class SH:
    """A colour channel given as SH coefficients [N, K, 3] to evaluate up to ``degree``."""

    coeffs: Tensor  # [N, K, 3]
    degree: int

    @property
    def width(self) -> int:
        return int(self.coeffs.shape[-1])


def splat_sh_degree(params: Mapping[str, Tensor]) -> int:
    """SH degree stored in ``params`` (from the number of coefficients in sh0 + shN)."""
    k = 1 + (params["shN"].shape[1] if "shN" in params else 0)
    deg = int(round(k**0.5)) - 1
    if (deg + 1) ** 2 != k:
        raise ValueError(f"sh0/shN hold {k} coefficients, not a square number (1, 4, 9, 16)")
    if deg > MAX_SH_DEGREE:
        raise ValueError(
            f"the scene has SH degree {deg}; splatlab renders SH degree 0..{MAX_SH_DEGREE} "
            "(convert it with `splatlab export` to a lower degree or render it with gsplat on CUDA)"
        )
    return deg


def sh_of(params: Mapping[str, Tensor], sh_degree: int | None = None) -> SH:
    """The colour of stored parameters (sh0 [N, 1, 3] + shN [N, K-1, 3]) as an :class:`SH`
    channel, evaluated up to ``sh_degree`` (default and maximum: the stored degree)."""
    stored = splat_sh_degree(params)
    deg = stored if sh_degree is None else min(sh_degree, stored)
    coeffs = torch.cat([params["sh0"], params["shN"]], dim=1) if "shN" in params else params["sh0"]
    return SH(coeffs, deg)


def activated(params: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(means [N, 3], quats [N, 4], scales [N, 3] linear, opacities [N] in [0, 1])."""
    return (
        params["means"],
        params["quats"],
        torch.exp(params["scales"]),
        torch.sigmoid(params["opacities"].reshape(-1)),
    )


def camera_centers(viewmats: Tensor) -> Tensor:
    """World positions of OpenCV world-to-camera matrices [C, 4, 4] -> [C, 3]."""
    R, t = viewmats[:, :3, :3], viewmats[:, :3, 3]
    return -(R.transpose(1, 2) @ t[..., None])[..., 0]


def render_channels(
    params: Mapping[str, Tensor],
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    channels: Mapping[str, Tensor | SH],
    *,
    backgrounds: Mapping[str, Tensor] | None = None,  # name -> [c] or [C, c]
    depth: bool = False,
    **kwargs: Any,
) -> tuple[dict[str, Tensor], Tensor, dict[str, Any]]:
    """Rasterize the named per-Gaussian channels of ``params``' Gaussians in one call.

    Args:
        params: stored parameters (means, quats, log scales, logit opacities [, sh0, shN, ...]).
        viewmats, Ks, width, height: cameras, as :func:`rasterize`.
        channels: name -> Tensor [N, c] (activated values, or [C, N, c] per camera) or :class:`SH`.
            The order is kept in the output.
        backgrounds: name -> colour [c] (or [C, c]) composited behind that channel; channels not
            named get 0.
        depth: also render the expected depth (``"depth"`` [C, H, W, 1], gsplat's "ED").
        kwargs: the other :func:`rasterize` options (rasterize_mode, absgrad, near_plane, ...).

    Returns:
        (name -> [C, H, W, c] (plus "depth" with ``depth``), alphas [C, H, W, 1], info).
    """
    if not channels:
        raise ValueError("render_channels needs at least one channel")
    means, quats, scales, opacities = activated(params)
    dev, dt = means.device, means.dtype
    viewmats, Ks = viewmats.to(dev, dt), Ks.to(dev, dt)
    C = viewmats.shape[0]
    names = list(channels)
    backgrounds = dict(backgrounds or {})
    widths = [c.width if isinstance(c, SH) else int(c.shape[-1]) for c in channels.values()]
    mode = "RGB+ED" if depth else "RGB"
    only = channels[names[0]]
    if len(names) == 1 and isinstance(only, SH):
        colors, sh_degree = only.coeffs, only.degree  # the rasterizer evaluates SH (fused on CUDA)
    else:
        parts = []
        for c in channels.values():
            if isinstance(c, SH):
                dirs = means[None] - camera_centers(viewmats)[:, None]  # [C, N, 3]
                c = torch.clamp_min(eval_sh(c.degree, dirs, c.coeffs[None]) + 0.5, 0.0)
            parts.append(c if c.dim() == 3 else c.expand(C, *c.shape) if C > 1 else c[None])
        colors = torch.cat([p.to(dt) for p in parts], dim=-1)  # [C, N, D]
        if C == 1:
            colors = colors[0]
        sh_degree = None
    bgs = None
    if backgrounds:
        rows = []
        for name, w in zip(names, widths):
            b = backgrounds.get(name)
            b = torch.zeros(w, device=dev, dtype=dt) if b is None else b.to(dev, dt)
            rows.append(b.expand(C, w) if b.dim() == 1 else b)
        bgs = torch.cat(rows, dim=-1)  # [C, D]
    out, alphas, info = rasterize(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height,
        sh_degree=sh_degree, backgrounds=bgs, render_mode=mode, **kwargs,
    )
    result: dict[str, Tensor] = {}
    start = 0
    for name, w in zip(names, widths):
        result[name] = out[..., start : start + w]
        start += w
    if depth:
        result["depth"] = out[..., -1:]
    return result, alphas, info
