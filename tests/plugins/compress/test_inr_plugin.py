"""The INR image codec plugin: report contents, uploads, progress and cancel."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from splatlab.errors import DataError
from splatlab.plugins.base import Cancelled, PluginInputs, load_plugin_class
from splatlab.plugins.compress import rd
from splatlab.plugins.compress.inr import decode
from splatlab.plugins.compress.inr.plugin import InrImageCodec, InrOptions


def _img(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.2 + 0.6 * xx, 0.3 + 0.5 * yy, 0.5 + 0.3 * np.sin(6 * xx + 3 * yy)], -1)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def test_registered_through_entry_point():
    cls = load_plugin_class("splatlab.plugins.compress.inr.plugin:InrImageCodec")
    assert cls.kind == "compress" and "image" in cls.accepts


def test_report_of_an_image_input():
    img = _img(40, 48)
    calls = []
    rep = InrImageCodec().run(
        PluginInputs(image=img), InrOptions(steps=40, anchors=True), lambda f, m="": calls.append(f)
    )
    data = rep.files["image.inr"]
    dec = decode(data)
    assert np.array_equal(dec, rep.images["decoded"])
    assert rep.images["error x4"].shape == img.shape and rep.images["error x4"].dtype == np.uint8
    m = rep.metrics
    assert m["bytes"] == len(data)
    assert m["bpp"] == pytest.approx(8 * len(data) / (40 * 48))
    assert m["psnr_db"] == pytest.approx(rd.psnr(dec, img))
    assert 0 < m["ms_ssim"] <= 1 and m["psnr_db"] > 15
    assert abs(m["estimate_over_file"] - 1) < 0.03
    codecs = set(rep.tables["rd points"]["codec"])
    assert {"JPEG", "WebP", "AVIF", "HEVC", "INR (ours)"} <= codecs
    fig = rep.plots["rate-distortion"]
    assert fig.data[-1].marker.symbol == "star" and fig.data[-1].x[0] == pytest.approx(m["bpp"])
    assert calls and calls[-1] == 1.0 and all(0 <= f <= 1 for f in calls)
    assert rep.to_json()["files"]["image.inr"] == len(data)


def test_upload_is_downscaled_and_cancel_propagates():
    buf = io.BytesIO()
    Image.fromarray(_img(80, 96)).save(buf, format="PNG")
    inputs = PluginInputs(uploads={"view.png": buf.getvalue()})
    rep = InrImageCodec().run(inputs, InrOptions(steps=5, anchors=False, max_side=48))
    assert rep.images["decoded"].shape == (40, 48, 3)
    assert any("downscaled" in n for n in rep.notes)

    def cancel(f: float, m: str = "") -> None:
        raise Cancelled("user pressed cancel")

    with pytest.raises(Cancelled):
        InrImageCodec().run(PluginInputs(image=_img(256, 256)),
                            InrOptions(steps=2000, anchors=False), cancel)


def test_bad_inputs():
    with pytest.raises(DataError, match="needs an image"):
        InrImageCodec().run(PluginInputs(), InrOptions(steps=1))
    with pytest.raises(DataError, match="x.png"):
        InrImageCodec().run(PluginInputs(uploads={"x.png": b"\x89PNG\r\n\x1a\nbroken"}), InrOptions(steps=1))


def test_architecture_candidates_from_the_panel_option():
    from splatlab.plugins.compress.inr import parse_arch_candidates

    assert parse_arch_candidates("") == ()
    assert parse_arch_candidates("8,12") == ((8, 12),)
    assert parse_arch_candidates("8,12; 12,16") == parse_arch_candidates("8,12 12,16") == ((8, 12), (12, 16))
    for bad in ("8", "8,x", "8,12,3", "0,12"):
        with pytest.raises(DataError, match="candidate"):
            parse_arch_candidates(bad)
    img = _img(32, 32)
    rep = InrImageCodec().run(PluginInputs(image=img), InrOptions(steps=30, anchors=False, lmbda=0.02,
                                                                  arch_candidates="4,6"))
    m = rep.metrics
    assert (m["arm_hidden"], m["syn_hidden"]) in {(InrOptions.arm_hidden, InrOptions.syn_hidden), (4.0, 6.0)}
    assert np.array_equal(decode(rep.files["image.inr"]), rep.images["decoded"])
    with pytest.raises(DataError, match="ARM,SYN"):
        InrImageCodec().run(PluginInputs(image=img), InrOptions(steps=1, arch_candidates="8;12"))
    # the single architecture itself (the benchmark's --arm-hidden / --syn-hidden)
    rep = InrImageCodec().run(PluginInputs(image=img), InrOptions(steps=20, anchors=False, arm_hidden=4,
                                                                  syn_hidden=6))
    assert (rep.metrics["arm_hidden"], rep.metrics["syn_hidden"]) == (4.0, 6.0)
    assert np.array_equal(decode(rep.files["image.inr"]), rep.images["decoded"])
    for bad in (dict(arm_hidden=0), dict(syn_hidden=256)):
        with pytest.raises(DataError, match="1..255"):
            InrImageCodec().run(PluginInputs(image=img), InrOptions(steps=1, anchors=False, **bad))
