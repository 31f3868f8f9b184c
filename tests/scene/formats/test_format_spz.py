"""SPZ (v3 gzip, v4 zstd): round trips within the format's quantisation steps, the exact RUB
conversion of positions / rotations / SH, and the header fields the spec defines."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from splatlab.errors import DataError
from splatlab.scene.formats.spz import SPZ_SH_FLIP, decode_spz, encode_spz, load_spz, save_spz
from splatlab.scene.gaussians import rotate_sh, transform_gaussians


def scene(n: int = 500, degree: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """Values inside SPZ's ranges (|sh0| < 3.3, shN in [-1, 1), log scales in [-10, 5.9])."""
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2 - 1
    return {
        "means": (torch.rand(n, 3, generator=g) - 0.5) * 20.0,
        "scales": torch.rand(n, 3, generator=g) * 8.0 - 7.0,
        "quats": torch.randn(n, 4, generator=g),
        "opacities": torch.randn(n, generator=g) * 2.0,
        "sh0": (torch.rand(n, 1, 3, generator=g) - 0.5) * 6.0,
        "shN": (torch.rand(n, k, 3, generator=g) - 0.5) * 1.8,
    }


def unit(q: torch.Tensor) -> torch.Tensor:
    q = q.detach().double()
    return q / q.norm(dim=1, keepdim=True)


def quat_err(a: torch.Tensor, b: torch.Tensor) -> float:
    qa, qb = unit(a), unit(b)
    s = torch.sign((qa * qb).sum(dim=1, keepdim=True))
    return float((qa * s - qb).abs().max())


@pytest.mark.parametrize("version", [3, 4])
def test_round_trip_within_quantisation_steps(tmp_path, version):
    p = scene()
    path = save_spz(tmp_path / "s.spz", p, version=version)
    d = load_spz(path)
    assert set(d.keys()) == {"means", "scales", "quats", "opacities", "sh0", "shN"}
    assert all(v.dtype == torch.float32 for v in d.values())
    assert d["shN"].shape == (500, 15, 3) and d["sh0"].shape == (500, 1, 3)
    err = {k: float((d[k].detach().double() - p[k].double()).abs().max()) for k in p}
    # positions: 24-bit fixed point with 12 fractional bits -> half a step of 2^-12
    assert err["means"] <= 2.0**-13 + 1e-6
    # log scales: steps of 1/16
    assert err["scales"] <= 1.0 / 32 + 1e-6
    # colour byte = f_dc * 0.15 * 255 + 127.5 -> half a step of 1 / (0.15 * 255)
    assert err["sh0"] <= 0.5 / (0.15 * 255) + 1e-6
    # SH: round to 1/128 then to buckets of 8 (degree 1, 5 bits) or 16 (4 bits) levels
    e1 = (d["shN"][:, :3] - p["shN"][:, :3]).abs().max()
    e2 = (d["shN"][:, 3:] - p["shN"][:, 3:]).abs().max()
    assert e1 <= 4.5 / 128 + 1e-6 and e2 <= 8.5 / 128 + 1e-6
    # opacity: alpha byte, half a step of 1/255 in sigmoid space
    a_err = (torch.sigmoid(d["opacities"]) - torch.sigmoid(p["opacities"])).abs().max()
    assert a_err <= 0.5 / 255 + 1e-6
    # rotations: smallest three with 9-bit magnitudes of |c| / sqrt(1/2)
    assert quat_err(d["quats"], p["quats"]) <= 2e-3


