"""PlayCanvas SOG ("splat optimized graphics", meta version 2), as splat-transform writes and
reads it (``writers/write-sog.ts`` / ``readers/read-sog.ts``, read 2026-12).

A SOG scene is ``meta.json`` plus lossless WebP images, either side by side in a folder (the
path given is the ``meta.json``) or bundled in one ZIP archive (``.sog``, entries stored).
Texel i of every image (row-major, width = ceil(sqrt(N) / 4) * 4, height = ceil(N / width / 4) * 4)
holds Gaussian i in Morton order:

- ``means_l.webp`` / ``means_u.webp``: low / high bytes of 16-bit unorms of
  ``sign(x) * ln(|x| + 1)`` per axis between ``means.mins`` and ``means.maxs``.
- ``quats.webp``: the unit quaternion (wxyz, largest component made positive) as three bytes
  ``round(255 * (c * sqrt(2) / 2 + 0.5))`` of the other components and alpha ``252 + index``
  of the largest.
- ``scales.webp``: per axis a byte indexing the 256-entry ``scales.codebook`` (log scales).
- ``sh0.webp``: per channel a byte indexing ``sh0.codebook`` (DC coefficients), alpha = byte
  of sigmoid(opacity).
- ``shN_labels.webp`` / ``shN_centroids.webp`` (SH degree >= 1): a 16-bit label (R low, G high)
  into a palette of ``shN.count`` k-means centroids of the [K-1, 3] SH vectors; centroid c's
  coefficient j sits at texel ((c % 64) * (K-1) + j, c // 64) of the centroid image, its RGB
  bytes indexing the 256-entry ``shN.codebook``.

Codebooks here come from a 1-D k-means (Lloyd iterations from quantile seeds); the SH palette
from a k-means on the CPU in torch (``iterations`` passes; palette size as splat-transform,
``min(64, 2^floor(log2(N / 1024))) * 1024``). Coordinates are the PLY frame, unchanged.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ...errors import DataError
from ...utils import atomic_write_bytes
from . import _finish, _prepare, _read_file, _wrap_errors, morton_order

__all__ = ["load_sog", "save_sog", "encode_sog_files", "kmeans", "quantize_1d"]

_SQRT2 = math.sqrt(2.0)


# --------------------------------------------------------------------------------------------
# Quantisers
# --------------------------------------------------------------------------------------------


def _dp_levels_py(pw: np.ndarray, pwx: np.ndarray, pwxx: np.ndarray, k: int) -> np.ndarray:
    """Optimal split of m weighted points (prefix sums pw, pwx, pwxx of length m + 1) into k
    contiguous groups minimising the weighted SSE; returns the k group means. O(k m^2)."""
    m = pw.shape[0] - 1
    inf = 1e300
    dp = np.empty(m)
    for j in range(m):
        sw = pw[j + 1]
        swx = pwx[j + 1]
        dp[j] = pwxx[j + 1] - swx * swx / sw if sw > 0 else 0.0
    splits = np.zeros((k, m), dtype=np.int64)
    new = np.empty(m)
    for g in range(1, k):
        for j in range(m):
            best = inf
            arg = g
            for i in range(g, j + 1):  # group g covers bins i..j
                sw = pw[j + 1] - pw[i]
                swx = pwx[j + 1] - pwx[i]
                c = dp[i - 1] + (pwxx[j + 1] - pwxx[i]) - (swx * swx / sw if sw > 0 else 0.0)
                if c < best:
                    best = c
                    arg = i
            new[j] = best
            splits[g, j] = arg
        dp[:] = new
    code = np.empty(k)
    end = m - 1
    for g in range(k - 1, -1, -1):
        start = splits[g, end] if g > 0 else 0
        sw = pw[end + 1] - pw[start]
        code[g] = (pwx[end + 1] - pwx[start]) / sw if sw > 0 else pwx[end + 1] - pwx[end]
        end = start - 1
    return code


try:  # numba is a splatlab dependency (CPU compositing); compile the O(k m^2) loop
    import numba

    _dp_levels = numba.njit(cache=True, nogil=True)(_dp_levels_py)
except ImportError:  # pragma: no cover
    _dp_levels = _dp_levels_py


def quantize_1d(
    values: np.ndarray, k: int = 256, alpha: float = 0.5, bins: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Codebook of ``k`` levels for all ``values`` (any shape), and each value's nearest level.

    As splat-transform's ``quantize1d``: the sorted values go into ``bins`` histogram bins
    placed by a blend of rank and value (more rank-based when outliers stretch the range), each
    bin weighted by count^alpha so sparse tails keep levels, and an exact dynamic programme
    splits the bins into k contiguous groups of least weighted squared error. Returns
    (codebook [k] float32 ascending, labels uint8 of ``values``' shape)."""
    if not 1 <= k <= 256:
        raise ValueError(f"k must be in 1..256, got {k}")
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    s = np.sort(flat)
    n = s.size
    lo, hi = s[0], s[-1]
    if hi - lo < 1e-20:
        code = np.full(k, lo, dtype=np.float32)
        return code, np.zeros(np.shape(values), dtype=np.uint8)
    h = min(bins, n)
    iqr = s[int(n * 0.75)] - s[int(n * 0.25)]
    beta = max(0.5, min(0.999, 1.0 - iqr / (hi - lo)))
    pos = beta * (np.arange(n) / n) + (1.0 - beta) * (s - lo) / (hi - lo)
    b = np.minimum(h - 1, np.floor(h * pos).astype(np.int64))
    cnt = np.bincount(b, minlength=h).astype(np.float64)
    tot = np.bincount(b, weights=s, minlength=h)
    keep = cnt > 0
    centers = tot[keep] / cnt[keep]
    w = cnt[keep] ** alpha
    m = centers.size
    if m <= k:
        code = np.concatenate([centers, np.full(k - m, centers[-1])])
    else:
        pw = np.concatenate([[0.0], np.cumsum(w)])
        pwx = np.concatenate([[0.0], np.cumsum(w * centers)])
        pwxx = np.concatenate([[0.0], np.cumsum(w * centers * centers)])
        code = _dp_levels(pw, pwx, pwxx, k)
        code = np.sort(code)
    code = code.astype(np.float32)
    c64 = code.astype(np.float64)
    mids = 0.5 * (c64[1:] + c64[:-1])
    lab = np.searchsorted(mids, flat)
    # searchsorted on midpoints picks the nearest level (ties to the lower one)
    return code, lab.astype(np.uint8).reshape(np.shape(values))


