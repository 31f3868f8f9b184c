"""Niantic SPZ (``.spz``), versions 2-3 (one gzip stream) and 4 (zstd streams), as specified by
nianticlabs/spz ``src/cc/load-spz.cc`` (read 2026-12).

Layout (little endian). v2/v3: gzip of ``header(16) | positions | alphas | colors | scales |
rotations | sh``, header = magic ``NGSP`` (0x5053474e), u32 version, u32 numPoints, u8 shDegree,
u8 fractionalBits, u8 flags (0x1 antialiased, 0x2 extensions), u8 reserved. v4: a plain 32-byte
header (the same first 15 bytes, then u8 numStreams, u32 tocByteOffset, 12 reserved), optional
extensions up to the TOC, the TOC (per stream u64 compressed size, u64 uncompressed size), then
one zstd frame per non-empty attribute stream in the order above; the frames end the file.

Per Gaussian:
- position: 3 x signed 24-bit fixed point, value = int / 2^fractionalBits (12 in the reference
  writer: 0.24 mm steps, |x| < 2048); we lower the fractional bits only when the scene needs it.
- alpha: u8 = round(sigmoid(opacity) * 255).
- color: u8 = round(f_dc * 0.15 * 255 + 127.5) (the DC coefficient, not SH_C0 colour).
- scale: u8 = round((log_scale + 10) * 16), i.e. log scales in [-10, 5.94] with 1/16 steps.
- rotation: v3+ "smallest three" in a u32: 2 bits index (xyzw order) of the largest |component|,
  then for the other three (from x to w, first in the high bits) a sign bit and a 9-bit
  magnitude of |c| / sqrt(1/2); the largest is made positive. v2: three u8 of x y z.
- sh: u8 per coefficient, coefficient-major with RGB inner ([N, K-1, 3] as we store it),
  q = round(x * 128) + 128 snapped to buckets of 2^(8 - bits) (5 bits for degree 1, 4 for the
  rest in the reference writer); decoded (q - 128) / 128.

Coordinates: the spec's on-disk frame is RUB (three.js: x right, y up, z back); PLY files and
splatlab are RDF (x right, y down, z forward). As the reference ``ply_to_spz`` and
splat-transform 2.x (``from: RDF`` / ``to: RDF``), we flip y and z on write and read: positions
(x, -y, -z), quaternion xyz components (x, -y, -z) and the SH coefficients by the reference's
``flipSh`` sign table (a 180 degree turn about x, so colours stay exact). Note: splat-transform
3.x dropped this flip (it stores PLY-frame values as they are), so SPZ files it writes load here
turned 180 degrees about x; files from 2.x, Niantic's tools and ours agree.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ...errors import DataError
from ...utils import atomic_write_bytes
from . import _finish, _prepare, _read_file, _wrap_errors

__all__ = ["load_spz", "save_spz", "encode_spz", "decode_spz", "SPZ_SH_FLIP"]

MAGIC = 0x5053474E  # "NGSP"
COLOR_SCALE = 0.15
_SQRT1_2 = 0.7071067811865476
_FLAG_ANTIALIASED = 0x1
_FLAG_EXTENSIONS = 0x2
_DIM_FOR_DEGREE = (0, 3, 8, 15, 24)

# Sign of each SH coefficient (bands 1..4, 24 entries) under RDF <-> RUB (flip y and z):
# reference coordinateConverter with x = 1, y = -1, z = -1.
_x, _y, _z = 1.0, -1.0, -1.0
SPZ_SH_FLIP = np.array(
    [_y, _z, _x, _x * _y, _y * _z, 1.0, _x * _z, 1.0, _y, _x * _y * _z, _y, _z, _x, _z, _x]
    + [_x * _y, _y * _z, _x * _y, _y * _z, 1.0, _x * _z, 1.0, _x * _z, _y],
    dtype=np.float64,
)
_POS_FLIP = np.array([1.0, -1.0, -1.0])


def _degree_from_dim(dim: int) -> int:
    if dim not in _DIM_FOR_DEGREE:
        raise ValueError(f"SPZ stores SH degree 0..4; got {dim} higher coefficients per channel")
    return _DIM_FOR_DEGREE.index(dim)


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def _quantize_sh(x: np.ndarray, bits: int) -> np.ndarray:
    bucket = 1 << (8 - bits)
    q = np.rint(x * 128.0).astype(np.int64) + 128
    q = (q + bucket // 2) // bucket * bucket
    return np.clip(q, 0, 255).astype(np.uint8)


def _pack_smallest_three(q_xyzw: np.ndarray) -> np.ndarray:
    """[N, 4] unit xyzw quaternions -> [N] uint32 (reference packQuaternionSmallestThree)."""
    a = np.abs(q_xyzw)
    largest = np.argmax(a, axis=1)  # first maximum, as the reference's strict '>' loop
    n = q_xyzw.shape[0]
    negate = q_xyzw[np.arange(n), largest] < 0
    comp = largest.astype(np.uint64)
    for i in range(4):
        take = largest != i
        negbit = ((q_xyzw[:, i] < 0) ^ negate).astype(np.uint64)
        mag = np.floor(511.0 * (a[:, i] / _SQRT1_2) + 0.5).astype(np.uint64)
        mag = np.minimum(mag, 511)  # |c| <= sqrt(1/2) up to rounding
        comp = np.where(take, (comp << np.uint64(10)) | (negbit << np.uint64(9)) | mag, comp)
    return (comp & np.uint64(0xFFFFFFFF)).astype("<u4")


def encode_spz(
    params: Mapping[str, Tensor],
    version: int = 4,
    sh1_bits: int = 5,
    sh_rest_bits: int = 4,
    transform: np.ndarray | Tensor | None = None,
    drop_invalid: bool = False,
    antialiased: bool = False,
    path: str | os.PathLike = "<spz>",
) -> bytes:
    """The ``.spz`` bytes of a scene (see the module docstring for the layout).

    Args:
        version: 3 (gzip, read by every SPZ loader) or 4 (zstd streams, the current default).
        sh1_bits, sh_rest_bits: SH precision (1..8 bits) of degree 1 and of degrees 2..4.
        transform: [4, 4] normalised <- original; its inverse is applied first.
        antialiased: set the header's antialiased flag (scenes trained with mip/antialiasing).
    """
    if version not in (3, 4):
        raise ValueError(f"SPZ version must be 3 or 4, got {version}")
    for name, bits in (("sh1_bits", sh1_bits), ("sh_rest_bits", sh_rest_bits)):
        if not 1 <= bits <= 8:
            raise ValueError(f"{name} must be in 1..8, got {bits}")
    p = _prepare(Path(path), params, transform, drop_invalid)
    n = p["means"].shape[0]
    dim = p["shN"].shape[1]
    degree = _degree_from_dim(dim)

    # positions: 24-bit fixed point; 12 fractional bits unless the scene is larger than 2048
    extent = float(np.abs(p["means"]).max())
    frac = 12
    while frac > 0 and extent * (1 << frac) > (1 << 23) - 1:
        frac -= 1
    if extent * (1 << frac) > (1 << 23) - 1:
        raise DataError(f"cannot write {path}: positions up to {extent:.3g} overflow SPZ's 24 bits")
    fixed = np.rint(p["means"] * _POS_FLIP * (1 << frac)).astype(np.int64)
    fixed &= 0xFFFFFF
    positions = np.stack([fixed & 0xFF, (fixed >> 8) & 0xFF, (fixed >> 16) & 0xFF], axis=-1)
    positions = positions.astype(np.uint8).reshape(n, 9)

    sig = 1.0 / (1.0 + np.exp(-p["opacities"]))
    alphas = np.clip(np.rint(sig * 255.0), 0, 255).astype(np.uint8)
    colors = np.clip(np.rint(p["sh0"] * (COLOR_SCALE * 255.0) + 127.5), 0, 255).astype(np.uint8)
    scales = np.clip(np.rint((p["scales"] + 10.0) * 16.0), 0, 255).astype(np.uint8)
    q = p["quats"][:, [1, 2, 3, 0]] * np.array([1.0, -1.0, -1.0, 1.0])  # wxyz -> xyzw, flipped
    rotations = _pack_smallest_three(q).view(np.uint8).reshape(n, 4)
    if dim:
        sh = p["shN"] * SPZ_SH_FLIP[:dim, None]
        bits = np.full(dim, sh_rest_bits)
        bits[: min(3, dim)] = sh1_bits
        sh_q = np.empty((n, dim, 3), dtype=np.uint8)
        for b in np.unique(bits):
            sel = bits == b
            sh_q[:, sel] = _quantize_sh(sh[:, sel], int(b))
        sh_bytes = sh_q.reshape(n, dim * 3)
    else:
        sh_bytes = np.zeros((n, 0), dtype=np.uint8)

    streams = [positions, alphas, colors, scales, rotations, sh_bytes]
    flags = _FLAG_ANTIALIASED if antialiased else 0
    if version == 3:
        header = struct.pack("<IIIBBBB", MAGIC, 3, n, degree, frac, flags, 0)
        body = header + b"".join(s.tobytes() for s in streams)
        return gzip.compress(body, compresslevel=6, mtime=0)

    import zstandard

    cctx = zstandard.ZstdCompressor(level=12, write_checksum=True)
    chunks = [(cctx.compress(s.tobytes()), s.nbytes) for s in streams if s.nbytes]
    toc_offset = 32
    header = struct.pack("<IIIBBBBI12x", MAGIC, 4, n, degree, frac, flags, len(chunks), toc_offset)
    toc = b"".join(struct.pack("<QQ", len(c), u) for c, u in chunks)
    return header + toc + b"".join(c for c, _ in chunks)


def save_spz(
    path: str | os.PathLike,
    params: Mapping[str, Tensor],
    transform: np.ndarray | Tensor | None = None,
    version: int = 4,
    sh1_bits: int = 5,
    sh_rest_bits: int = 4,
    drop_invalid: bool = False,
    antialiased: bool = False,
) -> Path:
    """Write ``params`` as ``.spz`` (atomically); arguments as :func:`encode_spz`."""
    path = Path(path)
    data = encode_spz(
        params, version, sh1_bits, sh_rest_bits, transform, drop_invalid, antialiased, path
    )
    atomic_write_bytes(path, data)
    return path


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def _unpack_smallest_three(packed: np.ndarray) -> np.ndarray:
    """[N] uint32 -> [N, 4] xyzw (reference unpackQuaternionSmallestThree)."""
    comp = packed.astype(np.uint64)
    largest = (comp >> np.uint64(30)).astype(np.int64)
    out = np.zeros((packed.shape[0], 4), dtype=np.float64)
    sum_sq = np.zeros(packed.shape[0])
    for i in (3, 2, 1, 0):
        take = largest != i
        mag = (comp & np.uint64(511)).astype(np.float64)
        neg = ((comp >> np.uint64(9)) & np.uint64(1)).astype(bool)
        v = _SQRT1_2 * mag / 511.0
        v = np.where(neg, -v, v)
        out[:, i] = np.where(take, v, 0.0)
        sum_sq += np.where(take, v * v, 0.0)
        comp = np.where(take, comp >> np.uint64(10), comp)
    out[np.arange(packed.shape[0]), largest] = np.sqrt(np.maximum(0.0, 1.0 - sum_sq))
    return out


def _parse(path: Path, data: bytes) -> dict[str, np.ndarray]:
    if len(data) >= 2 and data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise DataError(
                f"{path}: the gzip stream of this SPZ (v2/v3) file is corrupt or truncated ({e})"
            ) from e
        legacy = True
    else:
        legacy = False
    if len(data) < 16:
        raise DataError(f"{path} is too short ({len(data)} bytes) to be an SPZ file")
    magic, version, n, degree, frac, flags = struct.unpack_from("<IIIBBB", data, 0)
    if magic != MAGIC:
        raise DataError(
            f"{path} is not an SPZ file (no NGSP magic; starts with {data[:4]!r}); "
            "check the file type"
        )
    if legacy and version not in (2, 3) or not legacy and version != 4:
        kind = "a gzip stream" if legacy else "a plain (zstd) container"
        raise DataError(
            f"{path}: SPZ version {version} in {kind} is not supported "
            "(v2/v3 are gzip streams, v4 zstd streams; v1 float16 files are not read)"
        )
    if degree > 4:
        raise DataError(f"{path}: SPZ SH degree {degree} is out of range 0..4")
    if frac > 23:
        raise DataError(f"{path}: SPZ fractional bits {frac} out of range 0..23")
    if n == 0:
        raise DataError(f"{path}: the SPZ header declares 0 Gaussians")
    if flags & _FLAG_EXTENSIONS:
        raise DataError(
            f"{path} uses SPZ extensions (header flag 0x2), which may change how data is packed "
            "and are not supported; re-export it without extensions"
        )
    dim = _DIM_FOR_DEGREE[degree]
    rot_bytes = 3 if version == 2 else 4
    sizes = [n * 9, n, n * 3, n * 3, n * rot_bytes, n * dim * 3]
    if legacy:
        expected = 16 + sum(sizes)
        if len(data) != expected:
            raise DataError(
                f"{path}: the SPZ header declares {n} Gaussians of SH degree {degree} "
                f"({expected} bytes) but the stream holds {len(data)} bytes; the file is "
                "truncated or corrupt"
            )
        raw, off = [], 16
        for s in sizes:
            raw.append(np.frombuffer(data, dtype=np.uint8, count=s, offset=off))
            off += s
    else:
        if len(data) < 32:
            raise DataError(f"{path} is too short ({len(data)} bytes) for an SPZ v4 header")
        num_streams, toc = struct.unpack_from("<BI", data, 15)
        present = [s for s in sizes if s]
        if num_streams != len(present) or toc < 32 or toc + 16 * num_streams > len(data):
            raise DataError(
                f"{path}: SPZ v4 table of contents is inconsistent ({num_streams} streams at "
                f"offset {toc}, expected {len(present)}); the file is truncated or corrupt"
            )
        import zstandard

        dctx = zstandard.ZstdDecompressor()
        off = toc + 16 * num_streams
        decoded = []
        for i, expect in enumerate(present):
            csize, usize = struct.unpack_from("<QQ", data, toc + 16 * i)
            if usize != expect or csize > len(data) - off:
                raise DataError(
                    f"{path}: SPZ v4 stream {i} declares {csize} compressed / {usize} raw bytes "
                    f"(expected {expect} raw, {len(data) - off} left); the file is truncated or corrupt"
                )
            try:
                buf = dctx.decompress(data[off : off + csize], max_output_size=expect)
            except zstandard.ZstdError as e:
                raise DataError(f"{path}: SPZ v4 stream {i} is corrupt ({e})") from e
            if len(buf) != expect:
                raise DataError(
                    f"{path}: SPZ v4 stream {i} decodes to {len(buf)} bytes, not {expect}"
                )
            decoded.append(np.frombuffer(buf, dtype=np.uint8))
            off += csize
        if off != len(data):
            raise DataError(
                f"{path}: {len(data) - off} unexpected bytes after the last SPZ v4 stream; "
                "the file is corrupt"
            )
        it = iter(decoded)
        raw = [next(it) if s else np.zeros(0, np.uint8) for s in sizes]

    pos_b, alpha_b, color_b, scale_b, rot_b, sh_b = raw
    pb = pos_b.reshape(n, 3, 3).astype(np.int64)
    fixed = pb[..., 0] | (pb[..., 1] << 8) | (pb[..., 2] << 16)
    fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
    means = fixed.astype(np.float64) / (1 << frac) * _POS_FLIP
    scales = scale_b.reshape(n, 3).astype(np.float64) / 16.0 - 10.0
    if version == 2:
        xyz = rot_b.reshape(n, 3).astype(np.float64) / 127.5 - 1.0
        w = np.sqrt(np.maximum(0.0, 1.0 - (xyz**2).sum(axis=1)))
        q_xyzw = np.concatenate([xyz, w[:, None]], axis=1)
    else:
        q_xyzw = _unpack_smallest_three(rot_b.view("<u4"))
    quats = q_xyzw[:, [3, 0, 1, 2]] * np.array([1.0, 1.0, -1.0, -1.0])
    # alpha bytes 0 / 255 would give infinite logits: clamp half a step inside, as load_splat
    alpha = np.clip(alpha_b.astype(np.float64) / 255.0, 0.5 / 255.0, 254.5 / 255.0)
    opacities = np.log(alpha / (1.0 - alpha))
    sh0 = ((color_b.reshape(n, 3).astype(np.float64) / 255.0) - 0.5) / COLOR_SCALE
    shN = (sh_b.reshape(n, dim, 3).astype(np.float64) - 128.0) / 128.0 * SPZ_SH_FLIP[:dim, None]
    return {
        "means": means,
        "scales": scales,
        "quats": quats,
        "opacities": opacities,
        "sh0": sh0.reshape(n, 1, 3),
        "shN": shN,
        "antialiased": np.array(bool(flags & _FLAG_ANTIALIASED)),
        "version": np.array(version),
    }


def decode_spz(data: bytes, path: str | os.PathLike = "<spz>") -> dict[str, np.ndarray]:
    """Decode ``.spz`` bytes into float64 numpy arrays (means, scales, quats wxyz, opacities,
    sh0 [N,1,3], shN [N,K-1,3], plus ``antialiased`` and ``version``). DataError if corrupt."""
    path = Path(path)
    return _wrap_errors(path, "SPZ", _parse, path, data)


def load_spz(
    path: str | os.PathLike, transform: np.ndarray | Tensor | None = None
) -> torch.nn.ParameterDict:
    """Read a ``.spz`` file (v2, v3 or v4) into the Gaussian ParameterDict of ``load_ply``.

    Decoded values sit on the format's grid (see the module docstring); ``transform``
    (normalised <- original) is applied after reading."""
    path = Path(path)
    arrays = decode_spz(_read_file(path, "SPZ"), path)
    return _finish(path, arrays, transform)
