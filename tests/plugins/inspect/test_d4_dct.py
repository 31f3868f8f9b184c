"""D4 features: the torch DCT (matrix products) against scipy's dctn, and its gradients."""

from __future__ import annotations

import numpy as np
import torch
from scipy.fft import dctn

from splatlab.plugins.inspect.deepfake.dct import (
    dct2,
    dct2_numpy,
    dct_matrix,
    log_dct,
    log_dct_numpy,
)


def test_torch_dct_matches_scipy_dctn() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 24, 40))  # non-square: C_H and C_W differ
    ref = dctn(x, type=2, norm="ortho", axes=(-2, -1))
    got64 = dct2(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got64, ref, rtol=0, atol=1e-12)
    got32 = dct2(torch.from_numpy(x).float()).numpy()
    np.testing.assert_allclose(got32, ref, rtol=0, atol=2e-5)
    np.testing.assert_allclose(dct2_numpy(x), ref, rtol=0, atol=0)
    # the matrix is orthonormal and its first row is the mean scaled by sqrt(n)
    c = dct_matrix(8, torch.float64)
    np.testing.assert_allclose((c @ c.T).numpy(), np.eye(8), atol=1e-12)
    np.testing.assert_allclose(c[0].numpy(), np.full(8, 1 / np.sqrt(8)), atol=1e-15)


def test_log_dct_matches_scipy_and_is_differentiable() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((1, 3, 16, 16)).astype(np.float32)
    ref = log_dct_numpy(x)
    got = log_dct(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-3)
    assert (
        abs(float(ref[0, 0, 0, 0]) - np.log(x[0, 0].astype(np.float64).sum() / 16 + 1e-4)) < 1e-9
    )  # DC = sum / sqrt(HW)
    # a flat image: only the DC is non-zero; float32 round-off stays under eps = 1e-4
    flat = torch.full((1, 3, 16, 16), 0.5)
    f = log_dct(flat)
    assert abs(float(f[0, 0, 0, 0]) - np.log(8.0 + 1e-4)) < 1e-5
    assert float(f[0, :, 1:, :].max()) < np.log(2e-4)
    xt = torch.from_numpy(x).double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: dct2(t).pow(2).sum(), (xt,))
    log_dct(xt).sum().backward()
    assert xt.grad is not None and torch.isfinite(xt.grad).all() and xt.grad.abs().sum() > 0
