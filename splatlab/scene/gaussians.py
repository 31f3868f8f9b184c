"""Gaussian scene parameters, their initialisation, similarity transforms and file formats.

A scene is a ``torch.nn.ParameterDict`` laid out as gsplat's ``simple_trainer`` lays it out::

    means: Tensor      # [N, 3]       centres (world coordinates)
    scales: Tensor     # [N, 3]       log of the standard deviations along the local axes
    quats: Tensor      # [N, 4]       rotations, wxyz, need not be normalised
    opacities: Tensor  # [N]          logit of the opacity
    sh0: Tensor        # [N, 1, 3]    degree-0 spherical-harmonic coefficient per colour channel
    shN: Tensor        # [N, K-1, 3]  higher SH coefficients, K = (sh_degree + 1) ** 2
    <extra>: Tensor    # [N, ...]     optional per-Gaussian extras (features, roughness, ...)

Files:

- PLY in the INRIA layout (``x y z nx ny nz f_dc_0..2 f_rest_* opacity scale_0..2 rot_0..3``,
  binary little endian, float32), which SuperSplat, gsplat, nerfstudio and the INRIA viewers read.
  ``f_rest`` is channel-major, as INRIA stores it: ``shN.transpose(1, 2).reshape(N, -1)``.
  Extras follow as float properties ``<key>_<i>`` (flattened per Gaussian); a header comment
  ``splatlab_extra <key> <dims>`` records each extra's per-Gaussian shape so it is rebuilt exactly.
- ``.splat`` (antimatter15's web viewer): 32 bytes per Gaussian, quantised colour and rotation.

Coordinates: splatlab trains in the dataset's normalised frame, ``x_norm = T @ x_orig`` with
``T`` the Dataset's 4x4 similarity (rotation times an isotropic scale, plus a translation). The
writers take that ``transform`` and apply its inverse, so files are in the ORIGINAL coordinates;
the readers take the same ``transform`` and apply it. Under a rotation the view-dependent colour
must turn with the scene: the degree 1..3 SH coefficients are rotated exactly (band by band, with
rotation matrices fitted by least squares on sample directions, which is exact for a band-limited
function). Degree-4 SH under a non-identity rotation is refused with a clear error.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from ..rendering.sh import SH_C0, num_sh_bases, rgb_to_sh, sh_basis, sh_to_rgb
from ..utils import atomic_write

__all__ = [
    "SH_C0",
    "REQUIRED_KEYS",
    "rgb_to_sh",
    "sh_to_rgb",
    "num_sh_bases",
    "sh_degree_of",
    "num_gaussians",
    "extra_keys",
    "init_gaussians",
    "random_init_points",
    "split_similarity",
    "rotate_sh",
    "transform_gaussians",
    "save_ply",
    "load_ply",
    "save_splat",
    "load_splat",
]

REQUIRED_KEYS = ("means", "scales", "quats", "opacities", "sh0", "shN")
_MAX_SH_DEGREE = 4  # what gsplat's rasterizer evaluates (files up to degree 4 are read and written)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def sh_degree_of(params: Mapping[str, Tensor]) -> int:
    """SH degree stored in ``params`` (from the shape of ``shN``)."""
    k = params["shN"].shape[1] + 1
    degree = math.isqrt(k) - 1
    if (degree + 1) ** 2 != k:
        raise ValueError(f"shN has {k - 1} coefficients per channel, which is not (d+1)^2 - 1")
    return degree


def num_gaussians(params: Mapping[str, Tensor]) -> int:
    return int(params["means"].shape[0])


def extra_keys(params: Mapping[str, Tensor]) -> list[str]:
    """Keys of ``params`` beyond the six of every scene, in insertion order."""
    return [k for k in params.keys() if k not in REQUIRED_KEYS]


def _validate(params: Mapping[str, Tensor]) -> int:
    """Check the layout; returns N."""
    missing = [k for k in REQUIRED_KEYS if k not in params]
    if missing:
        raise ValueError(f"Gaussian parameters lack {missing}; expected keys {list(REQUIRED_KEYS)}")
    n = num_gaussians(params)
    expected = {
        "means": (n, 3),
        "scales": (n, 3),
        "quats": (n, 4),
        "opacities": (n,),
        "sh0": (n, 1, 3),
    }
    for key, shape in expected.items():
        if tuple(params[key].shape) != shape:
            raise ValueError(
                f"params[{key!r}] has shape {tuple(params[key].shape)}, expected {shape}"
            )
    shN = params["shN"]
    if shN.ndim != 3 or shN.shape[0] != n or shN.shape[2] != 3:
        raise ValueError(f"params['shN'] has shape {tuple(shN.shape)}, expected ({n}, K-1, 3)")
    degree = sh_degree_of(params)
    if degree > _MAX_SH_DEGREE:
        raise ValueError(f"SH degree {degree} > {_MAX_SH_DEGREE} is not supported")
    for key in extra_keys(params):
        if params[key].ndim < 1 or params[key].shape[0] != n:
            raise ValueError(
                f"extra params[{key!r}] has shape {tuple(params[key].shape)}, expected ({n}, ...)"
            )
    return n


def _to_param_dict(
    tensors: Mapping[str, Tensor], requires_grad: bool = True
) -> torch.nn.ParameterDict:
    # a list of pairs keeps the order (ParameterDict sorts the keys of a plain dict)
    return torch.nn.ParameterDict(
        [
            (k, torch.nn.Parameter(v.contiguous(), requires_grad=requires_grad))
            for k, v in tensors.items()
        ]
    )


# --------------------------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------------------------


def random_init_points(
    n: int, extent: float, seed: int = 0, center: tuple[float, float, float] = (0.0, 0.0, 0.0)
) -> np.ndarray:
    """``n`` points uniform in the axis-aligned box ``center ± extent`` (gsplat's random init:
    ``extent * (2 * rand - 1)``, so ``extent`` is the half side). Returns points [n, 3] float32."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if not extent > 0:
        raise ValueError(f"extent must be positive, got {extent}")
    rng = np.random.default_rng(seed)
    pts = np.asarray(center, dtype=np.float64) + extent * (2.0 * rng.random((n, 3)) - 1.0)
    return pts.astype(np.float32)


