"""The D4 features: the log-magnitude 2D DCT of each colour channel.

D4 (Hooda et al., WACV 2024; official code nmangaokar/wacv_24_d4, ``transforms/image_transforms.py``)
feeds its detectors ``log(|DCT2(x)| + eps)`` per channel, standardised per coefficient with the mean
and variance of the training set. Two implementations of the same DCT:

- :func:`dct2_numpy` / :func:`log_dct_numpy`: ``scipy.fft.dctn(type=2, norm="ortho")`` over the two
  image axes (the reference; used for the training statistics);
- :func:`dct2` / :func:`log_dct`: the same orthonormal DCT-II as two matrix products in torch
  (``C_H @ x @ C_W^T``), so gradients flow from the detector back to the pixels (white-box attacks,
  the C&W saliency).

Choices of ours: the orthonormal DCT (the official ``torch_dct.dct_2d`` is unnormalised; the two
differ by a constant factor per coefficient, which the standardisation removes), and
``eps = 1e-4`` instead of the official ``1e-12``: for pixels in [0, 1] the 8-bit quantisation noise
of an orthonormal coefficient is ~1e-3, so 1e-4 changes no real coefficient but keeps float32
round-off of a flat region (1e-8 in torch, 1e-17 in scipy) from turning into log values of -18 vs -39.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

__all__ = ["LOG_EPS", "dct_matrix", "dct2", "log_dct", "dct2_numpy", "log_dct_numpy"]

LOG_EPS = 1e-4


@lru_cache(maxsize=8)
def _dct_matrix_f64(n: int) -> Tensor:
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    c = torch.cos(math.pi * (2 * i + 1) * k / (2 * n))
    scale = torch.full((n, 1), math.sqrt(2.0 / n), dtype=torch.float64)
    scale[0, 0] = math.sqrt(1.0 / n)
    return c * scale


def dct_matrix(
    n: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> Tensor:
    """The orthonormal DCT-II matrix ``C`` [n, n]: ``C[k, i] = s_k cos(pi (2 i + 1) k / (2 n))``,
    ``s_0 = sqrt(1/n)``, ``s_k = sqrt(2/n)``; ``C @ v`` equals ``scipy.fft.dct(v, norm="ortho")``."""
    if n < 1:
        raise ValueError(f"DCT size must be >= 1, got {n}")
    return _dct_matrix_f64(int(n)).to(dtype=dtype, device=device)


def dct2(x: Tensor) -> Tensor:
    """Orthonormal 2D DCT-II over the last two axes, differentiable.

    x: Tensor  # [..., H, W]
    returns: Tensor  # [..., H, W], ``C_H @ x @ C_W^T``
    """
    h, w = x.shape[-2], x.shape[-1]
    ch = dct_matrix(h, x.dtype, x.device)
    cw = ch if w == h else dct_matrix(w, x.dtype, x.device)
    return ch @ x @ cw.T


def log_dct(x: Tensor, eps: float = LOG_EPS) -> Tensor:
    """``log(|dct2(x)| + eps)``: the D4 feature of images in [0, 1].

    x: Tensor  # [B, 3, H, W]
    returns: Tensor  # [B, 3, H, W]
    """
    return torch.log(dct2(x).abs() + eps)


def dct2_numpy(x: np.ndarray) -> np.ndarray:
    """``scipy.fft.dctn(x, type=2, norm="ortho")`` over the last two axes (float64)."""
    from scipy.fft import dctn

    return dctn(np.asarray(x, dtype=np.float64), type=2, norm="ortho", axes=(-2, -1))


def log_dct_numpy(x: np.ndarray, eps: float = LOG_EPS) -> np.ndarray:
    """``log(|dctn(x)| + eps)`` (float64) of images [..., H, W] (channels first)."""
    return np.log(np.abs(dct2_numpy(x)) + eps)
