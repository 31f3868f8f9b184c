"""The INR video codec as a ``compress`` plugin: compress a camera-path video rendered from the
scene (an orbit of the current view) or the first frames of a video file, and compare it with
x264 and x265 (ffmpeg) on the same frames: bytes, bpp, PSNR, MS-SSIM, RD plot, BD-rates."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ....errors import DataError
from ...base import Plugin, PluginInputs, Progress, Report, SimpleCamera, no_progress
from .. import rd
from .plugin import _error_map
from .video import VideoOptions, decode_video, encode_video, sequence_psnr

__all__ = ["InrVideoOptions", "InrVideoCodec", "orbit_cameras", "read_video_frames"]


@dataclass
class InrVideoOptions:
    """Options of the INR video codec plugin."""

    lmbda: float = 1e-3
    """Rate knob: loss = MSE + lambda * bpp (larger: smaller file, lower quality)."""
    steps: int = 800
    """Training iterations (encode time grows linearly)."""
    t_log2: int = 3
    """Latent slices every 2^t_log2 frames."""
    frames: int = 32
    """Frames of the camera path (or read from the video file)."""
    degrees: float = 20.0
    """Orbit sweep of the camera path around the point the current view looks at."""
    max_side: int = 128
    """Longest side of the frames (renders and video files are scaled to it)."""
    anchors: bool = True
    """Code the same frames with x264 and x265 (ffmpeg) for the RD plot and BD-rates."""
    seed: int = 0
    """Training seed."""


def orbit_cameras(camera: Any, n: int, degrees: float, pivot_depth: float,
                  max_side: int = 0) -> list[SimpleCamera]:
    """``n`` views sweeping ``degrees`` (centred on ``camera``) around the point ``pivot_depth``
    ahead of it, rotating about the camera's own vertical axis; each still looks at the pivot.
    ``max_side``: scale the intrinsics so the longest side is at most this (0: keep)."""
    V = np.asarray(camera.viewmat, np.float64)
    K = np.asarray(camera.K, np.float64).copy()
    w, h = int(camera.width), int(camera.height)
    if max_side and max(w, h) > max_side:
        s = max_side / max(w, h)
        w2, h2 = max(8, round(w * s)), max(8, round(h * s))
        K[0] *= w2 / w
        K[1] *= h2 / h
        w, h = w2, h2
    p = np.array([0.0, 0.0, pivot_depth])
    out = []
    for th in np.radians(np.linspace(-degrees / 2, degrees / 2, n)):
        c, s_ = np.cos(th), np.sin(th)
        R = np.array([[c, 0.0, s_], [0.0, 1.0, 0.0], [-s_, 0.0, c]])
        centre = p - R @ p  # the new camera centre in the old camera's frame
        T = np.eye(4)
        T[:3, :3] = R.T
        T[:3, 3] = -R.T @ centre
        out.append(SimpleCamera((T @ V).astype(np.float32), K.astype(np.float32), w, h))
    return out


def _pivot_depth(params: Any, viewmat: np.ndarray) -> float:
    """Median depth of the Gaussians in front of the camera (the distance the view looks at)."""
    import torch

    m = torch.as_tensor(params["means"]).detach().cpu().double().numpy()
    z = (m @ np.asarray(viewmat, np.float64)[:3, :3].T + np.asarray(viewmat, np.float64)[:3, 3])[:, 2]
    z = z[z > 0]
    if not z.size:
        raise DataError("no Gaussian is in front of the current view: turn towards the scene")
    return float(np.median(z))


def read_video_frames(path: Path, n: int, max_side: int) -> np.ndarray:
    """The first ``n`` frames of a video file as uint8 [T, H, W, 3], scaled so the longest side
    is at most ``max_side`` (even sizes), through ffmpeg / ffprobe."""
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    if ffmpeg is None or ffprobe is None:
        raise rd.ToolNotFoundError(f"{path}: reading a video needs ffmpeg, which is not installed; "
                                   "install it: apt-get install ffmpeg")
    probe = subprocess.run(
        [ffprobe, "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
         "-of", "json", str(path)], capture_output=True, text=True,
    )
    try:
        st = json.loads(probe.stdout)["streams"][0]
        w, h = int(st["width"]), int(st["height"])
    except (ValueError, KeyError, IndexError) as e:
        raise DataError(f"{path}: not a readable video ({_one_line(probe.stderr) or e}); pass an "
                        ".mp4 / .mkv / .webm file ffmpeg can decode") from e
    s = min(1.0, max_side / max(w, h)) if max_side else 1.0
    w2, h2 = max(8, 2 * round(w * s / 2)), max(8, 2 * round(h * s / 2))
    res = subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(path), "-frames:v", str(n), "-vf", f"scale={w2}:{h2}",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True,
    )
    if res.returncode != 0 or not res.stdout:
        raise DataError(f"{path}: ffmpeg could not decode it ({_one_line(res.stderr.decode(errors='replace'))})")
    frames = np.frombuffer(res.stdout, np.uint8)
    t = frames.size // (w2 * h2 * 3)
    return frames[: t * w2 * h2 * 3].reshape(t, h2, w2, 3)


def _one_line(stderr: str) -> str:
    """ffmpeg's error output on one line (its lines joined with "; ")."""
    return "; ".join(ln.strip() for ln in stderr.splitlines() if ln.strip())