def init_gaussians(
    points: np.ndarray | Tensor,
    rgb: np.ndarray | Tensor | None = None,
    sh_degree: int = 3,
    init_opacity: float = 0.1,
    init_scale: float = 1.0,
    extras: Mapping[str, int] | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> torch.nn.ParameterDict:
    """Gaussians at ``points``, as gsplat's simple_trainer initialises them.

    Args:
        points: [P, 3] centres (P >= 2).
        rgb: [P, 3] colours in [0, 1] (uint8 arrays are divided by 255). None: uniform random
            colours (what gsplat does for its random init).
        sh_degree: 0..4; shN gets (sh_degree + 1) ** 2 - 1 zero coefficients per channel.
        init_opacity: initial opacity in (0, 1), stored as its logit.
        init_scale: factor on the isotropic initial size, which is the root mean square of the
            distances to the 3 nearest neighbours (fewer when P < 4); squared distances are
            clamped at 1e-7 as in the INRIA code so duplicated points get a finite log-scale.
        extras: name -> width; each becomes a zero-initialised [P, width] parameter.
        seed: seeds the random rotations (and random colours when ``rgb`` is None).

    Rotations are uniformly distributed over SO(3) (normalised 4-D Gaussian samples). gsplat draws
    ``torch.rand(N, 4)`` (unnormalised, biased to one orthant); INRIA uses the identity. With
    isotropic initial scales the choice does not change the rendered image; uniform rotations
    simply do not favour any axes once the scales become anisotropic.
    """
    pts = points.detach().cpu().numpy() if isinstance(points, Tensor) else np.asarray(points)
    pts = pts.astype(np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must be [P, 3], got {pts.shape}")
    p = pts.shape[0]
    if p < 2:
        raise DataError(f"init_gaussians needs at least 2 points to size the Gaussians, got {p}")
    if not np.isfinite(pts).all():
        bad = int(np.flatnonzero(~np.isfinite(pts).all(axis=1))[0])
        raise DataError(f"initial point {bad} is not finite ({pts[bad]}); clean the point cloud")
    if not 0 <= sh_degree <= _MAX_SH_DEGREE:
        raise ValueError(f"sh_degree must be in 0..{_MAX_SH_DEGREE}, got {sh_degree}")
    if not 0.0 < init_opacity < 1.0:
        raise ValueError(f"init_opacity must be in (0, 1), got {init_opacity}")
    if not init_scale > 0:
        raise ValueError(f"init_scale must be positive, got {init_scale}")

    gen = torch.Generator().manual_seed(seed)
    if rgb is None:
        colors = torch.rand((p, 3), generator=gen, dtype=torch.float64)
    else:
        arr = rgb.detach().cpu().numpy() if isinstance(rgb, Tensor) else np.asarray(rgb)
        if arr.shape != (p, 3):
            raise ValueError(f"rgb must be [P, 3] = ({p}, 3), got {arr.shape}")
        arr = arr.astype(np.float64) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float64)
        colors = torch.from_numpy(arr)

    from scipy.spatial import cKDTree

    k = min(3, p - 1)
    dist, _ = cKDTree(pts).query(pts, k=k + 1)  # column 0 is the point itself (distance 0)
    dist2 = np.maximum((dist[:, 1:] ** 2).mean(axis=1), 1e-7)
    log_scale = np.log(np.sqrt(dist2) * init_scale)

    quats = torch.randn((p, 4), generator=gen, dtype=torch.float64)
    quats = quats / quats.norm(dim=-1, keepdim=True)

    f32 = dict(dtype=torch.float32)
    tensors: dict[str, Tensor] = {
        "means": torch.from_numpy(pts).to(**f32),
        "scales": torch.from_numpy(log_scale).to(**f32)[:, None].repeat(1, 3),
        "quats": quats.to(**f32),
        "opacities": torch.full((p,), math.log(init_opacity / (1.0 - init_opacity)), **f32),
        "sh0": rgb_to_sh(colors).to(**f32)[:, None, :],
        "shN": torch.zeros((p, num_sh_bases(sh_degree) - 1, 3), **f32),
    }
    for name, width in (extras or {}).items():
        if name in tensors:
            raise ValueError(f"extra {name!r} clashes with a built-in parameter name")
        if int(width) <= 0:
            raise ValueError(f"extra {name!r} must have a positive width, got {width}")
        tensors[name] = torch.zeros((p, int(width)), **f32)
    return _to_param_dict({k: v.to(device) for k, v in tensors.items()})


# --------------------------------------------------------------------------------------------
# Similarity transforms (rotation * isotropic scale + translation), SH rotation
# --------------------------------------------------------------------------------------------


def split_similarity(transform: np.ndarray | Tensor) -> tuple[float, np.ndarray, np.ndarray]:
    """Split a 4x4 similarity ``[[s R, t], [0, 1]]`` into ``(s, R [3, 3], t [3])`` (float64).

    Raises ValueError if the matrix is not a proper similarity (shear, non-uniform scale,
    reflection, or a bottom row other than 0 0 0 1)."""
    T = transform.detach().cpu().numpy() if isinstance(transform, Tensor) else np.asarray(transform)
    T = T.astype(np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"transform must be 4x4, got {T.shape}")
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=1e-9):
        raise ValueError(f"transform's last row must be 0 0 0 1, got {T[3]}")
    A = T[:3, :3]
    det = float(np.linalg.det(A))
    if not det > 0:
        raise ValueError(f"transform must preserve orientation (det > 0), got det {det:.3g}")
    s = det ** (1.0 / 3.0)
    R = A / s
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-5):
        raise ValueError("transform is not a similarity (rotation times one isotropic scale)")
    return s, R, T[:3, 3].copy()


