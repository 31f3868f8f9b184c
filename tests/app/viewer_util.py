"""Helpers of the viewer tests: a small scene with cameras, free ports, a headless Chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
]
REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_scene_run(out: Path, n_views: int = 12) -> Path:
    """A run directory (checkpoint with cameras) of Gaussians initialised from the demo's points:
    the demo's geometry and colours, in a few seconds, no training."""
    from splatlab.scene.checkpoint import dataset_extra, save_checkpoint
    from splatlab.scene.gaussians import init_gaussians
    from splatlab.scene.synthetic import DemoConfig, make_demo_scene

    ds = make_demo_scene(DemoConfig(n_views=n_views, test_every=4))
    params = init_gaussians(
        ds.points, ds.points_rgb, sh_degree=1, init_opacity=0.8, init_scale=1.0, seed=0
    )
    save_checkpoint(out, 0, params, extra=dataset_extra(ds))
    return out


def start_viewer(scene: Path, port: int, *extra: str, env: dict | None = None) -> subprocess.Popen:
    """``python -m splatlab.app.viewer SCENE --port PORT`` in a subprocess; waits until it serves."""
    e = dict(os.environ)
    e.update(env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "splatlab.app.viewer", str(scene), "--port", str(port), *extra],
        cwd=REPO_ROOT,
        env=e,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"viewer exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("viewer did not start within 60 s")


def canvas_box(page) -> dict:
    """Bounding box of the largest canvas (the 3D view)."""
    return page.evaluate(
        """() => { let best = null, area = 0;
        for (const c of document.querySelectorAll('canvas')) { const r = c.getBoundingClientRect();
          if (r.width * r.height > area) { area = r.width * r.height; best = r; } }
        return {x: best.x, y: best.y, width: best.width, height: best.height}; }"""
    )


def screenshot_canvas(page) -> np.ndarray:
    import io

    import imageio.v3 as iio

    box = canvas_box(page)
    png = page.screenshot(clip=box)
    return iio.imread(io.BytesIO(png))[..., :3]


def save_debug(name: str, img: np.ndarray) -> None:
    """Write ``img`` as <$SPLATLAB_VIEWER_DEBUG_DIR>/<name>.png when that variable is set."""
    d = os.environ.get("SPLATLAB_VIEWER_DEBUG_DIR")
    if d:
        import imageio.v3 as iio

        iio.imwrite(Path(d) / f"{name}.png", np.asarray(img).astype(np.uint8))


def select_option(page, current: str, option: str) -> None:
    """Pick ``option`` in the dropdown whose current value is ``current``."""
    page.locator(f"input[value='{current}']").first.click()
    page.get_by_role("option", name=option, exact=True).click()


def hide_frustums(page) -> None:
    page.get_by_role("tab", name="View").click()
    box = page.get_by_label("Training cameras")
    if box.is_checked():
        box.click()


def wait_stable(page, timeout: float = 30.0, settle: float = 1.0) -> np.ndarray:
    """Screenshots of the canvas until two taken ``settle`` s apart agree (mean |diff| < 0.5)."""
    deadline = time.monotonic() + timeout
    prev = screenshot_canvas(page)
    while time.monotonic() < deadline:
        time.sleep(settle)
        cur = screenshot_canvas(page)
        if cur.shape == prev.shape and np.abs(cur.astype(float) - prev.astype(float)).mean() < 0.5:
            return cur
        prev = cur
    return prev


def make_feature_run(out: Path, n_views: int = 8, d: int = 8) -> Path:
    """A run directory like ``make_scene_run`` whose Gaussians carry a feature field: each
    Gaussian's d-D feature is the one-hot code of its ground-truth object and the decoder maps
    code k to the synthetic label teacher's embedding of label k (a perfectly distilled field,
    so the viewer's query / segment panels can be checked against the labels)."""
    import torch

    from splatlab.methods.feature3dgs.distill import FeatureConfig
    from splatlab.methods.feature3dgs.field import feature_aux_state
    from splatlab.models.label_teacher import LabelEmbeddingTeacher
    from splatlab.rendering.features import FeatureDecoder
    from splatlab.scene.checkpoint import dataset_extra, save_checkpoint
    from splatlab.scene.gaussians import init_gaussians
    from splatlab.scene.synthetic import LABEL_NAMES, DemoConfig, make_demo_scene, object_label_at

    ds = make_demo_scene(DemoConfig(n_views=n_views, test_every=4))
    teacher = LabelEmbeddingTeacher(LABEL_NAMES, dim=512)
    assert d >= len(LABEL_NAMES)
    params = init_gaussians(
        ds.points,
        ds.points_rgb,
        sh_degree=1,
        init_opacity=0.8,
        init_scale=1.0,
        extras={"features": d},
        seed=0,
    )
    labels = torch.from_numpy(object_label_at(params["means"].detach().numpy()))
    with torch.no_grad():
        params["features"].copy_(torch.nn.functional.one_hot(labels.long(), d).float())
    dec = FeatureDecoder(d, 512)
    with torch.no_grad():
        dec.conv.weight.zero_()
        dec.conv.weight[:, : len(LABEL_NAMES), 0, 0] = teacher.embeddings.T
        dec.conv.bias.zero_()
    cfg = FeatureConfig(teacher="labels", dim=d, labels_downsample=1)
    extra = dataset_extra(ds)
    extra["aux"] = feature_aux_state(dec, cfg.to_json(), teacher)
    save_checkpoint(out, 0, params, extra=extra)
    return out


THIRDPARTY_PLUGIN = REPO_ROOT / "tests" / "fixtures" / "thirdparty_plugin"


def install_thirdparty_plugin(tmp: Path) -> Path:
    """``pip install --no-deps --no-build-isolation --target tmp/site`` of the test package
    tests/fixtures/thirdparty_plugin (built from a copy, so the source folder stays clean).
    Returns the site folder: put it on sys.path / PYTHONPATH and importlib.metadata finds the
    plugin's ``splatlab.plugins`` entry point there."""
    import shutil

    src = tmp / "src"
    shutil.copytree(THIRDPARTY_PLUGIN, src, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = tmp / "site"
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
            "--no-build-isolation", "--no-index", "--target", str(site), str(src),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return site
