"""World normalisation: the documented centre / scale / up choice, and consistency of cameras,
points and Dataset.transform."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from splatlab.scene.cameras import camera_centers
from splatlab.scene.datasets import Dataset, Frame
from splatlab.scene.datasets.normalize import (
    apply_similarity,
    normalize_dataset,
    rotation_between,
    similarity_from_cameras,
)


def make_dataset(scene) -> Dataset:
    frames = [
        Frame(f"v{i}", V.copy(), K.copy(), scene.width, scene.height)
        for i, (V, K) in enumerate(zip(scene.viewmats, scene.Ks))
    ]
    return Dataset(Path("."), frames, points=scene.points.astype(np.float32))


def random_rotation(rng) -> np.ndarray:
    Q, R = np.linalg.qr(rng.normal(size=(3, 3)))
    Q = Q * np.sign(np.diag(R))
    return Q if np.linalg.det(Q) > 0 else -Q


def test_rotation_between() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.normal(size=3), rng.normal(size=3)
        R = rotation_between(a, b)
        np.testing.assert_allclose(R @ (a / np.linalg.norm(a)), b / np.linalg.norm(b), atol=1e-12)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) > 0
    R = rotation_between(np.array([0, 0, -1.0]), np.array([0, 0, 1.0]))  # opposite
    np.testing.assert_allclose(R @ [0, 0, -1.0], [0, 0, 1.0], atol=1e-12)


def test_normalize_in_a_tilted_scaled_world(ds_synth) -> None:
    scene = ds_synth.make_scene(n_cams=7)
    rng = np.random.default_rng(1)
    # move the fixture into an arbitrary world: rotation, scale 37, offset
    G = np.eye(4)
    G[:3, :3] = 37.0 * random_rotation(rng)
    G[:3, 3] = [100.0, -50.0, 7.0]
    from splatlab.scene.datasets.normalize import transform_points, transform_viewmats

    scene.viewmats = transform_viewmats(scene.viewmats, G, 37.0)
    scene.points = transform_points(scene.points, G)
    for i in range(len(scene.viewmats)):  # the move itself keeps projections
        np.testing.assert_allclose(scene.project(i), ds_synth.project(
            scene.points, scene.viewmats[i], scene.Ks[i]), atol=1e-9)  # fmt: skip
    ds = make_dataset(scene)
    normalize_dataset(ds)
    c = camera_centers(ds.viewmats)
    np.testing.assert_allclose(c.mean(0), 0, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(c, axis=1).max(), 1.0, atol=1e-9)
    up = -ds.viewmats[:, 1, :3].mean(0)
    np.testing.assert_allclose(up / np.linalg.norm(up), [0, 0, 1], atol=1e-9)
    # the cameras are 4 units from the target in the fixture, times 37 here
    assert abs(ds.scale * 37.0 * 4.0 - 1) < 0.05
    assert ds_synth.reprojection_error(ds, scene) < 1e-4
    want = transform_points(scene.points, ds.transform)
    np.testing.assert_allclose(ds.points, want, rtol=1e-6, atol=1e-5)
    for V in ds.viewmats:  # still rigid world-to-camera matrices
        np.testing.assert_allclose(V[:3, :3] @ V[:3, :3].T, np.eye(3), atol=1e-12)
    # a second normalisation composes into transform and changes nothing else
    before = ds.viewmats.copy()
    normalize_dataset(ds)
    np.testing.assert_allclose(ds.viewmats, before, atol=1e-9)
    assert ds_synth.reprojection_error(ds, scene) < 1e-4


def test_normalize_options_and_degenerate(ds_synth) -> None:
    scene = ds_synth.make_scene(n_cams=4)
    T, s = similarity_from_cameras(scene.viewmats, rotate_up=False)
    np.testing.assert_allclose(T[:3, :3], s * np.eye(3))
    T, s = similarity_from_cameras(scene.viewmats, center=False, scale=False, rotate_up=False)
    np.testing.assert_array_equal(T, np.eye(4))
    # a single camera: nothing to scale by
    T, s = similarity_from_cameras(scene.viewmats[:1], rotate_up=False)
    assert s == 1.0
    np.testing.assert_allclose(T[:3, 3], -camera_centers(scene.viewmats[:1])[0])
    ds = make_dataset(scene)
    apply_similarity(ds, np.diag([2.0, 2.0, 2.0, 1.0]), 2.0)
    assert ds.scale == 2.0 and ds_synth.reprojection_error(ds, scene) < 1e-4