def kmeans(
    x: np.ndarray, k: int, iterations: int = 10, seed: int = 0, progress=None
) -> tuple[np.ndarray, np.ndarray]:
    """k-means of rows ``x`` [N, D] (float32 torch on the CPU, chunked distances).

    Seeds: k distinct random rows. Empty clusters keep their centroid. Returns (centroids
    [k, D] float32, labels [N] int64). ``progress(fraction)`` is called once per pass."""
    X = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    n, d = X.shape
    k = min(k, n)
    g = torch.Generator().manual_seed(seed)
    C = X[torch.randperm(n, generator=g)[:k]].clone()
    rows = max(1, min(2048, int(2**25 // max(k, 1))))  # <= 128 MB of distances per block

    def assign(C: Tensor) -> Tensor:
        cn = (C * C).sum(dim=1)
        out = torch.empty(n, dtype=torch.int64)
        for s in range(0, n, rows):
            # |c|^2 - 2 x.c (|x|^2 does not change the argmin)
            dist = torch.addmm(cn, X[s : s + rows], C.T, alpha=-2.0)
            out[s : s + rows] = dist.argmin(dim=1)
        return out

    labels = assign(C)
    for it in range(iterations):
        sums = torch.zeros_like(C).index_add_(0, labels, X)
        cnt = torch.bincount(labels, minlength=k).to(X.dtype)
        C = torch.where(cnt[:, None] > 0, sums / cnt.clamp_min(1)[:, None], C)
        labels = assign(C)
        if progress is not None:
            progress((it + 1) / max(iterations, 1))
    return C.numpy(), labels.numpy()


def _palette_size(n: int) -> int:
    return int(min(64.0, 2.0 ** math.floor(math.log2(n / 1024.0))) * 1024)


# --------------------------------------------------------------------------------------------
# WebP
# --------------------------------------------------------------------------------------------


def _webp(rgba: np.ndarray, width: int, height: int) -> bytes:
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(rgba.reshape(height, width, 4)), "RGBA")
    buf = io.BytesIO()
    # exact: keep RGB under alpha 0 (sh0's alpha is the opacity byte)
    img.save(buf, format="WEBP", lossless=True, quality=100, method=4, exact=True)
    return buf.getvalue()


def _unwebp(path: Path, name: str, data: bytes, min_texels: int) -> tuple[np.ndarray, int, int]:
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        if img.format != "WEBP":
            raise DataError(f"{path}: {name} is a {img.format} image, not WebP")
        img.load()
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: image {name} is not a readable WebP ({e})") from e
    w, h = img.size
    if w * h < min_texels:
        raise DataError(
            f"{path}: image {name} has {w}x{h} texels, fewer than the {min_texels} needed"
        )
    return np.asarray(img.convert("RGBA")).reshape(-1, 4), w, h


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def encode_sog_files(
    params: Mapping[str, Tensor],
    transform: np.ndarray | Tensor | None = None,
    iterations: int = 10,
    palette_size: int | None = None,
    seed: int = 0,
    drop_invalid: bool = False,
    progress=None,
    path: str | os.PathLike = "<sog>",
) -> dict[str, bytes]:
    """The files of a SOG scene: name -> bytes (``meta.json`` and the WebP images).

    Args:
        iterations: k-means passes for the SH palette (splat-transform's ``-i``, default 10).
        palette_size: number of SH centroids (None: splat-transform's rule; at most N, 65536).
        seed: seeds the k-means initialisation (the output is deterministic for a seed).
        progress: optional callable(fraction) for the k-means passes.
    """
    p = _prepare(Path(path), params, transform, drop_invalid)
    n = p["means"].shape[0]
    dim = p["shN"].shape[1]
    if dim not in (0, 3, 8, 15):
        raise ValueError(f"SOG stores SH degree 0..3, got {dim} coefficients per channel")
    order = morton_order(p["means"])
    p = {k: v[order] for k, v in p.items()}
    width = int(math.ceil(math.sqrt(n) / 4) * 4)
    height = int(math.ceil(n / width / 4) * 4)
    texels = width * height

    def image(cols: list[np.ndarray], alpha: np.ndarray | int = 255) -> bytes:
        buf = np.zeros((texels, 4), dtype=np.uint8)
        buf[:, 3] = 255
        for i, c in enumerate(cols):
            buf[:n, i] = c
        buf[:n, 3] = alpha
        return _webp(buf, width, height)

    files: dict[str, bytes] = {}
    # means: 16 bits of the log-transformed coordinates
    lt = np.sign(p["means"]) * np.log1p(np.abs(p["means"]))
    lo, hi = lt.min(axis=0).astype(np.float32), lt.max(axis=0).astype(np.float32)
    rng = np.where(hi > lo, hi.astype(np.float64) - lo, 1.0)
    u16 = np.clip(np.rint(65535.0 * (lt - lo) / rng), 0, 65535).astype(np.uint16)
    files["means_l.webp"] = image([(u16[:, i] & 0xFF).astype(np.uint8) for i in range(3)])
    files["means_u.webp"] = image([(u16[:, i] >> 8).astype(np.uint8) for i in range(3)])

    q = p["quats"]
    largest = np.argmax(np.abs(q), axis=1)
    q = q * np.where(q[np.arange(n), largest] < 0, -1.0, 1.0)[:, None]
    qb = np.clip(np.rint(255.0 * (q * _SQRT2 * 0.5 + 0.5)), 0, 255).astype(np.uint8)
    others = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]  # [N, 3]
    qcols = [np.take_along_axis(qb, others[:, i : i + 1], axis=1)[:, 0] for i in range(3)]
    files["quats.webp"] = image(qcols, (252 + largest).astype(np.uint8))

    s_code, s_lab = quantize_1d(p["scales"])
    files["scales.webp"] = image([s_lab[:, i] for i in range(3)])
    c_code, c_lab = quantize_1d(p["sh0"])
    alpha = 1.0 / (1.0 + np.exp(-p["opacities"]))
    a_b = np.clip(np.rint(alpha * 255.0), 0, 255).astype(np.uint8)
    files["sh0.webp"] = image([c_lab[:, i] for i in range(3)], a_b)

    meta: dict = {
        "version": 2,
        "asset": {"generator": "splatlab"},
        "count": n,
        "means": {
            "mins": lo.tolist(),
            "maxs": hi.tolist(),
            "files": ["means_l.webp", "means_u.webp"],
        },
        "scales": {"codebook": s_code.tolist(), "files": ["scales.webp"]},
        "quats": {"files": ["quats.webp"]},
        "sh0": {"codebook": c_code.tolist(), "files": ["sh0.webp"]},
    }
    if dim:
        bands = {3: 1, 8: 2, 15: 3}[dim]
        k = min(palette_size or _palette_size(n), n, 65536)
        # rows in f_rest (channel-major) order, as splat-transform clusters them
        rows = p["shN"].transpose(0, 2, 1).reshape(n, 3 * dim)
        cents, labels = kmeans(rows, k, iterations=iterations, seed=seed, progress=progress)
        k = cents.shape[0]
        sh_code, sh_lab = quantize_1d(cents)  # [k, 3*dim] bytes
        lab16 = labels.astype(np.uint16)
        files["shN_labels.webp"] = image(
            [(lab16 & 0xFF).astype(np.uint8), (lab16 >> 8).astype(np.uint8), np.zeros(n, np.uint8)]
        )
        ch = int(math.ceil(k / 64))
        cbuf = np.zeros((ch, 64, dim, 4), dtype=np.uint8)
        cbuf[..., 3] = 255
        lab3 = sh_lab.reshape(k, 3, dim).transpose(0, 2, 1)  # [k, dim, rgb]
        flat = cbuf.reshape(ch * 64, dim, 4)
        flat[:k, :, :3] = lab3
        files["shN_centroids.webp"] = _webp(cbuf.reshape(-1, 4), 64 * dim, ch)
        meta["shN"] = {
            "count": k,
            "bands": bands,
            "codebook": sh_code.tolist(),
            "files": ["shN_centroids.webp", "shN_labels.webp"],
        }
    files["meta.json"] = json.dumps(meta).encode("utf-8")
    return files


def save_sog(
    path: str | os.PathLike,
    params: Mapping[str, Tensor],
    transform: np.ndarray | Tensor | None = None,
    iterations: int = 10,
    palette_size: int | None = None,
    seed: int = 0,
    drop_invalid: bool = False,
    progress=None,
) -> Path:
    """Write a SOG scene: a ``.sog`` ZIP bundle, or, when ``path`` is named ``meta.json``, the
    folder form (images beside it, meta.json written last). Each file is written atomically.
    Other arguments as :func:`encode_sog_files`."""
    path = Path(path)
    files = encode_sog_files(
        params, transform, iterations, palette_size, seed, drop_invalid, progress, path
    )
    if path.name.lower() == "meta.json":
        for name, data in files.items():
            if name != "meta.json":
                atomic_write_bytes(path.parent / name, data)
        atomic_write_bytes(path, files["meta.json"])
        return path
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("meta.json", files["meta.json"])
        for name, data in files.items():
            if name != "meta.json":
                z.writestr(name, data)
    atomic_write_bytes(path, buf.getvalue())
    return path


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _decode(path: Path, read) -> dict[str, np.ndarray]:
    try:
        meta = json.loads(read("meta.json").decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: meta.json is not valid JSON ({e}); the file is corrupt") from e
    if not isinstance(meta, dict):
        raise DataError(f"{path}: meta.json is not a JSON object")
    version = meta.get("version")
    if version != 2:
        raise DataError(
            f"{path}: SOG meta version {version!r} is not supported (version 2 is; re-export with "
            "a current splat-transform)"
        )

    def need(obj, key, kind, where):
        if not isinstance(obj, dict) or key not in obj or not isinstance(obj[key], kind):
            raise DataError(f"{path}: meta.json lacks {where}.{key} ({kind.__name__})")
        return obj[key]

    n = need(meta, "count", int, "meta")
    if n <= 0:
        raise DataError(f"{path}: meta.json declares count {n}")

    def floats(obj, key, where, length=None) -> np.ndarray:
        v = need(obj, key, list, where)
        try:
            arr = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise DataError(f"{path}: {where}.{key} is not a list of numbers") from e
        if (
            arr.ndim != 1
            or (length is not None and arr.size != length)
            or not np.isfinite(arr).all()
        ):
            raise DataError(f"{path}: {where}.{key} must be {length or 'some'} finite numbers")
        return arr

    def files(section: str, count: int) -> list[str]:
        names = need(meta[section] if section in meta else None, "files", list, section)
        if len(names) != count or not all(isinstance(f, str) for f in names):
            raise DataError(f"{path}: {section}.files must list {count} file names")
        for f in names:
            if "/" in f or "\\" in f or f.startswith("."):
                raise DataError(f"{path}: {section}.files has an unsafe name {f!r}")
        return names

    def img(name: str, min_texels: int = n) -> np.ndarray:
        return _unwebp(path, name, read(name), min_texels)[0][:min_texels]

    means_m = need(meta, "means", dict, "meta")
    mins = floats(means_m, "mins", "means", 3)
    maxs = floats(means_m, "maxs", "means", 3)
    f_lo, f_hi = files("means", 2)
    lo_b, hi_b = img(f_lo).astype(np.uint32), img(f_hi).astype(np.uint32)
    u16 = (lo_b[:, :3] | (hi_b[:, :3] << 8)).astype(np.float64)
    rng = np.where(maxs - mins != 0, maxs - mins, 1.0)
    lt = mins + rng * (u16 / 65535.0)
    means = np.sign(lt) * np.expm1(np.abs(lt))

    (f_q,) = files("quats", 1)
    qb = img(f_q)
    tag = qb[:, 3].astype(np.int64)
    bad = np.flatnonzero((tag < 252) | (tag > 255))
    if bad.size:
        raise DataError(
            f"{path}: quaternion tag {int(tag[bad[0]])} of Gaussian {int(bad[0])} is not 252..255; the file is corrupt"
        )
    largest = tag - 252
    abc = (qb[:, :3].astype(np.float64) / 255.0 * 2.0 - 1.0) / _SQRT2
    quats = np.zeros((n, 4))
    others = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    np.put_along_axis(quats, others, abc, axis=1)
    m = np.sqrt(np.maximum(0.0, 1.0 - (abc**2).sum(axis=1)))
    quats[np.arange(n), largest] = m

    scales_m = need(meta, "scales", dict, "meta")
    s_code = floats(scales_m, "codebook", "scales", 256)
    (f_s,) = files("scales", 1)
    scales = s_code[img(f_s)[:, :3]]

    sh0_m = need(meta, "sh0", dict, "meta")
    c_code = floats(sh0_m, "codebook", "sh0", 256)
    (f_c,) = files("sh0", 1)
    cb = img(f_c)
    sh0 = c_code[cb[:, :3]]
    alpha = np.clip(cb[:, 3].astype(np.float64) / 255.0, 0.5 / 255.0, 254.5 / 255.0)
    opacities = np.log(alpha / (1.0 - alpha))

    if "shN" in meta:
        shm = need(meta, "shN", dict, "meta")
        bands = need(shm, "bands", int, "shN")
        count = need(shm, "count", int, "shN")
        if bands not in (1, 2, 3) or not 0 < count <= 65536:
            raise DataError(f"{path}: shN has bands {bands} / count {count} out of range")
        dim = (0, 3, 8, 15)[bands]
        sh_code = floats(shm, "codebook", "shN", 256)
        f_cent, f_lab = files("shN", 2)
        cent, cw, chh = _unwebp(path, f_cent, read(f_cent), 0)
        if cw != 64 * dim or cw * chh < count * dim:
            raise DataError(
                f"{path}: {f_cent} is {cw}x{chh}, expected width {64 * dim} for {count} centroids"
            )
        cent = cent.reshape(chh, 64, dim, 4).reshape(chh * 64, dim, 4)[:count, :, :3]
        lab_b = img(f_lab)
        labels = lab_b[:, 0].astype(np.int64) | (lab_b[:, 1].astype(np.int64) << 8)
        badl = np.flatnonzero(labels >= count)
        if badl.size:
            raise DataError(
                f"{path}: SH label {int(labels[badl[0]])} of Gaussian {int(badl[0])} exceeds the palette of {count}; the file is corrupt"
            )
        shN = sh_code[cent[labels]]  # [N, dim, rgb]
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


def load_sog(
    path: str | os.PathLike, transform: np.ndarray | Tensor | None = None
) -> torch.nn.ParameterDict:
    """Read a SOG scene (a ``.sog`` bundle, a ``meta.json`` or the folder holding it) into the
    ParameterDict of ``load_ply`` (in the file's Morton order); ``transform`` applied after."""
    path = Path(path)
    if path.is_dir():
        path = path / "meta.json"
    if path.name.lower() == "meta.json":
        folder = path.parent

        def read(name: str) -> bytes:
            return _read_file(folder / name, "SOG")

        if not path.is_file():
            raise DataError(f"SOG file {path} does not exist")
        arrays = _wrap_errors(path, "SOG", _decode, path, read)
        return _finish(path, arrays, transform)

    data = _read_file(path, "SOG")

    def run() -> dict[str, np.ndarray]:
        try:
            z = zipfile.ZipFile(io.BytesIO(data))
        except zipfile.BadZipFile as e:
            raise DataError(f"{path} is not a SOG bundle (not a ZIP archive: {e})") from e
        names = set(z.namelist())

        def read(name: str) -> bytes:
            if name not in names:
                raise DataError(f"{path}: the SOG bundle has no {name!r} (it has {sorted(names)})")
            try:
                return z.read(name)  # checks the entry's CRC-32
            except zipfile.BadZipFile as e:
                raise DataError(f"{path}: entry {name} of the SOG bundle is corrupt ({e})") from e

        return _decode(path, read)

    arrays = _wrap_errors(path, "SOG", run)
    return _finish(path, arrays, transform)
