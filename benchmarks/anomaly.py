"""Anomaly benchmark (a): RD4AD on scikit-image textures with synthetic defects.

    # 1. a small teacher (no ImageNet weights here), then RD4AD per texture, metrics per defect type
    python benchmarks/anomaly.py --train-teacher /tmp/rd4ad_teacher.pt
    python benchmarks/anomaly.py --teacher /tmp/rd4ad_teacher.pt --epochs 30
    # 2. a checkpoint for the "anomaly map (RD4AD)" plugin, trained on one texture
    python benchmarks/anomaly.py --teacher /tmp/rd4ad_teacher.pt --train /tmp/rd4ad_brick.pt --categories brick
    # with torchvision's wide_resnet50_2-95faca4d.pth in torch hub's checkpoints folder:
    python benchmarks/anomaly.py --arch wide_resnet50_2 --base 64 --teacher imagenet --size 256

Prints Markdown rows for BENCHMARKS.md: image / pixel AUROC, AUPRO@0.3 and the official RD4AD PRO
per texture and defect type ('perlin' is held out: no setting was chosen by looking at it), with
the training time and the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train-teacher", default="", help="train a small teacher, save it here")
    ap.add_argument(
        "--teacher", default="", help="'imagenet', a teacher checkpoint, or 'random-test-only'"
    )
    ap.add_argument("--teacher-steps", type=int, default=300)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--base", type=int, default=16, help="base_channels (64 = torchvision widths)")
    ap.add_argument("--size", type=int, default=128, help="network input side")
    ap.add_argument("--crop", type=int, default=128, help="texture crop side")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--n-train", type=int, default=64)
    ap.add_argument("--n-test", type=int, default=16, help="normal test crops and crops per defect")
    ap.add_argument("--categories", default="brick,grass,gravel")
    ap.add_argument("--train", default="", help="save the (last) trained RD4AD checkpoint here")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from splatlab.models.rd4ad import RD4ADConfig
    from splatlab.plugins.inspect.anomaly.data import make_texture_set
    from splatlab.plugins.inspect.anomaly.rd4ad import TrainConfig, evaluate, fit_and_save
    from splatlab.plugins.inspect.anomaly.teacher import TeacherConfig, train_texture_teacher

    machine = f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    if args.train_teacher:
        cfg = RD4ADConfig(args.arch, args.base, "random-test-only", args.size)
        t0 = time.perf_counter()
        st = train_texture_teacher(cfg, args.train_teacher, TeacherConfig(steps=args.teacher_steps))
        print(
            f"| teacher {args.arch} base {args.base} | {args.teacher_steps} steps | "
            f"acc {st['accuracy']:.3f} | {time.perf_counter() - t0:.0f} s | {machine} |"
        )
        if not args.teacher:
            return
    teacher = args.teacher or "imagenet"
    config = RD4ADConfig(args.arch, args.base, teacher, args.size)
    print(
        "| model | texture | defect | image AUROC | pixel AUROC | AUPRO@0.3 | RD4AD PRO | "
        "train s | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    name = f"RD4AD {args.arch}/{args.base} @{args.size} ({'own teacher' if teacher not in ('imagenet',) else 'ImageNet'})"
    for cat in args.categories.split(","):
        data = make_texture_set(cat, args.n_train, args.n_test, args.n_test, size=args.crop)
        t0 = time.perf_counter()
        out = args.train or f"/tmp/rd4ad_{cat}.pt"
        model, _ = fit_and_save(data, out, config, TrainConfig(epochs=args.epochs))
        dt = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        for kind, m in evaluate(model, data).items():
            print(
                f"| {name} | {cat} | {kind} | {m['image_auroc']:.3f} | {m['pixel_auroc']:.3f} | "
                f"{m['aupro']:.3f} | {m['rd4ad_pro']:.3f} | {dt:.0f} | {rss:.0f} |",
                flush=True,
            )
    print(
        f"\n{args.epochs} epochs, {args.n_train} normal crops of {args.crop} px per texture; {machine}"
    )


if __name__ == "__main__":
    main()
