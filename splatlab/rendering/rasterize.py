"""The rasterization contract of splatlab: ``gsplat.rasterization`` on every device.

One function, :func:`rasterize`, with gsplat's argument semantics (activations already applied:
linear scales, post-sigmoid opacities, unnormalised wxyz quaternions) and gsplat's outputs
``(render_colors [C, H, W, D'], render_alphas [C, H, W, 1], info)``. The backend follows the
tensors' device (CUDA -> gsplat's kernels, anything else -> our torch backend) unless forced.
The ``info`` dict carries the keys gsplat's densification strategies read (``means2d`` with its
gradient, ``radii``, ``width``, ``height``, ``n_cameras``, ``gaussian_ids`` ...), so
``gsplat.strategy.DefaultStrategy`` and ``MCMCStrategy`` drive training on every backend.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from .sh import MAX_SH_DEGREE, num_sh_bases

RenderMode = Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"]
RasterizeMode = Literal["classic", "antialiased"]
Backend = Literal["auto", "torch", "gsplat"]
RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")


def rasterize(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [(C,) N, D] or [(C,) N, K, 3] with sh_degree
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    eps2d: float = 0.3,
    sh_degree: int | None = None,
    packed: bool = False,
    tile_size: int = 16,
    backgrounds: Tensor | None = None,  # [C, D]
    render_mode: RenderMode = "RGB",
    absgrad: bool = False,
    rasterize_mode: RasterizeMode = "classic",
    backend: Backend = "auto",
    compositor: Literal["numba", "torch"] = "numba",
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Rasterize N 3D Gaussians into C pinhole cameras, differentiably.

    Args:
        means: Gaussian centres, world space. [N, 3]
        quats: rotations as wxyz quaternions (normalised internally). [N, 4]
        scales: linear (not log) scales. [N, 3]
        opacities: post-sigmoid opacities in [0, 1]. [N]
        colors: with ``sh_degree=None``, post-activation values with ANY channel count D, shared
            by all cameras [N, D] or per camera [C, N, D]; with ``sh_degree`` in 0..3, SH
            coefficients [N, K, 3] or [C, N, K, 3], K >= (sh_degree+1)^2, evaluated per camera and
            mapped to colour as max(SH + 0.5, 0) like gsplat.
        viewmats: world-to-camera matrices, OpenCV convention. [C, 4, 4]
        Ks: pinhole intrinsics. [C, 3, 3]
        width, height: image size in pixels.
        near_plane, far_plane: Gaussians whose camera-space depth is outside are culled.
        radius_clip: Gaussians whose 2D radius (pixels) is <= this are culled.
        eps2d: dilation added to the 2D covariance (gsplat's 0.3 px^2 low-pass filter).
        sh_degree: see ``colors``.
        packed: gsplat's packed mode; honoured by the gsplat backend. The torch backend always
            returns the unpacked layout (``info['means2d']`` is [C, N, 2], ``gaussian_ids`` None),
            which is what ``DefaultStrategy(...)`` with ``packed=False`` reads.
        tile_size: tile edge in pixels.
        backgrounds: colour composited behind the Gaussians. [C, D]
        render_mode: "RGB", "D" (accumulated depth), "ED" (expected depth = D / alpha),
            "RGB+D", "RGB+ED" (depth appended as the last channel).
        absgrad: also accumulate |d loss / d means2d| per pixel into ``info['means2d'].absgrad``.
        rasterize_mode: "classic" or "antialiased" (opacities scaled by the eps2d compensation,
            Mip-Splatting style, as gsplat).
        backend: "auto" (CUDA tensors -> gsplat, others -> torch), "torch" or "gsplat".
        compositor: torch backend only: "numba" (compiled CPU kernels) or "torch" (pure PyTorch
            reference, any device).

    Returns:
        render_colors: [C, H, W, D'] (D' = D, 1 for depth modes, D + 1 for RGB+depth modes)
        render_alphas: [C, H, W, 1]
        info: dict of intermediate results (gsplat's keys).

    Raises:
        ValueError: an argument has the wrong shape, dtype or device, or holds NaN/inf; the message
            names the argument and the expected shape.
    """
    _validate(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree, backgrounds,
        render_mode, rasterize_mode, tile_size, eps2d, near_plane, far_plane,
    )
    if backend == "auto":
        backend = "gsplat" if means.device.type == "cuda" else "torch"
    common = dict(
        near_plane=near_plane,
        far_plane=far_plane,
        radius_clip=radius_clip,
        eps2d=eps2d,
        sh_degree=sh_degree,
        tile_size=tile_size,
        backgrounds=backgrounds,
        render_mode=render_mode,
        absgrad=absgrad,
        rasterize_mode=rasterize_mode,
    )
    if backend == "torch":
        from .backends.torch import rasterize_torch

        if compositor == "numba" and means.device.type != "cpu":
            compositor = "torch"
        return rasterize_torch(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height, compositor=compositor, **common
        )
    if backend == "gsplat":
        from .backends.gsplat import rasterize_gsplat

        return rasterize_gsplat(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height, packed=packed, **common
        )
    raise ValueError(f"backend must be 'auto', 'torch' or 'gsplat', got {backend!r}")


