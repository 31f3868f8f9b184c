"""Feature 3DGS on the demo scene: training time / memory vs feature width d, feature fidelity,
label mIoU, text -> 3D selection precision/recall, and query latency. Prints one row per d.

The teacher is the SYNTHETIC text-aligned label teacher (splatlab.models.label_teacher: fixed
random 512-D label embeddings plus a projection of the pixel colour), because no pretrained LSeg /
CLIP / SAM weights exist on this machine. Usage:

    python benchmarks/features.py [--dims 8 32 128] [--steps 600] [--size 80x60] [--device cpu]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from splatlab.methods.feature3dgs.distill import FeatureConfig, features_of, make_feature_trainer
from splatlab.methods.feature3dgs.field import relevance_from_rendered
from splatlab.scene.query import gaussian_relevance, relevance_maps, select_by_text
from splatlab.scene.synthetic import DemoConfig, make_demo_scene, object_label_at
from splatlab.training.trainer import TrainConfig


def selection_pr(
    trainer, names: list[str], threshold: float
) -> dict[str, tuple[float, float, int]]:
    """Per object label: (precision, recall, n_selected) of text -> Gaussians against
    object_label_at(means) (Gaussians with opacity >= 0.1 only)."""
    p = trainer.params
    gt = object_label_at(p["means"].detach().cpu().numpy())
    vis = torch.sigmoid(p["opacities"].detach()).cpu().numpy() >= 0.1
    text = features_of(trainer).teacher.encode_text(names).to(trainer.device)
    out = {}
    for lab in range(1, len(names)):
        others = torch.cat([text[:lab], text[lab + 1 :]])
        sel = (
            select_by_text(p, features_of(trainer).decoder, text[lab], threshold, others, min_opacity=0.1)
            .cpu()
            .numpy()
        )
        tp = int((sel & (gt == lab) & vis).sum())
        prec = tp / max(int(sel.sum()), 1)
        rec = tp / max(int(((gt == lab) & vis).sum()), 1)
        out[names[lab]] = (prec, rec, int(sel.sum()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", type=int, nargs="+", default=[8, 32, 128])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--size", default="80x60")
    ap.add_argument("--views", type=int, default=24)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threshold", type=float, default=0.3)
    args = ap.parse_args()
    w, h = (int(s) for s in args.size.split("x"))
    ds = make_demo_scene(
        DemoConfig(n_views=args.views, width=w, height=h, n_points=1500, supersample=1)
    )
    names = ds.meta["label_names"]
    print(
        f"demo {w}x{h}, {len(ds.train_ids)} train / {len(ds.test_ids)} test views, {args.steps} steps, "
        f"device {args.device}, torch threads {torch.get_num_threads()}"
    )
    print(
        "d | train s | s/step | teacher-cache s | peak RSS MB | cuda peak MB | N | test cos | mIoU (teacher) "
        "| acc | render ms | query ms/view | query ms/Gaussians | mean P / R (3D) "
        "| heatmap 640x480 ms (d-space) | heatmap 640x480 ms (decoded)"
    )
    for d in args.dims:
        out = Path(tempfile.mkdtemp(prefix=f"feat{d}_"))
        cfg = TrainConfig(
            out=out,
            steps=args.steps,
            refine_start_iter=60,
            refine_stop_iter=int(args.steps * 0.7),
            refine_every=60,
            reset_every=10**9,
            sh_degree=1,
            sh_degree_interval=100,
            checkpoint_every=0,
            device=args.device,
        )
        fc = FeatureConfig(
            teacher="labels", dim=d, loss="cosine", lr_features=1e-2, lr_decoder=1e-3
        )
        tr = make_feature_trainer(ds, cfg, fc)
        features_of(tr).cache.precompute(range(len(ds.frames)))
        tr.teacher_seconds = 0.0
        if torch.cuda.is_available() and args.device != "cpu":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        tr.train()
        wall = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        cuda_mb = (
            torch.cuda.max_memory_allocated() / 2**20
            if torch.cuda.is_available() and args.device != "cpu"
            else 0
        )
        m = features_of(tr).evaluate_features(tr, write=False)
        # query latency: text -> relevance on one rendered view; text -> per-Gaussian relevance
        text = features_of(tr).teacher.encode_text(names).to(tr.device)
        vm, K, ww, hh = tr.camera(ds.test_ids[0])
        t1 = time.perf_counter()
        _, dec, _ = features_of(tr).render_features(tr, vm, K, ww, hh)
        relevance_maps(dec, text)
        q_view = (time.perf_counter() - t1) * 1e3
        t2 = time.perf_counter()
        gaussian_relevance(tr.params, features_of(tr).decoder, text)
        q_gauss = (time.perf_counter() - t2) * 1e3
        # the viewer's heatmap at 640x480: relevance in the rendered d-space vs decoding to D first
        K640 = K.clone()
        K640[0] *= 640 / ww
        K640[1] *= 480 / hh
        t3 = time.perf_counter()
        _, f640, _ = features_of(tr).render_features(tr, vm, K640, 640, 480, decode=False)
        relevance_from_rendered(f640.permute(1, 2, 0), features_of(tr).decoder, text)
        q_640 = (time.perf_counter() - t3) * 1e3
        t4 = time.perf_counter()
        _, d640, _ = features_of(tr).render_features(tr, vm, K640, 640, 480, decode=True)
        relevance_maps(d640, text)
        q_640_dec = (time.perf_counter() - t4) * 1e3
        del d640
        pr = selection_pr(tr, names, args.threshold)
        mp = np.mean([v[0] for v in pr.values()])
        mr = np.mean([v[1] for v in pr.values()])
        print(
            f"{d} | {wall:.1f} | {wall / args.steps:.3f} | {tr.teacher_seconds:.1f} | {rss:.0f} | {cuda_mb:.0f} | "
            f"{len(tr.params['means'])} | {m['cosine']:.3f} | {m['miou']:.3f} ({m['teacher_miou']:.3f}) | "
            f"{m['accuracy']:.3f} | {m['seconds_per_feature_render'] * 1e3:.1f} | {q_view:.1f} | {q_gauss:.2f} | "
            f"{mp:.2f} / {mr:.2f} | {q_640:.0f} | {q_640_dec:.0f}"
        )
        for name, (p_, r_, n_) in pr.items():
            print(f"    {name}: precision {p_:.2f} recall {r_:.2f} selected {n_}")
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
