"""PlayCanvas compressed PLY (``.compressed.ply``), as SuperSplat and splat-transform write it
(splat-transform ``writers/compressed-chunk.ts`` / ``readers/decompress-ply.ts``, read 2026-12).

A binary little-endian PLY with up to three elements:

- ``chunk`` (one per 256 Gaussians, float32): min/max x y z, min/max scale_x/y/z (log scales,
  clamped to [-20, 20]), and optionally min/max r g b of the DC colour ``0.5 + SH_C0 * f_dc``.
- ``vertex`` (uint32 x 4): ``packed_position`` and ``packed_scale`` as 11-10-11 bit unorms of
  the chunk range, ``packed_rotation`` as 2-10-10-10 (index of the largest component of the
  unit quaternion in wxyz order, made positive, then the other three as unorm(c / sqrt(2) + 0.5)),
  ``packed_color`` as 8-8-8-8 (colour in the chunk's range, then sigmoid(opacity)).
- ``sh`` (uchar, optional): ``f_rest_i`` channel-major as in the INRIA PLY, byte =
  trunc((v / 8 + 0.5) * 256) clamped to 0..255, decoded ``((b + 0.5) / 256 - 0.5) * 8`` (0 and
  255 decode to the ends, -4 and 4).

The writer sorts Gaussians in Morton order (as splat-transform), so the file's order is not the
input's. Coordinates are the PLY frame, unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ...errors import DataError
from ...rendering.sh import SH_C0
from ...utils import atomic_write
from . import _finish, _prepare, _read_file, _wrap_errors, morton_order

__all__ = ["load_compressed_ply", "save_compressed_ply", "CHUNK_SIZE"]

CHUNK_SIZE = 256
_CHUNK_PROPS = [
    "min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
    "min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z",
    "min_r", "min_g", "min_b", "max_r", "max_g", "max_b",
]  # fmt: skip
_VERTEX_PROPS = ["packed_position", "packed_rotation", "packed_scale", "packed_color"]
_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "<i2", "int16": "<i2",
    "ushort": "<u2", "uint16": "<u2", "int": "<i4", "int32": "<i4", "uint": "<u4",
    "uint32": "<u4", "float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8",
}  # fmt: skip
_SQRT1_2 = 0.7071067811865476


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _unorm(v: np.ndarray, bits: int) -> np.ndarray:
    t = (1 << bits) - 1
    return np.clip(np.floor(v * t + 0.5), 0, t).astype(np.uint32)


def _normalize(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """splat-transform's normalize(): 0 at/below min, 1 at/above max, 0 for a flat range."""
    rng = hi - lo
    t = np.where(rng < 1e-5, 0.0, (x - lo) / np.where(rng < 1e-5, 1.0, rng))
    return np.where(x <= lo, 0.0, np.where(x >= hi, 1.0, t))


def _pack_111011(v: np.ndarray) -> np.ndarray:
    return (_unorm(v[:, 0], 11) << 21) | (_unorm(v[:, 1], 10) << 11) | _unorm(v[:, 2], 11)