def _shape(t: Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def _check_tensor(name: str, t: Any, expected: str, ndim: int, last: tuple[int, ...] = ()) -> None:
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {expected}, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor (float32 or float64), got dtype {t.dtype}")
    if t.dim() != ndim or (last and tuple(t.shape[t.dim() - len(last) :]) != last):
        raise ValueError(f"{name} must have shape {expected}, got {_shape(t)}")


def _validate(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    sh_degree: int | None,
    backgrounds: Tensor | None,
    render_mode: str,
    rasterize_mode: str,
    tile_size: int,
    eps2d: float,
    near_plane: float,
    far_plane: float,
) -> None:
    _check_tensor("means", means, "[N, 3]", 2, (3,))
    N = means.shape[0]
    _check_tensor("quats", quats, f"[N, 4] = [{N}, 4]", 2, (4,))
    _check_tensor("scales", scales, f"[N, 3] = [{N}, 3]", 2, (3,))
    _check_tensor("opacities", opacities, f"[N] = [{N}]", 1)
    _check_tensor("viewmats", viewmats, "[C, 4, 4]", 3, (4, 4))
    C = viewmats.shape[0]
    _check_tensor("Ks", Ks, f"[C, 3, 3] = [{C}, 3, 3]", 3, (3, 3))
    for name, t in (("quats", quats), ("scales", scales), ("opacities", opacities)):
        if t.shape[0] != N:
            raise ValueError(f"{name} has {t.shape[0]} rows but means has N={N}: shape {_shape(t)}")
    if Ks.shape[0] != C:
        raise ValueError(f"Ks must have shape [C, 3, 3] = [{C}, 3, 3] to match viewmats, got {_shape(Ks)}")
    if C == 0:
        raise ValueError("viewmats must hold at least one camera, got shape [0, 4, 4]")
    if not (isinstance(width, int) and isinstance(height, int)) or width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive ints, got width={width!r}, height={height!r}")
    if not isinstance(tile_size, int) or tile_size <= 0:
        raise ValueError(f"tile_size must be a positive int, got {tile_size!r}")
    if render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode must be one of {RENDER_MODES}, got {render_mode!r}")
    if rasterize_mode not in ("classic", "antialiased"):
        raise ValueError(f"rasterize_mode must be 'classic' or 'antialiased', got {rasterize_mode!r}")
    if eps2d < 0 or near_plane >= far_plane:
        raise ValueError(f"need eps2d >= 0 and near_plane < far_plane, got {eps2d}, {near_plane}, {far_plane}")

    if sh_degree is None:
        if not isinstance(colors, Tensor) or colors.dim() not in (2, 3):
            got = _shape(colors) if isinstance(colors, Tensor) else type(colors).__name__
            raise ValueError(f"colors must have shape [N, D] or [C, N, D] when sh_degree is None, got {got}")
        _check_tensor("colors", colors, "[N, D] or [C, N, D]", colors.dim())
        lead = (N,) if colors.dim() == 2 else (C, N)
        if tuple(colors.shape[:-1]) != lead or colors.shape[-1] < 1:
            raise ValueError(
                f"colors must have shape [N, D] = [{N}, D] or [C, N, D] = [{C}, {N}, D], got {_shape(colors)}"
            )
    else:
        if not isinstance(sh_degree, int) or not 0 <= sh_degree <= MAX_SH_DEGREE:
            raise ValueError(f"sh_degree must be None or an int in 0..{MAX_SH_DEGREE}, got {sh_degree!r}")
        k = num_sh_bases(sh_degree)
        if not isinstance(colors, Tensor) or colors.dim() not in (3, 4):
            got = _shape(colors) if isinstance(colors, Tensor) else type(colors).__name__
            raise ValueError(f"colors must be SH coefficients [N, K, 3] or [C, N, K, 3] with sh_degree, got {got}")
        _check_tensor("colors", colors, "[N, K, 3] or [C, N, K, 3]", colors.dim(), (3,))
        lead = (N,) if colors.dim() == 3 else (C, N)
        if tuple(colors.shape[:-2]) != lead or colors.shape[-2] < k:
            raise ValueError(
                f"colors must have shape [N, K, 3] = [{N}, >={k}, 3] (or [C, N, K, 3]) for sh_degree={sh_degree}, "
                f"got {_shape(colors)}"
            )
    if backgrounds is not None:
        D = colors.shape[-1]
        _check_tensor("backgrounds", backgrounds, f"[C, D] = [{C}, {D}]", 2)
        if tuple(backgrounds.shape) != (C, D):
            raise ValueError(f"backgrounds must have shape [C, D] = [{C}, {D}], got {_shape(backgrounds)}")

    tensors = {"means": means, "quats": quats, "scales": scales, "opacities": opacities, "colors": colors,
               "viewmats": viewmats, "Ks": Ks}
    if backgrounds is not None:
        tensors["backgrounds"] = backgrounds
    device = means.device
    for name, t in tensors.items():
        if t.device != device:
            raise ValueError(f"{name} is on {t.device} but means is on {device}: move all inputs to one device")
    dtype = means.dtype
    for name, t in tensors.items():
        if t.dtype != dtype:
            raise ValueError(f"{name} has dtype {t.dtype} but means has {dtype}: use one floating dtype")
    with torch.no_grad():
        for name, t in tensors.items():
            if t.numel() and not bool(torch.isfinite(t).all()):
                bad = int((~torch.isfinite(t)).sum())
                raise ValueError(f"{name} holds {bad} non-finite value(s) (NaN or inf); check the parameters")
        if opacities.numel() and (bool((opacities < 0).any()) or bool((opacities > 1).any())):
            raise ValueError("opacities must be post-sigmoid values in [0, 1]")
        if scales.numel() and bool((scales < 0).any()):
            raise ValueError("scales must be linear (exp of log-scales), non-negative")
