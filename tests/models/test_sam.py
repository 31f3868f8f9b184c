"""SAM: our builder reproduces segment_anything's official layouts; loading; decoder on a render."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from splatlab.errors import WeightsNotFoundError
from splatlab.models.sam import SAM_CONFIGS, SamTeacher, build_sam_model, infer_sam_type, load_sam
from splatlab.rendering.features import FeatureDecoder
from splatlab.rendering.rasterize import rasterize
from splatlab.scene.cameras import look_at_viewmat
from splatlab.scene.query import click_mask


@pytest.mark.parametrize("kind", ["vit_b", "vit_l", "vit_h"])
def test_layout_matches_segment_anything_builders(kind: str) -> None:
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        ref = sam_model_registry[kind]().state_dict()
        mine = build_sam_model(**SAM_CONFIGS[kind]).state_dict()
    assert list(mine) == list(ref)
    assert all(mine[k].shape == ref[k].shape for k in ref)
    assert infer_sam_type(mine) == kind


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="sam_vit_b_01ec64.pth"):
        load_sam("vit_b")
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        load_sam(tmp_path / "sam.pth")
    mobile = tmp_path / "mobile_sam.pt"
    torch.save({"image_encoder.layers.0.blocks.0.conv1.c.weight": torch.zeros(1)}, mobile)
    with pytest.raises(WeightsNotFoundError, match="MobileSAM"):
        load_sam(mobile)


@pytest.mark.slow
def test_vit_b_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    sam = build_sam_model(**SAM_CONFIGS["vit_b"])
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(sam.state_dict(), path)
    loaded = load_sam(path)
    assert loaded.model_type == "vit_b"
    for k, v in sam.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_teacher_map_grid_and_decoder_on_rendered_feature_map() -> None:
    torch.manual_seed(0)
    sam = build_sam_model(
        encoder_embed_dim=32, encoder_depth=1, encoder_num_heads=2, encoder_global_attn_indexes=()
    )
    teacher = SamTeacher(sam, "tiny")
    assert teacher.valid_grid(48, 64) == (48, 64) and teacher.valid_grid(60, 80) == (48, 64)
    img = torch.rand(60, 80, 3)
    tmap = teacher.encode_image(img)
    assert tmap.shape == (256, 48, 64)
    # the valid part is exactly the top-left of SAM's 64x64 embedding
    assert torch.allclose(teacher.image_embedding(img)[0, :, :48, :64], tmap, atol=1e-6)
    # a RENDERED feature map: random Gaussians with 8-D features, decoded to 256-D
    n = 200
    means = torch.randn(n, 3) * 0.3
    quats = torch.randn(n, 4)
    scales = torch.full((n, 3), 0.08)
    opac = torch.full((n,), 0.8)
    feats = torch.randn(n, 8)
    vm = torch.tensor(look_at_viewmat([0.0, -3.0, 0.0], [0.0, 0.0, 0.0]), dtype=torch.float32)
    K = torch.tensor([[80.0, 0, 40], [0, 80.0, 30], [0, 0, 1]])
    out, _, _ = rasterize(means, quats, scales, opac, feats, vm[None], K[None], 80, 60)
    dec = FeatureDecoder(8, 256)
    with torch.no_grad():
        rendered = dec.decode_hwc(out[0])
    assert rendered.shape == (256, 60, 80)
    emb = teacher.embedding_from_features(rendered, (60, 80))
    assert emb.shape == (1, 256, 64, 64) and torch.all(emb[0, :, 48:] == 0)
    mask, score = click_mask(teacher, rendered, [[40, 30], [5, 5]], [1, 0])
    assert (
        mask.shape == (60, 80) and mask.dtype == torch.bool and torch.isfinite(torch.tensor(score))
    )
    masks, scores, low = teacher.predict_masks(emb, (60, 80), [[40, 30]], [1], multimask=True)
    assert masks.shape == (3, 60, 80) and low.shape == (3, 256, 256)
    assert torch.all(scores[:-1] >= scores[1:])
