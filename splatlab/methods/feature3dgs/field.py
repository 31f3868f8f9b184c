"""A trained feature field ready for queries: the decoder, the teacher's text / prompt side, and
the view-level operations the viewer and ``splatlab query`` share.

:func:`load_feature_field` finds what a run trained with ``--features`` stored (the checkpoint's
``extra["aux"]`` or ``feature_decoder.pt`` next to an exported PLY) and rebuilds:

- the 1x1-conv decoder (d -> D),
- the teacher, lazily and only when a query needs it: text prompts need LSeg's / CLIP's text
  tower (or the synthetic label teacher, rebuilt from the stored label names), clicks on a SAM
  field need SAM's prompt encoder and mask decoder. Missing official weights raise
  :class:`~splatlab.errors.WeightsNotFoundError` with the download instruction at that moment;
  loading a scene never needs them.

Relevance on a rendered view is computed in the rendered d-dimensional space
(:func:`relevance_from_rendered`): the decoder is affine, so the cosine with a text embedding
needs only ``W^T t``, ``W^T W`` and ``W^T b``; the D-channel map (512 x H x W floats, 600 MB at
640 x 480) is never materialised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import CheckpointError, DataError
from ...rendering.channels import render_channels
from ...rendering.features import FeatureDecoder
from ...scene import query

__all__ = [
    "CANONICAL_NEGATIVES",
    "FeatureField",
    "relevance_from_rendered",
    "load_feature_field",
    "feature_aux_state",
]

# LERF's canonical phrases (Kerr et al., ICCV 2023): negatives for open-vocabulary relevancy
CANONICAL_NEGATIVES = ("object", "things", "stuff", "texture")


def relevance_from_rendered(feat: Tensor, decoder: FeatureDecoder, text: Tensor) -> Tensor:
    """Cosine similarity between decode(feat) and each prompt, without decoding the map.

    Args:
        feat: rendered features [H, W, d].
        decoder: the 1x1-conv decoder (W [D, d], b [D]).
        text: prompt embeddings [P, D].

    Returns:
        [P, H, W] in [-1, 1], equal to ``query.relevance_maps(decoder.decode_hwc(feat), text)``.
    """
    if feat.dim() != 3 or feat.shape[-1] != decoder.in_dim:
        raise ValueError(f"feat must be [H, W, {decoder.in_dim}], got {list(feat.shape)}")
    if text.dim() != 2 or text.shape[1] != decoder.out_dim:
        raise ValueError(f"text must be [P, {decoder.out_dim}], got {list(text.shape)}")
    # float32 throughout: 3x faster than float64 at d = 128, 640 x 480, cosines within 1e-7
    W = decoder.conv.weight.detach().reshape(decoder.out_dim, decoder.in_dim).float()
    b = decoder.conv.bias.detach().float()
    t = F.normalize(text.detach().float().to(W.device), dim=-1)
    f = feat.detach().float().to(W.device)
    num = f @ (t @ W).T + (t @ b)  # [H, W, P]
    sq = ((f @ (W.T @ W)) * f).sum(-1) + 2.0 * (f @ (W.T @ b)) + b @ b  # |W f + b|^2
    cos = num / sq.clamp_min(1e-20).sqrt()[..., None]
    return cos.permute(2, 0, 1)


def feature_aux_state(decoder: FeatureDecoder, feature_config: dict, teacher: Any) -> dict:
    """The checkpoint entries (``extra["aux"]``) that :func:`load_feature_field` reads."""
    return {
        "feature_decoder": decoder.state_dict(),
        "feature_config": dict(feature_config),
        "teacher": {
            "name": teacher.name,
            "cache_id": teacher.cache_id(),
            "dim": teacher.dim,
            "meta": teacher.meta(),
        },
    }


@dataclass
class FeatureField:
    """A distilled feature field's decoder and teacher (see the module docstring)."""

    decoder: FeatureDecoder
    teacher_kind: str  # "lseg" | "sam" | "clip" | "labels"
    feature_config: dict = field(default_factory=dict)
    teacher_meta: dict = field(default_factory=dict)
    _teacher: Any = None

    @property
    def dim(self) -> int:
        return self.decoder.in_dim

    @property
    def text_aligned(self) -> bool:
        return self.teacher_kind in ("lseg", "clip", "labels")

    @property
    def promptable(self) -> bool:
        """Clicks go to SAM's mask decoder (else: feature similarity)."""
        return self.teacher_kind == "sam"

    def label_names(self) -> list[str] | None:
        names = self.teacher_meta.get("label_names")
        return list(names) if names else None

    def teacher(self, device: str | torch.device = "cpu") -> Any:
        """The teacher, built on first use (WeightsNotFoundError if its weights are absent)."""
        if self._teacher is None:
            if self.teacher_kind == "labels":
                from ...models.label_teacher import LabelEmbeddingTeacher

                m = self.teacher_meta
                if not m.get("label_names"):
                    raise CheckpointError(
                        "this feature field was distilled from the synthetic 'labels' teacher but its "
                        "label names were not stored; retrain it with this version of splatlab"
                    )
                self._teacher = LabelEmbeddingTeacher(
                    m["label_names"],
                    dim=int(m.get("dim", self.decoder.out_dim)),
                    rgb_weight=float(m.get("rgb_weight", 0.25)),
                    downsample=int(m.get("downsample", 1)),
                    seed=int(m.get("seed", 0)),
                )
            else:
                from .config import FeatureConfig, build_teacher

                names = {f for f in FeatureConfig.__dataclass_fields__}
                cfg = FeatureConfig(
                    **{
                        k: v
                        for k, v in self.feature_config.items()
                        if k in names and k != "cache_dir"
                    }
                )
                cfg.teacher = self.teacher_kind  # type: ignore[assignment]
                self._teacher = build_teacher(cfg, None, device)
            if int(self._teacher.dim) != self.decoder.out_dim:
                raise CheckpointError(
                    f"the {self.teacher_kind} teacher is {self._teacher.dim}-D but the decoder "
                    f"outputs {self.decoder.out_dim}-D; the weights differ from the ones distilled"
                )
        return self._teacher

    # ------------------------------------------------------------------ text
    def encode_text(self, prompts: Sequence[str]) -> Tensor:
        """Unit text embeddings [P, D] of the prompts."""
        if not self.text_aligned:
            raise DataError(
                f"this scene's features come from {self.teacher_kind!r}, which has no text encoder; "
                "text queries need a field distilled from lseg, clip or labels"
            )
        prompts = [p.strip() for p in prompts if p.strip()]
        if not prompts:
            raise DataError("type a text prompt first")
        emb = self.teacher().encode_text(prompts)
        return F.normalize(emb.float().cpu(), dim=-1)

    def default_negatives(self, prompt: str) -> list[str]:
        """The other label names for the synthetic label teacher, else LERF's canonical phrases."""
        names = self.label_names()
        if self.teacher_kind == "labels" and names:
            p = prompt.strip().lower()
            return [n for n in names if n.lower() != p]
        return list(CANONICAL_NEGATIVES)

    def text_scores(
        self, params: Mapping[str, Tensor], prompt: str, negatives: Sequence[str] | None = None
    ) -> tuple[Tensor, Tensor]:
        """Per-Gaussian cosine with the prompt [N] and its margin over the best negative [N]
        (+inf where there are no negatives)."""
        neg = list(self.default_negatives(prompt) if negatives is None else negatives)
        emb = self.encode_text([prompt, *neg])
        rel = query.gaussian_relevance(params, self.decoder, emb)  # [N, 1 + Q]
        margin = (
            rel[:, 0] - rel[:, 1:].max(dim=1).values
            if rel.shape[1] > 1
            else torch.full_like(rel[:, 0], float("inf"))
        )
        return rel[:, 0], margin

    def select_text(
        self,
        params: Mapping[str, Tensor],
        prompt: str,
        threshold: float,
        negatives: Sequence[str] | None = None,
        min_opacity: float = 0.1,
    ) -> Tensor:
        """Bool [N]: cosine >= threshold, closer to the prompt than to every negative, and
        opacity >= ``min_opacity``."""
        cos, margin = self.text_scores(params, prompt, negatives)
        sel = (cos >= threshold) & (margin > 0)
        if min_opacity > 0:
            sel &= torch.sigmoid(params["opacities"].detach().float().reshape(-1)) >= min_opacity
        return sel

    # ------------------------------------------------------------------ views
    @torch.no_grad()
    def render(
        self, params: Mapping[str, Tensor], viewmat: Any, K: Any, width: int, height: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Rendered features [H, W, d], expected depth [H, W] and alpha [H, W] of one view."""
        if "features" not in params:
            raise DataError("the scene has no per-Gaussian 'features'; train it with --features")
        p = {k: params[k].detach().float() for k in ("means", "quats", "scales", "opacities")}
        n = p["means"].shape[0]
        vm = torch.as_tensor(np.asarray(viewmat), dtype=torch.float32)[None]
        Ks = torch.as_tensor(np.asarray(K), dtype=torch.float32)[None]
        feats = params["features"].detach().float().reshape(n, -1)
        out, alpha, _ = render_channels(
            p, vm, Ks, int(width), int(height), {"features": feats}, depth=True
        )
        return out["features"][0], out["depth"][0, ..., 0], alpha[0, ..., 0]

    def relevance(self, feat: Tensor, prompts: Sequence[str]) -> Tensor:
        """[P, H, W] cosine of each pixel's decoded feature with each prompt."""
        return relevance_from_rendered(feat, self.decoder, self.encode_text(prompts))

    def click_mask(
        self,
        params: Mapping[str, Tensor],
        viewmat: Any,
        K: Any,
        width: int,
        height: int,
        points: np.ndarray,  # [P, 2] pixel (x, y)
        labels: np.ndarray,  # [P] 1 positive / 0 negative
        similarity: float = 0.8,
        rendered: tuple[Tensor, Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, float]:
        """A 2D mask [H, W] bool from clicks on a rendered view, and its score.

        SAM fields: SAM's prompt encoder + mask decoder on the rendered SAM map (score = SAM's
        predicted IoU). Other fields: pixels whose decoded feature has cosine >= ``similarity``
        with a positive click's feature and is closer to it than to every negative click's,
        restricted to the connected regions that contain a positive click (score = mean cosine
        inside the mask).
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        lab = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(pts) == 0 or len(pts) != len(lab):
            raise DataError(
                f"need >= 1 click and one label per click, got {len(pts)} points, {len(lab)} labels"
            )
        if not (lab == 1).any():
            raise DataError("add at least one positive click (negatives only exclude)")
        feat, _, alpha = (
            rendered if rendered is not None else self.render(params, viewmat, K, width, height)
        )
        if self.promptable:
            sam = self.teacher()
            hv, wv = sam.valid_grid(height, width)
            small = F.interpolate(
                feat.permute(2, 0, 1)[None], (hv, wv), mode="bilinear", align_corners=False
            )
            decoded = self.decoder(small)[0]
            return query.click_mask(sam, decoded, pts, lab)
        ij = np.clip(np.round(pts).astype(int), 0, [width - 1, height - 1])
        refs = self.decoder.decode_gaussians(feat[ij[:, 1], ij[:, 0]].float())  # [P, D]
        sims = relevance_from_rendered(feat, self.decoder, refs)  # [P, H, W]
        pos = sims[torch.from_numpy(lab == 1)].max(0).values
        mask = (pos >= similarity) & (alpha >= 0.5)
        if (lab == 0).any():
            mask &= pos > sims[torch.from_numpy(lab == 0)].max(0).values
        from scipy import ndimage

        comp, _ = ndimage.label(mask.cpu().numpy())
        keep_ids = {int(comp[y, x]) for x, y in ij[lab == 1]} - {0}
        keep = torch.from_numpy(np.isin(comp, sorted(keep_ids)))
        score = float(pos[keep].mean()) if keep.any() else 0.0
        return keep, score


def _decoder_from_state(state: Mapping[str, Tensor]) -> FeatureDecoder:
    w = state["conv.weight"]
    dec = FeatureDecoder(int(w.shape[1]), int(w.shape[0]))
    dec.load_state_dict(dict(state))
    return dec.eval()


def load_feature_field(
    source: Any, params: Mapping[str, Tensor] | None = None
) -> FeatureField | None:
    """The feature field of a scene, or None when it has no features.

    Args:
        source: a :class:`~splatlab.scene.checkpoint.LoadedScene`, or a path (run directory,
            checkpoint, PLY with ``feature_decoder.pt`` beside it, or the decoder file itself).
        params: the scene's parameters (default: the loaded scene's).
    """
    from ...scene.checkpoint import LoadedScene, load_scene
    from .config import FEATURE_DECODER_FILE

    if isinstance(source, (str, Path)):
        p = Path(source)
        if p.is_file() and p.name == FEATURE_DECODER_FILE:
            return _from_decoder_file(p)
        source = load_scene(p)
    if not isinstance(source, LoadedScene):
        raise TypeError(f"expected a LoadedScene or a path, got {type(source).__name__}")
    params = source.params if params is None else params
    if "features" not in params:
        return None
    aux = source.extra.get("aux") or {}
    if "feature_decoder" in aux:
        t = aux.get("teacher", {})
        cfg = dict(aux.get("feature_config") or {})
        kind = str(cfg.get("teacher") or t.get("name") or "")
        meta = dict(t.get("meta") or {})
        if kind == "labels" and not meta.get("label_names"):
            meta = _demo_label_meta(source.config, cfg)
        return FeatureField(_decoder_from_state(aux["feature_decoder"]), kind, cfg, meta)
    dec_file = source.source.parent / FEATURE_DECODER_FILE
    if dec_file.is_file():
        return _from_decoder_file(dec_file)
    raise CheckpointError(
        f"{source.source} has per-Gaussian features but no feature decoder; put the run's "
        f"{FEATURE_DECODER_FILE} next to it (written by 'splatlab train --features')"
    )


def _from_decoder_file(path: Path) -> FeatureField:
    data = torch.load(path, map_location="cpu", weights_only=True)
    cfg = dict(data.get("feature_config") or {})
    kind = str(cfg.get("teacher") or data.get("teacher") or "")
    return FeatureField(
        _decoder_from_state(data["state_dict"]), kind, cfg, dict(data.get("teacher_meta") or {})
    )


def _demo_label_meta(config: dict | None, feature_config: dict) -> dict:
    """Label-teacher settings of runs written before the names were stored: the demo's labels."""
    from ...scene.synthetic import DEMO_ROOT, LABEL_NAMES

    if not config or config.get("data") != DEMO_ROOT:
        return {}
    return {
        "label_names": list(LABEL_NAMES),
        "dim": int(feature_config.get("labels_dim", 512)),
        "downsample": int(feature_config.get("labels_downsample", 1)),
    }
