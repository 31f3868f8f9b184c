"""Placing a fitted asset card in a scene: where a click's ray meets the scene, the similarity
that puts the card there (scale, yaw about the scene's up axis, facing the camera), and the
merge of the card's Gaussians into the scene. Pure functions over Gaussian dicts; the
``swiftbrush`` panel calls them from its "Place by click" controls.

Card frame (see :mod:`splatlab.plugins.generate.asset`): the card lies in z = 0, centred at the
origin, height 1, x right and y DOWN along the image, seen upright by an OpenCV camera on -z
looking along +z. Placement::

    x_world = hit + scale * R @ (x_card - anchor)

with ``R`` from :func:`card_rotation` (the card's x / y / z axes = the camera's right / down /
forward, optionally kept upright: y = -up) and ``anchor`` the card point that lands on the hit:
its centre or the middle of its bottom edge (so a card placed on a floor stands on it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ...errors import DataError
from ...rendering.rasterize import rasterize
from ...scene.gaussians import REQUIRED_KEYS, transform_gaussians

__all__ = [
    "Anchor",
    "RayHit",
    "ANCHORS",
    "axis_rotation",
    "card_rotation",
    "placement_transform",
    "place_card",
    "merge_gaussians",
    "ray_camera",
    "ray_hit",
    "fallback_depth",
]

Anchor = Literal["center", "bottom"]
ANCHORS: dict[str, tuple[float, float, float]] = {
    "center": (0.0, 0.0, 0.0),
    "bottom": (0.0, 0.5, 0.0),  # y is down in the card frame: the bottom edge is at y = +0.5
}


def _unit(v: np.ndarray | tuple[float, float, float], what: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    n = float(np.linalg.norm(a)) if a.shape == (3,) else 0.0
    if not (n > 1e-12 and math.isfinite(n)):
        raise DataError(f"{what} must be a finite non-zero 3-vector, got {a.tolist()}")
    return a / n


def axis_rotation(axis: np.ndarray | tuple[float, float, float], angle_deg: float) -> np.ndarray:
    """Rotation by ``angle_deg`` (right-handed) about the unit ``axis`` (Rodrigues). [3, 3]"""
    k = _unit(axis, "rotation axis")
    a = math.radians(angle_deg)
    K = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(a) * K + (1.0 - math.cos(a)) * (K @ K)


def card_rotation(
    viewmat: np.ndarray | Tensor,
    up: np.ndarray | tuple[float, float, float] | None = None,
    yaw_deg: float = 0.0,
    upright: bool = True,
) -> np.ndarray:
    """The card's rotation R (card frame -> world) facing the camera ``viewmat``.

    Args:
        viewmat: the camera, [4, 4] OpenCV world-to-camera.
        up: the scene's up axis (world); None: the camera's up (-y of its image).
        yaw_deg: then a turn about ``up`` by this angle (right-handed), degrees.
        upright: keep the card vertical: its y axis is -up and its normal the camera's view
            direction made horizontal. False: the card lies in a plane parallel to the image
            (its axes are the camera's). A camera looking straight along ``up`` falls back to
            False.

    Returns:
        float64 [3, 3], a proper rotation.
    """
    v = np.asarray(viewmat.detach().cpu() if isinstance(viewmat, Tensor) else viewmat, dtype=np.float64)
    if v.shape != (4, 4):
        raise DataError(f"viewmat must be [4, 4], got {v.shape}")
    c2w = v[:3, :3].T  # columns: the camera's right, down, forward in world coordinates
    up_v = -c2w[:, 1] if up is None else _unit(up, "up")
    R = c2w.copy()
    if upright:
        fwd = c2w[:, 2] - float(c2w[:, 2] @ up_v) * up_v
        if np.linalg.norm(fwd) > 1e-6:
            z = fwd / np.linalg.norm(fwd)
            y = -up_v
            R = np.stack([np.cross(y, z), y, z], axis=1)
    if yaw_deg:
        R = axis_rotation(up_v, yaw_deg) @ R
    return R


def placement_transform(
    position: np.ndarray | tuple[float, float, float],
    scale: float,
    rotation: np.ndarray,
    anchor: Anchor = "center",
) -> np.ndarray:
    """The similarity card frame -> world: ``x -> position + scale * R @ (x - anchor)``. [4, 4]"""
    if not (scale > 0 and math.isfinite(scale)):
        raise DataError(f"the card's scale must be a positive number, got {scale}")
    if anchor not in ANCHORS:
        raise DataError(f"anchor must be one of {sorted(ANCHORS)}, got {anchor!r}")
    R = np.asarray(rotation, dtype=np.float64)
    if R.shape != (3, 3) or not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
        raise DataError("rotation must be a proper 3x3 rotation matrix")
    p = np.asarray(position, dtype=np.float64).reshape(3)
    if not np.isfinite(p).all():
        raise DataError(f"the card's position must be finite, got {p.tolist()}")
    T = np.eye(4)
    T[:3, :3] = scale * R
    T[:3, 3] = p - scale * R @ np.asarray(ANCHORS[anchor])
    return T


def place_card(
    card: Mapping[str, Tensor],
    position: np.ndarray | tuple[float, float, float],
    scale: float,
    rotation: np.ndarray,
    anchor: Anchor = "center",
) -> torch.nn.ParameterDict:
    """The card's Gaussians (card frame) moved into the scene by :func:`placement_transform`:
    means mapped, log-scales shifted by log(scale), quaternions composed with R (float64
    arithmetic, :func:`splatlab.scene.gaussians.transform_gaussians`)."""
    return transform_gaussians(card, placement_transform(position, scale, rotation, anchor))


def merge_gaussians(base: Mapping[str, Tensor] | None, extra: Mapping[str, Tensor]) -> torch.nn.ParameterDict:
    """``base`` followed by ``extra`` as one scene (on ``base``'s device, float32).

    The six INRIA keys are required in both. ``shN`` of the lower SH degree is padded with
    zero coefficients; an extra key of ``base`` (features, roughness ...) that ``extra`` lacks
    is padded with zeros for ``extra``'s Gaussians, so the scene keeps its channels; keys only
    ``extra`` has are dropped. DataError when a shared key's trailing shapes differ.
    Returns a ParameterDict with N_base + N_extra rows per key (no gradients)."""

    def nograd(d: Mapping[str, Tensor]) -> torch.nn.ParameterDict:
        return torch.nn.ParameterDict(
            [(k, torch.nn.Parameter(v.detach().clone().float(), requires_grad=False)) for k, v in d.items()]
        )

    for who, d in (("base", base), ("asset", extra)):
        if d is not None and any(k not in d for k in REQUIRED_KEYS):
            raise DataError(f"the {who} scene lacks {[k for k in REQUIRED_KEYS if k not in d]}")
    if base is None:
        return nograd(extra)
    device = base["means"].device
    n_extra = int(extra["means"].shape[0])
    out = []
    for key, value in base.items():
        a = value.detach().float()
        if key in extra:
            b = extra[key].detach().to(device).float()
        else:
            b = a.new_zeros((n_extra, *a.shape[1:]))
        if key == "shN" and a.shape[1] != b.shape[1]:
            k = max(a.shape[1], b.shape[1])
            a = torch.nn.functional.pad(a, (0, 0, 0, k - a.shape[1]))
            b = torch.nn.functional.pad(b, (0, 0, 0, k - b.shape[1]))
        if a.shape[1:] != b.shape[1:]:
            raise DataError(
                f"cannot merge {key!r}: the scene has shape {tuple(a.shape[1:])} per Gaussian, "
                f"the asset {tuple(b.shape[1:])}"
            )
        out.append((key, torch.nn.Parameter(torch.cat([a, b], 0), requires_grad=False)))
    return torch.nn.ParameterDict(out)


@dataclass
class RayHit:
    """Where a ray meets the scene: point [3] (world), depth (distance along the unit ray) and
    the accumulated opacity of the scene along the ray (0..1)."""

    point: np.ndarray
    depth: float
    alpha: float


def ray_camera(
    origin: np.ndarray | tuple[float, float, float],
    direction: np.ndarray | tuple[float, float, float],
    focal_px: float,
) -> tuple[Tensor, Tensor]:
    """A 1 x 1 pixel pinhole camera at ``origin`` whose optical axis is the ray, with focal
    length ``focal_px`` (pixels), so its pixel covers what one pixel of a view with that focal
    length covers. Returns (viewmat [4, 4] OpenCV world-to-camera, K [3, 3]), float32."""
    o = np.asarray(origin, dtype=np.float64).reshape(3)
    z = _unit(direction, "ray direction")
    helper = np.array([0.0, 0.0, 1.0]) if abs(z[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)  # x, y, z right-handed: x cross y = z
    R_wc = np.stack([x, y, z], axis=0)
    viewmat = np.eye(4)
    viewmat[:3, :3] = R_wc
    viewmat[:3, 3] = -R_wc @ o
    K = np.array([[focal_px, 0.0, 0.5], [0.0, focal_px, 0.5], [0.0, 0.0, 1.0]])
    return torch.from_numpy(viewmat).float(), torch.from_numpy(K).float()


def ray_hit(
    params: Mapping[str, Tensor],
    origin: np.ndarray | tuple[float, float, float],
    direction: np.ndarray | tuple[float, float, float],
    focal_px: float = 1000.0,
    min_alpha: float = 0.5,
    near: float = 1e-4,
) -> RayHit | None:
    """The scene's surface under a click: the expected depth of the Gaussians along the ray,
    rendered by splatlab's rasterizer into the one pixel of :func:`ray_camera` (the same
    projection, EWA filter and compositing as the view the click came from).

    Args:
        params: the scene (means [N, 3], quats [N, 4], scales [N, 3] log, opacities [N] logit).
        origin, direction: the ray (world); direction need not be unit length.
        focal_px: focal length of the view in pixels (a pixel's footprint).
        min_alpha: below this accumulated opacity along the ray it is a miss.
        near: Gaussians closer than this to the origin along the ray are ignored.

    Returns:
        a :class:`RayHit`, or None when the ray meets less than ``min_alpha`` of opacity.
    """
    if not (focal_px > 0 and math.isfinite(focal_px)):
        raise DataError(f"focal_px must be positive, got {focal_px}")
    n = int(params["means"].shape[0])
    if n == 0:
        return None
    viewmat, K = ray_camera(origin, direction, focal_px)
    dev = params["means"].device
    with torch.no_grad():
        means = params["means"].detach().float()
        scales = torch.exp(params["scales"].detach().float())
        # only Gaussians whose 3-sigma footprint (with the 0.3 px^2 filter) can reach the pixel
        # matter; dropping the rest first makes a click cost O(N) vector work, not a render
        o_t = torch.as_tensor(np.asarray(origin, dtype=np.float64).reshape(3), dtype=torch.float32, device=dev)
        u_t = torch.as_tensor(_unit(direction, "ray direction"), dtype=torch.float32, device=dev)
        rel = means - o_t
        t = rel @ u_t
        perp = torch.linalg.norm(rel - t[:, None] * u_t, dim=-1)
        reach = 4.0 * (scales.max(-1).values + t.abs() * (0.6 / focal_px)) + t.abs() * (2.0 / focal_px)
        keep = (t > near) & (perp <= reach)
        if not bool(keep.any()):
            return None
        depth, alpha, _ = rasterize(
            means[keep],
            params["quats"].detach().float()[keep],
            scales[keep],
            torch.sigmoid(params["opacities"].detach().float()[keep]),
            torch.zeros((int(keep.sum()), 1), device=dev),
            viewmat[None].to(dev),
            K[None].to(dev),
            1,
            1,
            near_plane=near,
            render_mode="ED",
        )
    a = float(alpha.reshape(-1)[0])
    d = float(depth.reshape(-1)[0])
    if not (a >= min_alpha and math.isfinite(d) and d > 0):
        return None
    o = np.asarray(origin, dtype=np.float64).reshape(3)
    u = _unit(direction, "ray direction")
    return RayHit(point=o + d * u, depth=d, alpha=a)


def fallback_depth(
    params: Mapping[str, Tensor] | None,
    origin: np.ndarray | tuple[float, float, float],
    direction: np.ndarray | tuple[float, float, float],
) -> float:
    """A depth along the ray for a click that hit nothing: the median depth (along the ray) of
    the Gaussians in front of the origin, else 1.0."""
    if params is None or int(params["means"].shape[0]) == 0:
        return 1.0
    o = np.asarray(origin, dtype=np.float64).reshape(3)
    u = _unit(direction, "ray direction")
    m = params["means"].detach().cpu().double().numpy()
    t = (m - o) @ u
    t = t[np.isfinite(t) & (t > 0)]
    return float(np.median(t)) if t.size else 1.0
