"""An NVRC-style overfitted neural video codec for short sequences (a camera-path video).

NVRC (Kwan et al., NeurIPS 2024) compresses a video as an implicit neural representation whose
feature grids and network weights are quantised and entropy coded with learned models, trained
end to end for rate + lambda * distortion. This is our reconstruction at the scale that trains on
two CPU cores, built from the image codec's parts (codec.py) so every piece is shared and tested:

- Feature grids: the image codec's ``L`` latent grids (grid ``i`` at 1/2^i of the frame size),
  held as *slices* every ``2^t_log2`` frames. Frame ``t`` sees each grid linearly interpolated in
  time between its slices (repeated 2x steps, the same ``floor((3a + b) / 4)`` as in space), then
  upsampled in space and fed to the shared synthesis. So the grids carry the content once per
  ``2^t_log2`` frames and the synthesis / ARM weights once per sequence.
- Entropy model: the image codec's auto-regressive model (ARM) over a causal 2D context, shared by
  every slice; each slice is coded after the one before it, in the same wavefront order as an
  image (a slice's context is within that slice: our choice, NVRC's entropy models also condition
  within a grid).
- Quantisation: the same soft-round + Kumaraswamy noise then straight-through rounding for the
  latents, and the greedy per-group weight-step search of Cool-chic, scored on the whole sequence.
- Bitstream (bitstream.pack_video): header (frames, size, temporal stride, architecture, steps),
  then one constriction range-coder stream: the weights, then the latents. The decoder is the image
  codec's exact fixed point, so a file decodes bit-exactly in any process.

What NVRC has that this does not: HiNeRV's deep backbone, hierarchical / patch-wise grids,
learned weight entropy models with context, inter-frame latent prediction. Our rate is weights +
latents; the rate-distortion trade-off is set by ``lmbda``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ....errors import DataError
from ...base import Progress, no_progress
from . import bitstream as bs
from .arm import FA, arm_shapes
from .codec import (
    CodecOptions,
    _Latents,
    _to_uint8_fixed,
    checked_decode,
    code_payload,
    decode_payload,
    encoder_settings,
    overfit,
    search_weight_steps,
)
from .model import Arch, _up2_axis, init_params, layer_specs, synthesis

__all__ = ["VideoOptions", "VideoEncodeResult", "encode_video", "decode_video", "video_sizes"]


@dataclass
class VideoOptions(CodecOptions):
    """Options of the INR video encoder (the decoder reads everything from the file)."""

    t_log2: int = 3
    """Latent slices every 2^t_log2 frames (0: every frame its own latents)."""
    frames_per_step: int = 4
    """Frames drawn at random for each training step's distortion (the rate is always the whole
    sequence's)."""
    n_levels: int = 6
    """Latent grids per slice (grid i has 1/2^i of the resolution)."""


@dataclass
class VideoEncodeResult:
    """An encoded video with what the encoder knows about it."""

    data: bytes
    decoded: np.ndarray
    """uint8 [T, H, W, 3]: what :func:`decode_video` returns for ``data``."""
    estimated_bits: dict[str, float]
    arch: Arch
    t_log2: int
    steps: dict[str, int]
    encode_seconds: float
    history: list[tuple[int, float, float]] = field(default_factory=list)

    def mac_per_pixel(self, frames: int) -> float:
        """Multiply-accumulates per decoded pixel: the ARM over every latent of every slice
        spread over all frames, plus the synthesis (the temporal blend is a few adds)."""
        a = self.arch
        arm = sum(o * i for o, i in arm_shapes(a.n_ctx, a.arm_hidden, a.arm_layers))
        n_lat = sum(h * w for h, w in video_sizes(a, frames, self.t_log2))
        syn = sum(o * i * k * k for o, i, k in layer_specs(a).values())
        return arm * n_lat / (frames * a.height * a.width) + syn


