"""Anomaly maps of renders (issue 14, item 4(b)): the render-mode function, the error masks and
their metrics on constructed cases with known answers, the plugins' test-view evaluation, and the
"anomaly (RD4AD)" render mode offered by the plugin's panel in a real (headless) viewer."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from splatlab.errors import DataError
from splatlab.models.rd4ad import TEACHER_RANDOM, RD4ADConfig, build_rd4ad, save_rd4ad
from splatlab.plugins.base import PluginInputs, SimpleCamera, make_scene_renderer
from splatlab.plugins.inspect.anomaly.plugin import RENDER_MODE, AnomalyOptions, RD4ADPlugin
from splatlab.plugins.inspect.anomaly.rd4ad import TrainConfig
from splatlab.plugins.inspect.anomaly.render_mode import (
    anomaly_render_mode,
    error_mask,
    fit_render_rd4ad,
    gradient_map,
    random_crops,
    rd4ad_map,
    render_error_metrics,
    render_view_rgb,
    score_test_views,
    scorer_for,
)
from splatlab.scene.datasets.base import Dataset, Frame

TINY = RD4ADConfig(arch="resnet18", base_channels=8, teacher=TEACHER_RANDOM, image_size=64)


def _scene(n: int = 300, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "means": torch.randn(n, 3, generator=g) * 0.5,
        "scales": torch.full((n, 3), -2.5),
        "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        "opacities": torch.full((n,), 2.0),
        "sh0": torch.rand(n, 1, 3, generator=g),
        "shN": torch.zeros(n, 0, 3),
    }


def _camera(w: int, h: int) -> SimpleCamera:
    vm = np.eye(4, dtype=np.float32)
    vm[2, 3] = 3.0
    f = 0.8 * max(w, h)
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], np.float32)
    return SimpleCamera(viewmat=vm, K=K, width=w, height=h)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_rd4ad(TINY).eval()


def test_render_mode_map_has_the_camera_size_and_is_finite(tiny_model) -> None:
    params = _scene()
    for w, h, side in ((80, 64, None), (75, 50, None), (120, 90, 64)):
        cam = _camera(w, h)
        fn = anomaly_render_mode(scorer_for(tiny_model, side), lambda: (0.1, 0.1, 0.1))
        m = fn(cam, params)
        assert m.shape == (h, w) and m.dtype == np.float32
        assert np.isfinite(m).all() and m.std() > 0
    # the map is the one of the rendered view (the mode renders what it is given)
    cam = _camera(80, 64)
    rgb, alpha = render_view_rgb(params, cam)
    assert rgb.shape == (64, 80, 3) and alpha.shape == (64, 80) and 0 < alpha.mean() < 1
    np.testing.assert_allclose(
        anomaly_render_mode(scorer_for(tiny_model))(cam, params), rd4ad_map(tiny_model, rgb),
        rtol=1e-5, atol=1e-6,
    )
    empty = {k: v[:0] for k, v in params.items()}
    assert anomaly_render_mode(scorer_for(tiny_model))(cam, empty).shape == (64, 80)


def test_rd4ad_map_is_fully_convolutional_at_the_native_aspect(tiny_model) -> None:
    rng = np.random.default_rng(0)
    img = rng.random((96, 64, 3)).astype(np.float32)  # a multiple of 32: no padding
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    with torch.no_grad():
        t, s = tiny_model(tiny_model.normalize(x))
    from splatlab.models.rd4ad import anomaly_map

    want = anomaly_map(t, s, (96, 64), sigma=TINY.sigma)[0]
    np.testing.assert_allclose(rd4ad_map(tiny_model, img), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError, match="RGB"):
        rd4ad_map(tiny_model, img[..., 0])


def test_error_mask_threshold_and_channel_mean() -> None:
    gt = np.full((40, 50, 3), 0.5, np.float32)
    r = gt.copy()
    r[5:15, 10:30] = (1.0, 0.2, 0.2)  # mean |diff| = (0.5 + 0.3 + 0.3) / 3 = 0.367
    r[25:30, 0:5, 0] += 0.25  # one channel only: mean 0.083, under 0.1
    r[32:36, 40:44] += 0.08  # all channels by 0.08: under 0.1, over 0.05
    m = error_mask(r, gt, 0.1)
    want = np.zeros((40, 50), bool)
    want[5:15, 10:30] = True
    np.testing.assert_array_equal(m, want)
    m05 = error_mask(r, gt, 0.05)
    assert m05[25:30, 0:5].all() and m05[32:36, 40:44].all() and m05.sum() == 200 + 25 + 16
    # uint8 inputs are read as /255
    u8 = error_mask((r * 255).round().astype(np.uint8), (gt * 255).round().astype(np.uint8), 0.1)
    np.testing.assert_array_equal(u8, want)
    with pytest.raises(DataError, match="differ in size"):
        error_mask(r[:10], gt)


def test_metrics_on_a_render_with_a_pasted_wrong_patch() -> None:
    rng = np.random.default_rng(1)
    ramp = np.linspace(0.3, 0.6, 64, dtype=np.float32)[None, :, None]  # smooth photos
    gts = np.repeat(np.broadcast_to(ramp, (48, 64, 3))[None], 3, 0).copy()
    renders = gts.copy()
    for i, (y, x) in enumerate(((4, 6), (20, 30), (30, 2))):
        renders[i, y : y + 12, x : x + 16] = (0.0, 0.9, 0.0)  # a wrong green patch
    masks = [error_mask(r, g) for r, g in zip(renders, gts)]
    assert all(k.sum() == 12 * 16 for k in masks)
    # a map that is high exactly where the patch is: perfect; inverted: worst; flat: chance
    perfect = [k.astype(np.float32) + 0.01 * rng.random(k.shape) for k in masks]
    m = render_error_metrics(perfect, masks, photo_maps=[np.zeros((48, 64))] * 3)
    assert m["pixel_auroc"] == pytest.approx(1.0) and m["aupro"] == pytest.approx(1.0, abs=1e-3)
    assert m["image_auroc"] == pytest.approx(1.0)
    assert m["error_fraction"] == pytest.approx(3 * 12 * 16 / (3 * 48 * 64))
    worst = render_error_metrics([-p for p in perfect], masks)
    assert worst["pixel_auroc"] == pytest.approx(0.0) and worst["aupro"] == pytest.approx(0.0)
    flat = render_error_metrics([np.zeros((48, 64))] * 3, masks)
    assert flat["pixel_auroc"] == pytest.approx(0.5)
    # the gradient baseline fires on the patch's border, not on its flat inside: about chance
    # on the filled patch, near perfect on a thin error along its outline
    from scipy.ndimage import binary_dilation, binary_erosion

    grads = [gradient_map(r, sigma=1.0) for r in renders]
    g = render_error_metrics(grads, masks)
    assert 0.35 < g["pixel_auroc"] < 0.65
    rings = [binary_dilation(k) & ~binary_erosion(k) for k in masks]
    assert render_error_metrics(grads, rings)["pixel_auroc"] > 0.9
    with pytest.raises(DataError, match="one size"):
        render_error_metrics([perfect[0], perfect[1][:40]], [masks[0], masks[1][:40]])


def _tiny_dataset(params, w: int = 64, h: int = 48) -> tuple[Dataset, np.ndarray]:
    """Two views of ``params``; the 'photo' of each is its render with a red patch pasted in
    (so the render is wrong exactly there). Returns the dataset and the patch mask."""
    frames, photos = [], []
    patch = np.zeros((h, w), bool)
    patch[10:22, 20:36] = True
    for k in range(2):
        cam = _camera(w, h)
        cam.viewmat[0, 3] = 0.2 * k
        rgb = make_scene_renderer(params)(cam, "RGB").astype(np.float32) / 255.0
        rgb[patch] = (1.0, 0.0, 0.0)
        frames.append(Frame(f"v{k}.png", cam.viewmat.astype(np.float64), cam.K.astype(np.float64), w, h))
        photos.append(rgb)
    ds = Dataset(root=Path("."), frames=frames, train_ids=[], test_ids=[0, 1],
                 image_loader=lambda i: photos[i])
    return ds, patch


def test_score_test_views_with_a_detector_free_scorer() -> None:
    params = _scene()
    ds, patch = _tiny_dataset(params)
    render = make_scene_renderer(params)

    def scorer(img: np.ndarray) -> np.ndarray:  # "how red": high on the photo's patch only
        return (img[..., 0] - img[..., 1:].mean(-1)).astype(np.float32)

    m, renders, maps, masks = score_test_views(scorer, render, ds, 0.1)
    assert len(maps) == 2 and maps[0].shape == (48, 64)
    # the render is wrong wherever it is not red enough on the patch
    for k in masks:
        assert k[~patch].sum() == 0 and k[patch].mean() > 0.9
    # the photo (red patch) scores higher than the render: image AUROC of render vs photo is 0
    assert m["image_auroc"] == pytest.approx(0.0)
    with pytest.raises(DataError, match="no pixel"):
        score_test_views(scorer, render, ds, 0.99)
    with pytest.raises(DataError, match="no test views"):
        score_test_views(scorer, render, Dataset(root=Path("."), frames=[]), 0.1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    photos = [rng.uniform(0.2, 0.8, (48, 72, 3)).astype(np.float32) for _ in range(3)]
    model, stats = fit_render_rd4ad(photos, TINY, n_crops=8, train=TrainConfig(epochs=1, batch_size=4))
    assert stats["side"] == 72 and stats["score_max"] >= stats["score_mean"] > 0
    path = tmp_path_factory.mktemp("rdr") / "rd4ad_render.pt"
    save_rd4ad(model, path, {"normal_scores": stats})
    return path


def test_random_crops_are_of_the_photos() -> None:
    photo = np.linspace(0, 1, 40 * 50 * 3, dtype=np.float32).reshape(40, 50, 3)
    c = random_crops([photo], 5, 32, seed=0, jitter=0.0)
    assert c.shape == (5, 32, 32, 3)
    for crop in c:  # each crop (or its mirror) is a window of the photo
        found = any(
            np.allclose(photo[y : y + 32, x : x + 32], cand)
            for y in range(9) for x in range(19) for cand in (crop, crop[:, ::-1])
        )
        assert found
    assert random_crops([photo[:20]], 2, 32).shape == (2, 32, 32, 3)  # enlarged to fit


def test_plugin_test_views_report(checkpoint) -> None:
    params = _scene()
    ds, patch = _tiny_dataset(params)
    inputs = PluginInputs(params=params, render=make_scene_renderer(params))
    inputs.dataset = ds
    rep = RD4ADPlugin().run(inputs, AnomalyOptions(weights=str(checkpoint), test_views=True))
    # the error mask is the patch (where the render is not red enough): its share is known
    assert rep.metrics["wrong pixels"] == pytest.approx(patch.mean(), abs=0.02)
    for k in ("pixel AUROC", "AUPRO@0.3", "image AUROC (render vs photo)"):
        assert 0.0 <= rep.metrics[k] <= 1.0
    assert rep.images["error mask (first test view)"].shape == (48, 64, 3)
    with pytest.raises(DataError, match="run directory"):
        RD4ADPlugin().run(PluginInputs(image=np.zeros((64, 64, 3), np.uint8)),
                          AnomalyOptions(weights=str(checkpoint), test_views=True))


class _Event:
    client = None
    target = None


def _press(handle) -> None:
    for cb in handle._impl.update_cb:
        cb(_Event())


def test_viewer_offers_the_anomaly_render_mode(checkpoint, tmp_path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "app"))
    try:
        from viewer_util import free_port, make_scene_run
    finally:
        sys.path.pop(0)
    from splatlab.app.viewer.render import ViewCamera
    from splatlab.app.viewer.server import Viewer, config_from
    from splatlab.plugins.panel import apply_colormap

    run = make_scene_run(tmp_path / "run", n_views=4)
    v = Viewer(config_from(run, port=free_port(), load_points=False))
    try:
        plugin = v.panel("Plugins").instances["anomaly map (RD4AD)"]
        assert RENDER_MODE not in v.modes
        plugin.panel_handles["options"]["weights"].value = str(checkpoint)
        _press(plugin.panel_handles["render_mode"])
        assert RENDER_MODE in v.modes and v.gui_values["mode"] == RENDER_MODE
        c = v.source.cameras
        cam = ViewCamera(c.viewmats[0], c.Ks[0], int(c.widths[0]), int(c.heights[0])).scaled(96)
        img = v.render(cam, RENDER_MODE)
        assert img.shape == (cam.height, cam.width, 3) and img.dtype == np.uint8
        entry = v.mode_fns[RENDER_MODE]
        raw = entry.fn(cam, v.displayed_params())
        assert raw.shape == (cam.height, cam.width) and np.isfinite(raw).all()
        np.testing.assert_array_equal(img, apply_colormap(raw, "turbo", entry.value_range))
        assert np.abs(img.astype(int) - v.render(cam, "RGB").astype(int)).mean() > 5
    finally:
        v.stop()


def test_fyd_render_mode_scores_the_view_through_its_square_input() -> None:
    from splatlab.plugins.inspect.anomaly.fyd import FYDConfig, build_fyd, fit_gaussians
    from splatlab.plugins.inspect.anomaly.rd4ad import to_tensor

    torch.manual_seed(0)
    cfg = FYDConfig(arch="resnet18", base_channels=8, teacher=TEACHER_RANDOM, image_size=64,
                    embed_dim=12, proj_dim=8, pred_dim=4, stn_hidden=4)
    fyd = build_fyd(cfg)
    rng = np.random.default_rng(0)
    fit_gaussians(fyd, rng.uniform(0.3, 0.7, (4, 64, 64, 3)).astype(np.float32))
    params, cam = _scene(), _camera(96, 48)
    m = anomaly_render_mode(scorer_for(fyd))(cam, params)
    assert m.shape == (48, 96) and np.isfinite(m).all() and m.std() > 0
    rgb, _ = render_view_rgb(params, cam)
    with torch.no_grad():
        square = fyd.predict(to_tensor(rgb[None], 64))[0]
    import cv2

    np.testing.assert_allclose(m, cv2.resize(square, (96, 48), interpolation=cv2.INTER_LINEAR),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(DataError, match="not an anomaly model"):
        scorer_for(object())
