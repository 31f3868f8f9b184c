"""D4 benchmark attacks: PGD (L_inf, through the torch DCT) and HopSkipJump (decision-only)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from splatlab.plugins.inspect.deepfake.attacks import hop_skip_jump, normalised_l2, pgd_linf
from splatlab.plugins.inspect.deepfake.data import toy_set
from splatlab.plugins.inspect.deepfake.model import D4Config, D4Detector
from splatlab.plugins.inspect.deepfake.partition import round_robin_partition
from splatlab.plugins.inspect.deepfake.train import (
    TrainConfig,
    fit_classifier,
    spectrum_stats,
    to_tensor,
)


def _detector() -> tuple[D4Detector, torch.Tensor, torch.Tensor]:
    """A detector trained for a few epochs on the toy set, and test images with their labels."""
    torch.manual_seed(0)
    real, fake = toy_set(24, 16, seed=0)
    x = torch.cat([to_tensor(real), to_tensor(fake)])
    y = torch.cat([torch.zeros(24), torch.ones(24)]).long()
    cfg = D4Config(image_size=16, n_partitions=2, width=4)
    det = D4Detector(cfg, round_robin_partition(torch.rand(3, 16, 16), 2))
    det.set_stats(*spectrum_stats(x, cfg.log_eps))
    for m in [*det.members, det.full]:
        fit_classifier(m, x, y, TrainConfig(epochs=5, batch_size=12, lr=5e-3))
    real_t, fake_t = toy_set(3, 16, seed=1)
    xt = torch.cat([to_tensor(real_t), to_tensor(fake_t)])
    return det.eval(), xt, torch.tensor([0, 0, 0, 1, 1, 1])


def test_pgd_raises_the_loss_and_stays_within_eps() -> None:
    det, x, y = _detector()
    with torch.no_grad():
        loss0 = float(F.nll_loss(det(x), y))
    for log_probs in (det, lambda t: F.log_softmax(det.full(t), dim=-1)):
        eps = 4 / 255
        x_adv = pgd_linf(log_probs, x, y, eps, steps=8)
        d = (x_adv - x).abs().max()
        assert float(d) <= eps + 1e-6 and float(d) > eps / 2
        assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
        with torch.no_grad():
            assert (
                float(F.nll_loss(log_probs(x_adv), y)) > float(F.nll_loss(log_probs(x), y)) + 0.01
            )
    with torch.no_grad():
        assert float(F.nll_loss(det(pgd_linf(det, x, y, 4 / 255, steps=8)), y)) > loss0
    assert torch.equal(pgd_linf(det, x, y, 0.0), x)


def test_hop_skip_jump_on_a_linear_boundary() -> None:
    # label = [w . x > b]: HSJA must approach the exact distance |w . x - b| / ||w||
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, 3, 8, 8, generator=g)
    x = torch.full((1, 3, 8, 8), 0.5) + 0.05 * torch.randn(1, 3, 8, 8, generator=g)
    b = float((w * x).sum()) - 0.5 * float(w.norm())  # x sits 0.5 (raw L2) from the boundary

    def predict(t: torch.Tensor) -> torch.Tensor:
        return ((t * w).flatten(1).sum(1) > b).long()

    y = int(predict(x)[0])
    res = hop_skip_jump(predict, x, y, max_queries=3000, seed=0)
    assert res.found and res.queries <= 3000
    assert int(predict(res.x_adv)[0]) != y
    exact = 0.5 / np.sqrt(x.numel())
    assert res.distance == float(normalised_l2(res.x_adv, x)[0])
    assert exact <= res.distance < 1.5 * exact
    few = hop_skip_jump(predict, x, y, max_queries=60, seed=0)
    assert few.queries <= 60 and (not few.found or few.distance >= res.distance)
