"""splatlab vs OpenSplat on the CPU: same images, same cameras, same initial points, same held-out
views, same steps; both scenes scored by OUR renderer on the held-out views.

    bash benchmarks/peer_opensplat/build.sh /tmp/opensplat        # once (see its README)
    python benchmarks/peer_opensplat.py ../shared/data/sceaux_castle --downscale 4 --steps 2000 \\
        --opensplat /tmp/opensplat/build/opensplat --work /tmp/peer_castle [--ours-args "..."]

What it does:
1. Loads the scene with splatlab's loader (photos -> pycolmap SfM, or known poses; cached), at
   ``--downscale``, with the usual split (every 8th view held out). A posed dataset without points
   (the fox) gets the points triangulated from its known poses, the init splatlab uses.
2. Writes an OpenSplat project in splatlab's normalised frame: ``images/`` holds the TRAINING
   views only, as the exact pixels splatlab trains on (PNG), and ``sparse/0`` a COLMAP model
   (PINHOLE cameras, those views' poses, the initial points) written by pycolmap.
3. Runs ``opensplat PROJECT --cpu -n STEPS --keep-crs -o scene.ply`` (its defaults otherwise:
   coarse-to-fine 2 downscales every 3000 steps, SH degree 3) and ``splatlab train DATA
   --downscale D --steps STEPS`` each under ``/usr/bin/time -v`` (wall time, peak RSS), one
   after the other, never at the same time.
4. Loads both PLYs and renders the held-out and the training views with splatlab's rasterizer
   (torch backend on the CPU): PSNR and SSIM per view, against the same images.

Results: a JSON and a markdown table in ``--work``. OpenSplat's source is never copied here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from splatlab.rendering.metrics import psnr, ssim
from splatlab.rendering.splats import render_splats
from splatlab.scene.datasets import load_dataset
from splatlab.scene.gaussians import load_ply


def initial_points(ds) -> tuple[np.ndarray, np.ndarray]:
    """The points splatlab's trainer starts from (its ``init='sfm'`` rule)."""
    if ds.points is not None and len(ds.points) >= 4:
        rgb = ds.points_rgb if ds.points_rgb is not None else np.full((len(ds.points), 3), 128, np.uint8)
        return np.asarray(ds.points, np.float64), np.asarray(rgb, np.uint8)
    from splatlab.scene.datasets.triangulate import triangulate_known_poses

    xyz, rgb, _ = triangulate_known_poses(ds)
    return np.asarray(xyz, np.float64), np.asarray(rgb, np.uint8)


