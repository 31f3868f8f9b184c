"""RD4AD model: the official state_dict layout, official-checkpoint loading, the teacher's weight
resolution, the loss and the anomaly map."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from scipy.ndimage import gaussian_filter

from splatlab.errors import CheckpointError, WeightsNotFoundError
from splatlab.models.rd4ad import (
    TEACHER_RANDOM,
    RD4ADConfig,
    ReverseDistillation,
    anomaly_map,
    build_rd4ad,
    load_rd4ad,
    rd4ad_loss,
    save_rd4ad,
)

# key -> shape of bn.state_dict() and decoder.state_dict() of the official builders
# (hq-deng/RD4AD@6554076 resnet.py wide_resnet50_2 / resnet18 and de_resnet.py
# de_wide_resnet50_2 / de_resnet18, built with pretrained=False and dumped once)
LAYOUT = json.loads((Path(__file__).parent / "data" / "rd4ad_official_layout.json").read_text())


def _shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("arch", ["wide_resnet50_2", "resnet18"])
def test_state_dict_layout_matches_official(arch: str) -> None:
    with torch.device("meta"):
        m = ReverseDistillation(RD4ADConfig(arch=arch, teacher=TEACHER_RANDOM))
    assert _shapes(m.bn) == LAYOUT[arch]["bn"]
    assert _shapes(m.decoder) == LAYOUT[arch]["decoder"]
    # the encoder is torchvision's ResNet up to layer3: same keys and shapes
    with torch.device("meta"):
        tv = getattr(torchvision.models, arch)(weights=None)
    tv_sd = {
        k: list(v.shape) for k, v in tv.state_dict().items() if not k.startswith(("layer4.", "fc."))
    }
    assert _shapes(m.encoder) == tv_sd


def test_feature_shapes_wide_resnet() -> None:
    with torch.device("meta"):
        m = ReverseDistillation(RD4ADConfig(teacher=TEACHER_RANDOM))
        t, s = m(torch.empty(1, 3, 256, 256))
        z = m.bn(t)
    assert [tuple(x.shape) for x in t] == [(1, 256, 64, 64), (1, 512, 32, 32), (1, 1024, 16, 16)]
    assert [tuple(x.shape) for x in s] == [tuple(x.shape) for x in t]
    assert tuple(z.shape) == (1, 2048, 8, 8)


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """Point every weight folder at an empty place."""
    monkeypatch.setenv("SPLATLAB_WEIGHTS", str(tmp_path / "w"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


def test_missing_imagenet_teacher_raises_with_download(no_weights) -> None:
    with pytest.raises(WeightsNotFoundError, match="wide_resnet50_2-95faca4d.pth"):
        build_rd4ad(RD4ADConfig())
    with pytest.raises(WeightsNotFoundError, match="base_channels"):
        build_rd4ad(RD4ADConfig(arch="resnet18", base_channels=16))
    with pytest.raises(WeightsNotFoundError, match="train-teacher"):
        build_rd4ad(
            RD4ADConfig(arch="resnet18", base_channels=16, teacher=str(no_weights / "t.pt"))
        )
    with pytest.raises(WeightsNotFoundError, match="benchmarks/anomaly.py"):
        load_rd4ad(no_weights / "missing.pth")


def test_official_checkpoint_loads_with_torchvision_teacher(no_weights) -> None:
    """An official {'bn', 'decoder'} file (resnet18, the official small variant) plus a torchvision
    ImageNet-format teacher file under its torchvision name give the same maps as the source."""
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(weights=None)
    wdir = no_weights / "tv"
    wdir.mkdir()
    torch.save(tv.state_dict(), wdir / "resnet18-f37072fd.pth")
    cfg = RD4ADConfig(arch="resnet18", image_size=64)
    src = build_rd4ad(cfg, weights_dir=wdir)
    for k, v in tv.state_dict().items():  # the teacher really is the file's
        if not k.startswith(("layer4.", "fc.")):
            assert torch.equal(src.encoder.state_dict()[k], v)
    with torch.no_grad():  # give the BN running stats non-trivial values
        for mod in [*src.bn.modules(), *src.decoder.modules()]:
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
    bn_sd = {"module." + k: v for k, v in src.bn.state_dict().items()}
    bn_sd["module.memory_bank"] = torch.zeros(3)  # dropped on load, as the official test.py does
    path = no_weights / "wres_official.pth"
    torch.save({"bn": bn_sd, "decoder": src.decoder.state_dict()}, path)
    loaded = load_rd4ad(path, cfg, weights_dir=wdir)
    x = torch.rand(2, 3, 32, 32)
    np.testing.assert_array_equal(src.predict(x), loaded.predict(x))
    # the same file read as another architecture (its teacher present) is refused by name
    torch.save(
        torchvision.models.resnet34(weights=None).state_dict(), wdir / "resnet34-b627a593.pth"
    )
    with pytest.raises(CheckpointError, match="'bn' weights .* do not fit"):
        load_rd4ad(path, RD4ADConfig(arch="resnet34", image_size=64), weights_dir=wdir)
    torch.save({"decoder": {}}, no_weights / "bad.pth")
    with pytest.raises(CheckpointError, match="'bn' and 'decoder'"):
        load_rd4ad(no_weights / "bad.pth", cfg)


def test_save_and_load_roundtrip_with_own_teacher(tmp_path) -> None:
    torch.manual_seed(1)
    cfg = RD4ADConfig(arch="resnet18", base_channels=8, teacher=TEACHER_RANDOM, image_size=64)
    m = build_rd4ad(cfg)
    save_rd4ad(m, tmp_path / "m.pt", {"normal_scores": {"score_max": 0.5}})
    back = load_rd4ad(tmp_path / "m.pt")
    assert back.config == cfg
    x = torch.rand(1, 3, 64, 64)
    np.testing.assert_array_equal(m.predict(x), back.predict(x))
    # a teacher checkpoint of the wrong width is refused
    torch.save({"encoder": m.encoder.state_dict()}, tmp_path / "t8.pt")
    with pytest.raises(CheckpointError, match="does not fit"):
        build_rd4ad(RD4ADConfig(arch="resnet18", base_channels=16, teacher=str(tmp_path / "t8.pt")))


def test_loss_and_map_values() -> None:
    torch.manual_seed(0)
    t = [torch.randn(2, 4, 8, 8), torch.randn(2, 8, 4, 4)]
    assert float(rd4ad_loss(t, [x.clone() for x in t])) == pytest.approx(0.0, abs=1e-6)
    # opposite features: 1 - cos = 2 on each of the two scales
    assert float(rd4ad_loss(t, [-x for x in t])) == pytest.approx(4.0, abs=1e-5)
    # one flipped pixel at the coarse scale: map value 2 there (sigma 0), 0 elsewhere
    s = [t[0].clone(), t[1].clone()]
    s[1][:, :, 0, 0] *= -1
    m = anomaly_map(t, s, 4, sigma=0)
    assert m.shape == (2, 4, 4)
    assert m[:, 0, 0] == pytest.approx([2.0, 2.0], abs=1e-5)
    assert np.abs(m[:, 1:, 1:]).max() < 1e-5
    # the blur (sigma 4, scipy's as in the official evaluation) keeps the mass of an interior peak
    s2 = [t[0].clone(), t[1].clone()]
    s2[0][:, :, 4, 4] *= -1
    sharp = anomaly_map(t, s2, 64, sigma=0)
    blurred = anomaly_map(t, s2, 64, sigma=4)
    assert blurred.sum() == pytest.approx(sharp.sum(), rel=0.02)
    assert blurred.max() < 0.8 * sharp.max()
    ref = np.stack([gaussian_filter(a, sigma=4) for a in sharp])  # official: gaussian_filter(., 4)
    np.testing.assert_allclose(blurred, ref, atol=1e-6)