def save_compressed_ply(
    path: str | os.PathLike,
    params: Mapping[str, Tensor],
    transform: np.ndarray | Tensor | None = None,
    drop_invalid: bool = False,
) -> Path:
    """Write a PlayCanvas compressed PLY (atomically), Morton-sorted, SH degree <= 3.

    ``transform`` as in :func:`splatlab.scene.gaussians.save_ply`. Extras are not stored."""
    path = Path(path)
    p = _prepare(path, params, transform, drop_invalid)
    n = p["means"].shape[0]
    dim = p["shN"].shape[1]
    if dim not in (0, 3, 8, 15):
        raise ValueError(
            f"compressed PLY stores SH degree 0..3, got {dim} coefficients per channel"
        )
    order = morton_order(p["means"])
    p = {k: v[order] for k, v in p.items()}
    n_chunks = -(-n // CHUNK_SIZE)
    pad = n_chunks * CHUNK_SIZE - n

    def chunked(x: np.ndarray) -> np.ndarray:  # repeat the last Gaussian to fill the last chunk
        if pad:
            x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)], axis=0)
        return x.reshape(n_chunks, CHUNK_SIZE, *x.shape[1:])

    means = chunked(p["means"])
    scales = chunked(p["scales"])
    rgb = chunked(p["sh0"] * SH_C0 + 0.5)
    pmin, pmax = means.min(axis=1), means.max(axis=1)
    smin = np.clip(scales.min(axis=1), -20.0, 20.0)
    smax = np.clip(scales.max(axis=1), -20.0, 20.0)
    cmin, cmax = rgb.min(axis=1), rgb.max(axis=1)
    # float32 chunk bounds, and normalise against exactly those (as a float32 reader sees them)
    pmin, pmax, smin, smax, cmin, cmax = (
        a.astype(np.float32).astype(np.float64) for a in (pmin, pmax, smin, smax, cmin, cmax)
    )

    def norm(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return _normalize(x, lo[:, None], hi[:, None]).reshape(-1, 3)[:n]

    packed_position = _pack_111011(norm(means, pmin, pmax))
    packed_scale = _pack_111011(norm(scales, smin, smax))
    c = norm(rgb, cmin, cmax)
    alpha = 1.0 / (1.0 + np.exp(-p["opacities"]))
    packed_color = (
        (_unorm(c[:, 0], 8) << 24)
        | (_unorm(c[:, 1], 8) << 16)
        | (_unorm(c[:, 2], 8) << 8)
        | _unorm(alpha, 8)
    )
    q = p["quats"].copy()  # unit, wxyz (rot_0..3)
    largest = np.argmax(np.abs(q), axis=1)
    q *= np.where(q[np.arange(n), largest] < 0, -1.0, 1.0)[:, None]
    packed_rotation = largest.astype(np.uint32)
    for i in range(4):
        v = _unorm(q[:, i] * _SQRT1_2 + 0.5, 10)
        packed_rotation = np.where(largest != i, (packed_rotation << 10) | v, packed_rotation)

    chunk_data = np.concatenate([pmin, pmax, smin, smax, cmin, cmax], axis=1).astype("<f4")
    vertex = np.stack([packed_position, packed_rotation, packed_scale, packed_color], axis=1)
    header = [
        "ply",
        "format binary_little_endian 1.0",
        "comment Generated by splatlab",
        f"element chunk {n_chunks}",
        *[f"property float {name}" for name in _CHUNK_PROPS],
        f"element vertex {n}",
        *[f"property uint {name}" for name in _VERTEX_PROPS],
    ]
    sh_bytes = b""
    if dim:
        rest = p["shN"].transpose(0, 2, 1).reshape(n, 3 * dim)  # channel-major f_rest
        sh = np.clip(np.trunc((rest / 8.0 + 0.5) * 256.0), 0, 255).astype(np.uint8)
        header += [f"element sh {n}", *[f"property uchar f_rest_{i}" for i in range(3 * dim)]]
        sh_bytes = sh.tobytes()
    header.append("end_header\n")
    with atomic_write(path, "wb") as f:
        f.write("\n".join(header).encode("ascii"))
        f.write(chunk_data.tobytes())
        f.write(vertex.astype("<u4").tobytes())
        f.write(sh_bytes)
    return path


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _parse_header(path: Path, data: bytes) -> tuple[list[tuple[str, int, np.dtype]], int]:
    """Elements (name, count, structured dtype) and the byte offset of the body."""
    if not data.startswith(b"ply\n") and not data.startswith(b"ply\r\n"):
        raise DataError(f"{path} is not a PLY file (it does not start with 'ply')")
    end = data.find(b"end_header")
    if end < 0:
        raise DataError(f"{path}: PLY header has no end_header; the file is truncated or corrupt")
    body = data.index(b"\n", end) + 1 if b"\n" in data[end:] else len(data)
    lines = data[:end].decode("ascii", errors="replace").splitlines()
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    fmt = None
    for line in lines[1:]:
        parts = line.split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        if parts[0] == "format":
            fmt = parts[1] if len(parts) > 1 else None
        elif parts[0] == "element" and len(parts) == 3 and parts[2].isdigit():
            elements.append((parts[1], int(parts[2]), []))
        elif parts[0] == "property" and len(parts) == 3 and elements:
            if parts[1] not in _PLY_TYPES:
                raise DataError(f"{path}: PLY property type {parts[1]!r} is not supported here")
            elements[-1][2].append((parts[2], _PLY_TYPES[parts[1]]))
        else:
            raise DataError(f"{path}: unexpected PLY header line {line!r}")
    if fmt != "binary_little_endian":
        raise DataError(f"{path}: compressed PLY must be binary_little_endian, header says {fmt}")
    return [(name, count, np.dtype(props)) for name, count, props in elements], body


def _decode(path: Path, data: bytes) -> dict[str, np.ndarray]:
    elements, off = _parse_header(path, data)
    names = [e[0] for e in elements]
    if "chunk" not in names or "vertex" not in names:
        raise DataError(
            f"{path} has elements {names}, not the 'chunk' and 'vertex' of a compressed PLY"
            + (
                " (it looks like an uncompressed PLY: load it with load_ply)"
                if "vertex" in names
                else ""
            )
        )
    expected = off + sum(count * dt.itemsize for _, count, dt in elements)
    if len(data) != expected:
        raise DataError(
            f"{path}: the header declares {expected} bytes but the file has {len(data)}; it is "
            "truncated or corrupt"
        )
    arrays = {}
    for name, count, dt in elements:
        arrays[name] = np.frombuffer(data, dtype=dt, count=count, offset=off)
        off += count * dt.itemsize
    chunk, vertex = arrays["chunk"], arrays["vertex"]
    n = vertex.shape[0]
    if n == 0:
        raise DataError(f"{path}: the compressed PLY holds no Gaussians")
    if -(-n // CHUNK_SIZE) != chunk.shape[0]:
        raise DataError(
            f"{path}: {chunk.shape[0]} chunks for {n} Gaussians (expected {-(-n // CHUNK_SIZE)})"
        )
    for prop in _CHUNK_PROPS[:12]:
        if prop not in (chunk.dtype.names or ()) or chunk.dtype[prop] != np.dtype("<f4"):
            raise DataError(f"{path}: chunk element lacks the float property {prop!r}")
    for prop in _VERTEX_PROPS:
        if prop not in (vertex.dtype.names or ()) or vertex.dtype[prop] != np.dtype("<u4"):
            raise DataError(f"{path}: vertex element lacks the uint property {prop!r}")
    has_color = all(p in (chunk.dtype.names or ()) for p in _CHUNK_PROPS[12:])

    def col(name: str) -> np.ndarray:
        v = chunk[name].astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(v))
        if bad.size:
            raise DataError(
                f"{path}: chunk {int(bad[0])} has a non-finite {name}; the file is corrupt"
            )
        return np.repeat(v, CHUNK_SIZE)[:n]

    def unorm(v: np.ndarray, bits: int) -> np.ndarray:
        t = (1 << bits) - 1
        return (v & t).astype(np.float64) / t

    def lerp(a, b, t):
        return a * (1.0 - t) + b * t

    pp = vertex["packed_position"]
    ps = vertex["packed_scale"]
    means = np.stack(
        [
            lerp(col("min_x"), col("max_x"), unorm(pp >> 21, 11)),
            lerp(col("min_y"), col("max_y"), unorm(pp >> 11, 10)),
            lerp(col("min_z"), col("max_z"), unorm(pp, 11)),
        ],
        axis=1,
    )
    scales = np.stack(
        [
            lerp(col("min_scale_x"), col("max_scale_x"), unorm(ps >> 21, 11)),
            lerp(col("min_scale_y"), col("max_scale_y"), unorm(ps >> 11, 10)),
            lerp(col("min_scale_z"), col("max_scale_z"), unorm(ps, 11)),
        ],
        axis=1,
    )
    pr = vertex["packed_rotation"]
    abc = np.stack([unorm(pr >> 20, 10), unorm(pr >> 10, 10), unorm(pr, 10)], axis=1)
    abc = (abc - 0.5) / _SQRT1_2
    m = np.sqrt(np.maximum(0.0, 1.0 - (abc**2).sum(axis=1)))
    which = (pr >> 30).astype(np.int64)
    quats = np.empty((n, 4))
    for w in range(4):
        sel = which == w
        others = [i for i in range(4) if i != w]
        quats[np.ix_(sel, others)] = abc[sel]
        quats[sel, w] = m[sel]
    pc = vertex["packed_color"]
    c = np.stack([unorm(pc >> 24, 8), unorm(pc >> 16, 8), unorm(pc >> 8, 8)], axis=1)
    if has_color:
        c = np.stack(
            [lerp(col(f"min_{ch}"), col(f"max_{ch}"), c[:, i]) for i, ch in enumerate("rgb")],
            axis=1,
        )
    sh0 = (c - 0.5) / SH_C0
    alpha = np.clip(unorm(pc, 8), 0.5 / 255.0, 254.5 / 255.0)  # bytes 0/255: finite logits
    opacities = np.log(alpha / (1.0 - alpha))
    if "sh" in arrays:
        sh = arrays["sh"]
        if sh.shape[0] != n:
            raise DataError(f"{path}: sh element has {sh.shape[0]} rows for {n} Gaussians")
        k3 = len(sh.dtype.names or ())
        if k3 not in (9, 24, 45):
            raise DataError(f"{path}: sh element has {k3} properties (expected 9, 24 or 45)")
        cols = []
        for i in range(k3):
            name = f"f_rest_{i}"
            if name not in sh.dtype.names or sh.dtype[name] != np.dtype("u1"):
                raise DataError(f"{path}: sh element lacks the uchar property {name!r}")
            b = sh[name].astype(np.float64)
            v = np.where(b == 0, 0.0, np.where(b == 255, 1.0, (b + 0.5) / 256.0))
            cols.append((v - 0.5) * 8.0)
        shN = np.stack(cols, axis=1).reshape(n, 3, k3 // 3).transpose(0, 2, 1)
    else:
        shN = np.zeros((n, 0, 3))
    return {
        "means": means,
        "scales": scales,
        "quats": quats,
        "opacities": opacities,
        "sh0": sh0.reshape(n, 1, 3),
        "shN": shN,
    }


def load_compressed_ply(
    path: str | os.PathLike, transform: np.ndarray | Tensor | None = None
) -> torch.nn.ParameterDict:
    """Read a PlayCanvas / SuperSplat compressed PLY into the ParameterDict of ``load_ply``
    (in the file's, i.e. Morton, order). ``transform`` is applied after reading."""
    path = Path(path)
    data = _read_file(path, "compressed PLY")
    arrays = _wrap_errors(path, "compressed PLY", _decode, path, data)
    return _finish(path, arrays, transform)