def write_opensplat_project(ds, out: Path) -> dict:
    """COLMAP model + images of the training views (normalised frame) for OpenSplat."""
    import imageio.v3 as iio
    import pycolmap

    if out.exists():
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    (out / "sparse" / "0").mkdir(parents=True)
    rec = pycolmap.Reconstruction()
    for k, i in enumerate(ds.train_ids, start=1):
        f = ds.frames[i]
        K = f.K
        rec.add_camera_with_trivial_rig(
            pycolmap.Camera(model="PINHOLE", width=f.width, height=f.height,
                            params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2]], camera_id=k)
        )
        name = f"view_{i:04d}.png"
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(f.viewmat[:3, :3]), f.viewmat[:3, 3])
        rec.add_image_with_trivial_frame(pycolmap.Image(name=name, camera_id=k, image_id=k), pose)
        img = np.clip(ds.load_image(i) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        iio.imwrite(out / "images" / name, img)
    xyz, rgb = initial_points(ds)
    for p, c in zip(xyz, rgb):
        rec.add_point3D(p, pycolmap.Track(), c)
    rec.write_binary(str(out / "sparse" / "0"))
    return {"train_views": len(ds.train_ids), "points": len(xyz)}


def timed(cmd: list[str], log: Path, env: dict | None = None) -> dict:
    """Run ``cmd`` under /usr/bin/time -v: wall seconds, peak RSS (GB), return code."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.call(["/usr/bin/time", "-v", *cmd], stdout=fh, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if rc != 0:
        raise RuntimeError(f"{cmd[0]} failed (exit {rc}); its output is in {log}")
    return {"wall_s": wall, "peak_rss_gb": int(m.group(1)) / 1024**2 if m else None,
            "load_avg_after": os.getloadavg()[0]}


@torch.no_grad()
def score(params, ds, ids: list[int]) -> dict:
    bg = torch.tensor(ds.background or (0.0, 0.0, 0.0), dtype=torch.float32)[None]
    rows = []
    for i in ids:
        f = ds.frames[i]
        vm = torch.as_tensor(f.viewmat, dtype=torch.float32)[None]
        K = torch.as_tensor(f.K, dtype=torch.float32)[None]
        gt = torch.as_tensor(ds.load_image(i), dtype=torch.float32)
        img = render_splats(params, vm, K, f.width, f.height, backgrounds=bg)[0][0].clamp(0, 1)
        rows.append({"view": f.name, "psnr": float(psnr(img, gt)), "ssim": float(ssim(img[None], gt[None])[0])})
    return {"psnr": float(np.mean([r["psnr"] for r in rows])), "ssim": float(np.mean([r["ssim"] for r in rows])),
            "per_view": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path)
    ap.add_argument("--downscale", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--opensplat", type=Path, default=Path("/tmp/opensplat/build/opensplat"))
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--ours-args", default="", help="extra arguments of `splatlab train` (quoted)")
    ap.add_argument("--opensplat-args", default="", help="extra arguments of opensplat (quoted)")
    ap.add_argument("--skip", choices=["ours", "opensplat"], action="append", default=[],
                    help="reuse that trainer's result from an earlier run in --work")
    ap.add_argument("--threads", type=int, default=2, help="OMP / torch threads of both trainers")
    args = ap.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(args.data, downscale=args.downscale)
    f0 = ds.frames[ds.train_ids[0]]
    res_file = args.work / "results.json"
    results = json.loads(res_file.read_text()) if res_file.exists() else {}
    results["setup"] = {
        "data": str(args.data), "downscale": args.downscale, "steps": args.steps,
        "size": f"{f0.width}x{f0.height}", "train_views": len(ds.train_ids), "test_views": len(ds.test_ids),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threads": args.threads,
        "cpu": os.cpu_count(),
    }
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}

    if "opensplat" not in args.skip:
        proj = args.work / "opensplat_project"
        results["setup"].update(write_opensplat_project(ds, proj))
        ply = args.work / "opensplat_scene.ply"
        cmd = [str(args.opensplat), str(proj), "--cpu", "-n", str(args.steps), "--keep-crs", "-o", str(ply),
               *shlex.split(args.opensplat_args)]
        print("running", " ".join(cmd), flush=True)
        results["opensplat"] = {"cmd": " ".join(cmd), **timed(cmd, args.work / "opensplat.log", env)}
    if "ours" not in args.skip:
        run = args.work / "ours_run"
        if run.exists():
            shutil.rmtree(run)
        cmd = [str(Path(sys.executable).with_name("splatlab")), "train", str(args.data), "--downscale", str(args.downscale),
               "--steps", str(args.steps), "--out", str(run), "--checkpoint-every", "0",
               *shlex.split(args.ours_args)]
        print("running", " ".join(cmd), flush=True)
        results["ours"] = {"cmd": " ".join(cmd), **timed(cmd, args.work / "ours.log", env)}

    torch.set_num_threads(args.threads)
    for name, ply, transform in (("opensplat", args.work / "opensplat_scene.ply", None),
                                 ("ours", args.work / "ours_run" / "scene.ply", ds.transform)):
        if name not in results or not ply.exists():
            continue
        params = load_ply(ply, transform=transform)
        results[name]["gaussians"] = len(params["means"])
        results[name]["test"] = score(params, ds, ds.test_ids)
        results[name]["train"] = score(params, ds, ds.train_ids)
    res_file.write_text(json.dumps(results, indent=1))

    s = results["setup"]
    lines = [f"{s['data']} at {s['size']} (downscale {s['downscale']}), {s['train_views']} training / "
             f"{s['test_views']} held-out views, {s['steps']} steps, {s['threads']} threads, {s['date']}", "",
             "| trainer | wall s | s / step | peak RSS GB | Gaussians | held-out PSNR dB (per view) | held-out SSIM | training-view PSNR dB |",
             "|---|---:|---:|---:|---:|---|---:|---:|"]
    for name in ("opensplat", "ours"):
        r = results.get(name)
        if not r or "test" not in r:
            continue
        per = " / ".join(f"{v['psnr']:.2f}" for v in r["test"]["per_view"])
        lines.append(f"| {name} | {r['wall_s']:.0f} | {r['wall_s'] / s['steps']:.3f} | {r['peak_rss_gb']:.2f} | "
                     f"{r['gaussians']:,} | {r['test']['psnr']:.2f} ({per}) | {r['test']['ssim']:.4f} | "
                     f"{r['train']['psnr']:.2f} |")
    table = "\n".join(lines)
    (args.work / "results.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
