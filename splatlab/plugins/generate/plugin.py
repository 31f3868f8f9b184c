"""The ``swiftbrush`` generate plugin: one-step text-to-image with a SwiftBrush student, the image
keyed to RGBA, fitted as a card of Gaussians and placed in the scene (or a given image placed).

    splatlab plugin run swiftbrush [SCENE] --prompt "a red apple, white background" --out DIR
    splatlab plugin run swiftbrush [SCENE] --image asset.png --pos-x 0 --pos-y 0 --pos-z 1 --out DIR

Weights: the student ``thuanz123/swiftbrush`` (or a folder / file) and, for its text encoder and
VAE when the student folder lacks them, the SD 2.1-base teacher; see
:mod:`splatlab.models.diffusion`. Missing weights stop the run with a message that says what to
download; nothing random is generated in their place.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ...errors import DataError
from ...models.diffusion import STUDENT_ID, TEACHER_ID, load_student
from ..base import Plugin, PluginInputs, Progress, Report, no_progress
from .asset import (
    fit_card,
    merge_scenes,
    place_asset,
    render_card,
    rgba_from_image,
    rotation_facing_camera,
    rotation_from_euler,
)
from .swiftbrush import one_step_generate


@dataclass
class SwiftBrushOptions:
    """Options of the SwiftBrush generate plugin."""

    prompt: str = "a red apple on a plain white background"
    """Text prompt of the one-step student (ignored when --image is given)."""
    student: str = STUDENT_ID
    """SwiftBrush student: hub id (from the Hugging Face cache), pipeline / UNet folder or file."""
    teacher: str = TEACHER_ID
    """SD 2.1-base pipeline giving text encoder / VAE when the student folder lacks them."""
    image: str = ""
    """An image file (RGBA, or RGB keyed on its border colour) to place instead of generating."""
    seed: int = 0
    """Seed of the student's input noise."""
    key_tolerance: float = 0.08
    """Background key: colour distance (0..1) under which a pixel is transparent."""
    fit_size: int = 96
    """The image is resized to this longest side before fitting (one Gaussian per pixel)."""
    fit_steps: int = 150
    """Adam steps of the card fit."""
    pos_x: float = 0.0
    """Card centre, x (scene units)."""
    pos_y: float = 0.0
    """Card centre, y."""
    pos_z: float = 0.0
    """Card centre, z."""
    scale: float = 1.0
    """Card height in scene units."""
    yaw: float = 0.0
    """Rotation about the card's vertical axis, degrees (after facing the camera, if any)."""
    pitch: float = 0.0
    """Rotation about the card's horizontal axis, degrees."""
    roll: float = 0.0
    """Rotation in the card's plane, degrees."""
    face_camera: bool = True
    """Turn the card to face the current view (viewer) / first test camera (when there is one)."""
    model_device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the student runs (auto: CUDA when available)."""


def _read_rgba(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            has_alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
            return np.asarray(im.convert("RGBA" if has_alpha else "RGB"), dtype=np.uint8)
    except (FileNotFoundError, UnidentifiedImageError, OSError) as e:
        raise DataError(f"--image {path}: not a readable image ({type(e).__name__}: {e})") from e


def _resize(img: np.ndarray, max_side: int) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    if max_side <= 0 or max(h, w) <= max_side:
        return img
    s = max_side / max(h, w)
    size = (max(4, round(w * s)), max(4, round(h * s)))
    return np.asarray(Image.fromarray(img).resize(size, Image.LANCZOS))


def generate_image(options: SwiftBrushOptions, device: str) -> tuple[np.ndarray, dict[str, float]]:
    """One image from the student for ``options.prompt``. Returns (uint8 [H, W, 3], timings)."""
    t0 = time.perf_counter()
    comps = load_student(options.student, options.teacher, device=device)
    if comps.tokenizer is None or comps.text_encoder is None:
        raise DataError(
            f"the student {options.student} / teacher {options.teacher} have no tokenizer/text "
            "encoder; pass a diffusers pipeline folder (tokenizer/, text_encoder/)"
        )
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.no_grad():
        ids = comps.tokenizer(
            [options.prompt], padding="max_length", max_length=comps.tokenizer.model_max_length,
            truncation=True, return_tensors="pt",
        ).input_ids.to(device)
        embeds = comps.text_encoder(ids)[0]
        cfg = comps.unet.config
        size = cfg.sample_size if isinstance(cfg.sample_size, int) else cfg.sample_size[0]
        gen = torch.Generator().manual_seed(int(options.seed))
        img = one_step_generate(comps.unet, comps.scheduler, embeds, (cfg.in_channels, size, size), gen, comps.vae)
    out = (img[0].permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    return out, {"load_s": t_load, "generate_s": time.perf_counter() - t0}


class SwiftBrushPlugin(Plugin):
    name = "swiftbrush"
    kind = "generate"
    description = (
        "SwiftBrush one-step text-to-image (VSD-distilled SD 2.1-base); the image becomes a "
        "card of Gaussians placed in the scene (or place your own image with --image)."
    )
    Options = SwiftBrushOptions
    accepts = ("none", "scene")
    upload_types = (".png", ".jpg")

    def run(self, inputs: PluginInputs, options: SwiftBrushOptions, progress: Progress = no_progress) -> Report:
        device = options.model_device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        metrics: dict[str, float] = {}
        notes: list[str] = []
        progress(0.0, "preparing the image")
        if inputs.uploads:
            name, data = next(iter(inputs.uploads.items()))
            with tempfile.TemporaryDirectory() as td:
                p = Path(td) / Path(name).name
                p.write_bytes(data)
                img = _read_rgba(p)
            source = f"upload {name}"
        elif options.image:
            img = _read_rgba(Path(options.image).expanduser())
            source = options.image
        else:
            progress(0.02, "loading the SwiftBrush student")
            img, timing = generate_image(options, device)
            metrics.update(timing)
            source = f"SwiftBrush: {options.prompt!r} (seed {options.seed})"
        progress(0.3, "keying the background")
        img_fit = _resize(img, options.fit_size)
        rgba = rgba_from_image(img_fit, tolerance=options.key_tolerance)
        fit = fit_card(rgba, steps=options.fit_steps, progress=lambda f, m="": progress(0.3 + 0.6 * f, m))
        metrics.update(
            card_psnr_db=fit.psnr_db, card_alpha_psnr_db=fit.alpha_psnr_db, fit_s=fit.seconds,
            n_asset_gaussians=float(fit.params["means"].shape[0]),
        )
        R = rotation_from_euler(options.yaw, options.pitch, options.roll)
        cam = inputs.camera
        if options.face_camera and cam is not None:
            R = rotation_facing_camera(np.asarray(cam.viewmat)) @ R
            notes.append("The card faces the input's camera.")
        asset = place_asset(fit.params, (options.pos_x, options.pos_y, options.pos_z), options.scale, R)
        scene = merge_scenes(inputs.params, asset)
        progress(0.95, "writing the PLY")
        from ...scene.gaussians import save_ply

        with tempfile.TemporaryDirectory() as td:
            ply = save_ply(Path(td) / "asset.ply", asset)
            asset_bytes = ply.read_bytes()
        with torch.no_grad():
            front, alpha = render_card(fit.params, rgba.shape[0], rgba.shape[1])
        images = {
            "image": img[..., :3],
            "alpha": (rgba[..., 3] * 255 + 0.5).astype(np.uint8),
            "card front render": (front.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8),
        }
        metrics["n_scene_gaussians"] = float(scene["means"].shape[0])
        notes.append(
            f"Source: {source}. Card height {options.scale} at ({options.pos_x}, {options.pos_y}, "
            f"{options.pos_z}); front-view PSNR {fit.psnr_db:.1f} dB (on black), alpha PSNR "
            f"{fit.alpha_psnr_db:.1f} dB."
        )
        progress(1.0, "done")
        return Report(
            title=f"swiftbrush asset: {source}",
            metrics=metrics,
            images=images,
            files={"asset.ply": asset_bytes},
            scene=scene,
            notes=notes,
        )

