"""The Query / Segment tabs driven headless (their callbacks, no browser): selections against
the ground-truth labels, stale selections after an edit, clicks through segment_click."""

from __future__ import annotations

import numpy as np
import pytest
from viewer_util import free_port, make_feature_run

from splatlab.app.viewer.panels import segment as feature_panels
from splatlab.app.viewer.render import ViewCamera
from splatlab.app.viewer.server import Viewer, config_from
from splatlab.scene.synthetic import object_label_at


class _Event:
    client = None
    target = None


def _press(handle) -> None:
    for cb in handle._impl.update_cb:
        cb(_Event())


@pytest.fixture(scope="module")
def viewer(tmp_path_factory):
    run = make_feature_run(tmp_path_factory.mktemp("vf") / "run")
    v = Viewer(config_from(run, port=free_port()))
    try:
        yield v
    finally:
        v.stop()


def test_query_select_delete_and_stale_selection(viewer) -> None:
    v = viewer
    labels = object_label_at(v.source.snapshot()["means"].numpy())
    v.panel("Query").handles["prompt"].value = "green cylinder"
    _press(v.panel("Query").handles["select"])
    sel = v.selection()
    assert sel.sum() == (labels == 3).sum() > 50 and not (sel & (labels != 3)).any()
    n0 = v.source.n_gaussians
    _press(v.panel("Query").actions["delete"])
    assert v.source.n_gaussians == n0 - sel.sum()
    assert not (object_label_at(v.source.snapshot()["means"].numpy()) == 3).any()
    before = len(v.errors)
    _press(v.panel("Query").actions["delete"])  # the old mask no longer fits the scene
    assert len(v.errors) == before + 1 and "select again" in v.errors[-1]
    assert v.source.n_gaussians == n0 - sel.sum()  # nothing else was removed
    _press(v.panel("Query").actions["restore"])
    assert v.source.n_gaussians == n0


def test_segment_click_selects_the_clicked_object_and_grows(viewer) -> None:
    v = viewer
    params = v.source.snapshot()
    labels = object_label_at(params["means"].numpy())
    c = v.source.cameras
    cam = ViewCamera(c.viewmats[0], c.Ks[0], int(c.widths[0]), int(c.heights[0]))
    field = v.feature_field
    feat, _, alpha = field.render(params, cam.viewmat, cam.K, cam.width, cam.height)
    rel = field.relevance(feat, ["red cube"])[0].numpy()
    ys, xs = np.nonzero((rel > 0.95) & (alpha.numpy() > 0.9))
    k = len(ys) // 2
    state = v.panel("Segment").state
    pos = ((xs[k] + 0.5) / cam.width, (ys[k] + 0.5) / cam.height)
    res = feature_panels.segment_click(v, state, cam, pos, True, 0.85, 0.5)
    sel = res["selected"]
    assert res["score"] > 0.9 and res["mask2d"].sum() > 20
    prec = (sel & (labels == 2)).sum() / sel.sum()
    assert sel.sum() > 30 and prec > 0.7, f"{sel.sum()} selected, precision {prec:.2f}"
    assert res["overlay"].shape == (cam.height, cam.width, 3)
    # growing in 3D adds the cube's Gaussians the view did not see (its hidden faces)
    v.panel("Segment").handles["radius"].value = 0.15
    v.panel("Segment").handles["grow_similarity"].value = 0.9
    _press(v.panel("Segment").handles["grow"])
    grown = v.selection()
    rec0 = (sel & (labels == 2)).sum() / (labels == 2).sum()
    rec1 = (grown & (labels == 2)).sum() / (labels == 2).sum()
    assert grown.sum() > sel.sum() and rec1 > rec0 + 0.05, f"recall {rec0:.2f} -> {rec1:.2f}"
    assert (grown & (labels == 2)).sum() / grown.sum() > 0.7
    # the click is stored in 3D on the cube's surface: it re-projects to the same pixel
    px, ok = feature_panels._project(cam, res["points"])
    assert ok.all() and np.abs(px[0] - 0.5 - [xs[k], ys[k]]).max() < 0.6
    # a click in empty space is refused with an explanation
    empty = np.argwhere(alpha.numpy() < 0.01)
    y0, x0 = empty[0]
    with pytest.raises(ValueError, match="empty space"):
        feature_panels.segment_click(
            v, state, cam, ((x0 + 0.5) / cam.width, (y0 + 0.5) / cam.height), True, 0.85, 0.5
        )
