"""Similarity normalisation of a dataset's world coordinates.

The choice (documented, used by every parser through ``load_dataset(normalize=True)``):

* centre: the mean of the camera centres goes to the origin;
* scale: isotropic, so that the camera centre farthest from that mean lands at distance 1
  (the cameras then lie in the unit ball; the scene they look at is usually inside it, and
  ``Dataset.scene_extent()`` is about 1.1). A single camera, or cameras that share one centre,
  keep scale 1;
* rotation (``rotate_up=True``): the minimal rotation taking the mean camera "up" direction
  (OpenCV -y axis of each camera, in world coordinates) to +z, so viewers with a z-up orbit see
  the scene upright. Skipped when the mean up vector is degenerate (cameras pointing every way).

The result is the similarity ``T`` with x_norm = T[:3, :3] @ x + T[:3, 3], T[:3, :3] = s * R. It
is composed into ``Dataset.transform`` / ``Dataset.scale`` and applied to the viewmats and points.
"""

from __future__ import annotations

import numpy as np

from ..cameras import camera_centers
from .base import Dataset


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Minimal rotation [3, 3] taking the direction ``a`` onto the direction ``b``."""
    a = np.asarray(a, np.float64) / np.linalg.norm(a)
    b = np.asarray(b, np.float64) / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if c < -1.0 + 1e-12:  # opposite: half turn about any axis perpendicular to a
        axis = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(axis) < 1e-6:
            axis = np.cross(a, [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def similarity_from_cameras(
    viewmats: np.ndarray, *, center: bool = True, scale: bool = True, rotate_up: bool = True
) -> tuple[np.ndarray, float]:
    """The normalising similarity for cameras ``viewmats`` [C, 4, 4] (OpenCV world-to-camera).

    Returns (T [4, 4], s) with x_norm = T[:3, :3] @ x + T[:3, 3] and T[:3, :3] = s * R.
    """
    viewmats = np.asarray(viewmats, np.float64)
    centers = camera_centers(viewmats)
    R = np.eye(3)
    if rotate_up:
        ups = -viewmats[:, 1, :3]  # camera -y axis in world coordinates (rows of R_w2c)
        up = ups.mean(0)
        if np.linalg.norm(up) > 1e-3:
            R = rotation_between(up, np.array([0.0, 0.0, 1.0]))
    mean = centers.mean(0) if center else np.zeros(3)
    s = 1.0
    if scale:
        radius = float(np.linalg.norm(centers - mean, axis=1).max()) if len(centers) else 0.0
        if radius > 1e-9:
            s = 1.0 / radius
    T = np.eye(4)
    T[:3, :3] = s * R
    T[:3, 3] = -s * R @ mean
    return T, s


def transform_viewmats(viewmats: np.ndarray, T: np.ndarray, s: float) -> np.ndarray:
    """World-to-camera matrices [..., 4, 4] re-expressed in the world x' = T x (T = s R | t).

    The camera frame is scaled with the world (depths multiply by ``s``), so projections with the
    same K are unchanged: viewmat' = [[R_v R^T, s t_v - R_v R^T t], [0, 1]].
    """
    viewmats = np.asarray(viewmats, np.float64)
    R = T[:3, :3] / s
    t = T[:3, 3]
    out = np.array(viewmats, copy=True)
    Rv = viewmats[..., :3, :3]
    tv = viewmats[..., :3, 3]
    RvRt = Rv @ R.T
    out[..., :3, :3] = RvRt
    out[..., :3, 3] = s * tv - np.einsum("...ij,j->...i", RvRt, t)
    return out


def transform_points(points: np.ndarray, T: np.ndarray) -> np.ndarray:
    """x' = T[:3, :3] @ x + T[:3, 3] for points [N, 3]."""
    points = np.asarray(points, np.float64)
    return points @ T[:3, :3].T + T[:3, 3]


def apply_similarity(ds: Dataset, T: np.ndarray, s: float) -> Dataset:
    """Move ``ds`` (in place) into the world x' = T x: viewmats, points, and the recorded
    ``transform`` / ``scale`` (composed, so ``ds.transform`` still maps the ORIGINAL world)."""
    T = np.asarray(T, np.float64)
    for frame in ds.frames:
        frame.viewmat = transform_viewmats(frame.viewmat, T, s)
    if ds.points is not None:
        ds.points = transform_points(ds.points, T).astype(np.float32)
    ds.transform = T @ ds.transform
    ds.scale = float(ds.scale * s)
    return ds


def normalize_dataset(
    ds: Dataset, *, center: bool = True, scale: bool = True, rotate_up: bool = True
) -> Dataset:
    """Normalise ``ds`` in place (see the module docstring) and return it."""
    if not ds.frames:
        return ds
    T, s = similarity_from_cameras(ds.viewmats, center=center, scale=scale, rotate_up=rotate_up)
    return apply_similarity(ds, T, s)
