"""Shared fixtures of the dataset-parser tests: a small synthetic scene (3D points seen by a few
OpenCV cameras) and writers of tiny images, so each test builds its fixture in tmp_path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from splatlab.scene.cameras import intrinsics_matrix, look_at_viewmat

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@dataclass
class SynthScene:
    points: np.ndarray  # [N, 3] world points
    colors: np.ndarray  # [N, 3] uint8
    viewmats: np.ndarray  # [C, 4, 4] OpenCV world-to-camera
    Ks: np.ndarray  # [C, 3, 3]
    width: int
    height: int

    def project(self, i: int, points: np.ndarray | None = None) -> np.ndarray:
        """Pixel positions [N, 2] of ``points`` (default: the scene's) in camera i."""
        return project(self.points if points is None else points, self.viewmats[i], self.Ks[i])


def project(points: np.ndarray, viewmat: np.ndarray, K: np.ndarray) -> np.ndarray:
    """OpenCV pinhole projection: x_c = R p + t, uv = (K x_c)[:2] / z. [N, 3] -> [N, 2]."""
    xc = points @ viewmat[:3, :3].T + viewmat[:3, 3]
    uvw = xc @ K.T
    return uvw[:, :2] / uvw[:, 2:3]


def make_scene(
    n_cams: int = 6, width: int = 64, height: int = 48, seed: int = 0, same_K: bool = False
) -> SynthScene:
    rng = np.random.default_rng(seed)
    points = rng.uniform(-0.6, 0.6, size=(40, 3)) + np.array([0.3, -0.2, 0.1])
    colors = rng.integers(0, 256, size=(40, 3), dtype=np.uint8)
    target = np.array([0.3, -0.2, 0.1])
    viewmats, Ks = [], []
    for i in range(n_cams):
        az = 2 * np.pi * i / n_cams + 0.3
        el = 0.3 + 0.15 * np.sin(i)
        eye = target + 4.0 * np.array(
            [np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)]
        )
        viewmats.append(look_at_viewmat(eye, target + rng.normal(0, 0.05, 3)))
        if same_K:
            Ks.append(intrinsics_matrix(70.0, 70.0, width / 2, height / 2))
        else:
            Ks.append(
                intrinsics_matrix(60.0 + i, 62.0 + 0.5 * i, width / 2 + 1.3, height / 2 - 0.7)
            )
    return SynthScene(points, colors, np.stack(viewmats), np.stack(Ks), width, height)


def gl_c2w(viewmat: np.ndarray) -> np.ndarray:
    """OpenCV world-to-camera -> OpenGL camera-to-world, written out from the definitions (camera
    axes y and z flipped), independently of splatlab.scene.cameras."""
    c2w_cv = np.linalg.inv(viewmat)
    return c2w_cv @ np.diag([1.0, -1.0, -1.0, 1.0])


def write_image(path: Path, img: np.ndarray) -> Path:
    """Write RGB(A) uint8/uint16 [H, W, C] with OpenCV (channel order converted)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if img.ndim == 3 and img.shape[2] == 3:
        img = img[..., ::-1]
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[..., [2, 1, 0, 3]]
    assert cv2.imwrite(str(path), np.ascontiguousarray(img)), path
    return path


def noise_image(width: int, height: int, seed: int, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def reprojection_error(ds, scene: SynthScene, ids=None, sx: float = 1.0, sy: float = 1.0) -> float:
    """Max pixel error between the scene's points projected with the fixture's cameras (scaled by
    (sx, sy) for downscaled images) and the same points moved by ``ds.transform`` projected with
    the loaded cameras. Frames are matched by order (``ids`` picks fixture cameras)."""
    T = ds.transform
    pts = scene.points @ T[:3, :3].T + T[:3, 3]
    ids = range(len(scene.viewmats)) if ids is None else ids
    err = 0.0
    for k, i in enumerate(ids):
        want = scene.project(i) * np.array([sx, sy])
        got = project(pts, ds.frames[k].viewmat, ds.frames[k].K)
        err = max(err, float(np.abs(got - want).max()))
    return err


def distort_opencv(xy: np.ndarray, k1: float, k2: float, p1: float, p2: float) -> np.ndarray:
    """OpenCV / COLMAP ``OPENCV`` lens model on normalised coordinates [N, 2], written out."""
    x, y = xy[:, 0], xy[:, 1]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([xd, yd], 1)


def dot_image(centers: np.ndarray, width: int, height: int, sigma: float = 1.3) -> np.ndarray:
    """16-bit RGB image of Gaussian dots at ``centers`` [N, 2] (pixel-centre convention: pixel
    (i, j) is sampled at (i + 0.5, j + 0.5))."""
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    img = np.zeros((height, width))
    for cx, cy in centers:
        img += np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / (2 * sigma**2))
    img = np.clip(img, 0, 1)
    return np.repeat((img * 65535).round().astype(np.uint16)[..., None], 3, axis=2)


def dot_centroids(img: np.ndarray, approx: np.ndarray, radius: int = 5) -> np.ndarray:
    """Intensity centroids [N, 2] (pixel-centre convention) of the dots near ``approx`` [N, 2]."""
    gray = img.mean(axis=2) if img.ndim == 3 else img
    out = []
    for ax, ay in approx:
        i0, j0 = int(np.floor(ax)), int(np.floor(ay))
        ys, xs = (
            slice(max(j0 - radius, 0), j0 + radius + 1),
            slice(max(i0 - radius, 0), i0 + radius + 1),
        )
        w = gray[ys, xs].astype(np.float64)
        w = np.where(w > 0.05 * w.max(), w, 0.0)
        jj, ii = np.mgrid[ys, xs]
        out.append([(w * (ii + 0.5)).sum() / w.sum(), (w * (jj + 0.5)).sum() / w.sum()])
    return np.array(out)


@pytest.fixture
def ds_synth() -> SimpleNamespace:
    """Helpers for the dataset tests (a namespace, so test files need no shared module)."""
    return SimpleNamespace(
        make_scene=make_scene,
        project=project,
        gl_c2w=gl_c2w,
        write_image=write_image,
        noise_image=noise_image,
        reprojection_error=reprojection_error,
        distort_opencv=distort_opencv,
        dot_image=dot_image,
        dot_centroids=dot_centroids,
    )


@pytest.fixture
def ds_data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"real data folder {DATA} is absent (../shared/data beside the repository)")
    return DATA.resolve()


@pytest.fixture
def ds_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache folder (SPLATLAB_CACHE_DIR), so tests never write in ~/.cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SPLATLAB_CACHE_DIR", str(cache))
    return cache
