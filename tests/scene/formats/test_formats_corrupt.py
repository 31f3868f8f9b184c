"""Corrupt, truncated, bit-flipped and wrong-magic files of every format raise DataError naming
the file; never another exception, never NaN in a returned scene.

What a reader CAN detect depends on the format: SPZ v3 (gzip CRC-32), SPZ v4 (our writer adds
zstd frame checksums), SOG bundles (ZIP CRC-32 per entry) detect any flipped payload bit; the
compressed PLY and a SOG folder carry no checksum, so a flip inside their packed payload can
only be caught when it breaks the structure or yields non-finite values (tested), otherwise it
decodes to a slightly different valid scene."""

from __future__ import annotations

import io
import struct
import zipfile

import numpy as np
import pytest
import torch

from splatlab.errors import DataError
from splatlab.scene.formats import detect_format, load_scene_file, save_scene_file

N = 600


def scene(degree: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    k = (degree + 1) ** 2 - 1
    return {
        "means": torch.randn(N, 3, generator=g),
        "scales": torch.randn(N, 3, generator=g) * 0.3 - 4,
        "quats": torch.randn(N, 4, generator=g),
        "opacities": torch.randn(N, generator=g),
        "sh0": torch.randn(N, 1, 3, generator=g) * 0.5,
        "shN": torch.randn(N, k, 3, generator=g) * 0.1,
    }


FILES = {
    "spz4": ("s.spz", {"version": 4}),
    "spz3": ("s.spz", {"version": 3}),
    "compressed_ply": ("s.compressed.ply", {}),
    "sog": ("s.sog", {"iterations": 2}),
    "ply": ("s.ply", {}),
    "splat": ("s.splat", {}),
    "slsc": ("s.slsc", {"prune": 0.0}),
}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    d = tmp_path_factory.mktemp("good")
    return {
        k: save_scene_file(d / name, scene(), **opts).read_bytes()
        for k, (name, opts) in FILES.items()
    }


def expect_data_error(path, match=None):
    with pytest.raises(DataError) as e:
        load_scene_file(path)
    assert str(path) in str(e.value), f"message does not name the file: {e.value}"
    if match:
        assert match in str(e.value), str(e.value)
    return str(e.value)


@pytest.mark.parametrize("fmt", list(FILES))
@pytest.mark.parametrize("keep", [0, 10, 0.5, -1])
def test_truncated(tmp_path, written, fmt, keep):
    data = written[fmt]
    cut = {0: 0, 10: 10, 0.5: len(data) // 2, -1: len(data) - 1}[keep]
    if fmt == "splat" and cut % 32 == 0 and cut:
        cut -= 1
    path = tmp_path / FILES[fmt][0]
    path.write_bytes(data[:cut])
    expect_data_error(path)


@pytest.mark.parametrize("fmt", ["spz4", "spz3", "compressed_ply", "sog", "ply", "slsc"])
def test_wrong_magic(tmp_path, written, fmt):
    path = tmp_path / FILES[fmt][0]
    path.write_bytes(b"JUNK" + written[fmt][4:])
    expect_data_error(path)


@pytest.mark.parametrize("fmt", ["spz4", "spz3", "sog", "slsc"])
def test_payload_bit_flips_are_detected(tmp_path, written, fmt):
    """Formats with checksums: every one of 12 seeded single-bit flips in the payload fails."""
    data = written[fmt]
    rng = np.random.default_rng(0)
    start = {"spz4": 32 + 6 * 16, "spz3": 10, "sog": 0, "slsc": 0}[fmt]
    if fmt == "sog":  # flip inside an image entry's stored data (not the ZIP directory)
        z = zipfile.ZipFile(io.BytesIO(data))
        info = z.getinfo("scales.webp")
        start = info.header_offset + 30 + len(info.filename) + len(info.extra)
        stop = start + info.compress_size
    elif fmt == "slsc":  # anywhere: header (CRC-32) or the zstd streams (frame checksums)
        stop = len(data)
    else:
        stop = len(data) - 8
    path = tmp_path / FILES[fmt][0]
    for pos in rng.integers(start, stop, 12):
        b = bytearray(data)
        b[pos] ^= 1 << int(rng.integers(0, 8))
        path.write_bytes(bytes(b))
        expect_data_error(path)


def test_spz_header_count_mismatch(tmp_path, written):
    for fmt in ("spz4", "spz3"):
        data = written[fmt]
        path = tmp_path / f"{fmt}.spz"
        if fmt == "spz4":
            b = bytearray(data)
            b[8:12] = struct.pack("<I", N + 1)
        else:
            import gzip

            raw = bytearray(gzip.decompress(data))
            raw[8:12] = struct.pack("<I", N + 1)
            b = gzip.compress(bytes(raw))
        path.write_bytes(bytes(b))
        expect_data_error(path)


def test_compressed_ply_header_and_nan_chunks(tmp_path, written):
    data = written["compressed_ply"]
    path = tmp_path / "c.compressed.ply"
    path.write_bytes(data.replace(b"element vertex 600", b"element vertex 601"))
    expect_data_error(path, "truncated or corrupt")
    # a flipped exponent bit turning a chunk bound into NaN
    body = data.index(b"end_header\n") + len(b"end_header\n")
    b = bytearray(data)
    b[body : body + 4] = struct.pack("<f", float("nan"))
    path.write_bytes(bytes(b))
    expect_data_error(path, "non-finite")
    # an uncompressed PLY under a .compressed.ply name says what it is
    path.write_bytes(written["ply"])
    expect_data_error(path, "load_ply")


def test_sog_meta_corruption(tmp_path, written):
    z = zipfile.ZipFile(io.BytesIO(written["sog"]))
    entries = {n: z.read(n) for n in z.namelist()}

    def bundle(**changes):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as out:
            for n, d in {**entries, **changes}.items():
                if d is not None:
                    out.writestr(n, d)
        return buf.getvalue()

    path = tmp_path / "m.sog"
    import json

    meta = json.loads(entries["meta.json"])
    cases = {
        "not json": bundle(**{"meta.json": b"{not json"}),
        "no meta": bundle(**{"meta.json": None}),
        "missing image": bundle(**{"quats.webp": None}),
        "png not webp": bundle(**{"quats.webp": _png()}),
        "count too big": bundle(**{"meta.json": json.dumps({**meta, "count": N * 10}).encode()}),
        "short codebook": bundle(
            **{
                "meta.json": json.dumps(
                    {**meta, "scales": {**meta["scales"], "codebook": [0.0] * 10}}
                ).encode()
            }
        ),
        "version 3": bundle(**{"meta.json": json.dumps({**meta, "version": 3}).encode()}),
        "path escape": bundle(
            **{"meta.json": json.dumps({**meta, "quats": {"files": ["../x.webp"]}}).encode()}
        ),
    }
    for name, data in cases.items():
        path.write_bytes(data)
        msg = expect_data_error(path)
        assert msg, name


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGBA", (32, 32)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("fmt", list(FILES))
def test_random_bit_flips_never_crash(tmp_path, written, fmt):
    """Anywhere in the file: DataError, or a finite scene of the declared size."""
    data = written[fmt]
    rng = np.random.default_rng(1)
    path = tmp_path / FILES[fmt][0]
    for _ in range(10):
        b = bytearray(data)
        for pos in rng.integers(0, len(data), 3):
            b[pos] ^= 1 << int(rng.integers(0, 8))
        path.write_bytes(bytes(b))
        try:
            p = load_scene_file(path)
        except DataError as e:
            assert str(path) in str(e)
            continue
        for k, v in p.items():
            assert torch.isfinite(v).all(), k


def test_missing_and_unknown(tmp_path):
    expect_data_error(tmp_path / "nope.spz")
    expect_data_error(tmp_path / "nope.sog")
    expect_data_error(tmp_path / "nope.compressed.ply")
    with pytest.raises(DataError, match="unknown scene file type"):
        detect_format(tmp_path / "x.obj")