def _sh_band(dirs: np.ndarray, band: int) -> np.ndarray:
    """Real SH basis of one band (1..3) on unit directions [S, 3] (splatlab.rendering.sh order)."""
    if not 1 <= band <= 3:
        raise ValueError(f"SH band {band} is not supported for rotation (bands 1..3 are)")
    basis = sh_basis(band, torch.from_numpy(np.asarray(dirs, dtype=np.float64))).numpy()
    return basis[:, band * band : (band + 1) * (band + 1)]


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    r = np.sqrt(1.0 - z * z)
    phi = math.pi * (3.0 - math.sqrt(5.0)) * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def rotate_sh(shN: Tensor, R: np.ndarray) -> Tensor:
    """SH coefficients of the scene turned by rotation ``R`` (x_new = R @ x_old).

    shN: [N, K-1, 3] (bands 1..degree, degree <= 3). Returns a tensor of the same shape and
    dtype such that the colour seen along direction ``R @ d`` afterwards equals the colour seen
    along ``d`` before. Each band l is a (2l+1)-dimensional space closed under rotation; its
    rotation matrix D_l solves ``Y_l(d) @ D_l = Y_l(R^T d)`` on 64 sample directions (exact in
    float64 up to rounding, whatever the sign conventions, since both sides use the same basis).
    """
    R = np.asarray(R, dtype=np.float64)
    k1 = shN.shape[1]
    degree = math.isqrt(k1 + 1) - 1
    if degree == 0:
        return shN.clone()
    if degree > 3:
        raise ValueError(
            f"rotating SH of degree {degree} is not supported (degree <= 3 is); "
            "use an axis-aligned (scale + translation) transform or reduce the SH degree"
        )
    dirs = _fibonacci_sphere(64)
    dirs_rot = dirs @ R  # row i = R^T d_i
    blocks = []
    for band in range(1, degree + 1):
        D, *_ = np.linalg.lstsq(_sh_band(dirs, band), _sh_band(dirs_rot, band), rcond=None)
        blocks.append(D)
    size = sum(b.shape[0] for b in blocks)
    full = np.zeros((size, size))
    start = 0
    for b in blocks:
        full[start : start + b.shape[0], start : start + b.shape[0]] = b
        start += b.shape[0]
    Dt = torch.from_numpy(full).to(device=shN.device, dtype=torch.float64)
    # colour_new(d) = colour_old(R^T d) = c_old . y(R^T d) = y(d) . (D c_old), so c_new = D c_old
    out = torch.einsum("ij,njc->nic", Dt, shN.detach().to(torch.float64))
    return out.to(shN.dtype)


