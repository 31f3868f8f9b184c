"""Placing a fitted asset card in a scene (splatlab.plugins.generate.place): the placed card seen
from a camera looking at the hit point reproduces the card's front render, the merged scene
round-trips through PLY, a ray meets a known plane of Gaussians where it should, and the
swiftbrush panel's placement callbacks on a real viser server (viewer in-process)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from splatlab.errors import DataError
from splatlab.plugins.generate.asset import fit_card, render_card, rgba_from_image
from splatlab.plugins.generate.place import (
    axis_rotation,
    card_rotation,
    fallback_depth,
    merge_gaussians,
    place_card,
    placement_transform,
    ray_hit,
)
from splatlab.rendering.rasterize import rasterize
from splatlab.rendering.sh import SH_C0
from splatlab.scene.formats import load_scene_file, save_scene_file
from splatlab.scene.gaussians import init_gaussians

H = W = 40


def asset_image(h: int = H, w: int = W) -> np.ndarray:
    """A textured disk (colour ramps, stripes) on a flat green background. uint8 [H, W, 3]"""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32) + np.array([0.2, 0.7, 0.3], np.float32)
    disk = np.hypot(yy - h / 2, xx - w / 2.2) < h / 3
    tex = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 3)], -1)
    img[disk] = tex[disk]
    return (img * 255 + 0.5).astype(np.uint8)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(1.0 / max(float(np.mean((a - b) ** 2)), 1e-12))


def _render(params, viewmat: np.ndarray, K: np.ndarray, h: int, w: int) -> np.ndarray:
    colors = torch.clamp(params["sh0"][:, 0, :] * SH_C0 + 0.5, min=0.0)
    img, _, _ = rasterize(
        params["means"], params["quats"], torch.exp(params["scales"]), torch.sigmoid(params["opacities"]),
        colors, torch.tensor(viewmat, dtype=torch.float32)[None], torch.tensor(K, dtype=torch.float32)[None], w, h,
    )
    return img[0].clamp(0, 1).numpy()


def _look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """OpenCV world-to-camera [4, 4] at ``eye`` looking at ``target``, image y = -up."""
    z = (target - eye) / np.linalg.norm(target - eye)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    v = np.eye(4)
    v[:3, :3] = np.stack([x, y, z], 0)
    v[:3, 3] = -v[:3, :3] @ eye
    return v


def _framing_K(distance: float, scale: float) -> np.ndarray:
    """Intrinsics under which a card of height ``scale`` at ``distance`` fills H pixels, as the
    fitting camera's card does."""
    f = H * distance / scale
    return np.array([[f, 0.0, W / 2.0], [0.0, f, H / 2.0], [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def card():
    """(rgba, the card fitted for 100 steps, its front render [H, W, 3]) of the test image."""
    torch.manual_seed(0)
    rgba = rgba_from_image(asset_image())
    t0 = time.perf_counter()
    fit = fit_card(rgba, steps=100, seed=0)
    fit_s = time.perf_counter() - t0
    front = render_card(fit.params, H, W)[0].clamp(0, 1).numpy()
    return rgba, fit, front, fit_s


UP = np.array([0.3, 1.0, -0.2]) / np.linalg.norm([0.3, 1.0, -0.2])  # a scene up that is no axis


def test_placed_card_seen_from_the_clicking_camera_is_its_front_render(card) -> None:
    """A level camera (its image y = -up) looks at the hit point; the card placed there upright,
    anchored at its centre, height s, renders like the card's own front render; turning the card
    by yaw about the up axis and the camera by the same yaw about the hit point gives the same
    image; the bottom anchor puts the card's bottom edge on the hit (the camera looking s/2
    higher sees it framed)."""
    rgba, fit, front, _ = card
    target = rgba[..., :3] * rgba[..., 3:]
    hit = np.array([0.7, -0.4, 2.5])
    fwd = np.cross(UP, [1.0, 0.0, 0.0])
    fwd /= np.linalg.norm(fwd)
    rows = []
    for scale, dist, yaw, anchor in ((0.6, 2.0, 0.0, "center"), (2.5, 9.0, 0.0, "center"),
                                     (1.0, 3.0, 40.0, "center"), (1.0, 3.0, -75.0, "bottom")):
        eye0 = hit - dist * fwd
        look = hit + (scale / 2 * UP if anchor == "bottom" else 0.0)
        click_cam = _look_at(eye0, hit, UP)  # the view the click came from (level: image y = -up)
        R = card_rotation(click_cam, UP, yaw_deg=yaw, upright=True)
        placed = place_card(fit.params, hit, scale, R, anchor)
        # a camera yawed with the card about the up axis through the hit, looking at the card
        Ry = axis_rotation(UP, yaw)
        eye = hit + Ry @ (eye0 - hit) + (look - hit)
        view = _render(placed, _look_at(eye, look, UP), _framing_K(dist, scale), H, W)
        rows.append((scale, yaw, anchor, _psnr(view, front)))
        # stated bound: >= 33 dB against the card's own front render (measured 36-40 dB; the
        # residue is the float-noise depth order of coplanar Gaussians in a new view) and
        # >= 27 dB against the image itself (the fit after 100 steps reaches ~29-30 dB)
        assert _psnr(view, front) >= 33.0, rows
        assert _psnr(view, target) >= 27.0, rows
    # the yawed card seen from the un-yawed camera is NOT the front render (the test can fail)
    R = card_rotation(_look_at(hit - 3.0 * fwd, hit, UP), UP, yaw_deg=40.0)
    view = _render(place_card(fit.params, hit, 1.0, R), _look_at(hit - 3.0 * fwd, hit, UP), _framing_K(3.0, 1.0), H, W)
    assert _psnr(view, front) < 25.0


def test_card_rotation_upright_or_facing_and_placement_transform() -> None:
    rng = np.random.default_rng(0)
    eye, target = np.array([0.0, 0.0, 0.0]), np.array([1.0, 2.0, 3.0])
    v = _look_at(eye, target, UP)  # a camera looking up and sideways, not level
    R_up = card_rotation(v, UP, upright=True)
    R_face = card_rotation(v, UP, upright=False)
    for R in (R_up, R_face):
        assert np.allclose(R @ R.T, np.eye(3), atol=1e-12) and np.linalg.det(R) == pytest.approx(1.0)
    assert np.allclose(R_face, v[:3, :3].T)  # card axes = camera right / down / forward
    assert np.allclose(R_up[:, 1], -UP)  # upright: the card's down is the scene's down
    assert abs(float(R_up[:, 2] @ UP)) < 1e-12  # normal horizontal ...
    f = target - eye
    f_h = f - (f @ UP) * UP
    assert np.allclose(R_up[:, 2], f_h / np.linalg.norm(f_h))  # ... along the view direction
    Ry = card_rotation(v, UP, yaw_deg=30.0, upright=True)
    assert np.allclose(Ry, axis_rotation(UP, 30.0) @ R_up) and np.allclose(Ry[:, 1], -UP)
    # looking straight down the up axis: upright is undefined, the card faces the camera
    down = _look_at(np.zeros(3), -UP, np.cross(UP, [1.0, 0, 0]))
    assert np.allclose(card_rotation(down, UP, upright=True), down[:3, :3].T)
    # x -> p + s R (x - anchor): the bottom edge's middle (0, 0.5, 0) lands on p
    p, s = rng.normal(size=3), 1.7
    T = placement_transform(p, s, R_up, "bottom")
    assert np.allclose(T[:3, :3] @ [0.0, 0.5, 0.0] + T[:3, 3], p)
    assert np.allclose(T[:3, :3] @ [0.0, -0.5, 0.0] + T[:3, 3], p + s * UP)  # the top: s above
    with pytest.raises(DataError, match="scale"):
        placement_transform(p, 0.0, R_up)
    with pytest.raises(DataError, match="anchor"):
        placement_transform(p, 1.0, R_up, "top")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="rotation"):
        placement_transform(p, 1.0, np.diag([1.0, 1.0, -1.0]))


def test_merged_scene_round_trips_through_ply_with_n1_plus_n2(card, tmp_path) -> None:
    _, fit, _, _ = card
    rng = np.random.default_rng(1)
    base = init_gaussians(rng.normal(size=(70, 3)), sh_degree=3, extras={"features": 5}, seed=0)
    with torch.no_grad():
        base["features"].copy_(torch.from_numpy(rng.normal(size=(70, 5))).float())
        base["shN"].copy_(torch.from_numpy(rng.normal(size=(70, 15, 3)) * 0.1).float())
    asset = place_card(fit.params, (0.5, -1.0, 2.0), 0.8, axis_rotation(UP, 20.0), "bottom")
    n1, n2 = 70, int(asset["means"].shape[0])
    merged = merge_gaussians(base, asset)
    assert set(merged.keys()) == set(base.keys())
    for k, v in merged.items():
        assert v.shape[0] == n1 + n2, k
        assert torch.equal(v[:n1], base[k].detach()), k  # the scene is untouched
    assert merged["shN"].shape == (n1 + n2, 15, 3) and float(merged["shN"][n1:].abs().max()) == 0.0
    assert float(merged["features"][n1:].abs().max()) == 0.0  # the asset has no features: zeros
    for k in ("means", "scales", "quats", "opacities", "sh0"):
        assert torch.equal(merged[k][n1:], asset[k].detach()), k
    path = save_scene_file(tmp_path / "merged.ply", merged)
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically: no partial file left
    back = load_scene_file(path)
    assert back["means"].shape[0] == n1 + n2
    for k in ("means", "scales", "quats", "opacities", "sh0", "shN", "features"):
        assert torch.allclose(back[k], merged[k], atol=1e-6), k
    assert merge_gaussians(None, asset)["means"].shape[0] == n2
    bad = dict(asset)
    bad["sh0"] = torch.zeros((n2, 2, 3))
    with pytest.raises(DataError, match="sh0"):
        merge_gaussians(base, bad)


def _plane(normal: np.ndarray, point: np.ndarray, half: float = 2.0, step: float = 0.05,
           sigma: float = 0.04, logit: float = 3.0) -> dict[str, torch.Tensor]:
    """A square of flat-ish Gaussians (isotropic sigma) in the plane through ``point``."""
    n = normal / np.linalg.norm(normal)
    a = np.cross(n, [1.0, 0.0, 0.0] if abs(n[0]) < 0.9 else [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(n, a)
    g = np.arange(-half, half + 1e-9, step)
    uu, vv = np.meshgrid(g, g)
    m = point + uu.reshape(-1, 1) * a + vv.reshape(-1, 1) * b
    k = len(m)
    return {
        "means": torch.from_numpy(m).float(),
        "quats": torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(k, 1),
        "scales": torch.full((k, 3), math.log(sigma)),
        "opacities": torch.full((k,), logit),
        "sh0": torch.zeros((k, 1, 3)),
        "shN": torch.zeros((k, 0, 3)),
    }


def test_ray_hit_on_a_known_plane_of_gaussians() -> None:
    sigma = 0.04
    normal, p0 = np.array([0.2, -0.3, 1.0]), np.array([0.0, 0.0, 3.0])
    scene = _plane(normal, p0, sigma=sigma)
    origin = np.array([0.1, -0.2, 0.0])
    nu = normal / np.linalg.norm(normal)
    errs = []
    for d in ((0.0, 0.0, 1.0), (0.2, 0.1, 1.0), (-0.3, 0.35, 1.0), (0.4, -0.2, 1.0)):
        d = np.asarray(d) / np.linalg.norm(d)
        t = float((p0 - origin) @ nu / (d @ nu))  # the analytic intersection
        hit = ray_hit(scene, origin, d, focal_px=600.0)
        assert hit is not None and hit.alpha > 0.9
        errs.append(abs(float((hit.point - p0) @ nu)))
        # stated tolerance: the hit lies within one Gaussian sigma (0.04) of the plane, i.e. its
        # depth within sigma / cos(incidence) of the analytic one (measured: 0.008-0.034 off
        # the plane for incidences 12-45 deg; the expected depth of a tilted layer of opaque
        # Gaussians leans to its near side by about sigma tan(incidence))
        assert hit.depth == pytest.approx(t, abs=sigma / abs(float(d @ nu))), (d, t, hit.depth)
    assert max(errs) < sigma, errs
    assert min(errs) < 0.25 * sigma, errs  # near-frontal rays land on the plane
    # the nearer of two planes is hit; a ray away from the scene misses
    near = _plane(np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0, 1.5]), half=0.5, sigma=sigma)
    both = {k: torch.cat([scene[k], near[k]]) for k in scene}
    h = ray_hit(both, origin, (0.0, 0.0, 1.0), focal_px=600.0)
    assert h is not None and h.depth == pytest.approx(1.5, abs=sigma)
    h = ray_hit(both, origin, (0.0, 0.6, 1.0), focal_px=600.0)  # passes beside the small plane
    assert h is not None and h.depth > 2.5
    assert ray_hit(scene, origin, (0.0, 0.0, -1.0)) is None
    assert ray_hit(scene, origin, (0.0, 1.0, 0.0)) is None  # parallel to the plane, beside it
    # a faint plane (opacity 0.05 each) is no surface
    faint = _plane(normal, p0, sigma=sigma, logit=math.log(0.05 / 0.95))
    hf = ray_hit(faint, origin, (0.0, 0.0, 1.0), focal_px=600.0)
    assert hf is None or hf.alpha < 0.5
    assert fallback_depth(scene, origin, (0.0, 0.0, 1.0)) == pytest.approx(3.0, abs=0.3)
    assert fallback_depth(scene, origin, (0.0, 0.0, -1.0)) == 1.0


class _Event:
    client = None
    target = None


def _press(handle) -> None:
    for cb in handle._impl.update_cb:
        cb(_Event())


def test_panel_places_by_a_ray_and_saves_the_merged_scene(card, tmp_path) -> None:
    """The swiftbrush panel on a real viser server (the viewer in-process, no browser): Run (a
    given image) as a job, place by a ray onto a known floor plane, move the sliders, save as
    PLY with N1 + N2 Gaussians; the browser click itself is tests/app/test_viewer_asset_place_browser.py."""
    from PIL import Image

    from splatlab.app.viewer.server import Viewer, config_from
    from splatlab.scene.gaussians import load_ply, save_ply

    floor = _plane(np.array([0.0, -1.0, 0.0]), np.array([0.0, 1.0, 0.0]), half=1.5, step=0.06)
    floor["sh0"] += 0.3
    scene_path = save_ply(tmp_path / "floor.ply", floor)
    n1 = int(floor["means"].shape[0])
    rgba = np.concatenate([asset_image(24, 24), np.full((24, 24, 1), 255, np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "asset.png")  # opaque: the card is 1 x 1
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    v = Viewer(config_from(scene_path, port=port))
    try:
        ctx = v.context("swiftbrush")
        plugin = v.panel("Plugins").instances["swiftbrush"]
        pp = plugin.place_panel
        with pytest.raises(DataError, match="Run first"):
            pp.place_at((0, 0, -3), (0, 0, 1), np.eye(4), 300.0)
        h = plugin.panel_handles["options"]
        h["image"].value = str(tmp_path / "asset.png")
        h["fit_steps"].value = 20
        h["fit_size"].value = 24
        _press(plugin.panel_handles["run"])
        # wait() returns once on_finish (the report, the status) ran, not just the fit
        assert ctx.last_job is not None and ctx.last_job.wait(60), "the fit job did not finish"
        assert ctx.last_job.state == "done", ctx.last_job.error
        assert "Asset ready" in pp.status.content
        n2 = int(plugin.last_asset.card["means"].shape[0])
        # a camera looking down at the floor (y is down here: the floor is the plane y = 1)
        eye = np.array([0.0, -1.5, -1.5])
        target = np.array([0.0, 1.0, 0.0])
        view = _look_at(eye, target, np.array([0.0, -1.0, 0.0]))
        pp.scale.value = 0.5
        rec = pp.place_at(eye, target - eye, view, 300.0, up=np.array([0.0, -1.0, 0.0]))
        assert rec["hit"] and np.linalg.norm(rec["point"] - target) < 0.05
        assert v.source.n_gaussians == n1 + n2  # shown instead of the scene: merged
        assert f"**{n1 + n2:,}**" in pp.status.content
        shown = v.source.snapshot()["means"][n1:].numpy()
        # bottom anchor, upright along -y: the card stands on the floor (y <= 1), height 0.5
        assert shown[:, 1].max() <= 1.0 + 0.03 and shown[:, 1].min() == pytest.approx(0.5, abs=0.06)
        pp.yaw.value = 90.0  # a slider change re-places (the card turns about the up axis)
        shown_yaw = v.source.snapshot()["means"][n1:].numpy()
        spread = np.ptp(shown_yaw, axis=0)
        assert spread[2] > 0.3 and spread[0] < 0.05  # now spans z, flat in x
        job = pp.save()
        assert job.wait(30), "saving did not finish"
        assert job.state == "done", job.error
        back = load_ply(pp.saved)
        assert pp.saved.name == "scene_with_asset.ply" and back["means"].shape[0] == n1 + n2
        assert torch.allclose(back["means"][n1:], torch.from_numpy(shown_yaw), atol=1e-5)
        # a ray that misses the floor: placed at the scene's median depth, and it says so
        pp.place_at(eye, (0.0, -1.0, 0.2), view, 300.0)
        assert "nothing under the click" in pp.status.content
        _press(pp.remove_btn)
        assert v.source.n_gaussians == n1 and pp.merged is None
    finally:
        v.stop()
