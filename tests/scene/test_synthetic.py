"""The procedural demo scene: determinism, camera conventions (through ground-truth depth), normals,
labels, view dependence of the glossy balls, and the nerfstudio-style folder it writes."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from plyfile import PlyData

from splatlab.errors import DataError
from splatlab.scene.cameras import camera_centers, opengl_c2w_to_opencv_viewmat
from splatlab.scene.datasets.base import Dataset, split_every_nth
from splatlab.scene.synthetic import (
    SCENE_OBJECTS,
    SUN_DIR,
    DemoConfig,
    make_demo_scene,
    make_envmap,
    object_label_at,
    sample_envmap,
    trace_rays,
    write_demo_dataset,
)

SMALL = DemoConfig(n_views=8, width=80, height=60, n_points=500)


@pytest.fixture(scope="module")
def demo() -> Dataset:
    return make_demo_scene()  # the default scene, as `splatlab demo` trains on it


@pytest.fixture(scope="module")
def small() -> Dataset:
    return make_demo_scene(SMALL)


def _unproject(ds: Dataset, i: int, v: np.ndarray, u: np.ndarray) -> np.ndarray:
    """World points [N, 3] of the pixel centres (u, v) of view i, from its ground-truth depth."""
    K, V = ds.frames[i].K, ds.frames[i].viewmat
    z = ds.meta["depth"][i][v, u].astype(np.float64)
    cam = np.stack(
        [(u + 0.5 - K[0, 2]) / K[0, 0] * z, (v + 0.5 - K[1, 2]) / K[1, 1] * z, z], axis=1
    )
    return (cam - V[:3, 3]) @ V[:3, :3]


def _project(ds: Dataset, i: int, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, v, z) of world points X [N, 3] in view i (continuous pixel coordinates)."""
    K, V = ds.frames[i].K, ds.frames[i].viewmat
    xc = X @ V[:3, :3].T + V[:3, 3]
    z = xc[:, 2]
    return K[0, 0] * xc[:, 0] / z + K[0, 2], K[1, 1] * xc[:, 1] / z + K[1, 2], z


def test_default_scene_shape_split_and_meta(demo: Dataset) -> None:
    c, h, w = 48, 120, 160
    assert len(demo) == c and demo.frames[0].width == w and demo.frames[0].height == h
    assert (demo.train_ids, demo.test_ids) == split_every_nth(c, 8)
    img = demo.load_image(3)
    assert img.shape == (h, w, 3) and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0
    m = demo.meta
    assert m["depth"].shape == (c, h, w) and m["depth"].dtype == np.float32
    assert m["normals"].shape == (c, h, w, 3) and m["normals"].dtype == np.float32
    assert m["labels"].shape == (c, h, w) and m["labels"].dtype == np.int16
    assert m["alpha"].shape == (c, h, w)
    assert m["envmap"].shape == (128, 256, 3) and m["envmap"].dtype == np.float32
    assert demo.background == (0.0, 0.0, 0.0)
    # Pixels no sub-ray hit show exactly the background; background pixels have no depth/normal.
    imgs = np.stack([demo.load_image(i) for i in range(c)])
    assert np.all(imgs[m["alpha"] == 0] == 0.0)
    bg = m["labels"] == 0
    assert np.all(m["depth"][bg] == 0) and np.all(m["normals"][bg] == 0)
    assert np.all(m["depth"][~bg] > 0.5)
    # Coverage agrees with the centre-ray labels almost everywhere (they differ only at edges).
    assert (m["alpha"][~bg] > 0).mean() > 0.999 and (m["alpha"][bg] < 1).mean() > 0.999
    # The whole scene lies in a sphere of radius ~1 around the origin.
    for i in (0, 17, 33):
        v, u = np.nonzero(~bg[i])
        assert np.linalg.norm(_unproject(demo, i, v, u), axis=1).max() < 1.0


def test_same_seed_bit_identical_other_seed_differs(small: Dataset) -> None:
    again = make_demo_scene(SMALL)
    for i in range(len(small)):
        np.testing.assert_array_equal(small.load_image(i), again.load_image(i))
        np.testing.assert_array_equal(small.frames[i].viewmat, again.frames[i].viewmat)
    for key in ("depth", "normals", "labels", "alpha", "envmap"):
        np.testing.assert_array_equal(small.meta[key], again.meta[key])
    np.testing.assert_array_equal(small.points, again.points)
    np.testing.assert_array_equal(small.points_rgb, again.points_rgb)
    other = make_demo_scene(DemoConfig(n_views=8, width=80, height=60, n_points=500, seed=1))
    assert np.abs(other.viewmats - small.viewmats).max() > 1e-3
    assert np.abs(other.load_image(1) - small.load_image(1)).max() > 0.1


