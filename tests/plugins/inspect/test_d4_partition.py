"""D4 partitions (disjoint, covering, round-robin over the saliency ranking), the ensemble's
softmax average, the C&W saliency and the checkpoint round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from splatlab.errors import CheckpointError, WeightsNotFoundError
from splatlab.plugins.inspect.deepfake.model import (
    D4Config,
    D4Detector,
    SpectrumClassifier,
    build_backbone,
    load_d4,
    save_d4,
)
from splatlab.plugins.inspect.deepfake.partition import (
    carlini_wagner_l2,
    cw_saliency,
    round_robin_partition,
)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_partitions_are_disjoint_and_cover_the_spectrum(n: int) -> None:
    sal = torch.from_numpy(np.random.default_rng(n).random((3, 8, 8))).float()
    masks = round_robin_partition(sal, n)
    assert masks.shape == (n, 3, 8, 8) and masks.dtype == torch.bool
    counts = masks.sum(0)
    assert int(counts.min()) == 1 and int(counts.max()) == 1  # disjoint and covering
    sizes = masks.flatten(1).sum(1)
    assert int(sizes.max() - sizes.min()) <= 1 and int(sizes.sum()) == 192
    # round-robin over the ascending ranking: the k-th least salient goes to partition k % n
    order = np.argsort(sal.flatten().numpy(), kind="stable")
    owner = masks.flatten(1).float().argmax(0).numpy()
    np.testing.assert_array_equal(owner[order], np.arange(192) % n)


def test_round_robin_shares_the_salient_coefficients() -> None:
    sal = torch.arange(12, dtype=torch.float32).reshape(3, 2, 2)  # coefficient i has saliency i
    masks = round_robin_partition(sal, 4)
    got = [sorted(torch.nonzero(m.flatten())[:, 0].tolist()) for m in masks]
    assert got == [[0, 4, 8], [1, 5, 9], [2, 6, 10], [3, 7, 11]]
    with pytest.raises(ValueError):
        round_robin_partition(sal, 0)


def test_ensemble_is_the_mean_of_the_member_softmaxes() -> None:
    torch.manual_seed(0)
    cfg = D4Config(image_size=16, n_partitions=3, width=2)
    masks = round_robin_partition(torch.rand(3, 16, 16), 3)
    det = D4Detector(cfg, masks).eval()
    x = torch.rand(5, 3, 16, 16)
    with torch.no_grad():
        each = [F.softmax(m(x), dim=-1) for m in det.members]
        want = (each[0] + each[1] + each[2]) / 3
        np.testing.assert_allclose(det.ensemble_probs(x).numpy(), want.numpy(), atol=1e-7)
        np.testing.assert_allclose(det(x).exp().numpy(), want.numpy(), atol=1e-6)
        assert det.member_probs(x).shape == (3, 5, 2)
        # each member sees only its own coefficients
        f0 = det.members[0].features(x)
        assert float(f0[:, ~masks[0]].abs().max()) == 0.0
        assert float(f0[:, masks[0]].abs().min()) > 0.0
        # the stored masks are the partitions
        assert torch.equal(det.masks, masks.float())


def test_cw_saliency_is_nonnegative_and_the_attack_lowers_the_margin() -> None:
    torch.manual_seed(0)
    model = SpectrumClassifier(D4Config(image_size=16, width=2)).eval()
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        y = model(x).argmax(1)
    x_adv = carlini_wagner_l2(model, x, y, c=10.0, steps=30, lr=0.05)
    assert x_adv.shape == x.shape and float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    with torch.no_grad():
        lg0, lg1 = model(x), model(x_adv)
    m0 = lg0.gather(1, y[:, None]) - lg0.gather(1, 1 - y[:, None])
    m1 = lg1.gather(1, y[:, None]) - lg1.gather(1, 1 - y[:, None])
    assert float((m1 - m0).mean()) < 0
    sal = cw_saliency(model, x, y, c=10.0, steps=10, lr=0.05)
    assert sal.shape == (3, 16, 16) and float(sal.min()) >= 0 and float(sal.sum()) > 0


def test_checkpoint_round_trip_and_clear_errors(tmp_path) -> None:
    torch.manual_seed(0)
    cfg = D4Config(image_size=16, n_partitions=2, width=2)
    det = D4Detector(cfg, round_robin_partition(torch.rand(3, 16, 16), 2)).eval()
    det.set_stats(torch.full((3, 16, 16), -2.0), torch.full((3, 16, 16), 3.0))
    path = save_d4(tmp_path / "d4.pt", det, {"note": "test"})
    det2, info = load_d4(path)
    assert info["note"] == "test" and det2.config == cfg
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        np.testing.assert_allclose(
            det2.ensemble_probs(x).numpy(), det.ensemble_probs(x).numpy(), atol=1e-6
        )
    with pytest.raises(WeightsNotFoundError, match="d4_bench.py"):
        load_d4(tmp_path / "missing.pt")
    torch.save({"foo": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a splatlab D4 checkpoint"):
        load_d4(tmp_path / "other.pt")


def test_resnet50_backbone_builds() -> None:
    net = build_backbone(D4Config(image_size=32, backbone="resnet50"))
    assert net.fc.out_features == 2 and net.fc.in_features == 2048
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(23.5e6, rel=0.01)
    with torch.no_grad():
        assert net.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 2)
