"""The "image deepfake" inspect plugin: P(synthetic) of an image (upload, INPUT image, or the
current view rendered from a scene) from a trained D4 detector: per partition model, the ensemble
(mean of their softmaxes) and the full-spectrum baseline.

The detectors see S x S crops (S = the checkpoint's ``image_size``) at the image's own resolution
(resizing would filter out the very frequencies they look at): the image is covered by an even grid
of up to ``max_crops`` crops and the probabilities are averaged over them.

    splatlab plugin run "image deepfake" photo.png --weights d4.pt --out out/
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ....errors import DataError
from ...base import Plugin, PluginInputs, Progress, Report, image_input, no_progress
from .model import D4Detector, load_d4

__all__ = ["D4Options", "D4Plugin", "decode_image", "check_image", "grid_crops", "MAX_PIXELS"]

MAX_PIXELS = 40_000_000  # larger decoded images are refused (decompression bombs)
MIN_SIDE = 16
_MODES = ("RGB", "RGBA", "L", "LA", "P", "PA")  # 8-bit modes converted without loss of meaning


@dataclass
class D4Options:
    """Options of the D4 image deepfake detector."""

    weights: str = ""
    """Path of a D4 checkpoint (train one with benchmarks/d4_bench.py --save-weights)."""
    max_crops: int = 16
    """Most crops of the model's size averaged over the image (an even grid)."""
    threshold: float = 0.5
    """Ensemble P(synthetic) above which the image is called synthetic."""


def decode_image(name: str, content: bytes) -> np.ndarray:
    """PNG / JPEG bytes -> uint8 [H, W, 3]. DataError (naming the file) when the bytes are empty,
    corrupt, not 8-bit (e.g. 16-bit or float PNG, CMYK), or larger than :data:`MAX_PIXELS`."""
    from PIL import Image, UnidentifiedImageError

    if not content:
        raise DataError(f"upload {name!r} is empty; upload a .png or .jpg image")
    try:
        with Image.open(io.BytesIO(content)) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise DataError(
                    f"upload {name!r} is {w} x {h} px; the limit is {MAX_PIXELS / 1e6:.0f} MP (downscale it first)"
                )
            if im.mode not in _MODES:
                raise DataError(
                    f"upload {name!r} has image mode {im.mode!r}; the detector reads 8-bit RGB "
                    "(or grey / palette) images: convert it to 8-bit RGB first"
                )
            im.load()
            if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
                im = Image.alpha_composite(bg, im)
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except DataError:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as e:
        raise DataError(
            f"upload {name!r} is not a readable image ({type(e).__name__}: {e}); upload a .png or .jpg"
        ) from e
    return check_image(arr, f"upload {name!r}")


def check_image(img: Any, what: str, min_side: int = MIN_SIDE) -> np.ndarray:
    """uint8 [H, W, 3] (grey [H, W] and RGBA [H, W, 4] are converted, floats in [0, 1] scaled);
    DataError naming ``what`` for another shape or dtype, non-finite or out-of-range floats, a
    side below ``min_side`` or more than :data:`MAX_PIXELS` pixels."""
    a = np.asarray(img)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise DataError(f"{what}: expected an RGB image [H, W, 3], got shape {a.shape}")
    a = a[..., :3]
    if a.dtype != np.uint8:
        ok = (
            np.issubdtype(a.dtype, np.floating)
            and a.size
            and np.isfinite(a).all()
            and a.min() >= 0
            and a.max() <= 1
        )
        if not ok:
            raise DataError(f"{what}: expected uint8 pixels (or floats in [0, 1]), got {a.dtype}")
        a = np.round(a * 255).astype(np.uint8)
    if min(a.shape[:2]) < min_side:
        raise DataError(
            f"{what} is {a.shape[1]} x {a.shape[0]} px; the D4 detector needs at least {min_side} px a side"
        )
    if a.shape[0] * a.shape[1] > MAX_PIXELS:
        raise DataError(f"{what} has more than {MAX_PIXELS / 1e6:.0f} MP; downscale it first")
    return np.ascontiguousarray(a)


