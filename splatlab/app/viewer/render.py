"""Pure functions behind the viewer: cameras from viser, render modes, browser-splat buffers,
selections. Nothing here knows about viser's server; everything is testable headless."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ...rendering.sh import SH_C0
from ...rendering.splats import render_splats, splat_sh_degree
from ...scene.gaussians import REQUIRED_KEYS

__all__ = [
    "ViewCamera",
    "camera_from_viser",
    "c2w_to_wxyz_position",
    "render_modes",
    "render_view",
    "render_selection",
    "browser_splat_arrays",
    "covariance_scale",
    "selection_mask",
    "subset_params",
    "scene_up_direction",
]

BASE_MODES = ("RGB", "depth", "alpha", "normals")
PCA_SUFFIX = (
    " (PCA)"  # "features (PCA)": a per-Gaussian channel group shown by its 3 principal axes
)


@dataclass
class ViewCamera:
    """A pinhole view in the frame of the scene's parameters."""

    viewmat: np.ndarray  # [4, 4] OpenCV world-to-camera
    K: np.ndarray  # [3, 3]
    width: int
    height: int

    def scaled(self, max_side: int) -> ViewCamera:
        """The same view with its longer side at most ``max_side`` pixels (intrinsics scaled)."""
        s = min(1.0, max_side / max(self.width, self.height))
        w, h = max(1, round(self.width * s)), max(1, round(self.height * s))
        K = self.K.copy()
        K[0] *= w / self.width
        K[1] *= h / self.height
        return ViewCamera(self.viewmat.copy(), K, w, h)


def _quat_to_matrix(wxyz: np.ndarray) -> np.ndarray:
    w, x, y, z = np.asarray(wxyz, dtype=np.float64) / np.linalg.norm(wxyz)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def camera_from_viser(
    wxyz: np.ndarray, position: np.ndarray, fov: float, width: int, height: int
) -> ViewCamera:
    """viser's camera (OpenCV axes: camera-to-world rotation ``wxyz``, centre ``position``,
    VERTICAL ``fov`` in radians) at ``width`` x ``height`` pixels -> a :class:`ViewCamera`."""
    c2w = np.eye(4)
    c2w[:3, :3] = _quat_to_matrix(wxyz)
    c2w[:3, 3] = position
    f = (height / 2.0) / np.tan(fov / 2.0)
    K = np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
    return ViewCamera(np.linalg.inv(c2w), K, int(width), int(height))


