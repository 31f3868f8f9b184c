"""nerfstudio camera_path.json reading/writing and keyframe interpolation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from splatlab.errors import DataError
from splatlab.scene.camera_path import (
    CameraPath,
    interpolate_path,
    intrinsics_from_fov,
    read_camera_path,
    write_camera_path,
)
from splatlab.scene.cameras import camera_centers, look_at_viewmat


def nerfstudio_json(
    c2ws: list[np.ndarray], fovs: list[float], w: int = 640, h: int = 480, **extra
) -> dict:
    """A camera path as nerfstudio's viewer writes it (row-major flattened OpenGL c2w)."""
    return {
        "default_fov": fovs[0],
        "default_transition_sec": 2.0,
        "keyframes": [{"matrix": c2ws[0].reshape(-1).tolist(), "fov": fovs[0], "aspect": w / h}],
        "camera_type": "perspective",
        "render_height": h,
        "render_width": w,
        "fps": 24,
        "seconds": len(c2ws) / 24,
        "is_cycle": False,
        "smoothness_value": 0.5,
        "camera_path": [
            {"camera_to_world": c.reshape(-1).tolist(), "fov": f, "aspect": w / h}
            for c, f in zip(c2ws, fovs)
        ],
        **extra,
    }


def test_known_camera_maps_to_expected_viewmat_and_K(tmp_path: Path) -> None:
    c2w = np.eye(4)
    c2w[:3, 3] = [1.0, 2.0, 3.0]  # OpenGL: looks along -z, y up
    (tmp_path / "p.json").write_text(json.dumps(nerfstudio_json([c2w], [90.0])))
    cp = read_camera_path(tmp_path / "p.json")
    assert len(cp) == 1 and (cp.width, cp.height) == (640, 480) and cp.fps == 24
    expected_view = np.diag([1.0, -1.0, -1.0, 1.0])
    expected_view[:3, 3] = [-1.0, 2.0, 3.0]
    assert np.allclose(cp.viewmats[0], expected_view, atol=1e-12)
    # vertical fov 90 deg over 480 rows: f = 240, principal point at the centre
    assert np.allclose(cp.Ks[0], [[240.0, 0, 320.0], [0, 240.0, 240.0], [0, 0, 1]], atol=1e-9)
    # a point 5 units in front and 1 to the right/up lands where a pinhole puts it
    world = np.array([1.0 + 1.0, 2.0 + 1.0, 3.0 - 5.0, 1.0])
    xc = cp.viewmats[0] @ world
    uv = (cp.Ks[0] @ xc[:3])[:2] / xc[2]
    assert xc[2] == pytest.approx(5.0) and np.allclose(uv, [320 + 48.0, 240 - 48.0])


def test_keyframes_convert_like_frames(tmp_path: Path) -> None:
    c2ws = [np.eye(4), np.eye(4)]
    c2ws[1][:3, 3] = [0.0, 0.0, 2.0]
    data = nerfstudio_json(c2ws, [60.0, 60.0])
    (tmp_path / "p.json").write_text(json.dumps(data))
    cp = read_camera_path(tmp_path / "p.json")
    views, Ks = cp.keyframe_cameras()
    assert views.shape == (1, 4, 4) and np.allclose(views[0], cp.viewmats[0])
    assert np.allclose(Ks[0], cp.Ks[0])
    path_views, _ = interpolate_path(cp.viewmats, cp.Ks, 3)
    assert np.allclose(camera_centers(path_views), [[0, 0, 0], [0, 0, 1], [0, 0, 2]], atol=1e-12)


