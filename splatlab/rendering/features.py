"""Feature-field decoders (Feature 3DGS's "speed-up module") and feature visualisation.

Feature 3DGS (Zhou et al., CVPR 2024) stores a low-dimensional feature ``f_i`` (d channels) on
every Gaussian, rasterizes it like colour and lifts the rendered map to the teacher's dimension D
with a 1x1 convolution. A 1x1 convolution is an affine map per pixel, so decoding the rendered
map and rendering decoded features agree up to the bias weighted by the accumulated alpha::

    decode(sum_i w_i f_i) = W sum_i w_i f_i + b = sum_i w_i (W f_i + b) + (1 - sum_i w_i) b

which is what lets :func:`FeatureDecoder.decode_gaussians` score every Gaussian once for 3D
queries (``splatlab.scene.query``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FeatureDecoder(nn.Module):
    """The 1x1-conv speed-up decoder: d rendered channels -> D teacher channels.

    Args:
        in_dim: d, the per-Gaussian feature width (any positive int).
        out_dim: D, the teacher's feature width (512 for LSeg/CLIP ViT-B, 256 for SAM).
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        if in_dim <= 0 or out_dim <= 0:
            raise ValueError(
                f"FeatureDecoder needs positive dims, got in_dim={in_dim}, out_dim={out_dim}"
            )
        self.in_dim = int(in_dim)
        self.out_dim = int(out_dim)
        self.conv = nn.Conv2d(self.in_dim, self.out_dim, kernel_size=1)

    def forward(self, feat: Tensor) -> Tensor:
        """feat: [B, d, H, W] -> [B, D, H, W]."""
        if feat.dim() != 4 or feat.shape[1] != self.in_dim:
            raise ValueError(
                f"FeatureDecoder expects [B, {self.in_dim}, H, W], got {list(feat.shape)}"
            )
        return self.conv(feat)

    def decode_hwc(self, feat: Tensor) -> Tensor:
        """feat: [..., H, W, d] (the rasterizer's layout) -> [..., D, H, W] (channels first)."""
        lead = feat.shape[:-3]
        h, w, d = feat.shape[-3:]
        x = feat.reshape(-1, h, w, d).permute(0, 3, 1, 2)
        return self(x).reshape(*lead, self.out_dim, h, w)

    def decode_gaussians(self, features: Tensor) -> Tensor:
        """Per-Gaussian decoding, the same affine map as the 1x1 conv. features: [N, d] -> [N, D]."""
        if features.dim() != 2 or features.shape[1] != self.in_dim:
            raise ValueError(
                f"decode_gaussians expects [N, {self.in_dim}], got {list(features.shape)}"
            )
        weight = self.conv.weight.reshape(self.out_dim, self.in_dim)
        return features @ weight.T + self.conv.bias


def pca_basis(
    features: Tensor, k: int = 3, max_samples: int = 20000, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Principal axes of a cloud of feature vectors.

    Args:
        features: [M, C] samples (rows); at most ``max_samples`` random rows are used.
        k: number of axes.

    Returns:
        mean: [C], axes: [C, k] (orthonormal columns, largest variance first).
    """
    x = features.detach().reshape(-1, features.shape[-1]).float()
    if x.shape[0] > max_samples:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        x = x[torch.randperm(x.shape[0], generator=gen)[:max_samples].to(x.device)]
    mean = x.mean(dim=0)
    k = min(k, x.shape[1])
    _, _, v = torch.pca_lowrank(x - mean, q=k, center=False)
    return mean, v[:, :k]


def pca_colors(
    features: Tensor,  # [H, W, C]
    basis: tuple[Tensor, Tensor] | None = None,
    alpha: Tensor | None = None,  # [H, W, 1]
) -> Tensor:
    """The "features (PCA)" view: project onto 3 principal axes and map each to [0, 1].

    The axes come from ``basis`` (so successive frames share colours) or from the image itself.
    Each axis is scaled by its 1st and 99th percentiles; pixels with ``alpha`` < 0.05 are black.
    Returns [H, W, 3] in [0, 1].
    """
    h, w, c = features.shape
    flat = features.detach().reshape(-1, c).float()
    mean, axes = pca_basis(flat) if basis is None else basis
    proj = (flat - mean) @ axes  # [HW, k]
    if proj.shape[1] < 3:
        proj = torch.cat([proj, proj.new_zeros(proj.shape[0], 3 - proj.shape[1])], dim=1)
    lo = torch.quantile(proj[: min(len(proj), 100000)], 0.01, dim=0)
    hi = torch.quantile(proj[: min(len(proj), 100000)], 0.99, dim=0)
    rgb = ((proj - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1).reshape(h, w, 3)
    if alpha is not None:
        rgb = rgb * (alpha.reshape(h, w, 1) >= 0.05)
    return rgb
