"""LSeg: the architecture has the official checkpoint's exact state_dict layout; load and run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from splatlab.errors import WeightsNotFoundError
from splatlab.models.lseg import LSegConfig, LSegNet, LSegTeacher, load_lseg

LAYOUT = Path(__file__).with_name("data") / "lseg_official_layout.json"


def test_full_size_layout_matches_official_checkpoint_keys() -> None:
    # reference: keys/shapes of the official LSegNet (isl-org/lang-seg) built from its own sources,
    # keys/shapes read off the official isl-org/lang-seg network (bb00b21) built on the meta device;
    # 'net.' is the Lightning module prefix of demo_e200.ckpt
    ref = json.loads(LAYOUT.read_text())
    with torch.device("meta"):
        net = LSegNet(LSegConfig())
    mine = {f"net.{k}": list(v.shape) for k, v in net.state_dict().items()}
    assert len(ref) == 730
    assert sorted(mine) == sorted(ref)
    assert all(mine[k] == ref[k] for k in ref)


def test_tiny_lseg_forward_text_and_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = LSegConfig().tiny()
    net = LSegNet(cfg).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (1, 512, 32, 48) and torch.isfinite(y).all()
    with pytest.raises(ValueError, match="multiple of 32"):
        net(torch.randn(1, 3, 48, 64))
    t = net.encode_text(["red cube", "floor"])
    assert t.shape == (2, 512) and torch.allclose(t.norm(dim=-1), torch.ones(2), atol=1e-5)
    # a Lightning-style checkpoint, as demo_e200.ckpt is stored
    ckpt = tmp_path / "demo_e200.ckpt"
    torch.save(
        {"epoch": 200, "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, ckpt
    )
    loaded = load_lseg(ckpt, cfg=cfg)
    with torch.no_grad():
        assert torch.equal(loaded(x), y)
    teacher = LSegTeacher(loaded, tag="tiny")
    f = teacher.encode_image(torch.rand(30, 40, 3))
    assert f.shape[0] == 512 and f.dim() == 3


def test_missing_and_mismatched_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="demo_e200"):
        load_lseg(None)
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        load_lseg(tmp_path / "nope.ckpt")
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {"net.scratch.head1.weight": torch.zeros(512, 16, 1, 1)}}, bad)
    with pytest.raises(WeightsNotFoundError, match="does not match"):
        load_lseg(bad, cfg=LSegConfig().tiny())
