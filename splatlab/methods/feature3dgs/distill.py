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
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import CheckpointError
from ...models.teacher_cache import Teacher, TeacherCache
from ...rendering.channels import render_channels, sh_of
from ...rendering.features import FeatureDecoder
from ...scene.datasets.base import Dataset
from ...training.extension import Field, StoredSceneParts
from ...training.trainer import TrainConfig, Trainer, _device
from ...utils import atomic_write, atomic_write_json
from .config import FEATURE_DECODER_FILE, FeatureConfig, build_teacher

__all__ = [
    "FEATURE_DECODER_FILE",
    "FeatureConfig",
    "FeatureDistillation",
    "build_teacher",
    "features_of",
    "load_feature_decoder",
    "make_feature_trainer",
    "render_rgb_features",
]

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
    """Colour (SH evaluated towards this camera, gsplat's ``max(SH + 0.5, 0)``) and per-Gaussian
    features in ONE rasterization (:func:`~splatlab.rendering.channels.render_channels`).

    Returns rgb [H, W, 3], features [H, W, d] (background 0), alpha [H, W, 1], info.
    """
    means = params["means"]
    bg = torch.zeros(3, device=means.device, dtype=means.dtype) if background is None else background
    out, alpha, info = render_channels(
        params, viewmat[None], K[None], width, height,
        {"rgb": sh_of(params, sh_degree), "features": params["features"]},
        backgrounds={"rgb": bg}, **kwargs,
    )
    return out["rgb"][0], out["features"][0], alpha[0], info


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


