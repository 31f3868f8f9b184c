"""Image coding for machines with a classification task (issue 13; the ARR paper's main setting).

    python benchmarks/icm_classify.py --out /tmp/icm/classify.json [--steps 400] [--weights 0.1,0.3,1,3]

The frozen task net is a small classifier (``ClassNet``) of the demo's five objects, on views
aimed at one object each (``task.demo_object_views``: 200 train, 50 val, 100 test views of
128 x 128 from different seeds). Everything else follows benchmarks/icm_bench.py: the same base
codec (mean-scale hyperprior N = M = 48, its recipe and seeds); the plain codec (the base
fine-tuned for humans, rate + lambda MSE, at each of ``--plain-lambdas``); then from that base,
for every task weight w, the task-trained codec (rate + w CE) and ARR (C levels, palette start) +
codec trained end to end with the same loss, ``--steps`` steps each on the whole training views
(random flips; ``--crop 64`` trains on crops), batch 8, lr 3e-3 for ARR and 3e-4 for the codec
(the ICM recipe). Evaluation on the 100 whole test views: bpp from the bytes of each file (header
included), top-1 accuracy of the frozen classifier on the decoded image, BD-rate at equal accuracy
(x 100, pchip) of the task-trained codec against the plain one and of each ARR curve against the
task-trained one. Also printed: what a C-colour image leaves the classifier with no
codec (the k-means palette ARR starts from), as in benchmarks/icm_palette_ceiling.py.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from splatlab.plugins.compress.icm.arr import ARR
from splatlab.plugins.compress.icm.codec import image_to_tensor, tensor_to_image
from splatlab.plugins.compress.icm.task import ViewSet, demo_object_views, demo_views
from splatlab.plugins.compress.icm.train import (
    base_batches,
    evaluate,
    image_batches,
    task_score,
    train_classifier,
    train_codec,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import icm_bench  # noqa: E402
from icm_bench import base_codec, clone_codec  # noqa: E402


def bd_acc(ref: list[dict], test: list[dict]) -> float | None:
    """BD-rate (%) of test against ref at equal accuracy (x100); None where undefined."""
    return icm_bench.bd(ref, test, key="accuracy")


@torch.no_grad()
def palette_ceiling(task, train: ViewSet, test: ViewSet, levels: int) -> float:
    arr = ARR(levels)
    arr.init_palette(train.images, seed=levels)
    arr.eval()
    q = np.stack([tensor_to_image(arr(image_to_tensor(im))) for im in test.images])
    return task_score(task, ViewSet(q, test.labels))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/icm/classify.json")
    ap.add_argument("--steps", type=int, default=400, help="joint training steps per codec")
    ap.add_argument("--task-steps", type=int, default=600)
    ap.add_argument("--weights", default="0.1,0.3,1,3", help="task weights w (rate + w CE)")
    ap.add_argument("--levels", default="2,4,8", help="ARR colour levels C")
    ap.add_argument("--plain-lambdas", default="0.0003,0.001,0.003,0.01",
                    help="lambdas of the plain codec (the base fine-tuned with rate + lambda 255^2 "
                         "MSE, icm_bench's FT_STEPS steps); empty to skip")
    ap.add_argument("--crop", type=int, default=128,
                    help="training crop side (a multiple of 64; 128 = the whole view, flips only)")
    ap.add_argument("--base-steps", type=int, default=icm_bench.BASE_STEPS,
                    help="base codec steps (the icm_bench recipe's by default; fewer for a smoke run)")
    ap.add_argument("--noise-seed", type=int, default=0,
                    help="0: the recorded runs' seeds; k > 0: another seed of every trained codec's "
                         "noise and ARR's initialisation (the base codec and the classifier stay)")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--cache", default=str(Path.home() / ".cache/splatlab/icm"))
    a = ap.parse_args()
    icm_bench.BASE_STEPS = a.base_steps
    weights = [float(s) for s in a.weights.split(",") if s]
    plain_lambdas = [float(s) for s in a.plain_lambdas.split(",") if s]
    levels = [int(s) for s in a.levels.split(",")]
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    res: dict = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
                 "command": " ".join(["python", *sys.argv]),
                 "machine": f"{platform.machine()} CPU, torch threads 1",
                 "recipe": {"steps": a.steps, "task_steps": a.task_steps, "weights": weights,
                            "levels": levels, "crop": a.crop, "batch": 8,
                            "plain_lambdas": plain_lambdas, "plain_ft_steps": icm_bench.FT_STEPS,
                            "noise_seed": a.noise_seed,
                            "base_steps": a.base_steps},
                 "times_s": {}, "curves": {}}
    seg_train = demo_views("train", 128, a.cache)
    train = demo_object_views("train", 128, a.cache)
    test = demo_object_views("test", 128, a.cache)
    res["times_s"]["data"] = time.perf_counter() - t0

    t = time.perf_counter()
    task = train_classifier(train, a.task_steps)
    res["times_s"]["task"] = time.perf_counter() - t
    res["task_accuracy_clean"] = task_score(task, test)
    print(f"classifier {res['times_s']['task']:.0f} s, clean test accuracy "
          f"{res['task_accuracy_clean']:.3f}", flush=True)
    res["palette_ceiling"] = {str(c): palette_ceiling(task, train, test, c)
                              for c in sorted({*levels, 16})}
    print("accuracy of C-colour images (k-means palette, no codec):", res["palette_ceiling"])

    torch.manual_seed(0)  # the base codec of benchmarks/icm_bench.py is trained after its task
    t = time.perf_counter()  # net under manual_seed(0); here it starts from the seed itself
    base = base_codec(seg_train, Path(a.data))
    res["times_s"]["base_codec"] = time.perf_counter() - t
    print(f"base codec {res['times_s']['base_codec']:.0f} s", flush=True)
    # Every codec without ARR starts its training noise from the RNG state right after the base,
    # so a point does not depend on which other points the run lists (ARR configs seed with C).
    if a.noise_seed:
        torch.manual_seed(10_000 + a.noise_seed)
    after_base = torch.get_rng_state()

    for lm in plain_lambdas:  # the plain codec: trained for humans (MSE), as in icm_bench.py
        torch.set_rng_state(after_base)
        c = clone_codec(base)
        st = train_codec(c, base_batches(seg_train, Path(a.data), 64, 8, 10), icm_bench.FT_STEPS,
                         lmbda=lm, lr=3e-4)
        ev = evaluate(c, test, task, None, with_ms_ssim=False)
        res["curves"].setdefault("plain codec (MSE)", []).append(
            {"param": lm, **ev.as_dict(), "train_s": st["seconds"]})
        print(f"plain codec (MSE) @ {lm}: bpp {ev.bpp:.4f} accuracy {ev.accuracy:.3f} "
              f"PSNR {ev.psnr:.2f} ({st['seconds']:.0f} s)", flush=True)

    names = (["task-trained codec"] + [f"ARR C={c}" for c in levels]) if weights else []
    for w in weights:
        for name in names:
            torch.set_rng_state(after_base)
            c = clone_codec(base)
            arr = None
            if name.startswith("ARR"):
                lv = int(name.split("=")[1])
                torch.manual_seed(lv + 1000 * a.noise_seed)
                arr = ARR(lv)
                arr.init_palette(train.images, seed=lv)
            st = train_codec(c, image_batches(train.images, train.labels, a.crop, 8,
                                              20 if arr is None else 30),
                             a.steps, mse_weight=0.0, task_net=task, task_weight=w, arr=arr,
                             lr=3e-4)
            ev = evaluate(c, test, task, arr, with_ms_ssim=False)
            pt = {"param": w, **ev.as_dict(), "train_s": st["seconds"]}
            res["curves"].setdefault(name, []).append(pt)
            print(f"{name} @ {w}: bpp {ev.bpp:.4f} accuracy {ev.accuracy:.3f} PSNR {ev.psnr:.2f} "
                  f"({st['seconds']:.0f} s)", flush=True)
    res["bd_rate_pct"] = {}
    if weights:
        ref = res["curves"]["task-trained codec"]
        if plain_lambdas:
            res["bd_rate_pct"]["task-trained vs plain"] = bd_acc(res["curves"]["plain codec (MSE)"],
                                                                 ref)
        for n in names[1:]:
            res["bd_rate_pct"][f"{n} vs task-trained"] = bd_acc(ref, res["curves"][n])
    res["times_s"]["total"] = time.perf_counter() - t0
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print("BD-rate at equal accuracy:", res["bd_rate_pct"])
    print(f"total {res['times_s']['total']:.0f} s -> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