def _montage(frames: np.ndarray, k: int = 4) -> np.ndarray:
    ids = np.linspace(0, len(frames) - 1, min(k, len(frames))).round().astype(int)
    return np.concatenate([frames[i] for i in ids], axis=1)


class InrVideoCodec(Plugin):
    name = "inr video codec"
    kind = "compress"
    description = (
        "NVRC-style neural video codec (spatio-temporal latent grids, ARM entropy model, "
        "quantised weights, real bitstream) on a camera path rendered from the scene, "
        "against x264 and x265."
    )
    Options = InrVideoOptions
    accepts = ("scene", "video")

    def _frames(self, inputs: PluginInputs, o: InrVideoOptions,
                progress: Progress) -> tuple[np.ndarray, str]:
        if inputs.path is not None and inputs.path.suffix.lower() in (".mp4", ".mov", ".webm", ".mkv", ".avi"):
            return read_video_frames(inputs.path, o.frames, o.max_side), str(inputs.path)
        if inputs.render is None or inputs.camera is None or inputs.params is None:
            raise DataError("inr video codec needs a scene (a run directory or scene file, or the "
                            "viewer's scene) or a video file as INPUT")
        cams = orbit_cameras(inputs.camera, o.frames, o.degrees,
                             _pivot_depth(inputs.params, inputs.camera.viewmat), o.max_side)
        frames = []
        for i, cam in enumerate(cams):
            progress(0.05 * i / len(cams), f"rendering frame {i + 1}/{len(cams)}")
            frames.append(np.asarray(inputs.render(cam, "RGB"), np.uint8))
        return np.stack(frames), f"orbit of {o.frames} frames, {o.degrees:g} deg"

    def run(self, inputs: PluginInputs, options: InrVideoOptions,
            progress: Progress = no_progress) -> Report:
        o = options
        if o.frames < 1 or o.frames > 1024:
            raise DataError(f"frames must be in 1..1024, got {o.frames}")
        video, source = self._frames(inputs, o, progress)
        T, H, W = video.shape[:3]
        share = 0.85 if o.anchors else 0.95
        vopts = VideoOptions(lmbda=o.lmbda, steps=o.steps, t_log2=o.t_log2, seed=o.seed)
        res = encode_video(video, vopts, lambda f, m="": progress(0.05 + (share - 0.05) * f, m))
        t0 = time.perf_counter()
        out = decode_video(res.data)
        dec_s = time.perf_counter() - t0
        n = len(res.data)
        ms = float(np.mean([rd.ms_ssim(a, b) for a, b in zip(out, video)]))
        ours = rd.RDPoint("INR video (ours)", o.lmbda, n, 8 * n / (T * H * W),
                          sequence_psnr(out, video), ms, res.encode_seconds, dec_s)
        metrics = {
            "frames": float(T), "bytes": float(n), "bpp": ours.bpp, "psnr_db": ours.psnr,
            "ms_ssim": ms, "estimated_bpp": res.estimated_bits["total"] / (T * H * W),
            "estimate_over_file": res.estimated_bits["total"] / (8 * n),
            "weights_bits": res.estimated_bits["weights"],
            "latent_bits": res.estimated_bits["latents"],
            "encode_s": res.encode_seconds, "decode_s": dec_s,
            "mac_per_pixel": res.mac_per_pixel(T),
        }
        report = Report(
            title=f"INR video codec: {source}",
            metrics=metrics,
            images={"original (4 frames)": _montage(video), "decoded (4 frames)": _montage(out),
                    "error x4": _montage(np.stack([_error_map(a, b) for a, b in zip(out, video)]))},
            files={"video.inrv": res.data},
            notes=[f"{T} frames of {W}x{H}; rates are the file's bytes over all frames.",
                   f"Weight steps 2^-k: {res.steps}."],
        )
        curves: dict[str, list[rd.RDPoint]] = {}
        if o.anchors:
            for i, codec in enumerate(rd.VIDEO_ANCHORS):
                progress(share + (1 - share) * i / len(rd.VIDEO_ANCHORS), f"anchor {codec}")
                try:
                    curves[codec] = [rd.video_anchor_point(codec, video, c)[0] for c in rd.DEFAULT_CRFS]
                except rd.ToolNotFoundError as e:
                    report.notes.append(str(e))
                    break
            report.tables["rd points"] = rd.points_table([*curves.values(), [ours]])
        try:
            report.plots["rate-distortion"] = rd.rd_figure(curves, highlight=ours, title=f"RD: {source}")
        except ImportError:
            report.notes.append("plotly is not installed: no RD figure")
        progress(1.0, "done")
        return report
