"""The bridge between coding for machines and for humans ("Bridging the gap between image coding
for machines and humans", ICIP 2022): fine-tune ONLY the first two layers of the decoder (here
g_s's first deconvolution + IGDN and second deconvolution + IGDN) against a PatchGAN
discriminator, with the encoder, the hyperprior and the entropy models frozen. The bitstream of
an image therefore stays byte-for-byte the same (same rate); only what a human sees changes.

Loss of the decoder copy: ``mse_weight * 255^2 * MSE(x_hat, x) + adv_weight * LSGAN(D(x_hat))``
(+ ``task_weight * CE`` of the frozen task network when given); the discriminator is a 3-layer
70x70-style PatchGAN (pix2pix) with the least-squares GAN loss.

:func:`checkerboard_db` measures the artefact: the power of the decoded image at the frequencies
of the decoder's up-sampling grid (periods 2 and 4 px: every (u, v) in {0, 1/4, 1/2, 3/4}^2
cycles/px but DC), in dB relative to the same bins of the original. 0 dB: no excess periodic
energy; a checkerboard shows as a positive value.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ....errors import DataError
from .codec import MeanScaleHyperprior

__all__ = ["PatchDiscriminator", "bridge_decoder", "trainable_layers", "checkerboard_db"]

N_BRIDGE_MODULES = 4  # g_s[0] deconv, g_s[1] IGDN, g_s[2] deconv, g_s[3] IGDN


class PatchDiscriminator(nn.Module):
    """PatchGAN: float [B, 3, H, W] -> patch scores [B, 1, H/8 - ., W/8 - .]."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(3, w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.InstanceNorm2d(2 * w), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.InstanceNorm2d(4 * w), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(4 * w, 4 * w, 4, 1, 1), nn.InstanceNorm2d(4 * w), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(4 * w, 1, 4, 1, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x * 2.0 - 1.0)


def trainable_layers(decoder: nn.Sequential) -> list[nn.Parameter]:
    """The parameters the bridge updates: the first two (deconv, IGDN) stages of g_s."""
    return [p for m in list(decoder)[:N_BRIDGE_MODULES] for p in m.parameters()]


def bridge_decoder(
    codec: MeanScaleHyperprior,
    batches: Iterator[Tensor],
    steps: int,
    *,
    pre: nn.Module | None = None,
    lr: float = 1e-4,
    adv_weight: float = 1e-3,
    mse_weight: float = 1e-3,
    task_net: nn.Module | None = None,
    task_weight: float = 0.0,
    labels_of: Callable[[Tensor], Tensor] | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> tuple[nn.Sequential, dict[str, float]]:
    """A human decoder: a copy of ``codec.g_s`` whose first two stages are fine-tuned with a
    PatchGAN. ``batches`` yields float [B, 3, H, W] images (or (image, labels) pairs when a task
    term is used). ``pre`` (e.g. the ARR module) maps the image to what the encoder codes; the
    decoder's target and the discriminator's real samples are the images themselves. The codec
    itself is not modified. Returns (decoder, stats)."""
    if steps < 0:
        raise DataError(f"bridge steps must be >= 0, got {steps}")
    codec.eval()
    flags = [p.requires_grad for p in codec.parameters()]
    for p in codec.parameters():
        p.requires_grad_(False)
    dec = copy.deepcopy(codec.g_s)
    for p in dec.parameters():
        p.requires_grad_(False)
    params = trainable_layers(dec)
    for p in params:
        p.requires_grad_(True)
    disc = PatchDiscriminator()
    opt_g = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999))
    t0 = time.perf_counter()
    last: dict[str, float] = {}
    for step in range(steps):
        batch = next(batches)
        x, lab = (batch if isinstance(batch, (tuple, list)) else (batch, None))
        with torch.no_grad():  # frozen encoder + entropy models: the same y_hat as coding
            y = codec.g_a(pre(x) if pre is not None else x)
            z_hat = torch.round(codec.h_a(y))
            _, mu = codec.h_s(z_hat).chunk(2, 1)
            y_hat = torch.round(y - mu) + mu
        x_hat = dec(y_hat)
        # discriminator
        d_real = disc(x)
        d_fake = disc(x_hat.detach().clamp(0, 1))
        loss_d = 0.5 * ((d_real - 1) ** 2).mean() + 0.5 * (d_fake**2).mean()
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        # decoder layers
        adv = ((disc(x_hat.clamp(0, 1)) - 1) ** 2).mean()
        mse = F.mse_loss(x_hat, x)
        loss = adv_weight * adv + mse_weight * 255.0**2 * mse
        if task_net is not None and task_weight > 0 and lab is not None:
            loss = loss + task_weight * F.cross_entropy(task_net(x_hat.clamp(0, 1)), lab)
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
        last = {"loss_d": float(loss_d.detach()), "adv": float(adv.detach()),
                "mse": float(mse.detach())}
        if progress is not None:
            progress((step + 1) / max(1, steps), f"bridge step {step + 1}/{steps}")
    for p in dec.parameters():
        p.requires_grad_(False)
    for p, f in zip(codec.parameters(), flags):  # leave the codec as it came
        p.requires_grad_(f)
    dec.eval()
    last["seconds"] = time.perf_counter() - t0
    return dec, last


def _grid_power(img: np.ndarray) -> float:
    a = np.asarray(img, np.float64)
    a = a.mean(-1) if a.ndim == 3 else a
    h, w = a.shape
    if h % 4 or w % 4:
        raise DataError(f"checkerboard_db needs image sides that are multiples of 4, got {w}x{h}")
    f = np.abs(np.fft.fft2(a - a.mean())) ** 2
    return float(sum(f[i, j] for i in (0, h // 4, h // 2, 3 * h // 4)
                     for j in (0, w // 4, w // 2, 3 * w // 4) if i or j))


def checkerboard_db(decoded: np.ndarray | Sequence[np.ndarray],
                    original: np.ndarray | Sequence[np.ndarray]) -> float:
    """Excess power of ``decoded`` over ``original`` (uint8 [H, W, 3] each, or lists of them,
    pooled) at the period-2 / period-4 grid frequencies, in dB (module docstring)."""
    dec = [decoded] if isinstance(decoded, np.ndarray) and decoded.ndim <= 3 else list(decoded)
    org = [original] if isinstance(original, np.ndarray) and original.ndim <= 3 else list(original)
    if len(dec) != len(org) or any(np.shape(a) != np.shape(b) for a, b in zip(dec, org)):
        raise DataError("checkerboard_db needs decoded and original images of the same sizes")
    pa = sum(_grid_power(a) for a in dec)
    pb = sum(_grid_power(b) for b in org)
    return float(10.0 * np.log10((pa + 1e-6) / (pb + 1e-6)))
