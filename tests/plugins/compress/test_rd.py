"""Rate-distortion harness: Bjontegaard deltas and the image anchors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from splatlab.errors import DataError
from splatlab.plugins.compress import rd

R = [0.25, 0.5, 1.0, 2.0]
P = [28.0, 31.0, 34.5, 38.0]


@pytest.mark.parametrize("interp", ["pchip", "cubic"])
def test_bd_of_a_curve_against_itself_is_zero(interp):
    assert rd.bd_rate(R, P, R, P, interp) == pytest.approx(0.0, abs=1e-9)
    assert rd.bd_psnr(R, P, R, P, interp) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("interp", ["pchip", "cubic"])
def test_shifted_curves_give_the_expected_deltas(interp):
    # 10 % fewer bits at every PSNR -> BD-rate -10 %, exactly (a constant shift in log rate)
    assert rd.bd_rate(R, P, [0.9 * r for r in R], P, interp) == pytest.approx(-10.0, abs=1e-9)
    assert rd.bd_rate(R, P, [1.25 * r for r in R], P, interp) == pytest.approx(25.0, abs=1e-9)
    # +0.7 dB at every rate -> BD-PSNR +0.7 dB
    assert rd.bd_psnr(R, P, R, [p + 0.7 for p in P], interp) == pytest.approx(0.7, abs=1e-9)
    # a better curve has negative BD-rate and positive BD-PSNR
    assert rd.bd_rate(R, P, R, [p + 1 for p in P], interp) < 0


def test_only_the_overlap_counts():
    lin = [28.0, 31.0, 34.0, 37.0]  # PSNR linear in log rate: PCHIP reproduces it on any subset
    assert rd.bd_rate(R, lin, [0.8 * r for r in R[:3]], lin[:3]) == pytest.approx(-20.0, abs=1e-9)
    assert rd.bd_psnr(R, lin, R[1:], [p + 0.5 for p in lin[1:]]) == pytest.approx(0.5, abs=1e-9)


def test_bd_rejects_bad_curves():
    with pytest.raises(DataError):
        rd.bd_rate([1.0], [30.0], R, P)
    with pytest.raises(DataError, match="overlap"):
        rd.bd_rate(R, P, R, [p + 20 for p in P])
    with pytest.raises(DataError, match="4 points"):
        rd.bd_rate(R[:3], P[:3], R[:3], P[:3], "cubic")


def _image() -> np.ndarray:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:48, 0:64] / 64
    img = np.stack([xx, yy, 0.5 + 0.4 * np.sin(8 * xx * yy)], -1) + rng.normal(0, 0.02, (48, 64, 3))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


@pytest.mark.parametrize("codec", list(rd.ANCHORS))
def test_anchor_rate_is_the_file_size(codec):
    if codec == "JPEG XL" and shutil.which("cjxl") is None:
        pytest.skip("needs cjxl/djxl: apt-get install libjxl-tools")
    img = _image()
    lo, data_lo, dec_lo = rd.anchor_point(codec, img, rd.DEFAULT_QUALITIES[codec][1])
    hi, data_hi, dec_hi = rd.anchor_point(codec, img, rd.DEFAULT_QUALITIES[codec][-1])
    assert lo.num_bytes == len(data_lo) and hi.num_bytes == len(data_hi)
    assert lo.bpp == pytest.approx(8 * len(data_lo) / (48 * 64))
    assert dec_lo.shape == img.shape and dec_lo.dtype == np.uint8
    assert lo.psnr == pytest.approx(rd.psnr(dec_lo, img))
    # higher quality: more bytes, higher PSNR, and a sane range
    assert hi.num_bytes > lo.num_bytes and hi.psnr > lo.psnr
    assert 20 < lo.psnr < hi.psnr < 60
    assert 0 < lo.ms_ssim <= hi.ms_ssim <= 1


def test_metrics():
    img = _image()
    assert rd.psnr(img, img) == float("inf")
    noisy = np.clip(img.astype(int) + 4, 0, 255).astype(np.uint8)
    assert rd.psnr(noisy, img) == pytest.approx(10 * np.log10(255**2 / np.mean((noisy - img.astype(float)) ** 2)))
    assert rd.ms_ssim(img, img) == pytest.approx(1.0, abs=1e-6)
    assert rd.ms_ssim(noisy, img) < 1.0


def test_rd_figure():
    pts = [rd.RDPoint("A", q, 100 * q, r, p, 0.9, 0.0, 0.0) for q, r, p in zip(range(4), R, P)]
    fig = rd.rd_figure({"A": pts}, highlight=pts[1])
    assert len(fig.data) == 2 and list(fig.data[0].x) == R
    assert fig.data[1].marker.symbol == "star"
