"""Appearance redundancy reduction (ARR; "Image coding for machines via analytics-driven
appearance redundancy reduction", ICIP 2024).

A small CNN gives every pixel a C-way softmax; a learned colour map (C RGB colours) turns the
class probabilities into an image. In training the forward pass uses the hard (argmax) colour
with the softmax's gradient (straight-through), so the codec learns to code images of C colours;
at inference the output is the hard map: exactly the C colours of the map (those the argmax
uses). ARR sits in front of the codec's encoder and is trained end-to-end with the codec and
the frozen task network (rate + task loss), so it keeps what the machine needs and drops the
appearance it does not. (The seminar note reads the figure as ARR applied to "the compression
model's output"; issue 13 and the rate argument place it on the codec's input, as here.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ....errors import DataError

__all__ = ["ARR"]


class ARR(nn.Module):
    """levels: C (>= 2); hidden: CNN width. forward(x [B, 3, H, W] in [0, 1]) -> [B, 3, H, W]."""

    def __init__(self, levels: int = 2, hidden: int = 16) -> None:
        super().__init__()
        if int(levels) < 2 or int(levels) > 256:
            raise DataError(f"ARR needs 2 <= levels <= 256, got {levels}")
        self.levels = int(levels)
        self.hidden = int(hidden)
        self.net = nn.Sequential(
            nn.Conv2d(3, hidden, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, self.levels, 1),
        )
        # distinct initial colours: greys from dark to bright, slightly tinted
        g = torch.linspace(-2.0, 2.0, self.levels)
        tint = torch.tensor([0.1, 0.0, -0.1])
        self.color_logits = nn.Parameter(g[:, None] + tint[None, :] * g[:, None].sign())

    def colors(self) -> Tensor:
        """The colour map [C, 3] in (0, 1)."""
        return torch.sigmoid(self.color_logits)

    def logits(self, x: Tensor) -> Tensor:
        return self.net(x)

    def forward(self, x: Tensor, hard: bool | None = None) -> Tensor:
        """hard=None: straight-through in training, hard in eval; True/False force it."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise DataError(f"ARR takes float images [B, 3, H, W], got {tuple(x.shape)}")
        logits = self.net(x)
        cmap = self.colors()
        idx = logits.argmax(1)
        hard_img = cmap[idx].permute(0, 3, 1, 2)
        if hard is None:
            hard = not self.training
        if hard:
            return hard_img
        p = F.softmax(logits, 1)
        # the logits learn through the softmax, the colours through the hard assignment
        soft = torch.einsum("bchw,ck->bkhw", p, cmap.detach())
        return hard_img + (soft - soft.detach())
