"""COLMAP sparse models (text written by hand, binary written by pycolmap): conventions proven by
reprojection, undistortion of distorted camera models, points, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pycolmap
import pytest

from splatlab.errors import DataError
from splatlab.scene.datasets import detect_format, load_colmap, load_dataset
from splatlab.scene.datasets.images import Distortion


def rot_to_qvec(R: np.ndarray) -> np.ndarray:
    """Rotation matrix -> unit quaternion (w, x, y, z), COLMAP's order (Shepperd's method)."""
    m = R
    tr = np.trace(m)
    if tr > 0:
        s = 2 * np.sqrt(tr + 1)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2 * np.sqrt(1 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0] * 4
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    q = np.array(q)
    return q / np.linalg.norm(q)


def write_text_model(
    model: Path,
    scene,
    names: list[str],
    cameras: list[tuple[str, list[float]]],
    cam_of_image: list[int],
    points: bool = True,
) -> None:
    """cameras.txt / images.txt / points3D.txt in COLMAP's text format. Images are listed in
    reverse order with descending ids, so the loader must sort them itself."""
    model.mkdir(parents=True, exist_ok=True)
    lines = ["# CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    for cid, (mname, params) in enumerate(cameras, start=1):
        p = " ".join(repr(float(x)) for x in params)
        lines.append(f"{cid} {mname} {scene.width} {scene.height} {p}")
    (model / "cameras.txt").write_text("\n".join(lines) + "\n")
    lines = ["# IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME", "# POINTS2D[]"]
    for i in reversed(range(len(names))):
        V = scene.viewmats[i]
        q = rot_to_qvec(V[:3, :3])
        t = V[:3, 3]
        vals = " ".join(repr(float(x)) for x in [*q, *t])
        lines += [f"{100 - i} {vals} {cam_of_image[i] + 1} {names[i]}", ""]
    (model / "images.txt").write_text("\n".join(lines) + "\n")
    lines = ["# POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[]"]
    if points:
        for j, (p, c) in enumerate(zip(scene.points, scene.colors), start=1):
            x, y, z = (repr(float(v)) for v in p)
            lines.append(f"{j} {x} {y} {z} {c[0]} {c[1]} {c[2]} 0.5")
    (model / "points3D.txt").write_text("\n".join(lines) + "\n")


def make_colmap(root: Path, scene, helpers, model_name: str = "PINHOLE") -> list[str]:
    names = [f"img_{i:02d}.png" for i in range(len(scene.viewmats))]
    for i, n in enumerate(names):
        helpers.write_image(root / "images" / n, helpers.noise_image(scene.width, scene.height, i))
    if model_name == "PINHOLE":
        cams = [("PINHOLE", [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]) for K in scene.Ks]
        cam_of = list(range(len(names)))
    else:  # SIMPLE_PINHOLE, one shared camera
        K = scene.Ks[0]
        cams = [("SIMPLE_PINHOLE", [K[0, 0], K[0, 2], K[1, 2]])]
        cam_of = [0] * len(names)
    write_text_model(root / "sparse" / "0", scene, names, cams, cam_of)
    return names


def test_text_model_reprojection_and_points(tmp_path: Path, ds_synth) -> None:
    scene = ds_synth.make_scene(n_cams=9)
    names = make_colmap(tmp_path, scene, ds_synth)
    assert detect_format(tmp_path) == "colmap"
    ds = load_dataset(tmp_path)
    assert [f.name for f in ds.frames] == [f"images/{n}" for n in names]  # sorted by name
    assert ds_synth.reprojection_error(ds, scene) < 1e-4
    assert ds.test_ids == [0, 8] and len(ds.train_ids) == 7
    want = scene.points @ ds.transform[:3, :3].T + ds.transform[:3, 3]
    np.testing.assert_allclose(ds.points, want, atol=1e-5)
    np.testing.assert_array_equal(ds.points_rgb, scene.colors)
    assert ds.meta["camera_models"] == ["PINHOLE"]
    np.testing.assert_allclose(ds.load_image(3), ds_synth.noise_image(64, 48, 3) / 255.0, atol=1e-6)


def test_binary_model_simple_pinhole_downscale(tmp_path: Path, ds_synth) -> None:
    scene = ds_synth.make_scene(same_K=True)
    make_colmap(tmp_path / "txt", scene, ds_synth, model_name="SIMPLE_PINHOLE")
    rec = pycolmap.Reconstruction(str(tmp_path / "txt" / "sparse" / "0"))
    binary = tmp_path / "bin"
    (binary / "sparse").mkdir(parents=True)
    rec.write_binary(str(binary / "sparse"))
    assert (binary / "sparse" / "cameras.bin").is_file()
    (binary / "images").symlink_to(tmp_path / "txt" / "images")
    ds = load_dataset(binary, downscale=2)
    assert all((f.width, f.height) == (32, 24) for f in ds.frames)
    assert ds_synth.reprojection_error(ds, scene, sx=0.5, sy=0.5) < 1e-4
    # the model folder itself, with the images given explicitly, not normalised
    ds2 = load_colmap(binary / "sparse", images_dir=tmp_path / "txt" / "images")
    assert ds_synth.reprojection_error(ds2, scene) < 1e-4
    np.testing.assert_allclose(ds2.points, scene.points, atol=1e-6)


@pytest.mark.parametrize("model_name", ["OPENCV", "SIMPLE_RADIAL", "FULL_OPENCV"])
def test_distorted_models_are_undistorted(tmp_path: Path, ds_synth, model_name: str) -> None:
    W, H, fx, fy, cx, cy = 160, 120, 110.0, 112.0, 80.7, 59.4
    if model_name == "OPENCV":
        k = (0.1, -0.05, 0.002, -0.003)
        params = [fx, fy, cx, cy, *k]
    elif model_name == "FULL_OPENCV":  # k3..k6 zero: the same lens as OPENCV, other parser path
        k = (-0.08, 0.02, -0.002, 0.001)
        params = [fx, fy, cx, cy, *k, 0, 0, 0, 0]
    else:
        fy = fx
        k = (-0.12, 0.0, 0.0, 0.0)
        params = [fx, cx, cy, k[0]]
    gx, gy = np.meshgrid(np.linspace(-0.55, 0.55, 6), np.linspace(-0.4, 0.4, 5))
    xy = np.stack([gx.ravel(), gy.ravel()], 1)
    seen = ds_synth.distort_opencv(xy, *k) * [fx, fy] + [cx, cy]
    pinhole = xy * [fx, fy] + [cx, cy]
    assert np.abs(seen - pinhole).max() > 2.0
    ds_synth.write_image(tmp_path / "images" / "a.png", ds_synth.dot_image(seen, W, H))
    scene = ds_synth.make_scene(n_cams=1, width=W, height=H)
    write_text_model(tmp_path / "sparse" / "0", scene, ["a.png"], [(model_name, params)], [0])
    ds = load_dataset(tmp_path, normalize=False)
    f = ds.frames[0]
    # the same K, cropped to the pixels the lens saw (COLMAP's image_undistorter does the same)
    x0, y0, x1, y1 = Distortion(fx, fy, cx, cy, f"colmap:{model_name}", tuple(params)).crop_box(
        W, H
    )
    assert 0 < (x1 - x0) * (y1 - y0) <= W * H and (f.width, f.height) == (x1 - x0, y1 - y0)
    np.testing.assert_allclose(f.K, [[fx, 0, cx - x0], [0, fy, cy - y0], [0, 0, 1]])
    img = ds.load_image(0)
    assert img.shape[:2] == (f.height, f.width)
    got = ds_synth.dot_centroids(img, pinhole - [x0, y0], radius=5)
    assert np.abs(got - (pinhole - [x0, y0])).max() < 0.5


def test_bad_models(tmp_path: Path, ds_synth) -> None:
    scene = ds_synth.make_scene(n_cams=3)
    names = make_colmap(tmp_path, scene, ds_synth)
    model = tmp_path / "sparse" / "0"
    good_images = (model / "images.txt").read_text()

    (model / "images.txt").write_text("# no images\n")
    with pytest.raises(DataError, match=r"sparse/0 has no registered images"):
        load_dataset(tmp_path)

    (model / "images.txt").write_text(good_images)
    (tmp_path / "images" / names[1]).unlink()
    with pytest.raises(DataError, match=rf"{names[1]} of the COLMAP model"):
        load_dataset(tmp_path, missing_images="error")
    ds = load_dataset(tmp_path)
    assert len(ds) == 2 and ds.meta["skipped_frames"] == [names[1]]

    (tmp_path / "images" / names[2]).write_bytes(b"garbage" * 50)
    with pytest.raises(DataError, match=names[2]):
        load_dataset(tmp_path)

    (model / "cameras.txt").write_text("1 PINHOLE 64 48 not numbers\n")
    with pytest.raises(DataError, match="cannot read the COLMAP model"):
        load_dataset(tmp_path)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        DataError, match=r"looked for: .*transforms\.json.*COLMAP.*structure-from-motion"
    ):
        load_dataset(empty)
    with pytest.raises(DataError, match="no COLMAP model"):
        load_colmap(empty)
