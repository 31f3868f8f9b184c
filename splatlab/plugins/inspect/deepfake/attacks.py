"""Attacks for the D4 benchmark: white-box PGD (L_inf) and the HopSkipJump black-box attack.

- :func:`pgd_linf`: Madry et al. 2018; maximises the NLL of the true label under ``log_probs``
  (for the ensemble, the log of the mean softmax, as the official ``D3.forward``), with gradients
  flowing through the torch DCT of :mod:`.dct`. Stays within ``eps`` of x and inside [0, 1].
- :func:`hop_skip_jump`: HopSkipJumpAttack (Chen, Jordan & Wainwright, IEEE S&P 2020), untargeted,
  L2, written here from the paper: decision-only queries (the predicted label), a binary search to
  the boundary, a Monte-Carlo estimate of the boundary normal, a geometric step search, repeated
  until a hard query budget is spent. The official D4 evaluation uses SurFree with a budget of
  50,000 queries and success when the normalised L2 distance ``||x_adv - x||_2 / sqrt(d)`` is at
  most 0.0257; we keep that success criterion (:func:`normalised_l2`) with a smaller budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "pgd_linf",
    "hop_skip_jump",
    "HSJResult",
    "QueryBudgetExhausted",
    "normalised_l2",
    "OFFICIAL_L2_EPS",
]

OFFICIAL_L2_EPS = 0.0257  # official configs/d4.py: SurFree success threshold (normalised L2)


def normalised_l2(a: Tensor, b: Tensor) -> Tensor:
    """``||a - b||_2 / sqrt(d)`` per image ([B, ...] -> [B]), the official SurFree distance."""
    d = a[0].numel()
    return (a - b).flatten(1).norm(dim=1) / math.sqrt(d)


def pgd_linf(
    log_probs: Callable[[Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    eps: float,
    steps: int = 10,
    alpha: float | None = None,
    random_start: bool = True,
    seed: int = 0,
) -> Tensor:
    """L_inf PGD maximising ``nll(log_probs(x'), y)`` with ``||x' - x||_inf <= eps``, x' in [0, 1].

    log_probs: ``[B, 3, H, W] -> [B, K]`` log-probabilities (differentiable)
    x: Tensor  # [B, 3, H, W] in [0, 1]
    y: Tensor  # [B] int64
    alpha: step size (default 2.5 eps / steps)
    returns: Tensor  # [B, 3, H, W]
    """
    x = x.detach()
    if eps <= 0:
        return x.clone()
    alpha = 2.5 * eps / steps if alpha is None else alpha
    g = torch.Generator().manual_seed(seed)
    if random_start:
        noise = (torch.rand(x.shape, generator=g) * 2 - 1) * eps
        x_adv = (x + noise.to(x)).clamp(0, 1)
    else:
        x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with torch.enable_grad():  # also when called under no_grad / inference code
            loss = F.nll_loss(log_probs(x_adv), y)
            (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = x_adv + alpha * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


class QueryBudgetExhausted(Exception):
    """Raised inside :func:`hop_skip_jump` when the next query would exceed the budget."""


@dataclass
class HSJResult:
    """x_adv: [1, 3, H, W] (the best adversarial point found, or x when none was found);
    distance: its normalised L2 distance to x (inf when none); queries: labels asked for."""

    x_adv: Tensor
    distance: float
    queries: int
    found: bool


def hop_skip_jump(
    predict_label: Callable[[Tensor], Tensor],
    x: Tensor,
    y: int,
    max_queries: int = 1000,
    init_evals: int = 50,
    max_evals: int = 200,
    gamma: float = 1.0,
    init_tries: int = 50,
    seed: int = 0,
) -> HSJResult:
    """Untargeted L2 HopSkipJump on one image, at most ``max_queries`` label queries.

    predict_label: ``[B, 3, H, W] -> [B]`` int labels (each image counts as one query)
    x: Tensor  # [1, 3, H, W] in [0, 1], classified as ``y``
    init_evals / max_evals: queries per boundary-normal estimate at iteration t:
        ``min(init_evals * sqrt(t), max_evals)`` (the paper: 100 and 10,000)
    gamma: binary-search tolerance ``theta = gamma / d^(3/2)`` (the paper's L2 setting)
    """
    x = x.detach()
    d = x.numel()
    theta = gamma / (d * math.sqrt(d))
    g = torch.Generator().manual_seed(seed)
    used = 0

    def adversarial(xb: Tensor) -> Tensor:
        nonlocal used
        if used + xb.shape[0] > max_queries:
            raise QueryBudgetExhausted
        used += xb.shape[0]
        with torch.no_grad():
            return predict_label(xb) != y

    def binary_search(x_a: Tensor) -> Tensor:
        lo, hi = 0.0, 1.0
        for _ in range(30):
            if hi - lo <= theta:
                break
            mid = (lo + hi) / 2
            if bool(adversarial((1 - mid) * x + mid * x_a)[0]):
                hi = mid
            else:
                lo = mid
        return (1 - hi) * x + hi * x_a

    best: Tensor | None = None
    try:
        if bool(adversarial(x)[0]):  # already misclassified: nothing to do
            return HSJResult(x.clone(), 0.0, used, True)
        for _ in range(init_tries):
            cand = torch.rand(x.shape, generator=g).to(x)
            if bool(adversarial(cand)[0]):
                best = cand
                break
        if best is None:
            return HSJResult(x.clone(), float("inf"), used, False)
        best = binary_search(best)
        dist = float((best - x).norm())
        t = 0
        while True:
            t += 1
            delta = 0.1 if t == 1 else math.sqrt(d) * theta * dist
            n = int(min(init_evals * math.sqrt(t), max_evals))
            u = torch.randn((n, *x.shape[1:]), generator=g).to(x)
            u = u / u.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            pert = (best + delta * u).clamp(0, 1)
            u = (pert - best) / delta
            fval = adversarial(pert).float() * 2 - 1
            mean = float(fval.mean())
            if mean == 1.0:
                grad = u.mean(0, keepdim=True)
            elif mean == -1.0:
                grad = -u.mean(0, keepdim=True)
            else:
                grad = ((fval - mean).view(-1, 1, 1, 1) * u).mean(0, keepdim=True)
            grad = grad / grad.norm().clamp_min(1e-12)
            step = dist / math.sqrt(t)
            while True:
                cand = (best + step * grad).clamp(0, 1)
                if bool(adversarial(cand)[0]):
                    break
                step /= 2
                if step < 1e-8:
                    cand = best
                    break
            cand = binary_search(cand)
            new_dist = float((cand - x).norm())
            if new_dist < dist:
                best, dist = cand, new_dist
    except QueryBudgetExhausted:
        pass
    if best is None:
        return HSJResult(x.clone(), float("inf"), used, False)
    return HSJResult(best, float(normalised_l2(best, x)[0]), used, True)
