"""Camera paths: nerfstudio's ``camera_path.json`` and keyframe interpolation.

File layout (what nerfstudio's viewer writes and ``ns-render camera-path`` reads, see
``nerfstudio.cameras.camera_paths.get_path_from_json``)::

    {
      "camera_type": "perspective",
      "render_height": 480, "render_width": 640,
      "fps": 30, "seconds": 4.0,
      "camera_path": [                              # one entry per rendered frame
        {"camera_to_world": [16 floats, row-major 4x4, OpenGL axes],
         "fov": 50.0,                               # vertical field of view, degrees
         "aspect": 1.333,                           # width / height (informative)
         "render_time": 0.0},                       # optional, dynamic scenes only
        ...
      ],
      "keyframes": [{"matrix": [16 floats], "fov": ..., "aspect": ..., ...}],   # viewer state
      "default_fov": ..., "default_transition_sec": ..., "is_cycle": ..., "smoothness_value": ...,
      "crop": {...}                                 # optional
    }

As nerfstudio does, the pinhole intrinsics come from the vertical fov and the render height:
``f = (H / 2) / tan(fov / 2)`` for both axes, principal point at (W / 2, H / 2) (pixel centres at
half-integers, as in gsplat). Poses are converted to splatlab's OpenCV world-to-camera viewmats
with ``splatlab.scene.cameras``. Coordinates are those of the scene the path was made for.
Only perspective paths are supported (fisheye/equirectangular raise DataError).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..utils import atomic_write_json
from .cameras import opencv_viewmat_to_opengl_c2w, opengl_c2w_to_opencv_viewmat

__all__ = [
    "CameraPath",
    "intrinsics_from_fov",
    "fov_from_intrinsics",
    "read_camera_path",
    "write_camera_path",
    "interpolate_path",
]

logger = logging.getLogger(__name__)

_KNOWN_KEYS = {
    "camera_type",
    "render_height",
    "render_width",
    "camera_path",
    "fps",
    "seconds",
    "keyframes",
}


def intrinsics_from_fov(fov_deg: float | np.ndarray, width: int, height: int) -> np.ndarray:
    """Pinhole K [..., 3, 3] of a ``width`` x ``height`` image with vertical field of view
    ``fov_deg`` (square pixels, centred principal point), as nerfstudio's camera paths define it."""
    fov = np.asarray(fov_deg, dtype=np.float64)
    if np.any(fov <= 0) or np.any(fov >= 180):
        raise ValueError(f"fov must be in (0, 180) degrees, got {fov_deg}")
    f = (height / 2.0) / np.tan(np.deg2rad(fov) / 2.0)
    K = np.zeros(fov.shape + (3, 3))
    K[..., 0, 0] = f
    K[..., 1, 1] = f
    K[..., 0, 2] = width / 2.0
    K[..., 1, 2] = height / 2.0
    K[..., 2, 2] = 1.0
    return K


def fov_from_intrinsics(K: np.ndarray, height: int) -> np.ndarray:
    """Vertical field of view in degrees [...] from K [..., 3, 3] (uses fy)."""
    K = np.asarray(K, dtype=np.float64)
    return np.rad2deg(2.0 * np.arctan((height / 2.0) / K[..., 1, 1]))


@dataclass
class CameraPath:
    """A rendered camera trajectory."""

    viewmats: np.ndarray  # [F, 4, 4] float64, OpenCV world-to-camera
    Ks: np.ndarray  # [F, 3, 3] float64
    width: int
    height: int
    fps: float = 30.0
    seconds: float | None = None  # None: len(frames) / fps
    camera_type: str = "perspective"
    times: np.ndarray | None = None  # [F] render_time of dynamic scenes, else None
    keyframes: list[dict] = field(default_factory=list)  # the viewer's keyframes, as stored
    extra: dict[str, Any] = field(default_factory=dict)  # other top-level keys, kept as stored

    def __len__(self) -> int:
        return int(self.viewmats.shape[0])

    @property
    def duration(self) -> float:
        return float(self.seconds) if self.seconds is not None else len(self) / float(self.fps)

    @property
    def fovs(self) -> np.ndarray:
        """Vertical field of view of each frame, degrees [F]."""
        return fov_from_intrinsics(self.Ks, self.height)

    def keyframe_cameras(self) -> tuple[np.ndarray, np.ndarray]:
        """The stored viewer keyframes as (viewmats [M, 4, 4], Ks [M, 3, 3]) at the render size
        (each keyframe's ``matrix`` is a row-major OpenGL camera-to-world, like the frames')."""
        if not self.keyframes:
            return np.zeros((0, 4, 4)), np.zeros((0, 3, 3))
        try:
            c2ws = np.stack(
                [np.asarray(k["matrix"], dtype=np.float64).reshape(4, 4) for k in self.keyframes]
            )
            fovs = np.array([float(k["fov"]) for k in self.keyframes])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(
                f"camera path keyframes need a 16-number 'matrix' and a 'fov' ({e})"
            ) from e
        return opengl_c2w_to_opencv_viewmat(c2ws), intrinsics_from_fov(
            fovs, self.width, self.height
        )


