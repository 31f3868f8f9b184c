"""Anomaly metrics against hand-computed cases and brute-force definitions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from splatlab.errors import DataError
from splatlab.plugins.inspect.anomaly.metrics import (
    aupro,
    image_auroc,
    pixel_auroc,
    pro_curve,
    rd4ad_pro,
)


def test_auroc_hand_cases() -> None:
    # pairs (anomalous, normal): (0.35 > 0.1), (0.35 < 0.4), (0.8 > both) -> 3 of 4
    assert image_auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(
        0.75
    )
    # ties count one half: anomalous 0.5 vs normal 0.5
    assert image_auroc(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(0.5)
    maps = np.zeros((1, 2, 2))
    maps[0, 0, 0] = 1.0
    masks = np.zeros((1, 2, 2), bool)
    masks[0, 0, 0] = True
    assert pixel_auroc(maps, masks) == pytest.approx(1.0)
    assert pixel_auroc(-maps, masks) == pytest.approx(0.0)
    with pytest.raises(DataError, match="both"):
        image_auroc(np.ones(3), np.ones(3))


def _brute_aupro(maps: np.ndarray, masks: np.ndarray, limit: float) -> float:
    """Threshold by threshold: PRO = mean over all regions of the covered fraction, FPR over all
    normal pixels; trapezoid up to ``limit`` (interpolated there), divided by ``limit``."""
    regions = []
    for i, m in enumerate(masks):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        regions += [(i, lab == k) for k in range(1, n + 1)]
    normal = ~masks
    pts = [(0.0, 0.0)]
    for th in sorted(set(maps.ravel().tolist()), reverse=True):
        pred = maps >= th
        fpr = (pred & normal).sum() / normal.sum()
        pro = np.mean([pred[i][r].mean() for i, r in regions])
        pts.append((fpr, pro))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
        if x0 >= limit:
            break
        if x1 > limit:
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        area += 0.5 * (x1 - x0) * (y0 + y1)
    return area / limit


def test_aupro_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    masks = np.zeros((3, 12, 12), bool)
    masks[0, 1:4, 1:4] = True  # two regions in image 0 (one touching diagonally: 8-connected)
    masks[0, 4, 4] = True
    masks[0, 8:11, 6:9] = True
    masks[1, 5:7, 0:9] = True  # one region in image 1; image 2 normal
    maps = rng.random(masks.shape) + 0.6 * masks
    maps = np.round(maps, 2)  # ties between thresholds
    for limit in (0.3, 0.05, 1.0):
        assert aupro(maps, masks, limit) == pytest.approx(
            _brute_aupro(maps, masks, limit), abs=1e-9
        )
    # 8-connectivity: (1:4, 1:4) and (4, 4) form one region -> 3 regions in total
    fpr, pro = pro_curve(maps, masks)
    assert pro[-1] == pytest.approx(1.0) and fpr[-1] == pytest.approx(1.0)


def test_aupro_perfect_and_reversed() -> None:
    masks = np.zeros((2, 8, 8), bool)
    masks[0, 2:5, 2:5] = True
    maps = masks.astype(float)
    assert aupro(maps, masks) == pytest.approx(1.0)
    assert aupro(-maps, masks) == pytest.approx(0.0)
    # one region of 9 px at score 1 but 3 px of it at 0 (as every normal pixel): the curve is
    # (0, 0) -> (0, 2/3) -> (1, 1); at the limit 0.3 PRO = 2/3 + 0.3/3, so the normalised area is
    # the mean of 2/3 and 2/3 + 0.1
    maps2 = maps.copy()
    maps2[0, 2, 2:5] = 0.0
    assert aupro(maps2, masks) == pytest.approx(2 / 3 + 0.05)
    with pytest.raises(DataError, match="anomalous region"):
        aupro(maps, np.zeros_like(masks))


def test_rd4ad_pro_official_definition() -> None:
    masks = np.zeros((2, 8, 8), bool)
    masks[0, 2:5, 2:5] = True
    perfect = masks.astype(float)
    perfect[1] = np.linspace(0, 1, 64).reshape(8, 8)  # normal image: ignored (no region)
    # per image: thresholds from min to max; every threshold below 1 separates exactly -> PRO 1
    # at FPR 0, a single point: the official code then divides by max FPR 0 -> reported as 0 here
    assert rd4ad_pro(perfect, masks) == pytest.approx(0.0)
    rng = np.random.default_rng(0)
    noisy = rng.random((2, 8, 8)) * 0.5 + 0.5 * masks
    v = rd4ad_pro(noisy, masks)
    assert 0.5 < v <= 1.0
    # the same value from the official loop written out for the one anomalous image
    amap, mask = noisy[0], masks[0]
    ths = np.arange(amap.min(), amap.max(), (amap.max() - amap.min()) / 200)
    pros = np.array([(amap[mask] > t).mean() for t in ths])
    fprs = np.array([(amap[~mask] > t).mean() for t in ths])
    keep = fprs < 0.3
    f, p = fprs[keep] / fprs[keep].max(), pros[keep]
    assert v == pytest.approx(abs(np.trapezoid(p, f)))
