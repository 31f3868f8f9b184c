"""Upsampling, synthesis and the optional EQLINR enhancement, in float (training) and in exact
fixed point (the decoder), sharing one description of the layers.

Architecture (Cool-chic-like, Ladune et al. 2023): ``L`` latent grids of one channel, grid ``i``
of size ``ceil(H / 2^i) x ceil(W / 2^i)``; each is upsampled to ``H x W`` by repeated 2x steps
(edges replicated): bilinear (weights 1/4, 3/4), or with ``upsampling`` a learned kernel (below),
the ``L`` planes are stacked and fed to the synthesis:
a 1x1 layer to ``hidden`` channels + ReLU, a 1x1 layer to 3 channels, then two residual 3x3
convolutions (3 -> 3, ReLU on the first). With ``enhance`` (EQLINR, a light CNN after the
synthesis) a residual block 3x3 conv 3 -> E + ReLU, 3x3 conv E -> 3 follows.

Fixed point: activations are integers on the grid ``2^-FA`` held in float64, weights integers on
``2^-kw``, biases on ``2^-kb``; each conv output is an exact integer (all below 2^53) floored back
to ``2^-FA``. The 2x bilinear step is ``floor((3 a + b) / 4)`` per axis.

Learned upsampling (``upsampling`` 1: one kernel for every 2x step, as Cool-chic 3.3's learned
ConvTranspose of size 8; 2: one kernel per step, as Cool-chic 3.4 learns per step): a symmetric,
separable 8-tap 2x kernel ``[d, b, c, a, a, c, b, d]`` with 4 free taps ``(a, b, c, d)``, the same
1-D filter along both axes (Cool-chic 3.4's symmetric separable filters; it also learns a second,
pre-filtering kernel per step, which this codec does not). Per axis the output sample ``2i`` is
``a x[i] + b x[i-1] + c x[i+1] + d x[i-2]`` and ``2i+1`` its mirror ``a x[i] + b x[i+1] + c x[i-1]
+ d x[i+2]``; the taps start at bicubic (A = -0.75, PyTorch's and Cool-chic's initial kernel).
Fixed point: taps are integers on ``2^-ku`` and each output is ``floor(sum / 2^ku)``; bilinear is
the taps (3, 1, 0, 0) at ``ku = 2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .arm import FA, arm_shapes

__all__ = ["Arch", "layer_specs", "upsample_all", "synthesis", "ups_names", "UPS_TAPS_BICUBIC"]

UPS_BILINEAR, UPS_SHARED, UPS_PER_STEP = 0, 1, 2
UPS_TAPS_BICUBIC = (0.87890625, 0.26171875, -0.10546875, -0.03515625)
"""Taps (a, b, c, d) of 2x bicubic upsampling (A = -0.75, align_corners=False): exact at 2^-8."""


@dataclass(frozen=True)
class Arch:
    """The decoder's architecture (stored in the bitstream header)."""

    height: int
    width: int
    n_levels: int = 7
    ctx_k: int = 3
    n_ctx: int = 16
    arm_hidden: int = 16
    arm_layers: int = 2
    syn_hidden: int = 24
    enhance: int = 0
    """Channels of the EQLINR enhancement block (0: off)."""
    upsampling: int = UPS_BILINEAR
    """0: fixed bilinear; 1: one learned kernel for all 2x steps; 2: one learned kernel per step."""

    def grid_sizes(self) -> list[tuple[int, int]]:
        return [(-(-self.height // 2**i), -(-self.width // 2**i)) for i in range(self.n_levels)]

    def mac_per_pixel(self) -> float:
        """Multiply-accumulates per decoded pixel (ARM over all latents, synthesis, enhance; the
        upsampling's 2-4 per sample and axis are not counted)."""
        n_lat = sum(h * w for h, w in self.grid_sizes())
        arm = sum(o * i for o, i in arm_shapes(self.n_ctx, self.arm_hidden, self.arm_layers))
        syn = sum(
            o * i * kk * kk for name, (o, i, kk) in layer_specs(self).items() if name.startswith("syn")
        )
        enh = sum(
            o * i * kk * kk for name, (o, i, kk) in layer_specs(self).items() if name.startswith("enh")
        )
        return arm * n_lat / (self.height * self.width) + syn + enh


def layer_specs(arch: Arch) -> dict[str, tuple[int, int, int]]:
    """name -> (out channels, in channels, kernel size) of the synthesis / enhancement convs."""
    specs = {
        "syn0": (arch.syn_hidden, arch.n_levels, 1),
        "syn1": (3, arch.syn_hidden, 1),
        "syn2": (3, 3, 3),
        "syn3": (3, 3, 3),
    }
    if arch.enhance:
        specs["enh0"] = (arch.enhance, 3, 3)
        specs["enh1"] = (3, arch.enhance, 3)
    return specs


# ----------------------------------------------------------------------------- upsampling


def ups_names(arch: Arch) -> list[str]:
    """Parameter names of the learned upsampling kernels (4 taps each): ``ups{j}.w`` is the 2x step
    that makes grid j's size, or ``ups0.w`` alone when one kernel serves every step."""
    n = {UPS_BILINEAR: 0, UPS_SHARED: 1, UPS_PER_STEP: max(0, arch.n_levels - 1)}[arch.upsampling]
    return [f"ups{i}.w" for i in range(n)]


def _up2_axis(
    x: Tensor, dim: int, n_out: int, fixed: bool, taps: Tensor | None = None, ku: int = 0
) -> Tensor:
    """2x upsampling (align_corners=False) along ``dim`` of x [1, C, h, w], cropped to n_out:
    bilinear, or the symmetric 8-tap kernel ``taps`` (a, b, c, d) (fixed: integers on 2^-ku)."""
    n = x.shape[dim]
    idx = torch.arange(n)

    def at(o: int) -> Tensor:
        return x.index_select(dim, (idx + o).clamp(0, n - 1))

    prev, nxt = at(-1), at(1)
    if taps is None:
        even, odd, div = 3 * x + prev, 3 * x + nxt, 4.0
    else:
        a, b, c, d = taps[0], taps[1], taps[2], taps[3]
        even = a * x + b * prev + c * nxt + d * at(-2)
        odd = a * x + b * nxt + c * prev + d * at(2)
        div = float(2**ku) if fixed else 1.0
        if fixed and even.numel() and float(torch.maximum(even.abs().max(), odd.abs().max())) >= 2.0**52:
            raise OverflowError("fixed-point upsampling left the exact float64 range (2^52)")
    out = torch.stack([even, odd], dim=dim + 1).flatten(dim, dim + 1)
    out = torch.floor(out / div) if fixed else (out / div if div != 1.0 else out)
    return out.narrow(dim, 0, n_out)


def upsample_all(
    latents: list[Tensor], arch: Arch, fixed: bool = False,
    params: dict[str, Tensor] | None = None, ku: int = 0,
) -> Tensor:
    """latents: per grid [h_i, w_i] (fixed: integers) -> stacked planes [1, L, H, W]
    (fixed: on the 2^-FA grid, as integers). ``params`` holds the learned kernels when
    ``arch.upsampling`` (fixed: integer taps on 2^-ku).

    Coarse to fine: the planes of grids i..L-1 at the size of grid i are upsampled together and
    grid i-1 is stacked in front (the same numbers as upsampling each grid on its own, since the
    2x step acts on each channel alone, in fewer operations)."""
    sizes = arch.grid_sizes()
    names = ups_names(arch)
    if names and params is None:
        raise ValueError("learned upsampling needs its kernels (params)")
    scale = float(2**FA) if fixed else 1.0
    x = latents[-1][None, None] * scale
    for j in range(len(latents) - 2, -1, -1):
        taps = None
        if names:
            taps = params[names[0] if len(names) == 1 else names[j]]  # type: ignore[index]
        th, tw = sizes[j]
        x = _up2_axis(_up2_axis(x, 2, th, fixed, taps, ku), 3, tw, fixed, taps, ku)
        x = torch.cat([latents[j][None, None] * scale, x], dim=1)
    return x


# ----------------------------------------------------------------------------- synthesis


def _conv(x: Tensor, w: Tensor, b: Tensor, ksize: int, fixed: bool, kw: int, kb: int) -> Tensor:
    pad = ksize // 2
    if pad:
        x = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    if not fixed:
        return F.conv2d(x, w, b)
    acc = F.conv2d(x, w, None) + (b * float(2 ** (FA + kw - kb)))[None, :, None, None]
    if acc.numel() and float(acc.abs().max()) >= 2.0**52:
        raise OverflowError("fixed-point synthesis left the exact float64 range (2^52)")
    return torch.floor(acc / float(2**kw))


def synthesis(
    planes: Tensor,
    params: dict[str, Tensor],
    arch: Arch,
    fixed: bool = False,
    steps: dict[str, tuple[int, int]] | None = None,
) -> Tensor:
    """planes [1, L, H, W] -> image [1, 3, H, W] (float: in ~[0, 1]; fixed: integers on 2^-FA).

    params: ``<layer>.w`` [out, in, k, k], ``<layer>.b`` [out] (fixed: integer-valued float64);
    steps: group -> (kw, kb) with groups "syn", "enh" (fixed only)."""
    specs = layer_specs(arch)

    def conv(x: Tensor, name: str) -> Tensor:
        grp = name[:3]
        kw, kb = steps[grp] if (fixed and steps) else (0, 0)
        return _conv(x, params[name + ".w"], params[name + ".b"], specs[name][2], fixed, kw, kb)

    x = torch.relu(conv(planes, "syn0"))
    x = conv(x, "syn1")
    x = x + torch.relu(conv(x, "syn2"))
    x = x + conv(x, "syn3")
    if arch.enhance:
        x = x + conv(torch.relu(conv(x, "enh0")), "enh1")
    return x


def init_params(arch: Arch, generator: torch.Generator) -> dict[str, Tensor]:
    """Random float32 parameters: ARM ``arm{i}.w/b``, learned upsampling kernels ``ups{i}.w``
    (bicubic taps), synthesis / enhancement convs (the last
    conv of each residual block starts at zero, so the blocks start as identities)."""
    p: dict[str, Tensor] = {}
    for i, (o, n) in enumerate(arm_shapes(arch.n_ctx, arch.arm_hidden, arch.arm_layers)):
        bound = 1.0 / n**0.5
        p[f"arm{i}.w"] = (torch.rand(o, n, generator=generator) * 2 - 1) * bound
        p[f"arm{i}.b"] = torch.zeros(o)
    for name, (o, n, kk) in layer_specs(arch).items():
        bound = 1.0 / (n * kk * kk) ** 0.5
        w = (torch.rand(o, n, kk, kk, generator=generator) * 2 - 1) * bound
        if name in ("syn3", "enh1"):
            w = w * 0.0
        p[name + ".w"] = w
        p[name + ".b"] = torch.zeros(o)
    for name in ups_names(arch):
        p[name] = torch.tensor(UPS_TAPS_BICUBIC)
    p["syn1.b"] = torch.full((3,), 0.5)
    # the latents start at zero: a positive bias keeps the first ReLUs (and their gradients) alive
    p["syn0.b"] = torch.full((arch.syn_hidden,), 0.1)
    return p
