"""ARR against the task-trained codec with a longer joint training (issue 13, item 3).

    python benchmarks/icm_arr_long.py --steps 1000 --out /tmp/icm/arr_long.json

Rebuilds benchmarks/icm_bench.py's task net and base codec (same seeds and steps: the same
weights), then trains, from the same base, the task-trained codec and ARR (palette start) for
``--steps`` steps each at every task weight of ``--weights`` (C levels from ``--levels``), and
evaluates both on the test ring: does ARR's rate fall below the task-trained codec's at equal
mIoU once the codec has had time to adapt to C-colour images?
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import torch

from splatlab.plugins.compress.icm.arr import ARR
from splatlab.plugins.compress.icm.task import demo_views
from splatlab.plugins.compress.icm.train import crop_batches, evaluate, train_codec, train_task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from icm_bench import TASK_STEPS, base_codec, bd, clone_codec  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--weights", default="0.5,2")
    ap.add_argument("--levels", type=int, default=8)
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--cache", default=str(Path.home() / ".cache/splatlab/icm"))
    ap.add_argument("--out", default="/tmp/icm/arr_long.json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)  # as benchmarks/icm_bench.py: the same task net and base codec
    t0 = time.perf_counter()
    train, test = demo_views("train", 128, a.cache), demo_views("test", 128, a.cache)
    task = train_task(train, TASK_STEPS)
    base = base_codec(train, Path(a.data))
    res: dict = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
                 "command": " ".join(["python", *sys.argv]), "steps": a.steps, "levels": a.levels,
                 "curves": {"task-trained codec": [], f"ARR C={a.levels}": []}}
    for w in [float(s) for s in a.weights.split(",")]:
        for name in res["curves"]:
            c = clone_codec(base)
            arr = None
            if name.startswith("ARR"):
                torch.manual_seed(a.levels)
                arr = ARR(a.levels)
                arr.init_palette(train.images, seed=a.levels)
            st = train_codec(c, crop_batches(train.images, train.labels, 64, 8, 20 if arr is None
                                             else 30), a.steps, mse_weight=0.0, task_net=task,
                             task_weight=w, arr=arr, lr=3e-4)
            ev = evaluate(c, test, task, arr, with_ms_ssim=False)
            res["curves"][name].append({"param": w, **ev.as_dict(), "train_s": st["seconds"]})
            print(f"{name} @ {w}: bpp {ev.bpp:.4f} mIoU {ev.miou:.4f} PSNR {ev.psnr:.2f} "
                  f"checkerboard {ev.checkerboard_db:.2f} ({st['seconds']:.0f} s)", flush=True)
    names = list(res["curves"])
    res["bd_rate_pct"] = bd(res["curves"][names[0]], res["curves"][names[1]])
    res["total_s"] = time.perf_counter() - t0
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"BD-rate ARR vs task-trained: {res['bd_rate_pct']}; total {res['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
