"""The ``scene codec`` compress plugin: splatlab's own ``.slsc`` scene format
(:mod:`splatlab.scene.formats.slsc`: prune by global significance, SH vector quantisation, Morton
sort, quantisation, zstd) run on a scene, with size, ratio and test PSNR of exactly the decoded
bitstream."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ...errors import DataError
from ...scene.formats.slsc import (
    QUALITY_PRESETS,
    CodecSettings,
    decode_scene,
    encode_scene,
    significance,
)
from ..base import Plugin, PluginInputs, Progress, Report, no_progress

__all__ = [
    "QUALITY_PRESETS",
    "CodecSettings",
    "significance",
    "encode_scene",
    "decode_scene",
    "SceneCodecOptions",
    "SceneCodecPlugin",
]


# --------------------------------------------------------------------------------------------
# Plugin
# --------------------------------------------------------------------------------------------


@dataclass
class SceneCodecOptions:
    quality: int = 3
    """Rate point 1 (smallest file) .. 5 (best quality)."""
    prune: float = -1.0
    """Fraction of Gaussians to prune by global significance; -1 uses the quality preset."""
    sh_degree: int = -1
    """Keep SH bands up to this degree; -1 keeps all stored bands."""
    significance_views: int = 16
    """Training views used for the pruning significance (0: volume x opacity instead)."""
    kmeans_iterations: int = 10
    """k-means passes of the SH vector quantisation."""


def _ply_size(n: int, k_rest: int) -> int:
    """Bytes of the INRIA PLY of n Gaussians (our save_ply: 17 + 3 k_rest float properties)."""
    from ...scene.gaussians import _inria_names

    names = _inria_names(k_rest)
    header = "ply\nformat binary_little_endian 1.0\n" + f"element vertex {n}\n"
    header += "".join(f"property float {nm}\n" for nm in names) + "end_header\n"
    return len(header.encode()) + 4 * len(names) * n


class SceneCodecPlugin(Plugin):
    name = "scene codec"
    kind = "compress"
    description = (
        "Compress the scene (prune, SH vector quantisation, Morton sort, quantisation, zstd) and "
        "measure size, ratio and test PSNR of the decoded scene."
    )
    Options = SceneCodecOptions
    accepts = ("scene",)

    def run(
        self, inputs: PluginInputs, options: SceneCodecOptions, progress: Progress = no_progress
    ) -> Report:
        if inputs.params is None:
            raise DataError("the scene codec needs a scene (a run directory or a scene file)")
        params = {k: v.detach().cpu() for k, v in inputs.params.items()}
        dataset = inputs.dataset
        cameras = None
        if dataset is not None and options.significance_views > 0:
            ids = list(dataset.train_ids or range(len(dataset.frames)))
            step = max(1, len(ids) // options.significance_views)
            cameras = [
                (f.viewmat, f.K, f.width, f.height)
                for f in (dataset.frames[i] for i in ids[::step][: options.significance_views])
            ]
        t0 = time.perf_counter()
        data = encode_scene(
            params,
            options.quality,
            prune=None if options.prune < 0 else options.prune,
            sh_degree=None if options.sh_degree < 0 else options.sh_degree,
            cameras=cameras,
            kmeans_iterations=options.kmeans_iterations,
            progress=lambda f, m="": progress(0.8 * f, m),
        )
        t_enc = time.perf_counter() - t0
        t0 = time.perf_counter()
        decoded = decode_scene(data)
        t_dec = time.perf_counter() - t0
        n = int(params["means"].shape[0])
        ply = _ply_size(n, int(params["shN"].shape[1]))
        metrics = {
            "size_bytes": float(len(data)),
            "ply_bytes": float(ply),
            "ratio_vs_ply": ply / len(data),
            "n_gaussians": float(n),
            "n_kept": float(decoded["means"].shape[0]),
            "encode_s": t_enc,
            "decode_s": t_dec,
        }
        notes = []
        if dataset is not None and dataset.test_ids:
            from ...rendering.metrics import psnr, ssim
            from ...rendering.splats import render_splats

            bg = torch.tensor(dataset.background or (0.0, 0.0, 0.0), dtype=torch.float32)[None]
            rows = {"original": [], "decoded": [], "ssim_original": [], "ssim_decoded": []}
            for j, i in enumerate(dataset.test_ids):
                f = dataset.frames[i]
                vm = torch.as_tensor(f.viewmat, dtype=torch.float32)[None]
                K = torch.as_tensor(f.K, dtype=torch.float32)[None]
                gt = torch.as_tensor(dataset.load_image(i), dtype=torch.float32)
                for key, sc in (("original", params), ("decoded", decoded)):
                    with torch.no_grad():
                        img = render_splats(sc, vm, K, f.width, f.height, backgrounds=bg)[0][
                            0
                        ].clamp(0, 1)
                    rows[key].append(float(psnr(img, gt)))
                    rows[f"ssim_{key}"].append(float(ssim(img[None], gt[None])[0]))
                progress(0.8 + 0.2 * (j + 1) / len(dataset.test_ids), "test views")
            metrics["psnr_original"] = float(np.mean(rows["original"]))
            metrics["psnr_decoded"] = float(np.mean(rows["decoded"]))
            metrics["psnr_loss_db"] = metrics["psnr_original"] - metrics["psnr_decoded"]
            metrics["ssim_original"] = float(np.mean(rows["ssim_original"]))
            metrics["ssim_decoded"] = float(np.mean(rows["ssim_decoded"]))
        else:
            notes.append("no dataset: size and ratio only (run on a run directory for test PSNR)")
        return Report(
            title=f"scene codec, quality {options.quality}",
            metrics=metrics,
            notes=notes,
            files={"scene.slsc": data},
            scene=decoded,
        )
