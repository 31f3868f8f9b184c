"""Photos -> pycolmap SfM: a rendered textured corner (poses known, so the recovered cameras are
checked against the truth), failures, the cache, and the real Sceaux castle photos (slow)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from splatlab.errors import DataError, SfMError
from splatlab.scene.cameras import camera_centers, intrinsics_matrix, look_at_viewmat
from splatlab.scene.datasets import SfMOptions, load_dataset


def render_corner(viewmat: np.ndarray, K: np.ndarray, W: int, H: int, textures) -> np.ndarray:
    """Ray-cast three textured planes (floor z=0, walls x=0 and y=0, each 2.5 units wide)."""
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    rays_c = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    d = rays_c @ R  # world directions (R^T applied to each ray)
    o = -R.T @ t
    img = np.zeros((H, W), np.float32)
    best = np.full((H, W), np.inf)
    for axis, tex in enumerate(textures):
        with np.errstate(divide="ignore", invalid="ignore"):
            s = -o[axis] / d[..., axis]
        p = o + s[..., None] * d
        others = [a for a in range(3) if a != axis]
        a, b = p[..., others[0]], p[..., others[1]]
        hit = (s > 0) & (s < best) & (a >= 0) & (a <= 2.5) & (b >= 0) & (b <= 2.5)
        n = tex.shape[0]
        val = cv2.remap(
            tex,
            (a / 2.5 * (n - 1)).astype(np.float32),
            (b / 2.5 * (n - 1)).astype(np.float32),
            cv2.INTER_LINEAR,
        )
        img = np.where(hit, val, img)
        best = np.where(hit, s, best)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def make_corner_photos(folder: Path, n: int = 6, W: int = 320, H: int = 240):
    rng = np.random.default_rng(0)
    textures = []
    for _ in range(3):
        tex = rng.random((400, 400)).astype(np.float32)
        tex = cv2.GaussianBlur(tex, (0, 0), 1.2)
        textures.append((tex - tex.min()) / (tex.max() - tex.min()))
    K = intrinsics_matrix(300.0, 300.0, W / 2, H / 2)
    viewmats = []
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        th = 0.35 + 0.9 * i / (n - 1)
        eye = np.array([4.0 * np.cos(th), 4.0 * np.sin(th), 2.2])
        V = look_at_viewmat(eye, np.array([0.7, 0.7, 0.5]))
        viewmats.append(V)
        gray = render_corner(V, K, W, H, textures)
        cv2.imwrite(str(folder / f"photo_{i:02d}.png"), gray)
    return np.stack(viewmats), K


def test_sfm_recovers_rendered_cameras(tmp_path: Path) -> None:
    viewmats, K = make_corner_photos(tmp_path / "images")
    t0 = time.perf_counter()
    ds = load_dataset(tmp_path, normalize=False)
    first = time.perf_counter() - t0
    sfm = ds.meta["sfm"]
    assert ds.meta["format"] == "photos"
    assert sfm["registered"] == sfm["total"] == 6 and sfm["unregistered"] == []
    assert sfm["mean_reprojection_error"] < 1.0 and sfm["num_points3D"] > 200
    assert not sfm["cached"]
    assert len(sfm["cameras"]) == 1  # one shared camera for same-size photos
    f = ds.frames[0].K[0, 0]
    assert abs(f / K[0, 0] - 1) < 0.03, f
    # the recovered centres match the truth up to a similarity (Umeyama, no reflection)
    names = [fr.name for fr in ds.frames]
    assert names == [f"images/photo_{i:02d}.png" for i in range(6)]
    got, want = camera_centers(ds.viewmats), camera_centers(viewmats)
    gc, wc = got - got.mean(0), want - want.mean(0)
    U, S, Vt = np.linalg.svd(wc.T @ gc)
    D = np.diag([1, 1, np.sign(np.linalg.det(U @ Vt))])
    R = U @ D @ Vt
    s = (S * np.diag(D)).sum() / (gc**2).sum()
    aligned = s * gc @ R.T
    assert np.abs(aligned - wc).max() < 0.02 * np.linalg.norm(wc, axis=1).max()
    # the relative rotations agree too (conventions: both OpenCV world-to-camera)
    for i in range(1, 6):
        rel_got = ds.viewmats[i][:3, :3] @ ds.viewmats[0][:3, :3].T
        rel_want = viewmats[i][:3, :3] @ viewmats[0][:3, :3].T
        ang = np.arccos(np.clip((np.trace(rel_got.T @ rel_want) - 1) / 2, -1, 1))
        assert np.degrees(ang) < 0.5
    # the second load reads the cached model
    t0 = time.perf_counter()
    again = load_dataset(tmp_path, normalize=False)
    assert again.meta["sfm"]["cached"] and time.perf_counter() - t0 < max(1.0, first / 3)
    np.testing.assert_allclose(again.viewmats, ds.viewmats)


def test_sfm_failures(tmp_path: Path, ds_synth) -> None:
    one = tmp_path / "one"
    ds_synth.write_image(one / "a.png", ds_synth.noise_image(64, 48, 0))
    with pytest.raises(DataError, match="at least 2"):
        load_dataset(one, format="photos")
    noise = tmp_path / "noise"
    for i in range(3):  # unrelated photos: nothing can be registered
        ds_synth.write_image(noise / f"n{i}.png", ds_synth.noise_image(120, 90, i))
    with pytest.raises(SfMError, match=r"registered none of the 3 photos"):
        load_dataset(noise)
    # the threshold: 5 of 6 corner photos + 2 noise photos -> 6 of 8 < 80 %
    make_corner_photos(tmp_path / "mix")
    for i in range(2):
        ds_synth.write_image(tmp_path / "mix" / f"z{i}.png", ds_synth.noise_image(320, 240, 10 + i))
    with pytest.raises(SfMError, match=r"only 6 of 8 photos .*z0\.png, z1\.png"):
        load_dataset(tmp_path / "mix")
    ds = load_dataset(tmp_path / "mix", sfm_options=SfMOptions(min_registered_fraction=0.7))
    assert ds.meta["sfm"]["cached"] and len(ds) == 6  # the threshold change reused the cache


@pytest.mark.data
@pytest.mark.slow
def test_sceaux_castle_registers_all(ds_data_dir: Path, ds_cache: Path) -> None:
    castle = ds_data_dir / "sceaux_castle"
    K_true = np.loadtxt(castle / "K.txt")
    t0 = time.perf_counter()
    ds = load_dataset(castle, downscale=2)
    seconds = time.perf_counter() - t0
    sfm = ds.meta["sfm"]
    print(f"castle SfM + load: {seconds:.1f} s, stages {sfm['seconds']}, "
          f"reprojection {sfm['mean_reprojection_error']:.3f} px, points {sfm['num_points3D']}")  # fmt: skip
    assert sfm["registered"] == sfm["total"] == 11
    assert sfm["mean_reprojection_error"] < 1.0
    cam = sfm["cameras"][0]
    scale = cam["width"] / 2832.0  # K.txt is for the 2832x2128 photos
    f_sfm = cam["params"][0]
    assert abs(f_sfm / (K_true[0, 0] * scale) - 1) < 0.05, (f_sfm, K_true[0, 0] * scale)
    assert all((f.width, f.height) == (1416, 1064) for f in ds.frames)
    np.testing.assert_allclose(ds.frames[0].K[0, 0], f_sfm / 2)
    assert ds.load_image(0).shape == (1064, 1416, 3)
    t0 = time.perf_counter()
    again = load_dataset(castle, downscale=2)
    assert again.meta["sfm"]["cached"] and time.perf_counter() - t0 < 15
