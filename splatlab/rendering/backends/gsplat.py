"""The CUDA backend: gsplat's fused kernels (``gsplat.rasterization``).

gsplat imports on any machine but its kernels need CUDA (they compile on first use on the GPU
machine). This module is only entered for CUDA tensors or when forced with ``backend="gsplat"``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor


def gsplat_available() -> bool:
    """True when gsplat is importable (its kernels still need a CUDA device)."""
    try:
        import gsplat  # noqa: F401
    except Exception:  # pragma: no cover - gsplat is a hard dependency
        return False
    return True


def rasterize_gsplat(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    near_plane: float,
    far_plane: float,
    radius_clip: float,
    eps2d: float,
    sh_degree: int | None,
    tile_size: int,
    backgrounds: Tensor | None,
    render_mode: str,
    absgrad: bool,
    rasterize_mode: str,
    packed: bool,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Call ``gsplat.rasterization`` with our (already validated) arguments."""
    if means.device.type != "cuda":
        raise ValueError(
            f"backend='gsplat' needs CUDA tensors (gsplat's kernels have no CPU path), got device "
            f"{means.device}; use backend='torch' or move the tensors to a GPU"
        )
    from gsplat import rasterization

    colors_out, alphas, info = rasterization(
        means,
        quats,
        scales,
        opacities,
        colors,
        viewmats,
        Ks,
        width,
        height,
        near_plane=near_plane,
        far_plane=far_plane,
        radius_clip=radius_clip,
        eps2d=eps2d,
        sh_degree=sh_degree,
        packed=packed,
        tile_size=tile_size,
        backgrounds=backgrounds,
        render_mode=render_mode,
        absgrad=absgrad,
        rasterize_mode=rasterize_mode,
    )
    info["backend"] = "gsplat"
    return colors_out, alphas, info
