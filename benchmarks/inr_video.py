"""NVRC-style INR video codec (issue 12, item 2) on a camera-path video rendered from a trained
scene, against x264 and x265 (ffmpeg, YUV 4:4:4, preset medium, SEI removed): RD points, BD-rate
and BD-PSNR (PCHIP over log10 bpp vs PSNR on the overlap), encode and decode times. Rates are the
bytes of each file; PSNR is over the whole sequence. Prints markdown rows; ``--json`` keeps every
point. Usage:

    python benchmarks/inr_video.py RUN_DIR [--frames 32] [--degrees 20] [--max-side 128]
        [--steps 1200] [--lmbdas 1.6e-2 4e-3 1e-3] [--t-log2 3] [--crfs 20 26 32 38 44]
        [--save-frames frames.npy] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from splatlab.plugins.base import PluginInputs
from splatlab.plugins.compress import rd
from splatlab.plugins.compress.inr.video import (
    VideoOptions,
    decode_video,
    encode_video,
    sequence_psnr,
)
from splatlab.plugins.compress.inr.video_plugin import _pivot_depth, orbit_cameras


def render_orbit(run: Path, frames: int, degrees: float, max_side: int) -> np.ndarray:
    inputs = PluginInputs.from_path(run)
    cams = orbit_cameras(inputs.camera, frames, degrees,
                         _pivot_depth(inputs.params, inputs.camera.viewmat), max_side)
    return np.stack([np.asarray(inputs.render(c, "RGB"), np.uint8) for c in cams])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="trained run directory (or scene file)")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--degrees", type=float, default=20.0)
    ap.add_argument("--max-side", type=int, default=128)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--lmbdas", type=float, nargs="+", default=[1.6e-2, 4e-3, 1e-3])
    ap.add_argument("--t-log2", type=int, default=3)
    ap.add_argument("--frames-per-step", type=int, default=4)
    ap.add_argument("--crfs", type=float, nargs="+", default=list(rd.DEFAULT_CRFS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save-frames", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    video = render_orbit(args.run, args.frames, args.degrees, args.max_side)
    if args.save_frames:
        np.save(args.save_frames, video)
    T, H, W = video.shape[:3]
    print(f"{T} frames of {W}x{H} rendered from {args.run} ({args.degrees:g} deg orbit)")
    curves: dict[str, list[rd.RDPoint]] = {}
    for codec in rd.VIDEO_ANCHORS:
        curves[codec] = [rd.video_anchor_point(codec, video, c)[0] for c in args.crfs]
    name = f"INR video (t_log2 {args.t_log2}, {args.steps} steps)"
    ours: list[rd.RDPoint] = []
    extra = []
    for lm in args.lmbdas:
        opt = VideoOptions(lmbda=lm, steps=args.steps, t_log2=args.t_log2,
                           frames_per_step=args.frames_per_step, threads=args.threads)
        res = encode_video(video, opt)
        t0 = time.perf_counter()
        out = decode_video(res.data)
        dec_s = time.perf_counter() - t0
        assert np.array_equal(out, res.decoded)
        n = len(res.data)
        ms = float(np.mean([rd.ms_ssim(a, b) for a, b in zip(out, video)]))
        ours.append(rd.RDPoint(name, lm, n, 8 * n / (T * H * W), sequence_psnr(out, video), ms,
                               res.encode_seconds, dec_s))
        extra.append({"lmbda": lm, "estimate_over_file": res.estimated_bits["total"] / (8 * n),
                      "weights_bits": res.estimated_bits["weights"],
                      "latent_bits": res.estimated_bits["latents"],
                      "mac_per_pixel": res.mac_per_pixel(T)})
        print(f"  lambda {lm:g}: {n} bytes, {ours[-1].psnr:.2f} dB, encode {res.encode_seconds:.0f} s,"
              f" estimate/file {extra[-1]['estimate_over_file']:.4f}", flush=True)
    curves[name] = ours

    print(f"\nmachine: {platform.processor() or platform.machine()}, threads {args.threads}")
    print("\n| codec | setting | bytes | bpp | PSNR dB | MS-SSIM | encode s | decode s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for pts in curves.values():
        for p in pts:
            print(f"| {p.codec} | {p.quality:g} | {p.num_bytes} | {p.bpp:.4f} | {p.psnr:.2f} | "
                  f"{p.ms_ssim:.4f} | {p.encode_s:.2f} | {p.decode_s:.2f} |")
    print("\n| ours vs | BD-rate % | BD-PSNR dB |")
    print("|---|---:|---:|")
    r_t, p_t = [p.bpp for p in ours], [p.psnr for p in ours]
    for codec in rd.VIDEO_ANCHORS:
        r_a, p_a = [p.bpp for p in curves[codec]], [p.psnr for p in curves[codec]]
        try:
            br = rd.bd_rate(r_a, p_a, r_t, p_t)
            bp = rd.bd_psnr(r_a, p_a, r_t, p_t)
            print(f"| {codec} | {br:+.1f} | {bp:+.2f} |")
        except ValueError as e:
            print(f"| {codec} | n/a ({e}) | |")
    if args.json:
        args.json.write_text(json.dumps({"frames": [T, H, W], "curves": {
            k: [p.as_dict() for p in v] for k, v in curves.items()}, "ours_extra": extra}, indent=1))


if __name__ == "__main__":
    main()
