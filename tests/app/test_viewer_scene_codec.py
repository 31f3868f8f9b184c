"""The scene codec's viewer panel on a real viser server (in-process ``Viewer``, callbacks
pressed headless): Run compresses the open scene as a job; its report offers the .slsc download
and shows the decoded scene beside the original or instead of it; the ``codec difference``
render mode draws |render(original) - render(decoded)| at the camera."""

from __future__ import annotations

import time

import numpy as np
import pytest
from viewer_util import free_port, make_scene_run

from splatlab.plugins.compress.scene_codec import (
    DIFFERENCE_MODE,
    DIFFERENCE_RANGE,
    codec_difference,
    decode_scene,
)
from splatlab.plugins.panel import apply_colormap

NAME = "scene codec"


class _Event:
    client = None
    target = None


def _press(handle) -> None:
    for cb in handle._impl.update_cb:
        cb(_Event())


@pytest.fixture(scope="module")
def viewer(tmp_path_factory):
    from splatlab.app.viewer.server import Viewer, config_from

    run = make_scene_run(tmp_path_factory.mktemp("sc_run") / "run", n_views=4)
    v = Viewer(config_from(run, port=free_port(), load_points=False))
    try:
        yield v
    finally:
        v.stop()


def _button(ctx, label_start: str):
    found = [h for h in ctx._report_handles if str(getattr(h, "label", "")).startswith(label_start)]
    assert len(found) == 1, [getattr(h, "label", None) for h in ctx._report_handles]
    return found[0]


def test_compress_show_beside_instead_difference_and_download(viewer):
    from splatlab.app.viewer.render import ViewCamera

    v = viewer
    plugin = v.panel("Plugins").instances[NAME]
    ctx = v.context(NAME)
    opts = plugin.panel_handles["options"]
    opts["quality"].value = 1
    opts["compare_formats"].value = False
    opts["kmeans_iterations"].value = 2
    original = {k: t.clone() for k, t in v.source.snapshot().items()}
    n0 = int(original["means"].shape[0])
    assert DIFFERENCE_MODE not in v.modes  # offered once there is a decode to compare
    _press(plugin.panel_handles["run"])
    assert ctx.last_job.wait(120) and ctx.last_job.state == "done", ctx.last_job.error
    deadline = time.monotonic() + 10
    while DIFFERENCE_MODE not in v.modes and time.monotonic() < deadline:
        time.sleep(0.05)
    rep = ctx.last_report
    dec = rep.scene
    n1 = int(dec["means"].shape[0])
    assert n1 == round(n0 * 0.7) and rep.metrics["n_kept"] == n1  # q1 prunes 30 %
    # the file offered for download is the bitstream whose decode is shown
    assert _button(ctx, "Download scene.slsc")
    again = decode_scene(rep.files["scene.slsc"])
    assert all(np.array_equal(again[k].numpy(), dec[k].numpy()) for k in dec)
    # beside (the default), then instead, then restored
    assert v.side is not None and int(v.side.params["means"].shape[0]) == n1
    _press(_button(ctx, "Show its scene instead"))
    assert v.source.n_gaussians == n1 and v.side is None
    # the difference mode compares the scene that was compressed with its decode, whatever is
    # shown now, at the camera it is given
    c = v.source.cameras
    cam = ViewCamera(c.viewmats[0], c.Ks[0], int(c.widths[0]), int(c.heights[0])).scaled(80)
    diff = codec_difference(original, dec, cam.viewmat, cam.K, cam.width, cam.height, ctx.background)
    assert 1e-3 < float(diff.mean()) < 0.1 and float(diff.max()) > 0.02
    img = v.render(cam, DIFFERENCE_MODE)
    assert np.array_equal(img, apply_colormap(diff, "turbo", DIFFERENCE_RANGE))
    same = codec_difference(original, original, cam.viewmat, cam.K, cam.width, cam.height)
    assert float(same.max()) == 0.0
    _press(_button(ctx, "Hide its scene / restore"))
    assert v.source.n_gaussians == n0
    # the panel's buttons switch the viewer to the mode and back
    _press(plugin.panel_state["show"])
    assert v.gui_values["mode"] == DIFFERENCE_MODE
    assert v.panel("View").mode.value == DIFFERENCE_MODE
    _press(plugin.panel_state["back"])
    assert v.gui_values["mode"] == "RGB"
