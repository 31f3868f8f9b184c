"""D4's spectrum partitions: saliency from a C&W-L2 attack on the full-spectrum model, then a
round-robin deal of the ranked coefficients into N disjoint partitions.

Official procedure (nmangaokar/wacv_24_d4, ``main.py`` task ``saliency``): run
``carlini_wagner_l2`` on the full-spectrum model for ~1000 *synthetic* training images (label 1),
saliency = ``|grad| * |x_adv - x|`` averaged over the images, sort the [3, S, S] saliency values
ascending and give the l-th coefficient of that order to partition ``l % N``. So every partition
gets coefficients from every saliency level (an equal share of the salient ones), and the
partitions are disjoint and cover the spectrum.

What we do differently (our choices, each small):

- The official code takes the gradient and the perturbation in *pixel* space and then uses the
  pixel index (c, i, j) as the coefficient index (c, u, v). The paper defines the saliency per
  frequency coefficient, s_i = E_x[grad f(x + delta)_i * delta_i]; we compute it on the
  coefficients the detector actually sees: ``|d margin / d z| * |z(x_adv) - z(x)|`` with ``z`` the
  standardised log-DCT of the full-spectrum model.
- The official C&W starts at the grey image (w = 0), minimises the non-squared L2 norm plus
  c = 0.001 times the margin, and differentiates the whole loss (mostly the norm term). We use the
  textbook C&W-L2 (Carlini & Wagner 2017): w initialised at atanh(2x - 1) so the attack starts at
  x, squared L2 + c * max(margin + kappa, 0), Adam, keeping the smallest misclassified iterate,
  and differentiate only the margin (the "grad f" of the paper's formula). Defaults
  (c = 1, 100 steps, lr 0.01) are smaller than the official 1000 steps, so it runs on a CPU.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .model import SpectrumClassifier

__all__ = ["carlini_wagner_l2", "cw_saliency", "round_robin_partition"]


def _margin(logits: Tensor, y: Tensor) -> Tensor:
    """logit of the true class minus the best other logit. [B, K], [B] -> [B]"""
    true = logits.gather(1, y[:, None])[:, 0]
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return true - other.max(dim=1).values


def carlini_wagner_l2(
    model: torch.nn.Module,
    x: Tensor,
    y: Tensor,
    c: float = 1.0,
    steps: int = 100,
    lr: float = 0.01,
    kappa: float = 0.0,
) -> Tensor:
    """Untargeted C&W-L2: the smallest misclassified iterate of ``argmin ||x' - x||^2 + c *
    max(margin(x') + kappa, 0)`` over ``x' = (tanh(w) + 1) / 2`` (the last iterate where none
    was misclassified).

    x: Tensor  # [B, 3, H, W] in [0, 1]
    y: Tensor  # [B] int64 labels
    returns: Tensor  # [B, 3, H, W] in [0, 1]
    """
    x = x.detach()
    w = torch.atanh((2 * x - 1).clamp(-1 + 1e-6, 1 - 1e-6)).requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    best = x.clone()
    best_norm = torch.full((x.shape[0],), float("inf"))
    last = x.clone()
    for _ in range(steps):
        x_adv = (torch.tanh(w) + 1) / 2
        logits = model(x_adv)
        m = _margin(logits, y)
        l2 = (x_adv - x).flatten(1).pow(2).sum(1)
        loss = (l2 + c * torch.clamp(m + kappa, min=0)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            fooled = (m < 0) & (l2 < best_norm)
            best[fooled] = x_adv.detach()[fooled]
            best_norm[fooled] = l2.detach()[fooled]
            last = x_adv.detach()
    never = torch.isinf(best_norm)
    best[never] = last[never]
    return best.clamp(0, 1)


def cw_saliency(
    model: SpectrumClassifier,
    x: Tensor,
    y: Tensor,
    c: float = 1.0,
    steps: int = 100,
    lr: float = 0.01,
    batch_size: int = 64,
) -> Tensor:
    """Per-coefficient saliency ``mean_x |d margin / d z|(z_adv) * |z_adv - z|`` (module doc).

    model: the full-spectrum classifier (all-ones mask)
    x: Tensor  # [B, 3, S, S] in [0, 1], the images to attack (official: synthetic ones)
    y: Tensor  # [B] their labels
    returns: Tensor  # [3, S, S], >= 0
    """
    was_training = model.training
    model.eval()
    total = torch.zeros(x.shape[1:], dtype=torch.float64)
    for i in range(0, x.shape[0], batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        x_adv = carlini_wagner_l2(model, xb, yb, c=c, steps=steps, lr=lr)
        with torch.no_grad():
            z0 = model.features(xb)
        z = model.features(x_adv).detach().requires_grad_(True)
        m = _margin(model.backbone(z), yb)
        (g,) = torch.autograd.grad(m.sum(), z)
        total += (g.abs() * (z.detach() - z0).abs()).sum(0).double()
    model.train(was_training)
    return (total / max(x.shape[0], 1)).float()


def round_robin_partition(saliency: Tensor | np.ndarray, n: int) -> Tensor:
    """Deal the coefficients, ranked by ascending saliency (ties by flat index), round-robin
    into ``n`` disjoint partitions covering all of them.

    saliency: [3, S, S]
    returns: Tensor  # bool [n, 3, S, S]; each coefficient in exactly one partition
    """
    if n < 1:
        raise ValueError(f"number of partitions must be >= 1, got {n}")
    s = torch.as_tensor(np.asarray(saliency, dtype=np.float64))
    flat = s.flatten()
    order = torch.as_tensor(np.argsort(flat.numpy(), kind="stable"))
    masks = torch.zeros((n, flat.numel()), dtype=torch.bool)
    rank = torch.arange(flat.numel())
    masks[rank % n, order] = True
    return masks.reshape(n, *s.shape)
