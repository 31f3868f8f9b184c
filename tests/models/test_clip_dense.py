"""Dense CLIP (MaskCLIP): loader errors without weights; dense features on a tiny open_clip model."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from splatlab.errors import WeightsNotFoundError
from splatlab.models.clip_dense import DenseCLIP, DenseCLIPTeacher, load_dense_clip


def tiny_clip() -> torch.nn.Module:
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)
    return CLIP(
        embed_dim=32,
        vision_cfg=CLIPVisionCfg(layers=2, width=64, patch_size=16, image_size=64, head_width=32),
        text_cfg=CLIPTextCfg(layers=1, width=32, heads=2),
    ).eval()


def test_missing_weights_fail_fast_with_instructions(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    with pytest.raises(WeightsNotFoundError, match="create_model"):
        load_dense_clip("ViT-B-16", "openai")
    assert time.perf_counter() - t0 < 20  # no network retries
    with pytest.raises(WeightsNotFoundError, match="no pretrained tag"):
        load_dense_clip("ViT-B-16", "not-a-tag")
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        load_dense_clip("ViT-B-16", str(tmp_path / "w.bin"))


def test_dense_features_are_the_last_block_value_path() -> None:
    model = tiny_clip()
    net = DenseCLIP(model, input_size=64)
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        dense = net(x)
        # independent recomputation with open_clip's own modules: run all blocks but the last,
        # then the value path of the last block's nn.MultiheadAttention
        v = model.visual
        t = v.conv1(x).flatten(2).transpose(1, 2)
        t = torch.cat([v.class_embedding.view(1, 1, -1), t], 1) + net._pos(3, 4)
        t = v.ln_pre(t)
        for blk in v.transformer.resblocks[:-1]:
            t = blk(t)
        last = v.transformer.resblocks[-1]
        c = t.shape[-1]
        wv, bv = last.attn.in_proj_weight[2 * c :], last.attn.in_proj_bias[2 * c :]
        val = last.attn.out_proj(last.ln_1(t) @ wv.T + bv)
        ref = (
            F.normalize(v.ln_post(val[:, 1:]) @ v.proj, dim=-1).transpose(1, 2).reshape(1, 32, 3, 4)
        )
    assert dense.shape == (1, 32, 3, 4)
    assert torch.allclose(dense, ref, atol=1e-5)
    assert torch.allclose(dense.norm(dim=1), torch.ones(1, 3, 4), atol=1e-5)
    # the grid-interpolated positional embedding at the native grid is the stored one
    assert torch.allclose(net._pos(4, 4), v.positional_embedding, atol=1e-6)


def test_teacher_image_and_text() -> None:
    teacher = DenseCLIPTeacher(DenseCLIP(tiny_clip(), input_size=64), tag="tiny")
    f = teacher.encode_image(torch.rand(60, 80, 3))
    assert f.shape == (32, 3, 4)
    t = teacher.encode_text(["red cube", "chrome ball"])
    assert t.shape == (2, 32) and torch.allclose(t.norm(dim=-1), torch.ones(2), atol=1e-5)
