"""The "anomaly map (RD4AD)" inspect plugin: where does an image (an upload, the INPUT image, or
the current view rendered from a scene) depart from what a trained RD4AD model calls normal?

The image is resized to the model's square input (as the official evaluation does), scored, and
the blurred 1 - cos map is resized back and drawn as a JET heatmap over the image. Metrics: the
image score (the map's max) and, when the checkpoint stores the scores of its normal training
images, the score relative to their maximum and the fraction of pixels above it.

With ``test_views`` on a run directory, every test view is rendered, scored at its own aspect
ratio (:mod:`.render_mode`) and compared with its photo: pixel AUROC and AUPRO@0.3 against the
error mask mean_RGB |render - GT| > ``error_threshold``. In the viewer, the panel's "Anomaly
render mode" button loads the checkpoint and offers the render mode "anomaly (RD4AD)": the
current view, rendered from the Gaussians shown, scored, coloured with turbo.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch

from ....errors import DataError, WeightsNotFoundError
from ....models.rd4ad import RD4ADConfig, ReverseDistillation, load_rd4ad
from ...base import Plugin, PluginInputs, Progress, Report, image_input, no_progress
from .rd4ad import score
from .render_mode import (
    ERROR_THRESHOLD,
    RENDER_MODE_COLORMAP,
    anomaly_render_mode,
    mode_value_range,
    score_test_views,
    scorer_for,
)

__all__ = [
    "AnomalyOptions",
    "RD4ADPlugin",
    "decode_image",
    "MAX_PIXELS",
    "RENDER_MODE",
    "test_views_report",
    "add_anomaly_render_mode",
]

MAX_PIXELS = 40_000_000  # larger decoded images are refused (decompression bombs)
MIN_SIDE = 32
TRAIN_HINT = (
    "train one with `python benchmarks/anomaly.py --train-teacher T.pt` then "
    "`python benchmarks/anomaly.py --teacher T.pt --train CKPT.pt --categories brick` (or "
    "splatlab.plugins.inspect.anomaly.rd4ad.fit_and_save on your own normal images), or pass an "
    "official hq-deng/RD4AD {'bn','decoder'} file with torchvision's wide_resnet50_2 ImageNet "
    "weights in torch hub's checkpoints folder"
)


@dataclass
class AnomalyOptions:
    """Options of the RD4AD anomaly map."""

    weights: str = ""
    """Path of a trained RD4AD checkpoint (official {'bn','decoder'} file or one saved here)."""
    arch: Literal["wide_resnet50_2", "resnet50", "resnet34", "resnet18"] = "wide_resnet50_2"
    """Backbone of an official checkpoint (ignored when the checkpoint stores its config)."""
    overlay: float = 0.5
    """Opacity of the heatmap over the image (0 = image only, 1 = heatmap only)."""
    test_views: bool = False
    """On a run: score every test view's render against its photo (pixel AUROC, AUPRO)."""
    error_threshold: float = ERROR_THRESHOLD
    """test_views: a pixel is wrong when mean_RGB |render - photo| exceeds this (0..1)."""


RENDER_MODE = "anomaly (RD4AD)"


def decode_image(name: str, content: bytes) -> np.ndarray:
    """PNG / JPEG bytes -> uint8 [H, W, 3]. DataError (naming the file) when the bytes are empty,
    not an image, larger than :data:`MAX_PIXELS`, or smaller than 32 px on a side."""
    from PIL import Image, UnidentifiedImageError

    if not content:
        raise DataError(f"upload {name!r} is empty; upload a .png or .jpg image")
    try:
        with Image.open(io.BytesIO(content)) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise DataError(
                    f"upload {name!r} is {w} x {h} px; the limit is {MAX_PIXELS / 1e6:.0f} MP "
                    "(downscale it first)"
                )
            im.load()
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(
            f"upload {name!r} is not a readable image ({type(e).__name__}: {e}); "
            "upload a .png or .jpg"
        ) from e
    return check_image(arr, name)


