"""splatlab's own scene format ``.slsc``: prune, vector-quantise SH, Morton-sort, quantise and
entropy-code a Gaussian scene, with one ``quality`` knob. A format like the others (``splatlab
export --format slsc``, ``view`` / ``render`` / ``eval`` read it); the ``scene codec`` plugin
(:mod:`splatlab.plugins.compress.scene_codec`) measures it.

Pipeline (each step from the literature, measured in ``benchmarks/scene_formats.py``):

1. Pruning by global significance (LightGaussian, Fan et al. 2023): the score of Gaussian i is
   ``sum over views and pixels of alpha_i T_i``, its total blending weight. We get it exactly as
   the gradient of the summed render of a one-channel scene whose colours are all 1 (d C / d c_i
   = alpha_i T_i per pixel). Without cameras the score is ``sigmoid(o) * prod(exp(s))^(1/3)``
   (opacity times the geometric-mean size). The lowest ``prune`` fraction goes.
2. Optional SH degree reduction (drop the highest bands).
3. Vector quantisation of the higher SH ([K-1, 3] vectors) by k-means on the CPU
   (``splatlab.scene.formats.sog.kmeans``), the codebook stored as int8 per column.
4. Positions quantised to ``pos_bits`` per axis over the bounding box, sorted along the 3-D Morton
   curve of those integer coordinates; the sorted Morton codes are delta coded (small numbers),
   which stores the positions AND gives every other attribute a locality order.
5. Per-attribute uniform quantisation: log scales and DC colour per axis over their range,
   opacity as a byte of sigmoid, rotations as "smallest three" components.
6. Entropy coding: each stream is split into byte planes and compressed with zstd (level 19).

Bitstream: ``b"SLSC"``, u8 version, u32 header length, a UTF-8 JSON header (counts, bits,
ranges, stream sizes), its u32 CRC-32, then the zstd streams (with frame checksums) in header
order, so any flipped bit is detected. :func:`decode_scene` rebuilds the
scene from the bytes alone (in any process), and the plugin reports PSNR of exactly that decode.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ...errors import DataError
from ...utils import atomic_write_bytes
from .sog import kmeans

__all__ = [
    "QUALITY_PRESETS",
    "CodecSettings",
    "significance",
    "encode_scene",
    "decode_scene",
    "load_slsc",
    "save_slsc",
]

def no_progress(fraction: float, message: str = "") -> None:
    """The default ``progress``: ignore."""


MAGIC = b"SLSC"
VERSION = 1
_SQRT1_2 = 0.7071067811865476


@dataclass(frozen=True)
class CodecSettings:
    """One rate point of the codec."""

    prune: float
    """Fraction of the Gaussians (lowest significance) to remove."""
    sh_codebook: int
    """Number of k-means centroids for the higher SH vectors (at most N / 8)."""
    pos_bits: int
    """Bits per axis of the quantised positions (over the bounding box)."""
    scale_bits: int
    """Bits of each log scale (over its range)."""
    rot_bits: int
    """Bits of each of the three smallest quaternion components."""
    color_bits: int
    """Bits of each DC colour coefficient (over its range)."""


#: quality 1 (smallest) .. 5 (best)
QUALITY_PRESETS: dict[int, CodecSettings] = {
    # tuned on the demo scene (benchmarks/scene_formats.py): pruning beyond ~20% costs more
    # PSNR than coarser quantisation on a compact scene
    1: CodecSettings(prune=0.3, sh_codebook=256, pos_bits=12, scale_bits=5, rot_bits=6, color_bits=5),
    2: CodecSettings(prune=0.2, sh_codebook=256, pos_bits=13, scale_bits=6, rot_bits=6, color_bits=6),
    3: CodecSettings(prune=0.1, sh_codebook=512, pos_bits=14, scale_bits=6, rot_bits=7, color_bits=6),
    4: CodecSettings(prune=0.1, sh_codebook=1024, pos_bits=15, scale_bits=7, rot_bits=8, color_bits=7),
    5: CodecSettings(prune=0.0, sh_codebook=2048, pos_bits=16, scale_bits=8, rot_bits=9, color_bits=8),
}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Significance (LightGaussian global significance)
# --------------------------------------------------------------------------------------------


def significance(
    params: Mapping[str, Tensor],
    cameras: list[tuple[np.ndarray, np.ndarray, int, int]] | None = None,
    progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """Per-Gaussian importance [N] (float64).

    With ``cameras`` (list of (viewmat [4, 4], K [3, 3], width, height)): the sum over views and
    pixels of each Gaussian's blending weight alpha_i T_i, obtained as the gradient of the
    summed one-channel render with all colours 1. Without: sigmoid(opacity) times the geometric
    mean of the scales (LightGaussian's volume-based fallback)."""
    op = torch.sigmoid(params["opacities"].detach().double()).cpu()
    if not cameras:
        vol = torch.exp(params["scales"].detach().double().cpu().mean(dim=1))
        return (op * vol).numpy()
    from ...rendering.rasterize import rasterize

    means = params["means"].detach().float().cpu()
    quats = params["quats"].detach().float().cpu()
    scales = torch.exp(params["scales"].detach().float().cpu())
    ops = op.float()
    score = torch.zeros(means.shape[0], dtype=torch.float64)
    for i, (vm, K, w, h) in enumerate(cameras):
        ones = torch.ones(means.shape[0], 1, requires_grad=True)
        img, _, _ = rasterize(
            means, quats, scales, ops, ones,
            torch.as_tensor(vm, dtype=torch.float32)[None],
            torch.as_tensor(K, dtype=torch.float32)[None], int(w), int(h),
        )  # fmt: skip
        img.sum().backward()
        score += ones.grad[:, 0].double()
        if progress is not None:
            progress((i + 1) / len(cameras))
    return score.numpy()


# --------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------


def _planes(a: np.ndarray) -> bytes:
    """Little-endian integers [N, ...] -> byte planes (all low bytes, then the next ...)."""
    a = np.ascontiguousarray(a)
    b = a.reshape(a.shape[0], -1).view(np.uint8).reshape(a.shape[0], -1, a.dtype.itemsize)
    return np.ascontiguousarray(b.transpose(2, 1, 0)).tobytes()


def _unplanes(data: bytes, n: int, cols: int, dtype: str) -> np.ndarray:
    dt = np.dtype(dtype)
    if len(data) != n * cols * dt.itemsize:
        raise DataError(f"a stream holds {len(data)} bytes, expected {n * cols * dt.itemsize}")
    b = np.frombuffer(data, np.uint8).reshape(dt.itemsize, cols, n).transpose(2, 1, 0)
    return np.ascontiguousarray(b).view(dt).reshape(n, cols)


def _part1by2(x: np.ndarray) -> np.ndarray:
    """Spread the low 21 bits of x (uint64) to every third bit."""
    x = x & np.uint64(0x1FFFFF)
    for shift, mask in ((32, 0x1F00000000FFFF), (16, 0x1F0000FF0000FF), (8, 0x100F00F00F00F00F),
                        (4, 0x10C30C30C30C30C3), (2, 0x1249249249249249)):  # fmt: skip
        x = (x | (x << np.uint64(shift))) & np.uint64(mask)
    return x


def _compact1by2(x: np.ndarray) -> np.ndarray:
    x = x & np.uint64(0x1249249249249249)
    for shift, mask in ((2, 0x10C30C30C30C30C3), (4, 0x100F00F00F00F00F), (8, 0x1F0000FF0000FF),
                        (16, 0x1F00000000FFFF), (32, 0x1FFFFF)):  # fmt: skip
        x = (x | (x >> np.uint64(shift))) & np.uint64(mask)
    return x


def _uq(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, bits: int) -> np.ndarray:
    levels = (1 << bits) - 1
    rng = np.where(hi > lo, hi - lo, 1.0)
    return np.clip(np.rint((x - lo) / rng * levels), 0, levels).astype(np.uint32)


def _dq(q: np.ndarray, lo: np.ndarray, hi: np.ndarray, bits: int) -> np.ndarray:
    levels = (1 << bits) - 1
    return lo + q.astype(np.float64) / levels * (hi - lo)


# --------------------------------------------------------------------------------------------
# Encoder / decoder
# --------------------------------------------------------------------------------------------


def encode_scene(
    params: Mapping[str, Tensor],
    quality: int = 3,
    *,
    prune: float | None = None,
    sh_degree: int | None = None,
    cameras: list[tuple[np.ndarray, np.ndarray, int, int]] | None = None,
    scores: np.ndarray | None = None,
    kmeans_iterations: int = 10,
    seed: int = 0,
    progress: Callable[[float, str], None] = no_progress,
) -> bytes:
    """Compress a scene to the ``.slsc`` bitstream.

    Args:
        params: the Gaussians (means [N, 3], scales [N, 3] log, quats [N, 4] wxyz, opacities
            [N] logit, sh0 [N, 1, 3], shN [N, K-1, 3]); extras are not stored.
        quality: 1..5, a preset of :data:`QUALITY_PRESETS`.
        prune: override the preset's pruned fraction (0 keeps every Gaussian).
        sh_degree: keep SH bands up to this degree (None: all stored).
        cameras: views (viewmat, K, width, height) for the significance score (the training
            views); None: the volume x opacity fallback.
        scores: precomputed significance [N] of ``params`` (overrides ``cameras``).
        kmeans_iterations, seed: the SH k-means.
        progress: ``progress(fraction, message)``; may raise Cancelled.
    """
    import zstandard

    if quality not in QUALITY_PRESETS:
        raise ValueError(f"quality must be one of {sorted(QUALITY_PRESETS)}, got {quality}")
    st = QUALITY_PRESETS[quality]
    prune = st.prune if prune is None else float(prune)
    if not 0.0 <= prune < 1.0:
        raise ValueError(f"prune must be in [0, 1), got {prune}")
    p = {
        k: params[k].detach().cpu().double()
        for k in ("means", "scales", "quats", "opacities", "sh0", "shN")
    }
    n0 = p["means"].shape[0]
    if n0 == 0:
        raise DataError("cannot encode an empty scene")
    finite = torch.ones(n0, dtype=torch.bool)
    for v in p.values():
        finite &= torch.isfinite(v.reshape(n0, -1)).all(dim=1)
    p = {k: v[finite] for k, v in p.items()}
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if scores.shape[0] != n0:
            raise ValueError(f"scores has {scores.shape[0]} entries for {n0} Gaussians")
        scores = scores[finite.numpy()]
    k_rest = p["shN"].shape[1]
    degree = math.isqrt(k_rest + 1) - 1
    if sh_degree is not None and sh_degree < degree:
        degree = max(0, int(sh_degree))
        k_rest = (degree + 1) ** 2 - 1
        p["shN"] = p["shN"][:, :k_rest]

    progress(0.0, "significance")
    if prune > 0:
        score = scores if scores is not None else significance(
            p, cameras, lambda f: progress(0.4 * f, "significance"))
        keep = np.argsort(-score, kind="stable")[: max(1, int(round(len(score) * (1 - prune))))]
        keep = torch.from_numpy(np.sort(keep))
        p = {k: v[keep] for k, v in p.items()}
    n = p["means"].shape[0]
    np_ = {k: v.numpy() for k, v in p.items()}

    # positions -> Morton codes of the quantised coordinates, sorted and delta coded
    lo = np_["means"].min(axis=0)
    hi = np_["means"].max(axis=0)
    q = _uq(np_["means"], lo, hi, st.pos_bits).astype(np.uint64)
    code = (
        _part1by2(q[:, 0])
        | (_part1by2(q[:, 1]) << np.uint64(1))
        | (_part1by2(q[:, 2]) << np.uint64(2))
    )
    order = np.argsort(code, kind="stable")
    code = code[order]
    delta = np.diff(code, prepend=np.uint64(0))
    np_ = {k: v[order] for k, v in np_.items()}

    streams: dict[str, tuple[bytes, str, int]] = {}  # name -> (raw bytes, dtype, columns)
    nbytes = (3 * st.pos_bits + 7) // 8
    dplanes = delta.astype("<u8").view(np.uint8).reshape(n, 8)[:, :nbytes]
    streams["positions"] = (np.ascontiguousarray(dplanes.T).tobytes(), "u1", nbytes)

    slo, shi = np_["scales"].min(axis=0), np_["scales"].max(axis=0)
    streams["scales"] = (
        _planes(_uq(np_["scales"], slo, shi, st.scale_bits).astype("<u2")),
        "<u2",
        3,
    )
    c0 = np_["sh0"].reshape(n, 3)
    clo, chi = c0.min(axis=0), c0.max(axis=0)
    streams["sh0"] = (_planes(_uq(c0, clo, chi, st.color_bits).astype("<u2")), "<u2", 3)
    alpha = 1.0 / (1.0 + np.exp(-np_["opacities"]))
    streams["opacities"] = (
        np.clip(np.rint(alpha * 255), 0, 255).astype(np.uint8).tobytes(),
        "u1",
        1,
    )

    quat = np_["quats"] / np.linalg.norm(np_["quats"], axis=1, keepdims=True)
    largest = np.argmax(np.abs(quat), axis=1)
    quat = quat * np.where(quat[np.arange(n), largest] < 0, -1.0, 1.0)[:, None]
    others = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    small = np.take_along_axis(quat, others, axis=1)  # in [-1/sqrt2, 1/sqrt2]
    rq = _uq(small, np.full(3, -_SQRT1_2), np.full(3, _SQRT1_2), st.rot_bits)
    streams["rot_index"] = (largest.astype(np.uint8).tobytes(), "u1", 1)
    streams["rotations"] = (_planes(rq.astype("<u2")), "<u2", 3)

    header: dict[str, Any] = {
        "n": int(n),
        "sh_degree": int(degree),
        "bits": {
            "pos": st.pos_bits,
            "scale": st.scale_bits,
            "rot": st.rot_bits,
            "color": st.color_bits,
        },
        "means": {"lo": lo.tolist(), "hi": hi.tolist()},
        "scales": {"lo": slo.tolist(), "hi": shi.tolist()},
        "sh0": {"lo": clo.tolist(), "hi": chi.tolist()},
        "quality": int(quality),
        "prune": prune,
    }
    if k_rest:
        progress(0.45, "SH k-means")
        rows = np_["shN"].reshape(n, k_rest * 3).astype(np.float32)
        # the codebook costs k x 3(K-1) bytes: keep it to about one byte per Gaussian and SH row
        k = max(1, min(st.sh_codebook, n // 8))
        cents, labels = kmeans(
            rows, k, iterations=kmeans_iterations, seed=seed,
            progress=lambda f: progress(0.45 + 0.5 * f, "SH k-means"),
        )  # fmt: skip
        k = cents.shape[0]
        scale = np.abs(cents).max(axis=0).astype(np.float64) / 127.0
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        cq = np.clip(np.rint(cents / scale), -127, 127).astype(np.int8)
        streams["sh_codebook"] = (np.ascontiguousarray(cq.T).tobytes(), "i1", k_rest * 3)
        lab_dtype = "u1" if k <= 256 else "<u2"
        streams["sh_labels"] = (_planes(labels.astype(lab_dtype)[:, None]), lab_dtype, 1)
        header["shN"] = {"k": int(k), "scale": scale.astype(np.float64).tolist()}

    progress(0.95, "entropy coding")
    cctx = zstandard.ZstdCompressor(level=19, write_checksum=True)
    chunks, table = [], []
    for name, (raw, dtype, cols) in streams.items():
        c = cctx.compress(raw)
        chunks.append(c)
        table.append({"name": name, "dtype": dtype, "cols": cols, "raw": len(raw), "size": len(c)})
    header["streams"] = table
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    progress(1.0, "done")
    crc = struct.pack("<I", zlib.crc32(hjson))
    return MAGIC + struct.pack("<BI", VERSION, len(hjson)) + hjson + crc + b"".join(chunks)


def decode_scene(data: bytes, name: str = "<slsc bitstream>") -> torch.nn.ParameterDict:
    """Rebuild the Gaussians from ``.slsc`` bytes (float32 ParameterDict, the layout of
    ``splatlab.scene.gaussians.load_ply``, Gaussians in the codec's Morton order). DataError
    naming ``name`` for anything that is not a complete, intact bitstream."""
    try:
        return _decode(data)
    except DataError as e:
        raise DataError(f"{name}: {e}") from e
    except Exception as e:  # corrupt JSON / zstd / shapes
        raise DataError(
            f"{name} is not a readable splatlab scene bitstream ({type(e).__name__}: {e})"
        ) from e


def _decode(data: bytes) -> torch.nn.ParameterDict:
    import zstandard

    from ...scene.gaussians import _to_param_dict

    if len(data) < 9 or data[:4] != MAGIC:
        raise DataError("not a splatlab scene bitstream (no SLSC magic)")
    version, hlen = struct.unpack_from("<BI", data, 4)
    if version != VERSION:
        raise DataError(
            f"bitstream version {version} is not supported (this decoder reads {VERSION})"
        )
    if 13 + hlen > len(data):
        raise DataError("the header runs past the end of the data (truncated)")
    hjson = data[9 : 9 + hlen]
    if struct.unpack_from("<I", data, 9 + hlen)[0] != zlib.crc32(hjson):
        raise DataError("the header's CRC-32 does not match (corrupt bitstream)")
    header = json.loads(hjson.decode("utf-8"))
    n = int(header["n"])
    bits = header["bits"]
    off = 13 + hlen
    dctx = zstandard.ZstdDecompressor()
    streams: dict[str, np.ndarray] = {}
    total = off + sum(int(s["size"]) for s in header["streams"])
    if total != len(data):
        raise DataError(
            f"the header declares {total} bytes, the data has {len(data)} (truncated or padded)"
        )
    for s in header["streams"]:
        raw = dctx.decompress(data[off : off + int(s["size"])], max_output_size=int(s["raw"]))
        off += int(s["size"])
        if len(raw) != int(s["raw"]):
            raise DataError(f"stream {s['name']} decodes to {len(raw)} bytes, not {s['raw']}")
        streams[s["name"]] = raw

    nbytes = (3 * bits["pos"] + 7) // 8
    dp = np.frombuffer(streams["positions"], np.uint8).reshape(nbytes, n).T
    full = np.zeros((n, 8), np.uint8)
    full[:, :nbytes] = dp
    delta = full.view("<u8")[:, 0]
    code = np.cumsum(delta, dtype=np.uint64)
    q = np.stack([_compact1by2(code >> np.uint64(a)) for a in range(3)], axis=1)
    mlo, mhi = np.asarray(header["means"]["lo"]), np.asarray(header["means"]["hi"])
    means = _dq(q, mlo, mhi, bits["pos"])
    scales = _dq(_unplanes(streams["scales"], n, 3, "<u2"), np.asarray(header["scales"]["lo"]),
                 np.asarray(header["scales"]["hi"]), bits["scale"])  # fmt: skip
    sh0 = _dq(_unplanes(streams["sh0"], n, 3, "<u2"), np.asarray(header["sh0"]["lo"]),
              np.asarray(header["sh0"]["hi"]), bits["color"])  # fmt: skip
    a_b = np.frombuffer(streams["opacities"], np.uint8).astype(np.float64)
    if a_b.size != n:
        raise DataError("opacity stream has the wrong length")
    alpha = np.clip(a_b / 255.0, 0.5 / 255.0, 254.5 / 255.0)
    opac = np.log(alpha / (1.0 - alpha))
    largest = np.frombuffer(streams["rot_index"], np.uint8).astype(np.int64)
    if largest.size != n or (largest > 3).any():
        raise DataError("rotation index stream is corrupt")
    small = _dq(_unplanes(streams["rotations"], n, 3, "<u2"), np.full(3, -_SQRT1_2),
                np.full(3, _SQRT1_2), bits["rot"])  # fmt: skip
    quats = np.zeros((n, 4))
    others = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    np.put_along_axis(quats, others, small, axis=1)
    quats[np.arange(n), largest] = np.sqrt(np.maximum(0.0, 1.0 - (small**2).sum(axis=1)))
    degree = int(header["sh_degree"])
    k_rest = (degree + 1) ** 2 - 1
    if k_rest:
        k = int(header["shN"]["k"])
        scale = np.asarray(header["shN"]["scale"], np.float32)
        cq = np.frombuffer(streams["sh_codebook"], np.int8).reshape(k_rest * 3, k).T
        cents = cq.astype(np.float32) * scale
        lab_dtype = next(s["dtype"] for s in header["streams"] if s["name"] == "sh_labels")
        labels = _unplanes(streams["sh_labels"], n, 1, lab_dtype)[:, 0].astype(np.int64)
        if (labels >= k).any():
            raise DataError("an SH label exceeds the codebook")
        shN = cents[labels].reshape(n, k_rest, 3)
    else:
        shN = np.zeros((n, 0, 3), np.float32)
    f32 = np.float32
    tensors = {
        "means": torch.from_numpy(means.astype(f32)),
        "scales": torch.from_numpy(scales.astype(f32)),
        "quats": torch.from_numpy(quats.astype(f32)),
        "opacities": torch.from_numpy(opac.astype(f32)),
        "sh0": torch.from_numpy(sh0.astype(f32).reshape(n, 1, 3)),
        "shN": torch.from_numpy(np.ascontiguousarray(shN, dtype=f32)),
    }
    for k, v in tensors.items():
        if not torch.isfinite(v).all():
            raise DataError(f"decoded {k} is not finite (corrupt bitstream)")
    return _to_param_dict(tensors, requires_grad=False)


def load_slsc(path: str | os.PathLike, transform: np.ndarray | Tensor | None = None) -> torch.nn.ParameterDict:
    """Read a ``.slsc`` file (DataError naming it when corrupt); ``transform`` (normalised <-
    original) is applied after decoding, as for the other formats."""
    from . import _read_file

    path = Path(path)
    params = decode_scene(_read_file(path, "slsc"), name=str(path))
    if transform is not None:
        from ..gaussians import transform_gaussians

        params = transform_gaussians(params, transform)
    return params


def save_slsc(
    path: str | os.PathLike,
    params: Mapping[str, Tensor],
    transform: np.ndarray | Tensor | None = None,
    quality: int = 3,
    drop_invalid: bool = False,
    **options: Any,
) -> Path:
    """Write ``params`` as ``.slsc`` (atomically) in ORIGINAL coordinates (the inverse of
    ``transform`` applied first); ``options`` as :func:`encode_scene` (prune, sh_degree,
    cameras, kmeans_iterations, seed, progress)."""
    from ..gaussians import _prepare_export

    path = Path(path)
    cameras = options.pop("cameras", None)
    if cameras and "scores" not in options:
        # significance where the cameras live (the normalised frame), before the inverse transform
        options["scores"] = significance(params, cameras)
    p = _prepare_export(path, params, transform, drop_invalid)
    if options.get("scores") is not None and len(options["scores"]) != p["means"].shape[0]:
        options.pop("scores")  # drop_invalid removed rows: fall back to volume x opacity
    data = encode_scene(p, quality, **options)
    atomic_write_bytes(path, data)
    return path
