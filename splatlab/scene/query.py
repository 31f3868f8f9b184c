"""Queries on a distilled feature field: text -> relevance and 3D selection, click -> SAM mask -> 3D.

- Text: prompts are embedded by the teacher's text tower (LSeg / CLIP / the synthetic label
  teacher); relevance is the cosine similarity with the decoded features, per pixel of a rendered
  view (:func:`relevance_maps`) or per Gaussian (:func:`gaussian_relevance`: each Gaussian's
  feature is decoded once by the same affine map as the 1x1-conv decoder).
- Click: SAM's prompt encoder and mask decoder run on the RENDERED SAM feature map
  (:func:`click_mask`); the Gaussians selected are those whose rendering weight falls mostly inside
  the mask (:func:`mask_contributions`, one backward pass through the rasterizer, so occluded
  Gaussians behind the object are not picked).
- Selections are boolean masks over the Gaussians: :func:`grow_selection`, :func:`subset`
  (extract / delete), :func:`export_selection_ply`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError
from ..rendering.channels import render_channels
from ..rendering.features import FeatureDecoder
from .gaussians import save_ply


def relevance_maps(decoded: Tensor, text: Tensor) -> Tensor:
    """Cosine similarity of every pixel with every prompt.

    Args:
        decoded: decoded features [D, H, W].
        text: prompt embeddings [P, D].

    Returns:
        [P, H, W] in [-1, 1].
    """
    if decoded.dim() != 3 or text.dim() != 2 or decoded.shape[0] != text.shape[1]:
        raise ValueError(
            f"need decoded [D, H, W] and text [P, D] with one D, got {list(decoded.shape)}, {list(text.shape)}"
        )
    f = F.normalize(decoded.float(), dim=0)
    return torch.einsum("dhw,pd->phw", f, F.normalize(text.float().to(f.device), dim=-1))


def label_map(decoded: Tensor, text: Tensor) -> Tensor:
    """Index of the closest prompt per pixel: [H, W] (LSeg-style open-vocabulary segmentation)."""
    return relevance_maps(decoded, text).argmax(0)


def gaussian_features(params: Mapping[str, Tensor], decoder: FeatureDecoder) -> Tensor:
    """Each Gaussian's feature lifted to the teacher space: [N, D]."""
    if "features" not in params:
        raise DataError("the scene has no per-Gaussian 'features'; train it with --features")
    feats = params["features"].detach()
    return decoder.decode_gaussians(feats.to(decoder.conv.weight))


@torch.no_grad()
def gaussian_relevance(
    params: Mapping[str, Tensor], decoder: FeatureDecoder, text: Tensor
) -> Tensor:
    """Cosine similarity of every Gaussian's decoded feature with every prompt: [N, P]."""
    g = F.normalize(gaussian_features(params, decoder).float(), dim=-1)
    return g @ F.normalize(text.float().to(g.device), dim=-1).T


@torch.no_grad()
def select_by_text(
    params: Mapping[str, Tensor],
    decoder: FeatureDecoder,
    text: Tensor,  # [D] or [1, D]
    threshold: float = 0.5,
    others: Tensor | None = None,  # [Q, D]
    min_opacity: float = 0.0,
) -> Tensor:
    """Gaussians matching a prompt: cosine >= ``threshold``, closer to the prompt than to every
    embedding in ``others`` (the other label names / canonical negatives), opacity >= ``min_opacity``.
    Returns a bool mask [N]."""
    t = text.reshape(1, -1)
    cand = t if others is None else torch.cat([t, others.reshape(-1, t.shape[1]).to(t)], dim=0)
    rel = gaussian_relevance(params, decoder, cand)  # [N, 1 + Q]
    sel = rel[:, 0] >= threshold
    if others is not None and len(cand) > 1:
        sel &= rel[:, 0] > rel[:, 1:].max(dim=1).values
    if min_opacity > 0:
        sel &= torch.sigmoid(params["opacities"].detach()).to(sel.device) >= min_opacity
    return sel


def mask_contributions(
    params: Mapping[str, Tensor],
    viewmat: Tensor,  # [4, 4]
    K: Tensor,  # [3, 3]
    width: int,
    height: int,
    mask: Tensor,  # [H, W] bool
) -> tuple[Tensor, Tensor]:
    """Per-Gaussian rendering weight inside ``mask`` and in the whole view.

    Renders two constant channels of ones; the gradient of (sum over mask pixels of channel 0 +
    sum over all pixels of channel 1) with respect to each Gaussian's two "colours" is exactly
    the sum of its blending weights T_i alpha_i over those pixels. Returns (inside [N], total [N]).
    """
    if tuple(mask.shape) != (height, width):
        raise ValueError(f"mask must be [H, W] = [{height}, {width}], got {list(mask.shape)}")
    p = {k: params[k].detach() for k in ("means", "quats", "scales", "opacities")}
    means = p["means"]
    ones = torch.ones(means.shape[0], 2, device=means.device, dtype=means.dtype, requires_grad=True)
    rendered, _, _ = render_channels(
        p, viewmat[None].to(means), K[None].to(means), width, height, {"ones": ones}
    )
    out = rendered["ones"]
    m = mask.to(out.device, out.dtype)
    (out[0, ..., 0] * m).sum().add(out[0, ..., 1].sum()).backward()
    g = ones.grad
    return g[:, 0].detach(), g[:, 1].detach()


