"""Feature 3DGS (Zhou et al., CVPR 2024): distil a 2D foundation model into per-Gaussian features.

Every Gaussian gets a low-dimensional feature ``f_i`` (``FeatureConfig.dim`` = d channels, any d).
Colour (SH evaluated here, per view) and features are rasterized in ONE call (colors
``[N, 3 + d]``), the rendered feature map is resized to the teacher map's resolution and lifted
to the teacher's width D by the 1x1-conv speed-up decoder (:class:`FeatureDecoder`), and the loss
adds ``weight * L1(decoded, teacher)`` (Feature 3DGS's weighting: 1.0) or a cosine loss to the
3DGS photometric loss. Teacher maps are computed once per view and streamed from a float16 disk
cache (:class:`splatlab.models.teacher_cache.TeacherCache`).

Teachers (``FeatureConfig.teacher``): 'lseg' (512-D, text-aligned), 'sam' (256-D, promptable),
'clip' (MaskCLIP dense CLIP, text-aligned) and 'labels', a SYNTHETIC text-aligned teacher built
from ground-truth labels for the demo scene (see :mod:`splatlab.models.label_teacher`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
import tyro
from torch import Tensor

from ..errors import CheckpointError, DataError
from ..models.teacher_cache import Teacher, TeacherCache
from ..rendering.features import FeatureDecoder
from ..rendering.rasterize import rasterize
from ..rendering.sh import eval_sh
from ..utils import atomic_write, atomic_write_json
from .datasets.base import Dataset
from .train import TrainConfig, Trainer, TrainResult

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
        from ..models.label_teacher import LabelEmbeddingTeacher

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
        from ..models.lseg import LSegTeacher, load_lseg

        net = load_lseg(feat_cfg.weights, device)
        if feat_cfg.teacher_input:
            net.cfg = dataclasses.replace(net.cfg, input_size=feat_cfg.teacher_input)
        return LSegTeacher(net, tag=Path(feat_cfg.weights or "demo_e200").stem)
    if kind == "sam":
        from ..models.sam import SamTeacher, load_sam

        sam = load_sam(feat_cfg.weights or "vit_b", device)
        return SamTeacher(sam, tag=sam.model_type)
    if kind == "clip":
        from ..models.clip_dense import DenseCLIPTeacher, load_dense_clip

        tag = feat_cfg.weights or "openai"
        net = load_dense_clip(
            feat_cfg.clip_model, tag, device, input_size=feat_cfg.teacher_input or 448
        )
        return DenseCLIPTeacher(net, tag=f"{feat_cfg.clip_model}-{Path(tag).stem}")
    raise ValueError(f"--features must be one of lseg, sam, clip, labels; got {kind!r}")


def camera_center(viewmat: Tensor) -> Tensor:
    """World position of an OpenCV world-to-camera matrix [4, 4] -> [3]."""
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    return -R.T @ t


def render_rgb_features(
    params: torch.nn.ParameterDict | dict[str, Tensor],
    viewmat: Tensor,  # [4, 4]
    K: Tensor,  # [3, 3]
    width: int,
    height: int,
    sh_degree: int,
    background: Tensor | None = None,  # [3]
    **kwargs: Any,
) -> tuple[Tensor, Tensor, Tensor, dict[str, Any]]:
    """Colour and per-Gaussian features in ONE rasterization: colours are the SH evaluated towards
    this camera (gsplat's ``max(SH + 0.5, 0)``), concatenated with ``params['features']``.

    Returns rgb [H, W, 3], features [H, W, d] (background 0), alpha [H, W, 1], info.
    """
    means = params["means"]
    coeffs = torch.cat([params["sh0"], params["shN"]], dim=1)
    deg = min(sh_degree, int(math.isqrt(coeffs.shape[1])) - 1)
    dirs = means - camera_center(viewmat.to(means))[None]
    rgb = torch.clamp_min(eval_sh(deg, dirs, coeffs) + 0.5, 0.0)
    feats = params["features"]
    colors = torch.cat([rgb, feats], dim=-1)
    bg = (
        torch.zeros(3, device=means.device, dtype=means.dtype)
        if background is None
        else background.to(means)
    )
    bgs = torch.cat([bg, feats.new_zeros(feats.shape[1])])[None]
    out, alpha, info = rasterize(
        means,
        params["quats"],
        torch.exp(params["scales"]),
        torch.sigmoid(params["opacities"]),
        colors,
        viewmat[None].to(means),
        K[None].to(means),
        width,
        height,
        sh_degree=None,
        backgrounds=bgs,
        **kwargs,
    )
    return out[0, ..., :3], out[0, ..., 3:], alpha[0], info


def feature_loss(decoded: Tensor, target: Tensor, kind: str) -> Tensor:
    """decoded, target: [D, h, w]. 'l1': mean |decoded - target|; 'cosine': mean (1 - cos) per pixel."""
    if kind == "l1":
        return (decoded - target).abs().mean()
    return (1.0 - F.cosine_similarity(decoded, target, dim=0)).mean()


def mean_iou(pred: np.ndarray, gt: np.ndarray, n_labels: int) -> tuple[float, dict[int, float]]:
    """mIoU over the labels present in ``gt`` or ``pred`` (union > 0). pred, gt: int arrays of one shape."""
    ious = {}
    for c in range(n_labels):
        p, g = pred == c, gt == c
        union = np.logical_or(p, g).sum()
        if union > 0:
            ious[c] = float(np.logical_and(p, g).sum() / union)
    return (float(np.mean(list(ious.values()))) if ious else 0.0), ious


class FeatureTrainer(Trainer):
    """A :class:`Trainer` whose Gaussians also carry distilled features (see the module docstring).

    Args:
        dataset, cfg, on_step, on_event: as :class:`Trainer`.
        feat_cfg: the :class:`FeatureConfig`.
        teacher: the :class:`Teacher` (see :func:`build_teacher`).
        cache: the teacher-map cache (default: ``feat_cfg.cache_dir`` or ``<out>/teacher_cache``).
    """

    def __init__(
        self,
        dataset: Dataset,
        cfg: TrainConfig,
        feat_cfg: FeatureConfig,
        teacher: Teacher,
        cache: TeacherCache | None = None,
        **kw: Any,
    ) -> None:
        feat_cfg.validate()
        self.feat_cfg = feat_cfg
        self.teacher = teacher
        super().__init__(dataset, cfg, **kw)
        self.decoder = FeatureDecoder(feat_cfg.dim, teacher.dim).to(self.device)
        self.decoder_opt = torch.optim.Adam(self.decoder.parameters(), lr=feat_cfg.lr_decoder)
        root = (
            feat_cfg.cache_dir
            if feat_cfg.cache_dir is not None
            else Path(cfg.out) / "teacher_cache"
        )
        self.cache = cache if cache is not None else TeacherCache(root, teacher, dataset)
        self.teacher_seconds = 0.0

    # ------------------------------------------------------------------ hooks
    def extra_channels(self) -> dict[str, int]:
        return {**super().extra_channels(), "features": self.feat_cfg.dim}

    def param_lrs(self) -> dict[str, float]:
        return {**super().param_lrs(), "features": self.feat_cfg.lr_features}

    def aux_optimizers(self) -> list[torch.optim.Optimizer]:
        return [*super().aux_optimizers(), self.decoder_opt]

    def config_json(self) -> dict[str, Any]:
        return {**super().config_json(), "features": self.feat_cfg.to_json()}

    def aux_state_dict(self) -> dict[str, Any]:
        from .feature_field import feature_aux_state

        return {
            **super().aux_state_dict(),
            **feature_aux_state(self.decoder, self.feat_cfg.to_json(), self.teacher),
            "feature_decoder_opt": self.decoder_opt.state_dict(),
        }

    def load_aux_state_dict(self, state: dict[str, Any]) -> None:
        super().load_aux_state_dict(state)
        if "feature_decoder" not in state:
            raise CheckpointError(
                "the checkpoint has no feature decoder: it was not trained with --features"
            )
        t = state.get("teacher", {})
        if t.get("dim") not in (None, self.teacher.dim):
            raise CheckpointError(
                f"checkpoint features were distilled from a {t.get('dim')}-D teacher, not {self.teacher.dim}-D"
            )
        self.decoder.load_state_dict(state["feature_decoder"])
        self.decoder_opt.load_state_dict(state["feature_decoder_opt"])

    def forward(
        self,
        step: int,
        i: int,
        vm: Tensor,
        K: Tensor,
        w: int,
        h: int,
        sh_degree: int,
        bg: Tensor | None,
    ) -> dict[str, Any]:
        bg = self.background() if bg is None else bg
        img, feat, alpha, info = render_rgb_features(
            self.params,
            vm,
            K,
            w,
            h,
            sh_degree,
            bg,
            rasterize_mode="antialiased" if self.cfg.antialiased else "classic",
            absgrad=self.cfg.absgrad,
        )
        return {"img": img, "alpha": alpha, "info": info, "features": feat, "view": i}

    def teacher_map(self, i: int) -> Tensor:
        """Teacher features of view i: [D, h, w] on the training device (streamed from the cache)."""
        t0 = time.perf_counter()
        out = self.cache.get(i, self.device)
        self.teacher_seconds += time.perf_counter() - t0
        return out

    def decode(self, feat: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """Rendered features [H, W, d] -> decoded [D, h, w] (resized to ``size`` first, as Feature 3DGS)."""
        x = feat.permute(2, 0, 1)[None]
        if size is not None and tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.decoder(x)[0]

    def compute_loss(self, step: int, out: dict[str, Any], gt: Tensor) -> Tensor:
        loss = super().compute_loss(step, out, gt)
        target = self.teacher_map(out["view"])
        decoded = self.decode(out["features"], tuple(target.shape[-2:]))
        lf = feature_loss(decoded, target, self.feat_cfg.loss)
        out["feature_loss"] = lf.detach()
        return loss + self.feat_cfg.weight * lf

    # ------------------------------------------------------------------ outputs
    def train(self) -> TrainResult:
        result = super().train()
        self.save_decoder(self.run_dir / FEATURE_DECODER_FILE)
        return result

    def save_decoder(self, path: Path) -> Path:
        """Write the decoder (and what it decodes to) atomically, for queries on an exported PLY."""
        with atomic_write(path, "wb") as f:
            torch.save(
                {
                    "state_dict": {k: v.cpu() for k, v in self.decoder.state_dict().items()},
                    "in_dim": self.decoder.in_dim,
                    "out_dim": self.decoder.out_dim,
                    "teacher": self.teacher.name,
                    "teacher_cache_id": self.teacher.cache_id(),
                    "teacher_meta": self.teacher.meta(),
                    "feature_config": self.feat_cfg.to_json(),
                },
                f,
            )
        return path

    @torch.no_grad()
    def render_features(
        self, viewmat: Tensor, K: Tensor, width: int, height: int, decode: bool = True
    ) -> tuple[Tensor, Tensor, Tensor]:
        """rgb [H, W, 3], features [D, H, W] (decoded; [d, H, W] with decode=False), alpha [H, W, 1]."""
        img, feat, alpha, _ = render_rgb_features(
            self.params, viewmat, K, width, height, self.cfg.sh_degree, self.background()
        )
        f = self.decode(feat) if decode else feat.permute(2, 0, 1)
        return img, f, alpha

    @torch.no_grad()
    def evaluate_features(self, ids: list[int] | None = None, write: bool = True) -> dict[str, Any]:
        """Novel-view feature fidelity and, with a text-aligned teacher on a labelled dataset, label mIoU.

        For each view (default: the test views): cosine similarity between the decoded rendered
        map (resized to the teacher's grid) and the teacher's map of the real image; with labels,
        each pixel gets the label whose text embedding is closest (rendered at full resolution)
        and the mIoU against the ground truth is reported next to the teacher's own mIoU (its map
        upsampled to the image), the bound the distillation can reach.
        """
        ds = self.dataset
        ids = list(ids) if ids is not None else (ds.test_ids or ds.train_ids)
        labels = ds.meta.get("labels")
        names = ds.meta.get("label_names")
        text = None
        if labels is not None and names and self.teacher.text_aligned:
            text = F.normalize(self.teacher.encode_text(names).to(self.device).float(), dim=-1)
        rows = []
        t_render = 0.0
        for i in ids:
            vm, K, w, h = self.camera(i)
            t0 = time.perf_counter()
            _, feat, _ = self.render_features(vm, K, w, h, decode=False)
            t_render += time.perf_counter() - t0
            target = self.teacher_map(i)
            dec_small = self.decode(feat.permute(1, 2, 0), tuple(target.shape[-2:]))
            row: dict[str, Any] = {
                "view": ds.frames[i].name,
                "cosine": float(F.cosine_similarity(dec_small, target, dim=0).mean()),
                "l1": float((dec_small - target).abs().mean()),
            }
            if text is not None:
                dec_full = F.normalize(self.decode(feat.permute(1, 2, 0)), dim=0)  # [D, H, W]
                pred = torch.einsum("dhw,pd->phw", dec_full, text).argmax(0).cpu().numpy()
                tgt_full = F.interpolate(
                    target[None], size=(h, w), mode="bilinear", align_corners=False
                )[0]
                tpred = (
                    torch.einsum("dhw,pd->phw", F.normalize(tgt_full, dim=0), text)
                    .argmax(0)
                    .cpu()
                    .numpy()
                )
                gt = np.asarray(labels[i]).astype(np.int64)
                row["miou"], row["ious"] = mean_iou(pred, gt, len(names))
                row["accuracy"] = float((pred == gt).mean())
                row["teacher_miou"] = mean_iou(tpred, gt, len(names))[0]
            rows.append(row)
        metrics: dict[str, Any] = {
            "n_views": len(rows),
            "cosine": float(np.mean([r["cosine"] for r in rows])),
            "l1": float(np.mean([r["l1"] for r in rows])),
            "seconds_per_feature_render": t_render / max(len(rows), 1),
            "teacher": self.teacher.name,
            "dim": self.feat_cfg.dim,
            "per_view": rows,
        }
        if text is not None:
            metrics["miou"] = float(np.mean([r["miou"] for r in rows]))
            metrics["accuracy"] = float(np.mean([r["accuracy"] for r in rows]))
            metrics["teacher_miou"] = float(np.mean([r["teacher_miou"] for r in rows]))
        if write:
            atomic_write_json(self.run_dir / "feature_metrics.json", metrics)
        return metrics


def load_feature_decoder(path: str | Path, device: str | torch.device = "cpu") -> FeatureDecoder:
    """The decoder written by :meth:`FeatureTrainer.save_decoder`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path} does not exist; train with --features to produce {FEATURE_DECODER_FILE}"
        )
    data = torch.load(path, map_location="cpu", weights_only=True)
    dec = FeatureDecoder(int(data["in_dim"]), int(data["out_dim"]))
    dec.load_state_dict(data["state_dict"])
    return dec.to(device).eval()


def make_feature_trainer(
    dataset: Dataset,
    cfg: TrainConfig,
    feat_cfg: FeatureConfig,
    teacher: Teacher | None = None,
    **kw: Any,
) -> FeatureTrainer:
    """A :class:`FeatureTrainer` with the teacher of ``feat_cfg`` (built here unless given);
    ``kw`` (on_step, on_event, cache) go to the trainer."""
    from .train import _device

    if teacher is None:
        teacher = build_teacher(feat_cfg, dataset, _device(cfg.device))
    return FeatureTrainer(dataset, cfg, feat_cfg, teacher, **kw)
