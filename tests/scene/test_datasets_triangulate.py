"""Initial points from known poses (pycolmap's point triangulator): a textured plane seen by
posed cameras must give points ON the plane, in the dataset's frame."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from splatlab.errors import SfMError
from splatlab.scene.cameras import look_at_viewmat
from splatlab.scene.datasets.base import Dataset, Frame
from splatlab.scene.datasets.triangulate import triangulate_known_poses


def _plane_dataset(n_views: int = 8, w: int = 320, h: int = 240) -> Dataset:
    """The astronaut photo (bundled with scikit-image) on the plane z = 0, x, y in [-1, 1],
    rendered exactly by the plane-to-image homography of each OpenCV camera."""
    skimage_data = pytest.importorskip("skimage.data")
    tex = skimage_data.astronaut()  # [512, 512, 3]
    ts = tex.shape[0]
    S = np.array([[2.0 / ts, 0, -1.0], [0, 2.0 / ts, -1.0], [0, 0, 1]])  # texture px -> plane xy
    K = np.array([[300.0, 0, w / 2], [0, 300.0, h / 2], [0, 0, 1]])
    frames, images = [], []
    for k in range(n_views):
        a = 2 * np.pi * k / n_views
        eye = np.array([0.8 * np.cos(a), 0.8 * np.sin(a), 2.6])
        vm = look_at_viewmat(eye, np.zeros(3), up=np.array([0.0, 1.0, 0.0]))
        Hm = K @ np.column_stack([vm[:3, 0], vm[:3, 1], vm[:3, 3]]) @ S
        img = cv2.warpPerspective(tex, Hm, (w, h), flags=cv2.INTER_LINEAR)
        images.append(img.astype(np.float32) / 255.0)
        frames.append(Frame(name=f"v{k}", viewmat=vm, K=K, width=w, height=h))
    return Dataset(root=Path("<plane>"), frames=frames, train_ids=list(range(n_views)),
                   image_loader=lambda i: images[i])


def test_points_triangulated_from_known_poses_lie_on_the_plane(tmp_path: Path) -> None:
    ds = _plane_dataset()
    xyz, rgb, stats = triangulate_known_poses(ds, work_dir=tmp_path / "tri")
    assert stats["points"] == len(xyz) > 300 and xyz.shape[1] == 3 and rgb.dtype == np.uint8
    assert stats["mean_reprojection_error"] < 1.0
    assert np.median(np.abs(xyz[:, 2])) < 0.01  # on z = 0 (the plane is 2 units wide)
    assert np.percentile(np.abs(xyz[:, 2]), 90) < 0.05
    assert (np.abs(xyz[:, :2]) <= 1.05).all()  # inside the textured square
    # cached: the second call reads the stored points, without pycolmap (the GPU machine has none)
    blocked = sys.modules.get("pycolmap")
    sys.modules["pycolmap"] = None  # `import pycolmap` now raises ImportError
    try:
        xyz2, _, _ = triangulate_known_poses(ds, work_dir=tmp_path / "tri")
    finally:
        sys.modules["pycolmap"] = blocked
        if blocked is None:
            del sys.modules["pycolmap"]
    assert np.array_equal(xyz, xyz2)


def test_featureless_images_give_a_clear_error(tmp_path: Path) -> None:
    ds = _plane_dataset(n_views=3)
    flat = np.full((240, 320, 3), 0.5, np.float32)
    ds.image_loader = lambda i: flat
    with pytest.raises(SfMError, match="no point could be triangulated"):
        triangulate_known_poses(ds, work_dir=tmp_path / "tri")
