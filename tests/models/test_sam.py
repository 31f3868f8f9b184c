"""SAM: our builder reproduces segment_anything's official layouts; loading; decoder on a render.
MobileSAM (vit_t): timm TinyViT trunk with the official mobile_sam.pt key layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from splatlab.errors import CheckpointError, WeightsNotFoundError
from splatlab.models.sam import (
    MOBILE_SAM_URL,
    SAM_CONFIGS,
    SamTeacher,
    build_mobile_sam,
    build_sam_model,
    infer_sam_type,
    load_mobile_sam_state_dict,
    load_sam,
    mobile_sam_key_from_official,
    mobile_sam_key_to_official,
    mobile_sam_official_state_dict,
)
from splatlab.rendering.features import FeatureDecoder
from splatlab.rendering.rasterize import rasterize
from splatlab.scene.cameras import look_at_viewmat
from splatlab.scene.query import click_mask

MOBILE_SAM_LAYOUT = Path(__file__).with_name("data") / "mobile_sam_vit_t_layout.json"


@pytest.fixture
def no_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty weights folders (no checkpoint of this machine is found); returns the first one."""
    monkeypatch.setenv("SPLATLAB_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "weights").mkdir()
    return tmp_path / "weights"


@pytest.mark.parametrize("kind", ["vit_b", "vit_l", "vit_h"])
def test_layout_matches_segment_anything_builders(kind: str) -> None:
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        ref = sam_model_registry[kind]().state_dict()
        mine = build_sam_model(**SAM_CONFIGS[kind]).state_dict()
    assert list(mine) == list(ref)
    assert all(mine[k].shape == ref[k].shape for k in ref)
    assert infer_sam_type(mine) == kind


def test_load_errors(tmp_path: Path, no_weights: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="sam_vit_b_01ec64.pth"):
        load_sam("vit_b")
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        load_sam(tmp_path / "sam.pth")
    # MobileSAM: the message names the file and where to download it
    with pytest.raises(WeightsNotFoundError, match="mobile_sam.pt") as e:
        load_sam("vit_t")
    assert MOBILE_SAM_URL in str(e.value)
    assert (
        MOBILE_SAM_URL
        == "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt"
    )
    with pytest.raises(WeightsNotFoundError, match="does not exist") as e:
        load_sam(tmp_path / "mobile_sam.pt")
    assert MOBILE_SAM_URL in str(e.value)
    # a TinyViT checkpoint that is not vit_t is refused with a message
    other = tmp_path / "other_tinyvit.pt"
    torch.save({"image_encoder.layers.0.blocks.0.conv1.c.weight": torch.zeros(1)}, other)
    with pytest.raises(WeightsNotFoundError, match="not MobileSAM vit_t"):
        load_sam(other)


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


def _rendered_sam_map() -> torch.Tensor:
    """A RENDERED feature map [256, 60, 80]: random Gaussians with 8-D features, decoded to 256-D."""
    torch.manual_seed(1)
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
    return rendered


def _check_teacher_on_image_and_render(teacher: SamTeacher) -> None:
    """Teacher map of a 60 x 80 image, then SAM's decoder prompted on a rendered feature map."""
    assert teacher.valid_grid(48, 64) == (48, 64) and teacher.valid_grid(60, 80) == (48, 64)
    img = torch.rand(60, 80, 3)
    tmap = teacher.encode_image(img)
    assert tmap.shape == (256, 48, 64) and torch.isfinite(tmap).all()
    # the valid part is exactly the top-left of SAM's 64x64 embedding
    assert torch.allclose(teacher.image_embedding(img)[0, :, :48, :64], tmap, atol=1e-6)
    rendered = _rendered_sam_map()
    emb = teacher.embedding_from_features(rendered, (60, 80))
    assert emb.shape == (1, 256, 64, 64) and torch.all(emb[0, :, 48:] == 0)
    mask, score = click_mask(teacher, rendered, [[40, 30], [5, 5]], [1, 0])
    assert (
        mask.shape == (60, 80) and mask.dtype == torch.bool and torch.isfinite(torch.tensor(score))
    )
    masks, scores, low = teacher.predict_masks(emb, (60, 80), [[40, 30]], [1], multimask=True)
    assert masks.shape == (3, 60, 80) and low.shape == (3, 256, 256)
    assert torch.all(scores[:-1] >= scores[1:])


def test_teacher_map_grid_and_decoder_on_rendered_feature_map() -> None:
    torch.manual_seed(0)
    sam = build_sam_model(
        encoder_embed_dim=32, encoder_depth=1, encoder_num_heads=2, encoder_global_attn_indexes=()
    )
    _check_teacher_on_image_and_render(SamTeacher(sam, "tiny"))


def test_mobile_sam_layout_matches_official_checkpoint() -> None:
    """Our vit_t in the official layout has exactly the keys, order and shapes of ``mobile_sam.pt``.

    The fixture ``data/mobile_sam_vit_t_layout.json`` was written by a throw-away script (not timm,
    not splatlab) that walks the module tree of the official ``mobile_sam/modeling/tiny_vit_sam.py``
    ``TinyViT`` as built by ``mobile_sam/build_sam.py`` ``build_sam_vit_t`` (embed_dims 64/128/160/
    320, depths 2/2/6/2, heads 2/4/5/10, windows 7/7/14/7, mlp_ratio 4, MBConv expand 4, local conv
    3, 1000 classes) in registration order: Conv2d_BN = ``c`` (conv, no bias) + ``bn`` (weight, bias,
    running_mean, running_var, num_batches_tracked); Attention's own ``attention_biases``
    [heads, window^2] before its norm/qkv [3 dim, dim]/proj; the non-persistent
    ``attention_bias_idxs`` left out; PatchMerging as ``layers.{i}.downsample`` after the blocks of
    layers 0-2; then ``norm_head``, ``head``, ``neck``. ``prompt_encoder.*``/``mask_decoder.*`` were
    taken from segment_anything's ``build_sam_vit_b`` state_dict (MobileSAM's copies of those
    modules differ from segment_anything's only in comments). The encoder key names (and the
    presence of ``num_batches_tracked``) agree with a published key dump of the real
    ``mobile_sam.pt``; the encoder has 5.74 M parameters without the unused classifier head.
    """
    ref = json.loads(MOBILE_SAM_LAYOUT.read_text())
    with torch.device("meta"):
        sam = build_mobile_sam(**SAM_CONFIGS["vit_t"])
        official = mobile_sam_official_state_dict(sam)
        # the image embedding has SAM's layout: [B, 256, 64, 64] for the 1024 x 1024 input
        emb = sam.image_encoder(torch.empty(1, 3, 1024, 1024))
    assert list(official) == list(ref)
    assert {k: list(v.shape) for k, v in official.items()} == ref
    assert emb.shape == (1, 256, 64, 64) and sam.image_encoder.img_size == 1024
    # the key mapping is a bijection between the two layouts
    ours = list(sam.state_dict())
    assert [mobile_sam_key_from_official(mobile_sam_key_to_official(k)) for k in ours] == ours
    assert infer_sam_type(official) == "vit_t"
    assert mobile_sam_key_from_official("image_encoder.layers.2.downsample.conv2.c.weight") == (
        "image_encoder.trunk.stages.3.downsample.conv2.conv.weight"
    )
    assert sam.image_encoder.trunk.stages[3].downsample.conv2.conv.stride == (1, 1)
    assert sam.image_encoder.trunk.stages[2].downsample.conv2.conv.stride == (2, 2)


def test_mobile_sam_checkpoint_round_trip(no_weights: Path) -> None:
    torch.manual_seed(0)
    sam = build_mobile_sam()
    with torch.no_grad():  # every tensor random (BN statistics and attention biases included)
        for v in sam.state_dict().values():
            v.copy_(torch.randint_like(v, 5) if v.dtype == torch.long else torch.rand_like(v))
    saved = mobile_sam_official_state_dict(sam)
    path = no_weights / "mobile_sam.pt"
    torch.save(saved, path)
    loaded = load_sam("vit_t")  # found by name in the weights folders
    assert loaded.model_type == "vit_t"
    assert isinstance(loaded.image_encoder, type(sam.image_encoder))
    mine = loaded.state_dict()
    assert list(mine) == list(sam.state_dict())
    assert all(torch.equal(mine[k], v) for k, v in sam.state_dict().items())
    again = mobile_sam_official_state_dict(loaded)  # official -> ours -> official is exact
    assert list(again) == list(saved) and all(torch.equal(again[k], v) for k, v in saved.items())
    assert infer_sam_type(torch.load(path, weights_only=True)) == "vit_t"
    # a file lacking the BatchNorm num_batches_tracked buffers loads; other gaps are errors
    lean = {k: v for k, v in saved.items() if not k.endswith("num_batches_tracked")}
    assert len(lean) < len(saved)
    load_mobile_sam_state_dict(loaded, lean)
    bad = dict(lean)
    del bad["image_encoder.layers.2.blocks.5.attn.attention_biases"]
    bad["image_encoder.layers.3.downsample.conv1.c.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as e:
        load_mobile_sam_state_dict(loaded, bad)
    assert "missing keys: image_encoder.layers.2.blocks.5.attn.attention_biases" in str(e.value)
    assert "unexpected keys: image_encoder.layers.3.downsample.conv1.c.weight" in str(e.value)


def test_mobile_sam_teacher_on_rendered_feature_map() -> None:
    """A small TinyViT (same classes, 1024 input) as SAM teacher: embedding and clicks."""
    torch.manual_seed(0)
    sam = build_mobile_sam(embed_dims=(8, 16, 16, 32), depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 2))
    assert sam.image_encoder(torch.zeros(1, 3, 1024, 1024)).shape == (1, 256, 64, 64)
    teacher = SamTeacher(sam, "vit_t-tiny")
    assert teacher.grid == 64 and teacher.cache_id() == "sam-vit_t-tiny-1024"
    _check_teacher_on_image_and_render(teacher)