def grid_crops(img: np.ndarray, size: int, max_crops: int) -> np.ndarray:
    """An even grid of at most ``max_crops`` crops [K, size, size, 3] covering ``img`` [H, W, 3]
    (corners included; one centre crop when max_crops == 1)."""
    h, w = img.shape[:2]
    if h < size or w < size:
        raise DataError(f"image is {w} x {h} px; this D4 model needs at least {size} x {size}")
    max_crops = max(1, int(max_crops))
    ny = min(max(1, math.ceil(h / size)), max(1, int(math.sqrt(max_crops))))
    nx = min(max(1, math.ceil(w / size)), max(1, max_crops // ny))
    if max_crops == 1:
        ys, xs = [(h - size) // 2], [(w - size) // 2]
    else:
        ys = np.linspace(0, h - size, ny).round().astype(int).tolist()
        xs = np.linspace(0, w - size, nx).round().astype(int).tolist()
    return np.stack([img[y : y + size, x : x + size] for y in ys for x in xs])


_CACHE: dict[tuple[str, float], tuple[D4Detector, dict[str, Any]]] = {}


def _load(weights: str) -> tuple[D4Detector, dict[str, Any]]:
    p = Path(weights).expanduser() if weights else Path("")
    if weights and p.is_file():
        key = (str(p.resolve()), os.path.getmtime(p))
        if key not in _CACHE:
            _CACHE.clear()  # keep one detector in memory
            _CACHE[key] = load_d4(p)
        return _CACHE[key]
    return load_d4(weights)  # raises WeightsNotFoundError with the training command


class D4Plugin(Plugin):
    """D4 disjoint-ensemble deepfake detection of an image or of the current view."""

    name = "image deepfake"
    kind = "inspect"
    description = (
        "D4 (WACV 2024): P(synthetic) of an image from an ensemble of detectors, each seeing a "
        "disjoint part of the DCT spectrum, and from the single full-spectrum detector"
    )
    Options = D4Options
    accepts = ("image", "scene")
    upload_types = (".png", ".jpg", ".jpeg")

    def run(
        self, inputs: PluginInputs, options: D4Options, progress: Progress = no_progress
    ) -> Report:
        img, source = self._image(inputs)
        progress(0.1, "loading the D4 detector")
        det, info = _load(options.weights)
        s = det.config.image_size
        img = check_image(img, source, min_side=s)
        crops = grid_crops(img, s, options.max_crops)
        progress(0.4, f"scoring {len(crops)} crops")
        x = torch.from_numpy(crops.astype(np.float32).transpose(0, 3, 1, 2) / 255.0)
        with torch.inference_mode():
            members = det.member_probs(x)[..., 1].mean(dim=1)  # [N]
            full = float(det.full_probs(x)[:, 1].mean())
        ens = float(members.mean())
        metrics: dict[str, float] = {"P(synthetic) ensemble": ens}
        for i, p in enumerate(members.tolist()):
            metrics[f"P(synthetic) partition {i + 1}"] = float(p)
        metrics["P(synthetic) full spectrum"] = full
        metrics["synthetic (ensemble)"] = float(ens > options.threshold)
        metrics["crops"] = float(len(crops))
        progress(1.0, "done")
        notes = [
            f"image: {source}, {img.shape[1]} x {img.shape[0]} px, {len(crops)} crops of {s} px",
            f"ensemble of N = {det.config.n_partitions} disjoint spectrum partitions, backbone "
            f"{det.config.backbone}; probabilities averaged over the crops",
        ]
        return Report(
            title=f"D4 image deepfake ({source})",
            metrics=metrics,
            tables={
                "P(synthetic)": {
                    "model": [f"partition {i + 1}" for i in range(len(members))]
                    + ["ensemble", "full spectrum"],
                    "P(synthetic)": [*members.tolist(), ens, full],
                }
            },
            images={"input": img},
            notes=notes,
        )

    def _image(self, inputs: PluginInputs) -> tuple[np.ndarray, str]:
        return image_input(inputs, "image deepfake (D4)", decode_image, check_image)