def select_in_mask(
    params: Mapping[str, Tensor],
    viewmat: Tensor,
    K: Tensor,
    width: int,
    height: int,
    mask: Tensor,
    min_fraction: float = 0.5,
    min_weight: float = 0.05,
) -> Tensor:
    """Gaussians that project into a 2D mask and are visible there: at least ``min_fraction`` of
    their weight in this view falls inside the mask and that weight is >= ``min_weight`` pixels.
    Returns a bool mask [N]."""
    inside, total = mask_contributions(params, viewmat, K, width, height, mask)
    return (inside >= min_weight) & (inside >= min_fraction * total.clamp_min(1e-12))


@torch.no_grad()
def click_mask(
    sam_teacher,  # splatlab.models.sam.SamTeacher
    decoded_sam: Tensor,  # [256, H, W]
    points: np.ndarray | Tensor,  # [P, 2] pixel (x, y)
    labels: np.ndarray | Tensor,  # [P] 1 positive / 0 negative
    multimask: bool = True,
) -> tuple[Tensor, float]:
    """SAM mask from clicks on a rendered view: the decoded SAM feature map is laid out as SAM's
    image embedding and fed to SAM's prompt encoder and mask decoder. Returns the best mask
    [H, W] bool and its predicted IoU."""
    h, w = decoded_sam.shape[-2:]
    emb = sam_teacher.embedding_from_features(decoded_sam, (h, w))
    masks, scores, _ = sam_teacher.predict_masks(emb, (h, w), points, labels, multimask=multimask)
    return masks[0], float(scores[0])


def grow_selection(
    params: Mapping[str, Tensor],
    selected: Tensor,  # [N] bool
    radius: float,
    features: Tensor | None = None,  # [N, D] decoded per-Gaussian features
    min_similarity: float = 0.8,
    max_iters: int = 10,
) -> Tensor:
    """Region growing in 3D: repeatedly add Gaussians within ``radius`` of a selected one whose
    feature (if given) has cosine >= ``min_similarity`` with the mean selected feature."""
    from scipy.spatial import cKDTree

    sel = selected.detach().cpu().numpy().astype(bool).copy()
    if not sel.any():
        return selected.clone()
    pts = params["means"].detach().cpu().numpy()
    tree = cKDTree(pts)
    ok = np.ones(len(pts), bool)
    if features is not None:
        f = F.normalize(features.detach().float().cpu(), dim=-1)
        ref = F.normalize(f[torch.from_numpy(sel)].mean(0), dim=0)
        ok = (f @ ref).numpy() >= min_similarity
    for _ in range(max_iters):
        nbrs = tree.query_ball_point(pts[sel], r=radius)
        cand = np.zeros(len(pts), bool)
        for lst in nbrs:
            cand[lst] = True
        new = cand & ok & ~sel
        if not new.any():
            break
        sel |= new
    return torch.from_numpy(sel).to(selected.device)


def subset(params: Mapping[str, Tensor], keep: Tensor) -> torch.nn.ParameterDict:
    """The Gaussians where ``keep`` [N] is True (extract; ``subset(p, ~sel)`` deletes)."""
    n = params["means"].shape[0]
    if keep.dtype != torch.bool or keep.shape != (n,):
        raise ValueError(
            f"selection must be a bool mask [N] = [{n}], got {keep.dtype} {list(keep.shape)}"
        )
    return torch.nn.ParameterDict(
        {
            k: torch.nn.Parameter(
                v.detach()[keep.to(v.device)].clone(), requires_grad=v.requires_grad
            )
            for k, v in params.items()
        }
    )


def export_selection_ply(
    path: str | os.PathLike,
    params: Mapping[str, Tensor],
    selected: Tensor,
    transform: np.ndarray | None = None,
) -> Path:
    """Write the selected Gaussians (with their features) as an INRIA PLY, atomically."""
    if int(selected.sum()) == 0:
        raise DataError(f"nothing to export to {path}: the selection is empty")
    return save_ply(path, subset(params, selected), transform=transform)


def heatmap(
    relevance: Tensor, alpha: Tensor | None = None, lo: float = 0.0, hi: float = 1.0
) -> Tensor:
    """A relevance map [H, W] as a turbo-coloured image [H, W, 3] in [0, 1] (black where alpha < 0.05)."""
    import cv2

    r = ((relevance.detach().float().cpu() - lo) / max(hi - lo, 1e-8)).clamp(0, 1).numpy()
    rgb = (
        cv2.applyColorMap((r * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1].astype(
            np.float32
        )
        / 255.0
    )
    out = torch.from_numpy(np.ascontiguousarray(rgb))
    if alpha is not None:
        out = out * (alpha.detach().cpu().reshape(*r.shape, 1) >= 0.05)
    return out
