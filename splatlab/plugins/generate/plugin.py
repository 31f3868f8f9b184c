"""The ``swiftbrush`` generate plugin: one-step text-to-image with a SwiftBrush student, the image
keyed to RGBA, fitted as a card of Gaussians and placed in the scene (or a given image placed).

    splatlab plugin run swiftbrush [SCENE] --prompt "a red apple, white background" --out DIR
    splatlab plugin run swiftbrush [SCENE] --image asset.png --pos-x 0 --pos-y 0 --pos-z 1 --out DIR

In the viewer the panel adds, once a Run has fitted an asset, "Place by click" (the card lands
where the next click in the 3D view meets the scene, facing that view), scale / yaw sliders and
"Save the scene with the asset (PLY)" (:mod:`splatlab.plugins.generate.place`).

Weights: the student ``thuanz123/swiftbrush`` (or a folder / file) and, for its text encoder and
VAE when the student folder lacks them, the SD 2.1-base teacher; see
:mod:`splatlab.models.diffusion`. Missing weights stop the run with a message that says what to
download; nothing random is generated in their place.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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
from .place import ANCHORS, card_rotation, fallback_depth, merge_gaussians, place_card, ray_hit
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
        img = one_step_generate(comps.unet, comps.scheduler, embeds, (cfg.in_channels, size, size), gen, comps.vae, t=comps.student_timestep)
    out = (img[0].permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    return out, {"load_s": t_load, "generate_s": time.perf_counter() - t0}


@dataclass
class FittedAsset:
    """The last asset a run fitted: ``card`` (Gaussians in the card frame, height 1), ``base``
    (the scene it was fitted for, or None) and ``source`` (where the image came from)."""

    card: torch.nn.ParameterDict
    base: Mapping[str, torch.Tensor] | None
    source: str


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
    last_asset: FittedAsset | None = None

    def panel(self, ctx: Any) -> None:
        """The default panel (options, Run as a job, report), then the placement controls of
        :class:`PlacePanel`."""
        super().panel(ctx)
        self.place_panel = PlacePanel(self, ctx)

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
        # what the panel's "Place by click" works from: the card (card frame) and the scene it
        # goes into (the scene of this run, so re-placing never stacks assets)
        self.last_asset = FittedAsset(card=fit.params, base=inputs.params, source=source)
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


SAVE_NAME = "scene_with_asset.ply"


def _extent(params: Mapping[str, torch.Tensor] | None) -> float:
    """Robust size of a scene: the largest 2nd-98th percentile range of its means (1.0 if none)."""
    if params is None or int(params["means"].shape[0]) < 2:
        return 1.0
    m = params["means"].detach().cpu().double()
    ext = float((m.quantile(0.98, 0) - m.quantile(0.02, 0)).max())
    return ext if ext > 1e-9 else 1.0


class PlacePanel:
    """The swiftbrush panel's placement controls and their state.

    "Place by click" arms a one-shot click handler on the browser that pressed it; the click's
    ray is intersected with the scene (:func:`~splatlab.plugins.generate.place.ray_hit` at the
    pixel's footprint; no surface under the click: the median scene depth along the ray, and
    the status says so). The card is placed there facing that view, scaled and yawed about the
    view's up axis by the sliders, merged with the scene of the Run that fitted it (edits made
    after that Run are not in it; a Run while a placement is shown fits for the merged scene, so
    assets stack) and shown instead of the scene;
    "Save" writes the merged scene as PLY (atomically, in ``ctx.out_dir``) as a job and offers
    it as a download. :meth:`place_at` is the same placement without a browser click."""

    def __init__(self, plugin: SwiftBrushPlugin, ctx: Any) -> None:
        self.plugin = plugin
        self.ctx = ctx
        gui = ctx.gui
        ext = _extent(ctx.scene())
        self.extent = ext
        self.hit: dict[str, Any] | None = None  # point, viewmat, up, hit (bool), depth
        self.merged: torch.nn.ParameterDict | None = None
        self.n_base = 0
        self.n_asset = 0
        self.saved: Path | None = None
        self._seen: FittedAsset | None = None
        self._lock = threading.Lock()
        self._dirty = False
        self._updating = False
        self._armed: tuple[Any, Any] | None = None  # (client, handler) waiting for one click
        with gui.add_folder("Place the asset"):
            self.status = gui.add_markdown("Run first: the fitted card is placed from here.")
            self.place_btn = gui.add_button("Place by click")
            self.scale = gui.add_slider(
                "asset height", min=0.01 * ext, max=ext, step=0.001 * ext, initial_value=0.25 * ext
            )
            self.yaw = gui.add_slider("asset yaw (deg)", min=-180.0, max=180.0, step=1.0, initial_value=0.0)
            self.anchor = gui.add_dropdown("anchor at the click", tuple(ANCHORS), initial_value="bottom")
            self.upright = gui.add_checkbox("keep upright", True)
            self.save_btn = gui.add_button("Save the scene with the asset (PLY)", disabled=True)
            self.remove_btn = gui.add_button("Remove the placed asset", disabled=True)
        self.place_btn.on_click(ctx.guard(self.arm))
        for h in (self.scale, self.yaw, self.anchor, self.upright):
            h.on_update(ctx.guard(lambda _e: self.request_update()))
        self.save_btn.on_click(ctx.guard(lambda _e: self.save()))
        self.remove_btn.on_click(ctx.guard(lambda _e: self.remove()))
        ctx.on("scene", self._maybe_new_asset)

    # ------------------------------------------------------------------ state
    def _maybe_new_asset(self, *_: Any) -> None:
        a = self.plugin.last_asset
        if a is None or a is self._seen:
            return
        self._seen = a
        self.hit = None
        n = int(a.card["means"].shape[0])
        self.status.content = f"Asset ready ({n:,} Gaussians, {a.source}): press **Place by click**."

    def _asset(self) -> FittedAsset:
        a = self.plugin.last_asset
        if a is None:
            raise DataError("no asset yet: press Run first (generate an image or give one)")
        self._seen = a
        return a

    # ------------------------------------------------------------------ click
    def arm(self, event: Any) -> None:
        """Wait for one click in the 3D view of the browser that pressed the button."""
        self._asset()
        client = getattr(event, "client", None)
        if client is None:
            raise DataError("no browser to click in")

        self._disarm()

        def on_click(ev: Any) -> None:
            self._disarm()
            cam = self.ctx.camera()
            if cam is None:
                raise DataError("this browser has not sent its camera yet; move the view and retry")
            up = None
            try:
                u = np.asarray(ev.client.camera.up_direction, dtype=np.float64)
                up = u if np.linalg.norm(u) > 1e-8 else None
            except (AttributeError, AssertionError):
                pass
            self.place_at(ev.ray_origin, ev.ray_direction, cam.viewmat, float(cam.K[0, 0]), up)

        handler = self.ctx.guard(on_click)
        client.scene.on_click()(handler)
        self._armed = (client, handler)
        self.status.content = "Click in the 3D view where the asset should stand."

    def _disarm(self) -> None:
        """Drop the pending one-shot click handler, if any (pressing the button twice arms once)."""
        armed, self._armed = self._armed, None
        if armed is not None:
            client, handler = armed
            try:
                client.scene.remove_click_callback(handler)
            except (KeyError, ValueError):  # already gone (the browser left)
                pass

    def place_at(
        self,
        origin: Any,
        direction: Any,
        viewmat: Any,
        focal_px: float,
        up: Any = None,
    ) -> dict[str, Any]:
        """Place the asset where the ray ``origin`` + t ``direction`` meets the scene, facing
        the camera ``viewmat`` ([4, 4] OpenCV world-to-camera, focal length ``focal_px``),
        upright along ``up`` (None: the camera's up). Returns the hit record."""
        a = self._asset()
        base = a.base
        o = np.asarray(origin, dtype=np.float64).reshape(3)
        d = np.asarray(direction, dtype=np.float64).reshape(3)
        d = d / max(float(np.linalg.norm(d)), 1e-12)
        h = ray_hit(base, o, d, focal_px=focal_px) if base is not None else None
        if h is not None:
            rec = {"point": h.point, "hit": True, "depth": h.depth}
        else:
            depth = fallback_depth(base, o, d)
            rec = {"point": o + depth * d, "hit": False, "depth": depth}
        rec.update(viewmat=np.asarray(viewmat, dtype=np.float64), up=up)
        self.hit = rec
        self.update()
        return rec

    # ------------------------------------------------------------------ placement
    def request_update(self) -> None:
        """Re-place after a slider change; concurrent calls coalesce (the latest values win)."""
        with self._lock:
            self._dirty = True
            if self._updating:
                return
            self._updating = True
        try:
            while True:
                with self._lock:
                    if not self._dirty:
                        self._updating = False
                        return
                    self._dirty = False
                self.update()
        except BaseException:
            with self._lock:
                self._updating = False
            raise

    def update(self) -> None:
        """Place the card at the current hit with the sliders' values; show base + card."""
        if self.hit is None or self.plugin.last_asset is None:
            return
        a = self.plugin.last_asset
        h = self.hit
        R = card_rotation(h["viewmat"], h["up"], float(self.yaw.value), bool(self.upright.value))
        asset = place_card(a.card, h["point"], float(self.scale.value), R, self.anchor.value)
        merged = merge_gaussians(a.base, asset)
        self.merged = merged
        self.n_base = 0 if a.base is None else int(a.base["means"].shape[0])
        self.n_asset = int(asset["means"].shape[0])
        self.ctx.show_scene(merged, how="instead")
        p = h["point"]
        where = (
            f"on the scene at depth {h['depth']:.3g}"
            if h["hit"]
            else f"nothing under the click: {h['depth']:.3g} along the ray (the scene's median depth)"
        )
        self.status.content = (
            f"Placed at ({p[0]:.3g}, {p[1]:.3g}, {p[2]:.3g}), {where}. Merged: "
            f"{self.n_base:,} + {self.n_asset:,} = **{self.n_base + self.n_asset:,}** Gaussians."
        )
        self.save_btn.disabled = False
        self.remove_btn.disabled = False

    def remove(self) -> None:
        self.hit = None
        self.merged = None
        self.ctx.clear_scene()
        self.save_btn.disabled = True
        self.remove_btn.disabled = True
        self.status.content = "Placement removed; press **Place by click** to place it again."

    # ------------------------------------------------------------------ saving
    def save(self) -> Any:
        """Write the merged scene to ``ctx.out_dir / scene_with_asset.ply`` (atomic) as a job;
        then offer it as a download. Returns the job."""
        if self.merged is None:
            raise DataError("place the asset first (Place by click)")
        merged = self.merged
        ctx = self.ctx
        out = Path(ctx.out_dir) / SAVE_NAME
        # the viewer may show a scene in a normalised frame; a context that tells it
        # (scene_transform() -> [4, 4] normalised <- original) gets the file in the original one
        tf_fn = getattr(ctx, "scene_transform", None)
        transform = tf_fn() if callable(tf_fn) else None

        def job(progress: Any) -> Path:
            from ...scene.formats import save_scene_file

            progress(0.1, f"writing {merged['means'].shape[0]:,} Gaussians")
            path = save_scene_file(out, merged, format="ply", transform=transform)
            progress(1.0, "written")
            return path

        def done(path: Path) -> None:
            self.saved = path
            frame = "" if transform is not None else " (in the viewer's coordinates)"
            self.status.content += f"\n\nSaved `{path}`{frame}."
            try:
                ctx.download(path.name, path)
            except RuntimeError:  # no browser connected: the file is on disk
                pass

        return ctx.run_job(job, label="save the scene with the asset", on_done=done)
