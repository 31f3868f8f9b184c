"""Countermeasure detectors for the audio plugin: build, train (with RawBoost), score, and save /
load checkpoints.

Architectures (``arch``):

- ``"lfcc_aasist"``: :class:`splatlab.models.ssl_frontend.LFCCAASIST` (LFCC + AASIST-L-sized
  back-end);
- ``"ssl_aasist"``: :class:`splatlab.models.ssl_frontend.SSLAASIST` with a torchaudio WavLM /
  wav2vec2 of the given :class:`SSLConfig`. Trained here from random initialisation on the
  synthetic set (no pretrained SSL weights are on this machine), so "SSL" names the architecture,
  not self-supervised pre-training; ``ssl_weights`` starts from an official checkpoint instead.

A checkpoint is one ``torch.save`` file (written atomically): ``{"format":
"splatlab-audio-cm/1", "arch", "config", "state_dict", "meta"}``.
"""

from __future__ import annotations

import dataclasses
import io
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ....errors import CheckpointError, WeightsNotFoundError
from ....models.aasist import AASISTConfig
from ....models.ssl_frontend import (
    LFCCAASIST,
    SSLAASIST,
    LFCCAASISTConfig,
    SSLConfig,
    build_ssl,
)
from ....utils import atomic_write_bytes
from .rawboost import RawBoostConfig, rawboost

__all__ = [
    "FORMAT",
    "TRAIN_HINT",
    "TINY_SSL",
    "TINY_SSL_BACKEND",
    "TrainConfig",
    "build_detector",
    "default_config",
    "train_detector",
    "score_waves",
    "save_detector",
    "load_detector",
]

FORMAT = "splatlab-audio-cm/1"
TRAIN_HINT = (
    "train one with `python benchmarks/audio_deepfake.py --save <path>.pt` (a few minutes on a "
    "CPU; needs espeak-ng) or splatlab.plugins.inspect.audio.detector.train_detector + "
    "save_detector"
)

