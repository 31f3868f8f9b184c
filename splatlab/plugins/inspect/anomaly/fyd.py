"""FYD, "Focus Your Distribution: Coarse-to-Fine Non-Contrastive Learning for Anomaly Detection
and Localization" (Zheng et al., arXiv 2110.04538, ICME 2022), reconstructed: no official code
exists, so every choice the paper does not fix is marked "(ours)" below.

What the paper fixes, as far as we could read it (no full text was reachable here: its abstract,
the captions of figures 1 and 4, the total loss, the seminar notes in ../shared/seeds, and a
Chinese survey note that quotes L_ICA and describes FCA; so the points below are second hand):

- It extends PaDiM (Defard et al. 2020): per-position multivariate Gaussians of pretrained CNN
  patch features, scored by the Mahalanobis distance. PaDiM assumes that position (i, j) shows
  the same part of the object in every image; FYD makes that true by alignment, learned from
  normal images only, end to end.
- Coarse alignment, image level (ICA): a spatial transformer (STN) that predicts a rotation from
  the image and warps it, supervised by ``L_ICA = sum_{A,B in batch} sum_{i,j}
  ||T(A)_ij - T(B)_ij||_2`` (all aligned images of a batch should look alike pixel by pixel).
- Coarse alignment, feature level (FCA): an STN after each stage of the frozen pretrained
  backbone (ResNet weights fixed), warping that stage's map before the next stage; no loss of
  its own (trained through the fine-alignment loss).
- Fine alignment (FAS, a non-contrastive pretext task): the features are split into a copy and a
  patch-shuffled copy; their similarity is maximised with a stop-gradient on one side (SimSiam /
  BYOL style, which is what prevents collapse without negatives). We read "patch-shuffled" as:
  every position of the copy holds the feature of ANOTHER image of the batch at the same
  position (the abstract: "densely maximizes the similarity of features among all corresponding
  locations in a batch"); shuffling positions within an image would contradict that (ours).
- Loss ``L = lambda1 L_ICA + lambda2 L_FAS``; at test the aligned features are scored against the
  per-position Gaussians.

FYD is therefore NOT a reverse-distillation (teacher / student decoder) model: it predates RD4AD
(October 2021 vs CVPR 2022). What it shares with RD4AD here is the frozen pretrained backbone,
the data, the blur, the image score (map max) and the metrics.

Reconstruction choices (ours):

- Backbone: RD4AD's teacher class (:class:`splatlab.models.rd4ad.ResNetEncoder`, layers 1-3,
  frozen, eval mode) and its weight loading, so the same ImageNet file or the same small teacher
  trained here (``teacher.train_texture_teacher``) serves both models. Embedding: PaDiM's
  concatenation of layer1-3 upsampled (nearest) to layer1's grid, then a fixed random subset of
  ``embed_dim`` channels (PaDiM: 100 for ResNet18, 550 for WRN50-2).
- STNs: localisation net = two stride-2 3x3 convs + ReLU, global average pool, linear layer with
  ZERO weights and bias, so every STN starts at the identity transform. ICA predicts a rotation
  angle ``pi * tanh(a)`` (rotation only, as the paper's figure 4); each FCA STN predicts a
  rotation and a translation bounded by ``fca_shift`` (fraction of the half-width). No scale:
  a zoom lets both losses collapse (warp to one constant patch). Sampling: bilinear with
  reflection padding (zero padding would let ICA lower L_ICA by rotating black corners in).
- L_ICA: the mean (not the sum) over unordered pairs and pixels of the per-pixel L2 distance of
  the ImageNet-normalised aligned images.
- FAS: SimSiam heads on the embedding: projector ``g`` (1x1 conv, BN, ReLU, 1x1 conv, BN) and
  predictor ``q`` (1x1 bottleneck); ``L_FAS = mean_{b,i,j} 1 - cos(q(z)[b,:,i,j],
  sg(z)[pi_ij(b),:,i,j])`` where ``pi_ij`` is an independent random derangement of the batch for
  each ``shuffle_patch`` x ``shuffle_patch`` cell of the map (a derangement: an image is never
  paired with itself). One direction only (every image is on both sides once anyway).
- lambda1 = lambda2 = 1, Adam lr 1e-3, batch 16 (the paper's values are not known to us).
- Scoring: PaDiM's, on the aligned backbone embedding (``score_on='backbone'``, default) or on
  the projector output ``z`` (``'projected'``): mean and covariance per position over the normal
  training images, covariance + 0.01 I, Mahalanobis distance, upsampled bilinearly to the input
  size, Gaussian blur sigma 4 (PaDiM's, the same blur as RD4AD here); image score = the map's max,
  as for RD4AD. 'backbone' was chosen over 'projected' on brick's seen defect types (image
  AUROC 0.99-1.0 vs 0.93-1.0 after 20 epochs, 2026-12-01), never on the held-out one.
"""

