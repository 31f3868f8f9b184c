"""The "image deepfake" (D4) plugin: a tiny trained detector end to end (Python and CLI), missing
weights and bad images -> clear errors."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from splatlab.errors import DataError, WeightsNotFoundError
from splatlab.plugins.base import PluginInputs
from splatlab.plugins.inspect.deepfake.data import toy_set
from splatlab.plugins.inspect.deepfake.model import D4Config
from splatlab.plugins.inspect.deepfake.plugin import (
    D4Options,
    D4Plugin,
    check_image,
    decode_image,
    grid_crops,
)
from splatlab.plugins.inspect.deepfake.train import TrainConfig, fit_and_save


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    real, fake = toy_set(32, 16, seed=0)
    path = tmp_path_factory.mktemp("d4") / "d4.pt"
    cfg = D4Config(image_size=16, n_partitions=2, width=4)
    tcfg = TrainConfig(epochs=10, batch_size=16, lr=3e-3, cw_steps=5, saliency_samples=8)
    det, info = fit_and_save(real, fake, path, cfg, tcfg)
    return path, det, info


def _png(img: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    (Image.fromarray(img, mode) if mode else Image.fromarray(img)).save(buf, format="PNG")
    return buf.getvalue()


def test_plugin_reports_each_model_and_the_ensemble(trained) -> None:
    path, det, info = trained
    assert info["saliency"].shape == (3, 16, 16) and info["time_total_s"] > 0
    real, fake = toy_set(2, 16, seed=5)
    opts = D4Options(weights=str(path))
    rep_f = D4Plugin().run(PluginInputs(image=np.tile(fake[0], (2, 3, 1))), opts)  # 32 x 48
    m = rep_f.metrics
    parts = [m["P(synthetic) partition 1"], m["P(synthetic) partition 2"]]
    assert m["P(synthetic) ensemble"] == pytest.approx(np.mean(parts), abs=1e-6)
    assert 0 <= m["P(synthetic) full spectrum"] <= 1 and m["crops"] == 6
    assert m["P(synthetic) ensemble"] > 0.5 and m["synthetic (ensemble)"] == 1.0
    rep_r = D4Plugin().run(PluginInputs(uploads={"real.png": _png(real[0])}), opts)
    assert rep_r.metrics["P(synthetic) ensemble"] < 0.5 and rep_r.metrics["crops"] == 1
    tab = rep_r.tables["P(synthetic)"]
    assert tab["model"] == ["partition 1", "partition 2", "ensemble", "full spectrum"]


def test_cli_end_to_end(trained, tmp_path, capsys) -> None:
    """`splatlab plugin run` finds the plugin through its entry point (pyproject.toml)."""
    from splatlab.app.plugin_cli import plugin_main

    path, _, _ = trained
    _, fake = toy_set(1, 16, seed=7)
    img = tmp_path / "fake.png"
    Image.fromarray(np.tile(fake[0], (2, 2, 1))).save(img)
    out = tmp_path / "out"
    assert (
        plugin_main(["run", "image deepfake", str(img), "--weights", str(path), "--out", str(out)])
        == 0
    )
    rep = json.loads((out / "report.json").read_text())
    assert rep["metrics"]["crops"] == 4.0
    assert 0 <= rep["metrics"]["P(synthetic) ensemble"] <= 1
    capsys.readouterr()
    assert plugin_main(["run", "image-deepfake", str(img), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "d4_bench.py" in err[0], err


def test_missing_weights_name_the_training_command(trained, tmp_path) -> None:
    img = toy_set(1, 16)[0][0]
    for w in ("", str(tmp_path / "nope.pt")):
        with pytest.raises(
            WeightsNotFoundError, match=r"benchmarks/d4_bench.py --quick --save-weights"
        ):
            D4Plugin().run(PluginInputs(image=img), D4Options(weights=w))


def test_bad_images_give_clear_errors(trained) -> None:
    path, _, _ = trained
    opts = D4Options(weights=str(path))
    plugin = D4Plugin()
    ok = toy_set(1, 16)[0][0]
    cases = [
        ({"uploads": {"x.png": b""}}, "is empty"),
        ({"uploads": {"x.png": b"\x89PNG\r\n\x1a\nnot really"}}, "not a readable image"),
        ({"uploads": {"x.png": _png(ok)[:60]}}, "not a readable image"),
        ({"uploads": {"deep.png": _png(np.full((20, 20), 40000, np.uint16))}}, "image mode"),
        ({"image": np.zeros((8, 40, 3), np.uint8)}, "at least 16 px"),
        ({"image": np.zeros((20, 20, 2), np.uint8)}, "expected an RGB image"),
        ({"image": np.full((20, 20, 3), 2.0)}, "uint8 pixels"),
        ({"image": np.zeros((20, 20, 3), np.int16)}, "uint8 pixels"),
        ({}, "needs an image"),
    ]
    for kwargs, needle in cases:
        with pytest.raises(DataError, match=needle):
            plugin.run(PluginInputs(**kwargs), opts)
    # grey and RGBA images are accepted and converted
    assert check_image(np.zeros((20, 20), np.uint8), "grey").shape == (20, 20, 3)
    assert decode_image("a.png", _png(np.zeros((20, 20, 4), np.uint8))).shape == (20, 20, 3)


def test_grid_crops_cover_the_image() -> None:
    img = np.arange(40 * 70 * 3, dtype=np.int64).reshape(40, 70, 3).astype(np.uint8)
    c = grid_crops(img, 16, 16)
    assert c.shape == (15, 16, 16, 3)  # 3 rows (ceil(40/16)) x 5 columns (ceil(70/16), <= 16 // 3)
    np.testing.assert_array_equal(c[0], img[:16, :16])
    np.testing.assert_array_equal(c[-1], img[-16:, -16:])
    assert grid_crops(img, 16, 1).shape == (1, 16, 16, 3)
    with pytest.raises(DataError, match="at least 50 x 50"):
        grid_crops(img, 50, 4)


def test_plugin_scores_the_rendered_view(trained) -> None:
    path, _, _ = trained
    _, fake = toy_set(1, 16, seed=9)
    seen = []

    def render(camera, mode):
        seen.append((camera, mode))
        return np.tile(fake[0], (2, 2, 1))

    rep = D4Plugin().run(PluginInputs(render=render, camera="cam"), D4Options(weights=str(path)))
    assert seen == [("cam", "RGB")] and rep.metrics["crops"] == 4.0
    assert rep.title.endswith("(current view)")
