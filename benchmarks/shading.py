"""GaussianShader vs plain 3DGS on the demo scene at equal steps (rows for BENCHMARKS.md).

    python benchmarks/shading.py --steps 1500 [--device cpu] [--out runs/bench_shading]
        [--methods 3dgs,gaussianshader] [--shader '{"ambient": true}'] [--append rows.jsonl]

Each method trains in its own subprocess (so the peak RSS is per method), then prints one
markdown row: test PSNR / SSIM, PSNR over glossy-object pixels and over matte-object pixels
(meta["labels"] / meta["glossy_labels"]), mean angular error of rendered normals vs the ground
truth (shading normals for GaussianShader; normals of the rendered depth for both), mean
seconds per training step, peak memory (RSS, and CUDA max allocated on a GPU); per-ball PSNR
(chrome / glossy blue), and for GaussianShader the specular buffer on the chrome ball
(:func:`ball_metrics`) and the learned-vs-true environment correlation (:func:`env_correlation`).
``--shader`` passes ShaderConfig overrides (the ablations). Timings on a shared CPU are noisy.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def _label_of(ds, name: str) -> int:  # noqa: ANN001
    return next(o["label"] for o in ds.meta["objects"] if o["name"] == name)


def ball_metrics(trainer, ids: list[int] | None = None) -> dict:  # noqa: ANN001
    """Per-ball PSNR (chrome / glossy blue, pooled over the test views' pixels of that ball) and,
    for GaussianShader, the specular buffer on the chrome ball: ``spec_chrome_mean`` (mean over
    chrome pixels and RGB), ``spec_chrome_max`` (max over chrome pixels of the RGB mean),
    ``spec_chrome_frac`` (mean specular / mean rendered colour there). Values in [0, 1] units."""
    import math

    import numpy as np
    import torch

    from splatlab.methods.gaussianshader.shader import GaussianShaderAppearance

    ds = trainer.dataset
    ids = ids if ids is not None else ds.test_ids
    chrome, blue = _label_of(ds, "chrome ball"), _label_of(ds, "glossy blue ball")
    se = {"chrome": [0.0, 0], "blue": [0.0, 0]}
    spec_vals, img_vals = [], []
    shader = isinstance(trainer.appearance, GaussianShaderAppearance)
    with torch.no_grad():
        for i in ids:
            vm, K, w, h = trainer.camera(i)
            gt = trainer.image(i)
            labels = torch.as_tensor(np.asarray(ds.meta["labels"][i])).long()
            if shader:
                o = trainer.appearance.render_buffers(
                    trainer.params, vm, K, w, h, trainer.cfg.sh_degree, trainer.background(),
                    buffers=True, **trainer.raster_options(),
                )
                img = o["img"].clamp(0, 1)
                m = labels == chrome
                spec_vals.append(o["specular"][m].mean(-1))
                img_vals.append(img[m].mean(-1))
            else:
                img = trainer.render(vm, K, w, h)[0].clamp(0, 1)
            for name, lab in (("chrome", chrome), ("blue", blue)):
                m = labels == lab
                se[name][0] += float(((img - gt) ** 2)[m].sum())
                se[name][1] += int(m.sum()) * 3
    res = {
        f"psnr_{k}": 10 * math.log10(1.0 / max(v[0] / max(v[1], 1), 1e-12)) for k, v in se.items()
    }
    if spec_vals:
        sv, iv = torch.cat(spec_vals), torch.cat(img_vals)
        res.update(
            spec_chrome_mean=float(sv.mean()),
            spec_chrome_max=float(sv.max()),
            spec_chrome_frac=float(sv.mean() / iv.mean().clamp_min(1e-8)),
        )
    return res


def env_correlation(trainer, face_res: int = 8) -> dict:  # noqa: ANN001
    """Pearson correlation between the learned environment and the demo's true one.

    Both as cube maps downsampled to ``face_res`` x ``face_res`` per face (2x2 .. box averages of
    the learned base map; the true map sampled at the learned map's texel directions, then
    averaged the same way): ``env_corr_rgb`` over all 6 * face_res^2 * 3 values,
    ``env_corr_lum`` over the luminances (0.2126 R + 0.7152 G + 0.0722 B). The learned map is in
    the training frame; its texel directions are taken back to world coordinates with the
    dataset transform (the identity for the demo)."""
    import torch

    app = trainer.appearance
    app._project_env()
    base = app.env.base.detach().cpu().double()  # [6, R, R, 3]
    R = base.shape[1]
    if R % face_res:
        raise ValueError(f"env resolution {R} is not a multiple of {face_res}")
    true = true_env_cube(trainer.dataset, R).double()
    f = R // face_res

    def down(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(6, face_res, f, face_res, f, 3).mean(dim=(2, 4))

    a, b = down(base), down(true)
    lum = torch.tensor([0.2126, 0.7152, 0.0722], dtype=torch.float64)

    def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
        x, y = x.reshape(-1) - x.mean(), y.reshape(-1) - y.mean()
        return float((x * y).sum() / (x.norm() * y.norm()).clamp_min(1e-12))

    return {
        "env_corr_rgb": pearson(a, b),
        "env_corr_lum": pearson(a @ lum, b @ lum),
        "env_mean": float(base.mean()),
        "env_true_mean": float(true.mean()),
    }


def true_env_cube(dataset, resolution: int):  # noqa: ANN001
    """The demo's true environment as a cube map [6, R, R, 3] in the training frame (texel
    centres sampled from ``meta["envmap"]``)."""
    import numpy as np
    import torch

    from splatlab.rendering.shading.envmap import cube_directions
    from splatlab.scene.synthetic import sample_envmap

    d = cube_directions(resolution, torch.float64).reshape(-1, 3).numpy()
    T = np.asarray(dataset.transform if dataset.transform is not None else np.eye(4))
    d_world = d @ np.linalg.inv(T[:3, :3]).T  # x_train = A x_world -> d_world ~ A^-1 d_train
    vals = sample_envmap(dataset.meta["envmap"], d_world)
    return torch.from_numpy(vals).reshape(6, resolution, resolution, 3).float()


def run_one(
    method: str,
    steps: int,
    device: str,
    out: Path,
    threads: int,
    shader: dict | None = None,
    oracle_env: bool = False,
) -> dict:
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
        make_trainer(ds, cfg, ShaderConfig(**(shader or {})))
        if method == "gaussianshader"
        else Trainer(ds, cfg)
    )
    if oracle_env:  # diagnosis: the true environment, frozen (env_lr should be 0)
        with torch.no_grad():
            app = trainer.appearance
            app.env.base.copy_(true_env_cube(ds, app.env.base.shape[1]).to(app.env.base))
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
    sm.update(ball_metrics(trainer))
    if method == "gaussianshader":
        sm.update(env_correlation(trainer))
        export_buffers(trainer, run / "buffers", ids=ds.test_ids[:2])
    row = {
        "method": method,
        "shader": shader or {},
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
    ap.add_argument(
        "--shader", default="{}", help='ShaderConfig overrides as JSON, e.g. \'{"ambient": true}\''
    )
    ap.add_argument(
        "--oracle-env", action="store_true",
        help="diagnosis: start GaussianShader from the true environment (pass env_lr 0 to freeze it)",
    )
    ap.add_argument("--append", type=Path, default=None, help="also append the rows to this JSONL")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    shader = json.loads(a.shader)
    if a.child:
        row = run_one(a.child, a.steps, a.device, a.out, a.threads, shader, a.oracle_env)
        row["oracle_env"] = a.oracle_env
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
            "--shader",
            a.shader,
            *(["--oracle-env"] if a.oracle_env else []),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("ROW ")]
        if proc.returncode != 0 or not lines:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"{method} failed (exit {proc.returncode})")
        rows.append(json.loads(lines[-1][4:]))
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "rows.json").write_text(json.dumps(rows, indent=2))
    if a.append is not None:
        with a.append.open("a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    print(
        "| method | steps | device | test PSNR | SSIM | glossy PSNR | chrome | blue | matte PSNR "
        "| normal err (shading) | normal err (depth) | spec. chrome mean / max | env corr RGB / lum "
        "| #G | s/step | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ne = "-" if r["normal_error_deg"] is None else f"{r['normal_error_deg']:.1f}°"
        spec = (
            f"{r['spec_chrome_mean']:.3f} / {r['spec_chrome_max']:.3f}" if "spec_chrome_mean" in r else "-"
        )
        corr = f"{r['env_corr_rgb']:.2f} / {r['env_corr_lum']:.2f}" if "env_corr_rgb" in r else "-"
        print(
            f"| {r['method']} | {r['steps']} | {r['device']} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
            f"{r['psnr_glossy']:.2f} | {r['psnr_chrome']:.2f} | {r['psnr_blue']:.2f} | "
            f"{r['psnr_matte']:.2f} | {ne} | {r['depth_normal_error_deg']:.1f}° | {spec} | {corr} | "
            f"{r['n_gaussians']} | {r['s_per_step']:.3f} | {r['peak_rss_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
