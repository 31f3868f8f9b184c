"""The image-coding-for-machines plugin and its checkpoint bundle: report contents, the same
bitstream for machine and human, clear errors without a trained checkpoint."""

from __future__ import annotations

import copy
import io
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from splatlab.errors import DataError, SplatlabError
from splatlab.plugins.base import ENTRY_POINT_GROUP, Cancelled, PluginInputs, load_plugin_class
from splatlab.plugins.compress.icm.arr import ARR
from splatlab.plugins.compress.icm.codec import CodecConfig, MeanScaleHyperprior
from splatlab.plugins.compress.icm.plugin import IcmCodecPlugin, IcmOptions
from splatlab.plugins.compress.icm.task import SegNet, ViewSet, mean_iou
from splatlab.plugins.compress.icm.train import (
    TRAIN_COMMAND,
    IcmBundle,
    IcmWeightsError,
    crop_batches,
    evaluate,
    load_bundle,
    save_bundle,
    train_codec,
)


def _img(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.2 + 0.6 * xx, 0.3 + 0.5 * yy, 0.5 + 0.3 * np.sin(6 * xx + 3 * yy)], -1)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    codec = MeanScaleHyperprior(CodecConfig(16, 16)).eval()
    with torch.no_grad():
        codec.g_s[-1].bias.fill_(0.5)  # mid-grey output instead of a clamped black
    codec.update()
    human = copy.deepcopy(codec.g_s)
    with torch.no_grad():
        human[0].bias.add_(0.5)
    b = IcmBundle(codec, SegNet(7, 4).eval(), ARR(2, 4).eval(), human, {"test": True},
                  ["background", "a", "b", "c", "d", "e", "f"])
    return save_bundle(tmp_path_factory.mktemp("icm") / "tiny.pt", b)


def test_registered_through_entry_point() -> None:
    eps = {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert load_plugin_class(eps["icm-codec"]) is IcmCodecPlugin
    assert IcmCodecPlugin.name == "image coding for machines"
    assert IcmCodecPlugin.kind == "compress" and "image" in IcmCodecPlugin.accepts


def test_report_codes_once_for_machine_and_human(bundle_path: Path) -> None:
    img = _img(40, 72)
    calls: list[float] = []
    rep = IcmCodecPlugin().run(PluginInputs(image=img), IcmOptions(checkpoint=str(bundle_path)),
                               lambda f, m="": calls.append(f))
    data = rep.files["image.icm"]
    m = rep.metrics
    assert m["bytes"] == len(data) and m["bpp"] == pytest.approx(8 * len(data) / (40 * 72))
    assert 1 <= m["arr_levels_used"] <= 2
    b = load_bundle(bundle_path)
    machine = b.codec.decompress(data)
    human = b.codec.decompress(data, decoder=b.human_decoder)
    assert np.array_equal(machine, rep.images["decoded for the machine"])
    assert np.array_equal(human, rep.images["decoded for humans (bridge)"])
    assert not np.array_equal(machine, human)
    assert 0 <= m["task_agreement_machine_miou"] <= 1 and "psnr_human_db" in m
    arr_img = rep.images["ARR input (2 levels)"]
    assert len(np.unique(arr_img.reshape(-1, 3), axis=0)) == m["arr_levels_used"]
    assert rep.images["task on original"].shape == img.shape
    assert calls[-1] == 1.0
    # without ARR the original is coded
    rep2 = IcmCodecPlugin().run(PluginInputs(image=img),
                                IcmOptions(checkpoint=str(bundle_path), use_arr=False))
    assert "arr_levels_used" not in rep2.metrics
    assert not any(k.startswith("ARR") for k in rep2.images)
    assert np.array_equal(b.codec.decompress(rep2.files["image.icm"]),
                          rep2.images["decoded for the machine"])


def test_upload_downscale_and_cancel(bundle_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(_img(80, 96)).save(buf, format="PNG")
    rep = IcmCodecPlugin().run(PluginInputs(uploads={"v.png": buf.getvalue()}),
                               IcmOptions(checkpoint=str(bundle_path), max_side=48))
    assert rep.images["decoded for the machine"].shape == (40, 48, 3)

    def cancel(f: float, m: str = "") -> None:
        raise Cancelled("cancel")

    with pytest.raises(Cancelled):
        IcmCodecPlugin().run(PluginInputs(image=_img(32, 32)),
                             IcmOptions(checkpoint=str(bundle_path)), cancel)


def test_no_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IcmWeightsError, match="not found") as e:
        IcmCodecPlugin().run(PluginInputs(image=_img(32, 32)), IcmOptions())
    assert TRAIN_COMMAND in str(e.value) and isinstance(e.value, SplatlabError)
    with pytest.raises(IcmWeightsError, match="not found"):
        load_bundle(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(IcmWeightsError, match="not a readable ICM checkpoint"):
        load_bundle(tmp_path / "junk.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(IcmWeightsError, match="not an ICM checkpoint"):
        load_bundle(tmp_path / "other.pt")


def test_bad_inputs(bundle_path: Path) -> None:
    opts = IcmOptions(checkpoint=str(bundle_path))
    with pytest.raises(DataError, match="needs an image"):
        IcmCodecPlugin().run(PluginInputs(), opts)
    with pytest.raises(DataError, match="v.png"):
        IcmCodecPlugin().run(PluginInputs(uploads={"v.png": b"\x89PNG\r\n\x1a\nbroken"}), opts)
    with pytest.raises(DataError, match="too small"):
        IcmCodecPlugin().run(PluginInputs(image=_img(8, 40)), opts)
    with pytest.raises(DataError, match="uint8 RGB"):
        IcmCodecPlugin().run(PluginInputs(image=np.zeros((32, 32, 4), np.uint8)), opts)


def test_training_recipe_runs_and_measures() -> None:
    """Two steps of the end-to-end ICM loss (ARR + codec + frozen task net), then the
    evaluation: rates from bytes and a pooled mIoU."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    views = ViewSet((rng.random((3, 64, 64, 3)) * 255).astype(np.uint8),
                    rng.integers(0, 7, (3, 64, 64)))
    task = SegNet(7, 4).eval()
    for p in task.parameters():
        p.requires_grad_(False)
    codec, arr = MeanScaleHyperprior(CodecConfig(8, 8)), ARR(2, 4)
    stats = train_codec(codec, crop_batches(views.images, views.labels, 64, 2), 2,
                        mse_weight=0.0, task_net=task, task_weight=1.0, arr=arr)
    assert np.isfinite(stats["loss"]) and stats["ce"] > 0
    ev = evaluate(codec, views, task, arr, with_ms_ssim=False)
    assert ev.bpp == pytest.approx(np.mean([8 * len(b) / 64**2 for b in ev.bitstreams]))
    assert 0 <= ev.miou <= 1 and np.isnan(ev.ms_ssim)
    assert mean_iou(np.array([0, 1, 1]), np.array([0, 1, 0])) == pytest.approx(0.5)