def _quat_from_matrix(R: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(R).as_quat(scalar_first=True)  # wxyz


def _quat_multiply(q1: Tensor, q2: Tensor) -> Tensor:
    """Hamilton product q1 ⊗ q2, wxyz; R(q1 ⊗ q2) = R(q1) @ R(q2)."""
    w1, x1, y1, z1 = q1.unbind(-1)
    w2, x2, y2, z2 = q2.unbind(-1)
    return torch.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        dim=-1,
    )


def transform_gaussians(
    params: Mapping[str, Tensor], transform: np.ndarray | Tensor, rotate_colors: bool = True
) -> torch.nn.ParameterDict:
    """The same scene expressed in a new frame: ``x_new = transform @ x_old`` (a similarity).

    Means are mapped, log-scales shifted by log(s), rotations composed with R (the quaternion
    norm is kept), degree>=1 SH rotated (:func:`rotate_sh`, skipped when R is the identity or
    ``rotate_colors`` is False); opacities, sh0 and extras are copied unchanged. Arithmetic is in
    float64, results are cast back to each tensor's dtype. Returns a new ParameterDict.
    """
    _validate(params)
    s, R, t = split_similarity(transform)
    identity_rot = np.allclose(R, np.eye(3), atol=1e-12, rtol=0.0)
    out: dict[str, Tensor] = {}
    for key, value in params.items():
        v = value.detach()
        if key == "means":
            A = torch.from_numpy(s * R).to(v.device)
            tt = torch.from_numpy(t).to(v.device)
            out[key] = (v.to(torch.float64) @ A.T + tt).to(v.dtype)
        elif key == "scales":
            out[key] = (v.to(torch.float64) + math.log(s)).to(v.dtype)
        elif key == "quats" and not identity_rot:
            q = torch.from_numpy(_quat_from_matrix(R)).to(v.device)
            out[key] = _quat_multiply(q.expand(v.shape[0], 4), v.to(torch.float64)).to(v.dtype)
        elif key == "shN" and not identity_rot and rotate_colors and v.shape[1] > 0:
            out[key] = rotate_sh(v, R)
        else:
            out[key] = v.clone()
    requires_grad = bool(params["means"].requires_grad)
    return _to_param_dict(out, requires_grad=requires_grad)


def _inverse_similarity(transform: np.ndarray | Tensor) -> np.ndarray:
    s, R, t = split_similarity(transform)
    inv = np.eye(4)
    inv[:3, :3] = R.T / s
    inv[:3, 3] = -(R.T @ t) / s
    return inv


