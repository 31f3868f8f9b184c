"""A SYNTHETIC text-aligned teacher built from ground-truth labels (not a pretrained model).

For datasets that carry per-pixel object labels (the procedural demo scene's
``Dataset.meta["labels"]``) this stands in for LSeg/CLIP where no weights can be had: every label
gets a fixed random unit "text embedding" ``e_l`` in D dimensions, and the feature of a pixel is
its label's embedding plus a fixed random projection of the pixel's colour (so the map also has
real per-pixel structure, texture and shading, that the feature field must reproduce)::

    f(p) = normalize(e_label(p) + rgb_weight * P (rgb(p) - 0.5))       P: [D, 3], unit columns

The "text encoder" maps a label name to its ``e_l``, so text queries and label mIoU can be
measured exactly against ground truth. It is deterministic (seeded) and has no learned weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError
from .teacher_cache import Teacher

if TYPE_CHECKING:
    from ..scene.datasets.base import Dataset


class LabelEmbeddingTeacher(Teacher):
    """Synthetic text-aligned teacher from per-pixel labels (see the module docstring).

    Args:
        label_names: name of every label, indexed by label id.
        dim: D, the embedding width (512 like LSeg / CLIP ViT-B).
        rgb_weight: weight of the colour term.
        downsample: the map is average-pooled by this factor (real teachers are coarser than the image).
        seed: seeds the embeddings and the colour projection.
    """

    name = "labels"
    text_aligned = True

    def __init__(
        self,
        label_names: Sequence[str],
        dim: int = 512,
        rgb_weight: float = 0.25,
        downsample: int = 1,
        seed: int = 0,
    ) -> None:
        if not label_names:
            raise DataError("LabelEmbeddingTeacher needs at least one label name")
        if dim < 2 or downsample < 1:
            raise ValueError(
                f"need dim >= 2 and downsample >= 1, got dim={dim}, downsample={downsample}"
            )
        self.label_names = [str(n) for n in label_names]
        self.dim = int(dim)
        self.rgb_weight = float(rgb_weight)
        self.downsample = int(downsample)
        self.seed = int(seed)
        gen = torch.Generator().manual_seed(seed)
        self.embeddings = F.normalize(
            torch.randn(len(self.label_names), self.dim, generator=gen), dim=1
        )
        self.rgb_proj = F.normalize(torch.randn(self.dim, 3, generator=gen), dim=0)

    def cache_id(self) -> str:
        return f"labels-d{self.dim}-rgb{self.rgb_weight:g}-ds{self.downsample}-s{self.seed}-n{len(self.label_names)}"

    def meta(self) -> dict:
        return {
            "label_names": list(self.label_names),
            "dim": self.dim,
            "rgb_weight": self.rgb_weight,
            "downsample": self.downsample,
            "seed": self.seed,
        }

    def features_from_labels(self, labels: Tensor, image: Tensor) -> Tensor:
        """labels: [H, W] int, image: [H, W, 3] in [0, 1] -> [D, h, w]."""
        if labels.shape != image.shape[:2]:
            raise DataError(
                f"labels {list(labels.shape)} and image {list(image.shape)} differ in size"
            )
        lab = labels.long()
        if int(lab.min()) < 0 or int(lab.max()) >= len(self.label_names):
            raise DataError(f"labels hold ids outside 0..{len(self.label_names) - 1}")
        f = (
            self.embeddings[lab] + self.rgb_weight * (image.float() - 0.5) @ self.rgb_proj.T
        )  # [H, W, D]
        f = F.normalize(f, dim=-1).permute(2, 0, 1)
        if self.downsample > 1:
            f = F.normalize(F.avg_pool2d(f[None], self.downsample, ceil_mode=True)[0], dim=0)
        return f

    def encode_frame(self, dataset: Dataset, i: int) -> Tensor:
        labels = dataset.meta.get("labels")
        if labels is None:
            raise DataError(
                f"dataset {dataset.root} has no per-pixel labels (meta['labels']); the 'labels' teacher only "
                "works on labelled scenes such as the demo; use --features lseg|clip|sam"
            )
        img = torch.from_numpy(np.ascontiguousarray(dataset.load_image(i), dtype=np.float32))
        return self.features_from_labels(
            torch.from_numpy(np.asarray(labels[i]).astype(np.int64)), img
        )

    @torch.no_grad()
    def encode_image(self, image: Tensor) -> Tensor:
        raise TypeError(
            "the synthetic 'labels' teacher needs the frame's labels: call encode_frame(dataset, i)"
        )

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> Tensor:
        lower = [n.lower() for n in self.label_names]
        rows = []
        for p in prompts:
            if p.strip().lower() not in lower:
                raise DataError(
                    f"the synthetic 'labels' teacher knows only the labels {self.label_names}, got {p!r}"
                )
            rows.append(self.embeddings[lower.index(p.strip().lower())])
        return torch.stack(rows)
