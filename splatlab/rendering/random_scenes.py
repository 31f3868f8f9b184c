"""Random Gaussian scenes in front of a camera, for tests and benchmarks."""

from __future__ import annotations

import torch
from torch import Tensor


def random_scene(
    n: int,
    width: int,
    height: int,
    *,
    n_cameras: int = 1,
    channels: int = 3,
    sh_degree: int | None = None,
    fov_scale: float = 1.2,
    depth_range: tuple[float, float] = (2.0, 6.0),
    coverage: float = 4.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> dict[str, Tensor]:
    """N Gaussians filling the view frustum of camera 0 between two depths.

    Their size is chosen so that the projected footprints cover the image about ``coverage``
    times, which keeps per-pixel work comparable across N. Cameras 1.. are small translations of
    camera 0. Returns the keyword arguments of :func:`splatlab.rendering.rasterize` (without
    width/height): means, quats, scales (linear), opacities (in [0.05, 0.95]), colors, viewmats, Ks.
    """
    g = torch.Generator().manual_seed(seed)
    z = torch.rand(n, generator=g, dtype=dtype) * (depth_range[1] - depth_range[0]) + depth_range[0]
    x = (torch.rand(n, generator=g, dtype=dtype) - 0.5) * z * fov_scale
    y = (torch.rand(n, generator=g, dtype=dtype) - 0.5) * z * fov_scale * height / width
    means = torch.stack([x, y, z], dim=-1)
    # world area of the frustum slice at the mean depth, shared among n Gaussians, times coverage
    zmean = 0.5 * (depth_range[0] + depth_range[1])
    area = (fov_scale * zmean) ** 2 * height / width
    sigma = (coverage * area / n / (3.33**2 * 3.14159)) ** 0.5
    scales = torch.exp(torch.randn(n, 3, generator=g, dtype=dtype) * 0.3) * sigma
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    opacities = torch.rand(n, generator=g, dtype=dtype) * 0.9 + 0.05
    if sh_degree is None:
        colors = torch.rand(n, channels, generator=g, dtype=dtype)
    else:
        k = (sh_degree + 1) ** 2
        colors = torch.randn(n, k, 3, generator=g, dtype=dtype) * 0.3
    f = width / fov_scale
    K = torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]], dtype=dtype)
    viewmats = torch.eye(4, dtype=dtype).repeat(n_cameras, 1, 1)
    for c in range(1, n_cameras):
        viewmats[c, :3, 3] = torch.randn(3, generator=g, dtype=dtype) * 0.1
    return {
        "means": means,
        "quats": quats,
        "scales": scales,
        "opacities": opacities,
        "colors": colors,
        "viewmats": viewmats,
        "Ks": K[None].repeat(n_cameras, 1, 1),
    }
