"""Headless parts of the viewer: cameras, float16 splat buffers, selections, keyframe paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splatlab.app.viewer.render import (
    ViewCamera,
    browser_splat_arrays,
    c2w_to_wxyz_position,
    camera_from_viser,
    covariance_scale,
    render_modes,
    render_view,
    selection_mask,
    subset_params,
)
from splatlab.scene.cameras import look_at_viewmat


def _params(
    n: int = 400, scale: float = 1.0, seed: int = 0, extra: bool = False
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    p = {
        "means": torch.randn(n, 3, generator=g) * 0.5 * scale,
        "scales": torch.randn(n, 3, generator=g) * 0.3 + float(np.log(0.03 * scale)),
        "quats": torch.randn(n, 4, generator=g),
        "opacities": torch.randn(n, generator=g) + 1.0,
        "sh0": torch.randn(n, 1, 3, generator=g) * 0.5,
        "shN": torch.randn(n, 3, 3, generator=g) * 0.1,
    }
    if extra:
        p["features"] = torch.randn(n, 8, generator=g)
    return p


def _f16_cov_error(params, unit):
    a = browser_splat_arrays(params, unit)
    exact = browser_splat_arrays(params, 1.0)["covariances"].astype(np.float64)
    got = (
        a["covariances"].astype(np.float16).astype(np.float64) * a["unit"] ** 2
    )  # what viser sends
    scale = np.abs(exact).max(axis=(1, 2), keepdims=True)
    return float(np.median(np.abs(got - exact) / scale))


def test_normalised_covariances_survive_float16():
    # a small scene (units of 1e-3): raw covariances (~1e-9) underflow float16
    p = _params(scale=1e-3)
    raw = _f16_cov_error(p, 1.0)
    norm = _f16_cov_error(p, None)
    assert raw > 0.1, f"raw float16 covariances should be destroyed, error {raw}"
    assert norm < 2e-3, f"normalised covariance error {norm}"
    u = covariance_scale(p["scales"].numpy())
    assert 1e-5 < u < 1e-4
    # centres round trip exactly through the node scale
    a = browser_splat_arrays(p)
    np.testing.assert_allclose(a["centers"] * a["unit"], p["means"].numpy(), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(
        a["opacities"][:, 0], torch.sigmoid(p["opacities"]).numpy(), rtol=1e-6
    )


def test_camera_conversions_round_trip():
    vm = look_at_viewmat(np.array([1.0, -2.0, 0.7]), np.zeros(3))
    wxyz, pos = c2w_to_wxyz_position(vm)
    cam = camera_from_viser(wxyz, pos, fov=np.deg2rad(50.0), width=640, height=480)
    np.testing.assert_allclose(cam.viewmat, vm, atol=1e-12)
    f = 240 / np.tan(np.deg2rad(25.0))
    np.testing.assert_allclose(cam.K, [[f, 0, 320], [0, f, 240], [0, 0, 1]], rtol=1e-12)
    small = cam.scaled(160)
    assert (small.width, small.height) == (160, 120)
    np.testing.assert_allclose(small.K[0, 0], f / 4, rtol=1e-12)


def test_render_modes_and_images():
    p = _params(extra=True)
    assert render_modes(p) == ["RGB", "depth", "alpha", "normals", "features (PCA)"]
    vm = look_at_viewmat(np.array([0.0, -3.0, 0.5]), np.zeros(3))
    f = 60.0
    cam = ViewCamera(vm, np.array([[f, 0, 40], [0, f, 30], [0, 0, 1.0]]), 80, 60)
    imgs = {m: render_view(p, cam, m) for m in render_modes(p)}
    for m, img in imgs.items():
        assert img.shape == (60, 80, 3) and img.dtype == np.uint8, m
    alpha = imgs["alpha"][..., 0]
    assert (alpha > 128).mean() > 0.05
    for m in ("depth", "normals", "features (PCA)"):
        assert np.abs(imgs[m].astype(int) - imgs["RGB"].astype(int)).mean() > 5, m
    # background where nothing is: pixels with zero alpha show the background colour
    white = render_view(p, cam, "RGB", background=(1.0, 1.0, 1.0))
    assert (white[alpha == 0] == 255).all()
    # SH degree 0 differs from the stored degree 1
    assert np.abs(render_view(p, cam, "RGB", sh_degree=0).astype(int) - imgs["RGB"]).max() > 0
    with pytest.raises(ValueError, match="unknown render mode"):
        render_view(p, cam, "heat")


def test_selection_box_and_filters():
    p = _params(n=2000)
    means = p["means"].numpy()
    box = selection_mask(
        p, box_center=np.zeros(3), box_wxyz=np.array([1.0, 0, 0, 0]), box_size=np.array([1.0, 1, 1])
    )
    np.testing.assert_array_equal(box, np.all(np.abs(means) <= 0.5, axis=1))
    # a box rotated 90 degrees about z swaps x and y extents
    q = np.array([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)])
    rot = selection_mask(p, box_center=np.zeros(3), box_wxyz=q, box_size=np.array([2.0, 0.4, 10.0]))
    np.testing.assert_array_equal(rot, (np.abs(means[:, 1]) <= 1.0) & (np.abs(means[:, 0]) <= 0.2))
    opa = selection_mask(p, min_opacity=0.7)
    np.testing.assert_array_equal(opa, torch.sigmoid(p["opacities"]).numpy() >= 0.7)
    sc = selection_mask(p, max_scale=0.03)
    np.testing.assert_array_equal(sc, np.exp(p["scales"].numpy().max(1)) <= 0.03)
    sub = subset_params(p, opa & sc)
    assert sub["means"].shape[0] == int((opa & sc).sum()) and set(sub) == set(p)


def test_keyframe_path_round_trips_through_camera_path_json(tmp_path):
    from splatlab.app.viewer.panels import KeyframePath
    from splatlab.scene.camera_path import read_camera_path, write_camera_path

    path = KeyframePath()
    for eye in ([0, -3, 1], [3, 0, 1], [0, 3, 1]):
        vm = look_at_viewmat(np.array(eye, float), np.zeros(3))
        wxyz, pos = c2w_to_wxyz_position(vm)
        path.add(camera_from_viser(wxyz, pos, np.deg2rad(40.0), 320, 240))
    cp = path.to_camera_path(24, 320, 240, fps=12.0, closed=False)
    write_camera_path(tmp_path / "camera_path.json", cp)
    back = read_camera_path(tmp_path / "camera_path.json")
    assert len(back) == 24 and back.fps == 12.0
    np.testing.assert_allclose(back.viewmats[0], path.viewmats[0], atol=1e-9)
    np.testing.assert_allclose(back.viewmats[-1], path.viewmats[-1], atol=1e-9)
    np.testing.assert_allclose(back.fovs, 40.0, atol=1e-9)
    again = KeyframePath()
    again.load(back)
    assert len(again.viewmats) == 3
    np.testing.assert_allclose(np.stack(again.viewmats), np.stack(path.viewmats), atol=1e-9)


def test_gaussianshader_scene_renders_its_shading_modes(tmp_path) -> None:
    """A scene trained with --method gaussianshader, opened from its run directory or from its
    PLY (+ envmap.pt): RGB is the shaded colour (diffuse + specular + residual, as the trainer
    renders it, not the SH-only colour) and the shading modes are offered."""
    import torch

    from splatlab.app.viewer.source import load_source
    from splatlab.methods.gaussianshader.shader import ShaderConfig, make_trainer
    from splatlab.scene.synthetic import DemoConfig, make_demo_scene
    from splatlab.training.trainer import TrainConfig

    ds = make_demo_scene(DemoConfig(n_views=8, width=48, height=36, n_points=600, supersample=1))
    cfg = TrainConfig(out=tmp_path / "run", steps=30, checkpoint_every=30, refine_start_iter=1000)
    tr = make_trainer(ds, cfg, ShaderConfig(env_resolution=16, env_min_resolution=4))
    tr.train()
    vm, K, w, h = tr.camera(ds.test_ids[0])
    cam = ViewCamera(vm.numpy(), K.numpy(), w, h)
    with torch.no_grad():
        want = {
            m: tr.render(vm, K, w, h, render_mode=m)[0] for m in ("RGB", "specular", "environment")
        }
    for scene in (tmp_path / "run", tmp_path / "run" / "scene.ply"):
        src = load_source(scene, load_points=False)
        assert {"diffuse", "specular", "residual", "environment", "normals"} <= set(
            src.render_fn_modes
        )
        for mode, ref in want.items():
            img, _, _ = src.render_fn(vm, K, w, h, render_mode=mode, background=tr.background())
            assert torch.allclose(img[..., :3], ref[..., :3], atol=2e-4), (scene.name, mode)
        # the SH-only colour (what a plain viewer would show) differs from the shaded one
        plain = render_view(src.params, cam, "RGB").astype(float) / 255
        assert np.abs(plain - want["RGB"].clamp(0, 1).numpy()).mean() > 2e-3

    # the viewer offers the modes and draws them with the shaded renderer
    from viewer_util import free_port

    from splatlab.app.viewer.server import Viewer, config_from

    v = Viewer(config_from(tmp_path / "run", port=free_port(), load_points=False))
    try:
        assert {"diffuse", "specular", "residual", "environment", "normals"} <= set(v.modes)
        ref = (want["specular"][..., :3].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
        assert np.abs(v.render(cam, "specular").astype(int) - ref).max() <= 1
    finally:
        v.stop()

    # a PLY exported in ORIGINAL coordinates (a rotated, shifted dataset frame) with its
    # environment learned in the training frame renders the same pictures
    from scipy.spatial.transform import Rotation

    from splatlab.methods.gaussianshader.shader import ShadedScene
    from splatlab.scene.gaussians import load_ply, save_ply

    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("zyx", [30, -20, 10], degrees=True).as_matrix()
    T[:3, 3] = [0.3, -0.2, 0.5]
    save_ply(tmp_path / "rot.ply", tr.params, transform=T)
    p_orig = load_ply(tmp_path / "rot.ply")
    scene_o = ShadedScene(
        p_orig, tr.appearance.env, tr.appearance.config, env_rotation=torch.as_tensor(T[:3, :3], dtype=torch.float32)
    )
    vm_o = vm @ torch.as_tensor(T, dtype=torch.float32)
    for mode in ("RGB", "specular", "environment"):
        got = scene_o.render(vm_o, K, w, h, render_mode=mode, background=tr.background())[0]
        assert torch.allclose(got[..., :3], want[mode][..., :3], atol=2e-3), mode
