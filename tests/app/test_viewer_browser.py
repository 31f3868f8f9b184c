"""Real-browser tests of ``python -m splatlab.app.viewer``: a subprocess server, headless Chromium
(swiftshader WebGL), assertions on the canvas pixels."""

from __future__ import annotations

import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from viewer_util import (
    CHROMIUM,
    CHROMIUM_ARGS,
    canvas_box,
    free_port,
    hide_frustums,
    make_scene_run,
    save_debug,
    select_option,
    start_viewer,
    wait_stable,
)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium"
)

FAIL_MESSAGE = "plugin exploded on purpose"


def _plugin_dist(root: Path) -> Path:
    """An installed-looking distribution registering a plugin whose run() raises, through the
    real ``splatlab.plugins`` entry-point group (found by importlib.metadata on sys.path)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "exploding_plugin.py").write_text(
        textwrap.dedent(f'''
        from dataclasses import dataclass
        from splatlab.plugins.base import Plugin

        @dataclass
        class Opts:
            strength: int = 3

        class Exploding(Plugin):
            name = "exploding test plugin"
            kind = "inspect"
            Options = Opts

            def run(self, inputs, options, progress):
                raise RuntimeError("{FAIL_MESSAGE}")
    ''')
    )
    dist = root / "exploding_plugin-0.1.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: exploding-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[splatlab.plugins]\nexploding = exploding_plugin:Exploding\n"
    )
    return root


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("viewer")
    run = make_scene_run(tmp / "run", n_views=8)
    plug = _plugin_dist(tmp / "plugins")
    port = free_port()
    proc = start_viewer(run, port, "--display", "server", env={"PYTHONPATH": str(plug)})
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 960, "height": 640})
    page.goto(f"http://127.0.0.1:{port}/")
    page.get_by_text("Gaussians").first.wait_for(timeout=60_000)
    # the first server render has reached the page (slow on a loaded machine)
    page.get_by_text("last server render").first.wait_for(timeout=120_000)
    try:
        yield {"proc": proc, "port": port, "page": page, "browser": browser, "run": run}
    finally:
        browser.close()
        pw.stop()
        proc.terminate()
        proc.wait(timeout=20)


def _our_render(run: Path, w: int, h: int, mode: str, max_side: int = 640) -> np.ndarray:
    import cv2

    from splatlab.app.viewer.render import ViewCamera, render_view
    from splatlab.scene.checkpoint import load_scene

    s = load_scene(run)
    c = s.cameras
    fov = 2 * np.arctan(c.heights[0] / 2 / c.Ks[0][1, 1])
    f = (h / 2) / np.tan(fov / 2)
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
    cam = ViewCamera(c.viewmats[0], K, w, h).scaled(max_side)
    img = render_view(s.params, cam, mode)
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


def _region(img: np.ndarray) -> np.ndarray:
    """The part of the canvas no overlay covers: the GUI panel is on the right, viser's
    "software WebGL" notification at the top left."""
    h, w = img.shape[:2]
    return img[int(h * 0.3) :, : int(w * 0.55)]


def test_gui_present_and_server_render_matches_ours(served):
    page = served["page"]
    for tab in ("View", "Paths", "Edit", "Plugins"):
        assert page.get_by_role("tab", name=tab).count() == 1
    assert (
        page.get_by_text("4,000 Gaussians").count() >= 1
        or page.get_by_text("Gaussians").count() >= 1
    )
    hide_frustums(page)
    time.sleep(1.0)
    shot = wait_stable(page).astype(np.float64)
    save_debug("rgb", shot)
    box = canvas_box(page)
    ours = _our_render(served["run"], shot.shape[1], shot.shape[0], "RGB").astype(np.float64)
    a, b = _region(shot), _region(ours)
    err = np.abs(a - b).mean()
    corr = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert box["width"] > 300 and box["height"] > 300
    assert (b.mean(-1) > 20).mean() > 0.2, "our render should show the scene"
    assert err < 12.0, f"browser canvas differs from our render: mean |diff| {err:.1f}/255"
    assert corr > 0.95, f"correlation {corr:.3f}"


def test_depth_mode_changes_picture_and_matches(served):
    page = served["page"]
    hide_frustums(page)
    rgb = wait_stable(page).astype(np.float64)
    select_option(page, "RGB", "depth")
    time.sleep(1.0)
    depth = wait_stable(page).astype(np.float64)
    assert np.abs(_region(depth) - _region(rgb)).mean() > 15.0
    ours = _our_render(served["run"], depth.shape[1], depth.shape[0], "depth").astype(np.float64)
    assert np.abs(_region(depth) - _region(ours)).mean() < 12.0
    select_option(page, "depth", "RGB")


def test_plugin_error_is_notified_and_server_keeps_serving(served):
    page, proc = served["page"], served["proc"]
    page.get_by_role("tab", name="Plugins").click()
    page.get_by_text("exploding test plugin").first.wait_for(timeout=10_000)
    from splatlab.plugins.base import discover_plugins

    runs = page.get_by_role("button", name="Run", exact=True)
    # every plugin installed here (built-in statistics, other splatlab plugins) + the entry-point one
    assert runs.count() == len(discover_plugins()[0]) + 1

    def run_button(folder_text: str):
        folder = page.get_by_text(folder_text, exact=True).first
        return folder.locator("xpath=following::button[normalize-space()='Run'][1]")

    run_button("exploding test plugin").click()
    page.get_by_text(FAIL_MESSAGE).first.wait_for(timeout=20_000)
    assert proc.poll() is None, "the server must survive a plugin exception"
    assert urllib.request.urlopen(f"http://127.0.0.1:{served['port']}/", timeout=5).status == 200
    # the server still answers GUI actions: the built-in plugin runs and shows its report
    run_button("view statistics").click()
    page.get_by_text("Gaussian statistics (4,000 Gaussians)").first.wait_for(timeout=30_000)
    page.get_by_role("tab", name="View").click()


@pytest.mark.slow
def test_browser_splats_cover_the_scene_and_two_browsers(served):
    page = served["page"]
    hide_frustums(page)
    select_option(page, "server render", "browser splats")
    time.sleep(3.0)
    shot = wait_stable(page, settle=1.5).astype(np.float64)
    ours = _region(_our_render(served["run"], shot.shape[1], shot.shape[0], "alpha")[..., 0] > 128)
    reg = _region(shot)
    bg = np.median(np.concatenate([reg[-3:].reshape(-1, 3), reg[:, :3].reshape(-1, 3)]), axis=0)
    cover = np.abs(reg - bg).max(-1) > 30
    inter, union = (cover & ours).sum(), (cover | ours).sum()
    assert inter / union > 0.6, f"browser splats vs our coverage IoU {inter / union:.2f}"
    # a second browser at the same time gets its own server renders
    select_option(page, "browser splats", "server render")
    page2 = served["browser"].new_page(viewport={"width": 640, "height": 480})
    page2.goto(f"http://127.0.0.1:{served['port']}/")
    page2.get_by_text("Gaussians").first.wait_for(timeout=30_000)
    time.sleep(2.0)
    s2 = wait_stable(page2).astype(np.float64)
    assert (s2[:, : int(s2.shape[1] * 0.4)].mean(-1) > 30).mean() > 0.2
    page2.close()
    assert served["proc"].poll() is None