# --------------------------------------------------------------------------------------------
# PLY (INRIA layout)
# --------------------------------------------------------------------------------------------

_EXTRA_COMMENT = "splatlab_extra"


def _inria_names(k_rest: int) -> list[str]:
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * k_rest)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return names


MAX_ABS_LOG_SCALE = 50.0
"""|log scale| beyond this (e^50 ~ 5e21 scene units) is no Gaussian a trainer produces."""


def check_log_scales(scales: np.ndarray | Tensor, where: str) -> None:
    """Refuse log-scales that are finite but absurd (they overflow to inf once exponentiated)."""
    arr = scales.detach().cpu().numpy() if isinstance(scales, Tensor) else np.asarray(scales)
    bad = np.flatnonzero(np.abs(arr.reshape(len(arr), -1)).max(axis=1) > MAX_ABS_LOG_SCALE) if len(arr) else []
    if len(bad):
        raise DataError(
            f"{where}: log-scale {float(np.abs(arr[bad[0]]).max()):.3g} at row {int(bad[0])} is beyond "
            f"+-{MAX_ABS_LOG_SCALE:g} ({len(bad)} such Gaussians); the file is corrupt or not in the "
            "INRIA layout (scale_* must be log-scales)"
        )


def _finite_mask(params: Mapping[str, Tensor], n: int) -> tuple[np.ndarray, str | None]:
    """Rows whose values are all finite, and the first key that has a non-finite value."""
    ok = np.ones(n, dtype=bool)
    first_bad = None
    for key, value in params.items():
        row_ok = torch.isfinite(value.detach().reshape(n, -1)).all(dim=1).cpu().numpy()
        if first_bad is None and not row_ok.all():
            first_bad = key
        ok &= row_ok
    return ok, first_bad


def _prepare_export(
    path: Path,
    params: Mapping[str, Tensor],
    transform,
    drop_invalid: bool,
    rotate_colors: bool = True,
) -> dict[str, Tensor]:
    n = _validate(params)
    if n == 0:
        raise DataError(f"cannot write {path}: the scene holds 0 Gaussians")
    ok, bad_key = _finite_mask(params, n)
    if bad_key is not None:
        if not drop_invalid:
            raise DataError(
                f"cannot write {path}: {int((~ok).sum())} of {n} Gaussians have non-finite values "
                f"(first in {bad_key!r}); pass drop_invalid=True to leave them out"
            )
        keep = torch.from_numpy(ok)
        params = {k: v.detach()[keep.to(v.device)] for k, v in params.items()}
    if transform is not None:
        params = transform_gaussians(
            params, _inverse_similarity(transform), rotate_colors=rotate_colors
        )
    return {k: v.detach().cpu() for k, v in params.items()}


def save_ply(
    path: str | os.PathLike,
    params: Mapping[str, Tensor],
    transform: np.ndarray | Tensor | None = None,
    drop_invalid: bool = False,
) -> Path:
    """Write ``params`` as an INRIA-layout binary PLY, atomically.

    Args:
        path: destination file (parent folders are created).
        params: the scene (see the module docstring); extras must be floating point.
        transform: [4, 4] similarity normalised <- original (the Dataset's); its inverse is
            applied so the file is in the original coordinates. None: written as is.
        drop_invalid: leave out Gaussians with NaN/inf values instead of raising DataError.

    Property order: x y z nx ny nz f_dc_0..2 f_rest_0..3(K-1)-1 opacity scale_0..2 rot_0..3,
    then each extra ``<key>_<i>``. Normals are written as zeros (INRIA does the same).
    """
    from plyfile import PlyData, PlyElement

    path = Path(path)
    p = _prepare_export(path, params, transform, drop_invalid)
    n = p["means"].shape[0]
    k_rest = p["shN"].shape[1]
    names = _inria_names(k_rest)
    cols = [
        p["means"],
        torch.zeros((n, 3)),
        p["sh0"].reshape(n, 3),
        p["shN"].transpose(1, 2).reshape(n, 3 * k_rest),
        p["opacities"].reshape(n, 1),
        p["scales"],
        p["quats"],
    ]
    comments = []
    inria = set(names)
    for key in extra_keys(p):
        value = p[key]
        if not value.is_floating_point():
            raise ValueError(
                f"extra {key!r} has dtype {value.dtype}; only floating-point extras are written"
            )
        shape = tuple(value.shape[1:])
        width = int(np.prod(shape)) if shape else 1
        extra_names = [f"{key}_{i}" for i in range(width)]
        clash = inria.intersection(extra_names)
        if clash or not re.fullmatch(r"[A-Za-z0-9_]+", key):
            raise ValueError(
                f"extra key {key!r} cannot be written to a PLY (clashes with {sorted(clash)} or has odd characters)"
            )
        names += extra_names
        cols.append(value.reshape(n, width))
        comments.append(f"{_EXTRA_COMMENT} {key} " + " ".join(str(d) for d in shape))
    data = torch.cat([c.to(torch.float32) for c in cols], dim=1).numpy()
    data = np.ascontiguousarray(data.astype("<f4"))
    record = data.view(np.dtype([(name, "<f4") for name in names])).reshape(n)
    ply = PlyData(
        [PlyElement.describe(record, "vertex")], text=False, byte_order="<", comments=comments
    )
    with atomic_write(path, "wb") as f:
        ply.write(f)
    return path