def test_write_read_identity_and_file_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    eyes = rng.normal(size=(6, 3)) * 3
    viewmats = np.stack([look_at_viewmat(e, np.zeros(3)) for e in eyes])
    fovs = np.linspace(30, 70, 6)
    cp = CameraPath(
        viewmats=viewmats,
        Ks=intrinsics_from_fov(fovs, 320, 200),
        width=320,
        height=200,
        fps=12.0,
        times=np.linspace(0, 1, 6),
        keyframes=[{"matrix": list(range(16)), "fov": 40.0, "aspect": 1.6}],
        extra={"default_fov": 40.0, "crop": {"crop_center": [0, 0, 0]}},
    )
    path = write_camera_path(tmp_path / "out" / "camera_path.json", cp)
    back = read_camera_path(path)
    assert np.allclose(back.viewmats, viewmats, atol=1e-12)
    assert np.allclose(back.Ks, cp.Ks, rtol=1e-12)
    assert np.allclose(back.fovs, fovs, atol=1e-10)
    assert np.allclose(back.times, cp.times)
    assert back.keyframes == cp.keyframes and back.extra == cp.extra
    assert (back.fps, back.duration, back.width, back.height) == (12.0, 0.5, 320, 200)

    data = json.loads(path.read_text())
    assert (
        data["render_width"] == 320
        and data["camera_type"] == "perspective"
        and data["seconds"] == 0.5
    )
    entry = data["camera_path"][2]
    assert set(entry) == {"camera_to_world", "fov", "aspect", "render_time"}
    m = np.array(entry["camera_to_world"]).reshape(4, 4)  # row-major: last row is 0 0 0 1
    assert np.allclose(m[3], [0, 0, 0, 1])
    assert np.allclose(m[:3, 3], eyes[2])  # the camera centre
    # OpenGL: the camera looks along its -z axis, towards the origin
    assert np.allclose(-m[:3, 2], -eyes[2] / np.linalg.norm(eyes[2]))
    assert entry["aspect"] == pytest.approx(1.6)


def test_bad_camera_paths_raise_data_errors(tmp_path: Path) -> None:
    good = nerfstudio_json([np.eye(4)], [50.0])
    cases = {
        "fisheye.json": ({**good, "camera_type": "fisheye"}, "fisheye"),
        "noheight.json": ({k: v for k, v in good.items() if k != "render_height"}, "render_height"),
        "shortmat.json": (
            {**good, "camera_path": [{"camera_to_world": [1.0] * 12, "fov": 50}]},
            "12 numbers",
        ),
        "badfov.json": (
            {**good, "camera_path": [{"camera_to_world": np.eye(4).ravel().tolist(), "fov": 0}]},
            "fov",
        ),
        "empty.json": ({**good, "camera_path": []}, "non-empty"),
    }
    for name, (data, msg) in cases.items():
        (tmp_path / name).write_text(json.dumps(data))
        with pytest.raises(DataError, match=msg) as info:
            read_camera_path(tmp_path / name)
        assert name in str(info.value)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(DataError, match="junk.json"):
        read_camera_path(tmp_path / "junk.json")
    with pytest.raises(DataError, match="does not exist"):
        read_camera_path(tmp_path / "missing.json")


def test_write_refuses_intrinsics_the_format_cannot_hold(tmp_path: Path) -> None:
    K = intrinsics_from_fov(50.0, 100, 80)
    K_rect = K.copy()
    K_rect[0, 0] *= 1.1
    cp = CameraPath(viewmats=np.eye(4)[None], Ks=K_rect[None], width=100, height=80)
    with pytest.raises(ValueError, match="square pixels"):
        write_camera_path(tmp_path / "x.json", cp)
    K_off = K.copy()
    K_off[0, 2] += 3
    cp = CameraPath(viewmats=np.eye(4)[None], Ks=K_off[None], width=100, height=80)
    with pytest.raises(ValueError, match="principal point"):
        write_camera_path(tmp_path / "x.json", cp)
    assert not (tmp_path / "x.json").exists()


def _angle(Ra: np.ndarray, Rb: np.ndarray) -> float:
    return float(Rotation.from_matrix(Ra @ Rb.T).magnitude())


