"""The "image coding for machines" compress plugin: code an image (the INPUT, an upload or the
current view) with a trained ICM checkpoint (ARR + mean-scale hyperprior + frozen segmentation
net + the bridge's human decoder), and show the bytes, the machine's and the human's decoded
images of the SAME bitstream, and the task's output on the original and on each decoding.

Without labels for an arbitrary image, the task metrics compare the segmentation of each decoded
image with the segmentation of the original (agreement), not with ground truth; the benchmark
(benchmarks/icm_bench.py) measures mIoU against the demo's ground-truth labels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ....errors import DataError
from ...base import Plugin, PluginInputs, Progress, Report, no_progress
from .. import rd
from .codec import image_to_tensor, tensor_to_image
from .task import label_colors, mean_iou
from .train import IcmBundle, load_bundle

__all__ = ["IcmOptions", "IcmCodecPlugin"]

_CACHE: dict[tuple[str, float], IcmBundle] = {}


@dataclass
class IcmOptions:
    """Options of the image-coding-for-machines plugin."""

    checkpoint: str = ""
    """ICM checkpoint (.pt) to use; make one with `python -m splatlab.plugins.compress.icm.train --out icm_demo.pt`."""
    use_arr: bool = True
    """Pass the image through the checkpoint's ARR module (C colour levels) before coding, when it has one."""
    max_side: int = 512
    """Larger inputs are downscaled (Lanczos) to this longest side first (0: never)."""


def _decode_upload(name: str, data: bytes) -> np.ndarray:
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"upload {name!r} is not a readable image ({e}); upload a .png or .jpg") from e


def _bundle(path: str) -> IcmBundle:
    p = Path(path).expanduser()
    key = (str(p.resolve()) if p.exists() else str(p), p.stat().st_mtime if p.is_file() else 0.0)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = load_bundle(path)
    return _CACHE[key]


class IcmCodecPlugin(Plugin):
    name = "image coding for machines"
    kind = "compress"
    description = (
        "Learned image codec (mean-scale hyperprior, constriction bitstream) trained for a "
        "segmentation network, with ARR colour-level reduction (ICIP 2024) and a PatchGAN "
        "human decoder of the same bitstream (ICIP 2022)."
    )
    Options = IcmOptions
    accepts = ("image", "scene")
    upload_types = (".png", ".jpg")

    def _image(self, inputs: PluginInputs) -> tuple[np.ndarray, str]:
        if inputs.uploads:
            name, data = next(iter(inputs.uploads.items()))
            return _decode_upload(name, data), name
        if inputs.image is not None:
            return np.asarray(inputs.image), str(inputs.path or "image")
        if inputs.render is not None and inputs.camera is not None:
            return np.asarray(inputs.render(inputs.camera, "RGB"), dtype=np.uint8), "current view"
        raise DataError("image coding for machines needs an image: pass a .png/.jpg as INPUT, "
                        "upload one, or open a scene and code the current view")

    def run(self, inputs: PluginInputs, options: IcmOptions,
            progress: Progress = no_progress) -> Report:
        if options.max_side < 0:
            raise DataError(f"max_side must be >= 0, got {options.max_side}")
        bundle = _bundle(options.checkpoint)
        img, source = self._image(inputs)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise DataError(f"{source}: expected a uint8 RGB image [H, W, 3], got {img.dtype} "
                            f"{img.shape}")
        if min(img.shape[:2]) < 16:
            raise DataError(f"{source}: {img.shape[1]}x{img.shape[0]} px is too small (>= 16 px)")
        notes: list[str] = []
        h, w = img.shape[:2]
        if options.max_side and max(h, w) > options.max_side:
            from PIL import Image

            s = options.max_side / max(h, w)
            size = (max(16, round(w * s)), max(16, round(h * s)))
            img = np.asarray(Image.fromarray(img).resize(size, Image.LANCZOS))
            notes.append(f"{source} ({w}x{h}) was downscaled to {size[0]}x{size[1]} (max_side).")
        h, w = img.shape[:2]
        codec, task = bundle.codec, bundle.task
        progress(0.1, "coding")
        with torch.no_grad():
            arr_img = None
            src = img
            if options.use_arr and bundle.arr is not None:
                arr_img = tensor_to_image(bundle.arr(image_to_tensor(img)))
                src = arr_img
            t0 = time.perf_counter()
            data = codec.compress(src)
            enc_s = time.perf_counter() - t0
            progress(0.5, "decoding")
            t0 = time.perf_counter()
            machine = codec.decompress(data)
            dec_s = time.perf_counter() - t0
            human = codec.decompress(data, decoder=bundle.human_decoder) \
                if bundle.human_decoder is not None else None

            def seg(a: np.ndarray) -> np.ndarray:
                return task(_pad4(image_to_tensor(a))).argmax(1)[0, :h, :w].numpy()

            seg_orig = seg(img)
            seg_m = seg(machine)
            seg_h = seg(human) if human is not None else None
        n = task.n_classes
        metrics: dict[str, float] = {
            "bytes": float(len(data)),
            "bpp": 8.0 * len(data) / (h * w),
            "psnr_machine_db": rd.psnr(machine, img),
            "ms_ssim_machine": rd.ms_ssim(machine, img),
            "task_agreement_machine_miou": mean_iou(seg_m, seg_orig, n),
            "encode_s": enc_s,
            "decode_s": dec_s,
        }
        images = {"original": img}
        if arr_img is not None:
            images[f"ARR input ({bundle.arr.levels} levels)"] = arr_img
            metrics["arr_levels_used"] = float(len(np.unique(arr_img.reshape(-1, 3), axis=0)))
        images["decoded for the machine"] = machine
        if human is not None:
            images["decoded for humans (bridge)"] = human
            metrics["psnr_human_db"] = rd.psnr(human, img)
            metrics["ms_ssim_human"] = rd.ms_ssim(human, img)
            metrics["task_agreement_human_miou"] = mean_iou(seg_h, seg_orig, n)
        else:
            notes.append("the checkpoint has no bridge (human) decoder")
        images["task on original"] = label_colors(seg_orig)
        images["task on machine decoding"] = label_colors(seg_m)
        if seg_h is not None:
            images["task on human decoding"] = label_colors(seg_h)
        if bundle.label_names:
            present = sorted(set(np.unique(seg_m).tolist()))
            notes.append("classes found in the machine decoding: "
                         + ", ".join(bundle.label_names[i] for i in present
                                     if i < len(bundle.label_names)))
        notes.append("Rates are the file's bytes (header included). Task agreement is the mIoU "
                     "of the segmentation of a decoding against that of the original.")
        progress(1.0, "done")
        return Report(title=f"Image coding for machines: {source}", metrics=metrics,
                      images=images, files={"image.icm": data}, notes=notes)


def _pad4(x: Any) -> Any:
    import torch.nn.functional as F

    h, w = x.shape[2:]
    return F.pad(x, (0, (-w) % 4, 0, (-h) % 4), mode="replicate")

