"""Viewer jobs: server-render latency while a plugin job runs, and how long Cancel takes.

(1) median latency of the viewer's server render (``Viewer.render``, RGB, 320 px long side) of the
demo-initialised scene (4,000 Gaussians) with no job, during a job that sleeps between progress
calls, and during a CPU-bound job (torch matmuls between progress calls); (2) the time from
``cancel()`` to the job's end for jobs that call progress every 0.1 s and every 0.5 s.

    python benchmarks/viewer_jobs.py [--renders 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "app"))

from viewer_util import free_port, make_scene_run  # noqa: E402

from splatlab.app.viewer.render import ViewCamera  # noqa: E402
from splatlab.app.viewer.server import Viewer, config_from  # noqa: E402


def sleeping(period: float):
    def fn(progress):
        while True:
            progress(0.5, "sleeping")
            time.sleep(period)

    return fn


def cpu_bound(progress):
    a = torch.randn(384, 384)
    while True:
        for _ in range(20):
            a = torch.tanh(a @ a.T / 384.0)
        progress(0.5, "matmul")


def render_ms(v: Viewer, cam: ViewCamera, n: int) -> float:
    v.render(cam, "RGB")  # warm-up
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        v.render(cam, "RGB")
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--renders", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        run = make_scene_run(Path(d) / "run", n_views=8)
        v = Viewer(config_from(run, port=free_port(), load_points=False))
        try:
            c = v.source.cameras
            cam = ViewCamera(c.viewmats[0], c.Ks[0], int(c.widths[0]), int(c.heights[0]))
            cam = cam.scaled(320)
            ctx = v.context("Plugins")
            print("| job running | median server render (ms), RGB 320 px, 4,000 Gaussians |")
            print("|---|---|")
            print(f"| none | {render_ms(v, cam, args.renders):.1f} |")
            for label, fn in (
                ("sleep + progress every 50 ms", sleeping(0.05)),
                ("CPU-bound torch, progress every ~20 matmuls", cpu_bound),
            ):
                job = ctx.run_job(fn, label=label)
                time.sleep(0.3)
                ms = render_ms(v, cam, args.renders)
                job.cancel()
                job.wait(10)
                print(f"| {label} | {ms:.1f} |")
            print()
            print("| progress period | cancel -> job ended (ms), median of 5 |")
            print("|---|---|")
            for period in (0.1, 0.5):
                lat = []
                for _ in range(5):
                    job = ctx.run_job(sleeping(period), label="cancel")
                    time.sleep(0.25)
                    t0 = time.perf_counter()
                    job.cancel()
                    job.wait(10)
                    lat.append((time.perf_counter() - t0) * 1000)
                print(f"| {period:.1f} s | {np.median(lat):.0f} |")
        finally:
            v.stop()


if __name__ == "__main__":
    main()