def c2w_to_wxyz_position(viewmat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV world-to-camera [4, 4] -> (wxyz [4], position [3]) of the camera-to-world pose."""
    from scipy.spatial.transform import Rotation

    c2w = np.linalg.inv(np.asarray(viewmat, dtype=np.float64))
    xyzw = Rotation.from_matrix(c2w[:3, :3]).as_quat()
    return np.array([xyzw[3], xyzw[0], xyzw[1], xyzw[2]]), c2w[:3, 3].copy()


def feature_keys(params: Mapping[str, Tensor]) -> list[str]:
    """Extra per-Gaussian channel groups that can be shown as features ([N, C] float, C >= 1)."""
    n = params["means"].shape[0]
    out = []
    for k, v in params.items():
        if k in REQUIRED_KEYS or not v.is_floating_point() or v.shape[0] != n:
            continue
        out.append(k)
    return out


def render_modes(params: Mapping[str, Tensor]) -> list[str]:
    """Render modes a scene supports: RGB, depth, alpha, normals, then one per extra channel group."""
    return [*BASE_MODES, *(k + PCA_SUFFIX for k in feature_keys(params))]


def colorize_depth(
    depth: np.ndarray, alpha: np.ndarray, near: float | None, far: float | None
) -> np.ndarray:
    """Depth [H, W] -> uint8 [H, W, 3] (TURBO, near = red), background black. near/far None:
    2nd / 98th percentile of covered pixels."""
    from ..render_video import colorize_depth as _cd

    return _cd(depth, alpha, near=near, far=far)


def _to_uint8(img: Tensor) -> np.ndarray:
    return (img.clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


@torch.no_grad()
def render_view(
    params: Mapping[str, Tensor],
    cam: ViewCamera,
    mode: str = "RGB",
    *,
    sh_degree: int | None = None,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    near: float | None = None,
    far: float | None = None,
) -> np.ndarray:
    """Render one view of ``params`` (log-scales, logit-opacities, SH) as an RGB uint8 image
    [H, W, 3] in ``mode`` (see :func:`render_modes`)."""
    vm = torch.as_tensor(cam.viewmat, dtype=torch.float32)[None]
    K = torch.as_tensor(cam.K, dtype=torch.float32)[None]
    w, h = cam.width, cam.height
    if params["means"].shape[0] == 0:
        return np.broadcast_to(
            (np.asarray(background) * 255 + 0.5).astype(np.uint8), (h, w, 3)
        ).copy()
    bg = torch.tensor([background], dtype=torch.float32)
    if mode == "RGB":
        deg = None if sh_degree is None else min(sh_degree, splat_sh_degree(params))
        img, _, _ = render_splats(params, vm, K, w, h, sh_degree=deg, backgrounds=bg)
        return _to_uint8(img[0])
    if mode in ("depth", "alpha"):
        d, alpha, _ = render_splats(params, vm, K, w, h, sh_degree=0, render_mode="ED")
        a = alpha[0, ..., 0].cpu().numpy()
        if mode == "alpha":
            return np.repeat((np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)[..., None], 3, -1)
        return colorize_depth(d[0, ..., 0].cpu().numpy(), a, near, far)
    means = params["means"]
    scales = torch.exp(params["scales"])
    opac = torch.sigmoid(params["opacities"])
    if mode == "normals":
        from ...rendering.shading.gaussianshader import gaussian_normals

        center = torch.linalg.inv(vm[0])[:3, 3].to(means)
        n = gaussian_normals(means, params["quats"], scales, params.get("normal_res"), center)
        colors = n * 0.5 + 0.5
        img, _, _ = _raster(params, scales, opac, colors, vm, K, w, h, bg)
        return _to_uint8(img[0])
    if mode.endswith(PCA_SUFFIX):
        from ...rendering.features import pca_basis, pca_colors

        key = mode[: -len(PCA_SUFFIX)]
        if key not in params:
            raise KeyError(f"the scene has no channel group {key!r}; modes: {render_modes(params)}")
        f = params[key].reshape(means.shape[0], -1).float()
        img, alpha, _ = _raster(params, scales, opac, f, vm, K, w, h, None)
        basis = pca_basis(f)  # per-Gaussian axes: colours stay stable between frames
        return _to_uint8(pca_colors(img[0], basis, alpha[0]))
    raise ValueError(f"unknown render mode {mode!r}; modes: {render_modes(params)}")


SELECTED_RGB = (1.0, 0.55, 0.1)


@torch.no_grad()
def render_selection(
    params: Mapping[str, Tensor],
    cam: ViewCamera,
    selected: np.ndarray,
    *,
    sh_degree: int | None = None,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    tint: float = 0.65,
    dim: float = 0.3,
) -> np.ndarray:
    """The "selection" mode: RGB with the selected Gaussians [N] tinted orange and the others
    grey and dimmed -> uint8 [H, W, 3]."""
    n = params["means"].shape[0]
    sel = torch.from_numpy(np.asarray(selected, dtype=bool).reshape(-1))
    if sel.shape[0] != n:
        raise ValueError(f"selection has {sel.shape[0]} entries for {n} Gaussians")
    p = dict(params)
    rgb = (params["sh0"].reshape(n, 3).float() * SH_C0 + 0.5).clamp(0, 1)
    grey = rgb.mean(-1, keepdim=True).expand(n, 3) * dim
    hot = (1 - tint) * rgb + tint * torch.tensor(SELECTED_RGB)
    new_rgb = torch.where(sel[:, None], hot, grey)
    p["sh0"] = ((new_rgb - 0.5) / SH_C0).reshape(params["sh0"].shape).to(params["sh0"])
    if "shN" in p:  # view-dependent colour kept on the selection only
        p["shN"] = params["shN"] * sel.reshape(n, *([1] * (params["shN"].dim() - 1))).to(
            params["shN"]
        )
    return render_view(p, cam, "RGB", sh_degree=sh_degree, background=background)


def _raster(
    params: Mapping[str, Tensor],
    scales: Tensor,
    opac: Tensor,
    colors: Tensor,
    vm: Tensor,
    K: Tensor,
    w: int,
    h: int,
    bg: Tensor | None,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    from ...rendering.rasterize import rasterize

    if bg is not None and bg.shape[-1] != colors.shape[-1]:
        bg = None
    return rasterize(
        params["means"], params["quats"], scales, opac, colors, vm, K, w, h, backgrounds=bg
    )


# ------------------------------------------------------------------------- browser splats


def covariance_scale(log_scales: np.ndarray) -> float:
    """Length unit s for viser's float16 covariances: the geometric middle of the 1st and 99th
    percentile Gaussian sizes, divided by sqrt(2), so sigma / s is near the centre (in log
    scale) of float16's normal range for sigma^2, [6.1e-5, 65504]."""
    if log_scales.size == 0:
        return 1.0
    smax = log_scales.max(axis=1)
    lo, hi = np.percentile(smax, [1, 99])
    s = float(np.exp(0.5 * (lo + hi)) / np.sqrt(2.0))
    return s if np.isfinite(s) and s > 0 else 1.0


def browser_splat_arrays(params: Mapping[str, Tensor], unit: float | None = None) -> dict[str, Any]:
    """Arrays for ``viser.scene.add_gaussian_splats`` (RGB from SH degree 0), in units of ``unit``
    (default :func:`covariance_scale`): the node must be added with ``scale=unit``.

    Returns {"centers" [N, 3], "covariances" [N, 3, 3], "rgbs" [N, 3], "opacities" [N, 1],
    "unit": float}, float32 numpy arrays."""
    with torch.no_grad():
        means = params["means"].detach().cpu().double().numpy()
        log_s = params["scales"].detach().cpu().double().numpy()
        q = params["quats"].detach().cpu().double()
        sh0 = params["sh0"].detach().cpu().double().reshape(-1, 3).numpy()
        opac = torch.sigmoid(params["opacities"].detach().cpu().double()).numpy()
    unit = covariance_scale(log_s) if unit is None else float(unit)
    q = (q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)).numpy()
    w, x, y, z = q.T
    R = np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )  # [N, 3, 3]
    s = np.exp(log_s) / unit
    M = R * s[:, None, :]
    cov = np.clip(M @ np.transpose(M, (0, 2, 1)), -65000.0, 65000.0)
    rgb = np.clip(sh0 * SH_C0 + 0.5, 0.0, 1.0)
    return {
        "centers": (means / unit).astype(np.float32),
        "covariances": cov.astype(np.float32),
        "rgbs": rgb.astype(np.float32),
        "opacities": opac[:, None].astype(np.float32),
        "unit": unit,
    }


