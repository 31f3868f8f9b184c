"""Scene file formats and our scene codec on a trained run: size, ratio to the INRIA PLY, test
PSNR / SSIM of the decoded scene, encode and decode seconds. Prints markdown rows.

    python benchmarks/scene_formats.py /tmp/demo_run [--sog-iterations 10] [--no-splat-transform]
        [--codec-only] [--qualities 1,2,3,4,5] [--finetune 0.3:2:200,0.3:1:200]

Rows: PLY (save_ply), SPZ v4 / v3, compressed PLY and SOG written by splatlab and by PlayCanvas
splat-transform (found as in the interop tests: SPLAT_TRANSFORM_DIR or .tools/), and the .slsc
codec at each quality. Every file is decoded by splatlab's readers (which agree with
splat-transform's own decode to float rounding, see tests/scene/formats). splat-transform times
include node's start-up (~0.5 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from splatlab.plugins.base import PluginInputs
from splatlab.plugins.compress.scene_codec import QUALITY_PRESETS, decode_scene, encode_scene
from splatlab.rendering.metrics import psnr, ssim
from splatlab.rendering.splats import render_splats
from splatlab.scene.formats import load_scene_file, save_scene_file
from splatlab.scene.gaussians import save_ply

REPO = Path(__file__).resolve().parents[1]


def splat_transform() -> tuple[str, str] | None:
    prefix = Path(os.environ.get("SPLAT_TRANSFORM_DIR", REPO / ".tools"))
    cli = prefix / "node_modules" / "@playcanvas" / "splat-transform" / "bin" / "cli.mjs"
    node = prefix / "node_modules" / ".bin" / "node"
    if not cli.is_file():
        return None
    exe = str(node) if node.exists() else shutil.which("node")
    return (exe, str(cli)) if exe else None


def evaluate(params, dataset) -> tuple[float, float]:
    bg = torch.tensor(dataset.background or (0.0, 0.0, 0.0), dtype=torch.float32)[None]
    ps, ss = [], []
    for i in dataset.test_ids:
        f = dataset.frames[i]
        vm = torch.as_tensor(f.viewmat, dtype=torch.float32)[None]
        K = torch.as_tensor(f.K, dtype=torch.float32)[None]
        gt = torch.as_tensor(dataset.load_image(i), dtype=torch.float32)
        with torch.no_grad():
            img = render_splats(params, vm, K, f.width, f.height, backgrounds=bg)[0][0].clamp(0, 1)
        ps.append(float(psnr(img, gt)))
        ss.append(float(ssim(img[None], gt[None])[0]))
    return float(np.mean(ps)), float(np.mean(ss))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a trained run directory (e.g. from `splatlab demo`)")
    ap.add_argument("--sog-iterations", type=int, default=10)
    ap.add_argument("--no-splat-transform", action="store_true")
    ap.add_argument("--qualities", default="1,2,3,4,5")
    ap.add_argument("--codec-only", action="store_true", help="only the PLY and .slsc rows")
    ap.add_argument("--finetune", default="",
                    help="extra .slsc rows with LightGaussian's prune + fine-tune: 'PRUNE:QUALITY:STEPS,...'")
    args = ap.parse_args()

    inputs = PluginInputs.from_path(args.run)
    params = {k: v.detach().cpu() for k, v in inputs.params.items()}
    dataset = inputs.dataset
    if dataset is None or not dataset.test_ids:
        sys.exit(f"{args.run} has no dataset with test views")
    n = params["means"].shape[0]
    tmp = Path(tempfile.mkdtemp(prefix="scene_formats_"))
    rows = []

    def row(fmt, writer, path_or_bytes, t_enc, decode):
        size = (
            len(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes.stat().st_size
        )
        t0 = time.perf_counter()
        dec = decode()
        t_dec = time.perf_counter() - t0
        p, s = evaluate({k: v.detach() for k, v in dec.items()}, dataset)
        rows.append((fmt, writer, size, t_enc, t_dec, p, s, int(dec["means"].shape[0])))
        print(f"  {fmt} / {writer}: {size / 1e3:.1f} kB, {p:.2f} dB", file=sys.stderr)

    t0 = time.perf_counter()
    ply = save_ply(tmp / "scene.ply", params)
    row("PLY (INRIA)", "splatlab", ply, time.perf_counter() - t0, lambda: load_scene_file(ply))
    ply_size = ply.stat().st_size

    ours = [
        ("SPZ v4", "scene.spz", {"version": 4}),
        ("SPZ v3", "scene_v3.spz", {"version": 3}),
        ("compressed PLY", "scene.compressed.ply", {}),
        ("SOG", "scene.sog", {"iterations": args.sog_iterations}),
    ]
    for fmt, name, opts in [] if args.codec_only else ours:
        t0 = time.perf_counter()
        path = save_scene_file(tmp / name, params, **opts)
        row(
            fmt, "splatlab", path, time.perf_counter() - t0, lambda path=path: load_scene_file(path)
        )

    tool = None if args.no_splat_transform or args.codec_only else splat_transform()
    if tool is not None:
        theirs = [
            ("SPZ v4", "st.spz", []),
            ("compressed PLY", "st.compressed.ply", []),
            ("SOG", "st.sog", ["-i", str(args.sog_iterations)]),
        ]
        for fmt, name, extra in theirs:
            cmd = [tool[0], tool[1], "-w", "-q", "-g", "cpu", *extra, str(ply), str(tmp / name)]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, timeout=1800)
            row(fmt, "splat-transform", tmp / name, time.perf_counter() - t0,
                lambda name=name: load_scene_file(tmp / name))  # fmt: skip

    cameras = [
        (f.viewmat, f.K, f.width, f.height)
        for f in (
            dataset.frames[i]
            for i in dataset.train_ids[:: max(1, len(dataset.train_ids) // 16)][:16]
        )
    ]
    for q in [int(x) for x in args.qualities.split(",")]:
        t0 = time.perf_counter()
        data = encode_scene(params, q, cameras=cameras)
        row(f"slsc q{q} (prune {QUALITY_PRESETS[q].prune:.0%})", "splatlab", data,
            time.perf_counter() - t0, lambda data=data: decode_scene(data))  # fmt: skip

    from splatlab.plugins.compress.scene_codec import prune_and_finetune

    for spec in [x for x in args.finetune.split(",") if x]:
        pr, q, steps = float(spec.split(":")[0]), int(spec.split(":")[1]), int(spec.split(":")[2])
        t0 = time.perf_counter()
        tuned = prune_and_finetune(params, dataset, pr, steps, cameras)
        t_ft = time.perf_counter() - t0
        data = encode_scene(tuned, q, prune=0.0)
        row(f"slsc q{q} bits, prune {pr:.0%}, fine-tune {steps} steps ({t_ft:.0f} s)", "splatlab", data,
            time.perf_counter() - t0, lambda data=data: decode_scene(data))  # fmt: skip

    import platform

    print(f"\nScene: {args.run} ({n} Gaussians, SH degree {int(np.sqrt(params['shN'].shape[1] + 1)) - 1}), "
          f"{len(dataset.test_ids)} test views; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}\n")  # fmt: skip
    print(
        "| format | writer | size (kB) | ratio vs PLY | Gaussians | test PSNR (dB) | SSIM | encode (s) | decode (s) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for fmt, writer, size, te, td, p, s, kept in rows:
        print(
            f"| {fmt} | {writer} | {size / 1e3:.1f} | {ply_size / size:.1f}x | {kept} | {p:.2f} | {s:.4f} | {te:.2f} | {td:.2f} |"
        )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
