"""The mean-scale hyperprior codec: honest bitstream, exact entropy parameters, bit-exact decode
in another process, typed errors on bad input."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from splatlab.errors import DataError
from splatlab.plugins.compress.icm.codec import (
    CodecConfig,
    MeanScaleHyperprior,
    image_to_tensor,
    pad_image,
)
from splatlab.plugins.compress.icm.entropy import int_conv


def _image(h: int = 70, w: int = 90, seed: int = 0) -> np.ndarray:
    """A smooth colour image with some texture (uint8 [h, w, 3])."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx + 1), np.cos(5 * yy), np.sin(4 * (xx + yy))], -1) * 0.4 + 0.5
    return (np.clip(base + 0.05 * rng.standard_normal((h, w, 3)), 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def codec() -> MeanScaleHyperprior:
    torch.manual_seed(0)
    m = MeanScaleHyperprior(CodecConfig(16, 16))
    # a few training steps so the entropy models are not at their initial values
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    x = pad_image(image_to_tensor(_image(64, 64)))
    for _ in range(3):
        out = m(x)
        loss = out["bpp"] + 0.01 * 255**2 * F.mse_loss(out["x_hat"], x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    m.update()
    return m


def test_int_conv_matches_float_conv_exactly() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-300, 300, (1, 5, 6, 7), generator=g)
    w = torch.randint(-4000, 4000, (4, 5, 3, 3), generator=g)
    b = torch.randint(-10**6, 10**6, (4,), generator=g)
    ref = F.conv2d(x.double(), w.double(), b.double(), stride=2, padding=1)
    assert torch.equal(int_conv(x, w, b, stride=2, padding=1), ref.round().long())
    wt = torch.randint(-4000, 4000, (5, 4, 5, 5), generator=g)
    ref_t = F.conv_transpose2d(x.double(), wt.double(), b.double(), stride=2, padding=2,
                               output_padding=1)
    got = int_conv(x, wt, b, stride=2, padding=2, transposed=True, output_padding=1)
    assert got.shape == ref_t.shape == (1, 4, 12, 14)
    assert torch.equal(got, ref_t.round().long())


def test_exact_hyper_synthesis_is_close_to_the_float_one(codec: MeanScaleHyperprior) -> None:
    z = torch.randint(-3, 4, (1, 16, 2, 3), generator=torch.Generator().manual_seed(1))
    mu, sigma = codec.hyper_exact(z)
    s_f, mu_f = codec.h_s(z.float()).chunk(2, 1)
    assert mu.dtype == torch.float64 and mu.shape == (1, 16, 8, 12)
    assert (mu - mu_f.double()).abs().max() < 2e-2
    assert (sigma - s_f.double()).abs().max() < 2e-2
    # multiples of 2^-KA: exact integers once scaled
    assert torch.equal(mu * 1024, torch.round(mu * 1024))


def test_round_trip_rate_from_bytes(codec: MeanScaleHyperprior) -> None:
    img = _image()
    data = codec.compress(img)
    assert data[:2] == b"iM" and isinstance(data, bytes)
    out = codec.decompress(data)
    assert out.shape == img.shape and out.dtype == np.uint8
    # the decoder reproduces the encoder's reconstruction of the latents exactly
    x = pad_image(image_to_tensor(img))
    with torch.no_grad():
        y = codec.g_a(x)
        z_sym = torch.round(codec.h_a(y)).clamp(-codec.entropy_bottleneck.support,
                                                codec.entropy_bottleneck.support).long()
        mu, _ = codec.hyper_exact(z_sym)
        y_hat_enc = (torch.round(y.double() - mu) + mu).float()
    y_hat_dec, h, w = codec.decode_latents(data)
    assert (h, w) == img.shape[:2]
    assert torch.equal(y_hat_enc, y_hat_dec)
    # the file size is close to the entropy model's estimate (header 19 bytes, 4-byte words)
    with torch.no_grad():
        est_bits = float(codec(x)["bpp"]) * x.shape[2] * x.shape[3]
    assert est_bits / 8 < len(data) < est_bits / 8 * 1.25 + 40


def test_decode_is_bit_exact_in_another_process(codec: MeanScaleHyperprior, tmp_path: Path) -> None:
    img = _image(64, 96, seed=3)
    data = codec.compress(img)
    ref = codec.decompress(data)
    torch.save({"config": codec.config.as_dict(), "state": codec.state_dict()}, tmp_path / "m.pt")
    (tmp_path / "img.icm").write_bytes(data)
    threads = 1 if torch.get_num_threads() > 1 else 2  # another thread count than ours
    script = textwrap.dedent(f"""
        import numpy as np, torch
        torch.set_num_threads({threads})
        from splatlab.plugins.compress.icm.codec import CodecConfig, MeanScaleHyperprior
        from splatlab.plugins.compress.icm.train import load_codec_state
        ck = torch.load({str(tmp_path / 'm.pt')!r}, weights_only=True)
        m = MeanScaleHyperprior(CodecConfig(**ck["config"]))
        load_codec_state(m, ck["state"])
        data = open({str(tmp_path / 'img.icm')!r}, "rb").read()
        np.save({str(tmp_path / 'out.npy')!r}, m.decompress(data))
        assert m.compress(np.asarray({img.tolist()!r}, np.uint8)) == data
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    other = np.load(tmp_path / "out.npy")
    assert np.array_equal(other, ref)


def test_bad_inputs(codec: MeanScaleHyperprior) -> None:
    data = codec.compress(_image(32, 40))
    with pytest.raises(DataError, match="too short"):
        codec.decompress(data[:10])
    with pytest.raises(DataError, match="not an ICM codec file"):
        codec.decompress(b"XX" + data[2:])
    flipped = bytearray(data)
    flipped[-3] ^= 0x40
    with pytest.raises(DataError, match="checksum"):
        codec.decompress(bytes(flipped))
    with pytest.raises(DataError, match="truncated"):
        codec.decompress(data[:-1])
    bad_version = data[:2] + struct.pack("<B", 9) + data[3:]
    with pytest.raises(DataError, match="version"):
        codec.decompress(bad_version)
    with pytest.raises(DataError, match="uint8 RGB"):
        codec.compress(np.zeros((16, 16, 3), np.float32))
    with pytest.raises(DataError, match="uint8 RGB"):
        codec.compress(np.zeros((16, 16), np.uint8))
    torch.manual_seed(5)
    other = MeanScaleHyperprior(CodecConfig(16, 16)).eval()
    with pytest.raises(DataError, match="update"):
        other.compress(_image(32, 32))
    other.update()
    with pytest.raises(DataError, match="another codec model"):
        other.decompress(data)
    with pytest.raises(DataError, match="multiples of 64"):
        codec(torch.rand(1, 3, 40, 64))
