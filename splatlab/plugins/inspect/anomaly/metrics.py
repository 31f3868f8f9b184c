"""Anomaly metrics as anomalib computes them: image AUROC, pixel AUROC, AUPRO up to FPR 0.3, plus
the official RD4AD per-image PRO.

- ``image_auroc`` / ``pixel_auroc``: the area under the ROC curve of image scores (RD4AD: the
  maximum of the map) against image labels, and of every pixel's value against the pixel masks,
  computed by torchmetrics' ``binary_auroc`` (what anomalib's AUROC wraps).
- ``aupro``: per-region overlap (Bergmann et al., MVTec AD). The ground-truth masks are split into
  connected components (8-connectivity, as kornia's and scipy's labelling used by anomalib and the
  MVTec evaluation code); for each threshold t, PRO(t) is the mean over ALL regions of all images
  (pooled) of the fraction of the region's pixels with score >= t, and FPR(t) is the fraction of
  all normal pixels (of all images) with score >= t. The area under PRO(FPR) for FPR in
  [0, fpr_limit], the curve linearly interpolated at fpr_limit, divided by fpr_limit. This is the
  curve anomalib's ``AUPRO`` builds from per-region ROC curves against the common background; here
  every distinct score is a threshold (exact, no resampling).
- ``rd4ad_pro``: the official RD4AD evaluation (``compute_pro`` in hq-deng/RD4AD test.py): per
  anomalous image, 200 evenly spaced thresholds between the map's min and max, PRO and FPR on that
  image alone, points with FPR < 0.3 kept, FPR rescaled by its maximum, trapezoid area; the mean
  over anomalous images.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torchmetrics.functional.classification import binary_auroc

from ....errors import DataError

__all__ = ["image_auroc", "pixel_auroc", "aupro", "pro_curve", "rd4ad_pro", "anomaly_metrics"]

_EIGHT = np.ones((3, 3), dtype=bool)


def _auroc(scores: np.ndarray, labels: np.ndarray, what: str) -> float:
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if scores.shape != labels.shape:
        raise DataError(f"{what}: {scores.size} scores for {labels.size} labels")
    if labels.all() or not labels.any():
        raise DataError(f"{what} needs both normal and anomalous samples")
    return float(binary_auroc(torch.from_numpy(scores), torch.from_numpy(labels).long()))


def image_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """scores: float [M] (higher = more anomalous), labels: int [M] (1 = anomalous)."""
    return _auroc(scores, labels, "image AUROC")


def pixel_auroc(maps: np.ndarray, masks: np.ndarray) -> float:
    """maps: float [M, H, W], masks: bool [M, H, W]."""
    return _auroc(maps, masks, "pixel AUROC")


def _regions(masks: np.ndarray) -> np.ndarray:
    """int [M, H, W] region id per pixel, 0 for normal pixels, ids unique across images."""
    out = np.zeros(masks.shape, np.int64)
    offset = 0
    for i, m in enumerate(masks):
        lab, n = ndimage.label(m, structure=_EIGHT)
        out[i] = np.where(lab > 0, lab + offset, 0)
        offset += n
    return out


def pro_curve(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact (FPR, PRO) curve over all distinct thresholds, starting at (0, 0).

    maps: float [M, H, W], masks: bool [M, H, W] -> (fpr [T+1], pro [T+1]), fpr increasing."""
    maps = np.asarray(maps, np.float64)
    masks = np.asarray(masks).astype(bool)
    if maps.shape != masks.shape or maps.ndim != 3:
        raise DataError(f"PRO: maps {maps.shape} and masks {masks.shape} must both be [M, H, W]")
    reg = _regions(masks).ravel()
    n_regions = int(reg.max())
    if n_regions == 0:
        raise DataError("PRO needs at least one anomalous region in the masks")
    normal = reg == 0
    if not normal.any():
        raise DataError("PRO needs normal pixels")
    areas = np.bincount(reg, minlength=n_regions + 1).astype(np.float64)
    weight = np.where(normal, 0.0, 1.0 / (areas[reg] * n_regions))  # PRO gained per pixel
    order = np.argsort(-maps.ravel(), kind="stable")
    s = maps.ravel()[order]
    fpr = np.cumsum(normal[order]) / normal.sum()
    pro = np.cumsum(weight[order])
    last = np.r_[s[1:] != s[:-1], True]  # the last position of each run of equal scores
    return np.r_[0.0, fpr[last]], np.r_[0.0, pro[last]]


def aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve for FPR in [0, fpr_limit] (see the module docstring)."""
    if not 0 < fpr_limit <= 1:
        raise DataError(f"AUPRO fpr_limit must be in (0, 1], got {fpr_limit}")
    fpr, pro = pro_curve(maps, masks)
    keep = fpr <= fpr_limit
    x, y = fpr[keep], pro[keep]
    if x[-1] < fpr_limit:  # interpolate the point at the limit
        j = int(np.searchsorted(fpr, fpr_limit))
        t = (fpr_limit - fpr[j - 1]) / (fpr[j] - fpr[j - 1])
        x = np.r_[x, fpr_limit]
        y = np.r_[y, pro[j - 1] + t * (pro[j] - pro[j - 1])]
    return float(np.trapezoid(y, x) / fpr_limit)


def rd4ad_pro(maps: np.ndarray, masks: np.ndarray, num_th: int = 200) -> float:
    """The official RD4AD per-image PRO (see the module docstring), mean over anomalous images."""
    maps = np.asarray(maps, np.float64)
    masks = np.asarray(masks).astype(bool)
    vals = []
    for amap, mask in zip(maps, masks):
        if not mask.any():
            continue
        if mask.all():
            raise DataError("rd4ad_pro: an image whose every pixel is anomalous has no FPR")
        lab, n = ndimage.label(mask, structure=_EIGHT)
        areas = np.bincount(lab.ravel(), minlength=n + 1)[1:]
        lo, hi = amap.min(), amap.max()
        if hi <= lo:
            vals.append(0.0)
            continue
        ths = np.arange(lo, hi, (hi - lo) / num_th)
        pros, fprs = [], []
        for th in ths:
            b = amap > th
            tp = np.bincount(lab.ravel(), weights=b.ravel(), minlength=n + 1)[1:]
            pros.append(float(np.mean(tp / areas)))
            fprs.append(float(np.logical_and(~mask, b).sum() / (~mask).sum()))
        f, p = np.asarray(fprs), np.asarray(pros)
        keep = f < 0.3
        f, p = f[keep], p[keep]
        if f.size < 2 or f.max() <= 0:
            vals.append(0.0)
            continue
        f = f / f.max()
        vals.append(float(abs(np.trapezoid(p, f))))  # sklearn.metrics.auc of a monotone curve
    if not vals:
        raise DataError("rd4ad_pro needs at least one anomalous image")
    return float(np.mean(vals))


def anomaly_metrics(
    maps: np.ndarray, masks: np.ndarray, labels: np.ndarray, scores: np.ndarray | None = None
) -> dict[str, float]:
    """image AUROC (scores default: each map's max), pixel AUROC, AUPRO@0.3 and RD4AD PRO."""
    scores = maps.reshape(maps.shape[0], -1).max(1) if scores is None else scores
    return {
        "image_auroc": image_auroc(scores, labels),
        "pixel_auroc": pixel_auroc(maps, masks),
        "aupro": aupro(maps, masks),
        "rd4ad_pro": rd4ad_pro(maps, masks),
    }