def n_slices_of(frames: int, t_log2: int) -> int:
    return -(-frames // 2**t_log2)


def video_sizes(arch: Arch, frames: int, t_log2: int) -> list[tuple[int, int]]:
    """The 2D grids in coding order: slice after slice, each with its ``n_levels`` grids."""
    return arch.grid_sizes() * n_slices_of(frames, t_log2)


def _slices(levels: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per level [S, h_i, w_i] -> the coding-order list of 2D grids (slice-major)."""
    return [lvl[j] for j in range(levels[0].shape[0]) for lvl in levels]


def upsample_video(
    levels: list[torch.Tensor], arch: Arch, frames: int, t_log2: int, frame_ids: torch.Tensor,
    fixed: bool = False,
) -> torch.Tensor:
    """levels: per grid [S, h_i, w_i] (fixed: integers) -> planes [B, L, H, W] of the frames
    ``frame_ids`` [B] (fixed: integers on the 2^-FA grid). Time first (2x steps), then space
    coarse to fine as the image codec's ``upsample_all``."""
    scale = float(2**FA) if fixed else 1.0
    ups = []
    for lvl in levels:
        x = lvl * scale
        for s in range(t_log2):
            x = _up2_axis(x, 0, -(-frames // 2 ** (t_log2 - s - 1)), fixed)
        ups.append(x.index_select(0, frame_ids))
    sizes = arch.grid_sizes()
    x = ups[-1][:, None]
    for j in range(len(ups) - 2, -1, -1):
        th, tw = sizes[j]
        x = _up2_axis(_up2_axis(x, 2, th, fixed), 3, tw, fixed)
        x = torch.cat([ups[j][:, None], x], dim=1)
    return x


def _frames_out(levels, params, arch, frames, t_log2, ids) -> torch.Tensor:  # noqa: ANN001
    return synthesis(upsample_video(levels, arch, frames, t_log2, ids), params, arch)


def encode_video(
    video: np.ndarray, options: VideoOptions | None = None, progress: Progress = no_progress
) -> VideoEncodeResult:
    """Overfit a decoder to ``video`` (uint8 [T, H, W, 3]) and write its bitstream."""
    opt = options or VideoOptions()
    with encoder_settings(opt.threads):
        return _encode_video(np.asarray(video), opt, progress)


def _check_video(video: np.ndarray, opt: VideoOptions) -> None:
    if video.ndim != 4 or video.shape[3] != 3 or video.dtype != np.uint8:
        raise DataError(f"the INR video codec takes uint8 [T, H, W, 3] frames, got {video.dtype} "
                        f"{video.shape}")
    t, h, w = video.shape[:3]
    if not (1 <= t <= 65535 and 8 <= h <= 65535 and 8 <= w <= 65535) or t * h * w > bs.MAX_VIDEO_SAMPLES:
        raise DataError(f"video of {t} frames of {h}x{w} is outside the format's limits "
                        "(1..65535 frames, 8..65535 pixels a side, 256 M pixels in all)")
    if not 0 <= opt.t_log2 <= 8:
        raise DataError(f"t_log2 must be in 0..8, got {opt.t_log2}")
    if opt.enhance:
        raise DataError("the video codec has no enhancement block: set enhance=0")


def _encode_video(video: np.ndarray, opt: VideoOptions, progress: Progress) -> VideoEncodeResult:
    _check_video(video, opt)
    T, H, W = video.shape[:3]
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(opt.seed)
    arch = opt.arch(H, W)
    sizes = video_sizes(arch, T, opt.t_log2)
    lat = _Latents(arch, sizes)
    S = n_slices_of(T, opt.t_log2)
    target = torch.from_numpy(np.array(video)).float().permute(0, 3, 1, 2) / 255.0  # [T, 3, H, W]
    n_pix = T * H * W
    levels = [torch.zeros(S, h, w, requires_grad=True) for h, w in arch.grid_sizes()]
    params = {k: v.requires_grad_(True) for k, v in init_params(arch, gen).items()}
    all_ids = torch.arange(T)
    B = max(1, min(opt.frames_per_step, T))

    def sequence_mse(lv: list[torch.Tensor], p: dict[str, torch.Tensor]) -> float:
        tot = 0.0
        for a in range(0, T, 8):
            ids = all_ids[a : a + 8]
            out = _frames_out(lv, p, arch, T, opt.t_log2, ids).clamp(0, 1)
            tot += float(((out - target[ids]) ** 2).sum())
        return tot / (n_pix * 3)

    def loss_of(q: list[torch.Tensor]) -> torch.Tensor:
        ids = torch.randperm(T, generator=gen)[:B]
        bits = lat.rate_bits(_slices(q), params)
        mse = torch.mean((_frames_out(q, params, arch, T, opt.t_log2, ids) - target[ids]) ** 2)
        return mse + opt.lmbda * bits / n_pix

    def hard_loss() -> tuple[float, float]:
        with torch.no_grad():
            q = [torch.round(g) for g in levels]
            bits = float(lat.rate_bits(_slices(q), params))
            return sequence_mse(q, params) + opt.lmbda * bits / n_pix, bits / n_pix

    levels_best, params_best, history = overfit(
        opt, gen, levels, params, loss_of, hard_loss, lambda f, m: progress(0.85 * f, m))
    progress(0.85, "quantising weights")
    y_levels = [torch.round(g) for g in levels_best]
    y_slices = _slices(y_levels)

    def evaluate(trial: dict[str, torch.Tensor]) -> tuple[float, float]:
        return sequence_mse(y_levels, trial), float(lat.rate_bits(y_slices, trial))

    steps, q_params = search_weight_steps(params_best, arch, evaluate, opt.lmbda, n_pix)
    progress(0.95, "entropy coding")
    words, gheads, r, w_bits, lat_bits = code_payload(
        [y.double() for y in y_slices], q_params, steps, arch, lat)
    vh = bs.VideoHeader(T, opt.t_log2, bs.Header(arch, r, gheads))
    data = bs.pack_video(vh, words)
    hbits = 8.0 * bs.video_header_size(arch)
    est = {"header": hbits, "weights": w_bits, "latents": lat_bits,
           "total": hbits + w_bits + lat_bits}
    decoded = decode_video(data)
    progress(1.0, "done")
    return VideoEncodeResult(data, decoded, est, arch, opt.t_log2, steps,
                             time.perf_counter() - t0, history)


def decode_video(data: bytes, name: str = "bitstream") -> np.ndarray:
    """Bitstream -> uint8 [T, H, W, 3]. Raises DataError (naming ``name``) on a bad file."""
    vh, words = bs.unpack_video(bytes(data), name)
    return checked_decode(name, _decode_video, vh, words)


def _decode_video(vh: bs.VideoHeader, words: np.ndarray) -> np.ndarray:
    arch, T, tl = vh.header.arch, vh.frames, vh.t_log2
    q, steps, grids = decode_payload(words, arch, vh.header, video_sizes(arch, T, tl))
    L, S = arch.n_levels, n_slices_of(T, tl)
    levels = [torch.stack([grids[j * L + i] for j in range(S)]) for i in range(L)]
    tparams = {n: torch.from_numpy(v.astype(np.float64)) for n, v in q.items()}
    gsteps = {"syn": (steps["syn.w"], steps["syn.b"])}
    out = np.empty((T, arch.height, arch.width, 3), np.uint8)
    with torch.no_grad():
        for a in range(0, T, 4):
            ids = torch.arange(a, min(T, a + 4))
            planes = upsample_video(levels, arch, T, tl, ids, fixed=True)
            for k, img in enumerate(synthesis(planes, tparams, arch, fixed=True, steps=gsteps)):
                out[a + k] = _to_uint8_fixed(img[None])
    return out


def sequence_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of the whole sequence (one MSE over every frame, pixel and channel), in dB."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)
