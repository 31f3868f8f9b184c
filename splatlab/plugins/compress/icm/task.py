"""The machine task: semantic segmentation of rendered demo views, its small network and its data.

The demo world (``splatlab.scene.synthetic``) is ray traced with per-pixel ground-truth object
labels (0 background, then floor, cube, cylinder, striped ball, chrome ball, glossy ball), so the
task's accuracy (mIoU against those labels) is measured honestly with no external model. Train
views and test views come from two different camera rings (other seed, radius and elevations),
so the test views are new viewpoints of the same scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ....errors import DataError

__all__ = ["SegNet", "ViewSet", "demo_views", "mean_iou", "label_colors", "N_CLASSES"]

N_CLASSES = 7


class SegNet(nn.Module):
    """A small encoder-decoder segmenter: float [B, 3, H, W] in [0, 1] -> logits
    [B, n_classes, H, W] (H, W multiples of 4)."""

    def __init__(self, n_classes: int = N_CLASSES, width: int = 16) -> None:
        super().__init__()
        w = width
        self.n_classes, self.width = n_classes, width
        self.e1 = nn.Sequential(nn.Conv2d(3, w, 3, padding=1), nn.ReLU(inplace=True))
        self.e2 = nn.Sequential(nn.Conv2d(w, 2 * w, 3, 2, 1), nn.ReLU(inplace=True),
                                nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(inplace=True))
        self.e3 = nn.Sequential(nn.Conv2d(2 * w, 2 * w, 3, 2, 1), nn.ReLU(inplace=True),
                                nn.Conv2d(2 * w, 2 * w, 3, padding=2, dilation=2),
                                nn.ReLU(inplace=True))
        self.d2 = nn.Sequential(nn.Conv2d(4 * w, 2 * w, 3, padding=1), nn.ReLU(inplace=True))
        self.d1 = nn.Sequential(nn.Conv2d(3 * w, w, 3, padding=1), nn.ReLU(inplace=True),
                                nn.Conv2d(w, n_classes, 1))

    def forward(self, x: Tensor) -> Tensor:
        f1 = self.e1(x)
        f2 = self.e2(f1)
        f3 = self.e3(f2)
        u2 = F.interpolate(f3, size=f2.shape[2:], mode="bilinear", align_corners=False)
        g2 = self.d2(torch.cat([u2, f2], 1))
        u1 = F.interpolate(g2, size=f1.shape[2:], mode="bilinear", align_corners=False)
        return self.d1(torch.cat([u1, f1], 1))


def mean_iou(pred: np.ndarray, gt: np.ndarray, n_classes: int = N_CLASSES) -> float:
    """mIoU over the classes present in ``gt`` or ``pred`` (pooled over all pixels given)."""
    pred, gt = np.asarray(pred).ravel(), np.asarray(gt).ravel()
    if pred.shape != gt.shape:
        raise DataError(f"prediction and labels differ in size: {pred.shape} vs {gt.shape}")
    inter = np.bincount(gt[pred == gt], minlength=n_classes)[:n_classes]
    area_p = np.bincount(pred, minlength=n_classes)[:n_classes]
    area_g = np.bincount(gt, minlength=n_classes)[:n_classes]
    union = area_p + area_g - inter
    ok = union > 0
    return float(np.mean(inter[ok] / union[ok]))


def label_colors(labels: np.ndarray) -> np.ndarray:
    """int [H, W] -> uint8 [H, W, 3] (a fixed palette)."""
    pal = np.array([[0, 0, 0], [140, 140, 140], [220, 40, 40], [40, 190, 60], [240, 200, 40],
                    [200, 200, 230], [40, 80, 230], [160, 60, 200]], np.uint8)
    return pal[np.clip(np.asarray(labels), 0, len(pal) - 1)]


@dataclass
class ViewSet:
    """Rendered views: images uint8 [V, H, W, 3], labels int64 [V, H, W]."""

    images: np.ndarray
    labels: np.ndarray

    def tensors(self) -> tuple[Tensor, Tensor]:
        x = torch.from_numpy(self.images).permute(0, 3, 1, 2).float() / 255.0
        return x, torch.from_numpy(self.labels)


def demo_views(split: str, size: int = 128, cache_dir: str | Path | None = None) -> ViewSet:
    """Demo views with labels. split: 'train' (96 views on the default ring, seed 0) or 'test'
    (24 views on another ring: seed 5, radius 2.2, elevations 20-45 deg) or 'val' (24 views on a
    third ring, seed 9, radius 2.4, elevations 15-40 deg: for choosing settings without looking
    at the test views). size: square side
    (a multiple of 64 keeps the codec free of padding). Cached as npz in ``cache_dir``."""
    from ....scene.synthetic import DemoConfig, make_demo_scene

    if split == "train":
        cfg = DemoConfig(n_views=96, width=size, height=size, seed=0, n_points=0)
    elif split == "test":
        cfg = DemoConfig(n_views=24, width=size, height=size, seed=5, radius=2.2,
                         elevation_deg=(20.0, 45.0), n_points=0)
    elif split == "val":
        cfg = DemoConfig(n_views=24, width=size, height=size, seed=9, radius=2.4,
                         elevation_deg=(15.0, 40.0), n_points=0)
    else:
        raise DataError(f"split must be 'train', 'val' or 'test', got {split!r}")
    path = Path(cache_dir) / f"demo_{split}_{size}.npz" if cache_dir else None
    if path is not None and path.exists():
        d = np.load(path)
        return ViewSet(d["images"], d["labels"])
    ds = make_demo_scene(cfg)
    imgs = np.stack([(np.clip(ds.load_image(i), 0, 1) * 255 + 0.5).astype(np.uint8)
                     for i in range(len(ds.frames))])
    labels = ds.meta["labels"].astype(np.int64)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, images=imgs, labels=labels)
    return ViewSet(imgs, labels)
