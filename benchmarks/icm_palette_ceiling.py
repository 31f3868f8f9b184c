"""What a C-colour image leaves to the frozen task net of issue 13 (a diagnostic for ARR).

    python benchmarks/icm_palette_ceiling.py --bundle /tmp/icm2/icm_bridge.pt

Quantises the uncompressed test views to the k-means palette (C centres of 50 000 training
pixels; the palette ARR.init_palette starts from) and reports the bundle's frozen task net's mIoU
on them next to its mIoU on the original views. No codec is involved: this is the accuracy a
nearest-colour C-level image keeps before any rate is spent.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from splatlab.plugins.compress.icm.arr import ARR
from splatlab.plugins.compress.icm.codec import image_to_tensor, tensor_to_image
from splatlab.plugins.compress.icm.task import ViewSet, demo_views
from splatlab.plugins.compress.icm.train import load_bundle, task_miou


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--cache", default=str(Path.home() / ".cache/splatlab/icm"))
    ap.add_argument("--levels", default="2,4,8,16")
    a = ap.parse_args()
    torch.set_num_threads(1)
    b = load_bundle(a.bundle)
    train, test = demo_views("train", 128, a.cache), demo_views("test", 128, a.cache)
    print("| C | task mIoU on the k-means-quantised test views |\n|---|---|")
    print(f"| original | {task_miou(b.task, test):.4f} |")
    for c in (int(s) for s in a.levels.split(",")):
        arr = ARR(c)
        arr.init_palette(train.images, prior_scale=1e4, seed=c)
        with torch.no_grad():
            q = np.stack([tensor_to_image(arr.eval()(image_to_tensor(im))) for im in test.images])
        print(f"| {c} | {task_miou(b.task, ViewSet(q, test.labels)):.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
