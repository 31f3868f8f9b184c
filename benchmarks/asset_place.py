"""Assets into scenes: card fit quality and time, the placed card's view against its front render,
the click's ray-scene hit (accuracy on a known plane, time vs scene size), merge + PLY save.

    python benchmarks/asset_place.py [--threads 1]

Prints markdown tables (benchmarks/results/asset_place.md holds a run)."""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "plugins" / "generate"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from test_place import UP, _framing_K, _look_at, _plane, _psnr, _render, asset_image

    from splatlab.plugins.generate.asset import fit_card, render_card, rgba_from_image
    from splatlab.plugins.generate.place import (
        axis_rotation,
        card_rotation,
        merge_gaussians,
        place_card,
        ray_hit,
    )
    from splatlab.scene.gaussians import init_gaussians, save_ply

    fit_card(rgba_from_image(asset_image(16, 16)), steps=2)  # compile the kernels first
    print("| image | steps | Gaussians | fit s | colour PSNR dB | alpha PSNR dB |")
    print("|---|---|---|---|---|---|")
    fits = {}
    for size in (48, 96):
        rgba = rgba_from_image(asset_image(size, size))
        fit = fit_card(rgba, steps=150, seed=0)
        fits[size] = fit
        print(f"| {size} x {size} textured disk | 150 | {fit.params['means'].shape[0]:,} | "
              f"{fit.seconds:.1f} | {fit.psnr_db:.1f} | {fit.alpha_psnr_db:.1f} |")

    print()
    print("| placement (96 px card) | PSNR vs the card's front render dB | vs the image dB |")
    print("|---|---|---|")
    size = 96
    fit = fits[size]
    front = render_card(fit.params, size, size)[0].clamp(0, 1).numpy()
    rgba = rgba_from_image(asset_image(size, size))
    target = rgba[..., :3] * rgba[..., 3:]
    hit = np.array([0.7, -0.4, 2.5])
    fwd = np.cross(UP, [1.0, 0.0, 0.0])
    fwd /= np.linalg.norm(fwd)
    import test_place

    test_place.H = test_place.W = size  # _framing_K frames the card at this image size
    for scale, dist, yaw, anchor in ((0.6, 2.0, 0.0, "center"), (2.5, 9.0, 0.0, "center"),
                                     (1.0, 3.0, 40.0, "center"), (1.0, 3.0, -75.0, "bottom")):
        eye0 = hit - dist * fwd
        look = hit + (scale / 2 * UP if anchor == "bottom" else 0.0)
        R = card_rotation(_look_at(eye0, hit, UP), UP, yaw_deg=yaw, upright=True)
        placed = place_card(fit.params, hit, scale, R, anchor)
        eye = hit + axis_rotation(UP, yaw) @ (eye0 - hit) + (look - hit)
        view = _render(placed, _look_at(eye, look, UP), _framing_K(dist, scale), size, size)
        print(f"| height {scale}, distance {dist}, yaw {yaw:+.0f}, anchor {anchor} | "
              f"{_psnr(view, front):.1f} | {_psnr(view, target):.1f} |")

    print()
    print("| ray vs plane (sigma 0.04, depth ~3) | incidence deg | off the plane | depth error |")
    print("|---|---|---|---|")
    normal, p0 = np.array([0.2, -0.3, 1.0]), np.array([0.0, 0.0, 3.0])
    nu = normal / np.linalg.norm(normal)
    scene = _plane(normal, p0, half=3.0, sigma=0.04)
    origin = np.array([0.1, -0.2, 0.0])
    for d in ((0.2, -0.3, 1.0), (0.0, 0.0, 1.0), (0.2, 0.1, 1.0), (-0.3, 0.35, 1.0), (-0.6, 0.7, 1.0)):
        d = np.asarray(d) / np.linalg.norm(d)
        t = float((p0 - origin) @ nu / (d @ nu))
        h = ray_hit(scene, origin, d, focal_px=600.0)
        inc = math.degrees(math.acos(min(1.0, abs(float(d @ nu)))))
        print(f"| | {inc:.0f} | {abs(float((h.point - p0) @ nu)):.4f} | {h.depth - t:+.4f} |")

    print()
    print("| scene Gaussians | ray hit ms (median of 5) | merge + PLY save s |")
    print("|---|---|---|")
    rng = np.random.default_rng(0)
    for n in (4_000, 100_000, 500_000):
        base = init_gaussians(rng.normal(size=(n, 3)) * 2.0, sh_degree=3, seed=0, init_scale=1.0)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            ray_hit(base, (0.0, 0.0, -8.0), rng.normal(size=3) * 0.05 + [0, 0, 1], focal_px=500.0)
            times.append(time.perf_counter() - t0)
        asset = place_card(fit.params, (0.0, 0.0, 0.0), 1.0, np.eye(3))
        t0 = time.perf_counter()
        merged = merge_gaussians(base, asset)
        with tempfile.TemporaryDirectory() as td:
            save_ply(Path(td) / "s.ply", merged)
        t_save = time.perf_counter() - t0
        print(f"| {n:,} | {np.median(times) * 1e3:.0f} | {t_save:.2f} |")


if __name__ == "__main__":
    main()
