"""nerfstudio / instant-ngp transforms.json: conventions proven by reprojection, undistortion,
downscale, bad input, and the real fox capture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from splatlab.errors import DataError
from splatlab.scene.datasets import load_dataset, load_nerfstudio
from splatlab.scene.datasets.images import Distortion


def write_transforms(
    root: Path,
    scene,
    helpers,
    *,
    per_frame: bool = True,
    ext: bool = True,
    applied: np.ndarray | None = None,
    ply: bool = False,
    extra: dict | None = None,
) -> Path:
    """Write ``scene`` as a transforms.json (OpenGL c2w) with tiny noise images."""
    frames = []
    for i, V in enumerate(scene.viewmats):
        name = f"images/frame_{i:03d}"
        helpers.write_image(
            root / f"{name}.png", helpers.noise_image(scene.width, scene.height, seed=i)
        )
        c2w = helpers.gl_c2w(V)
        if applied is not None:
            c2w = applied @ c2w  # the file's world is applied @ original
        fr = {"file_path": name + (".png" if ext else ""), "transform_matrix": c2w.tolist()}
        if per_frame:
            K = scene.Ks[i]
            fr.update(fl_x=K[0, 0], fl_y=K[1, 1], cx=K[0, 2], cy=K[1, 2])
        frames.append(fr)
    meta: dict = {"w": scene.width, "h": scene.height, "frames": frames}
    if not per_frame:
        K = scene.Ks[0]
        meta.update(fl_x=K[0, 0], fl_y=K[1, 1], cx=K[0, 2], cy=K[1, 2])
    if applied is not None:
        meta["applied_transform"] = applied[:3].tolist()
    if ply:
        pts = scene.points if applied is None else scene.points @ applied[:3, :3].T + applied[:3, 3]
        v = np.empty(
            len(pts),
            dtype=[
                ("x", "f4"),
                ("y", "f4"),
                ("z", "f4"),
                ("red", "u1"),
                ("green", "u1"),
                ("blue", "u1"),
            ],
        )
        v["x"], v["y"], v["z"] = pts.T
        v["red"], v["green"], v["blue"] = scene.colors.T
        PlyData([PlyElement.describe(v, "vertex")]).write(str(root / "points.ply"))
        meta["ply_file_path"] = "points.ply"
    meta.update(extra or {})
    path = root / "transforms.json"
    path.write_text(json.dumps(meta))
    return path


def test_reprojection_after_normalisation(tmp_path: Path, ds_synth) -> None:
    scene = ds_synth.make_scene()
    write_transforms(tmp_path, scene, ds_synth)
    ds = load_dataset(tmp_path)
    assert ds.meta["format"] == "nerfstudio" and len(ds) == len(scene.viewmats)
    assert [f.name for f in ds.frames] == [f"images/frame_{i:03d}.png" for i in range(len(ds))]
    assert ds_synth.reprojection_error(ds, scene) < 1e-4
    # the normalisation: centres around 0, farthest at 1, mean up along +z, recorded scale
    from splatlab.scene.cameras import camera_centers

    c = camera_centers(ds.viewmats)
    np.testing.assert_allclose(c.mean(0), 0, atol=1e-9)
    assert abs(np.linalg.norm(c, axis=1).max() - 1.0) < 1e-9
    up = -ds.viewmats[:, 1, :3].mean(0)
    np.testing.assert_allclose(up / np.linalg.norm(up), [0, 0, 1], atol=1e-9)
    R = ds.transform[:3, :3] / ds.scale
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert abs(ds.scale - 1 / 4.0) < 0.05  # cameras were ~4 units from their centre
    # split: every 8th view, unless test_every says otherwise
    assert ds.test_ids == [0] and ds.train_ids == [1, 2, 3, 4, 5]
    ds3 = load_dataset(tmp_path, test_every=3, normalize=False)
    assert ds3.test_ids == [0, 3] and ds_synth.reprojection_error(ds3, scene) < 1e-4
    np.testing.assert_array_equal(ds3.transform, np.eye(4))


def test_downscale_two_scales_K(tmp_path: Path, ds_synth) -> None:
    scene = ds_synth.make_scene(width=64, height=48)
    write_transforms(tmp_path, scene, ds_synth, per_frame=True)
    ds = load_dataset(tmp_path, downscale=2)
    assert all((f.width, f.height) == (32, 24) for f in ds.frames)
    assert ds_synth.reprojection_error(ds, scene, sx=0.5, sy=0.5) < 1e-4
    img = ds.load_image(2)
    assert img.shape == (24, 32, 3)
    full = ds_synth.noise_image(64, 48, seed=2) / 255.0
    np.testing.assert_allclose(img, full.reshape(24, 2, 32, 2, 3).mean((1, 3)), atol=0.6 / 255)


def test_global_intrinsics_angle_and_no_extension(tmp_path: Path, ds_synth) -> None:
    scene = ds_synth.make_scene(same_K=True)
    fov_x = 2 * np.arctan(0.5 * scene.width / scene.Ks[0][0, 0])
    fov_y = 2 * np.arctan(0.5 * scene.height / scene.Ks[0][1, 1])
    write_transforms(
        tmp_path,
        scene,
        ds_synth,
        per_frame=False,
        ext=False,
        extra={"camera_angle_x": fov_x, "camera_angle_y": fov_y, "aabb_scale": 4},
    )
    meta = json.loads((tmp_path / "transforms.json").read_text())
    for k in ("fl_x", "fl_y", "cx", "cy"):
        del meta[k]  # instant-ngp style: only the field of view
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    ds = load_nerfstudio(tmp_path / "transforms.json")
    assert ds.meta["aabb_scale"] == 4
    assert ds_synth.reprojection_error(ds, scene) < 1e-4


def test_applied_transform_and_ply_points(tmp_path: Path, ds_synth) -> None:
    scene = ds_synth.make_scene()
    A = np.eye(4)
    A[:3, :3] = [[1, 0, 0], [0, 0, 1], [0, -1, 0]]  # ns-process-data's COLMAP -> z-up rotation
    A[:3, 3] = [0.5, -2.0, 1.0]
    write_transforms(tmp_path, scene, ds_synth, applied=A, ply=True)
    ds = load_dataset(tmp_path)
    # Dataset.transform maps the ORIGINAL (pre-applied) world: reprojection with original points
    assert ds_synth.reprojection_error(ds, scene) < 1e-4
    want = scene.points @ ds.transform[:3, :3].T + ds.transform[:3, 3]
    np.testing.assert_allclose(ds.points, want, atol=1e-5)
    np.testing.assert_array_equal(ds.points_rgb, scene.colors)
    # the points, as loaded, reproject where the fixture's cameras saw the original points
    for i in range(len(ds)):
        got = ds_synth.project(ds.points.astype(np.float64), ds.frames[i].viewmat, ds.frames[i].K)
        np.testing.assert_allclose(got, scene.project(i), atol=1e-3)  # float32 points


def test_undistortion_puts_dots_at_pinhole_projection(tmp_path: Path, ds_synth) -> None:
    W, H, fx, fy, cx, cy = 160, 120, 110.0, 112.0, 80.7, 59.4
    k1, k2, p1, p2 = 0.1, -0.05, 0.002, -0.003
    gx, gy = np.meshgrid(np.linspace(-0.55, 0.55, 6), np.linspace(-0.4, 0.4, 5))
    xy = np.stack([gx.ravel(), gy.ravel()], 1)
    dist = ds_synth.distort_opencv(xy, k1, k2, p1, p2)
    seen = dist * [fx, fy] + [cx, cy]
    pinhole = xy * [fx, fy] + [cx, cy]
    assert np.abs(seen - pinhole).max() > 2.0  # the lens moves dots by pixels
    ds_synth.write_image(tmp_path / "images" / "a.png", ds_synth.dot_image(seen, W, H))
    meta = {
        "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": W, "h": H,
        "k1": k1, "k2": k2, "p1": p1, "p2": p2,
        "frames": [{"file_path": "images/a.png", "transform_matrix": np.eye(4).tolist()}],
    }  # fmt: skip
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    for d in (1, 2):
        ds = load_dataset(tmp_path, downscale=d, normalize=False)
        f = ds.frames[0]
        # the same K, cropped to the pixels the lens saw (a size divisible by d), then downscaled
        x0, y0, x1, y1 = Distortion(fx, fy, cx, cy, "opencv", (k1, k2, p1, p2)).crop_box(W, H, d)
        assert (x1 - x0) % d == 0 and (y1 - y0) % d == 0
        assert (f.width, f.height) == ((x1 - x0) // d, (y1 - y0) // d)
        np.testing.assert_allclose(
            f.K, [[fx / d, 0, (cx - x0) / d], [0, fy / d, (cy - y0) / d], [0, 0, 1]]
        )
        assert f.image_path != tmp_path / "images" / "a.png"  # an undistorted cached copy
        img = ds.load_image(0)
        want = (pinhole - [x0, y0]) / d
        got = ds_synth.dot_centroids(img, want, radius=5 // d + 1)
        err = np.abs(got - want).max()
        assert err < 0.5 / d, (d, err)
        # without undistortion the dots are off by pixels (the test can fail)
        raw = ds_synth.dot_centroids(ds_synth.dot_image(seen, W, H) / 65535.0, pinhole, 5)
        assert np.abs(raw - pinhole).max() > 1.5


def test_bad_inputs_name_the_file(tmp_path: Path, ds_synth) -> None:
    scene = ds_synth.make_scene(n_cams=3)
    path = write_transforms(tmp_path, scene, ds_synth)
    good = json.loads(path.read_text())

    def with_meta(meta: dict) -> None:
        path.write_text(json.dumps(meta))

    with_meta({k: v for k, v in good.items() if k != "frames"})
    with pytest.raises(DataError, match=r"transforms\.json has no 'frames'"):
        load_dataset(tmp_path)
    with_meta({**good, "frames": []})
    with pytest.raises(DataError, match="transforms.json"):
        load_dataset(tmp_path)

    bad = json.loads(json.dumps(good))
    bad["frames"][1]["transform_matrix"][0][3] = float("nan")
    path.write_text(json.dumps(bad).replace("NaN", "NaN"))
    with pytest.raises(
        DataError, match=r"frame 1 \(images/frame_001.png\) of .*transforms\.json.*NaN"
    ):
        load_dataset(tmp_path)

    bad = json.loads(json.dumps(good))
    bad["frames"][2]["transform_matrix"][0][0] *= 2.0  # scaled axis: not a rotation
    with_meta(bad)
    with pytest.raises(DataError, match=r"frame 2 .*not a rigid"):
        load_dataset(tmp_path)

    path.write_text("{ not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_dataset(tmp_path)

    with_meta(good)
    (tmp_path / "images" / "frame_001.png").unlink()
    with pytest.raises(DataError, match=r"frame_001\.png not found"):
        load_dataset(tmp_path, missing_images="error")
    ds = load_dataset(tmp_path)  # default: skip the frame, say so
    assert len(ds) == 2 and ds.meta["skipped_frames"] == ["images/frame_001.png"]
    for f in ("frame_000.png", "frame_002.png"):
        (tmp_path / "images" / f).unlink()
    with pytest.raises(DataError, match="none of the 3 images"):
        load_dataset(tmp_path)

    write_transforms(tmp_path, scene, ds_synth)
    (tmp_path / "images" / "frame_002.png").write_bytes(b"\x89PNG garbage" * 20)
    with pytest.raises(DataError, match=r"frame_002\.png"):
        load_dataset(tmp_path)

    write_transforms(tmp_path, scene, ds_synth)
    meta = json.loads(path.read_text())
    meta["w"] = scene.width + 2
    with_meta(meta)
    with pytest.raises(DataError, match=r"frame_000\.png is 64x48 .* camera says 66x48"):
        load_dataset(tmp_path)


@pytest.mark.data
def test_fox_downscale4(ds_data_dir: Path, ds_cache: Path) -> None:
    fox = ds_data_dir / "fox"
    meta = json.loads((fox / "transforms.json").read_text())
    ds = load_dataset(fox, downscale=4)
    assert len(ds) == 50 and len(ds.meta["skipped_frames"]) == 17  # 17 listed photos not shipped
    assert len(ds.test_ids) == 7 and len(ds.train_ids) == 43
    # undistorted into the same K, cropped to the pixels the lens saw (no black border), / 4
    lens = (meta["k1"], meta["k2"], meta["p1"], meta["p2"])
    x0, y0, x1, y1 = Distortion(
        meta["fl_x"], meta["fl_y"], meta["cx"], meta["cy"], "opencv", lens
    ).crop_box(1080, 1920, 4)
    assert 1040 <= x1 - x0 < 1080 and 1880 <= y1 - y0 < 1920  # a thin border only
    w, h = (x1 - x0) // 4, (y1 - y0) // 4
    K_want = np.array(
        [[meta["fl_x"], 0, meta["cx"] - x0], [0, meta["fl_y"], meta["cy"] - y0], [0, 0, 1]]
    )
    K_want[:2] /= 4
    for i, f in enumerate(ds.frames):
        assert (f.width, f.height) == (w, h)
        np.testing.assert_allclose(f.K, K_want, rtol=1e-12)
        img = ds.load_image(i)
        assert img.shape == (h, w, 3) and 0.05 < img.mean() < 0.95
        # no black border line (same-K undistortion left 76-100 % black outer rows / columns)
        for line in (img[0], img[-1], img[:, 0], img[:, -1]):
            assert (line.max(-1) < 0.02).mean() < 0.1
        assert Path(f.image_path).is_relative_to(ds_cache)  # never written into ../shared/data
    # the cameras look at a common point: least-squares closest point of the optical axes
    Rs, ts = ds.viewmats[:, :3, :3], ds.viewmats[:, :3, 3]
    centers = -np.einsum("cji,cj->ci", Rs, ts)
    dirs = Rs[:, 2, :]  # camera +z (forward) in world coordinates
    P = np.eye(3)[None] - dirs[:, :, None] * dirs[:, None, :]
    target = np.linalg.solve(P.sum(0), np.einsum("cij,cj->i", P, centers))
    cam = np.einsum("cij,j->ci", Rs, target) + ts
    assert (cam[:, 2] > 0.3).all()  # in front of every camera (normalised units)
    uv = cam @ ds.Ks[0].T
    uv = uv[:, :2] / uv[:, 2:]
    inside = (uv[:, 0] > 0) & (uv[:, 0] < w) & (uv[:, 1] > 0) & (uv[:, 1] < h)
    assert inside.all()
    # reloading uses the cache
    again = load_dataset(fox, downscale=4)
    assert [f.image_path for f in again.frames] == [f.image_path for f in ds.frames]
