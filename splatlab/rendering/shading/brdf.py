"""The split-sum BRDF lookup table (Karis 2013), computed here instead of shipped as a binary.

For a GGX microfacet BRDF with Schlick Fresnel ``F = F0 + (1 - F0)(1 - v.h)^5`` and Smith-Schlick
visibility with ``k = alpha / 2`` (``alpha = roughness^2``, the image-based-lighting choice of
Karis), the cosine-weighted directional albedo splits as

    integral f(l, v) (n . l) dl = F0 * A(n.v, roughness) + B(n.v, roughness).

:func:`split_sum_lut` tabulates (A, B) by importance sampling GGX with a Hammersley sequence (the
same estimator as nvdiffrec's ``bsdf_256_256.bin``), :func:`lut_lookup` reads it bilinearly and is
differentiable in both coordinates.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["smith_g1", "split_sum_lut", "lut_lookup", "hammersley"]


def hammersley(n: int) -> np.ndarray:
    """[n, 2] low-discrepancy points in [0, 1)^2 (i / n, radical inverse base 2)."""
    i = np.arange(n, dtype=np.uint64)
    b = i.copy()
    b = ((b << np.uint64(16)) | (b >> np.uint64(16))) & np.uint64(0xFFFFFFFF)
    b = ((b & np.uint64(0x55555555)) << np.uint64(1)) | (
        (b & np.uint64(0xAAAAAAAA)) >> np.uint64(1)
    )
    b = ((b & np.uint64(0x33333333)) << np.uint64(2)) | (
        (b & np.uint64(0xCCCCCCCC)) >> np.uint64(2)
    )
    b = ((b & np.uint64(0x0F0F0F0F)) << np.uint64(4)) | (
        (b & np.uint64(0xF0F0F0F0)) >> np.uint64(4)
    )
    b = ((b & np.uint64(0x00FF00FF)) << np.uint64(8)) | (
        (b & np.uint64(0xFF00FF00)) >> np.uint64(8)
    )
    return np.stack([(i.astype(np.float64) + 0.5) / n, b.astype(np.float64) / 2.0**32], axis=1)


def smith_g1(cos: np.ndarray | Tensor, roughness: np.ndarray | Tensor | float):  # noqa: ANN201
    """Schlick-GGX masking with k = roughness^2 / 2 (Karis' IBL remapping)."""
    k = roughness * roughness / 2.0
    return cos / (cos * (1.0 - k) + k)


@lru_cache(maxsize=4)
def _lut_numpy(size: int, samples: int) -> np.ndarray:
    nv = (np.arange(size) + 0.5) / size  # columns
    rough = (np.arange(size) + 0.5) / size  # rows
    xi = hammersley(samples)
    out = np.zeros((size, size, 2))
    for ri, r in enumerate(rough):
        a = r * r
        phi = 2.0 * math.pi * xi[:, 0]
        cos_h = np.sqrt((1.0 - xi[:, 1]) / (1.0 + (a * a - 1.0) * xi[:, 1]))  # GGX-distributed
        sin_h = np.sqrt(1.0 - cos_h**2)
        h = np.stack([sin_h * np.cos(phi), sin_h * np.sin(phi), cos_h], 1)  # [S, 3], n = z
        v = np.stack([np.sqrt(1.0 - nv**2), np.zeros_like(nv), nv], 1)  # [size, 3]
        vh = v @ h.T  # [size, S]
        l_z = 2.0 * vh * h[None, :, 2] - v[:, 2:3]  # (2 (v.h) h - v) . n
        ok = (l_z > 0) & (vh > 0)
        nl = np.clip(l_z, 0.0, 1.0)
        g = smith_g1(nv[:, None], r) * smith_g1(nl, r)
        gvis = np.where(ok, g * vh / (h[None, :, 2] * nv[:, None]), 0.0)
        fc = (1.0 - np.clip(vh, 0.0, 1.0)) ** 5
        out[ri, :, 0] = ((1.0 - fc) * gvis).mean(1)
        out[ri, :, 1] = (fc * gvis).mean(1)
    return out


def split_sum_lut(size: int = 32, samples: int = 1024) -> Tensor:
    """The (A, B) table: Tensor  # [size (roughness rows), size (n.v columns), 2] float32.

    Cell (i, j) holds the integrals at roughness (i + 0.5) / size and n.v = (j + 0.5) / size.
    """
    if size < 2 or samples < 16:
        raise ValueError(f"LUT size must be >= 2 and samples >= 16, got {size}, {samples}")
    return torch.from_numpy(_lut_numpy(int(size), int(samples)).astype(np.float32))


def lut_lookup(lut: Tensor, nv: Tensor, roughness: Tensor) -> Tensor:
    """Bilinear (A, B) at (n.v, roughness); clamps at the table's border cells.

    Args:
        lut: Tensor  # [S, S, 2] from :func:`split_sum_lut`
        nv: Tensor  # [M] in [0, 1]
        roughness: Tensor  # [M] in [0, 1]

    Returns:
        Tensor  # [M, 2]
    """
    img = lut.permute(2, 0, 1)[None].to(nv)  # [1, 2, S_r, S_nv]
    grid = torch.stack([nv.reshape(-1) * 2.0 - 1.0, roughness.reshape(-1) * 2.0 - 1.0], -1)
    out = F.grid_sample(
        img, grid[None, None], mode="bilinear", padding_mode="border", align_corners=False
    )
    return out[0, :, 0].T  # [M, 2]
