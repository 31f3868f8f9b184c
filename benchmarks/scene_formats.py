"""Scene file formats and our scene codec on a trained run: size, ratio to the INRIA PLY, test
PSNR / SSIM of the decoded scene, encode and decode seconds. Prints markdown rows.

    python benchmarks/scene_formats.py /tmp/demo_run [--sog-iterations 10] [--no-splat-transform]
        [--codec-only] [--qualities 1,2,3,4,5] [--finetune 0.3:2:200,0.3:1:100:2:0]
        [--bd-rate] [--threads 1]

Rows: PLY (save_ply), SPZ v4 / v3, compressed PLY and SOG written by splatlab and by PlayCanvas
splat-transform (found as in the interop tests: SPLAT_TRANSFORM_DIR or .tools/), and the .slsc
codec at each quality. Every file is decoded by splatlab's readers (which agree with
splat-transform's own decode to float rounding, see tests/scene/formats). splat-transform times
include node's start-up (~0.5 s).

``--bd-rate`` adds SPZ v4 rows of the scene with its SH truncated to degree 3, 2, 1 and 0 before
writing, and prints the Bjontegaard delta rate and PSNR of our .slsc curve (the ``--qualities``
rows; and, when there are >= 2, the ``--finetune`` rows) against that SPZ curve, with
``splatlab.plugins.compress.rd.bd_rate`` / ``bd_psnr``: PCHIP interpolation of log10(bytes) as a
function of test PSNR (BD-PSNR: PSNR of log10(bytes)), averaged over the overlap of the two
curves. Encode times are wall seconds; the CPU seconds of this process are printed beside them
(on a loaded machine the wall time is mostly waiting for a core).
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
                    help="extra .slsc rows with LightGaussian's prune + fine-tune: "
                    "'PRUNE:QUALITY:STEPS[:LR_SCALE[:SSIM_WEIGHT]],...'")
    ap.add_argument("--bd-rate", action="store_true",
                    help="SPZ at SH degree 3..0 and the BD-rate of our curve against it")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:  # the CPU rasterizer's compositing kernels are numba-parallel
        import numba

        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass

    inputs = PluginInputs.from_path(args.run)
    params = {k: v.detach().cpu() for k, v in inputs.params.items()}
    dataset = inputs.dataset
    if dataset is None or not dataset.test_ids:
        sys.exit(f"{args.run} has no dataset with test views")
    n = params["means"].shape[0]
    tmp = Path(tempfile.mkdtemp(prefix="scene_formats_"))
    rows = []

    def row(fmt, writer, path_or_bytes, t_enc, decode, cpu_enc=float("nan"), group=""):
        size = (
            len(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes.stat().st_size
        )
        t0 = time.perf_counter()
        dec = decode()
        t_dec = time.perf_counter() - t0
        p, s = evaluate({k: v.detach() for k, v in dec.items()}, dataset)
        rows.append((fmt, writer, size, t_enc, t_dec, p, s, int(dec["means"].shape[0]), cpu_enc, group))
        print(f"  {fmt} / {writer}: {size / 1e3:.1f} kB, {p:.2f} dB, encode {t_enc:.1f} s "
              f"(CPU {cpu_enc:.1f} s)", file=sys.stderr)  # fmt: skip

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
    if args.bd_rate:
        deg = int(np.sqrt(params["shN"].shape[1] + 1)) - 1
        for d in range(deg, -1, -1):
            cut = dict(params, shN=params["shN"][:, : (d + 1) ** 2 - 1])
            t0, c0 = time.perf_counter(), time.process_time()
            path = save_scene_file(tmp / f"scene_sh{d}.spz", cut, version=4)
            row(f"SPZ v4, SH degree {d}", "splatlab", path, time.perf_counter() - t0,
                lambda path=path: load_scene_file(path), time.process_time() - c0, "spz-sh")  # fmt: skip

    for q in [int(x) for x in args.qualities.split(",") if x]:
        t0, c0 = time.perf_counter(), time.process_time()
        data = encode_scene(params, q, cameras=cameras)
        row(f"slsc q{q} (prune {QUALITY_PRESETS[q].prune:.0%})", "splatlab", data,
            time.perf_counter() - t0, lambda data=data: decode_scene(data),
            time.process_time() - c0, "slsc")  # fmt: skip

    from splatlab.plugins.compress.scene_codec import prune_and_finetune

    for spec in [x for x in args.finetune.split(",") if x]:
        f = spec.split(":")
        pr, q, steps = float(f[0]), int(f[1]), int(f[2])
        lr = float(f[3]) if len(f) > 3 else 1.0
        sw = float(f[4]) if len(f) > 4 else 0.2
        t0, c0 = time.perf_counter(), time.process_time()
        tuned = prune_and_finetune(params, dataset, pr, steps, cameras, lr_scale=lr, ssim_weight=sw)
        t_ft = time.perf_counter() - t0
        data = encode_scene(tuned, q, prune=0.0)
        loss = "L1" if sw == 0 else f"L1+{sw:g} D-SSIM"
        row(f"slsc q{q} bits, prune {pr:.0%}, fine-tune {steps} steps, lr x{lr:g}, {loss} ({t_ft:.0f} s)",
            "splatlab", data, time.perf_counter() - t0, lambda data=data: decode_scene(data),
            time.process_time() - c0, "slsc-ft")  # fmt: skip

    import platform

    print(f"\nScene: {args.run} ({n} Gaussians, SH degree {int(np.sqrt(params['shN'].shape[1] + 1)) - 1}), "
          f"{len(dataset.test_ids)} test views; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, --threads {args.threads}\n")  # fmt: skip
    print(
        "| format | writer | size (kB) | ratio vs PLY | Gaussians | test PSNR (dB) | SSIM | encode (s) | encode CPU (s) | decode (s) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for fmt, writer, size, te, td, p, s, kept, ce, _ in rows:
        print(
            f"| {fmt} | {writer} | {size / 1e3:.1f} | {ply_size / size:.1f}x | {kept} | {p:.2f} | {s:.4f} | {te:.2f} | {ce:.2f} | {td:.2f} |"
        )
    if args.bd_rate:
        print_bd_rates(rows)
    shutil.rmtree(tmp, ignore_errors=True)


def print_bd_rates(rows: list) -> None:
    """BD-rate / BD-PSNR of each .slsc curve against the SPZ-with-SH-reduction curve."""
    from splatlab.errors import DataError
    from splatlab.plugins.compress.rd import bd_psnr, bd_rate

    def curve(group: str) -> tuple[list[float], list[float]]:
        pts = [(r[2], r[5]) for r in rows if r[9] == group]
        return [float(a) for a, _ in pts], [float(b) for _, b in pts]

    ref = curve("spz-sh")
    print("\n| ours vs SPZ v4 with SH degree 3..0 | points | BD-rate % | BD-PSNR dB |")
    print("|---|---:|---:|---:|")
    for group, label in (("slsc", ".slsc qualities (no fine-tune)"), ("slsc-ft", ".slsc + prune / fine-tune")):
        test = curve(group)
        if len(test[0]) < 2 or len(ref[0]) < 2:
            continue
        cells = []
        for fn, fmt in ((bd_rate, "{:+.1f}"), (bd_psnr, "{:+.2f}")):
            try:
                cells.append(fmt.format(fn(ref[0], ref[1], test[0], test[1])))
            except DataError as e:  # no overlap (BD-rate: of PSNRs, BD-PSNR: of rates), or
                cells.append(f"n/a: {e}")  # a degenerate curve (repeated points)
        print(f"| {label} | {len(test[0])} | {cells[0]} | {cells[1]} |")
    print("\nBD: PCHIP of log10(bytes) vs test PSNR (BD-PSNR: PSNR vs log10(bytes)), mean over "
          "the overlap of the two curves (splatlab.plugins.compress.rd).")


if __name__ == "__main__":
    main()
