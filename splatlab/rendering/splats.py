"""Render a Gaussian ParameterDict (log-scales, logit-opacities, sh0/shN) with :func:`rasterize`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from .channels import activated, sh_of, splat_sh_degree
from .rasterize import rasterize

__all__ = ["render_splats", "splat_sh_degree"]


def render_splats(
    params: Mapping[str, Tensor],
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    *,
    sh_degree: int | None = None,
    backgrounds: Tensor | None = None,  # [C, 3]
    render_mode: str = "RGB",
    **kwargs: Any,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Activate the stored parameters (exp scales, sigmoid opacities, SH up to ``sh_degree``,
    default: all stored) and rasterize. Returns gsplat's ``(colors [C,H,W,D], alphas [C,H,W,1], info)``."""
    sh = sh_of(params, sh_degree)
    means, quats, scales, opacities = activated(params)
    dev, dt = means.device, means.dtype
    return rasterize(
        means,
        quats,
        scales,
        opacities,
        sh.coeffs,
        viewmats.to(dev, dt),
        Ks.to(dev, dt),
        width,
        height,
        sh_degree=sh.degree,
        backgrounds=None if backgrounds is None or render_mode in ("D", "ED") else backgrounds.to(dev, dt),
        render_mode=render_mode,
        **kwargs,
    )