def _read_vertex_columns(path: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """Columns of the 'vertex' element (memory-mapped views for binary files) and the header
    comments."""
    from plyfile import PlyData

    if not path.is_file():
        raise DataError(f"scene file {path} does not exist")
    try:
        # memory-mapped read; plyfile's non-mmap path reads binary data value by value (slow)
        ply = PlyData.read(str(path))
    except Exception as e:  # plyfile raises several types for a bad header or short data
        raise DataError(f"{path} is not a readable PLY file ({type(e).__name__}: {e})") from e
    names = [el.name for el in ply.elements]
    if "chunk" in names:
        raise DataError(
            f"{path} is a compressed PLY (SuperSplat / gsplat 'ply_compressed'); export an "
            "uncompressed INRIA PLY instead (e.g. gsplat export_splats(format='ply'))"
        )
    if "vertex" not in names:
        raise DataError(
            f"{path} has no 'vertex' element (found {names}); it is not a Gaussian-splat PLY"
        )
    vertex = ply["vertex"]
    cols = {prop.name: np.asarray(vertex[prop.name]) for prop in vertex.properties}
    return cols, [str(c) for c in ply.comments]


def load_ply(
    path: str | os.PathLike, transform: np.ndarray | Tensor | None = None
) -> torch.nn.ParameterDict:
    """Read an INRIA-layout Gaussian PLY (ours, gsplat's exporter, nerfstudio splatfacto, INRIA).

    The SH degree follows from the number of ``f_rest_*`` properties (0, 9, 24, 45 or 72);
    other properties besides the normals become extras (``<key>_<i>`` grouped into [N, d], or
    reshaped per our ``splatlab_extra`` header comment; a name without an index suffix gives a
    [N] extra). ``transform`` (normalised <- original) is applied after reading. Values are
    float32; without a transform a save/load round trip is bitwise exact.

    Raises DataError naming the file and the property (and row) for a missing file, a non-PLY
    or compressed PLY, a missing required property, a bad f_rest count, or NaN/inf values.
    """
    path = Path(path)
    cols, comments = _read_vertex_columns(path)
    n = len(next(iter(cols.values()))) if cols else 0
    if n == 0:
        raise DataError(f"{path} holds 0 Gaussians (an empty vertex element); nothing to load")

    def take(name: str) -> np.ndarray:
        if name not in cols:
            raise DataError(
                f"{path} lacks the property {name!r} of the INRIA Gaussian layout "
                f"(it has {list(cols)[:12]}{' ...' if len(cols) > 12 else ''})"
            )
        col = cols[name]
        if col.dtype.kind not in "fiu":
            raise DataError(f"{path}: property {name!r} has non-numeric type {col.dtype}")
        col = col.astype(np.float32)
        bad = np.flatnonzero(~np.isfinite(col))
        if bad.size:
            raise DataError(
                f"{path}: property {name!r} is {col[bad[0]]} at row {int(bad[0])} "
                f"({bad.size} non-finite values); re-export the scene without NaN/inf Gaussians"
            )
        return col

    def block(names: list[str]) -> np.ndarray:
        return (
            np.stack([take(nm) for nm in names], axis=1) if names else np.zeros((n, 0), np.float32)
        )

    rest_idx = sorted(int(m.group(1)) for nm in cols if (m := re.fullmatch(r"f_rest_(\d+)", nm)))
    n_rest = len(rest_idx)
    if rest_idx != list(range(n_rest)):
        raise DataError(f"{path}: f_rest properties are not numbered 0..{n_rest - 1}")
    degree = math.isqrt(n_rest // 3 + 1) - 1
    if n_rest % 3 or num_sh_bases(degree) - 1 != n_rest // 3 or degree > _MAX_SH_DEGREE:
        raise DataError(
            f"{path} has {n_rest} f_rest properties; expected 3 * ((d+1)^2 - 1) for an SH degree "
            f"d in 0..{_MAX_SH_DEGREE} (0, 9, 24, 45 or 72)"
        )
    k_rest = n_rest // 3

    means = block(["x", "y", "z"])
    sh0 = block(["f_dc_0", "f_dc_1", "f_dc_2"]).reshape(n, 1, 3)
    shN = block([f"f_rest_{i}" for i in range(n_rest)]).reshape(n, 3, k_rest).transpose(0, 2, 1)
    opacities = take("opacity")
    scales = block(["scale_0", "scale_1", "scale_2"])
    check_log_scales(scales, str(path))
    quats = block(["rot_0", "rot_1", "rot_2", "rot_3"])
    zero_q = np.flatnonzero(~(np.abs(quats) > 0).any(axis=1))
    if zero_q.size:
        raise DataError(f"{path}: rot_0..3 are all zero at row {int(zero_q[0])} (not a rotation)")

    tensors: dict[str, Tensor] = {
        "means": torch.from_numpy(means),
        "scales": torch.from_numpy(scales),
        "quats": torch.from_numpy(quats),
        "opacities": torch.from_numpy(opacities),
        "sh0": torch.from_numpy(sh0),
        "shN": torch.from_numpy(np.ascontiguousarray(shN)),
    }

    # Extras: every property not in the INRIA set.
    known = set(_inria_names(k_rest))
    groups: dict[str, list[tuple[int, str]]] = {}
    for nm in cols:
        if nm in known:
            continue
        m = re.fullmatch(r"(.+)_(\d+)", nm)
        key, idx = (m.group(1), int(m.group(2))) if m else (nm, -1)
        groups.setdefault(key, []).append((idx, nm))
    shapes: dict[str, tuple[int, ...]] = {}
    for c in comments:
        parts = str(c).split()
        if len(parts) >= 2 and parts[0] == _EXTRA_COMMENT:
            shapes[parts[1]] = tuple(int(d) for d in parts[2:])
    for key, members in groups.items():
        if key in tensors:
            raise DataError(
                f"{path}: extra property group {key!r} clashes with a built-in parameter"
            )
        if len(members) == 1 and members[0][0] == -1:
            value = take(members[0][1])  # [N]
        else:
            idx = sorted(i for i, _ in members)
            if idx != list(range(len(idx))):
                raise DataError(f"{path}: properties {key}_* are not numbered 0..{len(idx) - 1}")
            value = block([f"{key}_{i}" for i in idx])
            if key in shapes:
                shape = shapes[key]
                expected = int(np.prod(shape)) if shape else 1
                if expected != value.shape[1]:
                    raise DataError(
                        f"{path}: header says extra {key!r} has shape {shape}, found {value.shape[1]} values"
                    )
                value = value.reshape((n, *shape))
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value))

    params = _to_param_dict(tensors)
    if transform is not None:
        params = transform_gaussians(params, transform)
    return params