# ------------------------------------------------------------------------- selection


def selection_mask(
    params: Mapping[str, Tensor],
    *,
    box_center: np.ndarray | None = None,
    box_wxyz: np.ndarray | None = None,
    box_size: np.ndarray | None = None,
    min_opacity: float = 0.0,
    max_scale: float = float("inf"),
) -> np.ndarray:
    """Boolean [N]: inside the oriented crop box (centre, rotation wxyz, full side lengths;
    None = no box), opacity >= ``min_opacity`` and largest linear scale <= ``max_scale``."""
    means = params["means"].detach().cpu().double().numpy()
    keep = np.ones(means.shape[0], dtype=bool)
    if box_center is not None and box_size is not None:
        R = _quat_to_matrix(np.asarray(box_wxyz if box_wxyz is not None else (1, 0, 0, 0)))
        local = (means - np.asarray(box_center, np.float64)) @ R  # R^T (x - c), row vectors
        keep &= np.all(np.abs(local) <= np.asarray(box_size, np.float64) / 2.0, axis=1)
    if min_opacity > 0:
        keep &= torch.sigmoid(params["opacities"].detach().cpu()).numpy() >= min_opacity
    if np.isfinite(max_scale):
        keep &= np.exp(params["scales"].detach().cpu().numpy().max(axis=1)) <= max_scale
    return keep


def subset_params(params: Mapping[str, Tensor], mask: np.ndarray) -> dict[str, Tensor]:
    """Every per-Gaussian tensor of ``params`` restricted to ``mask`` [N] (detached copies)."""
    idx = torch.from_numpy(np.nonzero(mask)[0])
    n = params["means"].shape[0]
    return {k: v.detach()[idx].clone() for k, v in params.items() if v.shape[:1] == (n,)}


def scene_up_direction(viewmats: np.ndarray | None) -> np.ndarray:
    """The world 'up' of a set of cameras: minus the mean of their image y axes (OpenCV y points
    down). (0, 0, 1) when there are no cameras."""
    if viewmats is None or len(viewmats) == 0:
        return np.array([0.0, 0.0, 1.0])
    c2w = np.linalg.inv(np.asarray(viewmats, dtype=np.float64))
    up = -c2w[:, :3, 1].mean(axis=0)
    nrm = np.linalg.norm(up)
    return up / nrm if nrm > 1e-8 else np.array([0.0, 0.0, 1.0])