class FeatureDistillation(Field):
    """The ``features`` field: per-Gaussian features distilled from a teacher (see the module
    docstring), rendered in the trainer's one rasterization with the colour.

    Args:
        config: the :class:`FeatureConfig`.
        teacher: the :class:`Teacher` (default: built by :func:`build_teacher` when attached).
        cache: the teacher-map cache (default: ``config.cache_dir`` or ``<out>/teacher_cache``).
    """

    name = "features"
    description = "Feature 3DGS: distilled LSeg / SAM / CLIP features"
    Config = FeatureConfig
    section = "features"
    cli_switch = ("features", ("lseg", "sam", "clip", "labels"), "teacher")

    def __init__(
        self,
        config: FeatureConfig | None = None,
        teacher: Teacher | None = None,
        cache: TeacherCache | None = None,
    ) -> None:
        super().__init__(config)
        self.feat_cfg: FeatureConfig = self.config
        self.teacher = teacher
        self.cache = cache
        self.teacher_seconds = 0.0

    # ------------------------------------------------------------------ hooks
    def attach(self, trainer: Trainer) -> None:
        fc = self.feat_cfg
        if self.teacher is None:
            self.teacher = build_teacher(fc, trainer.dataset, trainer.device)
        self.device = trainer.device
        self.decoder = FeatureDecoder(fc.dim, self.teacher.dim).to(trainer.device)
        self.decoder_opt = torch.optim.Adam(self.decoder.parameters(), lr=fc.lr_decoder)
        root = fc.cache_dir if fc.cache_dir is not None else Path(trainer.cfg.out) / "teacher_cache"
        if self.cache is None:
            self.cache = TeacherCache(root, self.teacher, trainer.dataset)

    def extra_channels(self) -> dict[str, int]:
        return {"features": self.feat_cfg.dim}

    def param_lrs(self) -> dict[str, float]:
        return {"features": self.feat_cfg.lr_features}

    def aux_optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.decoder_opt]

    def config_json(self) -> dict[str, Any]:
        return self.feat_cfg.to_json()

    def channels(self, params: Any) -> dict[str, Tensor]:
        return {"features": params["features"]}

    def aux_state_dict(self) -> dict[str, Any]:
        from .field import feature_aux_state

        return {
            **feature_aux_state(self.decoder, self.feat_cfg.to_json(), self.teacher),
            "feature_decoder_opt": self.decoder_opt.state_dict(),
        }

    def load_aux_state_dict(self, state: dict[str, Any]) -> None:
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

    def loss(self, trainer: Trainer, step: int, out: dict[str, Any], gt: Tensor) -> Tensor:
        target = self.teacher_map(out["view"])
        decoded = self.decode(out["features"], tuple(target.shape[-2:]))
        lf = feature_loss(decoded, target, self.feat_cfg.loss)
        out["feature_loss"] = lf.detach()
        return self.feat_cfg.weight * lf

    # ------------------------------------------------------------------ outputs
    def after_train(self, trainer: Trainer) -> None:
        self.save_decoder(trainer.run_dir / FEATURE_DECODER_FILE)

    def export(self, trainer: Trainer, ply_path: Path) -> None:
        if Path(ply_path).parent != trainer.run_dir:
            self.save_decoder(Path(ply_path).parent / FEATURE_DECODER_FILE)

    def evaluate(self, trainer: Trainer) -> dict[str, Any]:
        return self.evaluate_features(trainer)

    def summary(self, metrics: dict[str, Any]) -> list[str]:
        line = f"features ({metrics['teacher']}, d={metrics['dim']}): test cosine {metrics['cosine']:.3f}"
        if "miou" in metrics:
            line += f", label mIoU {metrics['miou']:.3f} (teacher {metrics['teacher_miou']:.3f})"
        return [line]

    def viewer_parts(self, trainer: Trainer) -> StoredSceneParts:
        from .field import FeatureField

        return StoredSceneParts(
            feature_field=FeatureField(
                self.decoder, self.feat_cfg.teacher, self.feat_cfg.to_json(), self.teacher.meta(),
                _teacher=self.teacher,
            )
        )

    @classmethod
    def open_stored(cls, loaded: Any, params: Any) -> StoredSceneParts | None:
        from .field import load_feature_field

        field = load_feature_field(loaded, params)
        return None if field is None else StoredSceneParts(feature_field=field)

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
        self, trainer: Trainer, viewmat: Tensor, K: Tensor, width: int, height: int, decode: bool = True
    ) -> tuple[Tensor, Tensor, Tensor]:
        """rgb [H, W, 3], features [D, H, W] (decoded; [d, H, W] with decode=False), alpha [H, W, 1]."""
        img, feat, alpha, _ = render_rgb_features(
            trainer.params, viewmat, K, width, height, trainer.cfg.sh_degree, trainer.background()
        )
        f = self.decode(feat) if decode else feat.permute(2, 0, 1)
        return img, f, alpha

    @torch.no_grad()
    def evaluate_features(
        self, trainer: Trainer, ids: list[int] | None = None, write: bool = True
    ) -> dict[str, Any]:
        """Novel-view feature fidelity and, with a text-aligned teacher on a labelled dataset, label mIoU.

        For each view (default: the test views): cosine similarity between the decoded rendered
        map (resized to the teacher's grid) and the teacher's map of the real image; with labels,
        each pixel gets the label whose text embedding is closest (rendered at full resolution)
        and the mIoU against the ground truth is reported next to the teacher's own mIoU (its map
        upsampled to the image), the bound the distillation can reach.
        """
        ds = trainer.dataset
        ids = list(ids) if ids is not None else (ds.test_ids or ds.train_ids)
        labels = ds.meta.get("labels")
        names = ds.meta.get("label_names")
        text = None
        if labels is not None and names and self.teacher.text_aligned:
            text = F.normalize(self.teacher.encode_text(names).to(self.device).float(), dim=-1)
        rows = []
        t_render = 0.0
        for i in ids:
            vm, K, w, h = trainer.camera(i)
            t0 = time.perf_counter()
            _, feat, _ = self.render_features(trainer, vm, K, w, h, decode=False)
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
            atomic_write_json(trainer.run_dir / "feature_metrics.json", metrics)
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
) -> Trainer:
    """A trainer with the ``features`` field of ``feat_cfg`` (its teacher built here unless
    given); ``kw``: on_step, on_event, cache, configs, extensions (the other extensions)."""
    if teacher is None:
        teacher = build_teacher(feat_cfg, dataset, _device(cfg.device))
    field = FeatureDistillation(feat_cfg, teacher=teacher, cache=kw.pop("cache", None))
    fields = cfg.fields if FeatureDistillation.name in cfg.fields else (*cfg.fields, FeatureDistillation.name)
    cfg = dataclasses.replace(cfg, fields=fields)
    return Trainer(dataset, cfg, extensions=[*kw.pop("extensions", []), field], **kw)


def features_of(trainer: Trainer) -> FeatureDistillation:
    """The ``features`` field of a trainer (CheckpointError if it was trained without one)."""
    for f in trainer.fields:
        if isinstance(f, FeatureDistillation):
            return f
    raise CheckpointError(
        f"{trainer.run_dir} was not trained with --features ({trainer.components.describe()})"
    )
