"""The "anomaly map (FYD)" plugin: images in, heatmap and metrics out, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splatlab.errors import DataError, SplatlabError, WeightsNotFoundError
from splatlab.models.rd4ad import TEACHER_RANDOM
from splatlab.plugins.base import PluginInputs, discover_plugins
from splatlab.plugins.inspect.anomaly.data import make_texture_set
from splatlab.plugins.inspect.anomaly.fyd import FYDConfig, FYDTrainConfig, fit_and_save_fyd
from splatlab.plugins.inspect.anomaly.fyd_plugin import FYDOptions, FYDPlugin


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    data = make_texture_set(
        "brick", n_train=6, n_test_good=1, n_per_defect=1, size=64, scale=0.5, defects=("colour",)
    )
    path = tmp_path_factory.mktemp("fyd") / "fyd.pt"
    cfg = FYDConfig(
        arch="resnet18",
        base_channels=8,
        teacher=TEACHER_RANDOM,
        image_size=64,
        embed_dim=24,
        proj_dim=16,
        pred_dim=8,
        stn_hidden=8,
    )
    fit_and_save_fyd(data, path, cfg, FYDTrainConfig(epochs=1, batch_size=3))
    return path, data


def test_plugin_scores_an_image(checkpoint) -> None:
    path, data = checkpoint
    img = (data.test[1] * 255).astype(np.uint8)
    img = np.ascontiguousarray(np.pad(img, ((0, 16), (0, 0), (0, 0)), mode="edge"))  # 80 x 64
    rep = FYDPlugin().run(PluginInputs(image=img), FYDOptions(weights=str(path)))
    assert rep.images["anomaly map"].shape == img.shape
    assert rep.metrics["image score"] > 0
    assert rep.metrics["score / normal max"] == pytest.approx(
        rep.metrics["image score"] / rep.metrics["normal score max"]
    )
    rep0 = FYDPlugin().run(PluginInputs(image=img), FYDOptions(str(path), overlay=0.0))
    np.testing.assert_array_equal(rep0.images["anomaly map"], img)


def test_plugin_errors_and_registration(checkpoint, tmp_path) -> None:
    path, data = checkpoint
    img = (data.test[0] * 255).astype(np.uint8)
    p = FYDPlugin()
    with pytest.raises(WeightsNotFoundError, match="benchmarks/anomaly_fyd.py"):
        p.run(PluginInputs(image=img), FYDOptions(weights=""))
    with pytest.raises(SplatlabError, match="does not exist.*anomaly_fyd.py"):
        p.run(PluginInputs(image=img), FYDOptions(weights=str(tmp_path / "none.pt")))
    with pytest.raises(DataError, match="needs an image"):
        p.run(PluginInputs(), FYDOptions(weights=str(path)))
    found, _ = discover_plugins()
    assert found.get("anomaly map (FYD)") is FYDPlugin