# --------------------------------------------------------------------------------------------
# .splat (antimatter15 web viewer)
# --------------------------------------------------------------------------------------------

_SPLAT_DTYPE = np.dtype(
    [("position", "<f4", (3,)), ("scale", "<f4", (3,)), ("rgba", "u1", (4,)), ("rot", "u1", (4,))]
)
assert _SPLAT_DTYPE.itemsize == 32


def save_splat(
    path: str | os.PathLike,
    params: Mapping[str, Tensor],
    transform: np.ndarray | Tensor | None = None,
    drop_invalid: bool = False,
) -> Path:
    """Write the antimatter15 ``.splat`` format, atomically.

    32 bytes per Gaussian: position (3 float32), linear scale (3 float32), RGBA (4 uint8: colour
    from the SH DC term, alpha = sigmoid(opacity)), rotation (4 uint8: wxyz of q/|q| * 128 + 128).
    Bytes are rounded to nearest (the reference converter truncates). Gaussians are sorted by
    decreasing ``exp(sum log scales) * sigmoid(opacity)``, as the reference converter does, so
    viewers that stream the file show the big opaque ones first. View-dependent colour (shN)
    and extras are not stored. ``transform`` as in :func:`save_ply`.
    """
    path = Path(path)
    p = _prepare_export(path, params, transform, drop_invalid, rotate_colors=False)
    means = p["means"].to(torch.float64).numpy()
    log_scales = p["scales"].to(torch.float64).numpy()
    opac = torch.sigmoid(p["opacities"].to(torch.float64)).numpy()
    rgb = sh_to_rgb(p["sh0"].reshape(-1, 3).to(torch.float64)).numpy()
    q = p["quats"].to(torch.float64).numpy()
    q = q / np.linalg.norm(q, axis=1, keepdims=True)

    order = np.argsort(-(np.exp(log_scales.sum(axis=1)) * opac), kind="stable")
    rec = np.empty(means.shape[0], dtype=_SPLAT_DTYPE)
    rec["position"] = means[order]
    rec["scale"] = np.exp(log_scales[order])
    rgba = np.concatenate([rgb[order], opac[order, None]], axis=1)
    rec["rgba"] = np.clip(np.rint(rgba * 255.0), 0, 255).astype(np.uint8)
    rec["rot"] = np.clip(np.rint(q[order] * 128.0 + 128.0), 0, 255).astype(np.uint8)
    with atomic_write(path, "wb") as f:
        f.write(rec.tobytes())
    return path


