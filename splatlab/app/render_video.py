"""Render camera paths through a scene to video (mp4 via imageio-ffmpeg) or PNG frames."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..rendering.splats import render_splats, splat_sh_degree
from ..scene.camera_path import read_camera_path
from ..scene.checkpoint import load_scene


def colorize_depth(depth: np.ndarray, alpha: np.ndarray | None = None, near: float | None = None,
                   far: float | None = None) -> np.ndarray:
    """Depth [H, W] -> uint8 RGB [H, W, 3] with OpenCV's TURBO colormap (near = red end).
    ``near``/``far`` default to the 2nd / 98th percentiles of the covered pixels."""
    import cv2

    valid = np.isfinite(depth) & (depth > 0)
    if alpha is not None:
        valid &= alpha > 0.5
    if near is None or far is None:
        vals = depth[valid]
        lo, hi = (np.percentile(vals, [2, 98]) if vals.size else (0.0, 1.0))
        near = lo if near is None else near
        far = hi if far is None else far
    t = np.clip((depth - near) / max(far - near, 1e-8), 0, 1)
    img = cv2.applyColorMap(((1.0 - t) * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]
    img = np.where(valid[..., None], img, 0)
    return np.ascontiguousarray(img)


MIN_VIDEO_SIDE = 16
"""Smallest side of an mp4 this command writes (libx264's smallest macroblock is 16 pixels)."""


@torch.no_grad()
def render_camera_path(
    scene: str | os.PathLike,
    camera_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    render_mode: str = "RGB",
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Render every frame of a nerfstudio ``camera_path.json`` through ``scene`` (run directory,
    .ply or .splat; poses in the frame of the scene's parameters) into ``out`` (.mp4, or a folder
    of PNGs). Returns ``out``. The mp4 is written to a temporary file and renamed when complete."""
    import imageio.v2 as iio2
    import imageio.v3 as iio

    loaded = load_scene(scene)
    path = read_camera_path(camera_path)
    out = Path(out)
    n = len(path.viewmats)
    if n == 0:
        raise DataError(f"{camera_path} has no frames in 'camera_path'; add keyframes and export again")
    params = loaded.params
    try:
        splat_sh_degree(params)
    except ValueError as e:
        raise DataError(f"{loaded.source}: {e}") from e
    bg = torch.tensor([background], dtype=torch.float32)
    frames_dir = None if out.suffix.lower() == ".mp4" else out
    writer = None
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    if frames_dir is None:
        if min(path.width, path.height) < MIN_VIDEO_SIDE:
            raise DataError(
                f"{camera_path}: render size {path.width}x{path.height} is too small for an H.264 mp4 "
                f"(both sides >= {MIN_VIDEO_SIDE}); raise render_width/render_height or render PNG frames "
                "(--out FOLDER)"
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        writer = iio2.get_writer(tmp, fps=path.fps, codec="libx264", quality=8, macro_block_size=1)
    else:
        frames_dir.mkdir(parents=True, exist_ok=True)
    try:
        for i in range(n):
            vm = torch.as_tensor(path.viewmats[i], dtype=torch.float32)[None]
            K = torch.as_tensor(path.Ks[i], dtype=torch.float32)[None]
            img, alpha, _ = render_splats(params, vm, K, path.width, path.height, backgrounds=bg,
                                          render_mode=render_mode)
            if render_mode == "RGB":
                frame = (img[0].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
            else:
                frame = colorize_depth(img[0, ..., 0].numpy(), alpha[0, ..., 0].numpy())
            if writer is not None:
                # H.264 in yuv420p needs even sides: odd ones get their last row / column repeated
                ph, pw = frame.shape[0] % 2, frame.shape[1] % 2
                if ph or pw:
                    frame = np.pad(frame, ((0, ph), (0, pw), (0, 0)), mode="edge")
                writer.append_data(frame)
            else:
                iio.imwrite(frames_dir / f"{i:05d}.png", frame)
            if progress is not None:
                progress(i + 1, n)
    except BaseException:
        if writer is not None:
            writer.close()
            tmp.unlink(missing_ok=True)
        raise
    if writer is not None:
        try:
            writer.close()
        except (OSError, RuntimeError) as e:
            tmp.unlink(missing_ok=True)
            raise DataError(f"the video encoder failed on {out} ({e}); try PNG frames (--out FOLDER)") from e
        if not tmp.is_file() or tmp.stat().st_size == 0:
            tmp.unlink(missing_ok=True)
            raise DataError(f"the video encoder wrote nothing for {out}; try PNG frames (--out FOLDER)")
        os.replace(tmp, out)
    return out
