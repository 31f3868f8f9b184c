"""Real-browser test of a refused upload (issue 17): a file over ``--max-upload-mb`` gets the
"Upload refused" notification, the upload button is usable again at once (it used to stay
disabled with a spinner until reload) and the next, valid camera path loads."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from viewer_util import CHROMIUM, CHROMIUM_ARGS, free_port, make_scene_run, start_viewer

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium"),
    pytest.mark.slow,
]

LIMIT_MB = 0.5


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("viewer_upload")
    run = make_scene_run(tmp / "run", n_views=4)
    port = free_port()
    proc = start_viewer(run, port, "--display", "server", "--max-resolution", "256",
                        "--max-upload-mb", str(LIMIT_MB))
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 960, "height": 640})
    page.goto(f"http://127.0.0.1:{port}/")
    page.get_by_text("Gaussians").first.wait_for(timeout=60_000)
    try:
        yield {"page": page, "tmp": tmp, "proc": proc}
    finally:
        browser.close()
        pw.stop()
        proc.terminate()
        proc.wait(timeout=20)


def _camera_path(path: Path, n: int) -> Path:
    from splatlab.scene.camera_path import CameraPath, intrinsics_from_fov, write_camera_path
    from splatlab.scene.cameras import look_at_viewmat

    eyes = [np.array([3 * np.cos(a), 3 * np.sin(a), 0.5]) for a in np.linspace(0, 1.5, n)]
    cp = CameraPath(viewmats=np.stack([look_at_viewmat(e, np.zeros(3)) for e in eyes]),
                    Ks=intrinsics_from_fov(np.full(n, 50.0), 96, 64), width=96, height=64,
                    fps=10.0, times=np.linspace(0, 1, n))
    return write_camera_path(path, cp)


def _button(page):
    return page.get_by_role("button", name="Load camera_path.json")


def _wait_enabled(button, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if button.is_enabled():
            return time.monotonic() - t0
        time.sleep(0.1)
    return float("inf")


def test_refused_upload_leaves_button_usable(served) -> None:
    page, tmp = served["page"], served["tmp"]
    page.get_by_role("tab", name="Paths").click()
    button = _button(page)
    button.wait_for(timeout=20_000)
    big = tmp / "big_camera_path.json"
    big.write_bytes(b" " * int(1.5 * LIMIT_MB * 2**20))  # 1.5x the limit
    with page.expect_file_chooser() as fc:
        button.click()
    fc.value.set_files(str(big))
    page.get_by_text("Upload refused").first.wait_for(timeout=20_000)
    body = page.inner_text("body")
    assert "big_camera_path.json is 0.8 MiB" in body and "limit is 0.5 MiB" in body
    # the button comes back (before the fix it stayed disabled with a spinner until reload)
    assert _wait_enabled(button, 10.0) < 10.0, "upload button still disabled after a refused upload"
    time.sleep(1.0)
    assert "File uploaded successfully" not in page.inner_text("body")

    # the next, valid upload is taken: the frame count follows the file's 7 keyframes
    good = _camera_path(tmp / "camera_path.json", 7)
    with page.expect_file_chooser() as fc:
        button.click()
    fc.value.set_files(str(good))
    page.get_by_text("File uploaded successfully").first.wait_for(timeout=20_000)
    frames = page.get_by_label("Frames")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and frames.input_value() != "7":
        time.sleep(0.2)
    assert frames.input_value() == "7"
    assert served["proc"].poll() is None