def check_image(img: Any, what: str) -> np.ndarray:
    """uint8 [H, W, 3] (grey [H, W] and RGBA are converted); DataError for anything else."""
    a = np.asarray(img)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise DataError(f"{what}: expected an RGB image [H, W, 3], got shape {a.shape}")
    a = a[..., :3]
    if a.dtype != np.uint8:
        if (
            np.issubdtype(a.dtype, np.floating)
            and np.isfinite(a).all()
            and a.min() >= 0
            and a.max() <= 1
        ):
            a = np.round(a * 255).astype(np.uint8)
        else:
            raise DataError(f"{what}: expected uint8 pixels (or floats in [0, 1]), got {a.dtype}")
    if min(a.shape[:2]) < MIN_SIDE:
        raise DataError(
            f"{what} is {a.shape[1]} x {a.shape[0]} px; the anomaly models need at least {MIN_SIDE} px a side"
        )
    if a.shape[0] * a.shape[1] > MAX_PIXELS:
        raise DataError(f"{what} has more than {MAX_PIXELS / 1e6:.0f} MP; downscale it first")
    return np.ascontiguousarray(a)


_CACHE: dict[tuple[str, float, str], tuple[ReverseDistillation, dict[str, float]]] = {}


def _load(weights: str, arch: str) -> tuple[ReverseDistillation, dict[str, float]]:
    if not weights:
        raise WeightsNotFoundError(f"anomaly map (RD4AD): set the 'weights' option; {TRAIN_HINT}")
    p = Path(weights).expanduser()
    if not p.is_file():
        raise WeightsNotFoundError(f"anomaly map (RD4AD): {p} does not exist; {TRAIN_HINT}")
    key = (str(p.resolve()), os.path.getmtime(p), arch)
    if key not in _CACHE:
        ckpt_cfg = None
        from ....models.weights import load_state_dict_file

        raw = load_state_dict_file(p, "RD4AD")
        stats = raw.get("normal_scores") if isinstance(raw, dict) else None
        if isinstance(raw, dict) and not isinstance(raw.get("config"), dict):
            ckpt_cfg = RD4ADConfig(arch=arch)  # an official file: the arch comes from the option
        model = load_rd4ad(p, ckpt_cfg)
        _CACHE.clear()  # keep one model in memory
        _CACHE[key] = (model, dict(stats) if isinstance(stats, dict) else {})
    return _CACHE[key]


def heatmap_overlay(img: np.ndarray, amap: np.ndarray, vmax: float, alpha: float) -> np.ndarray:
    """uint8 [H, W, 3] image and float [H, W] map -> uint8 [H, W, 3] JET overlay (0..vmax)."""
    norm = np.clip(amap / max(vmax, 1e-12), 0, 1)
    heat = cv2.applyColorMap(np.uint8(norm * 255), cv2.COLORMAP_JET)[..., ::-1]
    a = float(np.clip(alpha, 0, 1))
    return np.uint8(np.clip((1 - a) * img.astype(np.float32) + a * heat.astype(np.float32), 0, 255))


