"""A small RD4AD teacher trained here, for machines without torchvision's ImageNet weights.

RD4AD needs a teacher whose features tell textures and colours apart; the paper's is an
ImageNet-trained WideResNet-50-2. Where that file is absent (and for narrow ``base_channels``
configs, which have no ImageNet weights at all), :func:`train_texture_teacher` trains the same
encoder class (ResNet layers 1-3 plus a pooled linear head, dropped afterwards) to classify which
of scikit-image's bundled images a random crop comes from (18 classes: textures, photos,
micrographs), with flips, 90-degree rotations, scale and brightness jitter. Crops of the texture
categories come only from the left 60 % of each texture, the region the anomaly data set
(:mod:`.data`) trains on; the teacher never sees a test crop or a defect.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ....models.rd4ad import RD4ADConfig, ReverseDistillation
from ....utils import atomic_write_bytes
from ...base import Progress, no_progress
from .data import TEXTURES, texture

__all__ = ["TEACHER_SOURCES", "TeacherConfig", "train_texture_teacher"]

TEACHER_SOURCES = (
    "brick",
    "grass",
    "gravel",
    "camera",
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "text",
    "coins",
    "moon",
    "page",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "clock",
    "cell",
    "colorwheel",
)


@dataclass
class TeacherConfig:
    """Classification pre-training of a small RD4AD teacher."""

    steps: int = 600
    """Optimiser steps."""
    batch_size: int = 32
    """Crops per step."""
    crop: int = 96
    """Side of the training crops in pixels."""
    lr: float = 2e-3
    """AdamW learning rate (cosine decay)."""
    seed: int = 0
    """Seed of the initialisation and the crops."""


def _sample(rng: np.random.Generator, crop: int) -> tuple[np.ndarray, int]:
    k = int(rng.integers(len(TEACHER_SOURCES)))
    img = texture(TEACHER_SOURCES[k])
    w = img.shape[1]
    if TEACHER_SOURCES[k] in TEXTURES:
        w = int(0.6 * w)  # the training region of the anomaly data set
    scale = float(rng.uniform(0.7, 1.4))
    side = min(int(crop * scale), img.shape[0], w)
    y = int(rng.integers(0, img.shape[0] - side + 1))
    x = int(rng.integers(0, w - side + 1))
    c = cv2.resize(img[y : y + side, x : x + side], (crop, crop), interpolation=cv2.INTER_AREA)
    c = np.rot90(c, int(rng.integers(4)))
    if rng.random() < 0.5:
        c = c[:, ::-1]
    c = np.clip(c * rng.uniform(0.8, 1.2) + rng.uniform(-0.08, 0.08), 0, 1)
    return np.ascontiguousarray(c, dtype=np.float32), k


def train_texture_teacher(
    config: RD4ADConfig,
    path: str | os.PathLike,
    cfg: TeacherConfig | None = None,
    progress: Progress = no_progress,
) -> dict[str, float]:
    """Train the encoder of ``config`` (arch, base_channels) as a crop classifier and save its
    state_dict as ``{'encoder': ..., 'config': ..., 'teacher_training': ...}`` at ``path``
    (atomically; loadable as ``RD4ADConfig(teacher=path)``). Returns the final training loss and
    accuracy (over the last 50 steps)."""
    cfg = cfg or TeacherConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = ReverseDistillation(config)
    enc = model.encoder
    enc.requires_grad_(True)
    head = nn.Linear(config.channels()[2], len(TEACHER_SOURCES))
    params = list(enc.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps)
    enc.train()
    hist_loss: list[float] = []
    hist_acc: list[float] = []
    last = 0.0
    for step in range(cfg.steps):
        batch = [_sample(rng, cfg.crop) for _ in range(cfg.batch_size)]
        x = torch.from_numpy(np.stack([b[0] for b in batch])).permute(0, 3, 1, 2)
        y = torch.tensor([b[1] for b in batch])
        logits = head(enc(model.normalize(x))[2].mean((2, 3)))
        loss = F.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        hist_loss.append(float(loss.detach()))
        hist_acc.append(float((logits.argmax(1) == y).float().mean()))
        now = time.monotonic()
        if now - last > 0.3:
            progress(step / cfg.steps, f"teacher step {step + 1}/{cfg.steps}")
            last = now
    enc.eval()
    stats = {"loss": float(np.mean(hist_loss[-50:])), "accuracy": float(np.mean(hist_acc[-50:]))}
    buf = io.BytesIO()
    torch.save(
        {
            "encoder": enc.state_dict(),
            "config": asdict(config),
            "teacher_training": {**asdict(cfg), **stats, "classes": list(TEACHER_SOURCES)},
        },
        buf,
    )
    atomic_write_bytes(path, buf.getvalue())
    return stats
