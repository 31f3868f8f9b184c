"""Real spherical harmonics up to degree 3, in the basis order of the 3DGS reference code and gsplat.

Constants are the standard real SH normalisation factors (e.g. Sloan, "Stupid Spherical Harmonics
Tricks", 2008); the signs and order follow the INRIA 3DGS implementation so that our PLY files and
gsplat's agree coefficient for coefficient.
"""

from __future__ import annotations

import torch
from torch import Tensor

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)

MAX_SH_DEGREE = 3


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients K for a degree: (degree + 1)^2."""
    return (degree + 1) ** 2


def rgb_to_sh(rgb: Tensor) -> Tensor:
    """DC coefficient whose evaluated colour (plus the 0.5 offset) is ``rgb``."""
    return (rgb - 0.5) / SH_C0


def sh_to_rgb(sh0: Tensor) -> Tensor:
    """Colour of the DC term alone: SH_C0 * sh0 + 0.5."""
    return sh0 * SH_C0 + 0.5


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """Evaluate the SH basis on unit directions.

    Args:
        degree: 0..3.
        dirs: Tensor  # [..., 3], need not be normalised (normalised here).

    Returns:
        Tensor  # [..., (degree+1)^2]
    """
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"sh_degree must be in 0..{MAX_SH_DEGREE}, got {degree}")
    out = [torch.full_like(dirs[..., 0], SH_C0)]
    if degree >= 1:
        d = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        x, y, z = d.unbind(-1)
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
        if degree >= 2:
            xx, yy, zz = x * x, y * y, z * z
            xy, yz, xz = x * y, y * z, x * z
            out += [
                SH_C2[0] * xy,
                SH_C2[1] * yz,
                SH_C2[2] * (2.0 * zz - xx - yy),
                SH_C2[3] * xz,
                SH_C2[4] * (xx - yy),
            ]
            if degree >= 3:
                out += [
                    SH_C3[0] * y * (3.0 * xx - yy),
                    SH_C3[1] * xy * z,
                    SH_C3[2] * y * (4.0 * zz - xx - yy),
                    SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
                    SH_C3[4] * x * (4.0 * zz - xx - yy),
                    SH_C3[5] * z * (xx - yy),
                    SH_C3[6] * x * (xx - 3.0 * yy),
                ]
    return torch.stack(out, dim=-1)


def eval_sh(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Colour from SH coefficients, like ``gsplat.spherical_harmonics`` (no 0.5 offset, no clamp).

    Args:
        degree: SH degree used (0..3); only the first (degree+1)^2 coefficients are read.
        dirs: Tensor  # [..., 3] viewing directions (Gaussian centre minus camera centre)
        coeffs: Tensor  # [..., K, D] with K >= (degree+1)^2

    Returns:
        Tensor  # [..., D]
    """
    k = num_sh_bases(degree)
    if coeffs.shape[-2] < k:
        raise ValueError(f"SH degree {degree} needs {k} coefficients, colors has {coeffs.shape[-2]}")
    basis = sh_basis(degree, dirs)  # [..., k]
    return (basis.unsqueeze(-1) * coeffs[..., :k, :]).sum(dim=-2)
