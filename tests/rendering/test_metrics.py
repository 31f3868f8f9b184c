"""PSNR, SSIM and LPIPS loading."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from splatlab.errors import WeightsNotFoundError
from splatlab.rendering.metrics import LPIPS_BACKBONES, load_lpips, lpips_backbone_path, psnr, ssim


def test_psnr_of_known_mse_is_exact() -> None:
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(2, 3, 16, 20, 3, generator=g, dtype=torch.float64)
    sign = torch.where(torch.rand(ref.shape, generator=g) < 0.5, -1.0, 1.0).double()
    d = torch.tensor([0.01, 0.02, 0.05], dtype=torch.float64)[None, :, None, None, None]
    img = ref + sign * d  # every pixel off by exactly d: MSE = d^2
    out = psnr(img, ref)
    assert out.shape == (2, 3)
    expected = torch.tensor(
        [40.0, -10 * math.log10(0.02**2), -10 * math.log10(0.05**2)], dtype=torch.float64
    )
    assert torch.allclose(out, expected.expand(2, 3), atol=1e-9)
    assert torch.isinf(psnr(ref, ref)).all()
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(img[0], ref)


def brute_force_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM as torchmetrics defines it, one window at a time: 11x11 Gaussian (sigma 1.5) on the
    reflect-padded image, C1 = 0.01^2, C2 = 0.03^2, mean over all pixels and channels."""
    r = 5
    t = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-(t**2) / (2 * 1.5**2))
    g /= g.sum()
    w = np.outer(g, g)
    c1, c2 = 0.01**2, 0.03**2
    h, wd, ch = x.shape
    total = 0.0
    for c in range(ch):
        xp = np.pad(x[:, :, c], r, mode="reflect")
        yp = np.pad(y[:, :, c], r, mode="reflect")
        for i in range(h):
            for j in range(wd):
                a = xp[i : i + 2 * r + 1, j : j + 2 * r + 1]
                b = yp[i : i + 2 * r + 1, j : j + 2 * r + 1]
                mx, my = (w * a).sum(), (w * b).sum()
                vx = max((w * a * a).sum() - mx * mx, 0.0)
                vy = max((w * b * b).sum() - my * my, 0.0)
                cov = (w * a * b).sum() - mx * my
                total += ((2 * mx * my + c1) * (2 * cov + c2)) / (
                    (mx * mx + my * my + c1) * (vx + vy + c2)
                )
    return total / (h * wd * ch)


def test_ssim_matches_brute_force_and_is_one_for_identical_images() -> None:
    g = torch.Generator().manual_seed(1)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, 14), torch.linspace(0, 1, 18), indexing="ij")
    ref = torch.stack([xs, ys, 0.5 * (xs + ys)], dim=-1)
    noisy = (ref + 0.1 * torch.randn(ref.shape, generator=g)).clamp(0, 1)
    assert ssim(ref, ref).item() == pytest.approx(1.0, abs=1e-6)
    value = ssim(noisy, ref).item()
    assert value < 0.95
    assert value == pytest.approx(
        brute_force_ssim(noisy.numpy().astype(np.float64), ref.numpy().astype(np.float64)), abs=1e-4
    )
    # in float64 the two agree to rounding
    exact = brute_force_ssim(noisy.double().numpy(), ref.double().numpy())
    assert ssim(noisy.double(), ref.double()).item() == pytest.approx(exact, abs=1e-12)
    # batched [..., H, W, 3]: one value per image, same as one at a time
    stack = torch.stack([torch.stack([noisy, ref]), torch.stack([ref, noisy])])
    out = ssim(stack, ref.expand_as(stack))
    assert out.shape == (2, 2)
    assert torch.allclose(out, torch.tensor([[value, 1.0], [1.0, value]]), atol=1e-6)
    more_noise = (ref + 0.3 * torch.randn(ref.shape, generator=g)).clamp(0, 1)
    assert ssim(more_noise, ref).item() < value
    with pytest.raises(ValueError, match="at least 6x6"):
        ssim(ref[:5], ref[:5])


def test_ssim_is_a_differentiable_loss() -> None:
    g = torch.Generator().manual_seed(2)
    ref = torch.rand(24, 24, 3, generator=g)
    img = (ref + 0.2 * torch.randn(ref.shape, generator=g)).clamp(0, 1).requires_grad_(True)
    opt = torch.optim.Adam([img], lr=0.01)
    start = ssim(img, ref).item()
    for _ in range(30):
        loss = 1.0 - ssim(img, ref)
        opt.zero_grad()
        loss.backward()
        assert torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0
        opt.step()
    assert ssim(img, ref).item() > start + 0.1


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_missing_weights_names_file_folder_and_url(
    tmp_path: Path, monkeypatch, net: str
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    fname, url = LPIPS_BACKBONES[net]
    folder = tmp_path / "torch_home" / "hub" / "checkpoints"
    assert lpips_backbone_path(net) == folder / fname
    with pytest.raises(WeightsNotFoundError) as info:
        load_lpips(net)
    msg = str(info.value)
    assert fname in msg and str(folder) in msg and url in msg
    assert not (tmp_path / "torch_home").exists()  # nothing downloaded or created
    with pytest.raises(WeightsNotFoundError, match=fname):
        load_lpips(net, weights_dir=tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="must be one of"):
        load_lpips("resnet")


def alexnet_features_state(seed: int) -> dict[str, torch.Tensor]:
    """Randomly initialised weights with the keys and shapes of torchvision's alexnet features."""
    torch.manual_seed(seed)
    feats = torchvision.models.alexnet(weights=None).features
    return {f"features.{k}": v.clone() for k, v in feats.state_dict().items()}


def test_lpips_with_random_backbone_runs_and_loads_that_backbone(
    tmp_path: Path, monkeypatch
) -> None:
    state = alexnet_features_state(seed=0)
    folder = tmp_path / "torch_home" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(state, folder / LPIPS_BACKBONES["alex"][0])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    metric = load_lpips("alex")
    trunk = dict(metric.model.net.named_parameters())
    assert torch.equal(trunk["slice1.0.weight"], state["features.0.weight"])
    assert torch.equal(trunk["slice5.10.bias"], state["features.10.bias"])
    assert not any(p.requires_grad for p in metric.parameters())

    g = torch.Generator().manual_seed(3)
    a = torch.rand(2, 32, 32, 3, generator=g)
    b = (a + 0.2 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    same = metric(a, a)
    assert same.shape == (2,) and torch.equal(same, torch.zeros(2))
    diff = metric(b, a)
    assert (diff > 0).all()
    # the heads are the package's calibrated ones (non-negative weights), inputs get gradients
    assert all((lin.model[1].weight >= 0).all() for lin in metric.model.lins)
    b.requires_grad_(True)
    metric(b, a).sum().backward()
    assert b.grad is not None and b.grad.abs().sum() > 0


def test_lpips_rejects_a_wrong_backbone_file(tmp_path: Path) -> None:
    fname = LPIPS_BACKBONES["alex"][0]
    state = alexnet_features_state(seed=0)
    state["features.3.weight"] = torch.zeros(10, 10, 3, 3)
    torch.save(state, tmp_path / fname)
    with pytest.raises(WeightsNotFoundError, match=r"features\.3\.weight"):
        load_lpips("alex", weights_dir=tmp_path)
    (tmp_path / fname).write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsNotFoundError, match="not a usable torchvision alex checkpoint"):
        load_lpips("alex", weights_dir=tmp_path)
