"""The machine tasks: semantic segmentation of rendered demo views, and classification of the
demo's objects; their small networks and their data.

The demo world (``splatlab.scene.synthetic``) is ray traced with per-pixel ground-truth object
labels (0 background, then floor, cube, cylinder, striped ball, chrome ball, glossy ball), so the
task's accuracy (mIoU against those labels) is measured honestly with no external model. Train
views and test views come from two different camera rings (other seed, radius and elevations),
so the test views are new viewpoints of the same scene.

The classification task (the ARR paper's main setting is image classification) uses views aimed
at one of the five objects (cube, cylinder, striped ball, chrome ball, glossy ball) from a random
direction and distance; the label is that object. A view is kept only when the object is what the
image centre shows (occluded or cut views are drawn again), so the label is never ambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ....errors import DataError

__all__ = ["SegNet", "ClassNet", "ViewSet", "demo_views", "demo_object_views", "mean_iou",
           "accuracy", "label_colors", "N_CLASSES", "OBJECT_LABELS", "N_OBJECTS"]

N_CLASSES = 7
OBJECT_LABELS = (2, 3, 4, 5, 6)  # the demo labels of the classification task's classes
N_OBJECTS = len(OBJECT_LABELS)


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


class ClassNet(nn.Module):
    """A small classifier: float [B, 3, H, W] in [0, 1] -> logits [B, n_classes] (four stride-2
    conv stages, global average pooling, one linear layer)."""

    def __init__(self, n_classes: int = N_OBJECTS, width: int = 16) -> None:
        super().__init__()
        w = width
        self.n_classes, self.width = n_classes, width
        chans = [3, w, 2 * w, 4 * w, 4 * w]
        layers: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(a, b, 3, 2, 1), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
                       nn.Conv2d(b, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1], n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).mean((2, 3)))


def accuracy(pred: np.ndarray, gt: np.ndarray) -> float:
    """Top-1 accuracy of class predictions against labels (same shape)."""
    pred, gt = np.asarray(pred).ravel(), np.asarray(gt).ravel()
    if pred.shape != gt.shape or gt.size == 0:
        raise DataError(f"prediction and labels differ in size or are empty: {pred.shape} vs {gt.shape}")
    return float(np.mean(pred == gt))


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
    """Rendered views: images uint8 [V, H, W, 3], labels int64 [V, H, W] (segmentation) or [V]
    (classification: an index into ``OBJECT_LABELS``)."""

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


_OBJECT_SPLITS = {"train": (40, 10), "val": (10, 19), "test": (20, 15)}  # views per class, seed


def demo_object_views(split: str, size: int = 128, cache_dir: str | Path | None = None,
                      per_class: int | None = None) -> ViewSet:
    """Views aimed at one object each, labelled by the object (index into ``OBJECT_LABELS``).

    Cameras: a random direction at elevation 8-60 deg, a distance at which the object's bounding
    sphere fills 30-75 % of the frame height, the aim jittered by up to 0.3 of the object's
    radius; cameras above the floor and outside every object. A draw is kept when the object
    covers >= 50 % of the central quarter of the image (so it is what the image shows) and the
    pixels of its label are >= 40 % of the object's pixels in that box. split: 'train' (40 views
    per class), 'val' (10) or 'test' (20), from different seeds. Cached as npz in ``cache_dir``."""
    from ....scene.cameras import look_at_viewmat
    from ....scene.synthetic import SCENE_OBJECTS, render_demo_views

    if split not in _OBJECT_SPLITS:
        raise DataError(f"split must be 'train', 'val' or 'test', got {split!r}")
    n, seed = _OBJECT_SPLITS[split]
    n = int(per_class or n)
    path = Path(cache_dir) / f"demo_objects_{split}_{size}_{n}.npz" if cache_dir else None
    if path is not None and path.exists():
        d = np.load(path)
        return ViewSet(d["images"], d["labels"])
    objs = {o.label: o for o in SCENE_OBJECTS}
    rng = np.random.default_rng([seed, 7])
    fov = np.radians(36.0)
    f = 0.5 * size / np.tan(fov / 2)
    K = np.array([[f, 0.0, size / 2], [0.0, f, size / 2], [0.0, 0.0, 1.0]])
    c0, c1 = size * 3 // 8, size * 5 // 8
    imgs, labels = [], []
    for cls, lab in enumerate(OBJECT_LABELS):
        o = objs[lab]
        centre, r = np.asarray(o.center, np.float64), o.bounding_radius
        kept = 0
        while kept < n:
            cands = []
            for _ in range(8):  # draw a batch of cameras, render them together
                az, el = rng.uniform(0, 2 * np.pi), np.radians(rng.uniform(8, 60))
                fill = rng.uniform(0.30, 0.75)
                dist = r / np.sin(fill * fov / 2)
                d = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
                target = centre + rng.uniform(-0.3, 0.3, 3) * r
                eye = target + dist * d
                inside = any(np.linalg.norm(eye - np.asarray(q.center)) < q.bounding_radius + 0.05
                             for q in SCENE_OBJECTS if q.kind != "disk")
                if eye[2] < 0.05 or inside:
                    continue
                cands.append(look_at_viewmat(eye, target))
            if not cands:
                continue
            out = render_demo_views(np.stack(cands), np.stack([K] * len(cands)), size, size)
            for rgb, lb in zip(out["rgb"], out["labels"]):
                box = lb[c0:c1, c0:c1]
                objects_in_box = box[(box != 0) & (box != 1)]  # not background, not floor
                if np.mean(box == lab) < 0.5 or np.mean(objects_in_box == lab) < 0.4:
                    continue
                imgs.append((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
                labels.append(cls)
                kept += 1
                if kept == n:
                    break
    vs = ViewSet(np.stack(imgs), np.asarray(labels, np.int64))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, images=vs.images, labels=vs.labels)
    return vs
