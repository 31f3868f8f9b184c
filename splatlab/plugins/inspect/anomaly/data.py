"""An anomaly-detection data set made here: crops of scikit-image's bundled textures as the normal
class, synthetic defects with exact ground-truth masks as the anomalies (MVTec AD's protocol:
train on normal images only, test on normal and defective ones).

Normal images: square crops of one texture (``skimage.data.brick()``, ``grass()``, ``gravel()``,
grey, repeated to RGB). Training crops come from the left 60 % of the texture, test crops from
the right 40 %, so no test pixel was seen in training.

Defect types (each returns the image and a bool mask of the changed pixels):

- ``cut-paste``: a rectangle or ellipse of another texture pasted in (CutPaste, Li et al. 2021),
- ``scratch``: a thin dark or bright random polyline, 1-3 px wide,
- ``colour``: an elliptical blob tinted with a random saturated colour,
- ``perlin`` (held out: never used to choose any setting): a Perlin-noise shaped region blended
  half-and-half with another texture or a colour photo (DRAEM's anomaly source, Zavrtanik 2021).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from ....errors import DataError

__all__ = [
    "TEXTURES",
    "DEFECTS_SEEN",
    "DEFECTS_HELD_OUT",
    "AnomalySet",
    "texture",
    "perlin_noise",
    "add_defect",
    "make_texture_set",
]

TEXTURES = ("brick", "grass", "gravel")
DEFECTS_SEEN = ("cut-paste", "scratch", "colour")
DEFECTS_HELD_OUT = ("perlin",)
_PASTE_SOURCES = ("brick", "grass", "gravel", "camera", "moon", "coffee", "astronaut", "rocket")


@dataclass
class AnomalySet:
    """Normal training images and a labelled test set.

    train: float32 [N, S, S, 3] in [0, 1] (normal only)
    test: float32 [M, S, S, 3]
    masks: bool [M, S, S] (True = defective pixel)
    labels: int64 [M] (0 normal, 1 defective)
    defects: "good" or the defect type of each test image
    """

    category: str
    train: np.ndarray
    test: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    defects: list[str] = field(default_factory=list)


@lru_cache(maxsize=16)
def texture(name: str) -> np.ndarray:
    """A scikit-image bundled image as float32 [H, W, 3] in [0, 1] (grey images repeated)."""
    try:
        import skimage.data as skd
    except ImportError as e:  # pragma: no cover - dependency missing
        raise DataError(
            "the anomaly data set needs scikit-image: pip install 'scikit-image>=0.22'"
        ) from e
    fn = getattr(skd, name, None)
    if fn is None:
        raise DataError(f"scikit-image has no bundled image {name!r}")
    img = np.asarray(fn())
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3].astype(np.float32) / 255.0
    img.setflags(write=False)
    return img


def _crop(img: np.ndarray, size: int, rng: np.random.Generator, x0: int, x1: int) -> np.ndarray:
    """A size x size crop whose left edge lies in [x0, x1 - size]."""
    h = img.shape[0]
    if x1 - x0 < size or h < size:
        raise DataError(f"texture region {x1 - x0} x {h} px is smaller than the crop {size}")
    x = int(rng.integers(x0, x1 - size + 1))
    y = int(rng.integers(0, h - size + 1))
    return img[y : y + size, x : x + size].copy()


def perlin_noise(
    shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """2-D Perlin gradient noise, float [H, W] roughly in [-1, 1]; ``res`` = lattice cells per
    axis (H and W must be multiples of res)."""
    h, w = shape
    ry, rx = res
    if h % ry or w % rx:
        raise ValueError(f"perlin_noise: shape {shape} is not a multiple of res {res}")
    ang = rng.uniform(0, 2 * np.pi, (ry + 1, rx + 1))
    grad = np.stack([np.cos(ang), np.sin(ang)], -1)
    ys, xs = np.meshgrid(np.arange(h) * ry / h, np.arange(w) * rx / w, indexing="ij")
    yi, xi = ys.astype(int), xs.astype(int)
    fy, fx = ys - yi, xs - xi

    def dot(oy: int, ox: int) -> np.ndarray:
        g = grad[yi + oy, xi + ox]
        return g[..., 0] * (fx - ox) + g[..., 1] * (fy - oy)

    def fade(t: np.ndarray) -> np.ndarray:
        return t * t * t * (t * (t * 6 - 15) + 10)

    u, v = fade(fx), fade(fy)
    top = dot(0, 0) * (1 - u) + dot(0, 1) * u
    bot = dot(1, 0) * (1 - u) + dot(1, 1) * u
    return (top * (1 - v) + bot * v) * np.sqrt(2)


def _other_source(category: str, rng: np.random.Generator, size: int) -> np.ndarray:
    names = [n for n in _PASTE_SOURCES if n != category]
    src = texture(names[int(rng.integers(len(names)))])
    return _crop(src, size, rng, 0, src.shape[1])


def _ellipse_mask(size: int, rng: np.random.Generator, r_min: float, r_max: float) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    ax = (int(rng.uniform(r_min, r_max) * size), int(rng.uniform(r_min, r_max) * size))
    c = (int(rng.uniform(0.25, 0.75) * size), int(rng.uniform(0.25, 0.75) * size))
    cv2.ellipse(m, c, ax, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return m.astype(bool)


def add_defect(
    img: np.ndarray, kind: str, rng: np.random.Generator, category: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """img: float32 [S, S, 3] -> (defective image, bool mask [S, S] of the changed pixels)."""
    s = img.shape[0]
    out = img.copy()
    if kind == "cut-paste":
        if rng.random() < 0.5:
            mask = _ellipse_mask(s, rng, 0.08, 0.18)
        else:
            mask = np.zeros((s, s), bool)
            hh, ww = (int(rng.uniform(0.12, 0.3) * s) for _ in range(2))
            y, x = int(rng.integers(0, s - hh)), int(rng.integers(0, s - ww))
            mask[y : y + hh, x : x + ww] = True
        out[mask] = _other_source(category, rng, s)[mask]
    elif kind == "scratch":
        m = np.zeros((s, s), np.uint8)
        n = int(rng.integers(3, 6))
        p0 = rng.uniform(0.1, 0.9, 2) * s
        direction = rng.uniform(0, 2 * np.pi)
        pts = [p0]
        for _ in range(n):
            direction += rng.normal(0, 0.35)
            step = rng.uniform(0.08, 0.16) * s
            pts.append(
                np.clip(pts[-1] + step * np.array([np.cos(direction), np.sin(direction)]), 0, s - 1)
            )
        cv2.polylines(m, [np.round(pts).astype(np.int32)], False, 1, int(rng.integers(1, 4)))
        mask = m.astype(bool)
        value = 0.05 if rng.random() < 0.5 else 0.95
        out[mask] = value + rng.normal(0, 0.02, (int(mask.sum()), 3))
    elif kind == "colour":
        mask = _ellipse_mask(s, rng, 0.05, 0.14)
        hue = rng.uniform(0, 180)
        rgb = cv2.cvtColor(np.uint8([[[hue, 230, 230]]]), cv2.COLOR_HSV2RGB)[0, 0] / 255.0
        out[mask] = 0.35 * out[mask] + 0.65 * rgb.astype(np.float32)
    elif kind == "perlin":
        for _ in range(20):  # a region covering 2-15 % of the image
            res = int(rng.choice([2, 4, 8]))
            noise = perlin_noise((s, s), (res, res), rng)
            mask = noise > np.quantile(noise, 1 - rng.uniform(0.03, 0.15))
            if 0.02 <= mask.mean() <= 0.15:
                break
        src = _other_source(category, rng, s)
        out[mask] = 0.5 * out[mask] + 0.5 * src[mask]
    else:
        raise DataError(
            f"unknown defect type {kind!r}; use one of {DEFECTS_SEEN + DEFECTS_HELD_OUT}"
        )
    return np.clip(out, 0, 1).astype(np.float32), mask


def make_texture_set(
    category: str = "brick",
    n_train: int = 64,
    n_test_good: int = 16,
    n_per_defect: int = 8,
    size: int = 128,
    defects: Sequence[str] = DEFECTS_SEEN + DEFECTS_HELD_OUT,
    scale: float = 1.0,
    seed: int = 0,
) -> AnomalySet:
    """Normal training crops and a test set of normal and defective crops of one texture.

    ``scale`` resizes the texture first (0.5 halves it: each crop then covers more of it).
    """
    if category not in TEXTURES:
        raise DataError(f"unknown texture {category!r}; use one of {TEXTURES}")
    rng = np.random.default_rng([seed, TEXTURES.index(category)])
    tex = texture(category)
    if scale != 1.0:
        tex = cv2.resize(tex, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    split = int(0.6 * tex.shape[1])
    train = np.stack([_crop(tex, size, rng, 0, split) for _ in range(n_train)])
    test, masks, labels, kinds = [], [], [], []
    for _ in range(n_test_good):
        test.append(_crop(tex, size, rng, split, tex.shape[1]))
        masks.append(np.zeros((size, size), bool))
        labels.append(0)
        kinds.append("good")
    for kind in defects:
        for _ in range(n_per_defect):
            img, m = add_defect(_crop(tex, size, rng, split, tex.shape[1]), kind, rng, category)
            test.append(img)
            masks.append(m)
            labels.append(1)
            kinds.append(kind)
    return AnomalySet(
        category=category,
        train=train.astype(np.float32),
        test=np.stack(test).astype(np.float32),
        masks=np.stack(masks),
        labels=np.asarray(labels, np.int64),
        defects=kinds,
    )