from __future__ import annotations

import io
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from torch import Tensor, nn

from ....errors import CheckpointError, DataError, WeightsNotFoundError
from ....models.rd4ad import (
    ARCHS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TEACHER_IMAGENET,
    TEACHER_RANDOM,
    RD4ADConfig,
    ResNetEncoder,
    load_teacher_weights,
    teacher_path,
)
from ....models.weights import load_state_dict_file
from ....utils import atomic_write_bytes
from ...base import Progress, no_progress
from .data import AnomalySet
from .rd4ad import metrics_by_defect, to_tensor

__all__ = [
    "FYDConfig",
    "FYDTrainConfig",
    "AffineSTN",
    "FYD",
    "TRAIN_COMMAND",
    "ica_loss",
    "patch_shuffle",
    "fas_loss",
    "build_fyd",
    "train_fyd",
    "fit_gaussians",
    "score_fyd",
    "evaluate_fyd",
    "fit_and_save_fyd",
    "save_fyd",
    "load_fyd",
]

TRAIN_COMMAND = (
    "python benchmarks/anomaly_fyd.py --teacher T.pt --train CKPT.pt --categories brick "
    "(a teacher T.pt from `python benchmarks/anomaly.py --train-teacher T.pt`), or "
    "splatlab.plugins.inspect.anomaly.fyd.fit_and_save_fyd on your own normal images"
)


