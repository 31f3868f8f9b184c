"""ARR (ICIP 2024): exactly C colour levels at inference, straight-through in training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from splatlab.errors import DataError
from splatlab.plugins.compress.icm.arr import ARR
from splatlab.plugins.compress.icm.codec import tensor_to_image


def _stripes(c: int, h: int = 16, w: int = 48, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """An image of c vertical stripes of distinct colours (+ noise) and the stripe index map."""
    g = torch.Generator().manual_seed(seed)
    cols = torch.linspace(0.1, 0.9, c)[:, None] * torch.tensor([1.0, 0.6, 0.3])
    idx = torch.arange(w) * c // w
    x = cols[idx].T[:, None, :].expand(3, h, w).clone()[None]
    x = (x + 0.03 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x, idx[None, None, :].expand(1, h, w).clone()


@pytest.mark.parametrize("levels", [2, 4, 8])
def test_arr_output_has_exactly_c_levels_at_inference(levels: int) -> None:
    torch.manual_seed(0)
    arr = ARR(levels, hidden=8)
    x, lab = _stripes(levels)
    opt = torch.optim.Adam(arr.parameters(), lr=2e-2)
    for _ in range(40):  # a very brief training of the softmax (so every class is used)
        loss = F.cross_entropy(arr.logits(x), lab)
        opt.zero_grad()
        loss.backward()
        opt.step()
    arr.eval()
    with torch.no_grad():
        out = arr(x)
    flat = out[0].reshape(3, -1).T
    assert len(torch.unique(flat, dim=0)) == levels
    # every output colour is a row of the colour map, and the uint8 image keeps C levels
    cmap = arr.colors().detach()
    assert bool((flat[:, None, :] == cmap[None]).all(-1).any(-1).all())
    img = tensor_to_image(out)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) == levels
    # the hard output is the colour of the argmax class
    pred = arr.logits(x).argmax(1)
    assert torch.equal(out, cmap[pred].permute(0, 3, 1, 2))


def test_arr_never_exceeds_c_levels_and_trains_straight_through() -> None:
    torch.manual_seed(1)
    arr = ARR(4, hidden=8)
    x = torch.rand(2, 3, 24, 24)
    arr.train()
    y = arr(x)  # forward value is already the hard map (straight-through)
    assert len(torch.unique(y.detach().permute(0, 2, 3, 1).reshape(-1, 3), dim=0)) <= 4
    assert torch.equal(y.detach(), arr(x, hard=True).detach())
    y.square().mean().backward()
    assert arr.net[0].weight.grad is not None and arr.net[0].weight.grad.abs().sum() > 0
    assert arr.color_logits.grad is not None and arr.color_logits.grad.abs().sum() > 0


def test_arr_bad_inputs() -> None:
    with pytest.raises(DataError, match="levels"):
        ARR(1)
    with pytest.raises(DataError, match="B, 3, H, W"):
        ARR(2)(torch.rand(1, 4, 8, 8))


def test_arr_palette_init_is_nearest_colour_quantisation_and_uses_every_level() -> None:
    torch.manual_seed(0)
    x, lab = _stripes(4, w=64)
    img = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    arr = ARR(4, hidden=8)
    pal = arr.init_palette(img[None], prior_scale=200.0)
    arr.eval()
    with torch.no_grad():
        out = arr(x)
    # exactly the nearest palette colour for every pixel
    p = torch.as_tensor(pal, dtype=torch.float32).clamp(0.02, 0.98)
    near = (x[0].permute(1, 2, 0)[:, :, None] - p).square().sum(-1).argmin(-1)
    assert torch.allclose(out[0].permute(1, 2, 0), arr.colors()[near], atol=1e-6)
    assert len(torch.unique(near)) == 4  # the four stripes -> the four levels
    assert float(F.mse_loss(out, x)) < 2e-3  # palette quantisation of 4 flat stripes + noise
    # gradients still reach the CNN (zeroed last layer) and the colours
    arr.train()
    arr(x).square().mean().backward()
    assert arr.net[-1].weight.grad.abs().sum() > 0 and arr.color_logits.grad.abs().sum() > 0
    # an old state dict without the prior loads as "no prior"
    old = {k: v for k, v in ARR(4, hidden=8).state_dict().items() if k != "prior_scale"}
    fresh = ARR(4, hidden=8)
    fresh.load_state_dict(old)
    assert float(fresh.prior_scale) == 0.0
    with pytest.raises(DataError, match="init_palette"):
        ARR(4).init_palette(np.zeros((1, 1, 3), np.uint8))
