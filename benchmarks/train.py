"""Training benchmark: test PSNR / SSIM against wall time on this machine.

    python benchmarks/train.py --scene demo                       # the embedded demo (CPU target: >= 25 dB in 3 min)
    python benchmarks/train.py --scene fox --downscale 4 --steps 3000
    python benchmarks/train.py --scene demo --method mcmc

Evaluates at a few checkpoints of the run (the evaluation time is excluded from the wall time) and
prints Markdown rows for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scene", default="demo", help="'demo' or a dataset path ('fox' = ../shared/data/fox)")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--evals", type=int, default=3, help="number of evaluation points along the run")
    ap.add_argument("--downscale", type=int, default=1)
    ap.add_argument("--method", default="3dgs")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    from splatlab.app.cli import demo_train_config
    from splatlab.training.trainer import Trainer

    if args.scene == "demo":
        from splatlab.scene.synthetic import make_demo_scene

        ds = make_demo_scene()
    else:
        from splatlab.scene.datasets import load_dataset

        path = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "fox" if args.scene == "fox" else Path(args.scene)
        ds = load_dataset(path, downscale=args.downscale)
    out = Path(tempfile.mkdtemp(prefix="splatlab_bench_"))
    wall = 0.0
    marks = sorted({max(1, round(args.steps * (k + 1) / args.evals)) for k in range(args.evals)})
    trainer = None
    for m in marks:
        cfg = demo_train_config(out, args.steps)
        cfg.method = args.method
        cfg.device = args.device
        cfg.checkpoint_every = 0
        if trainer is None:
            trainer = Trainer(ds, cfg)
        # train up to the next mark in the same Trainer (the schedule is that of the full run)
        trainer.cfg.steps = m
        t0 = time.perf_counter()
        trainer.train()  # continues from trainer.step
        wall += time.perf_counter() - t0
        trainer.cfg.steps = args.steps
        metrics = trainer.evaluate(write_renders=False, lpips_net=None)
        print(f"| {args.scene} | {args.method} | {m} | {wall:.1f} | {metrics['psnr']:.2f} | {metrics['ssim']:.4f} | "
              f"{metrics['n_gaussians']:,} | {trainer.device} |", flush=True)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{time.strftime('%Y-%m-%d')}")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
