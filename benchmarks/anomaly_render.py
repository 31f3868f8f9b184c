"""Anomaly benchmark (b): where are novel-view renders of a trained 3DGS scene wrong?

    # the small teacher of benchmarks/anomaly.py (no ImageNet weights here), then per run dir:
    python benchmarks/anomaly.py --train-teacher /tmp/rd4ad_teacher.pt
    python benchmarks/anomaly_render.py --teacher /tmp/rd4ad_teacher.pt \
        --run /tmp/demo_run --run /tmp/foxb/triangulate \
        --extra-ckpt /tmp/demo_run/ckpts/step_000500.pt

For each run: RD4AD (the teacher's arch / width) is trained on random crops (flips, +-10 %
brightness) of the run's TRAINING photos only, at their own scale, and saved beside the results
(``--save-dir``; the "anomaly map (RD4AD)" plugin and its "anomaly (RD4AD)" render mode load it).
Then every TEST view is rendered from the trained scene and scored at the photos' scale (fully
convolutional, ``render_mode.rd4ad_map``); its error mask is mean_RGB |render - GT| > t for each
``--thresholds`` t. Reported: pixel AUROC and AUPRO@0.3 of the maps against the masks, and the
image AUROC of "render vs the GT photo of the same view". Detector-free baselines on the same
masks: the render's blurred gradient magnitude and its transparency 1 - alpha; and, as a
diagnostic that is NOT available at inference, RD4AD's map of the GT photo (does the detector find
errors, or only content that is hard to render?). ``--extra-ckpt`` adds an earlier checkpoint of a
run (worse renders, on purpose), scored by the same detector.

Writes benchmarks/results/anomaly_render.md (and prints it), with training time, scoring time
and the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent


def _auto_size(photos: list[np.ndarray]) -> int:
    """The largest of 64 / 96 / 128 px that fits in 80 % of the photos' short side."""
    short = min(min(p.shape[:2]) for p in photos)
    fits = [s for s in (64, 96, 128) if s <= 0.8 * short]
    return fits[-1] if fits else 64


def _views(trainer, ids):
    """(renders float [V, H, W, 3], alphas [V, H, W], photos [V, H, W, 3]) of views ``ids``."""
    rs, als, gts = [], [], []
    for i in ids:
        vm, K, w, h = trainer.camera(i)
        with torch.no_grad():
            img, alpha, _ = trainer.render(vm, K, w, h)
        rs.append(img.clamp(0, 1).cpu().numpy())
        als.append(alpha[..., 0].cpu().numpy())
        gts.append(trainer.image(i).cpu().numpy())
    return np.stack(rs), np.stack(als), np.stack(gts)