def test_header_and_streams_follow_the_spec(tmp_path):
    p = scene(n=300, degree=2)
    v4 = encode_spz(p, version=4)
    magic, version, n, degree, frac, flags, streams, toc = struct.unpack_from("<IIIBBBBI", v4)
    assert (magic, version, n, degree, frac, flags, streams, toc) == (
        0x5053474E,
        4,
        300,
        2,
        12,
        0,
        6,
        32,
    )
    raw = [struct.unpack_from("<QQ", v4, 32 + 16 * i)[1] for i in range(6)]
    assert raw == [300 * 9, 300, 300 * 3, 300 * 3, 300 * 4, 300 * 8 * 3]
    v3 = gzip.decompress(encode_spz(p, version=3))
    assert struct.unpack_from("<IIIBBBB", v3) == (0x5053474E, 3, 300, 2, 12, 0, 0)
    assert len(v3) == 16 + sum(raw)
    # alpha stream (after the positions) holds round(sigmoid * 255)
    alpha = np.frombuffer(v3, np.uint8, count=300, offset=16 + 300 * 9)
    expect = np.rint(torch.sigmoid(p["opacities"].double()).numpy() * 255)
    assert np.array_equal(alpha, expect.astype(np.uint8))


def test_rub_conversion_is_a_turn_about_x():
    """The spec stores RUB; flipping y and z is a proper rotation (180 degrees about x), and the
    SH sign table is exactly rotate_sh with that rotation."""
    sh = torch.randn(7, 15, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    R = np.diag([1.0, -1.0, -1.0])
    flipped = sh * torch.from_numpy(SPZ_SH_FLIP[:15])[None, :, None]
    assert torch.allclose(rotate_sh(sh, R), flipped, atol=1e-10)
    # on disk, the first position's y and z have the opposite sign of ours
    p = scene(n=4, degree=0)
    data = gzip.decompress(encode_spz(p, version=3))
    b = np.frombuffer(data, np.uint8, count=9, offset=16).astype(np.int64).reshape(3, 3)
    fixed = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
    fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed) / 4096.0
    m = p["means"][0].double().numpy()
    assert np.allclose(fixed, [m[0], -m[1], -m[2]], atol=2.0**-12)


def test_large_scenes_lower_the_fractional_bits():
    p = scene(n=50, degree=0)
    p["means"] = p["means"] * 500.0  # up to 5000 > 2048
    data = encode_spz(p, version=4)
    assert data[13] == 10  # 2^23 / 2^10 = 8192 > 5000
    d = decode_spz(data)
    assert np.abs(d["means"] - p["means"].double().numpy()).max() <= 2.0**-11 + 1e-3


def test_degree_zero_and_four(tmp_path):
    for degree in (0, 4):
        p = scene(n=64, degree=degree)
        d = load_spz(save_spz(tmp_path / f"d{degree}.spz", p))
        assert d["shN"].shape == (64, (degree + 1) ** 2 - 1, 3)


def test_transform_is_undone_on_write_and_applied_on_read(tmp_path):
    p = scene(n=200, degree=3)
    c, s = np.cos(0.4), np.sin(0.4)
    T = np.array(
        [[0.5 * c, -0.5 * s, 0, 1.0], [0.5 * s, 0.5 * c, 0, -2.0], [0, 0, 0.5, 0.5], [0, 0, 0, 1]]
    )
    path = save_spz(tmp_path / "t.spz", p, transform=T)
    raw = load_spz(path)
    back = load_spz(path, transform=T)
    ref = transform_gaussians(raw, T)
    for k in ref:
        assert torch.allclose(back[k], ref[k], atol=1e-5)
    # the file is in original coordinates: x_orig = T^-1 x_norm
    inv = np.linalg.inv(T)
    orig = p["means"].double().numpy() @ inv[:3, :3].T + inv[:3, 3]
    assert np.abs(raw["means"].detach().double().numpy() - orig).max() <= 2.0**-13 + 1e-5


def test_writer_rejects_bad_options(tmp_path):
    with pytest.raises(ValueError, match="version"):
        encode_spz(scene(n=8), version=2)
    with pytest.raises(ValueError, match="sh1_bits"):
        encode_spz(scene(n=8), sh1_bits=0)
    bad = scene(n=8)
    bad["means"][3, 1] = float("nan")
    with pytest.raises(DataError, match="non-finite"):
        save_spz(tmp_path / "nan.spz", bad)
    assert not (tmp_path / "nan.spz").exists()
