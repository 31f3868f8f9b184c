"""The scene codec panel's ``codec difference`` map (``codec_difference``): zero for the same
scene, the DC colour change times the pixel's alpha for a uniform colour shift, the codec's own
error for a decoded bitstream; and the L1-only, higher-rate fine-tune."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splatlab.plugins.compress.scene_codec import (
    codec_difference,
    decode_scene,
    encode_scene,
    prune_and_finetune,
)
from splatlab.rendering.random_scenes import random_scene
from splatlab.rendering.sh import SH_C0
from splatlab.rendering.splats import render_splats

W, H = 40, 30


def _scene(n: int = 400, seed: int = 0):
    r = random_scene(n, W, H, sh_degree=1, seed=seed, coverage=3.0)
    g = torch.Generator().manual_seed(seed)
    params = {
        "means": r["means"],
        "scales": torch.log(r["scales"]),
        "quats": r["quats"],
        "opacities": torch.logit(r["opacities"]),
        # DC colours 0.3..0.7: a small shift never reaches the [0, 1] clamp
        "sh0": ((0.3 + 0.4 * torch.rand(n, 1, 3, generator=g)) - 0.5) / SH_C0,
        "shN": torch.zeros(n, 3, 3),
    }
    return params, r["viewmats"][0].numpy(), r["Ks"][0].numpy()


def test_same_scene_has_zero_difference():
    p, vm, K = _scene()
    d = codec_difference(p, p, vm, K, W, H)
    assert d.shape == (H, W) and d.dtype == np.float32
    assert float(np.abs(d).max()) == 0.0


def test_uniform_colour_shift_is_dc_step_times_alpha():
    """Every Gaussian's DC raised by delta: the render moves by SH_C0 * delta * alpha per pixel
    on a black background (colour = sum_i w_i c_i, sum_i w_i = alpha)."""
    p, vm, K = _scene(seed=1)
    delta = 0.2
    q = dict(p, sh0=p["sh0"] + delta)
    d = codec_difference(p, q, vm, K, W, H)
    _, alpha, _ = render_splats(p, torch.as_tensor(vm)[None], torch.as_tensor(K)[None], W, H)
    want = SH_C0 * delta * alpha[0, ..., 0].numpy()
    assert float(want.max()) > 0.04  # the scene covers the view
    np.testing.assert_allclose(d, want, atol=2e-5)


def test_decoded_bitstream_difference_matches_its_psnr():
    """The map of a real decode: mean squared map bounded by the RGB MSE (Jensen), small at q5,
    larger at q1."""
    p, vm, K = _scene(n=600, seed=2)
    out = {}
    for q in (1, 5):
        dec = decode_scene(encode_scene(p, q, prune=0.0, kmeans_iterations=2))
        out[q] = codec_difference(p, dec, vm, K, W, H)
        a = render_splats(p, torch.as_tensor(vm)[None], torch.as_tensor(K)[None], W, H)[0][0].clamp(0, 1)
        b = render_splats(dec, torch.as_tensor(vm)[None], torch.as_tensor(K)[None], W, H)[0][0].clamp(0, 1)
        mse = float(((a - b) ** 2).mean())
        assert float((out[q].astype(np.float64) ** 2).mean()) <= mse + 1e-9
    assert 0 < float(out[5].mean()) < float(out[1].mean()) < 0.05


def test_finetune_l1_at_a_higher_rate_recovers_and_checks_prune():
    """The fast recovery settings (plain L1, twice the learning rates) still win back what
    pruning cost (measured: 26.1 dB pruned, 31.6 dB after 40 steps at lr x2 with D-SSIM)."""
    from test_scene_codec import _train_psnr, _views_dataset, scene

    p, vm, K = scene(n=800, seed=5)
    ds = _views_dataset(p, vm, K)
    pruned = prune_and_finetune(p, ds, prune=0.4, steps=0)
    tuned = prune_and_finetune(pruned, ds, prune=0.0, steps=30, ssim_weight=0.0, lr_scale=2.0)
    assert _train_psnr(tuned, ds) > _train_psnr(pruned, ds) + 2.0
    with pytest.raises(ValueError, match="prune"):
        prune_and_finetune(p, ds, prune=1.0, steps=1)
    # a scene of SH degree 0 (higher bands all zero) is not given view-dependent colour
    flat = dict(pruned, shN=torch.zeros_like(pruned["shN"]))
    tuned0 = prune_and_finetune(flat, ds, prune=0.0, steps=5, lr_scale=2.0)
    assert not tuned0["shN"].any() and not torch.equal(tuned0["sh0"], flat["sh0"])
