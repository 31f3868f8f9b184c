"""Real-browser test of plugin jobs (headless Chromium against ``python -m splatlab.app.viewer``
with the third-party test plugin installed through its entry point): a >= 10 s job shows its
progress, camera moves keep rendering while it runs, Cancel ends it within 2 s, and a job that
raises leaves the viewer serving."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from viewer_util import (
    CHROMIUM,
    CHROMIUM_ARGS,
    free_port,
    hide_frustums,
    install_thirdparty_plugin,
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

NAME = "thirdparty opacity"
FAIL_MESSAGE = "thirdparty plugin failed on purpose"
JOB_SECONDS = 60  # the job would run this long; Cancel ends it early
STATUS = re.compile(r"thirdparty opacity: (\d+)% waiting")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("viewer_jobs")
    run = make_scene_run(tmp / "run", n_views=8)
    site = install_thirdparty_plugin(tmp / "plugin")
    port = free_port()
    proc = start_viewer(
        run,
        port,
        "--display",
        "server",
        "--max-resolution",
        "320",
        env={"PYTHONPATH": str(site)},
    )
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 960, "height": 640})
    page.goto(f"http://127.0.0.1:{port}/")
    page.get_by_text("Gaussians").first.wait_for(timeout=60_000)
    hide_frustums(page)
    try:
        yield {"proc": proc, "port": port, "page": page, "run": run}
    finally:
        browser.close()
        pw.stop()
        proc.terminate()
        proc.wait(timeout=20)


def _region(img: np.ndarray) -> np.ndarray:
    """Canvas pixels no overlay covers (GUI panel on the right, notifications top left)."""
    h, w = img.shape[:2]
    return img[int(h * 0.3) :, : int(w * 0.55)].astype(np.float64)


def _percent(page) -> int | None:
    m = STATUS.search(page.inner_text("body"))
    return None if m is None else int(m.group(1))


def _option_input(page, label: str):
    """The input right after the option's label in the plugin's folder."""
    folder = page.get_by_text("Select the opaque Gaussians").first
    return folder.locator(f"xpath=following::*[normalize-space(text())='{label}'][1]").locator(
        "xpath=following::input[1]"
    )


def _run_button(page):
    return page.get_by_text("Select the opaque Gaussians").first.locator(
        "xpath=following::button[normalize-space()='Run'][1]"
    )


def _drag(page, dx: float) -> None:
    from viewer_util import canvas_box

    box = canvas_box(page)
    x0, y0 = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.6
    page.mouse.move(x0, y0)
    page.mouse.down()
    for i in range(1, 11):
        page.mouse.move(x0 + dx * i / 10, y0, steps=2)
    page.mouse.up()


def test_long_job_progress_camera_moves_cancel_and_error(served):
    page, proc = served["page"], served["proc"]
    before = wait_stable(page)
    page.get_by_role("tab", name="Plugins").click()
    page.get_by_text("Select the opaque Gaussians").first.wait_for(timeout=10_000)
    seconds = _option_input(page, "seconds")
    seconds.fill(str(JOB_SECONDS))
    seconds.press("Enter")
    time.sleep(0.3)
    _run_button(page).click()
    t_start = time.monotonic()

    # progress: the status line counts up, the progress bar is shown
    deadline = time.monotonic() + 20
    first = None
    while first is None and time.monotonic() < deadline:
        first = _percent(page)
        time.sleep(0.2)
    assert first is not None, "the job's progress should be shown"
    assert page.locator("[role=progressbar]").count() >= 1
    time.sleep(1.5)
    second = _percent(page)
    assert second is not None and second > first, (first, second)
    page.screenshot(path=_debug_path("job_progress"))

    # camera moves still render while the job runs
    frames = []
    for dx in (30, -60):
        _drag(page, dx)
        time.sleep(1.2)
        frames.append(screenshot_canvas(page))
    save_debug("job_camera_moved", frames[0])
    for f in frames:
        assert (_region(f).mean(-1) > 20).mean() > 0.05, "the moved view should show the scene"
    d0 = np.abs(_region(frames[0]) - _region(before)).mean()
    d1 = np.abs(_region(frames[1]) - _region(frames[0])).mean()
    assert d0 > 5 and d1 > 5, f"camera moves must re-render during the job ({d0:.1f}, {d1:.1f})"
    assert _percent(page) is not None and time.monotonic() - t_start < JOB_SECONDS, "still running"

    # Cancel ends it within 2 s
    page.get_by_role("button", name="Cancel", exact=True).click()
    t_cancel = time.monotonic()
    page.get_by_text(re.compile(r"thirdparty opacity: cancelled after")).first.wait_for(
        timeout=2_000
    )
    assert time.monotonic() - t_cancel < 2.0
    assert time.monotonic() - t_start < JOB_SECONDS - 1, "it ended before its time was up"
    page.screenshot(path=_debug_path("job_cancelled"))

    # a raising job: a notification, and the viewer keeps serving (GUI and renders)
    seconds.fill("0")
    seconds.press("Enter")
    page.get_by_label("fail").click()
    time.sleep(0.3)
    _run_button(page).click()
    page.get_by_text(FAIL_MESSAGE).first.wait_for(timeout=20_000)
    assert proc.poll() is None, "the server must survive a plugin exception"
    assert urllib.request.urlopen(f"http://127.0.0.1:{served['port']}/", timeout=5).status == 200
    prev = screenshot_canvas(page)
    _drag(page, 40)
    time.sleep(1.5)
    after = screenshot_canvas(page)
    assert np.abs(_region(after) - _region(prev)).mean() > 5, "renders continue after the error"
    page.screenshot(path=_debug_path("job_failed"))
    # and the plugin runs again, to completion, showing its report
    page.get_by_label("fail").click()
    time.sleep(0.3)
    _run_button(page).click()
    page.get_by_text(re.compile(r"\d+ of 4000 Gaussians are above 0\.5")).first.wait_for(
        timeout=30_000
    )
    assert proc.poll() is None
    # the report offers its files: the download holds the plugin's bytes
    with page.expect_download(timeout=20_000) as dl:
        page.get_by_role("button", name=re.compile(r"^Download opacities\.npy")).click()
    import io

    import torch

    from splatlab.scene.checkpoint import load_scene

    got = np.load(io.BytesIO(Path(dl.value.path()).read_bytes()))
    want = torch.sigmoid(load_scene(served["run"]).params["opacities"].detach().double()).numpy()
    assert dl.value.suggested_filename == "opacities.npy"
    assert np.array_equal(got, want.astype(np.float32))
    page.screenshot(path=_debug_path("job_report"))


def _debug_path(name: str) -> str:
    import os
    import tempfile

    d = os.environ.get("SPLATLAB_VIEWER_DEBUG_DIR") or tempfile.gettempdir()
    return os.path.join(d, f"{name}.png")
