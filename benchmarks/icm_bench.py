"""Benchmark of issue 13 (image coding for machines): rate vs task accuracy of the plain codec,
the task-trained codec and ARR (C = 2, 4, 8), BD-rate at equal mIoU, and the ICIP 2022 bridge
(PSNR / MS-SSIM / checkerboard / mIoU before and after, bitstreams compared byte for byte).

    python benchmarks/icm_bench.py --out benchmarks/results/icm_run.json [--quick]

Recipe (one CPU thread, everything trained here, seeds fixed):
- data: 96 rendered demo views (128 x 128) with labels for training, 24 views from another camera
  ring for testing; the base codec also sees 64 px crops of the fox / Sceaux castle photos;
- task net: SegNet (16 ch), TASK_STEPS Adam steps, batch 8 crops of 64 px, then frozen;
- base codec: mean-scale hyperprior N = M = 48, BASE_STEPS steps at lambda 0.01 (rate + lambda *
  255^2 MSE);
- plain codec: the base fine-tuned FT_STEPS steps with MSE at each lambda of PLAIN_LAMBDAS;
- task-trained codec: the base fine-tuned ICM_STEPS steps with rate + w * CE (frozen task net),
  w in TASK_WEIGHTS;
- ARR: the base + a new ARR (C levels, lr 3e-3) trained ICM_STEPS steps end to end, w in
  ARR_WEIGHTS; ``--arr-init palette`` (default) starts it as nearest-colour quantisation to the
  k-means palette of the training views (`ARR.init_palette`), ``random`` from random weights;
- bridge: on the task-trained codec at the middle w, BRIDGE_STEPS PatchGAN steps on the first two
  decoder stages (1e-3 255^2 MSE + 1e-3 LSGAN + ``--bridge-task-weight`` x CE of the frozen task
  net, lr 1e-4; the weight chosen on the validation ring by benchmarks/icm_bridge_task.py).
Rates are the bytes of each file (header included) over the 24 test views; mIoU pooled over them.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from splatlab.errors import DataError
from splatlab.plugins.compress import rd
from splatlab.plugins.compress.icm.arr import ARR
from splatlab.plugins.compress.icm.bridge import bridge_decoder
from splatlab.plugins.compress.icm.codec import CodecConfig, MeanScaleHyperprior
from splatlab.plugins.compress.icm.task import demo_views
from splatlab.plugins.compress.icm.train import (
    base_batches,
    crop_batches,
    evaluate,
    load_codec_state,
    task_miou,
    train_codec,
    train_task,
)

TASK_STEPS, BASE_STEPS, FT_STEPS, ICM_STEPS, BRIDGE_STEPS = 500, 800, 150, 200, 1000
PLAIN_LAMBDAS = (0.003, 0.01, 0.03)
TASK_WEIGHTS = (0.5, 2.0, 8.0)
ARR_WEIGHTS = (0.5, 2.0, 8.0)
LEVELS = (2, 4, 8)


def clone_codec(src: MeanScaleHyperprior) -> MeanScaleHyperprior:
    c = MeanScaleHyperprior(CodecConfig(**src.config.as_dict()))
    load_codec_state(c, copy.deepcopy(src.state_dict()))
    return c


def base_codec(train, data_root: Path) -> MeanScaleHyperprior:
    """The base codec of the recipe (BASE_STEPS at lambda 0.01; deterministic after the task net
    under torch.manual_seed(0))."""
    base = MeanScaleHyperprior(CodecConfig(48, 48))
    train_codec(base, base_batches(train, data_root, 64, 8, 0), BASE_STEPS, lmbda=0.01)
    return base


def bd(ref: list[dict], test: list[dict], key: str = "miou") -> float | None:
    """BD-rate (%) of test against ref at equal task score ``key`` (x100: mIoU, or accuracy),
    None where undefined."""
    try:
        return rd.bd_rate([p["bpp"] for p in ref], [100 * p[key] for p in ref],
                          [p["bpp"] for p in test], [100 * p[key] for p in test])
    except DataError as e:
        print("BD-rate undefined:", e)
        return None


def main() -> int:
    global TASK_STEPS, BASE_STEPS, FT_STEPS, ICM_STEPS, BRIDGE_STEPS
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/icm_run.json")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--cache", default=str(Path.home() / ".cache/splatlab/icm"))
    ap.add_argument("--quick", action="store_true", help="10x fewer steps (smoke run)")
    ap.add_argument("--save-checkpoint", default="",
                    help="also write the bridged task-trained codec's bundle here (plugin input)")
    ap.add_argument("--arr-init", choices=("palette", "random"), default="palette")
    ap.add_argument("--bridge-task-weight", type=float, default=3.0,
                    help="chosen on the validation ring by benchmarks/icm_bridge_task.py --steps 1000")
    a = ap.parse_args()
    if a.quick:
        TASK_STEPS, BASE_STEPS, FT_STEPS, ICM_STEPS, BRIDGE_STEPS = 80, 150, 25, 35, 40
    torch.set_num_threads(1)
    torch.manual_seed(0)
    T0 = time.perf_counter()
    res: dict = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
                 "command": " ".join([Path(sys.executable).name, *sys.argv]),
                 "machine": f"{platform.machine()} CPU, torch threads 1",
                 "recipe": {"task_steps": TASK_STEPS, "base_steps": BASE_STEPS, "ft_steps": FT_STEPS,
                            "icm_steps": ICM_STEPS, "bridge_steps": BRIDGE_STEPS,
                            "plain_lambdas": PLAIN_LAMBDAS, "task_weights": TASK_WEIGHTS,
                            "arr_weights": ARR_WEIGHTS, "arr_init": a.arr_init,
                            "bridge_task_weight": a.bridge_task_weight,
                            "levels": LEVELS, "N": 48, "M": 48, "crop": 64, "batch": 8},
                 "times_s": {}}
    train, test = demo_views("train", 128, a.cache), demo_views("test", 128, a.cache)

    t = time.perf_counter()
    task = train_task(train, TASK_STEPS)
    res["times_s"]["task"] = time.perf_counter() - t
    res["task_miou_clean"] = task_miou(task, test)
    print(f"task net {res['times_s']['task']:.0f} s, clean test mIoU {res['task_miou_clean']:.3f}")

    t = time.perf_counter()
    base = base_codec(train, Path(a.data))
    res["times_s"]["base_codec"] = time.perf_counter() - t
    print(f"base codec {res['times_s']['base_codec']:.0f} s")

    curves: dict[str, list[dict]] = {}
    models: dict[str, tuple] = {}

    def record(name: str, key: float, codec: MeanScaleHyperprior, arr: ARR | None, secs: float):
        ev = evaluate(codec, test, task, arr, with_ms_ssim=False)
        pt = {"param": key, **ev.as_dict(), "train_s": secs}
        curves.setdefault(name, []).append(pt)
        print(f"{name} @ {key}: bpp {pt['bpp']:.4f} mIoU {pt['miou']:.4f} PSNR {pt['psnr']:.2f} "
              f"({secs:.0f} s)", flush=True)
        return ev

    for lm in PLAIN_LAMBDAS:
        c = clone_codec(base)
        st = train_codec(c, base_batches(train, Path(a.data), 64, 8, 10), FT_STEPS, lmbda=lm,
                         lr=3e-4)
        record("plain codec (MSE)", lm, c, None, st["seconds"])

    for w in TASK_WEIGHTS:
        c = clone_codec(base)
        st = train_codec(c, crop_batches(train.images, train.labels, 64, 8, 20), ICM_STEPS,
                         mse_weight=0.0, task_net=task, task_weight=w, lr=3e-4)
        record("task-trained codec", w, c, None, st["seconds"])
        models[f"task{w}"] = (c, None)

    for lv in LEVELS:
        for w in ARR_WEIGHTS:
            torch.manual_seed(lv)
            c, arr = clone_codec(base), ARR(lv)
            if a.arr_init == "palette":
                arr.init_palette(train.images, seed=lv)
            st = train_codec(c, crop_batches(train.images, train.labels, 64, 8, 30), ICM_STEPS,
                             mse_weight=0.0, task_net=task, task_weight=w, arr=arr, lr=3e-4)
            ev = record(f"ARR C={lv}", w, c, arr, st["seconds"])
            models[f"arr{lv}_{w}"] = (c, arr)
            from splatlab.plugins.compress.icm.codec import image_to_tensor, tensor_to_image

            levels = len(np.unique(tensor_to_image(arr(image_to_tensor(test.images[0]))).reshape(
                -1, 3), axis=0))
            curves[f"ARR C={lv}"][-1]["levels_in_view0"] = levels
            del ev

    res["curves"] = curves
    tt = curves["task-trained codec"]
    res["bd_rate_pct"] = {"task-trained vs plain": bd(curves["plain codec (MSE)"], tt)}
    for lv in LEVELS:
        res["bd_rate_pct"][f"ARR C={lv} vs task-trained"] = bd(tt, curves[f"ARR C={lv}"])

    # ---- bridge on the middle task-trained codec
    w_mid = TASK_WEIGHTS[len(TASK_WEIGHTS) // 2]
    codec, _ = models[f"task{w_mid}"]
    before = evaluate(codec, test, task)
    torch.manual_seed(0)
    human, st = bridge_decoder(codec, crop_batches(train.images, train.labels, 64, 8, 40),
                               BRIDGE_STEPS, task_net=task, task_weight=a.bridge_task_weight)
    after = evaluate(codec, test, task, decoder=human)
    res["times_s"]["bridge"] = st["seconds"]
    res["bridge"] = {
        "codec": f"task-trained w={w_mid}", "task_weight": a.bridge_task_weight,
        "before": before.as_dict(),
        "after": after.as_dict(),
        "bitstreams_identical": before.bitstreams == after.bitstreams,
        "psnr_gain_db": after.psnr - before.psnr,
        "miou_drop_points": 100 * (before.miou - after.miou),
    }
    print("bridge", json.dumps(res["bridge"], indent=1))

    # ---- human-quality sanity check of the plain codec on Kodak (evaluation only)
    kodak = sorted((Path(a.data) / "kodak").glob("*.png"))[:4]
    if kodak:
        from splatlab.plugins.base import read_image_rgb8

        imgs = [read_image_rgb8(p) for p in kodak]
        ours = []
        c = clone_codec(base)
        for p_img in imgs:
            data = c.compress(p_img)
            out = c.decompress(data)
            ours.append((8 * len(data) / (p_img.shape[0] * p_img.shape[1]), rd.psnr(out, p_img)))
        jpeg = [rd.anchor_curve("JPEG", im, (10, 25, 40, 60, 80)) for im in imgs]
        res["kodak_base_codec"] = {
            "images": [p.name for p in kodak],
            "bpp": float(np.mean([b for b, _ in ours])),
            "psnr": float(np.mean([q for _, q in ours])),
            "jpeg_curve_mean": [(float(np.mean([j[i].bpp for j in jpeg])),
                                 float(np.mean([j[i].psnr for j in jpeg]))) for i in range(5)],
        }
    res["times_s"]["total"] = time.perf_counter() - T0
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    if a.save_checkpoint:
        from splatlab.plugins.compress.icm.train import IcmBundle, save_bundle
        from splatlab.scene.synthetic import LABEL_NAMES

        save_bundle(a.save_checkpoint, IcmBundle(codec, task, None, human, res["recipe"],
                                                 list(LABEL_NAMES)))
    print(f"total {res['times_s']['total']:.0f} s -> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
