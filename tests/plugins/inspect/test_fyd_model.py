"""FYD (reconstructed): identity STNs at init, the stop-gradient FAS loss, the patch shuffle, a
few training steps, scoring shapes, checkpoints and their errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splatlab.errors import CheckpointError, SplatlabError, WeightsNotFoundError
from splatlab.models.rd4ad import TEACHER_RANDOM
from splatlab.plugins.inspect.anomaly.data import make_texture_set
from splatlab.plugins.inspect.anomaly.fyd import (
    FYD,
    AffineSTN,
    FYDConfig,
    FYDTrainConfig,
    build_fyd,
    evaluate_fyd,
    fas_loss,
    fit_and_save_fyd,
    fit_gaussians,
    ica_loss,
    load_fyd,
    patch_shuffle,
    score_fyd,
    train_fyd,
)


def _cfg(**kw) -> FYDConfig:
    base = dict(
        arch="resnet18",
        base_channels=8,
        teacher=TEACHER_RANDOM,
        image_size=64,
        embed_dim=24,
        proj_dim=32,
        pred_dim=8,
        stn_hidden=8,
    )
    return FYDConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def data():
    return make_texture_set(
        "brick", n_train=8, n_test_good=2, n_per_defect=1, size=64, scale=0.5, defects=("colour",)
    )


def test_stns_start_at_the_identity() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 5, 16, 20)
    for stn in (AffineSTN(5, 8), AffineSTN(5, 8, max_shift=0.25)):
        out, theta = stn(x)
        eye = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(3, 2, 3)
        torch.testing.assert_close(theta, eye, rtol=0, atol=0)
        torch.testing.assert_close(out, x, rtol=0, atol=1e-5)
    # the whole model: ICA and every FCA stage are the identity, so its features are the
    # plain backbone's
    model = FYD(_cfg()).eval()
    img = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(img)
        # equal up to the rounding of the sampling grid (~1e-5 on values of magnitude ~4)
        torch.testing.assert_close(out["aligned"], img, rtol=0, atol=1e-4)
        plain = FYD(_cfg(ica=False, fca=False)).eval()
        plain.load_state_dict(model.state_dict(), strict=False)
        torch.testing.assert_close(plain(img)["full"], out["full"], rtol=0, atol=1e-4)
    # a non-zero head rotates: 90 degrees maps the image onto its rot90
    stn = AffineSTN(1, 4)
    with torch.no_grad():
        stn.head.bias.fill_(float(np.arctanh(0.5)))  # pi * tanh = pi / 2
    x = torch.arange(16.0).view(1, 1, 4, 4)
    y, _ = stn(x)
    assert torch.allclose(y, torch.rot90(x, 1, (2, 3)), atol=1e-4) or torch.allclose(
        y, torch.rot90(x, -1, (2, 3)), atol=1e-4
    )


def test_patch_shuffle_is_a_derangement_of_patches() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 3, 8, 8)
    for patch in (1, 2, 4):
        out, src = patch_shuffle(z, patch, g)
        assert src.shape == (5, 8 // patch, 8 // patch)
        # every cell: a permutation of the batch without fixed points
        srt = torch.sort(src, dim=0).values
        assert torch.equal(srt, torch.arange(5).view(5, 1, 1).expand_as(src))
        assert not (src == torch.arange(5).view(5, 1, 1)).any()
        # the output is z's patches moved across the batch, position kept: same multiset of
        # patch vectors at every position, and each patch whole (the cell's pixels move together)
        for b in range(5):
            for i in range(8):
                for j in range(8):
                    s = int(src[b, i // patch, j // patch])
                    assert torch.equal(out[b, :, i, j], z[s, :, i, j])
        a = torch.sort(out.permute(2, 3, 0, 1).reshape(64, 5, 3), dim=1).values
        b_ = torch.sort(z.permute(2, 3, 0, 1).reshape(64, 5, 3), dim=1).values
        assert torch.equal(a, b_)
    with pytest.raises(SplatlabError, match="two images"):
        patch_shuffle(z[:1])


def test_fas_loss_stops_the_gradient_on_the_shuffled_side() -> None:
    g = torch.Generator().manual_seed(0)
    p = torch.randn(4, 6, 5, 5, requires_grad=True)
    z = torch.randn(4, 6, 5, 5, requires_grad=True)
    loss = fas_loss(p, z, 1, g)
    loss.backward()
    assert z.grad is None  # nothing flows to the stop-gradient side
    assert p.grad is not None and p.grad.abs().sum() > 0
    # identical features at every position across the batch -> zero loss
    same = torch.randn(1, 6, 5, 5).repeat(4, 1, 1, 1)
    assert float(fas_loss(same, same, 1, g)) == pytest.approx(0.0, abs=1e-6)
    # its value: 1 - cos against the derangement the same generator state produces
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    v = fas_loss(p.detach(), z.detach(), 1, g1)
    t, _ = patch_shuffle(z.detach(), 1, g2)
    ref = (1 - torch.nn.functional.cosine_similarity(p.detach(), t, dim=1)).mean()
    assert float(v) == pytest.approx(float(ref), rel=1e-6)


def test_ica_loss_is_the_mean_pairwise_pixel_distance() -> None:
    x = torch.zeros(3, 2, 1, 1)
    x[1, 0] = 3.0
    x[2, 1] = 4.0
    # pairs: |0 - (3,0)| = 3, |0 - (0,4)| = 4, |(3,0) - (0,4)| = 5 -> mean 4
    assert float(ica_loss(x)) == pytest.approx(4.0, abs=1e-4)
    assert float(ica_loss(torch.ones(4, 3, 8, 8))) == pytest.approx(0.0, abs=1e-3)


def test_training_lowers_the_loss_and_scores(data) -> None:
    torch.manual_seed(0)
    model = build_fyd(_cfg())
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    hist = train_fyd(model, data.train, FYDTrainConfig(epochs=8, batch_size=4, lr=3e-3))
    # measured (2026-12-01): loss 1.69 -> 1.46, FAS 0.97 -> 0.74; L_ICA stays near 0.72 (random
    # crops of a texture cannot all be rotated onto each other)
    assert hist[-1]["loss"] < 0.9 * hist[0]["loss"]
    assert hist[-1]["fas"] < 0.8 * hist[0]["fas"]
    for k, v in model.encoder.state_dict().items():  # the backbone stays frozen
        assert torch.equal(v, before[k]), k
    assert any(p.abs().sum() > 0 for p in model.ica.head.parameters())  # ICA was trained
    with pytest.raises(CheckpointError, match="fit_gaussians"):
        score_fyd(model, data.test)
    fit_gaussians(model, data.train)
    maps, scores = score_fyd(model, data.test)
    assert maps.shape == (3, 64, 64) and maps.dtype == np.float32
    np.testing.assert_allclose(scores, maps.reshape(3, -1).max(1))
    assert (maps >= 0).all() and np.isfinite(maps).all()
    m = evaluate_fyd(model, data)
    assert set(m) == {"all", "colour"}
    assert set(m["all"]) == {"image_auroc", "pixel_auroc", "aupro", "rd4ad_pro"}


def test_checkpoint_round_trip_and_errors(data, tmp_path) -> None:
    path = tmp_path / "fyd.pt"
    model, stats = fit_and_save_fyd(data, path, _cfg(), FYDTrainConfig(epochs=1, batch_size=4))
    back = load_fyd(path)
    sd, sd2 = model.state_dict(), back.state_dict()
    assert set(sd) == set(sd2)
    for k in sd:
        assert torch.equal(sd[k], sd2[k]), k
    np.testing.assert_array_equal(score_fyd(back, data.test)[0], score_fyd(model, data.test)[0])
    assert stats["score_max"] >= stats["score_mean"] > 0
    ck = torch.load(path, weights_only=True)
    assert set(ck) >= {"config", "fyd", "encoder", "normal_scores"}
    assert not any(k.startswith("encoder.") for k in ck["fyd"])
    with pytest.raises(WeightsNotFoundError, match="benchmarks/anomaly_fyd.py --teacher"):
        load_fyd(tmp_path / "missing.pt")
    torch.save({"bn": {}, "decoder": {}}, tmp_path / "rd.pt")
    with pytest.raises(CheckpointError, match="not an FYD checkpoint"):
        load_fyd(tmp_path / "rd.pt")
    with pytest.raises(WeightsNotFoundError, match="train_texture_teacher|--train-teacher"):
        build_fyd(_cfg(teacher="imagenet"))  # width 8 has no ImageNet weights
    with pytest.raises(SplatlabError, match="shuffle_patch"):
        _cfg(shuffle_patch=5)


def test_gaussians_match_a_direct_computation(data) -> None:
    """The running-sum fit equals numpy's per-position mean and (cov + eps I)^-1."""
    torch.manual_seed(0)
    model = build_fyd(_cfg())
    fit_gaussians(model, data.train, batch_size=3)  # uneven batches: 3 + 3 + 2
    from splatlab.plugins.inspect.anomaly.rd4ad import to_tensor

    with torch.no_grad():
        x = model.normalize(to_tensor(data.train, 64))
        f = model(x)["embedding"].flatten(2).transpose(1, 2).double().numpy()  # [N, P, d]
    p = 37  # one position, checked in full
    cov = np.cov(f[:, p].T) + 0.01 * np.eye(f.shape[-1])
    np.testing.assert_allclose(model.gauss_mean[p].numpy(), f[:, p].mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        model.gauss_prec[p].numpy(), np.linalg.inv(cov), rtol=1e-3, atol=1e-3
    )
    # the unblurred map of a training image: its Mahalanobis distance at every position,
    # upsampled bilinearly (align_corners=False)
    model.config.sigma = 0.0
    mu = f.mean(0)  # [P, d]
    dist = np.empty(f.shape[1])
    for q in range(f.shape[1]):
        dq = f[0, q] - mu[q]
        dist[q] = np.sqrt(dq @ np.linalg.inv(np.cov(f[:, q].T) + 0.01 * np.eye(f.shape[-1])) @ dq)
    g = 64 // 4
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(dist).view(1, 1, g, g), size=(64, 64), mode="bilinear", align_corners=False
    )[0, 0].numpy()
    amap = model.predict(to_tensor(data.train[:1], 64))[0]
    np.testing.assert_allclose(amap, ref, rtol=2e-3, atol=2e-3)
