"""Generated images as scene assets: an RGBA image becomes a textured card of Gaussians, fitted
by a short optimisation through splatlab's own rasterizer, then placed in a scene.

Card frame (before placement): the card lies in the plane z = 0, centred at the origin, height 1
and width = image aspect; x to the right and y DOWN along the image (pixel (u, v) -> x ~ u,
y ~ v), so an OpenCV camera at (0, 0, -d) with the identity rotation sees the image upright. The
fit renders the card from that front camera and matches premultiplied colour and alpha.

Placement: ``x_world = position + scale * R @ x_card`` (:func:`place_asset`, through
:func:`splatlab.scene.gaussians.transform_gaussians`). :func:`rotation_facing_camera` gives the R
that makes the card face a camera as it faced the fitting camera (the viewer's "place where I
click" uses it with the current view).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ...errors import DataError
from ...rendering.rasterize import rasterize
from ...rendering.sh import SH_C0
from ...scene.gaussians import transform_gaussians

__all__ = [
    "CardFit",
    "alpha_from_background",
    "rgba_from_image",
    "front_camera",
    "fit_card",
    "render_card",
    "rotation_from_euler",
    "rotation_facing_camera",
    "place_asset",
    "merge_scenes",
]


def alpha_from_background(
    rgb: np.ndarray, key: tuple[float, float, float] | None = None, tolerance: float = 0.08, softness: float = 0.06
) -> np.ndarray:
    """Alpha by keying out a background colour.

    Args:
        rgb: uint8 [H, W, 3] (or float in [0, 1]).
        key: background colour in [0, 1]; None: the median of the image's border pixels.
        tolerance: colour distance (RGB, normalised to [0, 1]) below which a pixel is background.
        softness: width of the linear ramp from transparent to opaque above ``tolerance``.

    Returns:
        alpha in [0, 1], float32 [H, W].
    """
    x = _as_float(rgb)
    if key is None:
        border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]], axis=0)
        key_arr = np.median(border, axis=0)
    else:
        key_arr = np.asarray(key, dtype=np.float32)
    d = np.linalg.norm(x - key_arr, axis=-1) / math.sqrt(3.0)
    return np.clip((d - tolerance) / max(softness, 1e-6), 0.0, 1.0).astype(np.float32)


def _as_float(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    return a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)


def rgba_from_image(image: np.ndarray, mask: np.ndarray | None = None, **key_options: float) -> np.ndarray:
    """float32 [H, W, 4] in [0, 1] from an RGB(A) image: its own alpha channel if it has one,
    else ``mask`` ([H, W], bool or [0, 1]), else :func:`alpha_from_background`."""
    x = _as_float(image)
    if x.ndim != 3 or x.shape[2] not in (3, 4):
        raise DataError(f"expected an RGB or RGBA image [H, W, 3|4], got shape {x.shape}")
    if x.shape[2] == 4 and mask is None:
        return x
    rgb = x[..., :3]
    if mask is not None:
        m = np.asarray(mask, dtype=np.float32)
        if m.shape != rgb.shape[:2]:
            raise DataError(f"mask shape {m.shape} does not match the image's {rgb.shape[:2]}")
        alpha = np.clip(m / 255.0 if np.asarray(mask).dtype == np.uint8 else m, 0.0, 1.0)
    else:
        alpha = alpha_from_background(rgb, **key_options)
    return np.concatenate([rgb, alpha[..., None]], axis=-1).astype(np.float32)


def front_camera(height: int, width: int, distance: float = 2.0) -> tuple[Tensor, Tensor]:
    """The fitting camera: OpenCV pose at (0, 0, -distance) looking along +z, focal length such
    that the card (height 1, width = width / height) fills the image exactly.
    Returns (viewmat [4, 4], K [3, 3])."""
    f = height * distance  # card height 1 spans `height` pixels at depth `distance`
    viewmat = torch.eye(4)
    viewmat[2, 3] = distance
    K = torch.tensor([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
    return viewmat, K


@dataclass
class CardFit:
    """A fitted card. params: the Gaussians (card frame, INRIA layout, sh degree 0); psnr_db:
    front render vs the image, both composited on black; alpha_psnr_db: rendered vs target
    alpha; steps, seconds: the optimisation."""

    params: torch.nn.ParameterDict
    psnr_db: float
    alpha_psnr_db: float
    steps: int
    seconds: float


def _block_mean(x: np.ndarray, s: int) -> np.ndarray:
    h, w = x.shape[0] // s * s, x.shape[1] // s * s
    x = x[:h, :w]
    return x.reshape(h // s, s, w // s, s, *x.shape[2:]).mean(axis=(1, 3))


def render_card(params: Mapping[str, Tensor], height: int, width: int) -> tuple[Tensor, Tensor]:
    """Front render of a card-frame scene on black. Returns (rgb [H, W, 3], alpha [H, W])."""
    viewmat, K = front_camera(height, width)
    colors = torch.clamp(params["sh0"][:, 0, :] * SH_C0 + 0.5, min=0.0)
    img, alpha, _ = rasterize(
        params["means"], params["quats"], torch.exp(params["scales"]), torch.sigmoid(params["opacities"]),
        colors, viewmat[None], K[None], width, height,
    )
    return img[0], alpha[0, ..., 0]


def fit_card(
    rgba: np.ndarray,
    cell: int = 1,
    steps: int = 150,
    lr: float = 0.05,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
) -> CardFit:
    """Fit a card of Gaussians to an RGBA image.

    Args:
        rgba: float [H, W, 4] in [0, 1] (see :func:`rgba_from_image`).
        cell: one Gaussian per ``cell x cell`` pixels, on a regular grid.
        steps: Adam iterations (colour, opacity, in-plane position and scale; flat in z).
        lr: base learning rate (colours, opacities; positions and scales get scaled rates).
        seed: seeds the small jitter of the initial positions.

    Initialisation: one Gaussian per grid cell whose block holds any alpha > 0.02, with that
    block's mean colour (un-premultiplied) and alpha, isotropic in-plane std 0.6 cell, z std
    1e-3 cell. Loss: MSE of premultiplied colour rendered on black plus MSE of alpha.
    """
    import time

    x = np.asarray(rgba, dtype=np.float32)
    if x.ndim != 3 or x.shape[2] != 4:
        raise DataError(f"fit_card needs an RGBA image [H, W, 4], got shape {x.shape}")
    h, w = x.shape[:2]
    if min(h, w) < 2 * cell:
        raise DataError(f"image {w}x{h} is too small for cell={cell}")
    t0 = time.perf_counter()
    rgb, alpha = x[..., :3], x[..., 3]
    a_blk = _block_mean(alpha, cell)  # [gh, gw]
    a_max = _block_mean(alpha[..., None], 1)[..., 0]
    keep_blk = _block_mean((a_max > 0.02).astype(np.float32), cell) > 0
    if not keep_blk.any():
        raise DataError("the asset image is fully transparent (alpha <= 0.02 everywhere); check the mask or key")
    c_blk = _block_mean(rgb * alpha[..., None], cell) / np.maximum(a_blk[..., None], 1e-3)
    gh, gw = a_blk.shape
    iy, ix = np.nonzero(keep_blk)
    px = 1.0 / h  # card units per pixel (height 1)
    gen = torch.Generator().manual_seed(seed)
    n = len(iy)
    cx = torch.from_numpy(((ix + 0.5) * cell - w / 2.0) * px).float()
    cy = torch.from_numpy(((iy + 0.5) * cell - h / 2.0) * px).float()
    jitter = (torch.rand((n, 2), generator=gen) - 0.5) * 0.1 * cell * px
    means = torch.stack([cx, cy, torch.zeros(n)], -1)
    means[:, :2] += jitter
    s_xy = math.log(0.6 * cell * px)
    scales = torch.tensor([s_xy, s_xy, math.log(1e-3 * cell * px)]).repeat(n, 1)
    a0 = torch.from_numpy(np.clip(a_blk[iy, ix], 0.02, 0.98)).float()
    col = torch.from_numpy(np.clip(c_blk[iy, ix], 0.0, 1.0)).float()
    leaves = {
        "means": means.requires_grad_(True),
        "scales": scales.requires_grad_(True),
        "quats": torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1),
        "opacities": torch.logit(a0).requires_grad_(True),
        "sh0": ((col - 0.5) / SH_C0)[:, None, :].requires_grad_(True),
    }
    opt = torch.optim.Adam(
        [
            {"params": [leaves["sh0"]], "lr": lr / SH_C0 * 0.25},
            {"params": [leaves["opacities"]], "lr": lr * 2.5},
            {"params": [leaves["means"]], "lr": lr * 0.05 * cell * px},
            {"params": [leaves["scales"]], "lr": lr * 0.25},
        ]
    )
    tgt_rgb = torch.from_numpy(rgb * alpha[..., None])
    tgt_a = torch.from_numpy(alpha)
    for i in range(steps):
        # coplanar Gaussians are composited in an order set by float noise in their depths, which
        # changes with the viewpoint; a fresh random depth order every step (a jitter far below
        # any visible offset) makes the fit independent of the order
        jz = torch.zeros_like(leaves["means"])
        jz[:, 2] = torch.randn((n,), generator=gen) * (1e-4 * px)
        img, a = render_card({**leaves, "means": leaves["means"] + jz}, h, w)
        loss = torch.mean((img - tgt_rgb) ** 2) + torch.mean((a - tgt_a) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():  # keep the card flat: no z motion, no z growth
            leaves["means"].grad[:, 2] = 0
            leaves["scales"].grad[:, 2] = 0
        opt.step()
        if progress is not None and (i % 10 == 0 or i == steps - 1):
            progress((i + 1) / steps, f"fitting the card: step {i + 1}/{steps}")
    with torch.no_grad():
        img, a = render_card(leaves, h, w)
        mse_rgb = float(torch.mean((img.clamp(0, 1) - tgt_rgb) ** 2))
        mse_a = float(torch.mean((a - tgt_a) ** 2))
    params = torch.nn.ParameterDict(
        [
            (k, torch.nn.Parameter(v.detach().clone(), requires_grad=False))
            for k, v in (
                ("means", leaves["means"]),
                ("scales", leaves["scales"]),
                ("quats", leaves["quats"]),
                ("opacities", leaves["opacities"]),
                ("sh0", leaves["sh0"]),
                ("shN", torch.zeros((n, 0, 3))),
            )
        ]
    )
    return CardFit(
        params=params,
        psnr_db=10 * math.log10(1.0 / max(mse_rgb, 1e-12)),
        alpha_psnr_db=10 * math.log10(1.0 / max(mse_a, 1e-12)),
        steps=steps,
        seconds=time.perf_counter() - t0,
    )


def rotation_from_euler(yaw_deg: float = 0.0, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """R = Ry(yaw) @ Rx(pitch) @ Rz(roll) (degrees; y is the card's vertical axis, x its
    horizontal, z its normal). Returns float64 [3, 3]."""
    y, p, r = (math.radians(v) for v in (yaw_deg, pitch_deg, roll_deg))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return ry @ rx @ rz


def rotation_facing_camera(viewmat: np.ndarray | Tensor) -> np.ndarray:
    """The card rotation that makes it face the camera ``viewmat`` ([4, 4] OpenCV world-to-
    camera) upright, as it faced the fitting camera: the camera-to-world rotation. [3, 3]"""
    v = np.asarray(viewmat.detach().cpu() if isinstance(viewmat, Tensor) else viewmat, dtype=np.float64)
    return v[:3, :3].T.copy()


def place_asset(
    params: Mapping[str, Tensor],
    position: tuple[float, float, float] | np.ndarray,
    scale: float = 1.0,
    rotation: np.ndarray | None = None,
) -> torch.nn.ParameterDict:
    """The card moved into the scene: ``x = position + scale * R @ x_card`` (R: [3, 3]
    rotation, default identity; scale: the card's height in scene units)."""
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    R = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    if R.shape != (3, 3) or not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
        raise ValueError("rotation must be a proper 3x3 rotation matrix")
    T = np.eye(4)
    T[:3, :3] = scale * R
    T[:3, 3] = np.asarray(position, dtype=np.float64)
    return transform_gaussians(params, T)


def merge_scenes(base: Mapping[str, Tensor] | None, extra: Mapping[str, Tensor]) -> torch.nn.ParameterDict:
    """``base`` followed by ``extra`` (an asset) as one scene. The lower SH degree is padded with
    zero coefficients; extras (keys beyond the six) present in only one scene are dropped."""
    if base is None:
        return torch.nn.ParameterDict([(k, torch.nn.Parameter(v.detach().clone(), requires_grad=False)) for k, v in extra.items()])
    kb, ke = base["shN"].shape[1], extra["shN"].shape[1]
    k = max(kb, ke)

    def pad(v: Tensor) -> Tensor:
        return torch.cat([v, v.new_zeros((v.shape[0], k - v.shape[1], 3))], 1) if v.shape[1] < k else v

    keys = [key for key in base.keys() if key in extra]
    out = []
    for key in keys:
        a, b = base[key].detach().cpu().float(), extra[key].detach().cpu().float()
        if key == "shN":
            a, b = pad(a), pad(b)
        if a.shape[1:] != b.shape[1:]:
            continue
        out.append((key, torch.nn.Parameter(torch.cat([a, b], 0), requires_grad=False)))
    return torch.nn.ParameterDict(out)
