"""Training D4: standardisation statistics, the full-spectrum model, its C&W saliency, the
partitions and the N partition models.

The official recipe (``configs/at.py``, ``d3.py``): ResNet-50 from scratch, Adam lr 1e-4, 20 epochs,
batch 32, each model adversarially trained with TRADES (L2, eps 10 at 224 px, 10 steps), light
blur / JPEG augmentation. Ours differs, for a CPU: Adam lr 1e-3 (a small data set and few epochs),
*no adversarial training* (it multiplies the cost by ~11) and no augmentation (a horizontal flip
would be a no-op: it only flips the signs of odd DCT coefficients, whose magnitudes D4 keeps).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ....errors import DataError
from ...base import Progress, no_progress
from .dct import log_dct_numpy
from .model import D4Config, D4Detector, SpectrumClassifier, save_d4
from .partition import cw_saliency, round_robin_partition

__all__ = [
    "TrainConfig",
    "to_tensor",
    "spectrum_stats",
    "fit_classifier",
    "fit_d4",
    "fit_and_save",
]


@dataclass
class TrainConfig:
    """How the detectors are trained (stored in the checkpoint's info)."""

    epochs: int = 15
    """Epochs per model."""
    batch_size: int = 32
    """Images per step."""
    lr: float = 1e-3
    """Adam learning rate (official: 1e-4 for 20 epochs on ~40k images)."""
    cw_c: float = 1.0
    """C&W-L2 trade-off constant of the saliency attack."""
    cw_steps: int = 100
    """C&W-L2 iterations (official: 1000)."""
    cw_lr: float = 0.01
    """C&W-L2 Adam learning rate (official: 0.01)."""
    saliency_samples: int = 256
    """Synthetic training images attacked for the saliency (official: 1000)."""
    seed: int = 0
    """Seeds initialisation and batch order."""


def to_tensor(images: Any) -> Tensor:
    """uint8 [B, S, S, 3] or float [B, S, S, 3] in [0, 1] -> float32 [B, 3, S, S]."""
    a = np.asarray(images)
    if a.ndim != 4 or a.shape[-1] != 3:
        raise DataError(f"expected images [B, S, S, 3], got shape {a.shape}")
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))


def spectrum_stats(x: Tensor, eps: float, chunk: int = 256) -> tuple[Tensor, Tensor]:
    """Per-coefficient mean and std of ``log(|dctn(x)| + eps)`` (scipy, float64).

    x: Tensor  # [B, 3, S, S]
    returns: (Tensor [3, S, S], Tensor [3, S, S])
    """
    s1 = np.zeros(x.shape[1:])
    s2 = np.zeros(x.shape[1:])
    for i in range(0, x.shape[0], chunk):
        f = log_dct_numpy(x[i : i + chunk].numpy(), eps)
        s1 += f.sum(0)
        s2 += (f * f).sum(0)
    n = max(x.shape[0], 1)
    mean = s1 / n
    var = np.maximum(s2 / n - mean * mean, 0.0)
    return torch.from_numpy(mean).float(), torch.from_numpy(np.sqrt(var)).float()


def fit_classifier(
    model: torch.nn.Module,
    x: Tensor,
    y: Tensor,
    tcfg: TrainConfig,
    progress: Progress = no_progress,
    span: tuple[float, float] = (0.0, 1.0),
    label: str = "model",
) -> list[float]:
    """Cross-entropy training with Adam; returns the mean loss of each epoch.

    x: Tensor  # [B, 3, S, S] in [0, 1]; y: Tensor  # [B] int64
    """
    g = torch.Generator().manual_seed(tcfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=tcfg.lr)
    model.train()
    losses: list[float] = []
    n = x.shape[0]
    for ep in range(tcfg.epochs):
        perm = torch.randperm(n, generator=g)
        total = 0.0
        for i in range(0, n, tcfg.batch_size):
            idx = perm[i : i + tcfg.batch_size]
            if idx.numel() < 2:  # BatchNorm needs two samples
                continue
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
        losses.append(total / n)
        frac = span[0] + (span[1] - span[0]) * (ep + 1) / max(tcfg.epochs, 1)
        progress(frac, f"{label}: epoch {ep + 1}/{tcfg.epochs}, loss {losses[-1]:.4f}")
    model.eval()
    return losses


