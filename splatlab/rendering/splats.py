"""Render a Gaussian ParameterDict (log-scales, logit-opacities, sh0/shN) with :func:`rasterize`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .rasterize import rasterize
from .sh import MAX_SH_DEGREE


def splat_sh_degree(params: Mapping[str, Tensor]) -> int:
    """SH degree stored in ``params`` (from the number of coefficients in sh0 + shN)."""
    k = 1 + (params["shN"].shape[1] if "shN" in params else 0)
    deg = int(round(k**0.5)) - 1
    if (deg + 1) ** 2 != k or deg > MAX_SH_DEGREE:
        raise ValueError(f"sh0/shN hold {k} coefficients, not a square number <= 16")
    return deg


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
    deg = splat_sh_degree(params) if sh_degree is None else min(sh_degree, splat_sh_degree(params))
    colors = torch.cat([params["sh0"], params["shN"]], dim=1) if "shN" in params else params["sh0"]
    dev, dt = params["means"].device, params["means"].dtype
    return rasterize(
        params["means"],
        params["quats"],
        torch.exp(params["scales"]),
        torch.sigmoid(params["opacities"]),
        colors,
        viewmats.to(dev, dt),
        Ks.to(dev, dt),
        width,
        height,
        sh_degree=deg,
        backgrounds=None if backgrounds is None or render_mode in ("D", "ED") else backgrounds.to(dev, dt),
        render_mode=render_mode,
        **kwargs,
    )
