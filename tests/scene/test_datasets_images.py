"""Image reading, masks, and the downscale / undistortion cache."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from splatlab.errors import DataError
from splatlab.scene.datasets.images import (
    Distortion,
    cache_root,
    cached_image,
    process_image,
    read_mask,
    read_rgb,
    undistort_points,
)


def test_read_rgb_8bit_16bit_gray_rgba(tmp_path: Path, ds_synth) -> None:
    rgb8 = ds_synth.noise_image(7, 5, seed=1)
    p = ds_synth.write_image(tmp_path / "a.png", rgb8)
    out = read_rgb(p)
    assert out.dtype == np.float32 and out.shape == (5, 7, 3)
    np.testing.assert_allclose(out, rgb8 / 255.0, atol=1e-7)

    rgb16 = np.random.default_rng(2).integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    out16 = read_rgb(ds_synth.write_image(tmp_path / "b16.png", rgb16))
    np.testing.assert_allclose(out16, rgb16 / 65535.0, atol=1e-7)

    gray = np.arange(35, dtype=np.uint8).reshape(5, 7) * 7
    outg = read_rgb(ds_synth.write_image(tmp_path / "g.png", gray))
    np.testing.assert_allclose(outg, np.repeat(gray[..., None], 3, 2) / 255.0, atol=1e-7)

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (255, 0, 0, 0)  # transparent
    rgba[1, 0] = (0, 0, 255, 51)  # 20 % blue
    p = ds_synth.write_image(tmp_path / "rgba.png", rgba)
    on_black = read_rgb(p)
    on_white = read_rgb(p, background=(1.0, 1.0, 1.0))
    np.testing.assert_allclose(on_black[0, 0], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(on_black[0, 1], [0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(on_white[0, 1], [1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(on_white[1, 0], [0.8, 0.8, 1.0], atol=1e-6)
    np.testing.assert_allclose(on_black[1, 0], [0.0, 0.0, 0.2], atol=1e-6)


def test_read_rgb_bad_files_name_the_file(tmp_path: Path, ds_synth) -> None:
    garbage = tmp_path / "broken.png"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match="broken.png"):
        read_rgb(garbage)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.jpg"):
        read_rgb(empty)
    with pytest.raises(DataError, match="nothere.png"):
        read_rgb(tmp_path / "nothere.png")
    p = ds_synth.write_image(tmp_path / "ok.png", ds_synth.noise_image(8, 6, 0))
    with pytest.raises(DataError, match=r"ok.png is 8x6"):
        read_rgb(p, expect_hw=(8, 6))
    assert read_rgb(p, expect_hw=(6, 8)).shape == (6, 8, 3)


def test_read_mask(tmp_path: Path, ds_synth) -> None:
    m = np.zeros((4, 5), np.uint8)
    m[1:3, 2:4] = 255
    got = read_mask(ds_synth.write_image(tmp_path / "m.png", m), expect_hw=(4, 5))
    assert got.dtype == bool and got.sum() == 4 and got[1, 2] and not got[0, 0]
    rgba = np.full((4, 5, 4), 200, np.uint8)
    rgba[..., 3] = 0
    rgba[0, 0, 3] = 9
    got = read_mask(ds_synth.write_image(tmp_path / "a.png", rgba))
    assert got.sum() == 1 and got[0, 0]


def test_downscale_cache_area_and_reuse(tmp_path: Path, ds_synth) -> None:
    root = tmp_path / "ds"
    img = ds_synth.noise_image(12, 8, seed=3)
    src = ds_synth.write_image(root / "images" / "x.jpg.png", img)
    path, w, h = cached_image(src, root, downscale=2)
    assert (w, h) == (6, 4)
    assert path.is_relative_to(root / ".splatlab_cache") and path.suffix == ".png"
    block_mean = img.reshape(4, 2, 6, 2, 3).astype(np.float64).mean(axis=(1, 3)) / 255.0
    np.testing.assert_allclose(read_rgb(path), block_mean, atol=0.5 / 255 + 1e-6)
    mtime = path.stat().st_mtime_ns
    path2, _, _ = cached_image(src, root, downscale=2)
    assert path2 == path and path.stat().st_mtime_ns == mtime  # reused, not rewritten
    leftovers = [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    # a newer source invalidates the cached copy
    os.utime(src, ns=(mtime + 10**9, mtime + 10**9))
    cached_image(src, root, downscale=2)
    assert path.stat().st_mtime_ns > mtime


def test_downscale_rgba_premultiplied(tmp_path: Path, ds_synth) -> None:
    rng = np.random.default_rng(4)
    rgba = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    src = ds_synth.write_image(tmp_path / "r.png", rgba)
    path, w, h = cached_image(src, tmp_path, downscale=4)
    assert (w, h) == (2, 2)
    for bg in [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (0.2, 0.7, 0.4)]:
        full = read_rgb(src, background=bg)
        want = full.reshape(2, 4, 2, 4, 3).mean(axis=(1, 3))
        np.testing.assert_allclose(read_rgb(path, background=bg), want, atol=2.5 / 255)


def test_read_only_root_uses_user_cache(tmp_path: Path, ds_synth, monkeypatch) -> None:
    monkeypatch.delenv("SPLATLAB_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = tmp_path / "ro"
    src = ds_synth.write_image(root / "a.png", ds_synth.noise_image(4, 4, 0))
    os.chmod(root, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        croot = cache_root(root)
        assert croot.is_relative_to(tmp_path / "xdg" / "splatlab")
        path, w, h = cached_image(src, root, downscale=2)
        assert path.is_relative_to(croot) and (w, h) == (2, 2)
        assert sorted(p.name for p in root.iterdir()) == ["a.png"]  # nothing written in root
    finally:
        os.chmod(root, 0o755)
    monkeypatch.setenv("SPLATLAB_CACHE_DIR", str(tmp_path / "forced"))
    assert cache_root(root).is_relative_to(tmp_path / "forced")


def test_distortion_maps_match_forward_model() -> None:
    """Remap tables of every model send a pinhole pixel to where the lens model puts its ray."""
    fx, fy, cx, cy = 90.0, 95.0, 61.3, 44.2
    k1, k2, p1, p2 = 0.09, -0.04, 0.003, -0.002
    u, v = np.meshgrid(np.arange(0, 120, 7) + 0.5, np.arange(0, 90, 7) + 0.5)
    x, y = (u.ravel() - cx) / fx, (v.ravel() - cy) / fy
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    want = np.stack([fx * xd + cx, fy * yd + cy], 1)
    ui, vi = u.ravel().astype(int), v.ravel().astype(int)
    for d in [
        Distortion(fx, fy, cx, cy, "opencv", (k1, k2, p1, p2)),
        Distortion(fx, fy, cx, cy, "colmap:OPENCV", (fx, fy, cx, cy, k1, k2, p1, p2)),
    ]:
        mx, my = d.maps(120, 90)
        got = np.stack([mx[vi, ui], my[vi, ui]], 1) + 0.5  # OpenCV -> pixel-centre convention
        np.testing.assert_allclose(got, want, atol=1e-3)
    # and the point undistortion inverts the forward model
    d = Distortion(fx, fy, cx, cy, "opencv", (k1, k2, p1, p2))
    np.testing.assert_allclose(
        undistort_points(d, want), np.stack([u.ravel(), v.ravel()], 1), atol=1e-6
    )


@pytest.mark.parametrize(
    ("lens", "has_blank"),
    [
        (("opencv", (0.0578421, -0.0805099, -0.000980296, 0.00015575)), True),  # the fox's lens
        (("opencv", (0.25, 0.05, 0.0, 0.0)), True),  # strong pincushion: blank edges
        (("opencv", (-0.3, 0.08, 0.002, -0.001)), False),  # strong barrel: nothing blank or cut
        (("opencv_fisheye", (0.05, -0.02, 0.01, -0.004)), False),  # maps inside the source
    ],
)
def test_undistorted_images_have_no_blank_border(
    tmp_path: Path, ds_synth, lens, has_blank: bool
) -> None:
    """Undistorting into the same K looks past the source at the borders; the crop removes every
    such pixel (a white source stays white to the last row and column) and keeps the rest."""
    W, H = 120, 90
    fx, fy, cx, cy = 100.0, 98.0, 60.7, 44.6
    d = Distortion(fx, fy, cx, cy, lens[0], lens[1])
    src = ds_synth.write_image(tmp_path / "w.png", np.full((H, W, 3), 255, np.uint8))
    mx, my = d.maps(W, H)
    blank = ~((mx >= 0) & (mx <= W - 1) & (my >= 0) & (my <= H - 1))
    # without the crop, blank pixels would be black in every view (pincushion lenses)
    assert blank.any() == has_blank
    for ds in (1, 2, 3):
        x0, y0, x1, y1 = d.crop_box(W, H, ds)
        assert not blank[y0:y1, x0:x1].any()
        assert (x1 - x0) % ds == 0 and (y1 - y0) % ds == 0
        if not blank.any():
            assert (x0, y0, x1 - x0, y1 - y0) == (0, 0, W - W % ds, H - H % ds)
        # the peel keeps every line that has no blank pixel on its side of the box
        assert blank[y0 - 1, x0:x1].any() if y0 > 0 else True
        assert blank[y0:y1, x0 - 1].any() if x0 > 0 else True
        img = process_image(src, ds, d)
        assert img.shape[:2] == ((y1 - y0) // ds, (x1 - x0) // ds)
        assert img.min() >= 254, (lens, ds, int(img.min()))


def test_fisheye_maps_match_forward_model() -> None:
    fx, fy, cx, cy = 70.0, 70.0, 50.5, 40.0
    k = (0.05, -0.02, 0.01, -0.004)
    u, v = np.meshgrid(np.arange(5, 100, 9) + 0.5, np.arange(5, 80, 9) + 0.5)
    x, y = (u.ravel() - cx) / fx, (v.ravel() - cy) / fy
    r = np.hypot(x, y)
    th = np.arctan(r)
    thd = th * (1 + k[0] * th**2 + k[1] * th**4 + k[2] * th**6 + k[3] * th**8)
    want = np.stack([fx * x * thd / r + cx, fy * y * thd / r + cy], 1)
    d = Distortion(fx, fy, cx, cy, "opencv_fisheye", k)
    mx, my = d.maps(100, 80)
    ui, vi = u.ravel().astype(int), v.ravel().astype(int)
    np.testing.assert_allclose(np.stack([mx[vi, ui], my[vi, ui]], 1) + 0.5, want, atol=1e-3)
    np.testing.assert_allclose(
        undistort_points(d, want), np.stack([u.ravel(), v.ravel()], 1), atol=1e-5
    )
