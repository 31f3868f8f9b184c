"""Cameras in the one convention splatlab uses everywhere: gsplat's.

World-to-camera ``viewmats`` [C, 4, 4] in the OpenCV convention (x right, y down, z forward) and
pinhole intrinsics ``Ks`` [C, 3, 3]. Poses in other conventions are converted once, at the dataset
boundary, with the helpers below.
"""

from __future__ import annotations

import numpy as np

# OpenGL / Blender / nerfstudio camera axes are (x right, y up, z backward); OpenCV's are
# (x right, y down, z forward). Flipping y and z of the camera frame converts one into the other.
_GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def opengl_c2w_to_opencv_viewmat(c2w: np.ndarray) -> np.ndarray:
    """Camera-to-world in the OpenGL convention -> world-to-camera in the OpenCV convention.

    c2w: [..., 4, 4] (a [..., 3, 4] matrix is completed with the row 0 0 0 1).
    Returns viewmats [..., 4, 4].
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.shape[-2:] == (3, 4):
        bottom = np.broadcast_to(np.array([0, 0, 0, 1.0]), c2w.shape[:-2] + (1, 4))
        c2w = np.concatenate([c2w, bottom], axis=-2)
    if c2w.shape[-2:] != (4, 4):
        raise ValueError(f"c2w must be [..., 4, 4] or [..., 3, 4], got {c2w.shape}")
    return np.linalg.inv(c2w @ _GL_TO_CV)


def opencv_viewmat_to_opengl_c2w(viewmat: np.ndarray) -> np.ndarray:
    """Inverse of :func:`opengl_c2w_to_opencv_viewmat`. viewmat: [..., 4, 4]."""
    return np.linalg.inv(np.asarray(viewmat, dtype=np.float64)) @ _GL_TO_CV


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """Pinhole K [3, 3]."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Intrinsics of an image resized by (sx, sy), pixel-centre convention of gsplat/COLMAP
    (pixel i covers [i, i+1), so the principal point scales with the image)."""
    K = np.array(K, dtype=np.float64, copy=True)
    K[0, :] *= sx
    K[1, :] *= sy
    return K


def camera_centers(viewmats: np.ndarray) -> np.ndarray:
    """World positions of camera centres. viewmats [C, 4, 4] -> [C, 3]."""
    viewmats = np.asarray(viewmats, dtype=np.float64)
    R = viewmats[..., :3, :3]
    t = viewmats[..., :3, 3]
    return -np.einsum("...ji,...j->...i", R, t)


def look_at_viewmat(eye: np.ndarray, target: np.ndarray, up: np.ndarray = (0.0, 0.0, 1.0)) -> np.ndarray:
    """OpenCV world-to-camera matrix [4, 4] of a camera at ``eye`` looking at ``target``;
    ``up`` is the world direction that appears up in the image."""
    eye = np.asarray(eye, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, dtype=np.float64))  # OpenCV: x = y cross z with y = -up
    if np.linalg.norm(x) < 1e-9:  # looking along up: pick any perpendicular
        x = np.cross(z, np.array([1.0, 0.0, 0.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z], axis=0)  # rows: camera axes in world coordinates
    viewmat = np.eye(4)
    viewmat[:3, :3] = R
    viewmat[:3, 3] = -R @ eye
    return viewmat