def _reprojection_errors(
    ds: Dataset, a: int, b: int, viewmat_b: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Unproject view A's depth, project into view B; where the point is visible in B (same
    label at the nearest pixel centre, surface facing B, same face), compare its z in B with the z
    at which B's ray through it meets B's depth surface (the tangent plane of B's nearest pixel).
    Returns (relative errors [M], labels [M]). ``viewmat_b`` replaces B's pose (to show that a
    wrong pose is caught)."""
    m = ds.meta
    h, w = m["depth"].shape[1:]
    Vb = ds.frames[b].viewmat if viewmat_b is None else viewmat_b
    Kb = ds.frames[b].K
    centre_b = camera_centers(Vb[None])[0]
    v, u = np.nonzero(m["depth"][a] > 0)
    X = _unproject(ds, a, v, u)
    la, na = m["labels"][a][v, u], m["normals"][a][v, u].astype(np.float64)
    xc = X @ Vb[:3, :3].T + Vb[:3, 3]
    zb = xc[:, 2]
    ui = np.floor(Kb[0, 0] * xc[:, 0] / zb + Kb[0, 2]).astype(np.int64)
    vi = np.floor(Kb[1, 1] * xc[:, 1] / zb + Kb[1, 2]).astype(np.int64)
    inside = (ui >= 0) & (vi >= 0) & (ui < w) & (vi < h) & (zb > 0)
    ui, vi = np.clip(ui, 0, w - 1), np.clip(vi, 0, h - 1)
    rays = (X - centre_b) / np.linalg.norm(X - centre_b, axis=1, keepdims=True)
    nb = m["normals"][b][vi, ui].astype(np.float64)
    facing = -np.einsum("ij,ij->i", na, rays)
    ok = inside & (m["labels"][b][vi, ui] == la) & (facing > 0.6)
    ok &= np.einsum("ij,ij->i", na, nb) > 0.99  # same face, not across a cube edge
    zpix = m["depth"][b][vi[ok], ui[ok]].astype(np.float64)
    cam = np.stack(
        [
            (ui[ok] + 0.5 - Kb[0, 2]) / Kb[0, 0] * zpix,
            (vi[ok] + 0.5 - Kb[1, 2]) / Kb[1, 1] * zpix,
            zpix,
        ],
        axis=1,
    )
    Y = (cam - Vb[:3, 3]) @ Vb[:3, :3]  # B's depth map, unprojected with B's pose
    s = np.einsum("ij,ij->i", nb[ok], Y - centre_b) / np.einsum("ij,ij->i", nb[ok], rays[ok])
    z_from_b = s * (rays[ok] @ Vb[2, :3])
    return np.abs(z_from_b - zb[ok]) / zb[ok], la[ok]


def test_depth_reprojects_consistently_between_views(demo: Dataset) -> None:
    """Planar surfaces (floor, cube faces) agree to float precision, curved ones within 1e-3
    (the tangent-plane approximation; measured max 5.7e-4)."""
    checked: dict[int, int] = {}
    for a, b in [(1, 2), (3, 10), (5, 20), (40, 46)]:
        rel, labels = _reprojection_errors(demo, a, b)
        assert len(rel) > 1000, (a, b, len(rel))
        assert rel.max() < 1e-3, (a, b, rel.max())
        planar = np.isin(labels, [1, 2])
        assert planar.sum() > 500 and rel[planar].max() < 1e-5, (a, b, rel[planar].max())
        for lab in np.unique(labels):
            checked[int(lab)] = checked.get(int(lab), 0) + int((labels == lab).sum())
    assert all(checked.get(o.label, 0) >= 50 for o in SCENE_OBJECTS), checked


def test_depth_check_detects_a_wrong_pose(demo: Dataset) -> None:
    """The reprojection check is not vacuous: with B's pose moved by 1 cm along its optical axis
    (or with the y/z axes flipped, the OpenGL/OpenCV mix-up), the floor no longer agrees."""
    a, b = 1, 2
    moved = demo.frames[b].viewmat.copy()
    moved[2, 3] += 0.01
    rel, labels = _reprojection_errors(demo, a, b, moved)
    assert np.median(rel[labels == 1]) > 1e-4
    flipped = np.diag([1.0, -1.0, -1.0, 1.0]) @ demo.frames[b].viewmat
    rel, _ = _reprojection_errors(demo, a, b, flipped)
    assert len(rel) < 1000 or rel.max() > 1e-3  # would fail the check above


def test_normals_unit_and_exact_on_spheres_floor_and_cube(demo: Dataset) -> None:
    m = demo.meta
    fg = m["labels"] > 0
    lengths = np.linalg.norm(m["normals"][fg], axis=-1)
    assert np.abs(lengths - 1.0).max() < 1e-6
    by_label = {o.label: o for o in SCENE_OBJECTS}
    n_sphere_px = 0
    for i in (0, 9, 27, 44):
        for obj in SCENE_OBJECTS:
            v, u = np.nonzero(m["labels"][i] == obj.label)
            if v.size == 0:
                continue
            p = _unproject(demo, i, v, u)
            n = m["normals"][i][v, u]
            if obj.kind == "sphere":
                expected = (p - np.asarray(obj.center)) / obj.size[0]
                assert np.abs(n - expected).max() < 1e-4, obj.name
                n_sphere_px += v.size
            elif obj.kind == "disk":
                np.testing.assert_array_equal(n, np.broadcast_to([0.0, 0.0, 1.0], n.shape))
    assert n_sphere_px > 1000
    # Every cube normal is one of its 5 visible face normals (yawed box axes).
    cube = by_label[2]
    yaw = np.radians(cube.yaw_deg)
    axes = np.array([[np.cos(yaw), np.sin(yaw), 0], [-np.sin(yaw), np.cos(yaw), 0], [0, 0, 1.0]])
    faces = np.concatenate([axes, -axes[:2]])
    n = m["normals"][m["labels"] == 2].astype(np.float64)
    assert len(n) > 1000
    assert np.abs(n @ faces.T).max(axis=1).min() > 1 - 1e-6


def test_labels_cover_every_object_with_names(demo: Dataset) -> None:
    m = demo.meta
    names = m["label_names"]
    assert names[0] == "background" and len(names) == len(SCENE_OBJECTS) + 1
    assert len(set(names)) == len(names)
    for obj in SCENE_OBJECTS:
        assert names[obj.label] == obj.name
        per_view = (m["labels"] == obj.label).sum(axis=(1, 2))
        assert per_view.max() >= 150, (obj.name, per_view.max())
        assert (per_view > 0).sum() >= 40, obj.name  # seen (not always fully) in most views
    glossy = {names[i] for i in m["glossy_labels"]}
    assert glossy == {"chrome ball", "glossy blue ball"}
    assert [o["label"] for o in m["objects"]] == list(range(1, len(names)))
    # Objects other than the floor are framed: none touches the image border in any view.
    border = np.concatenate(
        [m["labels"][:, 0], m["labels"][:, -1], m["labels"][:, :, 0], m["labels"][:, :, -1]], axis=1
    )
    assert border.max() <= 1


def test_world_up_appears_up_in_the_images(demo: Dataset) -> None:
    """The top of the chrome ball is above (smaller v than) its bottom in every view."""
    ball = next(o for o in SCENE_OBJECTS if o.name == "chrome ball")
    c, r = np.asarray(ball.center), ball.size[0]
    for i in range(len(demo)):
        _, v, _ = _project(demo, i, np.array([c + [0, 0, r], c - [0, 0, r]]))
        assert v[0] < v[1] - 10, i


def test_object_label_at_matches_rendered_labels(demo: Dataset) -> None:
    m = demo.meta
    for i in (2, 30):
        v, u = np.nonzero(m["labels"][i] > 0)
        got = object_label_at(_unproject(demo, i, v, u), tol=1e-4)
        assert (got == m["labels"][i][v, u]).mean() > 0.999
    centres = np.array([o.center for o in SCENE_OBJECTS[1:]])
    np.testing.assert_array_equal(object_label_at(centres), [o.label for o in SCENE_OBJECTS[1:]])
    chrome = SCENE_OBJECTS[4]
    out = np.asarray(chrome.center) + [0.0, 0.0, chrome.size[0]]
    pts = np.array([[0.0, -0.7, 0.0], [0.0, 0.0, 2.0], out + [0, 0, 0.01], out + [0, 0, 0.05]])
    np.testing.assert_array_equal(object_label_at(pts, tol=0.02), [1, 0, chrome.label, 0])
    with pytest.raises(DataError):
        object_label_at(np.zeros((4, 2)))


def test_glossy_points_are_view_dependent_matte_points_are_not(small: Dataset) -> None:
    """Trace the same surface points from two cameras 90 degrees apart: matte colours agree to
    1e-5, glossy ones change (measured means: chrome ~0.30, blue ~0.05)."""
    m = small.meta
    centres = camera_centers(small.viewmats)
    a, b = 0, 2
    v, u = np.nonzero(m["labels"][a] > 0)
    X = _unproject(small, a, v, u)
    from_a = trace_rays(np.broadcast_to(centres[a], X.shape), X - centres[a])
    P = from_a.points
    from_b = trace_rays(np.broadcast_to(centres[b], P.shape), P - centres[b])
    visible = (np.linalg.norm(from_b.points - P, axis=1) < 1e-9) & (from_b.labels == from_a.labels)
    diff = np.abs(from_a.rgb - from_b.rgb).max(axis=1)
    for obj in SCENE_OBJECTS:
        sel = visible & (from_a.labels == obj.label)
        if obj.glossy:
            assert sel.sum() >= 50, obj.name
            bound = 0.15 if obj.name == "chrome ball" else 0.025
            assert diff[sel].mean() > bound, (obj.name, diff[sel].mean())
        elif sel.any():
            assert diff[sel].max() < 1e-5, (obj.name, diff[sel].max())
    matte = visible & ~np.isin(from_a.labels, m["glossy_labels"])
    assert matte.sum() > 1000
    # The images are these shaded colours: a view's pixels are the mean of its sub-rays.
    assert np.abs(small.load_image(a)[v, u] - from_a.rgb).mean() < 0.05


def test_envmap_sampling_reproduces_pixel_centres() -> None:
    env = make_envmap(16)
    assert env.shape == (16, 32, 3)
    i, j = np.meshgrid(np.arange(16), np.arange(32), indexing="ij")
    theta = np.pi * (i + 0.5) / 16
    phi = 2 * np.pi * (j + 0.5) / 32 - np.pi
    dirs = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1)
    got = sample_envmap(env, dirs.reshape(-1, 3)).reshape(16, 32, 3)
    assert np.abs(got - env).max() < 1e-6
    # The sun (brightest blob) is where the diffuse light comes from.
    sun = sample_envmap(make_envmap(), SUN_DIR[None])[0]
    assert sun.min() > 0.8 and SUN_DIR[2] > 0.5


def test_points_lie_on_the_surfaces(small: Dataset) -> None:
    assert small.points.shape == (500, 3) and small.points.dtype == np.float32
    assert small.points_rgb.shape == (500, 3) and small.points_rgb.dtype == np.uint8
    labels = object_label_at(small.points, tol=0.02)
    assert (labels > 0).mean() > 0.98
    assert len(np.unique(labels[labels > 0])) == len(SCENE_OBJECTS)


def test_bad_config_is_rejected() -> None:
    with pytest.raises(DataError, match="n_views"):
        make_demo_scene(DemoConfig(n_views=1))
    with pytest.raises(DataError, match="radius"):
        make_demo_scene(DemoConfig(radius=0.5))


def test_write_demo_dataset_round_trips(tmp_path: Path) -> None:
    cfg = DemoConfig(n_views=9, width=64, height=48, n_points=300)
    ds = make_demo_scene(cfg)
    out = write_demo_dataset(tmp_path / "demo", cfg)
    assert out == tmp_path / "demo"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no temp folders left
    meta = json.loads((out / "transforms.json").read_text())
    assert (meta["w"], meta["h"]) == (64, 48)
    K = ds.frames[0].K
    assert (meta["fl_x"], meta["fl_y"], meta["cx"], meta["cy"]) == (
        K[0, 0],
        K[1, 1],
        K[0, 2],
        K[1, 2],
    )
    assert len(meta["frames"]) == 9
    assert meta["test_filenames"] == ["images/frame_0000.png", "images/frame_0008.png"]
    assert len(meta["train_filenames"]) == 7
    for i, fr in enumerate(meta["frames"]):
        viewmat = opengl_c2w_to_opencv_viewmat(np.asarray(fr["transform_matrix"]))
        assert np.abs(viewmat - ds.frames[i].viewmat).max() < 1e-12
        assert fr["file_path"] == ds.frames[i].name
        img = iio.imread(out / fr["file_path"])
        expected = np.clip(np.round(ds.load_image(i) * 255), 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(img, expected)
        np.testing.assert_array_equal(
            np.load(out / "gt" / f"depth_{i:04d}.npy"), ds.meta["depth"][i]
        )
        np.testing.assert_array_equal(
            np.load(out / "gt" / f"normals_{i:04d}.npy"), ds.meta["normals"][i]
        )
        np.testing.assert_array_equal(
            iio.imread(out / "gt" / f"labels_{i:04d}.png"), ds.meta["labels"][i]
        )
    gt = json.loads((out / "gt" / "labels.json").read_text())
    assert gt["label_names"] == ds.meta["label_names"]
    assert gt["glossy_labels"] == ds.meta["glossy_labels"]
    np.testing.assert_array_equal(np.load(out / "gt" / "envmap.npy"), ds.meta["envmap"])
    ply = PlyData.read(str(out / meta["ply_file_path"]))["vertex"]
    assert ply.count == 300
    np.testing.assert_array_equal(np.stack([ply["x"], ply["y"], ply["z"]], 1), ds.points)
    # Existing folders are never clobbered by accident, and replaced whole on request.
    with pytest.raises(DataError, match="already exists"):
        write_demo_dataset(out, cfg)
    (out / "stale.txt").write_text("old")
    write_demo_dataset(out, DemoConfig(n_views=3, width=32, height=24, n_points=10), overwrite=True)
    assert not (out / "stale.txt").exists()
    assert len(json.loads((out / "transforms.json").read_text())["frames"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
