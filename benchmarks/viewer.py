"""Viewer benchmarks: (1) server-render latency per 640x480 frame on CPU (the viewer's
``render_view`` path, RGB with full SH and depth) for the demo scene and a fox-sized scene; (2) the
largest splat count viser's browser path shows within 20 s in headless Chromium (swiftshader).

    python benchmarks/viewer.py [--demo RUN] [--fox-points 200000] [--counts 100000 300000 1000000]

The demo scene is a trained run directory (default: train one with `splatlab demo`). The fox scene
is the instant-ngp fox's cameras with Gaussians randomly initialised in its box (no fox training on
this CPU machine): latency depends on the Gaussian count and coverage, not on what they show.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "app"))

from splatlab.app.viewer.render import ViewCamera, browser_splat_arrays, render_view  # noqa: E402


def latency(params, viewmats, Ks, sizes, n: int = 5) -> dict[str, float]:
    out = {}
    for mode in ("RGB", "depth"):
        times = []
        for i in range(n + 1):
            j = i % len(viewmats)
            w, h = sizes[j]
            K = Ks[j].copy()
            K[0] *= 640 / w
            K[1] *= 480 / h
            cam = ViewCamera(viewmats[j], K, 640, 480)
            t0 = time.perf_counter()
            render_view(params, cam, mode)
            if i > 0:  # the first frame pays for compilation / warm-up
                times.append(time.perf_counter() - t0)
        out[mode] = float(np.median(times))
    return out


def demo_scene(run: Path):
    from splatlab.scene.checkpoint import load_scene

    s = load_scene(run)
    c = s.cameras
    return s.params, c.viewmats, c.Ks, list(zip(c.widths, c.heights))


def fox_scene(n: int):
    from splatlab.scene.datasets import load_dataset
    from splatlab.scene.gaussians import init_gaussians, random_init_points

    root = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "fox"
    ds = load_dataset(root, downscale=4)
    pts = random_init_points(n, ds.scene_extent(), seed=0)
    params = init_gaussians(pts, None, sh_degree=3, init_opacity=0.5, seed=0)
    fr = ds.frames[:8]
    return (
        params,
        np.stack([f.viewmat for f in fr]),
        np.stack([f.K for f in fr]),
        [(f.width, f.height) for f in fr],
    )


def browser_load_time(n: int, timeout: float = 20.0) -> float | None:
    """Seconds from page load until the splats cover the canvas (None: not within ``timeout``)."""
    import io

    import imageio.v3 as iio
    import viser
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright
    from viewer_util import CHROMIUM_ARGS, free_port

    g = torch.Generator().manual_seed(0)
    params = {
        "means": torch.rand(n, 3, generator=g) * 2 - 1,
        "scales": torch.full((n, 3), float(np.log(2.0 / n ** (1 / 3)))),
        "quats": torch.randn(n, 4, generator=g),
        "opacities": torch.full((n,), 2.0),
        "sh0": torch.rand(n, 1, 3, generator=g),
    }
    a = browser_splat_arrays(params)
    port = free_port()
    srv = viser.ViserServer(host="127.0.0.1", port=port, verbose=False)
    srv.scene.add_gaussian_splats(
        "/s",
        centers=a["centers"],
        covariances=a["covariances"],
        rgbs=a["rgbs"],
        opacities=a["opacities"],
        scale=a["unit"],
    )
    srv.initial_camera.position = (0.0, -4.0, 0.0)
    srv.initial_camera.look_at = (0.0, 0.0, 0.0)
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = b.new_page(viewport={"width": 640, "height": 480})
            t0 = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/")
            while time.perf_counter() - t0 < timeout:
                left = max(timeout - (time.perf_counter() - t0), 0.1)
                try:
                    png = page.screenshot(
                        clip={"x": 220, "y": 140, "width": 200, "height": 200}, timeout=left * 1000
                    )
                except PlaywrightTimeout:  # the page is too busy drawing to answer in time
                    break
                img = iio.imread(io.BytesIO(png))
                if (
                    img[..., :3].std(axis=(0, 1)).mean() > 25
                ):  # coloured splats, not the flat background
                    b.close()
                    return time.perf_counter() - t0
                time.sleep(0.25)
            b.close()
    finally:
        srv.stop()
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", type=Path, default=None)
    ap.add_argument("--fox-points", type=int, default=200_000)
    ap.add_argument("--counts", type=int, nargs="*", default=[10_000, 30_000, 100_000, 300_000])
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.demo is not None:
        p, vm, K, sz = demo_scene(args.demo)
        lat = latency(p, vm, K, sz)
        print(
            f"server render 640x480, demo ({p['means'].shape[0]:,} Gaussians): "
            f"RGB {lat['RGB'] * 1000:.0f} ms, depth {lat['depth'] * 1000:.0f} ms"
        )
    if args.fox_points:
        p, vm, K, sz = fox_scene(args.fox_points)
        lat = latency(p, vm, K, sz)
        print(
            f"server render 640x480, fox cameras ({p['means'].shape[0]:,} random Gaussians, SH 3): "
            f"RGB {lat['RGB'] * 1000:.0f} ms, depth {lat['depth'] * 1000:.0f} ms"
        )
    for n in args.counts:
        t = browser_load_time(n)
        print(
            f"browser splats {n:,}: "
            + (f"shown after {t:.1f} s" if t is not None else "not shown within 20 s"),
            flush=True,
        )


if __name__ == "__main__":
    main()