def anomaly_report(
    method: str, img: np.ndarray, source: str, amap_small: np.ndarray, score_value: float,
    stats: dict[str, float], image_size: int, overlay: float,
) -> Report:
    """The report of an anomaly-map plugin: the map [h, w] resized to the image [H, W, 3] and
    overlaid, the image score, and (when the checkpoint stores the highest score of its normal
    training images) the score relative to it and the share of pixels above it."""
    amap = cv2.resize(amap_small, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
    ref = float(stats.get("score_max", 0.0))
    vmax = 1.5 * ref if ref > 0 else float(amap.max())
    metrics = {"image score": score_value, "map mean": float(amap_small.mean())}
    notes = [f"image: {source}, scored at {image_size} px"]
    if ref > 0:
        metrics["normal score max"] = ref
        metrics["score / normal max"] = score_value / ref
        metrics["anomalous"] = float(score_value > ref)
        metrics["pixels above normal max"] = float((amap_small > ref).mean())
        notes.append("heatmap scale: 0 to 1.5 x the highest score of the normal training images")
    else:
        notes.append("the checkpoint has no normal-score statistics: heatmap scaled to its max")
    return Report(
        title=f"{method} anomaly map ({source})",
        metrics=metrics,
        images={"anomaly map": heatmap_overlay(img, amap, vmax, overlay), "input": img},
        notes=notes,
    )


def _side(stats: dict[str, float]) -> int | None:
    side = int(stats.get("side", 0))  # the training photos' long side (render checkpoints)
    return side if side > 0 else None


def test_views_report(
    method: str, scorer: Any, inputs: PluginInputs, threshold: float, progress: Progress
) -> Report:
    """The ``test_views`` report: the run's test views rendered, scored by ``scorer`` (image
    [H, W, 3] -> map [H, W]) and compared with their photos (:func:`.render_mode.score_test_views`)."""
    if inputs.render is None or inputs.dataset is None:
        raise DataError(
            f"{method} test_views needs a run directory as INPUT (its scene and the dataset of "
            "its config.json, with test views and their photos)"
        )
    m, renders, maps, masks = score_test_views(
        scorer, inputs.render, inputs.dataset, threshold, progress
    )
    vmax = float(np.percentile(np.stack(maps), 99.5))
    r8 = (renders[0] * 255 + 0.5).astype(np.uint8)
    return Report(
        title=f"{method} anomaly maps of {len(maps)} test renders vs their error masks",
        metrics={
            "pixel AUROC": m["pixel_auroc"],
            "AUPRO@0.3": m["aupro"],
            "image AUROC (render vs photo)": m["image_auroc"],
            "wrong pixels": m["error_fraction"],
        },
        images={
            "anomaly map (first test view)": heatmap_overlay(r8, maps[0], vmax, 0.5),
            "error mask (first test view)": np.repeat(masks[0][..., None] * np.uint8(255), 3, -1),
        },
        notes=[
            f"error mask: mean over R, G, B of |render - photo| > {threshold:g}",
            "image AUROC: each render (1) against the photo of the same view (0), score = map max",
        ],
    )


def add_anomaly_render_mode(
    ctx: Any, name: str, model: Any, stats: dict[str, float]
) -> None:
    """Offer ``name`` in the viewer: the current view rendered from the Gaussians shown (over the
    viewer's background), scored by ``model`` (:func:`.render_mode.scorer_for`), turbo-coloured;
    and switch to it."""

    def background() -> tuple[float, ...]:
        return tuple(getattr(ctx, "background", (0.0, 0.0, 0.0)))

    fn = anomaly_render_mode(scorer_for(model, _side(stats)), background)
    ctx.add_render_mode(name, fn, RENDER_MODE_COLORMAP, mode_value_range(stats))
    ctx.set_render_mode(name)


class RD4ADPlugin(Plugin):
    """Reverse Distillation anomaly map of an image or of the current view."""

    name = "anomaly map (RD4AD)"
    kind = "inspect"
    description = (
        "Reverse Distillation (CVPR 2022): an anomaly heatmap of an uploaded image, the INPUT image "
        "or the current view, from a model trained on normal images"
    )
    Options = AnomalyOptions
    accepts = ("image", "scene")
    upload_types = (".png", ".jpg", ".jpeg")

    def run(
        self, inputs: PluginInputs, options: AnomalyOptions, progress: Progress = no_progress
    ) -> Report:
        if options.test_views:
            model, stats = _load(options.weights, options.arch)
            return test_views_report(
                "RD4AD", scorer_for(model, _side(stats)), inputs, options.error_threshold, progress
            )
        img, source = self._image(inputs)
        progress(0.1, "loading RD4AD")
        model, stats = _load(options.weights, options.arch)
        progress(0.3, "scoring")
        x = img.astype(np.float32)[None] / 255.0
        with torch.inference_mode():
            maps, scores = score(model, x)
        progress(1.0, "done")
        return anomaly_report("RD4AD", img, source, maps[0], float(scores[0]), stats,
                              model.config.image_size, options.overlay)

    def _image(self, inputs: PluginInputs) -> tuple[np.ndarray, str]:
        return image_input(inputs, self.name, decode_image, check_image)

    def panel(self, ctx: Any) -> None:
        """The default panel (options, Run, report) plus an "Anomaly render mode" button: it
        loads the checkpoint named by the weights option and offers :data:`RENDER_MODE`."""
        super().panel(ctx)
        btn = ctx.gui.add_button(
            "Anomaly render mode", hint=f"load the weights and show the '{RENDER_MODE}' render mode"
        )
        self.panel_handles["render_mode"] = btn
        opts = self.panel_handles["options"]

        @btn.on_click
        @ctx.guard
        def _(_: Any) -> None:
            model, stats = _load(str(opts["weights"].value), str(opts["arch"].value))
            add_anomaly_render_mode(ctx, RENDER_MODE, model, stats)