# a small WavLM (7-layer CNN at 20 ms hops, 3 transformer layers of width 64)
TINY_SSL = SSLConfig(
    extractor_conv_layer_config=[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2,
    encoder_embed_dim=64,
    encoder_pos_conv_kernel=16,
    encoder_pos_conv_groups=4,
    encoder_num_layers=3,
    encoder_num_heads=4,
    encoder_ff_interm_features=128,
    encoder_num_buckets=32,
    encoder_max_distance=64,
)
TINY_SSL_BACKEND = AASISTConfig(
    filts=[48, [1, 16], [16, 16], [16, 24], [24, 24]],
    gat_dims=[24, 32],
    pool_ratios=[0.5, 0.5, 0.5, 0.5],
)


def build_detector(arch: str, config: dict[str, Any] | None = None) -> nn.Module:
    """A detector from its architecture name and config dict (as stored in checkpoints)."""
    config = dict(config or {})
    if arch == "lfcc_aasist":
        return LFCCAASIST(LFCCAASISTConfig(**config))
    if arch == "ssl_aasist":
        ssl_cfg = SSLConfig(**config.get("ssl", dataclasses.asdict(TINY_SSL)))
        back = AASISTConfig(**config.get("backend", dataclasses.asdict(TINY_SSL_BACKEND)))
        return SSLAASIST(
            build_ssl(ssl_cfg),
            n_layers=ssl_cfg.encoder_num_layers + 1,
            embed_dim=ssl_cfg.encoder_embed_dim,
            backend_cfg=back,
            freeze_ssl=bool(config.get("freeze_ssl", False)),
        )
    raise CheckpointError(f"unknown detector architecture {arch!r} (lfcc_aasist | ssl_aasist)")


def default_config(arch: str) -> dict[str, Any]:
    """The config dict of the default detector of ``arch``."""
    if arch == "lfcc_aasist":
        return dataclasses.asdict(LFCCAASISTConfig())
    return {
        "ssl": dataclasses.asdict(TINY_SSL),
        "backend": dataclasses.asdict(TINY_SSL_BACKEND),
        "freeze_ssl": False,
    }


@dataclass
class TrainConfig:
    """Training of a detector on labelled clips."""

    epochs: int = 12
    """Passes over the training clips."""
    batch_size: int = 16
    """Clips per step."""
    lr: float = 1e-3
    """Adam learning rate (cosine decay to lr / 20)."""
    weight_decay: float = 1e-4
    """Adam weight decay (the official AASIST value)."""
    rawboost_algo: int = 0
    """RawBoost algorithm applied to the training clips on the fly (0 = none, 1-8)."""
    rawboost_prob: float = 1.0
    """Probability that a training clip is augmented (1 = every clip, as the reference
    SSL_Anti-spoofing training does; below 1 the other clips go in clean)."""
    loss: str = "ce"
    """"ce" (AASIST's cross-entropy) or "focal": the SVDD 2024 system's binary focal loss on the
    bona fide logit margin, with soft labels 0.05 / 0.95 (Anmol2059/SVDD2024 train.py)."""
    focal_gamma: float = 2.0
    """Focal loss focusing exponent (the SVDD 2024 value)."""
    focal_alpha: float = 0.25
    """Focal loss constant weight (the SVDD 2024 value; it scales every term alike)."""
    seed: int = 0
    """Seed of the initialisation, the batch order and RawBoost."""


def binary_focal_loss(
    logits: torch.Tensor, labels: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25,
    smoothing: float = 0.05,
) -> torch.Tensor:
    """Binary focal loss (Lin et al. 2017) as the CtrSVDD 2024 SEA system trains with it: on the
    margin ``d = logits[:, 1] - logits[:, 0]`` (so ``sigmoid(d)`` is the softmax bona fide
    probability), soft targets ``t = (1 - 2 smoothing) y + smoothing``, ``bce = BCE(d, t)``,
    ``p_t = exp(-bce)``, loss = mean ``alpha (1 - p_t)^gamma bce``.

    logits: [B, 2]; labels: [B] in {0, 1} (1 = bona fide)."""
    if logits.ndim != 2 or logits.shape[1] != 2:
        raise ValueError(f"logits must be [B, 2], got {tuple(logits.shape)}")
    d = logits[:, 1] - logits[:, 0]
    t = labels.to(d.dtype) * (1.0 - 2.0 * smoothing) + smoothing
    bce = F.binary_cross_entropy_with_logits(d, t, reduction="none")
    pt = torch.exp(-bce)
    return (alpha * (1.0 - pt) ** gamma * bce).mean()


def train_detector(
    model: nn.Module,
    waves: Sequence[np.ndarray],
    labels: Sequence[int],
    cfg: TrainConfig | None = None,
    progress: Callable[[float, str], None] | None = None,
    rawboost_cfg: RawBoostConfig | None = None,
) -> dict[str, float]:
    """Train ``model`` (logits ``[B, 2]``, class 1 = bona fide) with cross-entropy (or the binary
    focal loss, ``cfg.loss``) on equal-length
    clips ``waves`` (float ``[T]`` each, 16 kHz) and ``labels`` (1 bona fide, 0 spoof). Returns
    ``{"seconds", "final_loss"}``; leaves the model in eval mode."""
    cfg = cfg or TrainConfig()
    if cfg.loss not in ("ce", "focal"):
        raise ValueError(f"TrainConfig.loss must be 'ce' or 'focal', got {cfg.loss!r}")
    if not 0.0 <= cfg.rawboost_prob <= 1.0:
        raise ValueError(f"TrainConfig.rawboost_prob must be in [0, 1], got {cfg.rawboost_prob}")
    rng = np.random.default_rng(cfg.seed)
    coin = np.random.default_rng([cfg.seed, 1])  # which clips RawBoost augments (own stream)
    torch.manual_seed(cfg.seed)
    x_all = np.stack([np.asarray(w, dtype=np.float32) for w in waves])
    y_all = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = int(np.ceil(len(x_all) / cfg.batch_size))
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total, eta_min=cfg.lr / 20)
    t0 = time.perf_counter()
    model.train()
    loss_v = float("nan")
    step = 0
    for _epoch in range(cfg.epochs):
        order = rng.permutation(len(x_all))
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            xb = x_all[idx]
            if cfg.rawboost_algo:
                # the coin flips have their own stream: p = 1 gives the batches of the reference
                # setting and p = 0 those of no RawBoost, draw for draw
                xb = np.stack(
                    [
                        rawboost(x, cfg.rawboost_algo, cfg=rawboost_cfg, rng=rng).astype(np.float32)
                        if coin.random() < cfg.rawboost_prob
                        else x
                        for x in xb
                    ]
                )
            _, logits = model(torch.from_numpy(xb))
            if cfg.loss == "focal":
                loss = binary_focal_loss(logits, y_all[idx], cfg.focal_gamma, cfg.focal_alpha)
            else:
                loss = F.cross_entropy(logits, y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            loss_v = loss.item()
            if progress is not None:
                progress(step / total, f"epoch {_epoch + 1}/{cfg.epochs} loss {loss_v:.3f}")
    model.eval()
    return {"seconds": time.perf_counter() - t0, "final_loss": loss_v}


@torch.no_grad()
def score_waves(model: nn.Module, waves: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
    """Scores ``[N]`` = ``logits[:, 1]`` in eval mode (higher = more bona fide), as AASIST's
    evaluation writes them. Clips of one batch must have equal length."""
    model.eval()
    out = []
    for i in range(0, len(waves), batch_size):
        xb = torch.from_numpy(
            np.stack([np.asarray(w, np.float32) for w in waves[i : i + batch_size]])
        )
        out.append(model(xb)[1][:, 1].numpy())
    return np.concatenate(out) if out else np.zeros(0)


def save_detector(
    path: str | os.PathLike,
    model: nn.Module,
    arch: str,
    config: dict[str, Any],
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically; returns its path."""
    buf = io.BytesIO()
    torch.save(
        {
            "format": FORMAT,
            "arch": arch,
            "config": config,
            "state_dict": model.state_dict(),
            "meta": dict(meta or {}),
        },
        buf,
    )
    p = Path(path)
    atomic_write_bytes(p, buf.getvalue())
    return p


def load_detector(path: str | os.PathLike, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """A detector checkpoint written by :func:`save_detector`, in eval mode. Returns
    ``(model, {"arch", "config", "meta"})``.

    Raises:
        WeightsNotFoundError: ``path`` is empty or missing (says how to train one).
        CheckpointError: the file is not such a checkpoint.
    """
    if not str(path):
        raise WeightsNotFoundError(f"no detector checkpoint given; {TRAIN_HINT}")
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsNotFoundError(f"detector checkpoint {p} does not exist; {TRAIN_HINT}")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{p}: not a readable detector checkpoint ({e})") from e
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a {FORMAT} checkpoint; {TRAIN_HINT}")
    model = build_detector(ck["arch"], ck["config"])
    try:
        model.load_state_dict(ck["state_dict"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{p}: weights do not match {ck['arch']}: {e}") from e
    return model.eval().to(device), {"arch": ck["arch"], "config": ck["config"], "meta": ck["meta"]}
