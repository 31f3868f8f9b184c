"""The INR image codec as a ``compress`` plugin: compress an image (the INPUT, an upload, or the
current view), return the bitstream, the decoded image, its error map, bytes / bpp / PSNR /
MS-SSIM, and where it sits on the RD plot against JPEG, WebP, AVIF, HEVC and JPEG XL."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ....errors import DataError
from ...base import Plugin, PluginInputs, Progress, Report, no_progress
from .. import rd
from .codec import CodecOptions, decode, encode_image, parse_arch_candidates
from .model import ups_names


@dataclass
class InrOptions:
    """Options of the INR image codec plugin."""

    lmbda: float = 1e-3
    """Rate knob: loss = MSE + lambda * bpp (larger: smaller file, lower quality)."""
    steps: int = 600
    """Training iterations (encode time grows linearly; Cool-chic uses ~10^5)."""
    enhance: int = 0
    """EQLINR enhancement CNN channels after the synthesis (0: off, e.g. 8)."""
    arm_hidden: int = 8
    """ARM hidden width. The plugin's 8 / 12 (the library's CodecOptions: 16 / 24) with learned
    per-step upsampling: -9.9 % BD-rate against 16 / 24 bilinear at 600 steps on six 192 px Kodak
    crops, ~8 % more encode time; at 10000 steps -4.0 % against AVIF (BENCHMARKS.md)."""
    syn_hidden: int = 12
    """Synthesis hidden channels."""
    arch_candidates: str = ""
    """Further (ARM hidden, synthesis hidden) pairs to encode with, e.g. "8,12" or "8,12; 12,16";
    the file with the lowest MSE + lambda bpp is kept (each pair adds one encode time). With
    bilinear upsampling at 2000 steps, "8,12" beside (16, 24) won 17 of 18 files on 192 px Kodak
    crops (BENCHMARKS.md, session 8)."""
    quantizer: Literal["softround", "gumbel"] = "softround"
    """Latent quantiser in training: C3 soft-round + Kumaraswamy noise, or EQLINR Gumbel annealing."""
    upsampling: Literal["bilinear", "learned", "learned_per_step"] = "learned_per_step"
    """Latent upsampling: fixed bilinear, or learned symmetric 8-tap kernels (one for all 2x steps,
    or one per step), coded in the file (Cool-chic 3.3 / 3.4). Per step saved 3.0 % BD-rate
    against bilinear at 6000 steps on 192 px Kodak crops, for ~25 % more encode time
    (BENCHMARKS.md). The setting that reaches -4.0 % BD-rate against AVIF on those crops: these
    defaults with steps 10000 (~400 s per 192 px image on one CPU thread)."""
    max_side: int = 256
    """Larger inputs are downscaled (Lanczos) to this longest side first (0: never)."""
    anchors: bool = True
    """Code the same image with JPEG / WebP / AVIF / HEVC / JPEG XL for the RD plot."""
    seed: int = 0
    """Training seed."""


def _decode_upload(name: str, data: bytes) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"upload {name!r} is not a readable image ({e}); upload a .png or .jpg") from e


def _error_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| averaged over channels, x4, turbo colour map. Returns uint8 [H, W, 3]."""
    import cv2

    err = np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(-1)
    v = np.clip(err * 4.0, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(cv2.applyColorMap(v, cv2.COLORMAP_TURBO)[..., ::-1])


class InrImageCodec(Plugin):
    name = "inr image codec"
    kind = "compress"
    description = (
        "COOL-CHIC / C3 style neural image codec (overfitted latent grids, ARM entropy model, "
        "EQLINR options) with a real bitstream, against JPEG, WebP, AVIF, HEVC and JPEG XL."
    )
    Options = InrOptions
    accepts = ("image", "scene")
    upload_types = (".png", ".jpg")

    def _image(self, inputs: PluginInputs) -> tuple[np.ndarray, str]:
        if inputs.uploads:
            name, data = next(iter(inputs.uploads.items()))
            return _decode_upload(name, data), name
        if inputs.image is not None:
            return np.asarray(inputs.image, dtype=np.uint8), str(inputs.path or "image")
        if inputs.render is not None and inputs.camera is not None:
            return np.asarray(inputs.render(inputs.camera, "RGB"), dtype=np.uint8), "current view"
        raise DataError(
            "inr image codec needs an image: pass a .png/.jpg as INPUT, upload one, or open a "
            "scene and compress the current view"
        )

    def run(self, inputs: PluginInputs, options: InrOptions, progress: Progress = no_progress) -> Report:
        img, source = self._image(inputs)
        if img.ndim != 3 or img.shape[2] != 3:
            raise DataError(f"{source}: expected an RGB image, got shape {img.shape}")
        notes = []
        h, w = img.shape[:2]
        if options.max_side and max(h, w) > options.max_side:
            from PIL import Image

            s = options.max_side / max(h, w)
            size = (max(8, round(w * s)), max(8, round(h * s)))
            img = np.asarray(Image.fromarray(img).resize(size, Image.LANCZOS))
            notes.append(f"{source} ({w}x{h}) was downscaled to {size[0]}x{size[1]} (max_side).")
        h, w = img.shape[:2]
        share = 0.85 if options.anchors else 1.0
        copts = CodecOptions(lmbda=options.lmbda, steps=options.steps, enhance=options.enhance,
                             arm_hidden=options.arm_hidden, syn_hidden=options.syn_hidden,
                             quantizer=options.quantizer, seed=options.seed, upsampling=options.upsampling,
                             arch_candidates=parse_arch_candidates(options.arch_candidates))
        res = encode_image(img, copts, lambda f, m="": progress(share * f, m))
        t0 = time.perf_counter()
        out = decode(res.data)
        dec_s = time.perf_counter() - t0
        nbytes = len(res.data)
        ours = rd.RDPoint("INR (ours)", options.lmbda, nbytes, 8 * nbytes / (h * w),
                          rd.psnr(out, img), rd.ms_ssim(out, img), res.encode_seconds, dec_s)
        metrics = {
            "bytes": float(nbytes),
            "bpp": ours.bpp,
            "psnr_db": ours.psnr,
            "ms_ssim": ours.ms_ssim,
            "estimated_bpp": res.estimated_bits["total"] / (h * w),
            "estimate_over_file": res.estimated_bits["total"] / (8 * nbytes),
            "weights_bits": res.estimated_bits["weights"],
            "latent_bits": res.estimated_bits["latents"],
            "encode_s": res.encode_seconds,
            "decode_s": dec_s,
            "mac_per_pixel": res.arch.mac_per_pixel(),
            "arm_hidden": float(res.arch.arm_hidden),
            "syn_hidden": float(res.arch.syn_hidden),
            "upsampling_kernels": float(len(ups_names(res.arch))),
        }
        report = Report(
            title=f"INR image codec: {source}",
            metrics=metrics,
            images={"original": img, "decoded": out, "error x4": _error_map(out, img)},
            files={"image.inr": res.data},
            notes=notes + [
                "Rates are the file's bytes; estimated_bpp is the entropy model's estimate.",
                f"Weight steps 2^-k: {res.steps}.",
            ],
        )
        curves: dict[str, list[rd.RDPoint]] = {}
        if options.anchors:
            names = list(rd.ANCHORS)
            for i, codec in enumerate(names):
                progress(share + (1 - share) * i / len(names), f"anchor {codec}")
                try:
                    curves[codec] = rd.anchor_curve(codec, img)
                except rd.ToolNotFoundError as e:
                    report.notes.append(str(e))
            report.tables["rd points"] = rd.points_table([*curves.values(), [ours]])
        try:
            report.plots["rate-distortion"] = rd.rd_figure(curves, highlight=ours,
                                                           title=f"RD: {source}")
        except ImportError:
            report.notes.append("plotly is not installed: no RD figure")
        progress(1.0, "done")
        return report
