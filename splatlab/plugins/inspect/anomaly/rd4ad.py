"""Training and scoring of Reverse Distillation (the model lives in splatlab.models.rd4ad).

Training follows the official main.py (hq-deng/RD4AD): the teacher frozen in eval mode, Adam on
the bottleneck and decoder parameters (lr 0.005, betas (0.5, 0.999)), batches of 16 normal
images resized to the input size and ImageNet-normalised, no augmentation, the official loss.
Scoring follows its evaluation: the blurred sum of 1 - cos maps, image score = the map's max.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ....errors import DataError
from ....models.rd4ad import RD4ADConfig, ReverseDistillation, build_rd4ad, rd4ad_loss, save_rd4ad
from ...base import Progress, no_progress
from .data import AnomalySet
from .metrics import anomaly_metrics

__all__ = ["TrainConfig", "to_tensor", "train_rd4ad", "score", "evaluate", "fit_and_save"]


@dataclass
class TrainConfig:
    """Optimisation of the RD4AD student (official values as defaults)."""

    epochs: int = 200
    """Passes over the normal training images (official: 200)."""
    batch_size: int = 16
    """Images per step (official: 16)."""
    lr: float = 0.005
    """Adam learning rate (official: 0.005)."""
    beta1: float = 0.5
    """Adam beta1 (official: 0.5; beta2 is 0.999)."""
    seed: int = 0
    """Seed of the initialisation and batch order."""


def to_tensor(images: np.ndarray, size: int) -> torch.Tensor:
    """float [N, H, W, 3] in [0, 1] (or uint8) -> float [N, 3, size, size] (bilinear resize)."""
    a = np.asarray(images)
    if a.ndim != 4 or a.shape[-1] != 3:
        raise DataError(f"expected images [N, H, W, 3], got shape {a.shape}")
    x = torch.from_numpy(a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else 1.0))
    x = x.permute(0, 3, 1, 2).contiguous()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    return x


def train_rd4ad(
    model: ReverseDistillation,
    images: np.ndarray,
    cfg: TrainConfig | None = None,
    progress: Progress = no_progress,
    device: str | torch.device = "cpu",
) -> list[float]:
    """Train ``model.bn`` and ``model.decoder`` on normal images float [N, H, W, 3]; returns the
    mean loss of each epoch."""
    cfg = cfg or TrainConfig()
    x_all = model.normalize(to_tensor(images, model.config.image_size))
    g = torch.Generator().manual_seed(cfg.seed)
    model.to(device).train()
    opt = torch.optim.Adam(model.student_parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    losses: list[float] = []
    n = x_all.shape[0]
    last = 0.0
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=g)
        ep = []
        for i in range(0, n, cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            if idx.numel() < 2:  # BatchNorm needs two samples (the official loader keeps them)
                continue
            t, s = model(x_all[idx].to(device))
            loss = rd4ad_loss(t, s)
            opt.zero_grad()
            loss.backward()
            opt.step()
            ep.append(float(loss.detach()))
            now = time.monotonic()
            if now - last > 0.3:
                progress((epoch + i / n) / cfg.epochs, f"RD4AD epoch {epoch + 1}/{cfg.epochs}")
                last = now
        losses.append(float(np.mean(ep)) if ep else float("nan"))
    model.eval()
    return losses


def score(
    model: ReverseDistillation, images: np.ndarray, batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """images float [N, H, W, 3] -> (anomaly maps float32 [N, S, S], image scores [N] = map max)."""
    maps = model.predict(to_tensor(images, model.config.image_size), batch_size)
    return maps, maps.reshape(maps.shape[0], -1).max(1)


def _resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    if masks.shape[-1] == size:
        return masks.astype(bool)
    m = torch.from_numpy(masks.astype(np.float32))[:, None]
    return (F.interpolate(m, size=(size, size), mode="nearest")[:, 0] > 0.5).numpy()


def evaluate(model: ReverseDistillation, data: AnomalySet) -> dict[str, dict[str, float]]:
    """Metrics on the whole test set ("all") and per defect type (that type vs the normal ones)."""
    maps, scores = score(model, data.test)
    return metrics_by_defect(maps, scores, data)


def metrics_by_defect(maps: np.ndarray, scores: np.ndarray, data: AnomalySet) -> dict[str, dict[str, float]]:
    """:func:`anomaly_metrics` of anomaly ``maps`` [N, h, w] and image ``scores`` [N] of
    ``data.test``: on the whole test set ("all") and per defect type (that type vs the normal
    images), every model scored the same way."""
    masks = _resize_masks(data.masks, maps.shape[-1])
    kinds = np.asarray(data.defects)
    out = {"all": anomaly_metrics(maps, masks, data.labels, scores)}
    good = kinds == "good"
    for kind in dict.fromkeys(k for k in data.defects if k != "good"):
        sel = good | (kinds == kind)
        out[kind] = anomaly_metrics(maps[sel], masks[sel], data.labels[sel], scores[sel])
    return out


def fit_and_save(
    data: AnomalySet,
    path: str | os.PathLike,
    config: RD4ADConfig,
    cfg: TrainConfig | None = None,
    progress: Progress = no_progress,
) -> tuple[ReverseDistillation, dict[str, float]]:
    """Build (teacher per ``config.teacher``), train on ``data.train``, and save with the score
    statistics of the normal training images (their mean, std and max image score, used by the
    plugin to flag an image). Returns the model and those statistics."""
    cfg = cfg or TrainConfig()
    torch.manual_seed(cfg.seed)
    model = build_rd4ad(config)
    train_rd4ad(model, data.train, cfg, progress)
    _, s = score(model, data.train)
    stats = {
        "score_mean": float(s.mean()),
        "score_std": float(s.std()),
        "score_max": float(s.max()),
    }
    save_rd4ad(model, path, {"normal_scores": stats, "category": data.category})
    return model, stats
