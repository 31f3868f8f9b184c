"""The "anomaly map (FYD)" inspect plugin: the RD4AD plugin's inputs and report, scored by a
trained FYD model (:mod:`.fyd`: coarse-to-fine alignment, then per-position Gaussians).

The image (an upload, the INPUT image, or the current view rendered from a scene) is resized to
the model's square input, scored (Mahalanobis map, blurred; image score = its max), and the map
is resized back and drawn as a JET heatmap over the image, scaled to 1.5 x the highest score of
the normal training images when the checkpoint stores it.

As the RD4AD plugin: ``test_views`` scores a run's test renders against their error masks, and
the panel's "Anomaly render mode" button offers "anomaly (FYD)" (FYD's per-position Gaussians
need its square input, so each view is resized to it and the map resized back).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ....errors import WeightsNotFoundError
from ....models.weights import load_state_dict_file
from ...base import Plugin, PluginInputs, Progress, Report, image_input, no_progress
from .fyd import FYD, TRAIN_COMMAND, load_fyd, score_fyd
from .plugin import (
    add_anomaly_render_mode,
    anomaly_report,
    check_image,
    decode_image,
    test_views_report,
)
from .render_mode import ERROR_THRESHOLD, scorer_for

__all__ = ["FYDOptions", "FYDPlugin", "FYD_RENDER_MODE"]

FYD_RENDER_MODE = "anomaly (FYD)"


@dataclass
class FYDOptions:
    """Options of the FYD anomaly map."""

    weights: str = ""
    """Path of a trained FYD checkpoint (written by fit_and_save_fyd / benchmarks/anomaly_fyd.py)."""
    overlay: float = 0.5
    """Opacity of the heatmap over the image (0 = image only, 1 = heatmap only)."""
    test_views: bool = False
    """On a run: score every test view's render against its photo (pixel AUROC, AUPRO)."""
    error_threshold: float = ERROR_THRESHOLD
    """test_views: a pixel is wrong when mean_RGB |render - photo| exceeds this (0..1)."""


_CACHE: dict[tuple[str, float], tuple[FYD, dict[str, float]]] = {}


def _load(weights: str) -> tuple[FYD, dict[str, float]]:
    if not weights:
        raise WeightsNotFoundError(
            f"anomaly map (FYD): set the 'weights' option; train one with {TRAIN_COMMAND}"
        )
    p = Path(weights).expanduser()
    if not p.is_file():
        raise WeightsNotFoundError(
            f"anomaly map (FYD): {p} does not exist; train one with {TRAIN_COMMAND}"
        )
    key = (str(p.resolve()), os.path.getmtime(p))
    if key not in _CACHE:
        model = load_fyd(p)
        stats = load_state_dict_file(p, "FYD").get("normal_scores")
        _CACHE.clear()  # keep one model in memory
        _CACHE[key] = (model, dict(stats) if isinstance(stats, dict) else {})
    return _CACHE[key]


class FYDPlugin(Plugin):
    """FYD (Focus Your Distribution, reconstructed) anomaly map of an image or the current view."""

    name = "anomaly map (FYD)"
    kind = "inspect"
    description = (
        "FYD, Focus Your Distribution (arXiv 2110.04538, reconstructed): an anomaly heatmap of an "
        "uploaded image, the INPUT image or the current view, from per-position Gaussians of "
        "aligned features of normal images"
    )
    Options = FYDOptions
    accepts = ("image", "scene")
    upload_types = (".png", ".jpg", ".jpeg")

    def run(
        self, inputs: PluginInputs, options: FYDOptions, progress: Progress = no_progress
    ) -> Report:
        if options.test_views:
            model, _ = _load(options.weights)
            return test_views_report(
                "FYD", scorer_for(model), inputs, options.error_threshold, progress
            )
        img, source = self._image(inputs)
        progress(0.1, "loading FYD")
        model, stats = _load(options.weights)
        progress(0.3, "scoring")
        with torch.inference_mode():
            maps, scores = score_fyd(model, img.astype(np.float32)[None] / 255.0)
        progress(1.0, "done")
        return anomaly_report("FYD", img, source, maps[0], float(scores[0]), stats,
                              model.config.image_size, options.overlay)

    def _image(self, inputs: PluginInputs) -> tuple[np.ndarray, str]:
        return image_input(inputs, self.name, decode_image, check_image)

    def panel(self, ctx: Any) -> None:
        """The default panel plus an "Anomaly render mode" button (:data:`FYD_RENDER_MODE`)."""
        super().panel(ctx)
        btn = ctx.gui.add_button(
            "Anomaly render mode",
            hint=f"load the weights and show the '{FYD_RENDER_MODE}' render mode",
        )
        self.panel_handles["render_mode"] = btn
        opts = self.panel_handles["options"]

        @btn.on_click
        @ctx.guard
        def _(_: Any) -> None:
            model, stats = _load(str(opts["weights"].value))
            add_anomaly_render_mode(ctx, FYD_RENDER_MODE, model, stats)
