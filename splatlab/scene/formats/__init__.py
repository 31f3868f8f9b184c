"""Scene file formats beyond the INRIA PLY: SPZ, PlayCanvas compressed PLY, SOG and our own
``.slsc`` (:mod:`.slsc`), plus one
dispatch for every format splatlab reads and writes.

Every reader returns the same Gaussian layout as :func:`splatlab.scene.gaussians.load_ply` (a
``torch.nn.ParameterDict`` of float32 tensors)::

    means: Tensor      # [N, 3]       centres
    scales: Tensor     # [N, 3]       log standard deviations
    quats: Tensor      # [N, 4]       wxyz rotations
    opacities: Tensor  # [N]          logit opacities
    sh0: Tensor        # [N, 1, 3]    DC SH coefficient
    shN: Tensor        # [N, K-1, 3]  higher SH coefficients

and every writer takes it. As for PLY, ``transform`` is the Dataset's 4x4 similarity
(normalised <- original): writers apply its inverse (files hold ORIGINAL coordinates), readers
apply it after decoding. Writers are atomic (a temporary file renamed into place). Files are in
the PLY (INRIA, x right / y down / z forward) frame as splat-transform keeps them; SPZ stores the
spec's RUB frame on disk, and :mod:`.spz` converts exactly (see there).

Formats (name -> suffixes) are listed in :data:`FORMATS`. Use::

    from splatlab.scene.formats import load_scene_file, save_scene_file, detect_format
    params = load_scene_file("scene.spz", transform=None)
    save_scene_file("scene.sog", params)                  # format from the suffix
    save_scene_file("out.bin", params, format="spz", version=3)

Corrupt, truncated or foreign files raise :class:`splatlab.errors.DataError` naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ...errors import DataError

__all__ = [
    "FORMATS",
    "detect_format",
    "load_scene_file",
    "save_scene_file",
    "morton_order",
]

#: format name -> file suffixes (lower case; the first one is what writers default to)
FORMATS: dict[str, tuple[str, ...]] = {
    "ply": (".ply",),
    "splat": (".splat",),
    "spz": (".spz",),
    "compressed_ply": (".compressed.ply",),
    "sog": (".sog", "meta.json"),
    "slsc": (".slsc",),
}


# --------------------------------------------------------------------------------------------
# Helpers shared by the format modules (defined before any submodule is imported)
# --------------------------------------------------------------------------------------------


def _read_file(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise DataError(f"{what} file {path} does not exist")
    return path.read_bytes()


def _check_finite(path: Path, name: str, values: np.ndarray) -> None:
    flat = values.reshape(values.shape[0], -1) if values.ndim > 1 else values[:, None]
    bad = np.flatnonzero(~np.isfinite(flat).all(axis=1))
    if bad.size:
        raise DataError(
            f"{path}: decoded {name} of Gaussian {int(bad[0])} is not finite "
            f"({bad.size} bad rows); the file is corrupt"
        )


def _finish(path: Path, arrays: Mapping[str, np.ndarray], transform) -> torch.nn.ParameterDict:
    """float32 ParameterDict (as load_ply returns) from decoded numpy arrays, after NaN checks
    and the optional normalising transform."""
    from ..gaussians import _to_param_dict, transform_gaussians

    tensors: dict[str, Tensor] = {}
    for key in ("means", "scales", "quats", "opacities", "sh0", "shN"):
        value = np.ascontiguousarray(arrays[key], dtype=np.float32)
        _check_finite(path, key, value)
        tensors[key] = torch.from_numpy(value)
    q = tensors["quats"]
    zero = torch.nonzero(~(q.abs() > 0).any(dim=1)).flatten()
    if zero.numel():
        raise DataError(f"{path}: rotation of Gaussian {int(zero[0])} is all zero")
    params = _to_param_dict(tensors)
    if transform is not None:
        params = transform_gaussians(params, transform)
    return params


def _prepare(path: Path, params: Mapping[str, Tensor], transform, drop_invalid: bool) -> dict:
    """Validated float64 numpy copies of the scene in file coordinates (inverse transform
    applied), with unit quaternions. Keys: means scales quats opacities sh0 [N,3] shN [N,K,3]."""
    from ..gaussians import _prepare_export

    p = _prepare_export(path, params, transform, drop_invalid)
    out = {k: p[k].to(torch.float64).numpy() for k in ("means", "scales", "quats", "opacities")}
    out["sh0"] = p["sh0"].to(torch.float64).reshape(-1, 3).numpy()
    out["shN"] = p["shN"].to(torch.float64).numpy()
    norm = np.linalg.norm(out["quats"], axis=1, keepdims=True)
    if not (norm > 0).all():
        bad = int(np.flatnonzero(~(norm[:, 0] > 0))[0])
        raise DataError(f"cannot write {path}: quaternion of Gaussian {bad} is zero")
    out["quats"] = out["quats"] / norm
    if out["means"].shape[0] == 0:
        raise DataError(f"cannot write {path}: the scene has no Gaussians")
    return out


def morton_order(means: np.ndarray) -> np.ndarray:
    """Indices [N] sorting points [N, 3] along a 3-D Z-order curve of 10 bits per axis over
    their bounding box (splat-transform's ``sortMortonOrder`` at its top level); stable."""
    means = np.asarray(means, dtype=np.float64)
    lo, hi = means.min(axis=0), means.max(axis=0)
    ext = hi - lo
    mul = np.where(ext > 0, 1024.0 / np.where(ext > 0, ext, 1.0), 0.0)
    q = np.clip(((means - lo) * mul).astype(np.int64), 0, 1023)

    def part1by2(x: np.ndarray) -> np.ndarray:
        x = x & 0x3FF
        x = (x ^ (x << 16)) & 0xFF0000FF
        x = (x ^ (x << 8)) & 0x0300F00F
        x = (x ^ (x << 4)) & 0x030C30C3
        x = (x ^ (x << 2)) & 0x09249249
        return x

    code = (part1by2(q[:, 2]) << 2) + (part1by2(q[:, 1]) << 1) + part1by2(q[:, 0])
    return np.argsort(code, kind="stable")


def _wrap_errors(path: Path, fmt: str, fn, *args, **kwargs):
    """Run a decoder; any exception that is not already a DataError becomes one naming the
    file (zlib/zstd/zip/WebP/JSON errors, short buffers)."""
    try:
        return fn(*args, **kwargs)
    except DataError:
        raise
    except Exception as e:  # the decoders' libraries raise many types for corrupt input
        raise DataError(
            f"{path} is not a readable {fmt} file ({type(e).__name__}: {e}); "
            "re-export it or check that the download is complete"
        ) from e


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------


def detect_format(path: str | os.PathLike) -> str:
    """Format name (a key of :data:`FORMATS`) of ``path``: from its suffix, and for existing
    files from the first bytes (a ``.ply`` with a ``chunk`` element is a compressed PLY; a
    folder holding ``meta.json`` is SOG). Raises DataError for an unknown suffix."""
    path = Path(path)
    name = path.name.lower()
    if path.is_dir():
        if (path / "meta.json").is_file():
            return "sog"
        raise DataError(f"{path} is a folder without meta.json; it is not a SOG scene")
    if name.endswith(".compressed.ply"):
        return "compressed_ply"
    if name.endswith(".ply"):
        if path.is_file():
            with open(path, "rb") as f:
                head = f.read(4096)
            end = head.find(b"end_header")
            if b"\nelement chunk " in (head[:end] if end >= 0 else head):
                return "compressed_ply"
        return "ply"
    for fmt, suffixes in FORMATS.items():
        if any(name.endswith(s) for s in suffixes):
            return fmt
    known = sorted({s for v in FORMATS.values() for s in v})
    raise DataError(f"{path}: unknown scene file type; expected one of {known}")


def load_scene_file(
    path: str | os.PathLike, transform: np.ndarray | Tensor | None = None, format: str | None = None
) -> torch.nn.ParameterDict:
    """Read a scene file of any format in :data:`FORMATS` (``format`` None: detected).

    Returns the Gaussian ParameterDict of :func:`splatlab.scene.gaussians.load_ply`;
    ``transform`` (normalised <- original) is applied after decoding."""
    path = Path(path)
    fmt = format or detect_format(path)
    if fmt == "ply":
        from ..gaussians import load_ply

        return load_ply(path, transform=transform)
    if fmt == "splat":
        from ..gaussians import load_splat

        return load_splat(path, transform=transform)
    if fmt == "spz":
        from .spz import load_spz

        return load_spz(path, transform=transform)
    if fmt == "compressed_ply":
        from .compressed_ply import load_compressed_ply

        return load_compressed_ply(path, transform=transform)
    if fmt == "sog":
        from .sog import load_sog

        return load_sog(path, transform=transform)
    if fmt == "slsc":
        from .slsc import load_slsc

        return load_slsc(path, transform=transform)
    raise ValueError(f"unknown scene format {fmt!r}; expected one of {list(FORMATS)}")


def save_scene_file(
    path: str | os.PathLike,
    params: Mapping[str, Tensor],
    format: str | None = None,
    transform: np.ndarray | Tensor | None = None,
    **options: Any,
) -> Path:
    """Write ``params`` in ``format`` (None: from the suffix of ``path``), atomically.

    ``options`` go to the format's writer: spz ``version`` (3 gzip | 4 zstd), ``sh1_bits``,
    ``sh_rest_bits``; sog ``iterations``, ``palette_size``, ``seed``; slsc ``quality``,
    ``prune``, ``sh_degree``, ``cameras`` (significance views); all ``drop_invalid``.
    Returns the path written (for SOG in folder form, the meta.json)."""
    path = Path(path)
    if format is None:
        name = path.name.lower()
        if name.endswith(".compressed.ply"):
            format = "compressed_ply"
        else:
            format = next(
                (f for f, sfx in FORMATS.items() if any(name.endswith(s) for s in sfx)), None
            )
            if format is None:
                raise ValueError(
                    f"cannot tell the format of {path} from its suffix; pass format= one of {list(FORMATS)}"
                )
    if format == "ply":
        from ..gaussians import save_ply

        return save_ply(path, params, transform=transform, **options)
    if format == "splat":
        from ..gaussians import save_splat

        return save_splat(path, params, transform=transform, **options)
    if format == "spz":
        from .spz import save_spz

        return save_spz(path, params, transform=transform, **options)
    if format == "compressed_ply":
        from .compressed_ply import save_compressed_ply

        return save_compressed_ply(path, params, transform=transform, **options)
    if format == "sog":
        from .sog import save_sog

        return save_sog(path, params, transform=transform, **options)
    if format == "slsc":
        from .slsc import save_slsc

        return save_slsc(path, params, transform=transform, **options)
    raise ValueError(f"unknown scene format {format!r}; expected one of {list(FORMATS)}")
