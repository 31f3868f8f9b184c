"""The "anomaly map (FYD)" inspect plugin: the RD4AD plugin's inputs and report, scored by a
trained FYD model (:mod:`.fyd`: coarse-to-fine alignment, then per-position Gaussians).

The image (an upload, the INPUT image, or the current view rendered from a scene) is resized to
the model's square input, scored (Mahalanobis map, blurred; image score = its max), and the map
is resized back and drawn as a JET heatmap over the image, scaled to 1.5 x the highest score of
the normal training images when the checkpoint stores it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ....errors import WeightsNotFoundError
from ....models.weights import load_state_dict_file
from ...base import Plugin, PluginInputs, Progress, Report, image_input, no_progress
from .fyd import FYD, TRAIN_COMMAND, load_fyd, score_fyd
from .plugin import anomaly_report, check_image, decode_image

__all__ = ["FYDOptions", "FYDPlugin"]


@dataclass
class FYDOptions:
    """Options of the FYD anomaly map."""

    weights: str = ""
    """Path of a trained FYD checkpoint (written by fit_and_save_fyd / benchmarks/anomaly_fyd.py)."""
    overlay: float = 0.5
    """Opacity of the heatmap over the image (0 = image only, 1 = heatmap only)."""


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
