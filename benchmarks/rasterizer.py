"""Rasterizer benchmark: forward and forward+backward time and peak memory.

    python benchmarks/rasterizer.py                 # the full grid on this machine's device
    python benchmarks/rasterizer.py --quick         # a smaller grid
    python benchmarks/rasterizer.py --device cuda   # ours (torch backend, torch compositor) vs gsplat

Each configuration runs in a fresh subprocess so that its peak resident memory (CPU) is its own;
on CUDA the peak is torch.cuda.max_memory_allocated. Scenes come from
``splatlab.rendering.random_scenes.random_scene`` (Gaussians filling the view frustum, footprints
covering the image about 4 times). Prints Markdown table rows for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time


def run_single(n: int, size: int, d: int, device: str, backend: str, repeats: int) -> dict:
    import torch

    from splatlab.rendering import rasterize
    from splatlab.rendering.random_scenes import random_scene

    torch.set_grad_enabled(True)
    s = random_scene(n, size, size, channels=d, seed=0)
    s = {k: v.to(device) for k, v in s.items()}
    leaves = {k: s[k].clone().requires_grad_() for k in ("means", "quats", "scales", "opacities", "colors")}
    kw = dict(backend=backend)
    if backend == "torch" and device != "cpu":
        kw["compositor"] = "torch"

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def fwd(grad: bool):
        with torch.set_grad_enabled(grad):
            return rasterize(**{**s, **leaves}, width=size, height=size, **kw)

    # warm-up (numba / CUDA kernels compiled or loaded from cache)
    img, a, info = fwd(False)
    n_isect = int(info["flatten_ids"].numel()) if info.get("flatten_ids") is not None else -1
    coverage = float(a.mean())
    del img, a, info
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t_fwd = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        img, a, _ = fwd(False)
        sync()
        t_fwd.append(time.perf_counter() - t0)
        del img, a
    t_fb = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        img, a, _ = fwd(True)
        (img.sum() + a.sum()).backward()
        sync()
        t_fb.append(time.perf_counter() - t0)
        for v in leaves.values():
            v.grad = None
        del img, a
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return {
        "n": n, "size": size, "d": d, "device": device, "backend": backend,
        "fwd_s": statistics.median(t_fwd), "fwd_bwd_s": statistics.median(t_fb),
        "peak_gib": peak, "n_isect": n_isect, "coverage": coverage,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--single", type=str, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.single:
        n, size, d, backend = args.single.split(",")
        print(json.dumps(run_single(int(n), int(size), int(d), args.device, backend, args.repeats)))
        return
    ns = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    sizes = [256] if args.quick else [256, 800]
    backends = ["torch", "gsplat"] if args.device == "cuda" else ["torch"]
    rows = []
    for backend in backends:
        for n in ns:
            for size in sizes:
                for d in (3, 32):
                    cmd = [sys.executable, __file__, "--device", args.device, "--repeats", str(args.repeats),
                           "--single", f"{n},{size},{d},{backend}"]
                    out = subprocess.run(cmd, capture_output=True, text=True)
                    if out.returncode != 0:
                        print(f"FAILED {cmd}: {out.stderr[-2000:]}", file=sys.stderr)
                        continue
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    rows.append(r)
                    fb = f"{r['fwd_bwd_s']:.3f}"
                    print(f"| {backend} | {args.device} | {n:,} | {size}x{size} | {d} | {r['fwd_s']:.3f} | {fb} | "
                          f"{r['peak_gib']:.2f} | {r['n_isect']:,} |", flush=True)
    print(f"# machine: {platform.processor() or platform.machine()}, {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