def _fmt(m: dict[str, float], key: str) -> str:
    return f"{m[key]:.3f}" if key in m else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--run", action="append", required=True, help="a run directory (repeatable)")
    ap.add_argument(
        "--extra-ckpt",
        action="append",
        default=[],
        help="an earlier checkpoint RUN/ckpts/step_N.pt, scored with RUN's detector (repeatable)",
    )
    ap.add_argument("--teacher", default="/tmp/rd4ad_teacher.pt", help="teacher checkpoint")
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--base", type=int, default=16, help="base_channels of the teacher")
    ap.add_argument("--size", type=int, default=0, help="crop / input side (0: from the photos)")
    ap.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="train on the photos resized by this factor and score views at that scale (finer maps)",
    )
    ap.add_argument("--n-crops", type=int, default=256, help="training crops per run")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--thresholds", default="0.1,0.05", help="error-mask thresholds (first = main)")
    ap.add_argument("--save-dir", default="/tmp", help="where the detectors are saved")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "results" / "anomaly_render.md"), help="'' = print")
    ap.add_argument(
        "--fyd",
        action="store_true",
        help="also FYD: trained on the whole training photos resized to --fyd-size squares",
    )
    ap.add_argument("--fyd-size", type=int, default=128)
    ap.add_argument("--fyd-epochs", type=int, default=10)
    ap.add_argument(
        "--reuse-detector",
        action="store_true",
        help="load the RD4AD detector an earlier run saved in --save-dir (same settings)",
    )
    ap.add_argument("--append", action="store_true", help="append to --out instead of replacing")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from splatlab.models.rd4ad import RD4ADConfig, load_rd4ad, save_rd4ad
    from splatlab.plugins.inspect.anomaly.rd4ad import TrainConfig
    from splatlab.plugins.inspect.anomaly.render_mode import (
        error_mask,
        fit_render_rd4ad,
        gradient_map,
        rd4ad_map,
        render_error_metrics,
        scorer_for,
    )
    from splatlab.scene import checkpoint as ckpt
    from splatlab.training.trainer import load_trainer

    started = dt.datetime.now(dt.timezone.utc)
    t_start = time.perf_counter()
    thresholds = [float(t) for t in args.thresholds.split(",")]
    rows: list[str] = []
    per_view: list[str] = []
    times: list[str] = []
    for run in args.run:
        run_dir = Path(run)
        t0 = time.perf_counter()
        trainer = load_trainer(run_dir)
        ds = trainer.dataset
        load_s = time.perf_counter() - t0
        photos = [trainer.image(i).cpu().numpy() for i in ds.train_ids]
        if args.scale != 1.0:
            import cv2

            photos = [
                np.clip(cv2.resize(p, None, fx=args.scale, fy=args.scale,
                                   interpolation=cv2.INTER_CUBIC), 0, 1)
                for p in photos
            ]
        size = args.size or _auto_size(photos)
        config = RD4ADConfig(args.arch, args.base, args.teacher, size)
        name = run_dir.name if run_dir.name not in ("", ".") else str(run_dir)
        tag = f"_x{args.scale:g}" if args.scale != 1.0 else ""
        det_path = Path(args.save_dir) / f"rd4ad_render_{run_dir.parent.name}_{name}{tag}.pt"
        train_cfg = TrainConfig(epochs=args.epochs, seed=args.seed)
        training = vars(train_cfg) | {"n_crops": args.n_crops}
        model, fit_note = None, ""
        if args.reuse_detector and det_path.is_file():  # a detector saved by an earlier run
            raw = torch.load(det_path, map_location="cpu", weights_only=False)
            model = load_rd4ad(det_path)
            stats, fit_note = dict(raw["normal_scores"]), " (loaded; fit in an earlier run)"
            if model.config != config or raw.get("training") != training:
                print(f"{det_path}: other settings; training a new one", file=sys.stderr)
                model, fit_note = None, ""
        t0 = time.perf_counter()
        if model is None:
            model, stats = fit_render_rd4ad(photos, config, args.n_crops, train_cfg)
            extra = {"normal_scores": stats, "category": f"photos of {run_dir}", "training": training}
            save_rd4ad(model, det_path, extra)
        fit_s = time.perf_counter() - t0
        side = int(stats["side"])
        fyd, fyd_s = None, 0.0
        if args.fyd:
            from splatlab.plugins.inspect.anomaly.fyd import (
                FYDConfig,
                FYDTrainConfig,
                build_fyd,
                fit_gaussians,
                train_fyd,
            )

            t0 = time.perf_counter()
            torch.manual_seed(args.seed)
            fyd = build_fyd(FYDConfig(args.arch, args.base, args.teacher, args.fyd_size))
            stack = np.stack(photos)
            train_fyd(fyd, stack, FYDTrainConfig(epochs=args.fyd_epochs, seed=args.seed))
            fit_gaussians(fyd, stack)
            fyd_s = time.perf_counter() - t0
            fyd_scorer = scorer_for(fyd)

        scenes = [(f"{name}, step {trainer.step} (final)", trainer.params)]
        for extra in args.extra_ckpt:
            p = Path(extra)
            if p.resolve().parent.parent == run_dir.resolve():
                step = int(ckpt.load_checkpoint(p).get("step", -1))
                scenes.append((f"{name}, step {step} (earlier, worse on purpose)", p))
        for label, what in scenes:
            if isinstance(what, Path):
                trainer.params = ckpt.restore_params(ckpt.load_checkpoint(what), False)
            renders, alphas, gts = _views(trainer, ds.test_ids)
            psnr = float(np.mean([-10 * np.log10(np.mean((r - g) ** 2)) for r, g in zip(renders, gts)]))
            t0 = time.perf_counter()
            maps = [rd4ad_map(model, r, side) for r in renders]
            score_s = (time.perf_counter() - t0) / len(renders)
            photo_maps = [rd4ad_map(model, g, side) for g in gts]
            fyd_maps = [fyd_scorer(r) for r in renders] if fyd is not None else None
            fyd_photo = [fyd_scorer(g) for g in gts] if fyd is not None else None
            grads = [gradient_map(r) for r in renders]
            transp = [1.0 - a for a in alphas]
            for t in thresholds:
                masks = [error_mask(r, g, t) for r, g in zip(renders, gts)]
                if not any(m.any() for m in masks):
                    rows.append(f"| {label} | {t:g} | no pixel above the threshold | | | | |")
                    continue
                methods = [("RD4AD (render)", maps, photo_maps)]
                if fyd_maps is not None:
                    methods.append(("FYD (render, whole view as a square)", fyd_maps, fyd_photo))
                for method, mm, pm in (
                    *methods,
                    ("baseline: gradient magnitude of the render", grads, None),
                    ("baseline: 1 - alpha of the render", transp, None),
                    ("diagnostic: RD4AD of the GT photo", photo_maps, None),
                ):
                    m = render_error_metrics(mm, masks, pm)
                    rows.append(
                        f"| {label} | {t:g} | {method} | {_fmt(m, 'pixel_auroc')} | "
                        f"{_fmt(m, 'aupro')} | {_fmt(m, 'image_auroc')} | "
                        f"{100 * m['error_fraction']:.2f} % |"
                    )
                if t == thresholds[0]:
                    cells = []
                    for i, (mp, k) in enumerate(zip(maps, masks)):
                        if k.any() and not k.all():
                            v = render_error_metrics([mp], [k])
                            cells.append(f"{ds.frames[ds.test_ids[i]].name.split('/')[-1]} "
                                         f"{v['pixel_auroc']:.2f}")
                    per_view.append(f"| {label} | {psnr:.2f} | " + ", ".join(cells) + " |")
            print("\n".join(rows[-5 * len(thresholds):]), flush=True)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        h, w = gts.shape[1:3]
        times.append(
            f"| {name} | {len(ds.train_ids)} x {w}x{h} | {len(ds.test_ids)} | {size} | "
            f"{args.n_crops} x {args.epochs} | {fit_s:.0f}{fit_note} | {score_s:.2f} | "
            f"{f'{fyd_s:.0f}' if fyd is not None else '-'} | {load_s:.0f} | "
            f"{rss:.0f} | `{det_path}` |"
        )
        print(times[-1], flush=True)
    wall = time.perf_counter() - t_start
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    cmd = "python benchmarks/anomaly_render.py " + " ".join(sys.argv[1:])
    md = [
        "## Anomaly maps of novel-view renders against their error masks (issue 14, item 4(b))",
        "",
        f"Command: `{cmd.strip()}`. Machine: 2-core x86 CPU shared with other jobs "
        f"({platform.machine()}, `torch.set_num_threads({args.threads})`, load average at the end "
        f"{load}). Date: {started:%Y-%m-%d %H:%M} UTC, {wall:.0f} s wall in total.",
        "",
        f"Detector: RD4AD {args.arch} width {args.base}, teacher `{args.teacher}` (trained here on "
        "scikit-image crops; no ImageNet weights on this machine), student trained on "
        f"{args.n_crops} random crops (horizontal flips, +-10 % brightness) of each run's "
        f"training photos at {args.scale:g} x their own scale, {args.epochs} epochs, official "
        "optimiser. A test view is rendered from the trained scene and scored whole, fully "
        "convolutionally, at that scale (map resized back to the view). Error mask: mean over R, G, B of |render - GT| > t (images in "
        "[0, 1]). Pixel AUROC and AUPRO@0.3 (anomalib's definitions, `metrics.py`) pool all "
        "test views of a row. Image AUROC: each render (label 1) against the GT photo of the "
        "same view (label 0), image score = map max. The diagnostic row scores the GT photo "
        "against the render's mask: it needs the photo, so no viewer can use it."
        + (
            f" FYD (with --fyd): the same teacher, trained {args.fyd_epochs} epochs on the whole "
            f"training photos resized to {args.fyd_size} px squares (FYD's per-position "
            "Gaussians need aligned inputs), each view resized to that square and the map back."
            if args.fyd
            else ""
        ),
        "",
        "| scene | t | map | pixel AUROC | AUPRO@0.3 | image AUROC (render vs photo) | "
        "wrong pixels |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Per-view pixel AUROC of RD4AD at t = {thresholds[0]:g} (test PSNR of the renders in dB):",
        "",
        "| scene | PSNR | view: pixel AUROC |",
        "|---|---|---|",
        *per_view,
        "",
        "| run | training photos | test views | crop px | crops x epochs | RD4AD fit s | "
        "RD4AD score s / view | FYD fit s | scene load s | peak RSS MB | RD4AD detector |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *times,
        "",
    ]
    text = "\n".join(md)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        out = Path(args.out)
        if args.append and out.is_file():
            text = out.read_text() + "\n" + text
        out.write_text(text)


if __name__ == "__main__":
    main()