def fit_d4(
    x: Tensor,
    y: Tensor,
    cfg: D4Config,
    tcfg: TrainConfig | None = None,
    progress: Progress = no_progress,
    full: SpectrumClassifier | None = None,
    saliency: Tensor | None = None,
) -> tuple[D4Detector, dict[str, Any]]:
    """The whole D4 recipe on [B, 3, S, S] images with labels (0 real, 1 synthetic).

    full / saliency: a trained full-spectrum model and its saliency to reuse (e.g. the same
    baseline for several N); computed here when None. Returns (detector, info) where info holds
    the training time of each stage, the saliency [3, S, S] and the configs.
    """
    tcfg = tcfg or TrainConfig()
    cfg.validate()
    if (
        x.ndim != 4
        or x.shape[1] != 3
        or x.shape[2] != cfg.image_size
        or x.shape[3] != cfg.image_size
    ):
        raise DataError(
            f"training images must be [B, 3, {cfg.image_size}, {cfg.image_size}], got {tuple(x.shape)}"
        )
    if set(torch.unique(y).tolist()) != {0, 1}:
        raise DataError("D4 training needs both real (0) and synthetic (1) images")
    torch.manual_seed(tcfg.seed)
    info: dict[str, Any] = {
        "config": asdict(cfg),
        "train": asdict(tcfg),
        "n_train": int(x.shape[0]),
    }
    t0 = time.perf_counter()
    mean, std = spectrum_stats(x, cfg.log_eps)
    if full is None:
        full = SpectrumClassifier(cfg)
        full.set_stats(mean, std)
        fit_classifier(full, x, y, tcfg, progress, (0.0, 0.3), "full spectrum")
        info["time_full_s"] = time.perf_counter() - t0
    if saliency is None:
        t1 = time.perf_counter()
        progress(0.3, "C&W-L2 saliency")
        fake = torch.nonzero(y == 1)[:, 0][: tcfg.saliency_samples]
        saliency = cw_saliency(full, x[fake], y[fake], tcfg.cw_c, tcfg.cw_steps, tcfg.cw_lr)
        info["time_saliency_s"] = time.perf_counter() - t1
    masks = round_robin_partition(saliency, cfg.n_partitions)
    det = D4Detector(cfg, masks)
    det.set_stats(mean, std)
    det.full.load_state_dict(full.state_dict())
    t2 = time.perf_counter()
    for i, m in enumerate(det.members):
        torch.manual_seed(tcfg.seed + 1 + i)
        lo = 0.35 + 0.65 * i / cfg.n_partitions
        hi = 0.35 + 0.65 * (i + 1) / cfg.n_partitions
        fit_classifier(
            m,
            x,
            y,
            replace(tcfg, seed=tcfg.seed + 1 + i),
            progress,
            (lo, hi),
            f"partition {i + 1}/{cfg.n_partitions}",
        )
    info["time_members_s"] = time.perf_counter() - t2
    info["time_total_s"] = time.perf_counter() - t0
    info["saliency"] = saliency.clone()
    det.eval()
    return det, info


def fit_and_save(
    real_images: Any,
    synthetic_images: Any,
    path: str | Path,
    cfg: D4Config | None = None,
    tcfg: TrainConfig | None = None,
    progress: Progress = no_progress,
) -> tuple[D4Detector, dict[str, Any]]:
    """Train D4 on real and synthetic crops (uint8 / float [B, S, S, 3]) and save it to ``path``."""
    cfg = cfg or D4Config()
    xr, xs = to_tensor(real_images), to_tensor(synthetic_images)
    x = torch.cat([xr, xs])
    y = torch.cat([torch.zeros(len(xr), dtype=torch.long), torch.ones(len(xs), dtype=torch.long)])
    det, info = fit_d4(x, y, cfg, tcfg, progress)
    save_d4(path, det, info)
    return det, info
