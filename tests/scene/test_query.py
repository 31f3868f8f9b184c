"""Queries on feature fields: relevance, per-Gaussian decoding, mask -> Gaussians, selections, export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from splatlab.errors import DataError
from splatlab.rendering.features import FeatureDecoder, pca_colors
from splatlab.rendering.rasterize import rasterize
from splatlab.scene.cameras import look_at_viewmat
from splatlab.scene.gaussians import load_ply
from splatlab.scene.query import (
    export_selection_ply,
    gaussian_features,
    gaussian_relevance,
    grow_selection,
    label_map,
    mask_contributions,
    relevance_maps,
    select_by_text,
    select_in_mask,
    subset,
)

W, H = 64, 48
K = torch.tensor([[60.0, 0, W / 2], [0, 60.0, H / 2], [0, 0, 1]])
VM = torch.tensor(look_at_viewmat([0.0, -4.0, 0.0], [0.0, 0.0, 0.0]), dtype=torch.float32)


def scene(
    means: list[list[float]], scale: float = 0.15, opacity: float = 0.95, d: int = 4
) -> dict[str, torch.Tensor]:
    n = len(means)
    torch.manual_seed(0)
    return {
        "means": torch.tensor(means, dtype=torch.float32),
        "scales": torch.full((n, 3), float(np.log(scale))),
        "quats": torch.tensor([[1.0, 0, 0, 0]] * n),
        "opacities": torch.full((n,), float(np.log(opacity / (1 - opacity)))),
        "sh0": torch.zeros(n, 1, 3),
        "shN": torch.zeros(n, 0, 3),
        "features": torch.randn(n, d),
    }


def test_relevance_and_label_map_exact() -> None:
    text = torch.eye(3, 8)
    dec = torch.zeros(8, 2, 2)
    dec[0, 0, 0] = 2.0
    dec[1, 0, 1] = 1.0
    dec[2, 1, :] = 5.0
    rel = relevance_maps(dec + 1e-9, text)
    assert rel.shape == (3, 2, 2)
    assert torch.allclose(rel[0, 0, 0], torch.tensor(1.0)) and torch.allclose(
        rel[1, 0, 0], torch.tensor(0.0)
    )
    assert label_map(dec + 1e-9, text).tolist() == [[0, 1], [2, 2]]
    with pytest.raises(ValueError):
        relevance_maps(dec, torch.eye(3, 7))


def test_decoding_commutes_with_rendering() -> None:
    p = scene([[x, 0.0, z] for x in (-0.5, 0.0, 0.5) for z in (-0.3, 0.3)], d=6)
    dec = FeatureDecoder(6, 10)
    with torch.no_grad():
        out, alpha, _ = rasterize(
            p["means"],
            p["quats"],
            torch.exp(p["scales"]),
            torch.sigmoid(p["opacities"]),
            p["features"],
            VM[None],
            K[None],
            W,
            H,
        )
        rendered_then_decoded = dec.decode_hwc(out[0])  # [10, H, W]
        g = gaussian_features(p, dec)  # [N, 10]
        out2, _, _ = rasterize(
            p["means"],
            p["quats"],
            torch.exp(p["scales"]),
            torch.sigmoid(p["opacities"]),
            g,
            VM[None],
            K[None],
            W,
            H,
        )
    bias = dec.conv.bias.view(1, 1, -1)
    expected = out2[0] + (1 - alpha[0]) * bias  # decode(sum w f) = sum w (Wf + b) + (1 - sum w) b
    assert torch.allclose(rendered_then_decoded.permute(1, 2, 0), expected, atol=1e-5)


def test_mask_contributions_sum_to_alpha_and_selection_respects_occlusion() -> None:
    # left and right Gaussians in front; a third hidden right behind the left one
    p = scene([[-0.6, 0.0, 0.0], [0.6, 0.0, 0.0], [-0.6, 1.0, 0.0]], scale=0.2)
    p["scales"][2] = float(np.log(0.1))
    with torch.no_grad():
        _, alpha, _ = rasterize(
            p["means"],
            p["quats"],
            torch.exp(p["scales"]),
            torch.sigmoid(p["opacities"]),
            p["features"][:, :1],
            VM[None],
            K[None],
            W,
            H,
        )
    full = torch.ones(H, W, dtype=torch.bool)
    inside, total = mask_contributions(p, VM, K, W, H, full)
    assert torch.allclose(inside, total)
    assert abs(float(total.sum()) - float(alpha.sum())) < 1e-3 * float(alpha.sum())
    left = torch.zeros(H, W, dtype=torch.bool)
    left[:, : W // 2] = True
    inside, _ = mask_contributions(p, VM, K, W, H, left)
    assert (
        inside[1] < 0.01 * inside[0] and inside[2] < 0.1 * inside[0]
    )  # right: outside; back: mostly hidden
    sel = select_in_mask(p, VM, K, W, H, left, min_weight=0.1 * float(inside[0]))
    assert sel.tolist() == [True, False, False]


def test_select_by_text_and_gaussian_relevance() -> None:
    p = scene([[0.0, 0.0, 0.0]] * 4, d=3)
    p["features"] = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0.9, 0.5, 0], [0, 0, 1.0]])
    dec = FeatureDecoder(3, 3)
    with torch.no_grad():
        dec.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        dec.conv.bias.zero_()
    text = torch.eye(3)
    rel = gaussian_relevance(p, dec, text)
    assert rel.shape == (4, 3) and torch.allclose(rel[0], torch.tensor([1.0, 0, 0]))
    sel = select_by_text(p, dec, text[0], threshold=0.5, others=text[1:])
    assert sel.tolist() == [True, False, True, False]
    assert select_by_text(p, dec, text[0], threshold=0.95).tolist() == [True, False, False, False]
    with pytest.raises(DataError, match="features"):
        gaussian_features({k: v for k, v in p.items() if k != "features"}, dec)


def test_grow_subset_export_round_trip(tmp_path: Path) -> None:
    line = [[0.1 * i, 0.0, 0.0] for i in range(10)] + [[5.0, 0.0, 0.0]]
    p = scene(line, d=2)
    seed = torch.zeros(11, dtype=torch.bool)
    seed[0] = True
    grown = grow_selection(p, seed, radius=0.15)
    assert grown.tolist() == [True] * 10 + [False]
    feats = torch.ones(11, 2)
    feats[5:] = torch.tensor([1.0, -1.0])  # features change half way: growth stops there
    assert grow_selection(p, seed, radius=0.15, features=feats, min_similarity=0.9).sum() == 5
    kept = subset(p, grown)
    assert kept["means"].shape == (10, 3) and torch.equal(kept["features"], p["features"][:10])
    deleted = subset(p, ~grown)
    assert deleted["means"].shape == (1, 3)
    path = export_selection_ply(tmp_path / "sel.ply", p, grown)
    back = load_ply(path)
    assert back["means"].shape == (10, 3) and torch.allclose(back["features"], p["features"][:10])
    with pytest.raises(DataError, match="empty"):
        export_selection_ply(tmp_path / "none.ply", p, torch.zeros(11, dtype=torch.bool))


def test_pca_colors_range_and_background() -> None:
    torch.manual_seed(0)
    f = torch.randn(20, 30, 16)
    alpha = torch.ones(20, 30, 1)
    alpha[:5] = 0
    rgb = pca_colors(f, alpha=alpha)
    assert rgb.shape == (20, 30, 3) and rgb.min() >= 0 and rgb.max() <= 1
    assert torch.all(rgb[:5] == 0) and rgb[5:].std() > 0.1
