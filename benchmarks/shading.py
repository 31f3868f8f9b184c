"""GaussianShader vs plain 3DGS on the demo scene at equal steps (rows for BENCHMARKS.md).

    python benchmarks/shading.py --steps 1500 [--device cpu] [--out runs/bench_shading]

Each method trains in its own subprocess (so the peak RSS is per method), then prints one
markdown row: test PSNR / SSIM, PSNR over glossy-object pixels and over matte-object pixels
(meta["labels"] / meta["glossy_labels"]), mean angular error of rendered normals vs the ground
truth (shading normals for GaussianShader; normals of the rendered depth for both), mean
seconds per training step, peak memory (RSS, and CUDA max allocated on a GPU). Timings on a
shared CPU are noisy.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def run_one(method: str, steps: int, device: str, out: Path, threads: int) -> dict:
    import shutil

    import torch

    from splatlab.methods.gaussianshader.shader import (
        ShaderConfig,
        export_buffers,
        make_trainer,
        shading_metrics,
    )
    from splatlab.scene.synthetic import make_demo_scene
    from splatlab.training.trainer import TrainConfig, Trainer

    torch.set_num_threads(threads)
    ds = make_demo_scene()
    run = out / method
    shutil.rmtree(run, ignore_errors=True)
    cfg = TrainConfig(
        out=run,
        steps=steps,
        refine_start_iter=100,
        refine_stop_iter=int(steps * 0.8),
        refine_every=100,
        reset_every=10_000,
        sh_degree_interval=max(steps // 4, 1),
        checkpoint_every=0,
        device=device,
    )
    trainer = (
        make_trainer(ds, cfg, ShaderConfig()) if method == "gaussianshader" else Trainer(ds, cfg)
    )
    # warm-up (numba compilation, prefilter operators) is not counted in the step time
    vm, K, w, h = trainer.camera(ds.train_ids[0])
    out_ = trainer.forward(0, ds.train_ids[0], vm, K, w, h, 0, None)
    trainer.compute_loss(0, out_, trainer.image(ds.train_ids[0])).backward()
    for opt in [*trainer.optimizers.values(), *trainer.aux_optimizers()]:
        opt.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = trainer.train()
    if device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    m = trainer.evaluate(write_renders=False, lpips_net=None)
    sm = shading_metrics(trainer)
    if method == "gaussianshader":
        export_buffers(trainer, run / "buffers", ids=ds.test_ids[:2])
    row = {
        "method": method,
        "steps": steps,
        "device": device,
        "psnr": m["psnr"],
        "ssim": m["ssim"],
        "n_gaussians": result.n_gaussians,
        "s_per_step": wall / steps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
        **sm,
    }
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/bench_shading"))
    ap.add_argument("--methods", default="3dgs,gaussianshader")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        row = run_one(a.child, a.steps, a.device, a.out, a.threads)
        print("ROW " + json.dumps(row))
        return
    rows = []
    for method in a.methods.split(","):
        cmd = [
            sys.executable,
            __file__,
            "--child",
            method,
            "--steps",
            str(a.steps),
            "--device",
            a.device,
            "--threads",
            str(a.threads),
            "--out",
            str(a.out),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("ROW ")]
        if proc.returncode != 0 or not lines:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"{method} failed (exit {proc.returncode})")
        rows.append(json.loads(lines[-1][4:]))
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "rows.json").write_text(json.dumps(rows, indent=2))
    print(
        "| method | steps | device | test PSNR | SSIM | glossy PSNR | matte PSNR | normal err (shading) "
        "| normal err (depth) | #G | s/step | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ne = "-" if r["normal_error_deg"] is None else f"{r['normal_error_deg']:.1f}°"
        print(
            f"| {r['method']} | {r['steps']} | {r['device']} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
            f"{r['psnr_glossy']:.2f} | {r['psnr_matte']:.2f} | {ne} | {r['depth_normal_error_deg']:.1f}° | "
            f"{r['n_gaussians']} | {r['s_per_step']:.3f} | {r['peak_rss_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