def test_interpolate_path_hits_keyframes_and_is_smooth() -> None:
    eyes = np.array([[3.0, 0, 1], [0, 3, 1.5], [-3, 0, 1], [0, -3, 0.5]])
    keys = np.stack([look_at_viewmat(e, np.zeros(3)) for e in eyes])
    Ks = np.stack([intrinsics_from_fov(f, 64, 48) for f in (40.0, 50.0, 60.0, 70.0)])
    n = 3 * 10 + 1
    views, ks = interpolate_path(keys, Ks, n)
    assert views.shape == (n, 4, 4) and ks.shape == (n, 3, 3)
    for i in range(4):
        assert np.allclose(views[10 * i], keys[i], atol=1e-9), i
        assert np.allclose(ks[10 * i], Ks[i], atol=1e-9)
    R = views[:, :3, :3]
    assert np.allclose(R @ np.transpose(R, (0, 2, 1)), np.eye(3), atol=1e-9)
    assert np.allclose(np.linalg.det(R), 1.0)
    # intrinsics: linear between keyframes
    assert np.allclose(ks[5], 0.5 * (Ks[0] + Ks[1]), atol=1e-9)
    # smooth: consecutive camera centres move by similar amounts (no jumps at keyframes)
    c = camera_centers(views)
    steps = np.linalg.norm(np.diff(c, axis=0), axis=1)
    assert steps.max() / steps.min() < 2.0
    ang = [_angle(R[i], R[i + 1]) for i in range(n - 1)]
    assert max(ang) < 0.2


def test_interpolate_two_keyframes_is_linear_and_slerped() -> None:
    a = look_at_viewmat(np.array([0.0, -4, 0]), np.array([0.0, 0, 0]))
    b = look_at_viewmat(np.array([4.0, 0, 0]), np.array([4.0, 4, 0]))  # same orientation, moved
    b_rot = look_at_viewmat(np.array([4.0, 0, 0]), np.array([8.0, 0, 0]))  # turned 90 degrees
    K = intrinsics_from_fov(50.0, 64, 48)
    views, _ = interpolate_path(np.stack([a, b]), K, 5)
    c = camera_centers(views)
    assert np.allclose(c, np.linspace([0, -4, 0], [4, 0, 0], 5), atol=1e-12)
    views, _ = interpolate_path(np.stack([a, b_rot]), K, 3)
    assert _angle(views[0, :3, :3], views[1, :3, :3]) == pytest.approx(np.pi / 4, abs=1e-9)
    assert _angle(views[1, :3, :3], views[2, :3, :3]) == pytest.approx(np.pi / 4, abs=1e-9)


def test_interpolate_closed_path_wraps_around() -> None:
    eyes = [
        np.array([np.cos(t) * 3, np.sin(t) * 3, 1.0])
        for t in np.linspace(0, 2 * np.pi, 4, endpoint=False)
    ]
    keys = np.stack([look_at_viewmat(e, np.zeros(3)) for e in eyes])
    K = intrinsics_from_fov(50.0, 64, 48)
    views, _ = interpolate_path(keys, K, 40, closed=True)
    for i in range(4):
        assert np.allclose(views[10 * i], keys[i], atol=1e-9)
    c = camera_centers(views)
    closing_step = np.linalg.norm(c[0] - c[-1])
    steps = np.linalg.norm(np.diff(c, axis=0), axis=1)
    # by the 4-fold symmetry the step 3.9 -> 4 (= 0) equals the step 0.9 -> 1 of the first segment
    assert closing_step == pytest.approx(steps[9], rel=1e-9)
    assert steps.max() / steps.min() < 2.0
    single, ks = interpolate_path(keys[:1], K, 3)
    assert np.array_equal(single, np.repeat(keys[:1], 3, axis=0)) and ks.shape == (3, 3, 3)
    with pytest.raises(ValueError, match="n_frames"):
        interpolate_path(keys, K, 0)
