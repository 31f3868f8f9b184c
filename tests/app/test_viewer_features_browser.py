"""Real-browser tests of the Query and Segment tabs on a scene with a feature field (headless
Chromium against ``python -m splatlab.app.viewer``): typed prompts, the heatmap render mode,
clicks in the 3D view, delete / restore and PLY export, checked against ground-truth labels."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from viewer_util import (
    CHROMIUM,
    CHROMIUM_ARGS,
    canvas_box,
    free_port,
    hide_frustums,
    make_feature_run,
    save_debug,
    select_option,
    start_viewer,
    wait_stable,
)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium"
)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("viewer_features")
    run = make_feature_run(tmp / "run")
    port = free_port()
    proc = start_viewer(run, port, "--display", "server", "--max-resolution", "320")
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 960, "height": 640})
    page.goto(f"http://127.0.0.1:{port}/")
    page.get_by_text("Gaussians").first.wait_for(timeout=60_000)
    # the first server render has reached the page (slow on a loaded machine)
    page.get_by_text("last server render").first.wait_for(timeout=120_000)
    hide_frustums(page)
    try:
        yield {"proc": proc, "port": port, "page": page, "run": run}
    finally:
        browser.close()
        pw.stop()
        proc.terminate()
        proc.wait(timeout=20)


def _scene(run: Path):
    from splatlab.scene.checkpoint import load_scene
    from splatlab.scene.synthetic import object_label_at

    s = load_scene(run)
    labels = object_label_at(s.params["means"].detach().numpy())
    return s, labels


def _canvas_camera(run: Path, w: int, h: int):
    """The browser's view: training camera 0 at the canvas size (same vertical fov)."""
    from splatlab.app.viewer.render import ViewCamera

    s, _ = _scene(run)
    c = s.cameras
    fov = 2 * np.arctan(c.heights[0] / 2 / c.Ks[0][1, 1])
    f = (h / 2) / np.tan(fov / 2)
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
    return ViewCamera(c.viewmats[0], K, w, h)


def _label_image(run: Path, cam, label: int) -> np.ndarray:
    """Pixels of ``cam`` where Gaussians of object ``label`` dominate the rendering (from the
    ground-truth label of every Gaussian, not from the features)."""
    import torch

    from splatlab.rendering.rasterize import rasterize

    s, labels = _scene(run)
    p = s.params
    onehot = torch.nn.functional.one_hot(torch.from_numpy(labels).long(), 8).float()
    out, alpha, _ = rasterize(
        p["means"].detach(),
        p["quats"].detach(),
        torch.exp(p["scales"].detach()),
        torch.sigmoid(p["opacities"].detach()),
        onehot,
        torch.as_tensor(cam.viewmat, dtype=torch.float32)[None],
        torch.as_tensor(cam.K, dtype=torch.float32)[None],
        cam.width,
        cam.height,
    )
    o = out[0].numpy()
    return (o.argmax(-1) == label) & (alpha[0, ..., 0].numpy() > 0.5)


def _free_region(w: int, h: int) -> np.ndarray:
    """Canvas pixels no overlay covers (GUI panel on the right, notifications top left)."""
    m = np.zeros((h, w), bool)
    m[int(h * 0.3) :, : int(w * 0.55)] = True
    return m