@dataclass
class FYDConfig:
    """Architecture of an FYD model (backbone fields as :class:`RD4ADConfig`)."""

    arch: Literal["wide_resnet50_2", "resnet50", "resnet34", "resnet18"] = "wide_resnet50_2"
    """Frozen backbone (RD4AD's teacher class; PaDiM / FYD use wide_resnet50_2 or resnet18)."""
    base_channels: int = 64
    """Width of the backbone's first stage (64 = torchvision's; smaller needs a trained teacher)."""
    teacher: str = TEACHER_IMAGENET
    """'imagenet', a teacher checkpoint path, or 'random-test-only' (tests only)."""
    image_size: int = 256
    """Side of the square network input in pixels."""
    sigma: float = 4.0
    """Gaussian blur of the anomaly map in pixels (PaDiM: 4)."""
    embed_dim: int = 100
    """Channels kept (fixed random subset) of the layer1-3 embedding (PaDiM: 100 R18, 550 WRN)."""
    ica: bool = True
    """Image-level coarse alignment (rotation STN on the input)."""
    fca: bool = True
    """Feature-level coarse alignment (rotation + translation STN after each backbone stage)."""
    fca_shift: float = 0.25
    """Largest FCA translation, as a fraction of the map's half-width (ours)."""
    stn_hidden: int = 16
    """Channels of the STNs' localisation nets (ours)."""
    proj_dim: int = 128
    """Output channels of the FAS projector g (ours)."""
    pred_dim: int = 32
    """Bottleneck channels of the FAS predictor q (ours)."""
    shuffle_patch: int = 1
    """Side in feature cells of the blocks shuffled across the batch by FAS (ours)."""
    score_on: Literal["backbone", "projected"] = "backbone"
    """Features the per-position Gaussians model: the aligned embedding or the projector output."""
    cov_eps: float = 0.01
    """Covariance regulariser (PaDiM: 0.01 I)."""
    seed: int = 0
    """Seed of the embedding's channel subset."""

    def __post_init__(self) -> None:
        RD4ADConfig(self.arch, self.base_channels, self.teacher, self.image_size, self.sigma)
        if self.embed_dim < 1 or self.proj_dim < 1 or self.pred_dim < 1 or self.stn_hidden < 1:
            raise DataError("FYD: embed_dim, proj_dim, pred_dim and stn_hidden must be >= 1")
        if self.shuffle_patch < 1 or (self.image_size // 4) % self.shuffle_patch:
            raise DataError(
                f"FYD shuffle_patch {self.shuffle_patch} must divide the layer1 map side "
                f"{self.image_size // 4}"
            )
        if self.score_on not in ("backbone", "projected"):
            raise DataError(
                f"FYD score_on must be 'backbone' or 'projected', not {self.score_on!r}"
            )

    def backbone(self) -> RD4ADConfig:
        """The same backbone as an :class:`RD4ADConfig` (for its weight loading)."""
        return RD4ADConfig(self.arch, self.base_channels, self.teacher, self.image_size, self.sigma)

    def grid(self) -> int:
        """Side of the embedding grid (layer1's map): image_size / 4."""
        return self.image_size // 4

    def dims(self) -> tuple[int, int]:
        """(channels of the full layer1-3 embedding, channels kept)."""
        total = sum(self.backbone().channels())
        return total, min(total, self.embed_dim)


@dataclass
class FYDTrainConfig:
    """Optimisation of the FYD alignment modules and FAS heads (ours: the paper's are unknown)."""

    epochs: int = 20
    """Passes over the normal training images."""
    batch_size: int = 16
    """Images per step (FAS pairs images within a batch; at least 2)."""
    lr: float = 1e-3
    """Adam learning rate."""
    lambda_ica: float = 1.0
    """Weight lambda1 of L_ICA."""
    lambda_fas: float = 1.0
    """Weight lambda2 of L_FAS."""
    seed: int = 0
    """Seed of the initialisation, batch order and shuffles."""


# ------------------------------------------------------------------------------------ modules


class AffineSTN(nn.Module):
    """A spatial transformer restricted to rotation (and optionally translation).

    forward(x: Tensor  # [B, C, H, W]) -> (warped [B, C, H, W], theta [B, 2, 3]); the last
    layer of the localisation net is zero, so at initialisation theta is the identity and the
    output equals the input.
    """

    def __init__(self, cin: int, hidden: int = 16, max_shift: float = 0.0) -> None:
        super().__init__()
        self.max_shift = float(max_shift)
        self.loc = nn.Sequential(
            nn.Conv2d(cin, hidden, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(hidden, 3 if max_shift > 0 else 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def theta(self, x: Tensor) -> Tensor:
        """x: [B, C, H, W] -> affine matrices [B, 2, 3] (normalised coordinates)."""
        p = self.head(self.loc(x))
        ang = math.pi * torch.tanh(p[:, 0])
        c, s = torch.cos(ang), torch.sin(ang)
        if self.max_shift > 0:
            tx, ty = (self.max_shift * torch.tanh(p[:, 1:])).unbind(1)
        else:
            tx = ty = torch.zeros_like(ang)
        return torch.stack([torch.stack([c, -s, tx], 1), torch.stack([s, c, ty], 1)], 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        theta = self.theta(x)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(
            x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
        )
        return out, theta


def _bn_conv(cin: int, cout: int, relu: bool) -> list[nn.Module]:
    mods: list[nn.Module] = [nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)]
    return mods + [nn.ReLU(inplace=True)] if relu else mods


class FYD(nn.Module):
    """Frozen backbone ``encoder`` with ``ica`` / ``fca`` STNs, FAS heads ``projector`` and
    ``predictor``, and the per-position Gaussians (buffers ``gauss_mean`` [P, d] and
    ``gauss_prec`` [P, d, d], P = grid^2) fitted after training.

    forward(images: Tensor  # [B, 3, S, S], ImageNet-normalised) -> dict with
        'aligned' [B, 3, S, S] (ICA output), 'embedding' [B, d, S/4, S/4] (kept channels),
        'full' [B, D, S/4, S/4] (all layer1-3 channels), 'z' [B, proj_dim, S/4, S/4],
        'p' [B, proj_dim, S/4, S/4] (predictor output)
    """

    def __init__(self, config: FYDConfig) -> None:
        super().__init__()
        self.config = config
        a = ARCHS[config.arch]
        b = config.base_channels
        self.encoder = ResNetEncoder(a["block"], a["layers"], b, a["width_per_group"])
        self.encoder.requires_grad_(False)
        self.encoder.eval()
        chans = config.backbone().channels()
        h = config.stn_hidden
        self.ica = AffineSTN(3, h) if config.ica else None
        self.fca = (
            nn.ModuleList(AffineSTN(c, h, config.fca_shift) for c in chans) if config.fca else None
        )
        total, d = config.dims()
        g = torch.Generator().manual_seed(config.seed)
        idx = torch.sort(torch.randperm(total, generator=g)[:d]).values
        self.register_buffer("channel_idx", idx)
        self.projector = nn.Sequential(
            *_bn_conv(total, config.proj_dim, True),
            *_bn_conv(config.proj_dim, config.proj_dim, False),
        )
        self.predictor = nn.Sequential(
            *_bn_conv(config.proj_dim, config.pred_dim, True),
            nn.Conv2d(config.pred_dim, config.proj_dim, 1),
        )
        p = config.grid() ** 2
        ds = d if config.score_on == "backbone" else config.proj_dim
        self.register_buffer("gauss_mean", torch.zeros(p, ds))
        self.register_buffer("gauss_prec", torch.eye(ds).repeat(p, 1, 1))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.uint8))

    def train(self, mode: bool = True) -> FYD:
        super().train(mode)
        self.encoder.eval()  # frozen backbone: BN statistics stay ImageNet's / the teacher's
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """ICA, FCA, projector and predictor parameters (the backbone is frozen)."""
        mods = [m for m in (self.ica, self.fca, self.projector, self.predictor) if m is not None]
        return [p for m in mods for p in m.parameters()]

    def normalize(self, images: Tensor) -> Tensor:
        """images: float [B, 3, H, W] in [0, 1] -> ImageNet-normalised."""
        mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
        return (images - mean) / std

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        x = self.ica(images)[0] if self.ica is not None else images
        enc = self.encoder
        h = enc.maxpool(enc.relu(enc.bn1(enc.conv1(x))))
        feats = []
        for k, layer in enumerate((enc.layer1, enc.layer2, enc.layer3)):
            h = layer(h)
            if self.fca is not None:
                h = self.fca[k](h)[0]
            feats.append(h)
        size = feats[0].shape[-2:]
        full = torch.cat(
            [feats[0]] + [F.interpolate(f, size=size, mode="nearest") for f in feats[1:]], 1
        )
        z = self.projector(full)
        return {
            "aligned": x,
            "full": full,
            "embedding": full.index_select(1, self.channel_idx),
            "z": z,
            "p": self.predictor(z),
        }

    def scored_features(self, out: dict[str, Tensor]) -> Tensor:
        """The features the Gaussians model: [B, d, g, g]."""
        return out["embedding"] if self.config.score_on == "backbone" else out["z"]

    @torch.no_grad()
    def predict(self, images: Tensor, batch_size: int = 16) -> np.ndarray:
        """images: float [B, 3, S, S] in [0, 1] -> anomaly maps float32 [B, S, S] (Mahalanobis
        distance per position, upsampled, blurred).

        Raises:
            CheckpointError: the Gaussians have not been fitted (:func:`fit_gaussians`).
        """
        if not int(self.fitted):
            raise CheckpointError(
                "FYD: the per-position Gaussians are not fitted; call fit_gaussians on the normal "
                "training images (fit_and_save_fyd does) before scoring"
            )
        was = self.training
        self.eval()
        out = []
        try:
            for i in range(0, images.shape[0], batch_size):
                x = self.normalize(images[i : i + batch_size].to(self.gauss_mean.device))
                f = self.scored_features(self(x))
                bsz, d, gh, gw = f.shape
                delta = f.flatten(2).transpose(1, 2) - self.gauss_mean  # [B, P, d]
                m2 = torch.einsum("bpd,pde,bpe->bp", delta, self.gauss_prec, delta)
                dist = m2.clamp_min(0).sqrt().view(bsz, 1, gh, gw)
                amap = F.interpolate(dist, size=x.shape[-2:], mode="bilinear", align_corners=False)
                a = amap[:, 0].float().cpu().numpy()
                if self.config.sigma > 0:
                    a = np.stack([gaussian_filter(m, sigma=self.config.sigma) for m in a])
                out.append(a.astype(np.float32))
        finally:
            self.train(was)
        return np.concatenate(out, 0)


# ------------------------------------------------------------------------------------ losses


def ica_loss(aligned: Tensor) -> Tensor:
    """L_ICA: mean over unordered pairs (A, B) of the batch and over pixels of
    ``||A_ij - B_ij||_2`` (channel vector). aligned: [B, C, H, W], B >= 2 -> scalar."""
    bsz = aligned.shape[0]
    if bsz < 2:
        raise DataError("FYD: L_ICA needs at least two images in a batch")
    total = aligned.new_zeros(())
    for k in range(1, bsz):  # each unordered pair appears twice over the shifts
        d = aligned - aligned.roll(k, 0)
        total = total + torch.sqrt((d * d).sum(1) + 1e-8).mean()
    return total / (bsz - 1)


def patch_shuffle(
    z: Tensor, patch: int = 1, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Per ``patch`` x ``patch`` cell, an independent random derangement of the batch.

    z: [B, C, H, W] (H, W multiples of ``patch``) -> (shuffled [B, C, H, W], src [B, H/p, W/p]
    int64) where ``shuffled[b, :, cell] = z[src[b, cell], :, cell]`` and, for every cell, ``src``
    is a permutation of 0..B-1 with ``src[b] != b``."""
    bsz, c, h, w = z.shape
    if bsz < 2:
        raise DataError("FYD: the patch shuffle needs at least two images in a batch")
    if h % patch or w % patch:
        raise DataError(f"FYD: map {h} x {w} is not a multiple of the shuffle patch {patch}")
    gh, gw = h // patch, w // patch
    n = gh * gw
    order = torch.argsort(torch.rand(n, bsz, generator=generator), dim=1)  # sigma per cell
    nxt = order.roll(-1, dims=1)  # order[k] -> order[k+1]: a single cycle, no fixed point
    src = torch.empty_like(order)
    src.scatter_(1, order, nxt)  # src[order[k]] = order[k+1]
    src = src.T.reshape(bsz, gh, gw).to(z.device)
    idx = src.repeat_interleave(patch, 1).repeat_interleave(patch, 2)  # [B, H, W]
    idx = idx[:, None].expand(bsz, c, h, w)
    return torch.gather(z, 0, idx), src


def fas_loss(
    p: Tensor, z: Tensor, patch: int = 1, generator: torch.Generator | None = None
) -> Tensor:
    """L_FAS = mean over images and positions of ``1 - cos(p[b, :, i, j],
    sg(z)[pi_ij(b), :, i, j])``: the predictor output against the stop-gradient, patch-shuffled
    projector output. p, z: [B, C, H, W] -> scalar (no gradient reaches ``z``)."""
    target, _ = patch_shuffle(z.detach(), patch, generator)
    return (1 - F.cosine_similarity(p, target, dim=1)).mean()


# ------------------------------------------------------------------------------------ train / score


def build_fyd(config: FYDConfig | None = None, weights_dir: str | os.PathLike | None = None) -> FYD:
    """An :class:`FYD` with its backbone weights loaded as ``config.teacher`` says.

    Raises:
        WeightsNotFoundError: the backbone's weights are not on this machine.
    """
    config = config or FYDConfig()
    rd = config.backbone()
    path = teacher_path(rd, weights_dir)
    model = FYD(config)
    if path is not None:
        load_teacher_weights(model.encoder, rd, weights_dir, path)
    return model


def train_fyd(
    model: FYD,
    images: np.ndarray,
    cfg: FYDTrainConfig | None = None,
    progress: Progress = no_progress,
    device: str | torch.device = "cpu",
) -> list[dict[str, float]]:
    """Train ICA, FCA and the FAS heads end to end with ``lambda1 L_ICA + lambda2 L_FAS`` on
    normal images float [N, H, W, 3]; returns per epoch the mean 'loss', 'ica' and 'fas'."""
    cfg = cfg or FYDTrainConfig()
    if cfg.batch_size < 2:
        raise DataError("FYD: batch_size must be >= 2 (FAS pairs images within a batch)")
    c = model.config
    x_all = model.normalize(to_tensor(images, c.image_size))
    g = torch.Generator().manual_seed(cfg.seed)
    model.to(device).train()
    params = model.trainable_parameters()
    opt = torch.optim.Adam(params, lr=cfg.lr)
    hist: list[dict[str, float]] = []
    n = x_all.shape[0]
    last = 0.0
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=g)
        ep: dict[str, list[float]] = {"loss": [], "ica": [], "fas": []}
        for i in range(0, n, cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            if idx.numel() < 2:
                continue
            out = model(x_all[idx].to(device))
            l_ica = ica_loss(out["aligned"]) if model.ica is not None else out["z"].new_zeros(())
            l_fas = fas_loss(out["p"], out["z"], c.shuffle_patch, g)
            loss = cfg.lambda_ica * l_ica + cfg.lambda_fas * l_fas
            opt.zero_grad()
            loss.backward()
            opt.step()
            for k, v in (("loss", loss), ("ica", l_ica), ("fas", l_fas)):
                ep[k].append(float(v.detach()))
            now = time.monotonic()
            if now - last > 0.3:
                progress(
                    (epoch + i / n) / max(cfg.epochs, 1), f"FYD epoch {epoch + 1}/{cfg.epochs}"
                )
                last = now
        hist.append({k: float(np.mean(v)) if v else float("nan") for k, v in ep.items()})
    model.eval()
    return hist


@torch.no_grad()
def fit_gaussians(model: FYD, images: np.ndarray, batch_size: int = 16) -> None:
    """PaDiM's fit on normal images float [N, H, W, 3]: per position the mean and the inverse of
    (covariance + cov_eps I) of the scored features; sets ``model.fitted``. Memory: P d^2
    doubles (P = (S/4)^2; wide_resnet50_2 at 256 px with d = 550: ~10 GB, as PaDiM's)."""
    c = model.config
    x_all = to_tensor(images, c.image_size)
    if x_all.shape[0] < 2:
        raise DataError("FYD: fitting the Gaussians needs at least two normal images")
    model.eval()
    dev = model.gauss_mean.device
    n = 0
    s1 = s2 = None
    for i in range(0, x_all.shape[0], batch_size):  # running sums: no [N, P, d] array kept
        out = model(model.normalize(x_all[i : i + batch_size].to(dev)))
        f = model.scored_features(out).flatten(2).transpose(1, 2).double()  # [B, P, d]
        b1, b2 = f.sum(0), torch.einsum("bpd,bpe->pde", f, f)
        s1, s2 = (b1, b2) if s1 is None else (s1 + b1, s2 + b2)
        n += f.shape[0]
    mean = s1 / n
    cov = (s2 - n * mean[:, :, None] * mean[:, None, :]) / (n - 1)
    cov = cov + c.cov_eps * torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    model.gauss_mean.copy_(mean.float())
    model.gauss_prec.copy_(torch.linalg.inv(cov).float())
    model.fitted.fill_(1)


def score_fyd(
    model: FYD, images: np.ndarray, batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """images float [N, H, W, 3] -> (anomaly maps float32 [N, S, S], image scores [N] = map max)."""
    maps = model.predict(to_tensor(images, model.config.image_size), batch_size)
    return maps, maps.reshape(maps.shape[0], -1).max(1)


def evaluate_fyd(model: FYD, data: AnomalySet) -> dict[str, dict[str, float]]:
    """Metrics on the whole test set ("all") and per defect type (that type vs the normal ones),
    exactly as :func:`splatlab.plugins.inspect.anomaly.rd4ad.evaluate` computes them for RD4AD."""
    maps, scores = score_fyd(model, data.test)
    return metrics_by_defect(maps, scores, data)


def fit_and_save_fyd(
    data: AnomalySet,
    path: str | os.PathLike,
    config: FYDConfig,
    cfg: FYDTrainConfig | None = None,
    progress: Progress = no_progress,
) -> tuple[FYD, dict[str, float]]:
    """Build, train on ``data.train``, fit the Gaussians on the same images, and save with the
    score statistics of those normal images (mean, std, max image score; used by the plugin).
    Returns the model and the statistics."""
    cfg = cfg or FYDTrainConfig()
    torch.manual_seed(cfg.seed)
    model = build_fyd(config)
    hist = train_fyd(model, data.train, cfg, progress)
    progress(0.95, "FYD: fitting the per-position Gaussians")
    fit_gaussians(model, data.train)
    _, s = score_fyd(model, data.train)
    stats = {
        "score_mean": float(s.mean()),
        "score_std": float(s.std()),
        "score_max": float(s.max()),
    }
    extra = {"normal_scores": stats, "category": data.category, "training": asdict(cfg)}
    if hist:
        extra["final_losses"] = hist[-1]
    save_fyd(model, path, extra)
    return model, stats


# ------------------------------------------------------------------------------------ files


def save_fyd(model: FYD, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> None:
    """Write ``{'config', 'fyd' (every module and buffer except the backbone), 'encoder' (when
    the backbone is not torchvision's ImageNet one), **extra}`` atomically."""
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    ckpt: dict[str, Any] = {"config": asdict(model.config), "fyd": sd}
    if model.config.teacher != TEACHER_IMAGENET:
        ckpt["encoder"] = model.encoder.state_dict()
    if extra:
        ckpt.update(extra)
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_fyd(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    weights_dir: str | os.PathLike | None = None,
) -> FYD:
    """Load a checkpoint written by :func:`save_fyd`.

    Raises:
        WeightsNotFoundError: the file (or an ImageNet backbone it needs) is missing; the message
            names the training command.
        CheckpointError: the file is not an FYD checkpoint or does not fit its config.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsNotFoundError(
            f"FYD checkpoint {p} does not exist; train one with {TRAIN_COMMAND}"
        )
    ckpt = load_state_dict_file(p, "FYD")
    if (
        not isinstance(ckpt, dict)
        or not isinstance(ckpt.get("fyd"), dict)
        or not isinstance(ckpt.get("config"), dict)
    ):
        raise CheckpointError(
            f"FYD: {p} is not an FYD checkpoint (expected 'config' and 'fyd' entries, as "
            f"save_fyd writes); train one with {TRAIN_COMMAND}"
        )
    known = {f.name for f in fields(FYDConfig)}
    config = FYDConfig(**{k: v for k, v in ckpt["config"].items() if k in known})
    enc_sd = ckpt.get("encoder")
    if not isinstance(enc_sd, dict) and config.teacher != TEACHER_RANDOM:
        teacher_path(config.backbone(), weights_dir)  # raise before building
    model = FYD(config)
    if isinstance(enc_sd, dict):
        sd = {f"encoder.{k}": v for k, v in enc_sd.items()}
    else:
        if config.teacher != TEACHER_RANDOM:
            load_teacher_weights(model.encoder, config.backbone(), weights_dir)
        sd = {k: v for k, v in model.state_dict().items() if k.startswith("encoder.")}
    sd.update(ckpt["fyd"])
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    bad = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or extra or bad:
        raise CheckpointError(
            f"FYD: {p} does not fit its own config (missing {missing[:3]}, unexpected "
            f"{extra[:3]}, wrong shape {bad[:3]})"
        )
    model.load_state_dict(sd, strict=True)
    model.eval()
    return model.to(device)
