"""Options of Feature 3DGS distillation and the teachers they name (shared by the trainer's
``features`` field and by stored feature fields that rebuild their teacher for a query)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import tyro

from ...errors import DataError
from ...models.teacher_cache import Teacher
from ...scene.datasets.base import Dataset

FEATURE_DECODER_FILE = "feature_decoder.pt"


@dataclass
class FeatureConfig:
    """Options of feature distillation (``splatlab train --features ...``)."""

    teacher: tyro.conf.Suppress[Literal["lseg", "sam", "clip", "labels"]] = "lseg"
    """Teacher to distil: 'lseg', 'sam', 'clip' (MaskCLIP) or 'labels' (synthetic, labelled demo scene only)."""
    dim: int = 128
    """Per-Gaussian feature width d (any positive int); the 1x1-conv decoder lifts it to the teacher's width."""
    loss: Literal["l1", "cosine"] = "l1"
    """Feature loss: 'l1' (Feature 3DGS) or 'cosine' (1 - cosine similarity per pixel)."""
    weight: float = 1.0
    """Weight of the feature loss added to the photometric loss (Feature 3DGS uses 1.0)."""
    lr_features: float = 1e-3
    """Learning rate of the per-Gaussian features (Feature 3DGS: 0.001)."""
    lr_decoder: float = 1e-4
    """Learning rate of the 1x1-conv speed-up decoder (Feature 3DGS: 0.0001)."""
    weights: str | None = None
    """Teacher checkpoint: a path, or a name ('vit_b'/'vit_l'/'vit_h' or MobileSAM's 'vit_t' for SAM, an open_clip tag for CLIP)."""
    clip_model: str = "ViT-B-16"
    """open_clip model name of the 'clip' teacher."""
    teacher_input: int = 0
    """Long side of the teacher's input in pixels (0: the teacher's default: LSeg 480, CLIP 448, SAM 1024)."""
    cache_dir: Path | None = None
    """Folder of the teacher-map cache (default: <out>/teacher_cache)."""
    labels_dim: int = 512
    """Embedding width of the synthetic 'labels' teacher."""
    labels_downsample: int = 2
    """The synthetic 'labels' teacher's map is this many times coarser than the image."""

    def validate(self) -> None:
        if self.dim <= 0:
            raise ValueError(f"--features.dim must be positive, got {self.dim}")
        if self.weight < 0 or self.lr_features <= 0 or self.lr_decoder <= 0:
            raise ValueError("--features.weight must be >= 0 and the learning rates positive")
        if self.loss not in ("l1", "cosine"):
            raise ValueError(f"--features.loss must be 'l1' or 'cosine', got {self.loss!r}")

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


def build_teacher(
    feat_cfg: FeatureConfig, dataset: Dataset | None, device: str | torch.device = "cpu"
) -> Teacher:
    """The teacher named by ``feat_cfg.teacher`` with its official weights (WeightsNotFoundError
    with download instructions when they are not on this machine)."""
    kind = feat_cfg.teacher
    if kind == "labels":
        from ...models.label_teacher import LabelEmbeddingTeacher

        names = None if dataset is None else dataset.meta.get("label_names")
        if not names or dataset is None or dataset.meta.get("labels") is None:
            raise DataError(
                "the synthetic 'labels' teacher needs a dataset with per-pixel labels (meta['labels'], "
                "meta['label_names']), such as the demo scene; use --features lseg|clip|sam"
            )
        return LabelEmbeddingTeacher(
            names, dim=feat_cfg.labels_dim, downsample=feat_cfg.labels_downsample
        )
    if kind == "lseg":
        from ...models.lseg import LSegTeacher, load_lseg

        net = load_lseg(feat_cfg.weights, device)
        if feat_cfg.teacher_input:
            net.cfg = dataclasses.replace(net.cfg, input_size=feat_cfg.teacher_input)
        return LSegTeacher(net, tag=Path(feat_cfg.weights or "demo_e200").stem)
    if kind == "sam":
        from ...models.sam import SamTeacher, load_sam

        sam = load_sam(feat_cfg.weights or "vit_b", device)
        return SamTeacher(sam, tag=sam.model_type)
    if kind == "clip":
        from ...models.clip_dense import DenseCLIPTeacher, load_dense_clip

        tag = feat_cfg.weights or "openai"
        net = load_dense_clip(
            feat_cfg.clip_model, tag, device, input_size=feat_cfg.teacher_input or 448
        )
        return DenseCLIPTeacher(net, tag=f"{feat_cfg.clip_model}-{Path(tag).stem}")
    raise ValueError(f"--features must be one of lseg, sam, clip, labels; got {kind!r}")


