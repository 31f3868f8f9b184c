"""Time two parts of a CPU training step: the D-SSIM loss and the Adam updates.

    python benchmarks/train_step_parts.py [--threads 1] [--gaussians 23000]

D-SSIM, forward + backward, at the fox's coarse (118x66) and full (475x266) training sizes:
torchmetrics' SSIM (dense 11x11 window, reflection padding: our metric and training loss)
against pytorch_msssim's (two 1-D passes, valid padding, the padding of gsplat's training
loss). The second needs ``pip install pytorch-msssim``; it is not a dependency, because it did
not pay in whole runs (BENCHMARKS.md). Adam: the trainer's six per-parameter optimizers
(means, scales, quats, opacities, sh0, shN of SH degree 3) for N Gaussians, in torch's three
implementations (for-loop, foreach, fused). Median of 20 after 3 warm-ups, milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from splatlab.rendering.metrics import ssim


def separable_dssim(img: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    from pytorch_msssim import ssim as separable_ssim

    return 1.0 - separable_ssim(img.permute(0, 3, 1, 2), ref.permute(0, 3, 1, 2), data_range=1.0,
                                win_size=11, win_sigma=1.5)


def median_ms(fn: Callable[[], None], reps: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--gaussians", type=int, default=23_000)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)

    print("| D-SSIM (forward + backward) | size | ms |\n|---|---|---:|")
    for h, w in ((66, 118), (266, 475)):
        img = torch.rand(1, h, w, 3, generator=g, requires_grad=True)
        ref = torch.rand(1, h, w, 3, generator=g)
        for name, loss_fn in (("1 - torchmetrics SSIM", lambda a, b: 1.0 - ssim(a, b).mean()),
                              ("1 - pytorch_msssim SSIM", separable_dssim)):

            def step(loss_fn: Callable = loss_fn, img: torch.Tensor = img, ref: torch.Tensor = ref) -> None:
                loss_fn(img, ref).backward()

            try:
                print(f"| {name} | {w}x{h} | {median_ms(step):.1f} |")
            except ImportError:
                print(f"| {name} | {w}x{h} | not installed: pip install pytorch-msssim |")

    n = args.gaussians
    shapes = {"means": (n, 3), "scales": (n, 3), "quats": (n, 4), "opacities": (n,), "sh0": (n, 1, 3),
              "shN": (n, 15, 3)}
    print(f"\n| Adam, six optimizers, {n:,} Gaussians | ms per step |\n|---|---:|")
    for mode in ("for-loop", "foreach", "fused"):
        params = {k: torch.nn.Parameter(torch.randn(s, generator=g)) for k, s in shapes.items()}
        kw = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[mode]
        opts = [torch.optim.Adam([p], lr=1e-3, eps=1e-15, **kw) for p in params.values()]
        for p in params.values():
            p.grad = torch.randn(p.shape, generator=g)

        def steps(opts: list[torch.optim.Optimizer] = opts) -> None:
            for o in opts:
                o.step()

        print(f"| {mode} | {median_ms(steps):.2f} |")


if __name__ == "__main__":
    main()
