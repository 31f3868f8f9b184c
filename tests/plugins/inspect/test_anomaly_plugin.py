"""The "anomaly map (RD4AD)" plugin: images in, heatmap and metrics out, clear errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from splatlab.errors import DataError, WeightsNotFoundError
from splatlab.models.rd4ad import TEACHER_RANDOM, RD4ADConfig
from splatlab.plugins.base import PluginInputs, discover_plugins
from splatlab.plugins.inspect.anomaly.data import make_texture_set
from splatlab.plugins.inspect.anomaly.plugin import AnomalyOptions, RD4ADPlugin
from splatlab.plugins.inspect.anomaly.rd4ad import TrainConfig, fit_and_save


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    data = make_texture_set(
        "brick", n_train=6, n_test_good=1, n_per_defect=1, size=64, scale=0.5, defects=("colour",)
    )
    path = tmp_path_factory.mktemp("rd") / "rd4ad.pt"
    cfg = RD4ADConfig(arch="resnet18", base_channels=8, teacher=TEACHER_RANDOM, image_size=64)
    fit_and_save(data, path, cfg, TrainConfig(epochs=2, batch_size=3))
    return path, data


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def test_plugin_on_an_upload_and_an_input_image(checkpoint) -> None:
    path, data = checkpoint
    img = (data.test[1] * 255).astype(np.uint8)  # the colour-defect crop
    img = np.ascontiguousarray(np.pad(img, ((0, 16), (0, 0), (0, 0)), mode="edge"))  # 80 x 64
    opts = AnomalyOptions(weights=str(path), overlay=0.5)
    rep = RD4ADPlugin().run(PluginInputs(uploads={"defect.png": _png(img)}), opts)
    heat = rep.images["anomaly map"]
    assert heat.shape == img.shape and heat.dtype == np.uint8
    assert not np.array_equal(heat, img)
    np.testing.assert_array_equal(rep.images["input"], img)
    assert rep.metrics["image score"] > 0
    assert rep.metrics["score / normal max"] == pytest.approx(
        rep.metrics["image score"] / rep.metrics["normal score max"]
    )
    rep2 = RD4ADPlugin().run(PluginInputs(image=img), opts)  # the same image as INPUT
    assert rep2.metrics["image score"] == pytest.approx(rep.metrics["image score"], rel=1e-6)
    rep0 = RD4ADPlugin().run(PluginInputs(image=img), AnomalyOptions(str(path), overlay=0.0))
    np.testing.assert_array_equal(rep0.images["anomaly map"], img)  # opacity 0 = the image


def test_plugin_on_the_rendered_view(checkpoint) -> None:
    from splatlab.plugins.base import SimpleCamera, make_scene_renderer

    path, _ = checkpoint
    g = torch.Generator().manual_seed(0)
    n = 200
    params = {
        "means": torch.randn(n, 3, generator=g) * 0.5,
        "scales": torch.full((n, 3), -2.5),
        "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        "opacities": torch.full((n,), 2.0),
        "sh0": torch.rand(n, 1, 3, generator=g),
        "shN": torch.zeros(n, 0, 3),
    }
    vm = np.eye(4, dtype=np.float32)
    vm[2, 3] = 3.0
    K = np.array([[60.0, 0, 40], [0, 60.0, 32], [0, 0, 1]], np.float32)
    cam = SimpleCamera(viewmat=vm, K=K, width=80, height=64)
    inputs = PluginInputs(params=params, render=make_scene_renderer(params), camera=cam)
    rep = RD4ADPlugin().run(inputs, AnomalyOptions(weights=str(path)))
    assert rep.images["anomaly map"].shape == (64, 80, 3)
    assert "current view" in rep.title


def test_plugin_errors(checkpoint, tmp_path) -> None:
    path, data = checkpoint
    img = (data.test[0] * 255).astype(np.uint8)
    p = RD4ADPlugin()
    with pytest.raises(WeightsNotFoundError, match="benchmarks/anomaly.py"):
        p.run(PluginInputs(image=img), AnomalyOptions(weights=""))
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        p.run(PluginInputs(image=img), AnomalyOptions(weights=str(tmp_path / "none.pt")))
    opts = AnomalyOptions(weights=str(path))
    with pytest.raises(DataError, match="empty"):
        p.run(PluginInputs(uploads={"a.png": b""}), opts)
    with pytest.raises(DataError, match="not a readable image"):
        p.run(PluginInputs(uploads={"a.png": b"\x89PNG\r\n\x1a\n" + b"\0" * 64}), opts)
    with pytest.raises(DataError, match="at least 32 px"):
        p.run(PluginInputs(uploads={"tiny.png": _png(np.zeros((8, 8, 3), np.uint8))}), opts)
    with pytest.raises(DataError, match="limit"):  # 8000 x 6000: refused before decoding
        big = Image.new("L", (8000, 6000))
        buf = io.BytesIO()
        big.save(buf, format="PNG")
        p.run(PluginInputs(uploads={"big.png": buf.getvalue()}), opts)
    with pytest.raises(DataError, match="RGB image"):
        p.run(PluginInputs(image=np.zeros((64, 64, 2), np.uint8)), opts)
    with pytest.raises(DataError, match="needs an image"):
        p.run(PluginInputs(), opts)
    # a grey image is accepted (expanded to RGB)
    rep = p.run(PluginInputs(image=img[..., 0]), opts)
    assert rep.images["anomaly map"].shape == img.shape


def test_plugin_is_registered() -> None:
    found, _ = discover_plugins()
    assert found.get("anomaly map (RD4AD)") is RD4ADPlugin
    assert RD4ADPlugin.accepts == ("image", "scene")