def load_splat(
    path: str | os.PathLike, transform: np.ndarray | Tensor | None = None
) -> torch.nn.ParameterDict:
    """Read a ``.splat`` file into an SH-degree-0 scene (shN is [N, 0, 3]).

    Alpha bytes are clamped to [0.5, 254.5] / 255 before the logit so fully transparent or
    opaque bytes give finite opacities. ``transform`` (normalised <- original) is applied after.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"scene file {path} does not exist")
    raw = path.read_bytes()
    if len(raw) == 0 or len(raw) % _SPLAT_DTYPE.itemsize:
        raise DataError(
            f"{path} is not a .splat file: its size {len(raw)} is not a positive multiple of 32 bytes"
        )
    rec = np.frombuffer(raw, dtype=_SPLAT_DTYPE)
    n = rec.shape[0]
    scales = rec["scale"].astype(np.float64)
    for name, values in (("position", rec["position"]), ("scale", scales)):
        bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
        if bad.size:
            raise DataError(f"{path}: {name} of splat {int(bad[0])} is not finite")
    bad = np.flatnonzero(~(scales > 0).all(axis=1))
    if bad.size:
        raise DataError(f"{path}: scale of splat {int(bad[0])} is not positive ({scales[bad[0]]})")
    rgba = rec["rgba"].astype(np.float64) / 255.0
    alpha = np.clip(rgba[:, 3], 0.5 / 255.0, 254.5 / 255.0)
    quats = (rec["rot"].astype(np.float64) - 128.0) / 128.0
    zero_q = np.flatnonzero(~(np.abs(quats) > 0).any(axis=1))
    if zero_q.size:
        raise DataError(f"{path}: rotation of splat {int(zero_q[0])} is all zero")
    f32 = torch.float32
    tensors = {
        "means": torch.from_numpy(rec["position"].copy()),
        "scales": torch.from_numpy(np.log(scales)).to(f32),
        "quats": torch.from_numpy(quats).to(f32),
        "opacities": torch.from_numpy(np.log(alpha / (1.0 - alpha))).to(f32),
        "sh0": rgb_to_sh(torch.from_numpy(rgba[:, :3])).to(f32).reshape(n, 1, 3),
        "shN": torch.zeros((n, 0, 3), dtype=f32),
    }
    params = _to_param_dict(tensors)
    if transform is not None:
        params = transform_gaussians(params, transform)
    return params
