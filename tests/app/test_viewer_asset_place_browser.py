"""Real-browser test of placing a generated asset (headless Chromium against ``python -m
splatlab.app.viewer``): the swiftbrush panel fits a given image as a job, "Place by click" takes
one click in the 3D view, the card lands on the scene under the cursor (it shows up there), and
"Save the scene with the asset" downloads a PLY holding the scene's Gaussians plus the card's."""

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
    make_scene_run,
    save_debug,
    screenshot_canvas,
    start_viewer,
    wait_stable,
)

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium"),
    pytest.mark.slow,
]

DESCRIPTION = "SwiftBrush one-step text-to-image"
MERGED = re.compile(r"Merged: ([\d,]+) \+ ([\d,]+) = ([\d,]+) Gaussians")


def _asset_png(path: Path) -> Path:
    """A 24 x 24 opaque RGBA image: a bright magenta / yellow checker (stands out of the demo)."""
    from PIL import Image

    yy, xx = np.mgrid[0:24, 0:24]
    chk = ((yy // 6 + xx // 6) % 2).astype(bool)
    img = np.zeros((24, 24, 4), np.uint8)
    img[..., 3] = 255
    img[chk, :3] = (255, 0, 255)
    img[~chk, :3] = (255, 255, 0)
    Image.fromarray(img, "RGBA").save(path)
    return path


def _option_input(page, label: str):
    folder = page.get_by_text(DESCRIPTION).first
    return folder.locator(f"xpath=following::*[normalize-space(text())='{label}'][1]").locator(
        "xpath=following::input[1]"
    )


def _set(page, label: str, value: str) -> None:
    box = _option_input(page, label)
    box.fill(value)
    box.press("Enter")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("viewer_asset")
    run = make_scene_run(tmp / "run", n_views=8)
    png = _asset_png(tmp / "asset.png")
    port = free_port()
    proc = start_viewer(run, port, "--display", "server", "--max-resolution", "320")
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 960, "height": 640}, accept_downloads=True)
    page.goto(f"http://127.0.0.1:{port}/")
    page.get_by_text("Gaussians").first.wait_for(timeout=60_000)
    hide_frustums(page)
    try:
        yield {"proc": proc, "page": page, "run": run, "png": png}
    finally:
        browser.close()
        pw.stop()
        proc.terminate()
        proc.wait(timeout=20)


def _wait_scene(page, timeout: float = 60.0) -> np.ndarray:
    """The canvas once the server render shows the scene (not the blank first frame), stable."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        img = screenshot_canvas(page)
        h, w = img.shape[:2]
        if (img[int(h * 0.45) : int(h * 0.85), int(w * 0.1) : int(w * 0.5)].mean(-1) > 40).mean() > 0.2:
            return wait_stable(page)
        time.sleep(0.5)
    raise AssertionError("the scene never showed in the canvas")


def _scene_pixel(img: np.ndarray) -> tuple[int, int]:
    """A pixel of the canvas that shows the scene (not the black background), away from the GUI
    panel (right) and the notifications (top left), with room above it for the card."""
    h, w = img.shape[:2]
    lum = img.astype(np.float64).mean(-1)
    ys, xs = np.nonzero(lum[int(h * 0.45) : int(h * 0.85), int(w * 0.1) : int(w * 0.5)] > 40)
    assert len(ys) > 50, "the demo scene should be visible in the canvas"
    i = len(ys) // 2
    return int(xs[i] + int(w * 0.1)), int(ys[i] + int(h * 0.45))


def test_click_places_the_asset_and_save_writes_n1_plus_n2(served):
    from splatlab.scene.checkpoint import load_scene
    from splatlab.scene.gaussians import load_ply

    page, run = served["page"], served["run"]
    n_scene = int(load_scene(run).params["means"].shape[0])
    before = _wait_scene(page)
    save_debug("asset_before", before)
    page.get_by_role("tab", name="Plugins").click()
    page.get_by_text(DESCRIPTION).first.wait_for(timeout=10_000)
    _set(page, "image", str(served["png"]))
    _set(page, "fit steps", "20")
    _set(page, "fit size", "24")
    time.sleep(0.3)
    page.get_by_text(DESCRIPTION).first.locator(
        "xpath=following::button[normalize-space()='Run'][1]"
    ).click()
    page.get_by_text(re.compile(r"Asset ready \(576 Gaussians")).first.wait_for(timeout=60_000)

    x, y = _scene_pixel(before)
    page.get_by_role("button", name="Place by click").click()
    page.get_by_text("Click in the 3D view").first.wait_for(timeout=10_000)
    box = canvas_box(page)
    page.mouse.click(box["x"] + x + 0.5, box["y"] + y + 0.5)
    status = page.get_by_text(MERGED).first
    status.wait_for(timeout=30_000)
    text = page.inner_text("body")
    m = MERGED.search(text)
    n1, n2, n = (int(g.replace(",", "")) for g in m.groups())
    assert (n1, n2, n) == (n_scene, 576, n_scene + 576), m.group(0)
    assert "on the scene at depth" in text, "the click was on the scene: a hit, not the fallback"
    after = wait_stable(page)
    save_debug("asset_placed", after)
    # the card (height a quarter of the scene, standing on the clicked point) shows above it
    h, w = after.shape[:2]
    win = (slice(max(0, y - int(0.12 * h)), y), slice(max(0, x - int(0.04 * w)), x + int(0.04 * w)))
    d = np.abs(after[win].astype(float) - before[win].astype(float)).mean()
    assert d > 10, f"the placed card should show above the click (mean |diff| {d:.1f})"
    # magenta / yellow: red high, and blue or green high, where the card is
    r, g, b = (after[win][..., c].astype(float) for c in range(3))
    assert ((r > 180) & ((g > 180) | (b > 180)) & (np.abs(g - b) > 120)).mean() > 0.1

    with page.expect_download(timeout=30_000) as dl:
        page.get_by_role("button", name="Save the scene with the asset (PLY)").click()
    assert dl.value.suggested_filename == "scene_with_asset.ply"
    saved = load_ply(Path(dl.value.path()))
    assert saved["means"].shape[0] == n_scene + 576
    on_disk = run / "viewer" / "scene_with_asset.ply"
    assert on_disk.is_file() and load_ply(on_disk)["means"].shape[0] == n_scene + 576
    assert served["proc"].poll() is None
    # Remove brings the scene back
    page.get_by_role("button", name="Remove the placed asset").click()
    page.get_by_text("Placement removed").first.wait_for(timeout=10_000)
    assert screenshot_canvas(page).shape == after.shape
