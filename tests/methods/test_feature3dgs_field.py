"""FeatureField: relevance in d-space, loading what training stored, click masks (feature
similarity and SAM's decoder on a rendered map), missing teacher weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from splatlab.errors import WeightsNotFoundError
from splatlab.methods.feature3dgs.distill import (
    FEATURE_DECODER_FILE,
    FeatureConfig,
    features_of,
    make_feature_trainer,
)
from splatlab.methods.feature3dgs.field import (
    FeatureField,
    load_feature_field,
    relevance_from_rendered,
)
from splatlab.rendering.features import FeatureDecoder
from splatlab.scene.cameras import look_at_viewmat
from splatlab.scene.query import relevance_maps, select_by_text
from splatlab.scene.synthetic import DemoConfig, make_demo_scene
from splatlab.training.trainer import TrainConfig

W, H = 64, 48
K = np.array([[60.0, 0, W / 2], [0, 60.0, H / 2], [0, 0, 1]])
VM = look_at_viewmat([0.0, -4.0, 0.0], [0.0, 0.0, 0.0])


def test_relevance_in_feature_space_equals_decoding() -> None:
    torch.manual_seed(0)
    dec = FeatureDecoder(6, 40)
    feat = torch.randn(5, 7, 6)
    text = torch.randn(3, 40)
    ref = relevance_maps(dec.decode_hwc(feat).detach(), text)
    got = relevance_from_rendered(feat, dec, text)
    assert got.shape == (3, 5, 7)
    assert torch.allclose(got, ref, atol=1e-5)
    with pytest.raises(ValueError, match="feat must be"):
        relevance_from_rendered(torch.randn(5, 7, 5), dec, text)
    with pytest.raises(ValueError, match="text must be"):
        relevance_from_rendered(feat, dec, torch.randn(3, 39))


def _blobs(d: int = 4) -> dict[str, torch.Tensor]:
    """Two clusters of Gaussians left and right of the view axis with orthogonal features."""
    g = torch.Generator().manual_seed(0)
    left = torch.randn(60, 3, generator=g) * 0.12 + torch.tensor([-0.8, 0.0, 0.0])
    right = torch.randn(60, 3, generator=g) * 0.12 + torch.tensor([0.8, 0.0, 0.0])
    means = torch.cat([left, right])
    n = len(means)
    feats = torch.zeros(n, d)
    feats[:60, 0] = 1.0
    feats[60:, 1] = 1.0
    return {
        "means": means,
        "scales": torch.full((n, 3), float(np.log(0.08))),
        "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        "opacities": torch.full((n,), 3.0),
        "sh0": torch.zeros(n, 1, 3),
        "shN": torch.zeros(n, 0, 3),
        "features": feats,
    }


def test_feature_similarity_click_selects_the_clicked_cluster() -> None:
    from splatlab.scene.query import select_in_mask

    p = _blobs()
    dec = FeatureDecoder(4, 16)
    field = FeatureField(dec, "clip")
    feat, depth, alpha = field.render(p, VM, K, W, H)
    assert feat.shape == (H, W, 4) and depth.shape == (H, W) and alpha.shape == (H, W)
    # the left cluster projects left of the centre: click where it is densest
    left_cols = alpha[:, : W // 2].sum(0)
    x = int(left_cols.argmax())
    y = int(alpha[:, x].argmax())
    mask, score = field.click_mask(p, VM, K, W, H, np.array([[x, y]]), np.array([1]), 0.9)
    assert mask.dtype == torch.bool and score > 0.9
    assert mask[:, : W // 2].sum() > 30 and mask[:, W // 2 :].sum() == 0
    sel = select_in_mask(
        p,
        torch.as_tensor(VM, dtype=torch.float32),
        torch.as_tensor(K, dtype=torch.float32),
        W,
        H,
        mask,
    )
    assert sel[:60].float().mean() > 0.8 and not sel[60:].any()
    # a negative click on the same cluster removes what it is closer to
    y2 = int(alpha[:, x].argmax())
    with pytest.raises(Exception, match="positive click"):
        field.click_mask(p, VM, K, W, H, np.array([[x, y2]]), np.array([0]))


def test_sam_field_click_runs_sams_decoder_on_the_rendered_map() -> None:
    from splatlab.models.sam import SamTeacher, build_sam_model

    torch.manual_seed(0)
    sam = SamTeacher(build_sam_model(32, 1, 2, ()), tag="tiny")
    p = _blobs(d=4)
    field = FeatureField(FeatureDecoder(4, 256), "sam", _teacher=sam)
    assert field.promptable and not field.text_aligned
    mask, score = field.click_mask(p, VM, K, W, H, np.array([[20, 24], [50, 24]]), np.array([1, 0]))
    assert mask.shape == (H, W) and mask.dtype == torch.bool and np.isfinite(score)
    with pytest.raises(Exception, match="no text encoder"):
        field.encode_text(["a cat"])


def test_missing_teacher_weights_fail_at_query_time_with_instructions(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    field = FeatureField(FeatureDecoder(4, 512), "lseg", {"teacher": "lseg", "dim": 4})
    with pytest.raises(WeightsNotFoundError, match="demo_e200"):
        field.encode_text(["chair"])


def test_trained_field_round_trip_run_dir_and_ply(tmp_path: Path) -> None:
    ds = make_demo_scene(DemoConfig(n_views=8, width=48, height=36, n_points=600, supersample=1))
    cfg = TrainConfig(
        out=tmp_path / "run",
        steps=8,
        refine_start_iter=10**6,
        refine_stop_iter=10**6,
        refine_every=10**6,
        reset_every=10**9,
        sh_degree=1,
        checkpoint_every=8,
        device="cpu",
    )
    fc = FeatureConfig(teacher="labels", dim=4, labels_dim=32, lr_features=1e-2)
    tr = make_feature_trainer(ds, cfg, fc)
    tr.train()
    names = ds.meta["label_names"]
    text = features_of(tr).teacher.encode_text(names)
    lab = names.index("red cube")
    others = torch.cat([text[:lab], text[lab + 1 :]])
    want = select_by_text(tr.params, features_of(tr).decoder, text[lab], 0.0, others, min_opacity=0.1)
    for src in (tmp_path / "run", tmp_path / "run" / FEATURE_DECODER_FILE):
        field = load_feature_field(src)
        assert field.teacher_kind == "labels" and field.dim == 4 and field.label_names() == names
        assert torch.allclose(field.encode_text(names), text)
        assert torch.equal(field.decoder.conv.weight, features_of(tr).decoder.conv.weight.detach())
    field = load_feature_field(tmp_path / "run")
    got = field.select_text(tr.params, "red cube", 0.0, min_opacity=0.1)
    assert torch.equal(got, want)
    # a PLY export with the decoder beside it carries the same field
    from splatlab.scene.checkpoint import load_scene

    ply = load_scene(tmp_path / "run" / "scene.ply")
    f2 = load_feature_field(ply)
    assert f2 is not None and f2.teacher_kind == "labels"
    # a scene without features has no field
    assert (
        load_feature_field(load_scene(tmp_path / "run"), params={"means": torch.zeros(1, 3)})
        is None
    )