def _number_before(page, pattern: str, timeout: float = 30.0) -> int:
    """The integer in the first page text matching ``pattern`` (a regex with one group)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, page.inner_text("body"))
        if m:
            return int(m.group(1).replace(",", ""))
        time.sleep(0.3)
    raise AssertionError(f"no text matching {pattern!r} within {timeout} s")


def test_text_query_selects_the_object_heatmap_and_export(served):
    page, run = served["page"], served["run"]
    s, labels = _scene(run)
    page.get_by_role("tab", name="Query").click()
    # found by its initial value (viser's label is not tied to the input)
    prompt = page.locator("input[value='checkered floor']").first.element_handle()
    prompt.fill("chrome ball")
    prompt.press("Enter")
    page.get_by_role("button", name="Select matches").click()
    n = _number_before(page, r"([\d,]+) of 4,000 Gaussians match 'chrome ball'")
    import torch

    vis = torch.sigmoid(s.params["opacities"].detach()).numpy() >= 0.1
    assert n == int(((labels == 5) & vis).sum()) > 100  # exactly the chrome ball's Gaussians

    # heatmap: coloured where the chrome ball is, grey elsewhere
    page.get_by_role("button", name="Show heatmap").click()
    time.sleep(1.5)
    shot = wait_stable(page).astype(np.float64)
    save_debug("query_heatmap", shot)
    h, w = shot.shape[:2]
    cam = _canvas_camera(run, w, h)
    ball = _label_image(run, cam, 5)
    free = _free_region(w, h)
    sat = shot.max(-1) - shot.min(-1)
    colored = sat > 40
    assert (ball & free).sum() > 200, "the chrome ball should be visible in the free region"
    inter = (colored & ball & free).sum()
    union = ((colored | ball) & free).sum()
    assert inter / union > 0.6, f"heatmap vs chrome-ball pixels IoU {inter / union:.2f}"

    # export the selection: a PLY another reader (plyfile, via our loader) reads back
    page.get_by_role("button", name="Export selected as PLY").first.click()
    out = run / "viewer" / "query_selection.ply"
    deadline = time.monotonic() + 30
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.3)
    from plyfile import PlyData

    assert PlyData.read(str(out))["vertex"].count == n

    # delete the matches from the scene shown, then restore it
    status = r"(?m)^([\d,]+) Gaussians(?! ->)"  # the View tab's status line
    page.get_by_role("button", name="Delete selected").first.click()
    page.get_by_role("tab", name="View").click()
    assert _number_before(page, status) == 4000 - n
    page.get_by_role("tab", name="Query").click()
    page.get_by_role("button", name="Restore the full scene").first.click()
    page.get_by_role("tab", name="View").click()
    assert _number_before(page, r"(?m)^(4,000) Gaussians") == 4000
    page.get_by_role("tab", name="Query").click()
    page.get_by_role("button", name="Clear selection").click()
    page.get_by_role("tab", name="View").click()
    select_option(page, "query heatmap", "RGB")


def test_click_segments_the_object_under_the_cursor(served):
    from scipy import ndimage

    page, run, proc = served["page"], served["run"], served["proc"]
    _, labels = _scene(run)
    box = canvas_box(page)
    w, h = int(round(box["width"])), int(round(box["height"]))
    cam = _canvas_camera(run, w, h)
    free = _free_region(w, h)
    # the object with the most room around a pixel in the free region
    best = None
    for lab in (2, 3, 4, 6):
        m = _label_image(run, cam, lab) & free
        dist = ndimage.distance_transform_edt(m)
        if best is None or dist.max() > best[0]:
            y, x = np.unravel_index(dist.argmax(), dist.shape)
            best = (dist.max(), lab, x, y)
    _, lab, x, y = best
    assert best[0] >= 4, "no object is visible enough to click"
    page.get_by_role("tab", name="Segment").click()
    page.get_by_label("Click to segment").click()
    time.sleep(0.5)
    page.mouse.click(box["x"] + x + 0.5, box["y"] + y + 0.5)
    n = _number_before(page, r"\*?\*?([\d,]+)\*?\*? Gaussians selected", timeout=60)
    assert proc.poll() is None
    from splatlab.app.viewer.render import selection_mask  # noqa: F401  (module import check)

    # which Gaussians: the Edit tab's count agrees, and the "selection" mode highlights the object
    page.get_by_role("tab", name="Edit").click()
    assert _number_before(page, r"selected ([\d,]+) of 4,000") == n
    page.get_by_role("tab", name="View").click()
    select_option(page, "RGB", "selection")
    time.sleep(1.5)
    shot = wait_stable(page).astype(np.float64)
    save_debug("segment_selection", shot)
    save_debug("segment_object", _label_image(run, cam, lab) * 255)
    orange = shot.max(-1) - shot.min(-1) > 40  # tinted; the rest is grey
    obj = _label_image(run, cam, lab)
    inter = (orange & obj & free).sum()
    assert inter / max((orange & free).sum(), 1) > 0.6, "highlight should sit on the clicked object"
    assert inter / max((obj & free).sum(), 1) > 0.5, "most of the clicked object is highlighted"
    assert n > 30
    select_option(page, "selection", "RGB")