def _fail(path: Path, msg: str) -> DataError:
    return DataError(f"camera path {path}: {msg}")


def _number(path: Path, value: Any, what: str, kind: type) -> Any:
    """``kind(value)`` for a JSON number (not a bool, string, list or null), else a DataError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise _fail(path, f"{what} must be a number, got {json.dumps(value)[:40]}")
    if kind is int and float(value) != int(value):
        raise _fail(path, f"{what} must be a whole number, got {value}")
    return kind(value)


def read_camera_path(path: str | os.PathLike) -> CameraPath:
    """Read a nerfstudio ``camera_path.json`` into viewmats + Ks (see the module docstring)."""
    import json

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise DataError(f"camera path {path} does not exist") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"camera path {path} is not readable JSON: {e}") from e
    if not isinstance(data, dict):
        raise _fail(path, "the top level must be a JSON object")
    for key in ("render_height", "render_width", "camera_path"):
        if key not in data:
            raise _fail(path, f"missing key {key!r} (a nerfstudio camera_path.json has it)")
    camera_type = str(data.get("camera_type", "perspective")).lower()
    if camera_type != "perspective":
        raise _fail(path, f"camera_type {camera_type!r} is not supported; only 'perspective' is")
    width = _number(path, data["render_width"], "render_width", int)
    height = _number(path, data["render_height"], "render_height", int)
    if width <= 0 or height <= 0:
        raise _fail(path, f"render size {width}x{height} must be positive")
    frames = data["camera_path"]
    if not isinstance(frames, list) or not frames:
        raise _fail(path, "'camera_path' must be a non-empty list of frames")

    c2ws, fovs, times = [], [], []
    for i, cam in enumerate(frames):
        if not isinstance(cam, dict) or "camera_to_world" not in cam or "fov" not in cam:
            raise _fail(path, f"frame {i} needs 'camera_to_world' and 'fov'")
        try:
            m = np.asarray(cam["camera_to_world"], dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise _fail(path, f"frame {i}: camera_to_world must be 16 numbers ({e})") from e
        if m.size != 16:
            raise _fail(
                path,
                f"frame {i}: camera_to_world has {m.size} numbers, expected 16 (row-major 4x4)",
            )
        m = m.reshape(4, 4)
        if not np.isfinite(m).all() or abs(np.linalg.det(m[:3, :3])) < 1e-12:
            raise _fail(path, f"frame {i}: camera_to_world is not a finite invertible pose")
        fov = _number(path, cam["fov"], f"frame {i}: fov", float)
        if not 0.0 < fov < 180.0:
            raise _fail(path, f"frame {i}: fov {fov} is not in (0, 180) degrees")
        aspect = cam.get("aspect")
        if aspect is not None and abs(_number(path, aspect, f"frame {i}: aspect", float) - width / height) > 1e-3 * width / height:
            logger.warning(
                "%s frame %d: aspect %.4f differs from render size %dx%d; the render size wins (as in nerfstudio)",
                path,
                i,
                float(aspect),
                width,
                height,
            )
        c2ws.append(m)
        fovs.append(fov)
        times.append(cam.get("render_time"))

    return CameraPath(
        viewmats=opengl_c2w_to_opencv_viewmat(np.stack(c2ws)),
        Ks=intrinsics_from_fov(np.asarray(fovs), width, height),
        width=width,
        height=height,
        fps=_number(path, data.get("fps", 30.0), "fps", float),
        seconds=_number(path, data["seconds"], "seconds", float) if data.get("seconds") is not None else None,
        camera_type=camera_type,
        times=np.asarray(times, dtype=np.float64) if all(t is not None for t in times) else None,
        keyframes=list(data.get("keyframes", [])),
        extra={k: v for k, v in data.items() if k not in _KNOWN_KEYS},
    )


def write_camera_path(path: str | os.PathLike, camera_path: CameraPath) -> Path:
    """Write ``camera_path`` as a nerfstudio ``camera_path.json``, atomically.

    The format stores one vertical fov per frame with square pixels and a centred principal
    point, so Ks must have fx == fy and (cx, cy) == (W/2, H/2) (relative tolerance 1e-6);
    ValueError otherwise.
    """
    cp = camera_path
    Ks = np.asarray(cp.Ks, dtype=np.float64)
    viewmats = np.asarray(cp.viewmats, dtype=np.float64)
    if viewmats.ndim != 3 or viewmats.shape[1:] != (4, 4) or Ks.shape != (viewmats.shape[0], 3, 3):
        raise ValueError(
            f"viewmats must be [F, 4, 4] and Ks [F, 3, 3], got {viewmats.shape} and {Ks.shape}"
        )
    tol = 1e-6
    if not np.allclose(Ks[:, 0, 0], Ks[:, 1, 1], rtol=tol, atol=0):
        raise ValueError("camera_path.json needs square pixels (fx == fy)")
    if not (
        np.allclose(Ks[:, 0, 2], cp.width / 2.0, rtol=tol)
        and np.allclose(Ks[:, 1, 2], cp.height / 2.0, rtol=tol)
    ):
        raise ValueError(
            "camera_path.json needs the principal point at the image centre (W/2, H/2)"
        )
    c2ws = opencv_viewmat_to_opengl_c2w(viewmats)
    fovs = fov_from_intrinsics(Ks, cp.height)
    frames = []
    for i in range(len(viewmats)):
        entry: dict[str, Any] = {
            "camera_to_world": [float(v) for v in c2ws[i].reshape(-1)],
            "fov": float(fovs[i]),
            "aspect": cp.width / cp.height,
        }
        if cp.times is not None:
            entry["render_time"] = float(cp.times[i])
        frames.append(entry)
    data: dict[str, Any] = dict(cp.extra)
    data.update(
        {
            "camera_type": cp.camera_type,
            "render_height": int(cp.height),
            "render_width": int(cp.width),
            "fps": cp.fps,
            "seconds": cp.duration,
            "keyframes": cp.keyframes,
            "camera_path": frames,
        }
    )
    atomic_write_json(path, data)
    return Path(path)


def _catmull_rom(points: np.ndarray, u: np.ndarray, closed: bool) -> np.ndarray:
    """Uniform Catmull-Rom through ``points`` [M, D] at parameters u in [0, M-1] (open) or
    [0, M) (closed). Open ends use reflected phantom points, so two keyframes give a straight
    line at constant speed."""
    m = points.shape[0]
    if closed:
        ext = np.concatenate([points[-1:], points, points[:2]])  # index i+1 holds point i (mod M)
    else:
        first = 2 * points[0] - points[1]
        last = 2 * points[-1] - points[-2]
        ext = np.concatenate([first[None], points, last[None]])
    seg = np.clip(np.floor(u).astype(int), 0, m - 1 if closed else m - 2)
    t = (u - seg)[:, None]
    p0, p1, p2, p3 = ext[seg], ext[seg + 1], ext[seg + 2], ext[seg + 3]
    return 0.5 * (
        2 * p1
        + (p2 - p0) * t
        + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
        + (3 * p1 - p0 - 3 * p2 + p3) * t**3
    )


def interpolate_path(
    keyframe_viewmats: np.ndarray,
    Ks: np.ndarray,
    n_frames: int,
    closed: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth path through keyframe cameras.

    Args:
        keyframe_viewmats: [M, 4, 4] OpenCV world-to-camera (rigid).
        Ks: [M, 3, 3] per keyframe, or one [3, 3] for all.
        n_frames: frames to produce (>= 1).
        closed: loop back to the first keyframe (the last frame stops one step before it).

    Camera centres follow a uniform Catmull-Rom spline through the keyframe centres;
    orientations are slerped between consecutive keyframes; intrinsics are interpolated
    linearly. Each keyframe gets the same share of frames. An open path starts exactly at the
    first keyframe and ends exactly at the last.

    Returns (viewmats [n_frames, 4, 4], Ks [n_frames, 3, 3]), float64.
    """
    from scipy.spatial.transform import Rotation, Slerp

    V = np.asarray(keyframe_viewmats, dtype=np.float64)
    if V.ndim != 3 or V.shape[1:] != (4, 4) or V.shape[0] < 1:
        raise ValueError(f"keyframe_viewmats must be [M, 4, 4] with M >= 1, got {V.shape}")
    m = V.shape[0]
    K = np.asarray(Ks, dtype=np.float64)
    if K.shape == (3, 3):
        K = np.broadcast_to(K, (m, 3, 3))
    if K.shape != (m, 3, 3):
        raise ValueError(f"Ks must be [3, 3] or [{m}, 3, 3], got {K.shape}")
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if m == 1:
        return np.repeat(V, n_frames, axis=0), np.repeat(np.asarray(K), n_frames, axis=0)

    R_c2w = np.transpose(V[:, :3, :3], (0, 2, 1))
    centers = -np.einsum("mij,mj->mi", R_c2w, V[:, :3, 3])
    if closed:
        u = np.arange(n_frames) * (m / n_frames)
    else:
        u = np.linspace(0.0, m - 1.0, n_frames) if n_frames > 1 else np.zeros(1)

    pos = _catmull_rom(centers, u, closed)
    key_times = np.arange(m + 1 if closed else m, dtype=np.float64)
    key_rots = Rotation.from_matrix(np.concatenate([R_c2w, R_c2w[:1]]) if closed else R_c2w)
    rots = Slerp(key_times, key_rots)(np.clip(u, 0.0, key_times[-1])).as_matrix()

    K_ext = np.concatenate([K, K[:1]]) if closed else K
    seg = np.clip(np.floor(u).astype(int), 0, len(K_ext) - 2)
    w = (u - seg)[:, None, None]
    Ks_out = (1.0 - w) * K_ext[seg] + w * K_ext[seg + 1]

    out = np.tile(np.eye(4), (n_frames, 1, 1))
    out[:, :3, :3] = np.transpose(rots, (0, 2, 1))
    out[:, :3, 3] = -np.einsum("fij,fj->fi", out[:, :3, :3], pos)
    return out, Ks_out
